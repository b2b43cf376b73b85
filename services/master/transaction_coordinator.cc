#include "services/master/transaction_coordinator.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
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
                                               StorageCaller* storages, EventHub* hub)
    : clock_(clock), cluster_(cluster), storages_(storages), hub_(hub), tids_(clock) {}

absl::StatusOr<uint64_t> TransactionCoordinator::Begin(uint32_t node_id) {
  if (absl::Status s = cluster_->CheckRunning(); !s.ok()) return s;
  if (absl::Status s = cluster_->CheckClient(node_id); !s.ok()) return s;
  absl::MutexLock l(&mu_);
  const uint64_t ttid = tids_.NextTtid();
  txns_[ttid] = Txn{node_id, TxnState::kActive, 0};
  ++stats_.begun;
  ++stats_.active;
  return ttid;
}

absl::StatusOr<uint64_t> TransactionCoordinator::Finish(
    uint32_t node_id, uint64_t ttid, const std::vector<uint32_t>& voted_node_ids,
    const std::vector<uint64_t>& oids) {
  if (voted_node_ids.empty()) {
    return absl::InvalidArgumentError(
        "voted_node_ids: a transaction must vote on at least one storage");
  }
  absl::StatusOr<std::vector<StorageTarget>> targets = cluster_->Targets(voted_node_ids);
  const uint32_t partitions = cluster_->num_partitions();
  std::shared_ptr<Pending> pending;
  {
    absl::MutexLock l(&mu_);
    auto it = txns_.find(ttid);
    if (it == txns_.end() || it->second.node_id != node_id) return UnknownTransaction(ttid);
    if (it->second.state != TxnState::kActive) {
      return common::ErrorWithReason(
          absl::StatusCode::kFailedPrecondition, common::kReasonUnknownTransaction,
          absl::StrCat("ttid ", common::TidHex(ttid), " is already finishing, committed or aborted"));
    }
    if (!targets.ok()) {
      // A voter is gone: nothing is locked yet, so the client may retry.
      it->second.state = TxnState::kAborted;
      --stats_.active;
      ++stats_.aborted;
    } else {
      it->second.state = TxnState::kFinishing;
      pending = std::make_shared<Pending>();
      pending->ttid = ttid;
      pending->tid = tids_.NextTid(ttid, std::max<uint32_t>(partitions, 1));
      pending->oids = oids;
      it->second.tid = pending->tid;
      queue_.push_back(pending);
    }
  }
  if (!targets.ok()) {
    storages_->AbortAll(cluster_->RunningStorages(), cluster_->epoch(), ttid);
    return common::Annotate(targets.status(), "finish aborted the transaction");
  }

  const std::vector<absl::Status> results =
      storages_->LockAll(*targets, cluster_->epoch(), ttid, pending->tid);
  std::vector<StorageTarget> locked;
  absl::Status first_error;
  for (size_t i = 0; i < results.size(); ++i) {
    if (results[i].ok()) {
      locked.push_back((*targets)[i]);
    } else if (first_error.ok()) {
      first_error = results[i];
    }
  }
  if (!first_error.ok()) {
    CELLAR_LOG(WARNING) << "ttid " << common::TidHex(ttid) << ": " << first_error;
  }

  {
    absl::MutexLock l(&mu_);
    if (locked.empty()) {
      pending->failed = true;
      ++stats_.lock_failures;
    } else {
      pending->locked = true;
    }
    DrainLocked();
    mu_.Await(absl::Condition(&pending->done));
    Txn& txn = txns_[ttid];
    --stats_.active;
    if (locked.empty()) {
      txn.state = TxnState::kAborted;
      ++stats_.aborted;
    } else {
      txn.state = TxnState::kCommitted;
      ++stats_.committed;
    }
    finished_.push_back(ttid);
    ForgetOldLocked();
  }
  if (locked.empty()) {
    storages_->AbortAll(*targets, cluster_->epoch(), ttid);
    return absl::UnavailableError(absl::StrCat(
        "no storage could lock the transaction, it was aborted: ", first_error.message()));
  }
  storages_->UnlockAsync(locked, cluster_->epoch(), ttid, pending->tid);
  return pending->tid;
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
  {
    absl::MutexLock l(&mu_);
    auto it = txns_.find(ttid);
    if (it != txns_.end()) {
      if (it->second.node_id != node_id) return UnknownTransaction(ttid);
      if (it->second.state == TxnState::kFinishing ||
          it->second.state == TxnState::kCommitted) {
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

cellar::v1::GetTransactionStatusResponse TransactionCoordinator::Status(
    uint64_t ttid) const {
  cellar::v1::GetTransactionStatusResponse out;
  absl::MutexLock l(&mu_);
  auto it = txns_.find(ttid);
  if (it == txns_.end()) {
    out.set_outcome(cellar::v1::TRANSACTION_UNKNOWN);
    return out;
  }
  switch (it->second.state) {
    case TxnState::kActive:
    case TxnState::kFinishing:
      out.set_outcome(cellar::v1::TRANSACTION_ACTIVE);
      break;
    case TxnState::kCommitted:
      out.set_outcome(cellar::v1::TRANSACTION_COMMITTED);
      out.set_tid(it->second.tid);
      break;
    case TxnState::kAborted:
      out.set_outcome(cellar::v1::TRANSACTION_ABORTED);
      break;
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
  hub_->SetLastTid(last_tid);
  for (uint64_t ttid : in_doubt) {
    CELLAR_LOG(WARNING) << "verification: dropping voted, unlocked ttid "
                        << common::TidHex(ttid);
    storages_->AbortAll(storages, cluster_->epoch(), ttid);
  }
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
