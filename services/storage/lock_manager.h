#ifndef CELLAR_SERVICES_STORAGE_LOCK_MANAGER_H_
#define CELLAR_SERVICES_STORAGE_LOCK_MANAGER_H_

// Per-OID write locks owned by transactions (ttids), deadlock-free by
// WAIT-DIE on ttid age (ttids grow with time, so smaller = older):
//
//   * the lock is free, or already held by the same ttid: granted;
//   * held by a YOUNGER ttid: an older requester waits, until the holder
//     releases it or the deadline passes (DEADLINE_EXCEEDED);
//   * held by an OLDER ttid: a younger requester fails at once with ABORTED,
//     reason LOCK_CONTENTION (it must retry the whole transaction).
//
// Only older transactions ever wait for younger ones, so the wait-for graph
// has no cycle: no deadlock. Release(ttid) frees every lock of a ttid,
// wakes waiters and cancels that ttid's own pending waits (ABORTED): a
// transaction aborted while one of its stores waits does not get the lock
// afterwards.
//
// Thread-safe. Waits use the real clock (absl::CondVar deadlines).

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace cellar::storage {

class LockManager {
 public:
  LockManager() = default;
  LockManager(const LockManager&) = delete;
  LockManager& operator=(const LockManager&) = delete;

  // Locks every oid of `oids` for `ttid` (in the given order), waiting up
  // to `deadline` where wait-die allows. On success, `newly_locked` (if not
  // null) receives the oids this call acquired (not those the ttid already
  // held). On error nothing this call acquired stays locked. Errors:
  // ABORTED (LOCK_CONTENTION) against an older holder, ABORTED if the ttid
  // is released while waiting, DEADLINE_EXCEEDED, UNAVAILABLE after
  // Shutdown.
  absl::Status LockAll(uint64_t ttid, const std::vector<uint64_t>& oids,
                       absl::Time deadline,
                       std::vector<uint64_t>* newly_locked = nullptr);

  // Releases the given oids if `ttid` holds them (others are ignored).
  void Unlock(uint64_t ttid, const std::vector<uint64_t>& oids);

  // Releases every lock of `ttid` and cancels its pending waits. Idempotent.
  void Release(uint64_t ttid);

  // `ttid` is committed on this node (locked: its records are in place) and
  // only awaits its unlock. It will never wait for a lock again, so any
  // transaction, younger ones included, may wait for its locks without
  // risking a deadlock (instead of dying with LOCK_CONTENTION). Cleared by
  // Release.
  void MarkCommitted(uint64_t ttid);

  // The ttid holding `oid`, 0 if none.
  uint64_t Holder(uint64_t oid) const;

  // Number of oids locked / of requests currently waiting.
  size_t locked_count() const;
  size_t waiting_count() const;

  // Fails every pending and future wait with UNAVAILABLE (node shutdown).
  void Shutdown();

 private:
  // Tries to take `oid`; returns OK, LOCK_CONTENTION, or "must wait"
  // (kUnavailable is never returned from here).
  enum class TryResult { kGranted, kAlreadyHeld, kWait, kDie };
  TryResult TryLock(uint64_t ttid, uint64_t oid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnlockLocked(uint64_t ttid, uint64_t oid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::CondVar released_;
  // oid -> holder ttid.
  absl::flat_hash_map<uint64_t, uint64_t> holders_ ABSL_GUARDED_BY(mu_);
  // ttid -> oids it holds.
  absl::flat_hash_map<uint64_t, absl::flat_hash_set<uint64_t>> held_
      ABSL_GUARDED_BY(mu_);
  // ttid -> number of its requests waiting right now.
  absl::flat_hash_map<uint64_t, int> waiting_ ABSL_GUARDED_BY(mu_);
  // Holders that are committed (see MarkCommitted).
  absl::flat_hash_set<uint64_t> committed_ ABSL_GUARDED_BY(mu_);
  // ttids released while some of their requests were waiting.
  absl::flat_hash_set<uint64_t> cancelled_ ABSL_GUARDED_BY(mu_);
  size_t total_waiting_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_LOCK_MANAGER_H_
