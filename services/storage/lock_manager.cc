#include "services/storage/lock_manager.h"

#include "absl/strings/str_cat.h"
#include "services/common/errors.h"
#include "services/common/ids.h"

namespace cellar::storage {

using ::cellar::common::ErrorWithReason;
using ::cellar::common::FormatOid;
using ::cellar::common::TidHex;

LockManager::TryResult LockManager::TryLock(uint64_t ttid, uint64_t oid) {
  auto it = holders_.find(oid);
  if (it == holders_.end()) {
    holders_.emplace(oid, ttid);
    held_[ttid].insert(oid);
    return TryResult::kGranted;
  }
  if (it->second == ttid) return TryResult::kAlreadyHeld;
  // A committed holder never waits again: waiting for it cannot deadlock.
  if (committed_.contains(it->second)) return TryResult::kWait;
  // Wait-die: the older (smaller ttid) waits, the younger dies.
  return ttid < it->second ? TryResult::kWait : TryResult::kDie;
}

void LockManager::UnlockLocked(uint64_t ttid, uint64_t oid) {
  auto it = holders_.find(oid);
  if (it == holders_.end() || it->second != ttid) return;
  holders_.erase(it);
  auto h = held_.find(ttid);
  if (h != held_.end()) {
    h->second.erase(oid);
    if (h->second.empty()) held_.erase(h);
  }
}

absl::Status LockManager::LockAll(uint64_t ttid, const std::vector<uint64_t>& oids,
                                  absl::Time deadline,
                                  std::vector<uint64_t>* newly_locked) {
  std::vector<uint64_t> acquired;
  absl::Status status;
  absl::MutexLock l(&mu_);
  for (uint64_t oid : oids) {
    while (true) {
      if (shutdown_) {
        status = absl::UnavailableError("storage node is shutting down");
        break;
      }
      TryResult r = TryLock(ttid, oid);
      if (r == TryResult::kGranted) {
        acquired.push_back(oid);
        break;
      }
      if (r == TryResult::kAlreadyHeld) break;
      if (r == TryResult::kDie) {
        status = ErrorWithReason(
            absl::StatusCode::kAborted, common::kReasonLockContention,
            absl::StrCat("oid ", FormatOid(oid), " is locked by older transaction ",
                         TidHex(holders_[oid]), "; transaction ", TidHex(ttid),
                         " must retry (deadlock avoidance)"));
        break;
      }
      // kWait: bounded by the deadline. Running out of patience is lock
      // contention like wait-die's refusal (ABORTED, retry the
      // transaction), not a sign that this node is unreachable: a client
      // that took it for one would commit without this node and the
      // master would mark its healthy cells OUT_OF_DATE.
      if (absl::Now() >= deadline) {
        status = ErrorWithReason(
            absl::StatusCode::kAborted, common::kReasonLockContention,
            absl::StrCat("timed out waiting for the lock of oid ", FormatOid(oid),
                         " held by younger transaction ", TidHex(holders_[oid]),
                         "; transaction ", TidHex(ttid), " must retry"));
        break;
      }
      ++waiting_[ttid];
      ++total_waiting_;
      released_.WaitWithDeadline(&mu_, deadline);
      --total_waiting_;
      if (--waiting_[ttid] == 0) waiting_.erase(ttid);
      if (cancelled_.contains(ttid)) {
        status = absl::AbortedError(absl::StrCat(
            "transaction ", TidHex(ttid), " was aborted while waiting for the lock of oid ",
            FormatOid(oid)));
        // The last of ttid's waiters clears the cancellation: later
        // requests of that ttid are fresh ones.
        if (!waiting_.contains(ttid)) cancelled_.erase(ttid);
        break;
      }
    }
    if (!status.ok()) break;
  }
  if (!status.ok()) {
    for (uint64_t oid : acquired) UnlockLocked(ttid, oid);
    if (!acquired.empty()) released_.SignalAll();
    return status;
  }
  if (newly_locked != nullptr) *newly_locked = std::move(acquired);
  return absl::OkStatus();
}

void LockManager::Unlock(uint64_t ttid, const std::vector<uint64_t>& oids) {
  absl::MutexLock l(&mu_);
  for (uint64_t oid : oids) UnlockLocked(ttid, oid);
  released_.SignalAll();
}

void LockManager::Release(uint64_t ttid) {
  absl::MutexLock l(&mu_);
  auto h = held_.find(ttid);
  if (h != held_.end()) {
    for (uint64_t oid : h->second) holders_.erase(oid);
    held_.erase(h);
  }
  committed_.erase(ttid);
  if (waiting_.contains(ttid)) cancelled_.insert(ttid);
  released_.SignalAll();
}

void LockManager::MarkCommitted(uint64_t ttid) {
  absl::MutexLock l(&mu_);
  if (held_.contains(ttid)) committed_.insert(ttid);
}

uint64_t LockManager::Holder(uint64_t oid) const {
  absl::MutexLock l(&mu_);
  auto it = holders_.find(oid);
  return it == holders_.end() ? 0 : it->second;
}

size_t LockManager::locked_count() const {
  absl::MutexLock l(&mu_);
  return holders_.size();
}

size_t LockManager::waiting_count() const {
  absl::MutexLock l(&mu_);
  return total_waiting_;
}

void LockManager::Shutdown() {
  absl::MutexLock l(&mu_);
  shutdown_ = true;
  released_.SignalAll();
}

}  // namespace cellar::storage
