#ifndef CELLAR_SERVICES_STORAGE_TRANSACTION_MANAGER_H_
#define CELLAR_SERVICES_STORAGE_TRANSACTION_MANAGER_H_

// The transactions in commit on this storage node (two-phase commit, the
// storage side; see semantics.md "Commit"):
//
//   Store*  -> STORING  objects validated, OID write locks taken, conflicts
//                       checked on readable cells; objects kept in memory
//   Vote    -> VOTED    temporary records (and the transaction record, on
//                       the cells of partition(ttid)) made durable
//   Lock    -> LOCKED   final tid recorded and records moved into place
//                       (the transaction is committed on this node)
//   Unlock  -> (gone)   object locks released
//   Abort   -> (gone)   locks released, temporary records dropped;
//                       refused once LOCKED; a client's own abort
//                       (unfenced) only before the vote
//   ExpireUnvoted -> (gone)  a STORING transaction idle for
//                       unvoted_timeout (its client went away): aborted
//                       by the storage itself
//
// A restart keeps the votes and their object locks: RecoverVoted takes
// the locks again from the stored temporary records.
//
// Errors (with ErrorInfo reasons, see services/common/errors.h):
//   Store: RESOURCE_EXHAUSTED TOO_LARGE; INVALID_ARGUMENT CHECKSUM_MISMATCH
//   or malformed object; UNAVAILABLE NOT_READABLE without a writable cell;
//   ABORTED CONFLICT (ConflictDetail) / LOCK_CONTENTION; DEADLINE_EXCEEDED
//   waiting for a lock; FAILED_PRECONDITION UNKNOWN_TRANSACTION after an
//   abort or an expiry, FAILED_PRECONDITION once voted. On any error nothing of that
//   call is kept (locks it took are released), the transaction stays open.
//   Vote: NOT_FOUND UNKNOWN_TRANSACTION for a ttid with no store and no
//   metadata; a failed vote is final (abort the transaction).
//   Lock: NOT_FOUND UNKNOWN_TRANSACTION without a vote; idempotent.
//   Unlock, Abort: idempotent (unknown ttids are fine).
//
// Thread-safe. Store may block (lock waits, bounded by its deadline); Vote
// and Lock block on the write batcher (group commit).

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/clock.h"
#include "services/storage/backend/storage_backend.h"
#include "services/storage/cell_view.h"
#include "services/storage/lock_manager.h"
#include "services/storage/write_batcher.h"

namespace cellar::storage {

// One object of a Store call.
struct StoreObject {
  uint64_t oid = 0;
  // The serial the transaction read (0 for a new object).
  uint64_t base_serial = 0;
  std::string data;
  // SHA-1 of data, 20 bytes.
  std::string checksum;
  // Undo: the revision whose data this one re-uses (data must be empty).
  uint64_t data_serial = 0;
  // Read-current check: lock the oid and check base_serial, store nothing
  // (data, checksum and data_serial empty; base_serial > 0).
  bool check_only = false;
};

// The transaction record a client sends with its vote to the cells of
// partition(ttid).
struct TransactionMetadata {
  std::string user;
  std::string description;
  std::string extension;
  // Every oid the transaction stores (all partitions).
  std::vector<uint64_t> oids;
  // Total bytes of object data the transaction stores, all partitions, as
  // the client says (informational: stored with the record, not checked).
  uint64_t size_bytes = 0;
};

struct TransactionManagerOptions {
  // Largest object accepted, bytes. Default 16 MiB.
  size_t max_object_bytes = 16 << 20;
  // How many finished (aborted / unlocked) ttids are remembered, so late
  // or repeated calls get the right answer. Default 100000.
  size_t remember_finished = 100000;
  // A transaction still storing (no vote yet) with no Store call for this
  // long is aborted by ExpireUnvoted: its object locks do not outlive a
  // client that went away. Zero or less: never. Default 60 s.
  absl::Duration unvoted_timeout = absl::Seconds(60);
};

// Which stored objects a lock commits: those of `partitions` (the
// partitions the commit touches, an oid's being oid % num_partitions); the
// others are dropped (LockRecord::partitions). No partitions: all.
struct LockScope {
  std::vector<uint32_t> partitions;
  uint32_t num_partitions = 0;
};

class TransactionManager {
 public:
  enum class State { kStoring, kVoting, kVoted, kVoteFailed, kLocking, kLocked };

  // None of the pointers is owned; all must outlive the manager. `clock`
  // (for unvoted_timeout) null = the real clock.
  TransactionManager(StorageBackend* backend, LockManager* locks,
                     WriteBatcher* batcher, TransactionManagerOptions options,
                     common::Clock* clock = nullptr);

  TransactionManager(const TransactionManager&) = delete;
  TransactionManager& operator=(const TransactionManager&) = delete;

  // Registers transactions found voted in the database at start (in doubt
  // after a restart): they can be locked or aborted, and they hold their
  // object locks again, as before the restart, until then (a store of one
  // of their objects by another transaction waits or dies by the lock
  // rules instead of passing the conflict check on the old serial). Call
  // before any Store. Returns how many object locks it could not take
  // (logged; 0 unless two stored votes name the same oid).
  size_t RecoverVoted(const std::vector<VotedTransaction>& voted);

  // Stores `objects` for `ttid` (see the class comment). Lock waits give up
  // at `lock_deadline`.
  absl::Status Store(uint64_t ttid, uint32_t client_node_id,
                     std::vector<StoreObject> objects, const CellView& view,
                     absl::Time lock_deadline);

  // Makes the transaction durable on this node. `metadata` is set on the
  // cells of partition(ttid) (the record is stored with partition =
  // ttid % num_partitions); the node then needs a writable cell there.
  // Idempotent once voted.
  absl::Status Vote(uint64_t ttid, uint32_t client_node_id,
                    const std::optional<TransactionMetadata>& metadata,
                    const CellView& view);

  // Records the final tid durably (LockTransactions). Idempotent. When
  // `stored_oids` is given, it is set on success to the oids this node
  // stored for the transaction and commits (read-current checks and
  // objects outside `scope` excluded), or to nullopt when it cannot tell
  // (locked or committed before a restart).
  absl::Status Lock(uint64_t ttid, uint64_t tid,
                    std::optional<std::vector<uint64_t>>* stored_oids = nullptr,
                    const LockScope& scope = {});

  // One lock of LockMany: in ttid, tid, scope; out result, stored_oids.
  struct LockItem {
    uint64_t ttid = 0;
    uint64_t tid = 0;
    LockScope scope;
    std::optional<std::vector<uint64_t>> stored_oids;
    absl::Status result;
  };
  // Locks each item exactly as Lock would, the ones that need a write in
  // one group-commit batch (WriteBatcher::LockMany); each item's result is
  // its own. A ttid that appears twice: the later items fail with
  // INVALID_ARGUMENT.
  void LockMany(std::vector<LockItem>& items);

  // What Unlock knew of the transaction record the vote wrote here.
  struct UnlockedRecord {
    // The transaction was voted by this process (not recovered after a
    // restart): `oids` tells; else nothing is known.
    bool known = false;
    // The oids of the record the vote wrote (its metadata.oids), sorted
    // and unique; nullopt when the vote wrote no record here.
    std::optional<std::vector<uint64_t>> oids;
  };
  // Releases the transaction's object locks and forgets it. Idempotent.
  // FAILED_PRECONDITION if it is known but not locked. `record`, if given,
  // is set on success.
  absl::Status Unlock(uint64_t ttid, UnlockedRecord* record = nullptr);

  // Forgets every LOCKED transaction (committed here) and releases its
  // object locks, as Unlock would; returns how many. For a node that
  // registers again: its master session changed and the Unlock may never
  // come (a master that restarted, or one that counted the lock as
  // failed). Releasing early is safe: the records are in place, so a later
  // store sees the new serial in its conflict check.
  size_t ReleaseLocked();

  // Truncate: forgets every transaction in commit (waiting for votes and
  // locks in progress to settle): aborts the unlocked ones, releases the
  // locked ones (ReleaseLocked). Returns how many it forgot.
  size_t ForgetAll();

  // Drops the transaction: releases its locks and temporary records.
  // FAILED_PRECONDITION once locked; OK for unknown ttids. Without
  // `drop_voted` (a client's own, unfenced abort) also FAILED_PRECONDITION
  // once voted: only the master decides about a vote.
  absl::Status Abort(uint64_t ttid, bool drop_voted = true);

  // Aborts every transaction still storing (no vote in progress or done,
  // no Store call in progress) whose last Store call ended at least
  // unvoted_timeout ago by the clock: releases its object locks and drops
  // what it stored. A later Store or Vote of it is FAILED_PRECONDITION
  // UNKNOWN_TRANSACTION ("expired"). Returns the expired ttids. Called
  // periodically by the storage node, outside the data-path calls.
  std::vector<uint64_t> ExpireUnvoted();

  // ttids VOTED here (not locking, locked or aborted) whose vote is at
  // least `age` old by the clock (recovered votes count from the restart),
  // at most `limit`: the master is asked to resolve them (the node's
  // heartbeat), since their outcome may never reach this node otherwise.
  std::vector<uint64_t> StaleVotes(absl::Duration age, size_t limit) const;

  // In-doubt votes (semantics rule R11): a vote this node holds across a
  // change of master session (a restart, or a registration with a master:
  // a new primary, or one that counted this node's lock as failed) may
  // belong to a transaction that committed elsewhere, with a tid above its
  // ttid, that this node does not hold yet. Until the master locks or
  // aborts it, this node answers no read that such a commit could change:
  // no load of its objects at a snapshot past its ttid, and no replication
  // claim past its ttid in its partitions.
  //
  // Marks every vote held now (voted or locking) in doubt; returns how
  // many. Called before each registration.
  size_t MarkVotesInDoubt();
  // The ttid of the in-doubt vote holding `oid`, or 0.
  uint64_t InDoubtVoteOn(uint64_t oid) const;
  // The lowest ttid of an in-doubt vote touching `partition` (an object of
  // it, or its transaction record, partition ttid % num_partitions), or 0.
  uint64_t LowestInDoubtVote(uint32_t partition, uint32_t num_partitions) const;

  // What this manager knows of `ttid` (verification): in commit (storing,
  // voted, locked with tid), or recently finished (committed with tid,
  // aborted), or nothing.
  struct Known {
    enum Kind { kNothing, kStoring, kVoted, kLocked, kAborted } kind = kNothing;
    uint64_t tid = 0;  // kLocked
    // kLocked: the partitions the lock committed, from the durable lock
    // record (StorageNode::TransactionOutcome fills them; empty: every
    // stored object, or the record is gone).
    std::vector<uint32_t> partitions;
  };
  Known KnownState(uint64_t ttid) const;

  // Transactions currently known (in commit).
  size_t open_transactions() const;
  // Their ttids, in no particular order.
  std::vector<uint64_t> OpenTransactionIds() const;
  // The state of `ttid`, or nullopt if not in commit here.
  std::optional<State> StateOf(uint64_t ttid) const;
  // ttids in commit for `client_node_id`.
  std::vector<uint64_t> TransactionsOfClient(uint32_t client_node_id) const;

 private:
  struct Txn {
    uint32_t client_node_id = 0;
    State state = State::kStoring;
    // oid -> record; kept until the vote writes them.
    std::map<uint64_t, ObjectRecord> objects;
    // Store calls in progress (waiting for locks, checking conflicts).
    int active_stores = 0;
    // When the last Store call began or ended (unvoted_timeout).
    absl::Time last_activity;
    uint64_t tid = 0;
    // Set once voted: the voted objects (LowestInDoubtVote).
    std::vector<uint64_t> voted_oids;
    // Set once voted with the transaction record: its oids, sorted and
    // unique (Unlock: the master may correct them).
    std::optional<std::vector<uint64_t>> record_oids;
    // Voted by this process (record_oids tells), not recovered.
    bool voted_here = false;
    // MarkVotesInDoubt (recovered votes too).
    bool in_doubt = false;
  };
  // kExpired: aborted by ExpireUnvoted.
  enum class Finished { kAborted, kCommitted, kExpired };
  struct FinishedInfo {
    Finished how;
    uint64_t tid;
  };

  // FAILED_PRECONDITION UNKNOWN_TRANSACTION for a finished `ttid`.
  absl::Status FinishedError(uint64_t ttid, Finished how) const;
  absl::Status ValidateObjects(const std::vector<StoreObject>& objects,
                               const CellView& view) const;
  // A stored object's size, checksum and undo rules.
  absl::Status ValidateData(const StoreObject& o) const;
  absl::Status CheckConflicts(const std::vector<StoreObject>& objects,
                              const CellView& view);
  void RememberFinished(uint64_t ttid, Finished how, uint64_t tid)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // LockMany's first step for one item: decides it without a write (sets
  // item.result; false) or marks it kLocking (true: it needs its lock
  // record written, then CompleteLock).
  bool PrepareLock(LockItem& item);
  // LockMany's last step for an item PrepareLock marked, once its lock
  // record was written (item.result).
  void CompleteLock(LockItem& item);
  // Waits while `ttid` is being voted or locked.
  void AwaitSettled(uint64_t ttid) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Settled(uint64_t ttid) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  StorageBackend* const backend_;
  LockManager* const locks_;
  WriteBatcher* const batcher_;
  const TransactionManagerOptions options_;
  common::Clock* const clock_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Txn> txns_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, FinishedInfo> finished_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> finished_order_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_TRANSACTION_MANAGER_H_
