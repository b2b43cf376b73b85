#include "services/master/lease_election.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/logging.h"

namespace cellar::master {

absl::Time LeaseMonoNow() {
  return absl::UnixEpoch() + absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
}

std::string DefaultLeaseHolder(const std::string& address) {
  std::random_device device;
  std::mt19937_64 rng((static_cast<uint64_t>(device()) << 32) ^ device() ^
                      static_cast<uint64_t>(::getpid()));
  return absl::StrCat(address, "/", ::getpid(), "/", absl::Hex(rng(), absl::kZeroPad16));
}

LeaseElection::LeaseElection(LeaseTiming timing, std::unique_ptr<LeaseBackend> backend)
    : timing_(std::move(timing)), backend_(std::move(backend)) {
  worker_ = std::thread([this] { WorkerLoop(); });
  watchdog_ = std::thread([this] { WatchdogLoop(); });
}

LeaseElection::~LeaseElection() {
  Resign();
  {
    absl::MutexLock l(&mu_);
    exit_ = true;
    cv_.SignalAll();
  }
  if (worker_.joinable()) worker_.join();
  if (watchdog_.joinable()) watchdog_.join();
}

void LeaseElection::SetLostCallback(LostCallback callback) {
  absl::MutexLock l(&mu_);
  on_lost_ = std::move(callback);
}

absl::StatusOr<uint64_t> LeaseElection::Campaign(absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  if (stopping_) return absl::CancelledError("election: resigned");
  if (state_ == State::kPrimary) {
    return absl::FailedPreconditionError("election: already the primary");
  }
  ++waiters_;
  // A new Campaign() tries at once, then at the worker's pace.
  next_attempt_ = absl::InfinitePast();
  const uint64_t start_attempts = attempts_;
  const absl::Time end =
      timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : LeaseMonoNow() + timeout;
  cv_.SignalAll();
  while (state_ != State::kPrimary && !stopping_ &&
         !(attempts_ > start_attempts && LeaseMonoNow() >= end)) {
    if (attempts_ > start_attempts && end != absl::InfiniteFuture()) {
      cv_.WaitWithTimeout(&mu_, std::max(end - LeaseMonoNow(), absl::Milliseconds(1)));
    } else {
      cv_.Wait(&mu_);
    }
  }
  --waiters_;
  if (state_ == State::kPrimary) return epoch_;
  if (stopping_) return absl::CancelledError("election: resigned");
  if (last_error_.empty() && !primary_address_.empty()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "election: another master holds the lease (primary is ", primary_address_, ")"));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "election: not the primary after ", absl::FormatDuration(timeout),
      primary_address_.empty() ? std::string()
                               : absl::StrCat(" (primary is ", primary_address_, ")"),
      last_error_.empty() ? std::string() : absl::StrCat(": ", last_error_)));
}

bool LeaseElection::IsPrimary() const {
  absl::MutexLock l(&mu_);
  return state_ == State::kPrimary && LeaseMonoNow() < deadline_;
}

uint64_t LeaseElection::epoch() const {
  absl::MutexLock l(&mu_);
  return epoch_;
}

std::string LeaseElection::PrimaryAddress() const {
  absl::MutexLock l(&mu_);
  return primary_address_;
}

std::string LeaseElection::last_error() const {
  absl::MutexLock l(&mu_);
  return last_error_;
}

void LeaseElection::Resign() {
  absl::MutexLock l(&mu_);
  if (!stopping_) {
    stopping_ = true;
    if (state_ == State::kPrimary) {
      CELLAR_LOG(INFO) << "election: resigning epoch " << epoch_;
      if (release_on_stop_) {
        release_pending_ = true;
        release_epoch_ = epoch_;
      }
    }
    state_ = State::kStopped;
    cv_.SignalAll();
  }
  // Give the worker a bounded time to hand the lease back, so that a
  // standby can take over at once.
  const absl::Time end = LeaseMonoNow() + timing_.release_wait;
  while (release_pending_ && !exit_ && LeaseMonoNow() < end) {
    cv_.WaitWithTimeout(&mu_, std::max(end - LeaseMonoNow(), absl::Milliseconds(1)));
  }
}

void LeaseElection::Abandon() {
  absl::MutexLock l(&mu_);
  stopping_ = true;
  release_on_stop_ = false;
  release_pending_ = false;
  cv_.SignalAll();
}

LeaseElection::LostCallback LeaseElection::EndTermLocked(uint64_t term, const char* why) {
  if (state_ != State::kPrimary || term_ != term) return nullptr;
  CELLAR_LOG(WARNING) << "election: no longer the primary (epoch " << epoch_ << "): " << why;
  state_ = stopping_ ? State::kStopped : State::kStandby;
  if (release_on_stop_) {
    // Our term is over whatever happens next; if the lease is still ours,
    // giving it back lets a standby take over before it expires.
    release_pending_ = true;
    release_epoch_ = epoch_;
  }
  cv_.SignalAll();
  return on_lost_ ? on_lost_ : [] {};
}

void LeaseElection::RecordError(const absl::Status& status) {
  const std::string text(status.message());
  if (text != last_error_) {
    CELLAR_LOG(WARNING) << "election: " << text;
  }
  last_error_ = text;
}

void LeaseElection::WorkerLoop() {
  enum class Action { kAttempt, kRenew, kRelease, kExit };
  while (true) {
    Action action;
    uint64_t release_epoch = 0;
    {
      absl::MutexLock l(&mu_);
      while (true) {
        const absl::Time now = LeaseMonoNow();
        if (release_pending_) {
          action = Action::kRelease;
          release_epoch = release_epoch_;
          break;
        }
        if (exit_) {
          action = Action::kExit;
          break;
        }
        absl::Duration wait = absl::InfiniteDuration();
        if (state_ == State::kPrimary && !stopping_) {
          if (now >= next_renew_) {
            action = Action::kRenew;
            break;
          }
          wait = next_renew_ - now;
        } else if (state_ == State::kStandby && !stopping_ && waiters_ > 0) {
          if (now >= next_attempt_) {
            action = Action::kAttempt;
            // The next one a retry interval after this one started.
            next_attempt_ = now + timing_.retry_interval;
            break;
          }
          wait = next_attempt_ - now;
        }
        if (wait == absl::InfiniteDuration()) {
          cv_.Wait(&mu_);
        } else {
          cv_.WaitWithTimeout(&mu_, wait);
        }
      }
    }
    switch (action) {
      case Action::kExit:
        backend_->Close();
        return;
      case Action::kRelease:
        Release(release_epoch);
        break;
      case Action::kRenew:
        Renew();
        break;
      case Action::kAttempt:
        Attempt();
        break;
    }
  }
}

void LeaseElection::Release(uint64_t epoch) {
  const LeaseBackend::Released r = backend_->Release(epoch);
  absl::MutexLock l(&mu_);
  if (!r.error.ok()) {
    RecordError(r.error);
  } else if (r.released) {
    CELLAR_LOG(INFO) << "election: lease of epoch " << epoch << " given back";
  }
  release_pending_ = false;
  cv_.SignalAll();
}

void LeaseElection::Attempt() {
  const LeaseBackend::Acquired r = backend_->Acquire();
  absl::MutexLock l(&mu_);
  ++attempts_;
  cv_.SignalAll();
  if (!r.error.ok()) {
    RecordError(r.error);
    return;
  }
  last_error_.clear();
  if (r.epoch == 0) {
    if (r.primary_address.has_value()) primary_address_ = *r.primary_address;
    return;
  }
  const absl::Time deadline = r.term_start + timing_.term;
  if (state_ != State::kStandby || stopping_ || waiters_ == 0 || LeaseMonoNow() >= deadline) {
    // Nobody wants the term any more, or the call took so long that the
    // term is over on arrival: give it back.
    if (release_on_stop_ || !stopping_) {
      release_pending_ = true;
      release_epoch_ = r.epoch;
    }
    return;
  }
  state_ = State::kPrimary;
  ++term_;
  epoch_ = r.epoch;
  deadline_ = deadline;
  next_renew_ = r.term_start + timing_.renew_interval;
  primary_address_ = timing_.address;
  CELLAR_LOG(INFO) << "election: primary of cluster \"" << timing_.cluster << "\" with epoch "
                   << r.epoch << " (" << timing_.description << ")";
}

void LeaseElection::Renew() {
  uint64_t term, epoch;
  {
    absl::MutexLock l(&mu_);
    term = term_;
    epoch = epoch_;
  }
  // The term is extended from the start of this renewal: the write that
  // makes it count happens later than this.
  const absl::Time started = LeaseMonoNow();
  const LeaseBackend::Renewed r = backend_->Renew(epoch);
  LostCallback lost;
  {
    absl::MutexLock l(&mu_);
    if (state_ != State::kPrimary || term_ != term) return;  // ended meanwhile
    if (!r.error.ok()) {
      RecordError(r.error);
      // Keep trying; the watchdog ends the term at its deadline.
      next_renew_ =
          LeaseMonoNow() + std::max(timing_.renew_interval / 4, absl::Milliseconds(20));
      return;
    }
    if (r.lost != nullptr) {
      if (r.primary_address.has_value()) primary_address_ = *r.primary_address;
      lost = EndTermLocked(term, r.lost);
    } else {
      last_error_.clear();
      deadline_ = std::max(deadline_, started + timing_.term);
      next_renew_ = started + timing_.renew_interval;
      cv_.SignalAll();
    }
  }
  if (lost) lost();
}

void LeaseElection::WatchdogLoop() {
  absl::MutexLock l(&mu_);
  while (!exit_) {
    if (state_ != State::kPrimary) {
      cv_.Wait(&mu_);
      continue;
    }
    const absl::Time now = LeaseMonoNow();
    if (now < deadline_) {
      cv_.WaitWithTimeout(&mu_, deadline_ - now);
      continue;
    }
    LostCallback lost = EndTermLocked(term_, "the lease was not renewed in time");
    if (lost) {
      mu_.Unlock();
      lost();
      mu_.Lock();
    }
  }
}

}  // namespace cellar::master
