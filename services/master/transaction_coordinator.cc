#include "services/master/transaction_coordinator.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_set.h"
#include "absl/time/clock.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/errors.h"
#include "services/common/ids.h"
#include "services/common/logging.h"

namespace cellar::master {
namespace {

// How many finished transactions GetTransactionStatus remembers.
constexpr size_t kRememberFinished = 100000;

absl::Status UnknownTransaction(uint64_t ttid) {
  return common::ErrorWithReason(
      absl::StatusCode::kNotFound, common::kReasonUnknownTransaction,
      absl::StrCat("ttid ", common::TidHex(ttid), " is not an open transaction of this client"));
}

}  // namespace

TransactionCoordinator::TransactionCoordinator(const common::Clock* clock,
                                               ClusterManager* cluster,
                                               StorageCaller* storages, EventHub* hub,
                                               CoordinatorOptions options)
    : clock_(clock),
      cluster_(cluster),
      storages_(storages),
      hub_(hub),
      options_(options),
      tids_(clock) {
  resolver_ = std::thread([this] { ResolverLoop(); });
}

TransactionCoordinator::~TransactionCoordinator() {
  {
    absl::MutexLock l(&resolver_mu_);
    stop_ = true;
  }
  resolver_.join();
}

absl::StatusOr<uint64_t> TransactionCoordinator::Begin(uint32_t node_id,
                                                       uint64_t requested_tid) {
  if (requested_tid > common::kMaxTid) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tid: ", requested_tid, " is above the largest tid ", common::TidHex(common::kMaxTid)));
  }
  if (absl::Status s = cluster_->CheckRunning(); !s.ok()) return s;
  if (absl::Status s = cluster_->CheckClient(node_id); !s.ok()) return s;
  absl::MutexLock l(&mu_);
  if (requested_tid == 0) return BeginLocked(node_id);
  // A restore: checked here, under mu_, against the floor every other
  // Begin and Finish moves.
  const uint64_t horizon = common::TidFromTime(clock_->Now() + kRestoreHorizon);
  if (requested_tid > horizon) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tid: ", common::TidHex(requested_tid), " is more than ",
        absl::FormatDuration(kRestoreHorizon), " ahead of the master's clock (",
        common::TidHex(horizon), " at most)"));
  }
  if (requested_tid <= tids_.last()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "tid: ", common::TidHex(requested_tid), " is not above the last tid handed out ",
        common::TidHex(tids_.last()),
        ": a restore must come in increasing tid order, into a cluster with nothing newer"));
  }
  const uint64_t ttid = requested_tid;
  tids_.AdvanceTo(ttid);
  txns_[ttid] = Txn{node_id, TxnState::kActive, 0, /*restore=*/true};
  ++stats_.begun;
  ++stats_.active;
  return ttid;
}

uint64_t TransactionCoordinator::BeginLocked(uint32_t node_id) {
  const uint64_t ttid = tids_.NextTtid();
  txns_[ttid] = Txn{node_id, TxnState::kActive, 0};
  ++stats_.begun;
  ++stats_.active;
  return ttid;
}

uint64_t TransactionCoordinator::BeginPreallocated(uint32_t node_id) {
  if (!cluster_->CheckRunning().ok() || !cluster_->CheckClient(node_id).ok()) return 0;
  absl::MutexLock l(&mu_);
  auto previous = preallocated_.find(node_id);
  if (previous != preallocated_.end()) {
    auto it = txns_.find(previous->second);
    // Still open (unused, or used by a transaction not finished yet): one
    // per client, so a client cannot make the master hold more of them.
    if (it != txns_.end() && it->second.state == TxnState::kActive) return 0;
  }
  const uint64_t ttid = BeginLocked(node_id);
  preallocated_[node_id] = ttid;
  return ttid;
}

namespace {

// Lock errors after which the storage may have locked all the same (the
// answer, not the request, may be what got lost).
bool MayHaveLocked(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded ||
         s.code() == absl::StatusCode::kCancelled || s.code() == absl::StatusCode::kUnknown ||
         s.code() == absl::StatusCode::kInternal;
}

bool Contains(const std::vector<StorageTarget>& targets, uint32_t id) {
  return std::any_of(targets.begin(), targets.end(),
                     [&](const StorageTarget& t) { return t.node_id == id; });
}

// The oids a commit changed, to publish as its invalidation. Per touched
// partition: what the storages that locked it there report having stored
// (never only what the client claims: a client that left an oid out of its
// Finish would otherwise leave other clients' caches stale); the client's
// list only where none of them could tell (storages of an older version, or
// one that found the lock already done after a restart).
std::vector<uint64_t> CommittedOids(
    const std::vector<uint64_t>& client_oids,
    const absl::btree_map<uint32_t, std::vector<uint32_t>>& voters_by_partition,
    const absl::flat_hash_map<uint32_t, std::vector<uint64_t>>& stored,
    uint32_t num_partitions) {
  absl::btree_set<uint64_t> oids;
  absl::flat_hash_set<uint32_t> told;
  for (const auto& [partition, voters] : voters_by_partition) {
    for (uint32_t id : voters) {
      auto it = stored.find(id);
      if (it == stored.end()) continue;
      told.insert(partition);
      for (uint64_t oid : it->second) {
        if (oid % num_partitions == partition) oids.insert(oid);
      }
    }
  }
  for (uint64_t oid : client_oids) {
    if (!told.contains(static_cast<uint32_t>(oid % num_partitions))) oids.insert(oid);
  }
  return std::vector<uint64_t>(oids.begin(), oids.end());
}

}  // namespace

TransactionCoordinator::LockRound TransactionCoordinator::LockWithRetries(
    const std::vector<StorageTarget>& targets, uint64_t ttid, uint64_t tid, uint64_t ptid,
    const std::vector<uint32_t>& partitions, absl::Duration retry_for) {
  LockRound round;
  std::vector<StorageTarget> pending = targets;
  const absl::Time give_up = absl::Now() + retry_for;
  for (int attempt = 0; !pending.empty(); ++attempt) {
    if (attempt > 0) {
      // A busy database, a dropped connection, a storage restarting: pause
      // and retry the ones still connected.
      absl::SleepFor(std::min(absl::Milliseconds(50) * attempt, absl::Milliseconds(500)));
    }
    std::vector<absl::StatusOr<LockedOids>> results =
        storages_->LockAll(pending, cluster_->epoch(), ttid, tid, ptid, partitions);
    std::vector<StorageTarget> retry;
    for (size_t i = 0; i < results.size(); ++i) {
      if (results[i].ok()) {
        round.locked.push_back(pending[i]);
        round.errors.erase(pending[i].node_id);
        if (results[i]->known) round.stored[pending[i].node_id] = std::move(results[i]->oids);
        continue;
      }
      round.errors[pending[i].node_id] = results[i].status();
      if (absl::Now() < give_up && cluster_->IsConnected(pending[i].node_id)) {
        retry.push_back(pending[i]);
      } else {
        round.failed.push_back(pending[i]);
      }
    }
    pending = std::move(retry);
  }
  return round;
}

absl::StatusOr<uint64_t> TransactionCoordinator::Finish(uint32_t node_id, uint64_t ttid,
                                                        const CommitVotes& votes) {
  if (votes.voters.empty()) {
    return absl::InvalidArgumentError(
        "partition_voters: a transaction must vote on at least one storage");
  }
  const uint32_t num_partitions = std::max<uint32_t>(cluster_->num_partitions(), 1);
  std::vector<uint32_t> partitions;
  {
    absl::flat_hash_set<uint32_t> seen;
    auto add = [&](uint32_t p) {
      if (seen.insert(p).second) partitions.push_back(p);
    };
    add(static_cast<uint32_t>(ttid % num_partitions));
    for (uint64_t oid : votes.oids) add(static_cast<uint32_t>(oid % num_partitions));
    for (const auto& [p, unused] : votes.voters) {
      if (p < num_partitions) add(p);
    }
    std::sort(partitions.begin(), partitions.end());
  }
  const uint64_t max_oid =
      votes.oids.empty() ? 0 : *std::max_element(votes.oids.begin(), votes.oids.end());
  std::shared_ptr<Pending> pending;
  bool restore = false;
  bool restore_overtaken = false;
  {
    absl::MutexLock l(&mu_);
    auto it = txns_.find(ttid);
    if (it == txns_.end() || it->second.node_id != node_id) return UnknownTransaction(ttid);
    if (it->second.state != TxnState::kActive) {
      return common::ErrorWithReason(
          absl::StatusCode::kFailedPrecondition, common::kReasonUnknownTransaction,
          absl::StrCat("ttid ", common::TidHex(ttid), " is already finishing, committed or aborted"));
    }
    if (it->second.restore && max_oid > kMaxRestoredOid) {
      return absl::InvalidArgumentError(absl::StrCat(
          "oids: a restore may write oids up to 2^62 (it moves the OID allocator past them), got ",
          max_oid));
    }
    if (it->second.restore && last_final_tid_ >= ttid) {
      // Another transaction got a later final tid since this restore's
      // Begin: committing at ttid now would complete out of tid order.
      it->second.state = TxnState::kAborted;
      --stats_.active;
      ++stats_.aborted;
      finished_.push_back(ttid);
      ForgetOldLocked();
      restore_overtaken = true;
    } else {
      it->second.state = TxnState::kFinishing;
      pending = std::make_shared<Pending>();
      pending->ttid = ttid;
      pending->tid = it->second.restore ? ttid : tids_.NextTid(ttid, num_partitions);
      last_final_tid_ = std::max(last_final_tid_, pending->tid);
      restore = it->second.restore;
      pending->oids = votes.oids;
      it->second.tid = pending->tid;
      queue_.push_back(pending);
    }
  }
  if (restore_overtaken) {
    storages_->AbortAsync(cluster_->RunningStorages(), cluster_->epoch(), ttid);
    return absl::FailedPreconditionError(absl::StrCat(
        "tid: restore ", common::TidHex(ttid),
        " was overtaken by a transaction that committed with a later tid since its Begin; "
        "aborted (restore with no other writer)"));
  }
  // Outside mu_, like the other cluster_ calls of Finish.
  if (restore) cluster_->AdvanceOidsPast(max_oid);

  // Rules 2 and 8 before anything is locked: the stores were checked by
  // cells that are still readable, and cells that did not vote go
  // OUT_OF_DATE now, so the commit can never complete while a replica that
  // missed it is still readable.
  absl::StatusOr<CommitPlan> plan = cluster_->PrepareCommit(pending->tid, votes, partitions);
  if (!plan.ok()) {
    FailPending(pending, TxnState::kAborted, /*lock_failure=*/false);
    storages_->AbortAsync(cluster_->RunningStorages(), cluster_->epoch(), ttid);
    return common::Annotate(plan.status(), "finish aborted the transaction");
  }

  // Rule 1: readable cells lock first; the transaction is committed once a
  // readable cell of every touched partition locked it. Until one of them
  // locks, nothing is locked anywhere and the transaction can still be
  // aborted.
  LockRound round = LockWithRetries(plan->readable_voters, ttid, pending->tid, plan->ptid,
                                    partitions, absl::Milliseconds(300));
  if (round.locked.empty()) {
    // A storage whose answer was lost may have locked: ask before deciding.
    std::vector<StorageTarget> unsure;
    for (const StorageTarget& t : round.failed) {
      if (MayHaveLocked(round.errors[t.node_id])) unsure.push_back(t);
    }
    const std::vector<absl::StatusOr<StorageOutcome>> outcomes =
        storages_->OutcomeAll(unsure, ttid);
    bool in_doubt = false;
    for (size_t i = 0; i < outcomes.size(); ++i) {
      if (!outcomes[i].ok()) {
        in_doubt = true;
      } else if (outcomes[i]->state == StorageOutcome::State::kLocked) {
        round.locked.push_back(unsure[i]);
      }
    }
    if (round.locked.empty() && in_doubt) {
      // Nobody is known to have locked it and somebody cannot tell: the
      // outcome is unknown. Nothing is aborted (that could split a
      // transaction a silent storage committed); the silent storages are
      // treated as gone, and their votes are resolved when they register
      // again (locked anywhere = committed, else aborted).
      std::vector<uint32_t> silent;
      for (size_t i = 0; i < outcomes.size(); ++i) {
        if (!outcomes[i].ok()) silent.push_back(unsure[i].node_id);
      }
      FailPending(pending, TxnState::kInDoubt, /*lock_failure=*/true);
      cluster_->LockFailed(pending->tid, silent, {});
      return common::ErrorWithReason(
          absl::StatusCode::kUnavailable, common::kReasonOutcomeUnknown,
          absl::StrCat("ttid ", common::TidHex(ttid),
                       ": no storage confirmed the lock and some cannot be reached; the "
                       "outcome is decided when they come back (ask GetTransactionStatus)"));
    }
    if (round.locked.empty()) {
      FailPending(pending, TxnState::kAborted, /*lock_failure=*/true);
      std::vector<StorageTarget> voters = plan->readable_voters;
      voters.insert(voters.end(), plan->other_voters.begin(), plan->other_voters.end());
      storages_->AbortAll(voters, cluster_->epoch(), ttid);
      storages_->AbortAsync(plan->non_voters, cluster_->epoch(), ttid);
      const absl::Status& first = round.errors.begin()->second;
      return absl::UnavailableError(absl::StrCat(
          "no storage could lock the transaction, it was aborted: ", first.message()));
    }
  }
  // Committed: something locked it (semantics: locked anywhere = committed).
  {
    absl::MutexLock l(&mu_);
    Txn& txn = txns_[ttid];
    txn.state = TxnState::kCommitted;
    txn.tid = pending->tid;
  }
  // A partition none of whose readable cells locked yet gets more time: it
  // must not be published before one of them holds the transaction.
  auto partitions_without_locker = [&]() {
    std::vector<uint32_t> missing;
    for (const auto& [p, readable] : plan->readable_by_partition) {
      if (std::none_of(readable.begin(), readable.end(),
                       [&](uint32_t id) { return Contains(round.locked, id); })) {
        missing.push_back(p);
      }
    }
    return missing;
  };
  if (!partitions_without_locker().empty()) {
    std::vector<StorageTarget> again;
    for (const StorageTarget& t : round.failed) {
      if (cluster_->IsConnected(t.node_id)) again.push_back(t);
    }
    LockRound late = LockWithRetries(again, ttid, pending->tid, plan->ptid, partitions,
                                     options_.partial_lock_retry);
    round.locked.insert(round.locked.end(), late.locked.begin(), late.locked.end());
    round.stored.insert(late.stored.begin(), late.stored.end());
    round.failed.erase(std::remove_if(round.failed.begin(), round.failed.end(),
                                      [&](const StorageTarget& t) {
                                        return Contains(late.locked, t.node_id);
                                      }),
                       round.failed.end());
  }
  // The cells that could not come along: the other voters (OUT_OF_DATE
  // cells) lock now; whoever failed misses the transaction.
  LockRound others = LockWithRetries(plan->other_voters, ttid, pending->tid, plan->ptid,
                                     partitions, absl::Milliseconds(300));
  std::vector<StorageTarget> locked = round.locked;
  locked.insert(locked.end(), others.locked.begin(), others.locked.end());
  std::vector<StorageTarget> failed = round.failed;
  failed.insert(failed.end(), others.failed.begin(), others.failed.end());
  const std::vector<uint32_t> unpublishable = partitions_without_locker();
  round.stored.insert(others.stored.begin(), others.stored.end());
  std::vector<uint64_t> committed_oids =
      CommittedOids(votes.oids, plan->voters_by_partition, round.stored, num_partitions);
  // The transaction record lists what was committed, not what the client
  // sent with its vote: its holders get the list with the unlock.
  RecordOids record;
  if (auto it = plan->voters_by_partition.find(static_cast<uint32_t>(ttid % num_partitions));
      it != plan->voters_by_partition.end()) {
    record.holders = it->second;
  }
  record.oids = committed_oids;
  {
    absl::MutexLock l(&mu_);
    stats_.partial_lock_failures += failed.size();
    pending->oids = std::move(committed_oids);
  }
  if (!unpublishable.empty()) {
    // Committed on some storages, but partition(s) `unpublishable` have no
    // readable cell holding it: it must not become visible (its readers
    // would get the old revisions). The failed storages are treated as gone;
    // the transaction is completed everywhere by resolution when they
    // register again, and published then.
    CELLAR_LOG(ERROR) << "ttid " << common::TidHex(ttid) << " committed as "
                      << common::TidHex(pending->tid) << " but no readable cell of partition(s) "
                      << absl::StrJoin(unpublishable, ",") << " could lock it";
    std::vector<uint32_t> ids;
    for (const StorageTarget& t : failed) ids.push_back(t.node_id);
    return KeepUnpublished(
        pending, partitions, locked, ids,
        absl::StrCat("ttid ", common::TidHex(ttid), " is locked as ",
                     common::TidHex(pending->tid), " on ", locked.size(),
                     " storage(s) but no readable cell of partition ", unpublishable.front(),
                     " could lock it yet: it becomes visible once they do"));
  }
  if (!failed.empty()) {
    std::vector<uint32_t> ids, locked_ids;
    for (const StorageTarget& t : failed) ids.push_back(t.node_id);
    for (const StorageTarget& t : locked) locked_ids.push_back(t.node_id);
    CELLAR_LOG(WARNING) << "ttid " << common::TidHex(ttid) << ": " << failed.size()
                        << " voter(s) could not lock: "
                        << (round.errors.empty() ? others.errors : round.errors).begin()->second;
    const std::vector<uint32_t> unheld =
        cluster_->LockFailed(pending->tid, ids, plan->voters_by_partition, locked_ids);
    if (!unheld.empty()) {
      // The readable cells that locked it went away meanwhile: the failed
      // ones stay readable (the last ones) and lack it, so it must not
      // become visible before resolution completes it on them.
      CELLAR_LOG(ERROR) << "ttid " << common::TidHex(ttid) << " committed as "
                        << common::TidHex(pending->tid)
                        << " but no readable cell holding it is left in partition(s) "
                        << absl::StrJoin(unheld, ",");
      return KeepUnpublished(
          pending, partitions, locked, /*failed=*/{},
          absl::StrCat("ttid ", common::TidHex(ttid), " is locked as ",
                       common::TidHex(pending->tid), " but the readable cells holding it in ",
                       "partition ", unheld.front(),
                       " went away: it becomes visible once the others have it"));
    }
  }
  {
    absl::MutexLock l(&mu_);
    pending->locked = true;
    DrainLocked();
    mu_.Await(absl::Condition(&pending->done));
    --stats_.active;
    ++stats_.committed;
    finished_.push_back(ttid);
    ForgetOldLocked();
  }
  storages_->UnlockAsync(locked, cluster_->epoch(), ttid, pending->tid,
                         /*forget_lock=*/failed.empty(), &record);
  if (!failed.empty()) {
    // A lock that timed out may have succeeded: release its object locks
    // too (refused harmlessly where the transaction is only voted; that
    // vote is resolved when the node registers again).
    storages_->UnlockAsync(failed, cluster_->epoch(), ttid, pending->tid,
                           /*forget_lock=*/false, &record);
  }
  // Cells that did not vote may still hold the transaction's temporary
  // records (a vote whose answer was lost): they get the data by
  // replication; release what they hold.
  if (!plan->non_voters.empty()) {
    storages_->AbortAsync(plan->non_voters, cluster_->epoch(), ttid);
  }
  return pending->tid;
}

absl::Status TransactionCoordinator::KeepUnpublished(
    const std::shared_ptr<Pending>& pending, const std::vector<uint32_t>& partitions,
    const std::vector<StorageTarget>& locked, const std::vector<uint32_t>& failed,
    const std::string& message) {
  // Held before anything later can be published: no cell is told it is
  // complete past this commit (ClusterManager::CompleteTidLocked).
  cluster_->HoldPartitions(pending->tid, partitions);
  {
    absl::MutexLock l(&mu_);
    txns_[pending->ttid].unpublished = true;
  }
  FailPending(pending, TxnState::kCommitted, /*lock_failure=*/true);
  // The failed storages are treated as gone: they register again, report
  // the vote, and resolution completes and publishes the commit.
  if (!failed.empty()) cluster_->LockFailed(pending->tid, failed, {});
  storages_->UnlockAsync(locked, cluster_->epoch(), pending->ttid, pending->tid,
                         /*forget_lock=*/false);
  return common::ErrorWithReason(absl::StatusCode::kUnavailable,
                                 common::kReasonOutcomeUnknown, message);
}

void TransactionCoordinator::FailPending(const std::shared_ptr<Pending>& pending,
                                         TxnState state, bool lock_failure) {
  absl::MutexLock l(&mu_);
  pending->failed = true;
  if (lock_failure) ++stats_.lock_failures;
  DrainLocked();
  mu_.Await(absl::Condition(&pending->done));
  Txn& txn = txns_[pending->ttid];
  txn.state = state;
  --stats_.active;
  if (state == TxnState::kAborted) ++stats_.aborted;
  finished_.push_back(pending->ttid);
  ForgetOldLocked();
}

void TransactionCoordinator::DrainLocked() {
  while (!queue_.empty() && (queue_.front()->locked || queue_.front()->failed)) {
    std::shared_ptr<Pending> head = std::move(queue_.front());
    queue_.pop_front();
    if (head->locked) hub_->PublishInvalidation(head->tid, head->oids);
    head->done = true;
  }
}

void TransactionCoordinator::ForgetOldLocked() {
  while (finished_.size() > kRememberFinished) {
    txns_.erase(finished_.front());
    finished_.pop_front();
  }
}

absl::Status TransactionCoordinator::Abort(uint32_t node_id, uint64_t ttid,
                                           const std::vector<uint32_t>& storage_node_ids) {
  bool known;
  {
    absl::MutexLock l(&mu_);
    auto it = txns_.find(ttid);
    known = it != txns_.end();
    if (known) {
      if (it->second.node_id != node_id) return UnknownTransaction(ttid);
      if (it->second.state == TxnState::kFinishing ||
          it->second.state == TxnState::kCommitted ||
          it->second.state == TxnState::kInDoubt) {
        return absl::FailedPreconditionError(absl::StrCat(
            "ttid ", common::TidHex(ttid), " already has its final tid ",
            common::TidHex(it->second.tid), ": it cannot be aborted"));
      }
      if (it->second.state == TxnState::kActive) {
        it->second.state = TxnState::kAborted;
        --stats_.active;
        ++stats_.aborted;
        finished_.push_back(ttid);
        ForgetOldLocked();
      }
    }
  }
  if (!known) {
    // Begun under another primary (or forgotten): its votes may belong to
    // a transaction another storage locked (= committed). Decide as
    // verification does, and never drop votes on a guess.
    if (!cluster_->CheckRunning().ok()) {
      return absl::UnavailableError(absl::StrCat(
          "ttid ", common::TidHex(ttid),
          " is unknown to this master and the cluster is not RUNNING: cannot ask every "
          "storage whether it committed; retry later"));
    }
    const Survey survey = Ask(ttid, {});
    if (survey.locked_tid.has_value()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "ttid ", common::TidHex(ttid), " committed with tid ",
          common::TidHex(*survey.locked_tid), ": it cannot be aborted"));
    }
    if (!survey.possible_holders_answered) {
      return absl::UnavailableError(absl::StrCat(
          "ttid ", common::TidHex(ttid),
          " is unknown to this master and a storage that may have locked it did not "
          "answer: retry later"));
    }
  }
  std::vector<StorageTarget> targets;
  if (storage_node_ids.empty()) {
    targets = cluster_->RunningStorages();
  } else {
    // Storages that are gone drop temporary data when they come back.
    for (uint32_t id : storage_node_ids) {
      absl::StatusOr<std::vector<StorageTarget>> t = cluster_->Targets({id});
      if (t.ok()) targets.push_back(t->front());
    }
  }
  storages_->AbortAll(targets, cluster_->epoch(), ttid);
  return absl::OkStatus();
}

void TransactionCoordinator::AbortClientTransactions(uint32_t node_id) {
  std::vector<uint64_t> ttids;
  {
    absl::MutexLock l(&mu_);
    for (auto& [ttid, txn] : txns_) {
      if (txn.node_id == node_id && txn.state == TxnState::kActive) {
        txn.state = TxnState::kAborted;
        --stats_.active;
        ++stats_.aborted;
        finished_.push_back(ttid);
        ttids.push_back(ttid);
      }
    }
    preallocated_.erase(node_id);
    ForgetOldLocked();
  }
  if (ttids.empty()) return;
  const std::vector<StorageTarget> targets = cluster_->RunningStorages();
  for (uint64_t ttid : ttids) {
    CELLAR_LOG(INFO) << "aborting ttid " << common::TidHex(ttid) << " of departed "
                     << common::NodeName(node_id);
    storages_->AbortAll(targets, cluster_->epoch(), ttid);
  }
}

std::optional<uint32_t> TransactionCoordinator::BegunBy(uint64_t ttid) const {
  absl::MutexLock l(&mu_);
  auto it = txns_.find(ttid);
  if (it == txns_.end()) return std::nullopt;
  return it->second.node_id;
}

cellar::v1::GetTransactionStatusResponse TransactionCoordinator::Status(
    uint64_t ttid) const {
  cellar::v1::GetTransactionStatusResponse out;
  {
    absl::MutexLock l(&mu_);
    auto it = txns_.find(ttid);
    if (it != txns_.end()) {
      switch (it->second.state) {
        case TxnState::kActive:
        case TxnState::kFinishing:
          out.set_outcome(cellar::v1::TRANSACTION_ACTIVE);
          break;
        case TxnState::kCommitted:
          if (it->second.unpublished) {
            // Locked somewhere, not visible yet: not an outcome to act on.
            out.set_outcome(cellar::v1::TRANSACTION_ACTIVE);
            break;
          }
          out.set_outcome(cellar::v1::TRANSACTION_COMMITTED);
          out.set_tid(it->second.tid);
          break;
        case TxnState::kAborted:
          out.set_outcome(cellar::v1::TRANSACTION_ABORTED);
          break;
        case TxnState::kInDoubt:
          break;  // the storages tell (below)
      }
      if (it->second.state != TxnState::kInDoubt) return out;
    }
  }
  // Not known here (begun under another primary, or forgotten): a storage
  // that locked it knows its final tid. Nobody locking it proves nothing
  // (a storage holding the lock may be down), so that stays UNKNOWN.
  out.set_outcome(cellar::v1::TRANSACTION_UNKNOWN);
  if (!cluster_->CheckRunning().ok()) return out;
  const std::vector<StorageTarget> everyone = cluster_->RunningStorages();
  if (everyone.empty()) return out;
  // OutcomeAll is bounded by the storage caller's deadline.
  const std::vector<absl::StatusOr<StorageOutcome>> outcomes =
      storages_->OutcomeAll(everyone, ttid);
  for (const absl::StatusOr<StorageOutcome>& outcome : outcomes) {
    if (outcome.ok() && outcome->state == StorageOutcome::State::kLocked &&
        outcome->tid != 0) {
      out.set_outcome(cellar::v1::TRANSACTION_COMMITTED);
      out.set_tid(outcome->tid);
      break;
    }
  }
  return out;
}

void TransactionCoordinator::Recover(const std::vector<uint64_t>& in_doubt,
                                     const std::vector<StorageTarget>& storages,
                                     uint64_t last_tid) {
  {
    absl::MutexLock l(&mu_);
    tids_.AdvanceTo(last_tid);
    for (uint64_t ttid : in_doubt) tids_.AdvanceTo(ttid);
  }
  // Resolve first: a client must not see a last tid (and cache revisions
  // as current) below a commit it has no invalidation for.
  std::vector<Resolution> learned;
  std::vector<uint64_t> unsettled;
  for (uint64_t ttid : in_doubt) {
    Resolution r = Resolve(ttid, storages);
    if (!r.settled) unsettled.push_back(ttid);
    if (r.kind == Resolution::Kind::kCommitted && r.learned) learned.push_back(std::move(r));
  }
  std::sort(learned.begin(), learned.end(),
            [](const Resolution& a, const Resolution& b) { return a.tid < b.tid; });
  {
    absl::MutexLock l(&mu_);
    for (const Resolution& r : learned) PublishLearnedLocked(r.tid, r.oids);
  }
  hub_->SetLastTid(last_tid);
  if (!unsettled.empty()) ResolveInBackground(unsettled, storages);
}

void TransactionCoordinator::PublishLearnedLocked(uint64_t tid,
                                                  const std::vector<uint64_t>& oids) {
  const uint64_t last = hub_->last_tid();
  // Above the last tid only if no commit of this term below it is still
  // to be published (invalidations go out in tid order).
  const bool in_order = tid > last && (queue_.empty() || queue_.front()->tid > tid);
  hub_->PublishInvalidation(in_order ? tid : last, oids);
}

TransactionCoordinator::Survey TransactionCoordinator::Ask(
    uint64_t ttid, const std::vector<StorageTarget>& reporters) const {
  Survey survey;
  // Who holds what: every connected storage (a node holding only objects
  // of the transaction has a lock record, not the transaction record).
  survey.everyone = cluster_->RunningStorages();
  for (const StorageTarget& r : reporters) {
    if (std::none_of(survey.everyone.begin(), survey.everyone.end(),
                     [&](const StorageTarget& t) { return t.node_id == r.node_id; })) {
      survey.everyone.push_back(r);
    }
  }
  const std::vector<absl::StatusOr<StorageOutcome>> outcomes =
      storages_->OutcomeAll(survey.everyone, ttid);
  absl::flat_hash_set<uint32_t> answered;
  absl::flat_hash_set<uint64_t> oids;
  for (size_t i = 0; i < outcomes.size(); ++i) {
    if (!outcomes[i].ok()) {
      CELLAR_LOG(WARNING) << "outcome of ttid " << common::TidHex(ttid) << ": "
                          << outcomes[i].status();
      survey.all_answered = false;
      continue;
    }
    answered.insert(survey.everyone[i].node_id);
    switch (outcomes[i]->state) {
      case StorageOutcome::State::kLocked:
        survey.holders.push_back(survey.everyone[i]);
        if (survey.locked_tid.has_value() && *survey.locked_tid != outcomes[i]->tid) {
          CELLAR_LOG(ERROR) << "ttid " << common::TidHex(ttid) << " is locked with two tids ("
                            << common::TidHex(*survey.locked_tid) << ", "
                            << common::TidHex(outcomes[i]->tid) << ")";
        }
        survey.locked_tid = outcomes[i]->tid;
        oids.insert(outcomes[i]->oids.begin(), outcomes[i]->oids.end());
        if (survey.partitions.empty()) {
          survey.partitions = outcomes[i]->partitions;
        } else if (!outcomes[i]->partitions.empty() &&
                   outcomes[i]->partitions != survey.partitions) {
          CELLAR_LOG(ERROR) << "ttid " << common::TidHex(ttid)
                            << " is locked with two partition lists ("
                            << absl::StrJoin(survey.partitions, ",") << "; "
                            << absl::StrJoin(outcomes[i]->partitions, ",") << ")";
        }
        break;
      case StorageOutcome::State::kVoted:
        survey.voted.push_back(survey.everyone[i]);
        break;
      case StorageOutcome::State::kStoring:
        survey.storing.push_back(survey.everyone[i]);
        break;
      default:
        break;
    }
  }
  survey.oids.assign(oids.begin(), oids.end());
  std::sort(survey.oids.begin(), survey.oids.end());
  // A commit locks at least one cell of partition(ttid) (rule 1): if one
  // of those nodes (or a reporter) did not answer, "nobody locked it"
  // proves nothing.
  const uint32_t num_partitions = cluster_->num_partitions();
  std::vector<uint32_t> possible;
  if (num_partitions > 0) {
    possible = cluster_->NodesWithCellOf(static_cast<uint32_t>(ttid % num_partitions));
  }
  for (const StorageTarget& r : reporters) possible.push_back(r.node_id);
  for (uint32_t id : possible) {
    if (!answered.contains(id)) survey.possible_holders_answered = false;
  }
  return survey;
}

TransactionCoordinator::Resolution TransactionCoordinator::Resolve(
    uint64_t ttid, const std::vector<StorageTarget>& reporters) {
  Resolution result;
  // What this master knows first.
  std::optional<uint64_t> known_tid;
  bool known_aborted = false;
  bool unpublished = false;
  {
    absl::MutexLock l(&mu_);
    auto it = txns_.find(ttid);
    if (it != txns_.end()) {
      unpublished = it->second.unpublished;
      switch (it->second.state) {
        case TxnState::kActive:
        case TxnState::kFinishing:
          // Live: its client's Finish or Abort (or the client's departure)
          // settles it on every storage that voted. A Finish may still
          // leave it unpublished (a storage it counted as failed registers
          // again before Finish returns): asked again later.
          CELLAR_LOG(INFO) << "verification: ttid " << common::TidHex(ttid)
                           << " is still in commit, left to it";
          result.kind = Resolution::Kind::kLeft;
          result.settled = it->second.state == TxnState::kActive;
          return result;
        case TxnState::kCommitted:
          known_tid = it->second.tid;
          break;
        case TxnState::kAborted:
          known_aborted = true;
          break;
        case TxnState::kInDoubt:
          break;  // the storages tell
      }
    }
  }
  Survey survey = Ask(ttid, reporters);
  std::vector<StorageTarget> holders = survey.holders;
  // Learned from the storages, or committed by Finish but not published:
  // its invalidation must go out now.
  result.learned = !known_tid.has_value() || unpublished;
  if (!known_tid.has_value() && !known_aborted) known_tid = survey.locked_tid;
  if (known_aborted && survey.locked_tid.has_value()) {
    // Cannot happen (an aborted transaction was never locked); locked wins.
    CELLAR_LOG(ERROR) << "verification: ttid " << common::TidHex(ttid)
                      << " was aborted here but a storage locked it";
    known_tid = survey.locked_tid;
  }
  if (known_tid.has_value()) {
    std::vector<absl::StatusOr<LockedOids>> results;
    if (!survey.voted.empty()) {
      // With the partitions the commit was decided with (recorded by the
      // storages that locked it): what a voter holds of others is dropped.
      results = storages_->LockAll(survey.voted, cluster_->epoch(), ttid, *known_tid,
                                   /*min_ptid=*/0, survey.partitions);
    }
    bool all = true;
    size_t locked = 0;
    absl::btree_set<uint64_t> oids(survey.oids.begin(), survey.oids.end());
    for (size_t i = 0; i < results.size(); ++i) {
      if (!results[i].ok()) {
        all = false;
        CELLAR_LOG(WARNING) << "verification: locking ttid " << common::TidHex(ttid)
                            << " on " << common::NodeName(survey.voted[i].node_id) << ": "
                            << results[i].status();
      } else {
        ++locked;
        holders.push_back(survey.voted[i]);
        oids.insert(results[i]->oids.begin(), results[i]->oids.end());
      }
    }
    survey.oids.assign(oids.begin(), oids.end());
    CELLAR_LOG(WARNING) << "verification: ttid " << common::TidHex(ttid)
                        << " was locked somewhere: committed as "
                        << common::TidHex(*known_tid) << " on " << locked << " more storage(s)"
                        << (all ? "" : ", the others are retried");
    {
      absl::MutexLock l(&mu_);
      tids_.AdvanceTo(*known_tid);
      Txn& txn = txns_[ttid];
      if (unpublished && !(all && survey.all_answered)) {
        // Published only once every storage that voted holds it (a failed
        // readable voter may still serve the partition without it).
        result.learned = false;
      } else {
        txn.unpublished = false;  // the caller publishes it
      }
      if (txn.state != TxnState::kCommitted) {
        txn.state = TxnState::kCommitted;
        txn.tid = *known_tid;
        finished_.push_back(ttid);
        ForgetOldLocked();
      }
      ++stats_.recovered_committed;
    }
    // Release the object locks; keep the lock records unless every storage
    // answered and now holds it (a missing one may still need them).
    storages_->UnlockAsync(holders, cluster_->epoch(), ttid, *known_tid,
                           /*forget_lock=*/all && survey.all_answered);
    storages_->AbortAsync(survey.storing, cluster_->epoch(), ttid);
    if (unpublished && result.learned) cluster_->ReleaseHold(*known_tid);
    result.kind = Resolution::Kind::kCommitted;
    result.tid = *known_tid;
    result.oids = survey.oids;
    result.settled = all && survey.all_answered;
    return result;
  }
  if (!survey.possible_holders_answered) {
    // A storage that may have locked it is DOWN or did not answer: it may
    // be committed. Keep the votes; retried later.
    CELLAR_LOG(WARNING) << "verification: ttid " << common::TidHex(ttid)
                        << " stays in doubt: a storage that may have locked it did not "
                           "answer";
    result.kind = Resolution::Kind::kInDoubt;
    return result;
  }
  CELLAR_LOG(WARNING) << "verification: dropping voted, unlocked ttid "
                      << common::TidHex(ttid) << " (no storage locked it)";
  const std::vector<absl::Status> aborted =
      storages_->AbortAll(survey.everyone, cluster_->epoch(), ttid);
  {
    absl::MutexLock l(&mu_);
    Txn& txn = txns_[ttid];
    if (txn.state != TxnState::kAborted) {
      txn.state = TxnState::kAborted;
      finished_.push_back(ttid);
      ForgetOldLocked();
    }
    ++stats_.recovered_aborted;
  }
  result.kind = Resolution::Kind::kAborted;
  result.settled = std::all_of(aborted.begin(), aborted.end(),
                               [](const absl::Status& s) { return s.ok(); });
  return result;
}

void TransactionCoordinator::ResolveInBackground(const std::vector<uint64_t>& ttids,
                                                 const std::vector<StorageTarget>& reporters) {
  const absl::Time now = absl::Now();
  absl::MutexLock l(&resolver_mu_);
  for (uint64_t ttid : ttids) {
    Retry& retry = retries_[ttid];
    for (const StorageTarget& r : reporters) {
      if (std::none_of(retry.reporters.begin(), retry.reporters.end(),
                       [&](const StorageTarget& t) { return t.node_id == r.node_id; })) {
        retry.reporters.push_back(r);
      }
    }
    retry.due = now;  // a (new) report: try at once
    retry.backoff = options_.resolve_initial_backoff;
    ++retry.version;
  }
  ++resolver_generation_;
}

void TransactionCoordinator::ResolverLoop() {
  for (;;) {
    uint64_t ttid = 0;
    uint64_t version = 0;
    std::vector<StorageTarget> reporters;
    {
      absl::MutexLock l(&resolver_mu_);
      resolving_ = 0;
      // Sleep until the earliest retry is due (or new work, or stop).
      for (;;) {
        if (stop_) return;
        absl::Time earliest = absl::InfiniteFuture();
        for (const auto& [id, retry] : retries_) {
          if (retry.due < earliest) {
            earliest = retry.due;
            ttid = id;
          }
        }
        if (ttid != 0 && earliest <= absl::Now()) break;
        ttid = 0;
        const uint64_t generation = resolver_generation_;
        auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(resolver_mu_) {
          return stop_ || resolver_generation_ != generation;
        };
        resolver_mu_.AwaitWithDeadline(absl::Condition(&changed),
                                       std::min(earliest, absl::Now() + absl::Seconds(1)));
      }
      resolving_ = ttid;
      reporters = retries_[ttid].reporters;
      version = retries_[ttid].version;
    }
    // Only reporters still connected keep the votes reachable; one that is
    // gone reports them again when it registers.
    std::vector<StorageTarget> connected;
    for (const StorageTarget& r : reporters) {
      if (cluster_->IsConnected(r.node_id)) connected.push_back(r);
    }
    bool done = connected.empty();
    if (!done && cluster_->CheckRunning().ok()) {
      Resolution r = Resolve(ttid, connected);
      done = r.settled;
      if (r.kind == Resolution::Kind::kCommitted && r.learned) {
        absl::MutexLock l(&mu_);
        PublishLearnedLocked(r.tid, r.oids);
      }
    }
    absl::MutexLock l(&resolver_mu_);
    auto it = retries_.find(ttid);
    if (it == retries_.end() || it->second.version != version) continue;  // reported again
    if (done) {
      retries_.erase(it);
    } else {
      it->second.due = absl::Now() + it->second.backoff;
      it->second.backoff = std::min(it->second.backoff * 2, options_.resolve_max_backoff);
    }
  }
}

absl::Status TransactionCoordinator::AwaitResolved(absl::Duration timeout) {
  absl::MutexLock l(&resolver_mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(resolver_mu_) {
    return retries_.empty() && resolving_ == 0;
  };
  if (resolver_mu_.AwaitWithTimeout(absl::Condition(&idle), timeout)) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrCat(
      retries_.size(), " in-doubt transaction(s) still unresolved after ",
      absl::FormatDuration(timeout)));
}

absl::Status TransactionCoordinator::AwaitNoFinishing(absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  if (mu_.AwaitWithTimeout(
          absl::Condition(
              +[](std::deque<std::shared_ptr<Pending>>* q) { return q->empty(); }, &queue_),
          timeout)) {
    return absl::OkStatus();
  }
  return absl::DeadlineExceededError(
      absl::StrCat(queue_.size(), " commit(s) still finishing after ",
                   absl::FormatDuration(timeout)));
}

absl::Duration TransactionCoordinator::ClockLag() const {
  absl::MutexLock l(&mu_);
  return tids_.ClockLag();
}

CoordinatorStats TransactionCoordinator::stats() const {
  absl::MutexLock l(&mu_);
  return stats_;
}

}  // namespace cellar::master
