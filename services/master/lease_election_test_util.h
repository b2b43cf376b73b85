#ifndef CELLAR_SERVICES_MASTER_LEASE_ELECTION_TEST_UTIL_H_
#define CELLAR_SERVICES_MASTER_LEASE_ELECTION_TEST_UTIL_H_

// Helpers shared by the lease elections' tests (pg_lease_test,
// k8s_lease_test).

#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/master/election.h"

namespace cellar::master::lease_testing {

// How long Eventually() waits by default.
inline constexpr absl::Duration kEventuallyWait = absl::Seconds(20);

// Polls `pred` every 5 ms until it holds or `timeout` passes.
template <typename Pred>
bool Eventually(Pred pred, absl::Duration timeout = kEventuallyWait) {
  const absl::Time end = absl::Now() + timeout;
  while (!pred()) {
    if (absl::Now() > end) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// Sets `election`'s lost callback to record how often it ran and when
// (last). Declare it after the election it watches.
class LostRecorder {
 public:
  explicit LostRecorder(Election& election) {
    election.SetLostCallback([this] {
      absl::MutexLock l(&mu_);
      at_ = absl::Now();
      ++count_;
    });
  }
  int count() const {
    absl::MutexLock l(&mu_);
    return count_;
  }
  // absl::InfiniteFuture() until the callback ran.
  absl::Time at() const {
    absl::MutexLock l(&mu_);
    return at_;
  }

 private:
  mutable absl::Mutex mu_;
  int count_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
};

// Samples two elections every 200 us until Stop() (or destruction): the
// safety contract says they are never primary at once.
class DualPrimaryWatcher {
 public:
  DualPrimaryWatcher(const Election& a, const Election& b)
      : thread_([this, &a, &b] {
          while (!stop_) {
            if (a.IsPrimary() && b.IsPrimary()) ++both_;
            absl::SleepFor(absl::Microseconds(200));
          }
        }) {}
  ~DualPrimaryWatcher() { Stop(); }

  // Stops sampling; returns how many samples saw two primaries.
  int Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return both_.load();
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> both_{0};
  std::thread thread_;  // last: starts once the counters exist
};

}  // namespace cellar::master::lease_testing

#endif  // CELLAR_SERVICES_MASTER_LEASE_ELECTION_TEST_UTIL_H_
