#ifndef CELLAR_SERVICES_COMMON_FAKE_CLOCK_H_
#define CELLAR_SERVICES_COMMON_FAKE_CLOCK_H_

// A Clock tests set by hand (testonly). Thread-safe.

#include "absl/synchronization/mutex.h"
#include "services/common/clock.h"

namespace cellar::common {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1800000000))
      : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock l(&mu_);
    return now_;
  }
  void Set(absl::Time t) {
    absl::MutexLock l(&mu_);
    now_ = t;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock l(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_FAKE_CLOCK_H_
