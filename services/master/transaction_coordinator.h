#ifndef CELLAR_SERVICES_MASTER_TRANSACTION_COORDINATOR_H_
#define CELLAR_SERVICES_MASTER_TRANSACTION_COORDINATOR_H_

// Two-phase commit, master side. Begin hands out a ttid. Finish picks the
// final tid, asks every storage that voted to lock (record the tid
// durably and move the records into place), and once all have locked and
// every transaction with a smaller tid has completed (commits complete in
// tid order), publishes the invalidation, answers, and tells the storages
// to unlock. Abort works until the final tid is picked.
//
// Before locking, ClusterManager::PrepareCommit applies semantics rule 8:
// writable cells of touched partitions that did not vote go OUT_OF_DATE
// (and must replicate past this tid), and the commit is refused if a
// touched partition has no readable cell among the connected voters.
//
// If no storage could lock, the transaction is aborted everywhere and
// Finish fails with UNAVAILABLE. If at least one locked, the transaction
// is committed: voters that failed are retried briefly, then treated as
// gone (ClusterManager::LockFailed: their cells catch up by replication,
// and their vote is resolved when they register again).
//
// Verification (Recover) resolves in-doubt ttids (voted, not locked on
// some storage): what this master knows first (committed with tid /
// aborted / still active), otherwise every connected storage is asked
// (GetTransactionOutcome): if one locked it (locked anywhere = committed),
// the storages that voted lock it with that tid; if none did, and every
// storage that may hold a lock answered (every node with a cell of
// partition(ttid), where a commit must have locked, and the reporters), it
// is aborted everywhere; otherwise it stays in doubt (never aborted
// because a storage could not be reached). Recover resolves first, then
// publishes the last tid, with an invalidation (tid, oids) for each
// transaction it found committed that this master did not know.
//
// What a resolution leaves unsettled (a lock or an abort that failed, a
// storage that did not answer, a possible holder that is DOWN) is retried
// by a background thread, with a backoff (CoordinatorOptions), until every
// involved storage has the outcome or no reporter of the ttid is
// connected any more (it reports its votes again when it registers).
// Storages that register while RUNNING with votes are resolved the same
// way (ResolveInBackground), never on the registering rpc's thread.
//
// Thread-safe. Finish blocks its caller until the transaction completes.

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.pb.h"
#include "services/common/clock.h"
#include "services/master/cluster_manager.h"
#include "services/master/event_hub.h"
#include "services/master/storage_caller.h"
#include "services/master/tid_allocator.h"

namespace cellar::master {

// Counters the coordinator keeps (read by the metrics collector).
struct CoordinatorStats {
  uint64_t begun = 0;
  uint64_t committed = 0;
  uint64_t aborted = 0;
  uint64_t lock_failures = 0;
  uint32_t active = 0;
  // Voters that failed to lock a transaction others locked (treated as gone).
  uint64_t partial_lock_failures = 0;
  // In-doubt transactions verification committed / aborted.
  uint64_t recovered_committed = 0;
  uint64_t recovered_aborted = 0;
};

// Retries of in-doubt ttids (class comment).
struct CoordinatorOptions {
  // How long Finish keeps retrying the lock on the readable cells of a
  // partition none of whose readable cells locked yet, once the
  // transaction is committed elsewhere (it cannot be published before).
  // Default 5 s.
  absl::Duration partial_lock_retry = absl::Seconds(5);
  // Resolution retries (the resolver thread): delay before the first
  // retry, doubling on each failure up to the longest. Default 200 ms,
  // 10 s.
  absl::Duration resolve_initial_backoff = absl::Milliseconds(200);
  absl::Duration resolve_max_backoff = absl::Seconds(10);
};

class TransactionCoordinator {
 public:
  // `cluster`, `storages` and `hub` must outlive the coordinator (its
  // resolver thread uses them until the destructor joins it).
  TransactionCoordinator(const common::Clock* clock, ClusterManager* cluster,
                         StorageCaller* storages, EventHub* hub,
                         CoordinatorOptions options = {});
  ~TransactionCoordinator();

  // A new ttid for client `node_id`. FAILED_PRECONDITION unless RUNNING.
  //
  // Restore (`requested_tid` != 0): the ttid is `requested_tid` and Finish
  // commits with tid == ttid. FAILED_PRECONDITION unless it is above every
  // tid and ttid handed out or recovered (the allocator's floor);
  // INVALID_ARGUMENT above kMaxTid or more than kRestoreHorizon ahead of
  // the clock. The floor moves to it at once, so no other transaction gets
  // a tid or ttid at or below it from then on.
  absl::StatusOr<uint64_t> Begin(uint32_t node_id, uint64_t requested_tid = 0);

  // How far ahead of the clock a restored tid may be: a restore cannot
  // push the TID allocator towards the end of TID space.
  static constexpr absl::Duration kRestoreHorizon = absl::Minutes(10);
  // The highest oid a restore may write (it moves the OID allocator past
  // it: never towards the end of OID space).
  static constexpr uint64_t kMaxRestoredOid = uint64_t{1} << 62;

  // A pre-allocated ttid for client `node_id`, handed out with a Finish
  // answer (FinishRequest.want_next_ttid) instead of a later Begin: begun
  // exactly as Begin does, but at most one per client is open at a time.
  // 0 when none is handed out: not RUNNING, not a registered client, or
  // the client's previous pre-allocated ttid is still active (neither
  // finished nor aborted). Like any begun ttid it ends with the client's
  // session (AbortClientTransactions); docs/protocol.md.
  uint64_t BeginPreallocated(uint32_t node_id);

  // See the class comment. NOT_FOUND (UNKNOWN_TRANSACTION) for a ttid this
  // master does not know or that is not the client's; FAILED_PRECONDITION
  // if it is already finishing/finished/aborted, or for a restore when a
  // later final tid was handed out since its Begin (it is aborted: commits
  // complete in tid order); INVALID_ARGUMENT without voters, or for a
  // restore with an oid above kMaxRestoredOid (a restore moves the OID
  // allocator past the oids it wrote); ABORTED (NOT_CHECKED) or UNAVAILABLE when PrepareCommit refuses
  // (the transaction is aborted); UNAVAILABLE when no storage could lock
  // it (aborted); UNAVAILABLE with reason OUTCOME_UNKNOWN when it cannot
  // tell (a storage that may have locked cannot be reached) or when it is
  // committed but not yet visible (no readable cell of some partition
  // could lock it): GetTransactionStatus tells later.
  absl::StatusOr<uint64_t> Finish(uint32_t node_id, uint64_t ttid, const CommitVotes& votes);

  // Aborts `ttid` on `storage_node_ids` (all running storages if empty).
  // FAILED_PRECONDITION once the final tid is picked. A ttid this master
  // does not know (begun under an earlier primary) is resolved as
  // verification would: FAILED_PRECONDITION saying it committed with its
  // tid if a storage locked it; UNAVAILABLE (retry later, nothing
  // dropped) unless RUNNING or when a storage that may have locked it did
  // not answer; otherwise aborted everywhere (OK).
  absl::Status Abort(uint32_t node_id, uint64_t ttid,
                     const std::vector<uint32_t>& storage_node_ids);

  // Aborts every unfinished transaction of a client that went away.
  void AbortClientTransactions(uint32_t node_id);

  // Outcome of a ttid. For a ttid this master does not know, when RUNNING,
  // asks every connected storage (bounded): COMMITTED with the tid if one
  // locked it, UNKNOWN otherwise (never ABORTED: a holder may be down).
  cellar::v1::GetTransactionStatusResponse Status(uint64_t ttid) const;
  // The client node that began `ttid`, if this master remembers it.
  std::optional<uint32_t> BegunBy(uint64_t ttid) const;

  // Verification: raises the tid floor to `last_tid` (and the in-doubt
  // ttids), then resolves each in-doubt ttid (class comment). `storages`
  // reported them; every connected storage may be asked.
  void Recover(const std::vector<uint64_t>& in_doubt,
               const std::vector<StorageTarget>& storages, uint64_t last_tid);

  // Queues in-doubt `ttids` reported by `reporters` for the resolver
  // thread (class comment); returns at once.
  void ResolveInBackground(const std::vector<uint64_t>& ttids,
                           const std::vector<StorageTarget>& reporters);
  // Waits until the resolver has nothing left to retry. DEADLINE_EXCEEDED
  // after `timeout`, saying how many ttids are left.
  absl::Status AwaitResolved(absl::Duration timeout);

  // Truncate: waits until no Finish is between tid allocation and
  // completion (the cluster is RECOVERING, so new ones fail at once).
  // DEADLINE_EXCEEDED after `timeout`, saying how many are left.
  absl::Status AwaitNoFinishing(absl::Duration timeout);

  // How far the wall clock is behind the last tid (clock went backwards).
  absl::Duration ClockLag() const;

  CoordinatorStats stats() const;

 private:
  // kInDoubt: Finish could not tell whether a storage locked it; the
  // storages decide (locked anywhere = committed).
  enum class TxnState { kActive, kFinishing, kCommitted, kAborted, kInDoubt };
  struct Txn {
    uint32_t node_id = 0;
    TxnState state = TxnState::kActive;
    uint64_t tid = 0;
    // Begun with a requested tid (restore): Finish commits with tid == ttid.
    bool restore = false;
    // kCommitted by Finish without its invalidation (no readable cell of a
    // touched partition could lock it): resolution publishes it.
    bool unpublished = false;
  };
  // A transaction between tid allocation and completion.
  struct Pending {
    uint64_t tid = 0;
    uint64_t ttid = 0;
    std::vector<uint64_t> oids;
    bool locked = false;   // every lock answered (some succeeded)
    bool failed = false;   // no lock succeeded: drop without invalidation
    bool done = false;
  };

  // Finish's lock rounds: who locked, who failed (with the last error of
  // each); failures of connected storages are retried for `retry_for`.
  struct LockRound {
    std::vector<StorageTarget> locked;
    std::vector<StorageTarget> failed;
    absl::flat_hash_map<uint32_t, absl::Status> errors;
    // Node -> the oids it stored, for the lockers that could tell.
    absl::flat_hash_map<uint32_t, std::vector<uint64_t>> stored;
  };
  // Begins a ttid for `node_id` (checks done by the caller).
  uint64_t BeginLocked(uint32_t node_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  LockRound LockWithRetries(const std::vector<StorageTarget>& targets, uint64_t ttid,
                            uint64_t tid, uint64_t ptid,
                            const std::vector<uint32_t>& partitions,
                            absl::Duration retry_for);
  // What every connected storage (and the reporters) know of a ttid.
  struct Survey {
    std::vector<StorageTarget> everyone;  // asked
    std::vector<StorageTarget> voted;     // must lock (or drop) it
    std::vector<StorageTarget> storing;   // never voted: can only drop it
    std::vector<StorageTarget> holders;   // locked it already
    std::optional<uint64_t> locked_tid;
    std::vector<uint64_t> oids;           // from the holders, merged
    // The partitions the holders' locks committed (the first holder that
    // knows them; empty: not known, every stored object).
    std::vector<uint32_t> partitions;
    bool all_answered = true;
    // Every storage that may hold a lock of it answered (class comment).
    bool possible_holders_answered = true;
  };
  Survey Ask(uint64_t ttid, const std::vector<StorageTarget>& reporters) const;

  // The result of one resolution attempt.
  struct Resolution {
    enum class Kind { kLeft, kCommitted, kAborted, kInDoubt } kind = Kind::kInDoubt;
    uint64_t tid = 0;
    // Committed, learned from the storages (this master had not committed
    // it): its invalidation must be published.
    bool learned = false;
    std::vector<uint64_t> oids;
    // Every involved storage has the outcome: nothing to retry.
    bool settled = false;
  };
  // Resolves one in-doubt ttid (Recover, resolver thread).
  Resolution Resolve(uint64_t ttid, const std::vector<StorageTarget>& reporters);
  // Publishes the invalidation of a commit learned from the storages, in
  // tid order with the commits of this term where it can, else at the
  // last published tid.
  void PublishLearnedLocked(uint64_t tid, const std::vector<uint64_t>& oids)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ResolverLoop();
  // Marks a pending transaction failed (completed without invalidation),
  // waits for its turn, and records `state` for it.
  // Finish's exit for a commit locked somewhere that no readable cell of
  // some partition holds: held (ClusterManager::HoldPartitions), marked
  // unpublished, out of the queue; `failed` storages are treated as gone.
  // Returns UNAVAILABLE, OUTCOME_UNKNOWN with `message`.
  absl::Status KeepUnpublished(const std::shared_ptr<Pending>& pending,
                               const std::vector<uint32_t>& partitions,
                               const std::vector<StorageTarget>& locked,
                               const std::vector<uint32_t>& failed,
                               const std::string& message);
  void FailPending(const std::shared_ptr<Pending>& pending, TxnState state,
                   bool lock_failure);
  // Completes the transactions at the head of the queue that are ready.
  void DrainLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetOldLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const common::Clock* clock_;
  ClusterManager* cluster_;
  StorageCaller* storages_;
  EventHub* hub_;
  const CoordinatorOptions options_;

  mutable absl::Mutex mu_;
  TidAllocator tids_ ABSL_GUARDED_BY(mu_);
  // The highest final tid Finish handed out (a restore's tid must be above).
  uint64_t last_final_tid_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<uint64_t, Txn> txns_ ABSL_GUARDED_BY(mu_);
  // Finished ttids in completion order, to bound txns_.
  std::deque<uint64_t> finished_ ABSL_GUARDED_BY(mu_);
  // Transactions being finished, in tid order.
  std::deque<std::shared_ptr<Pending>> queue_ ABSL_GUARDED_BY(mu_);
  CoordinatorStats stats_ ABSL_GUARDED_BY(mu_);
  // Client -> its last pre-allocated ttid (BeginPreallocated); open while
  // that ttid is kActive. Erased when the client goes away.
  absl::flat_hash_map<uint32_t, uint64_t> preallocated_ ABSL_GUARDED_BY(mu_);

  // The resolver's work: in-doubt ttid -> who reported it, when to try.
  struct Retry {
    std::vector<StorageTarget> reporters;
    absl::Time due;
    absl::Duration backoff;
    // Bumped by each report: a resolution that began before a newer
    // report does not settle it.
    uint64_t version = 0;
  };
  mutable absl::Mutex resolver_mu_;
  absl::flat_hash_map<uint64_t, Retry> retries_ ABSL_GUARDED_BY(resolver_mu_);
  // A ttid being resolved by the resolver thread now (0 = none).
  uint64_t resolving_ ABSL_GUARDED_BY(resolver_mu_) = 0;
  // Bumped by ResolveInBackground: wakes the resolver.
  uint64_t resolver_generation_ ABSL_GUARDED_BY(resolver_mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(resolver_mu_) = false;
  std::thread resolver_;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_TRANSACTION_COORDINATOR_H_
