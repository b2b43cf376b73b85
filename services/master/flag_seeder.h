#ifndef CELLAR_SERVICES_MASTER_FLAG_SEEDER_H_
#define CELLAR_SERVICES_MASTER_FLAG_SEEDER_H_

// Creates a primary master's initial feature flags (--initial_feature_flags,
// the Helm value `featureFlags`) once its cluster is RUNNING: by then the
// storages have reported their persisted tables, so a flag an operator
// changed or created is found and left alone (only absent flags are
// created). A background thread polls `ready` every `poll`, then calls
// `seed` until it succeeds (retried after `retry`, logged). Thread-safe;
// the destructor stops the thread.

#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace cellar::master {

class FlagSeeder {
 public:
  FlagSeeder(std::function<bool()> ready, std::function<absl::Status()> seed,
             absl::Duration poll = absl::Milliseconds(200),
             absl::Duration retry = absl::Seconds(1));
  ~FlagSeeder();
  FlagSeeder(const FlagSeeder&) = delete;
  FlagSeeder& operator=(const FlagSeeder&) = delete;

  // True once `seed` succeeded.
  bool done() const;

 private:
  void Run();
  // Waits `d` or until stopped; true if stopped.
  bool WaitStopped(absl::Duration d);

  const std::function<bool()> ready_;
  const std::function<absl::Status()> seed_;
  const absl::Duration poll_;
  const absl::Duration retry_;
  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_FLAG_SEEDER_H_
