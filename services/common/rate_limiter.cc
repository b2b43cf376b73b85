#include "services/common/rate_limiter.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace cellar::common {
namespace {

constexpr size_t kMinPrune = 1024;

}  // namespace

RateLimiter::RateLimiter(double per_second, double burst, const Clock* clock, std::string unit)
    : per_second_(per_second),
      burst_(burst),
      clock_(clock),
      unit_(std::move(unit)),
      prune_at_(kMinPrune) {}

void RateLimiter::Refill(Bucket& bucket, absl::Time now) const {
  const double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - bucket.updated));
  bucket.tokens = std::min(burst_, bucket.tokens + elapsed * per_second_);
  bucket.updated = std::max(bucket.updated, now);
}

RateLimiter::Bucket& RateLimiter::BucketOf(absl::string_view caller, absl::Time now) {
  if (buckets_.size() >= prune_at_) {
    // Forget the callers whose bucket is full again: equal to no bucket.
    for (auto p = buckets_.begin(); p != buckets_.end();) {
      Refill(p->second, now);
      if (p->second.tokens >= burst_) {
        buckets_.erase(p++);
      } else {
        ++p;
      }
    }
    prune_at_ = std::max(kMinPrune, 2 * buckets_.size());
  }
  auto [it, inserted] = buckets_.try_emplace(caller, Bucket{burst_, now});
  if (!inserted) Refill(it->second, now);
  return it->second;
}

absl::Status RateLimiter::Refusal(const Bucket& bucket, double needed) const {
  const int64_t wait_ms = static_cast<int64_t>(
      std::ceil(1000.0 * (needed - bucket.tokens) / per_second_));
  return absl::ResourceExhaustedError(absl::StrCat(
      "rate limit: at most ", per_second_, " ", unit_, "/s (burst ", burst_,
      ") per caller; retry after ", std::max<int64_t>(1, wait_ms), " ms"));
}

absl::Status RateLimiter::Admit(absl::string_view caller) {
  if (caller.empty()) return absl::OkStatus();
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  Bucket& bucket = BucketOf(caller, now);
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
    return absl::OkStatus();
  }
  return Refusal(bucket, 1);
}

absl::Status RateLimiter::AdmitIfNotInDebt(absl::string_view caller) {
  if (caller.empty()) return absl::OkStatus();
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  auto it = buckets_.find(caller);
  if (it == buckets_.end()) return absl::OkStatus();  // full
  Refill(it->second, now);
  if (it->second.tokens > 0) return absl::OkStatus();
  // Refused until the bucket is back above zero: the wait rounds up to 1 ms.
  return Refusal(it->second, 0);
}

void RateLimiter::Charge(absl::string_view caller, double amount) {
  if (caller.empty() || !(amount > 0)) return;
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  Bucket& bucket = BucketOf(caller, now);
  bucket.tokens = std::max(-burst_, bucket.tokens - amount);
}

size_t RateLimiter::buckets() const {
  absl::MutexLock l(&mu_);
  return buckets_.size();
}

}  // namespace cellar::common
