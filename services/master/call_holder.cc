#include "services/master/call_holder.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace cellar::master {

CallHolder::Hold::Hold(Hold&& other) noexcept
    : holder_(other.holder_),
      start_(other.start_),
      until_(other.until_),
      by_deadline_(other.by_deadline_) {
  other.holder_ = nullptr;
}

CallHolder::Hold& CallHolder::Hold::operator=(Hold&& other) noexcept {
  if (this == &other) return *this;
  if (holder_ != nullptr) holder_->Release();
  holder_ = other.holder_;
  start_ = other.start_;
  until_ = other.until_;
  by_deadline_ = other.by_deadline_;
  other.holder_ = nullptr;
  return *this;
}

CallHolder::Hold::~Hold() {
  if (holder_ != nullptr) holder_->Release();
}

absl::Status CallHolder::Hold::Expired(const absl::Status& refusal, absl::Time now) {
  if (holder_ != nullptr) {
    absl::MutexLock l(&holder_->mu_);
    ++holder_->stats_.expired;
  }
  const std::string held = absl::FormatDuration(absl::Trunc(now - start_, absl::Milliseconds(1)));
  const absl::StatusCode code =
      by_deadline_ ? absl::StatusCode::kDeadlineExceeded : refusal.code();
  const std::string message =
      absl::StrCat(refusal.message(), " (held ", held,
                   by_deadline_ ? ", until this call's deadline)"
                                : ", the longest this master holds a call: its --max_hold)");
  absl::Status out(code, message);
  refusal.ForEachPayload([&out](absl::string_view type_url, const absl::Cord& payload) {
    out.SetPayload(type_url, payload);
  });
  return out;
}

std::optional<CallHolder::Hold> CallHolder::TryHold(absl::Time now, absl::Time deadline) {
  if (options_.max_hold <= absl::ZeroDuration()) return std::nullopt;
  const absl::Time by_deadline = deadline - options_.reply_margin;
  const absl::Time by_limit = now + options_.max_hold;
  if (by_deadline <= now) return std::nullopt;
  absl::MutexLock l(&mu_);
  if (stats_.held_now >= options_.max_held) {
    ++stats_.over_bound;
    return std::nullopt;
  }
  ++stats_.held_now;
  ++stats_.held;
  return Hold(this, now, std::min(by_deadline, by_limit), by_deadline <= by_limit);
}

CallHolderStats CallHolder::stats() const {
  absl::MutexLock l(&mu_);
  return stats_;
}

void CallHolder::Release() {
  absl::MutexLock l(&mu_);
  --stats_.held_now;
}

}  // namespace cellar::master
