#include "services/common/rate_limiter.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace cellar::common {
namespace {

constexpr size_t kMinPrune = 1024;

}  // namespace

RateLimiter::RateLimiter(double per_second, double burst, const Clock* clock)
    : per_second_(per_second), burst_(burst), clock_(clock), prune_at_(kMinPrune) {}

void RateLimiter::Refill(Bucket& bucket, absl::Time now) const {
  const double elapsed = std::max(0.0, absl::ToDoubleSeconds(now - bucket.updated));
  bucket.tokens = std::min(burst_, bucket.tokens + elapsed * per_second_);
  bucket.updated = std::max(bucket.updated, now);
}

absl::Status RateLimiter::Admit(absl::string_view caller) {
  if (caller.empty()) return absl::OkStatus();
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  auto [it, inserted] = buckets_.try_emplace(caller, Bucket{burst_, now});
  Bucket& bucket = it->second;
  if (!inserted) Refill(bucket, now);
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
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
    return absl::OkStatus();
  }
  const int64_t wait_ms = static_cast<int64_t>(
      std::ceil(1000.0 * (1.0 - bucket.tokens) / per_second_));
  return absl::ResourceExhaustedError(absl::StrCat(
      "rate limit: at most ", per_second_, " calls/s (burst ", burst_,
      ") per caller; retry after ", wait_ms, " ms"));
}

size_t RateLimiter::buckets() const {
  absl::MutexLock l(&mu_);
  return buckets_.size();
}

}  // namespace cellar::common
