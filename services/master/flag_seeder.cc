#include "services/master/flag_seeder.h"

#include <utility>

#include "services/common/logging.h"

namespace cellar::master {

FlagSeeder::FlagSeeder(std::function<bool()> ready, std::function<absl::Status()> seed,
                       absl::Duration poll, absl::Duration retry)
    : ready_(std::move(ready)), seed_(std::move(seed)), poll_(poll), retry_(retry) {
  thread_ = std::thread([this] { Run(); });
}

FlagSeeder::~FlagSeeder() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  thread_.join();
}

bool FlagSeeder::done() const {
  absl::MutexLock l(&mu_);
  return done_;
}

bool FlagSeeder::WaitStopped(absl::Duration d) {
  absl::MutexLock l(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stop_), d);
  return stop_;
}

void FlagSeeder::Run() {
  while (!WaitStopped(poll_)) {
    if (!ready_()) continue;
    absl::Status s = seed_();
    if (s.ok()) {
      absl::MutexLock l(&mu_);
      done_ = true;
      return;
    }
    CELLAR_LOG(WARNING) << "initial feature flags not created yet (retrying): " << s;
    if (WaitStopped(retry_)) return;
  }
}

}  // namespace cellar::master
