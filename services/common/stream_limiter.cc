#include "services/common/stream_limiter.h"

#include "absl/strings/str_cat.h"

namespace cellar::common {

StreamLimiter::Slot::~Slot() {
  if (limiter_ != nullptr) limiter_->Release(caller_);
}

absl::StatusOr<StreamLimiter::Slot> StreamLimiter::Acquire(absl::string_view caller) {
  absl::MutexLock l(&mu_);
  if (open_ >= total_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "too many ", what_, ": ", open_, " open, at most ", total_,
        " on this server; retry later (each stream holds a server thread)"));
  }
  if (!caller.empty()) {
    size_t& mine = by_caller_[caller];
    if (mine >= per_caller_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "too many ", what_, " for these credentials: ", mine, " open, at most ",
          per_caller_, " per caller; close some or retry later"));
    }
    ++mine;
  }
  ++open_;
  return Slot(this, std::string(caller));
}

void StreamLimiter::Release(const std::string& caller) {
  absl::MutexLock l(&mu_);
  --open_;
  if (caller.empty()) return;
  auto it = by_caller_.find(caller);
  if (it != by_caller_.end() && --it->second == 0) by_caller_.erase(it);
}

size_t StreamLimiter::open() const {
  absl::MutexLock l(&mu_);
  return open_;
}

}  // namespace cellar::common
