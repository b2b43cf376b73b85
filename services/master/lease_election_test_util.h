#ifndef CELLAR_SERVICES_MASTER_LEASE_ELECTION_TEST_UTIL_H_
#define CELLAR_SERVICES_MASTER_LEASE_ELECTION_TEST_UTIL_H_

// Helpers shared by the lease elections' tests (pg_lease_test,
// k8s_lease_test).

#include "absl/time/clock.h"
#include "absl/time/time.h"

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

}  // namespace cellar::master::lease_testing

#endif  // CELLAR_SERVICES_MASTER_LEASE_ELECTION_TEST_UTIL_H_
