#ifndef CELLAR_SERVICES_COMMON_RATE_LIMITER_H_
#define CELLAR_SERVICES_COMMON_RATE_LIMITER_H_

// Per-caller request rate limits: one token bucket per caller (a token
// id), refilled at `per_second` up to `burst`. A call that finds its
// caller's bucket empty is refused with RESOURCE_EXHAUSTED and a
// retry-after hint in the message ("retry after 120 ms"), so one client
// flooding a server cannot take the capacity every other client needs.
// Callers with no name ("": auth off) are not limited.
//
// Buckets of callers that went quiet (full again) are forgotten when the
// table grows, so its memory is bounded by the callers active within
// burst / per_second, not by every caller ever seen.
//
// A limiter counts calls (Admit: one token per call) or bytes (the unit
// given at construction): bytes are known only once a message has been
// read, so they are charged after the fact (Charge, which may take the
// bucket below zero) and a caller whose bucket is in debt is refused
// (AdmitIfNotInDebt) until it has refilled above zero. A caller can thus
// overshoot by at most one message (bounded by the maximum message size).
//
// Thread-safe. The clock may go backwards: a bucket never refills by a
// negative amount.

#include <cstddef>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/clock.h"

namespace cellar::common {

class RateLimiter {
 public:
  // `clock` (not owned) must outlive the limiter. per_second and burst
  // must be positive (checked by the flags' callers).
  // `unit` names what is counted in refusals ("calls", "bytes").
  RateLimiter(double per_second, double burst, const Clock* clock,
              std::string unit = "calls");

  // OK and one token taken, or RESOURCE_EXHAUSTED with the wait.
  absl::Status Admit(absl::string_view caller);

  // OK if the caller's bucket is above zero (nothing taken), else
  // RESOURCE_EXHAUSTED with the wait until it is.
  absl::Status AdmitIfNotInDebt(absl::string_view caller);

  // Takes `amount` tokens from the caller's bucket, going below zero if
  // need be (down to -burst at most, so one huge message cannot lock a
  // caller out for longer than two bursts take to refill).
  void Charge(absl::string_view caller, double amount);

  // Buckets held (tests).
  size_t buckets() const;

 private:
  struct Bucket {
    double tokens;
    absl::Time updated;
  };
  void Refill(Bucket& bucket, absl::Time now) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The caller's bucket, refilled to now; prunes full buckets when the
  // table has grown (never the one returned).
  Bucket& BucketOf(absl::string_view caller, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Refusal(const Bucket& bucket, double needed) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const double per_second_;
  const double burst_;
  const Clock* clock_;
  const std::string unit_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  size_t prune_at_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_RATE_LIMITER_H_
