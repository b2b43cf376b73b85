#include "services/storage/transaction_manager.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/checksum.h"
#include "services/common/errors.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"

namespace cellar::storage {

using ::cellar::common::ChecksumMatches;
using ::cellar::common::ConflictError;
using ::cellar::common::ErrorWithReason;
using ::cellar::common::FormatOid;
using ::cellar::common::TidHex;

namespace {

absl::Status UnknownTransaction(absl::StatusCode code, uint64_t ttid,
                                absl::string_view what) {
  return ErrorWithReason(code, common::kReasonUnknownTransaction,
                         absl::StrCat("transaction ", TidHex(ttid), " ", what));
}

const char* StateName(TransactionManager::State s) {
  switch (s) {
    case TransactionManager::State::kStoring:
      return "storing";
    case TransactionManager::State::kVoting:
      return "voting";
    case TransactionManager::State::kVoted:
      return "voted";
    case TransactionManager::State::kVoteFailed:
      return "vote failed";
    case TransactionManager::State::kLocking:
      return "locking";
    case TransactionManager::State::kLocked:
      return "locked";
  }
  return "?";
}

}  // namespace

TransactionManager::TransactionManager(StorageBackend* backend, LockManager* locks,
                                       WriteBatcher* batcher,
                                       TransactionManagerOptions options,
                                       common::Clock* clock)
    : backend_(backend),
      locks_(locks),
      batcher_(batcher),
      options_(options),
      clock_(clock != nullptr ? clock : common::RealClock::Get()) {}

size_t TransactionManager::RecoverVoted(const std::vector<VotedTransaction>& voted) {
  size_t failed = 0;
  for (const VotedTransaction& v : voted) {
    {
      absl::MutexLock l(&mu_);
      Txn& txn = txns_[v.ttid];
      txn.state = State::kVoted;
      txn.last_activity = clock_->Now();
      txn.voted_oids = v.oids;
      txn.in_doubt = true;  // its outcome was decided (or not) without this node
    }
    // Nothing else runs yet: the locks are free (no wait).
    absl::Status s = locks_->LockAll(v.ttid, v.oids, absl::InfinitePast());
    for (size_t i = 0; !s.ok() && i < v.oids.size(); ++i) {
      // Two votes on one oid (should not happen): lock what is free.
      if (!locks_->LockAll(v.ttid, {v.oids[i]}, absl::InfinitePast()).ok()) {
        ++failed;
        CELLAR_LOG(ERROR) << "voted transaction " << TidHex(v.ttid)
                          << ": cannot take the lock of oid " << FormatOid(v.oids[i])
                          << " again, held by transaction "
                          << TidHex(locks_->Holder(v.oids[i]));
      }
    }
  }
  return failed;
}

absl::Status TransactionManager::FinishedError(uint64_t ttid, Finished how) const {
  switch (how) {
    case Finished::kAborted:
      return UnknownTransaction(absl::StatusCode::kFailedPrecondition, ttid, "was aborted");
    case Finished::kCommitted:
      return UnknownTransaction(absl::StatusCode::kFailedPrecondition, ttid,
                                "is already committed");
    case Finished::kExpired:
      break;
  }
  return UnknownTransaction(
      absl::StatusCode::kFailedPrecondition, ttid,
      absl::StrCat("expired: no store or vote for ",
                   absl::FormatDuration(options_.unvoted_timeout),
                   " (aborted by this storage; retry the whole transaction)"));
}

void TransactionManager::RememberFinished(uint64_t ttid, Finished how, uint64_t tid) {
  if (finished_.insert_or_assign(ttid, FinishedInfo{how, tid}).second) {
    finished_order_.push_back(ttid);
  }
  while (finished_order_.size() > std::max<size_t>(1, options_.remember_finished)) {
    finished_.erase(finished_order_.front());
    finished_order_.pop_front();
  }
}

bool TransactionManager::Settled(uint64_t ttid) const {
  auto it = txns_.find(ttid);
  return it == txns_.end() || (it->second.state != State::kVoting &&
                               it->second.state != State::kLocking);
}

void TransactionManager::AwaitSettled(uint64_t ttid) {
  struct Arg {
    const TransactionManager* self;
    uint64_t ttid;
  } arg{this, ttid};
  mu_.Await(absl::Condition(
      +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS { return a->self->Settled(a->ttid); },
      &arg));
}

absl::Status TransactionManager::ValidateData(const StoreObject& o) const {
  if (o.data.size() > options_.max_object_bytes) {
    return ErrorWithReason(
        absl::StatusCode::kResourceExhausted, common::kReasonTooLarge,
        absl::StrCat("object ", FormatOid(o.oid), " has ", o.data.size(),
                     " bytes, over this storage's limit of ", options_.max_object_bytes));
  }
  if (o.checksum.size() != common::kChecksumSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("checksum of oid ", FormatOid(o.oid), " has ", o.checksum.size(),
                     " bytes, want ", common::kChecksumSize, " (SHA-1)"));
  }
  if (o.data_serial != 0) {
    if (!o.data.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "oid ", FormatOid(o.oid), ": data must be empty when data_serial is set"));
    }
  } else if (!ChecksumMatches(o.data, o.checksum)) {
    return ErrorWithReason(
        absl::StatusCode::kInvalidArgument, common::kReasonChecksumMismatch,
        absl::StrCat("checksum of oid ", FormatOid(o.oid), " does not match its data (got ",
                     common::HexBytes(o.checksum), ", data hashes to ",
                     common::HexBytes(common::Checksum(o.data)), ")"));
  }
  return absl::OkStatus();
}

absl::Status TransactionManager::ValidateObjects(
    const std::vector<StoreObject>& objects, const CellView& view) const {
  absl::flat_hash_set<uint64_t> seen;
  for (const StoreObject& o : objects) {
    if (!seen.insert(o.oid).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("oid ", FormatOid(o.oid), " appears twice in one store"));
    }
    if (o.check_only) {
      if (!o.data.empty() || !o.checksum.empty() || o.data_serial != 0 || o.base_serial == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "oid ", FormatOid(o.oid),
            ": a check_only object has a base_serial and no data, checksum or data_serial"));
      }
    } else {
      CELLAR_RETURN_IF_ERROR(ValidateData(o));
    }
    const uint32_t partition = view.PartitionOf(o.oid);
    if (!view.Writable(partition)) {
      return ErrorWithReason(absl::StatusCode::kUnavailable,
                             common::kReasonNotReadable,
                             view.NoCellMessage("writable", partition));
    }
  }
  return absl::OkStatus();
}

absl::Status TransactionManager::CheckConflicts(
    const std::vector<StoreObject>& objects, const CellView& view) {
  // Only readable cells decide conflicts; an OUT_OF_DATE cell may not have
  // the latest serial yet.
  std::vector<const StoreObject*> checked;
  std::vector<uint64_t> oids;
  for (const StoreObject& o : objects) {
    if (view.Readable(view.PartitionOf(o.oid))) {
      checked.push_back(&o);
      oids.push_back(o.oid);
    }
  }
  if (oids.empty()) return absl::OkStatus();
  CELLAR_ASSIGN_OR_RETURN(std::vector<uint64_t> serials,
                          backend_->GetLastSerials(view.num_partitions(), oids));
  if (serials.size() != oids.size()) {
    return absl::InternalError("backend returned the wrong number of serials");
  }
  for (size_t i = 0; i < checked.size(); ++i) {
    if (serials[i] != checked[i]->base_serial) {
      return ConflictError(checked[i]->oid, serials[i], checked[i]->base_serial);
    }
  }
  return absl::OkStatus();
}

absl::Status TransactionManager::Store(uint64_t ttid, uint32_t client_node_id,
                                       std::vector<StoreObject> objects,
                                       const CellView& view,
                                       absl::Time lock_deadline) {
  if (ttid == 0) return absl::InvalidArgumentError("ttid must not be 0");
  if (view.num_partitions() == 0) {
    return absl::UnavailableError("this storage node has no partition table yet");
  }
  CELLAR_RETURN_IF_ERROR(ValidateObjects(objects, view));
  {
    absl::MutexLock l(&mu_);
    auto f = finished_.find(ttid);
    if (f != finished_.end()) return FinishedError(ttid, f->second.how);
    Txn& txn = txns_[ttid];
    if (txn.state != State::kStoring) {
      return absl::FailedPreconditionError(
          absl::StrCat("transaction ", TidHex(ttid), " is ", StateName(txn.state),
                       ": no more stores"));
    }
    if (client_node_id != 0) txn.client_node_id = client_node_id;
    ++txn.active_stores;
    txn.last_activity = clock_->Now();
  }

  std::vector<uint64_t> oids;
  oids.reserve(objects.size());
  for (const StoreObject& o : objects) oids.push_back(o.oid);
  std::vector<uint64_t> newly_locked;
  absl::Status status = locks_->LockAll(ttid, oids, lock_deadline, &newly_locked);
  if (status.ok()) status = CheckConflicts(objects, view);

  absl::MutexLock l(&mu_);
  auto it = txns_.find(ttid);
  if (it != txns_.end()) {
    --it->second.active_stores;
    it->second.last_activity = clock_->Now();
  }
  if (status.ok()) {
    if (it == txns_.end()) {
      status = UnknownTransaction(absl::StatusCode::kFailedPrecondition, ttid,
                                  "was aborted during the store");
    } else if (it->second.state != State::kStoring) {
      status = absl::FailedPreconditionError(
          absl::StrCat("transaction ", TidHex(ttid), " became ",
                       StateName(it->second.state), " during the store"));
    }
  }
  if (!status.ok()) {
    // Nothing of this call is kept.
    locks_->Unlock(ttid, newly_locked);
    return status;
  }
  const uint32_t num_partitions = view.num_partitions();
  for (StoreObject& o : objects) {
    if (o.check_only) continue;  // locked and checked: that is all
    ObjectRecord rec;
    rec.partition = static_cast<uint32_t>(o.oid % num_partitions);
    rec.oid = o.oid;
    rec.data = std::move(o.data);
    rec.checksum = std::move(o.checksum);
    rec.data_tid = o.data_serial;
    it->second.objects[o.oid] = std::move(rec);
  }
  return absl::OkStatus();
}

absl::Status TransactionManager::Vote(
    uint64_t ttid, uint32_t client_node_id,
    const std::optional<TransactionMetadata>& metadata, const CellView& view) {
  if (ttid == 0) return absl::InvalidArgumentError("ttid must not be 0");
  if (view.num_partitions() == 0) {
    return absl::UnavailableError("this storage node has no partition table yet");
  }
  const uint32_t ttid_partition = view.PartitionOf(ttid);
  if (metadata.has_value() && !view.Writable(ttid_partition)) {
    return ErrorWithReason(absl::StatusCode::kUnavailable,
                           common::kReasonNotReadable,
                           view.NoCellMessage("writable", ttid_partition) +
                               " for the transaction record");
  }
  VoteRecord record;
  record.ttid = ttid;
  {
    absl::MutexLock l(&mu_);
    AwaitSettled(ttid);
    auto f = finished_.find(ttid);
    if (f != finished_.end()) return FinishedError(ttid, f->second.how);
    auto it = txns_.find(ttid);
    if (it == txns_.end()) {
      if (!metadata.has_value()) {
        return UnknownTransaction(absl::StatusCode::kNotFound, ttid,
                                  "has stored nothing on this node");
      }
      it = txns_.emplace(ttid, Txn{}).first;
      it->second.client_node_id = client_node_id;
    }
    Txn& txn = it->second;
    switch (txn.state) {
      case State::kVoted:
      case State::kLocked:
        return absl::OkStatus();  // idempotent
      case State::kVoteFailed:
        return absl::FailedPreconditionError(absl::StrCat(
            "the vote of transaction ", TidHex(ttid), " failed: abort it"));
      default:
        break;
    }
    if (txn.active_stores > 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "transaction ", TidHex(ttid), " still has stores in progress"));
    }
    txn.state = State::kVoting;
    record.objects.reserve(txn.objects.size());
    txn.voted_oids.clear();
    for (auto& [oid, rec] : txn.objects) {
      txn.voted_oids.push_back(oid);
      record.objects.push_back(std::move(rec));
    }
    txn.objects.clear();
  }
  if (metadata.has_value()) {
    TransactionRecord t;
    t.partition = ttid_partition;
    t.ttid = ttid;
    t.user = metadata->user;
    t.description = metadata->description;
    t.extension = metadata->extension;
    t.oids = metadata->oids;
    t.size_bytes = metadata->size_bytes;
    record.transaction = std::move(t);
  }
  std::optional<std::vector<uint64_t>> record_oids;
  if (record.transaction.has_value()) {
    record_oids = record.transaction->oids;
    std::sort(record_oids->begin(), record_oids->end());
    record_oids->erase(std::unique(record_oids->begin(), record_oids->end()),
                       record_oids->end());
  }
  absl::Status status = batcher_->StoreVote(std::move(record));
  absl::MutexLock l(&mu_);
  auto it = txns_.find(ttid);
  if (it != txns_.end()) {
    it->second.state = status.ok() ? State::kVoted : State::kVoteFailed;
    it->second.last_activity = clock_->Now();  // StaleVotes counts from here
    if (status.ok()) {
      it->second.record_oids = std::move(record_oids);
      it->second.voted_here = true;
    }
  }
  return status;
}

absl::Status TransactionManager::Lock(uint64_t ttid, uint64_t tid,
                                      std::optional<std::vector<uint64_t>>* stored_oids,
                                      const LockScope& scope) {
  std::vector<LockItem> items(1);
  items[0].ttid = ttid;
  items[0].tid = tid;
  items[0].scope = scope;
  LockMany(items);
  if (stored_oids != nullptr) *stored_oids = std::move(items[0].stored_oids);
  return items[0].result;
}

void TransactionManager::LockMany(std::vector<LockItem>& items) {
  // In ttid order: a batch holds its items kLocking while it prepares the
  // next ones, and may wait for another lock of a later item to settle;
  // taken in one global order, two batches can never wait for each other.
  std::vector<LockItem*> order;
  order.reserve(items.size());
  for (LockItem& item : items) order.push_back(&item);
  std::sort(order.begin(), order.end(),
            [](const LockItem* a, const LockItem* b) { return a->ttid < b->ttid; });
  std::vector<LockItem*> writes;
  writes.reserve(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    LockItem& item = *order[i];
    if (i > 0 && order[i - 1]->ttid == item.ttid) {
      // Its first item is (or will be) kLocking: waiting for it to settle
      // here would wait for this very batch.
      item.stored_oids.reset();
      item.result = absl::InvalidArgumentError(absl::StrCat(
          "ttid ", TidHex(item.ttid), " appears twice in one batch of locks"));
      continue;
    }
    if (PrepareLock(item)) writes.push_back(&item);
  }
  if (writes.empty()) return;
  auto record_of = [](const LockItem& item) {
    LockRecord record{item.ttid, item.tid};
    if (item.scope.num_partitions > 0) record.partitions = item.scope.partitions;
    return record;
  };
  if (writes.size() == 1) {
    writes[0]->result = batcher_->Lock(record_of(*writes[0]));
  } else {
    std::vector<LockRecord> records;
    records.reserve(writes.size());
    for (const LockItem* item : writes) records.push_back(record_of(*item));
    std::vector<absl::Status> results = batcher_->LockMany(std::move(records));
    for (size_t i = 0; i < writes.size(); ++i) writes[i]->result = std::move(results[i]);
  }
  for (LockItem* item : writes) CompleteLock(*item);
}

bool TransactionManager::PrepareLock(LockItem& item) {
  const uint64_t ttid = item.ttid;
  const uint64_t tid = item.tid;
  const LockScope& scope = item.scope;
  std::optional<std::vector<uint64_t>>* stored_oids = &item.stored_oids;
  stored_oids->reset();
  auto decided = [&item](absl::Status s) {
    item.result = std::move(s);
    return false;
  };
  if (ttid == 0 || tid == 0) {
    return decided(absl::InvalidArgumentError("ttid and tid must not be 0"));
  }
  bool check_database = false;
  {
    absl::MutexLock l(&mu_);
    AwaitSettled(ttid);
    auto it = txns_.find(ttid);
    if (it == txns_.end()) {
      auto f = finished_.find(ttid);
      if (f != finished_.end() && f->second.how == Finished::kCommitted) {
        if (f->second.tid == tid) return decided(absl::OkStatus());
        return decided(absl::FailedPreconditionError(
            absl::StrCat("transaction ", TidHex(ttid), " was committed with tid ",
                         TidHex(f->second.tid), ", not ", TidHex(tid))));
      }
      if (f != finished_.end()) return decided(FinishedError(ttid, f->second.how));
      check_database = true;
    } else {
      Txn& txn = it->second;
      if (txn.state == State::kLocked) {
        if (txn.tid == tid) {
          *stored_oids = txn.voted_oids;
          return decided(absl::OkStatus());
        }
        return decided(absl::FailedPreconditionError(
            absl::StrCat("transaction ", TidHex(ttid), " is locked with tid ",
                         TidHex(txn.tid), ", not ", TidHex(tid))));
      }
      if (txn.state != State::kVoted) {
        return decided(absl::FailedPreconditionError(
            absl::StrCat("transaction ", TidHex(ttid), " is ",
                         StateName(txn.state), ", not voted: cannot lock")));
      }
      txn.state = State::kLocking;
      *stored_oids = txn.voted_oids;
    }
  }
  std::vector<uint64_t> left_out;
  if (stored_oids->has_value() && !scope.partitions.empty() && scope.num_partitions > 0) {
    std::vector<uint64_t>& oids = **stored_oids;
    const absl::flat_hash_set<uint32_t> touched(scope.partitions.begin(),
                                                scope.partitions.end());
    auto outside = [&](uint64_t oid) {
      return !touched.contains(static_cast<uint32_t>(oid % scope.num_partitions));
    };
    std::copy_if(oids.begin(), oids.end(), std::back_inserter(left_out), outside);
    oids.erase(std::remove_if(oids.begin(), oids.end(), outside), oids.end());
  }
  static common::LogRateLimit limit(absl::Seconds(10));
  if (uint64_t dropped = 0; !left_out.empty() && limit.Allow(absl::Now(), &dropped)) {
    CELLAR_LOG(WARNING) << "transaction " << TidHex(ttid) << " stored " << left_out.size()
                        << " object(s) here in partitions its commit leaves out (first: oid "
                        << FormatOid(left_out.front()) << "): not committed"
                        << common::Dropped(dropped);
  }
  if (check_database) {
    // Committed before a restart (or never voted here). A node holding only
    // objects of the transaction has no trans record: its lock record says.
    absl::StatusOr<uint64_t> locked = backend_->GetLockedTid(ttid);
    if (!locked.ok()) return decided(locked.status());
    if (*locked == tid) return decided(absl::OkStatus());
    absl::StatusOr<uint64_t> committed = backend_->FindCommittedTid(ttid);
    if (!committed.ok()) return decided(committed.status());
    if (*committed == tid) return decided(absl::OkStatus());
    return decided(UnknownTransaction(absl::StatusCode::kNotFound, ttid,
                                      "has no vote on this node"));
  }
  return true;
}

void TransactionManager::CompleteLock(LockItem& item) {
  absl::MutexLock l(&mu_);
  auto it = txns_.find(item.ttid);
  if (it != txns_.end()) {
    if (item.result.ok()) {
      it->second.state = State::kLocked;
      it->second.tid = item.tid;
      // Committed here: younger transactions may now wait for its object
      // locks (released by the master's asynchronous unlock) instead of dying.
      locks_->MarkCommitted(item.ttid);
    } else {
      it->second.state = State::kVoted;
    }
  }
  if (!item.result.ok()) item.stored_oids.reset();
}

absl::Status TransactionManager::Unlock(uint64_t ttid, UnlockedRecord* record) {
  {
    absl::MutexLock l(&mu_);
    AwaitSettled(ttid);
    auto it = txns_.find(ttid);
    if (it == txns_.end()) return absl::OkStatus();  // idempotent
    if (it->second.state != State::kLocked) {
      return absl::FailedPreconditionError(
          absl::StrCat("transaction ", TidHex(ttid), " is ",
                       StateName(it->second.state), ", not locked: cannot unlock"));
    }
    if (record != nullptr) {
      record->known = it->second.voted_here;
      record->oids = std::move(it->second.record_oids);
    }
    RememberFinished(ttid, Finished::kCommitted, it->second.tid);
    txns_.erase(it);
  }
  locks_->Release(ttid);
  return absl::OkStatus();
}

size_t TransactionManager::ReleaseLocked() {
  std::vector<uint64_t> released;
  {
    absl::MutexLock l(&mu_);
    for (auto it = txns_.begin(); it != txns_.end();) {
      if (it->second.state == State::kLocked) {
        RememberFinished(it->first, Finished::kCommitted, it->second.tid);
        released.push_back(it->first);
        txns_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  for (uint64_t ttid : released) locks_->Release(ttid);
  return released.size();
}

size_t TransactionManager::ForgetAll() {
  std::vector<uint64_t> ttids;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [ttid, txn] : txns_) ttids.push_back(ttid);
  }
  size_t forgotten = 0;
  for (uint64_t ttid : ttids) {
    // Locked ones answer FAILED_PRECONDITION here and are released below;
    // record-dropping failures do not matter (truncate drops them all).
    if (Abort(ttid).ok()) ++forgotten;
  }
  return forgotten + ReleaseLocked();
}

absl::Status TransactionManager::Abort(uint64_t ttid, bool drop_voted) {
  bool drop_records = false;
  {
    absl::MutexLock l(&mu_);
    AwaitSettled(ttid);
    auto it = txns_.find(ttid);
    auto f = finished_.find(ttid);
    if ((it != txns_.end() && it->second.state == State::kLocked) ||
        (f != finished_.end() && f->second.how == Finished::kCommitted)) {
      return absl::FailedPreconditionError(
          absl::StrCat("transaction ", TidHex(ttid),
                       " is locked (committed): it cannot be aborted"));
    }
    if (it != txns_.end()) {
      drop_records = it->second.state == State::kVoted ||
                     it->second.state == State::kVoteFailed;
      if (drop_records && !drop_voted) {
        return absl::FailedPreconditionError(absl::StrCat(
            "transaction ", TidHex(ttid), " is ", StateName(it->second.state),
            " on this node: a voted transaction is aborted through the master "
            "(Master.Abort), with its epoch"));
      }
      txns_.erase(it);
    }
    RememberFinished(ttid, Finished::kAborted, 0);
  }
  locks_->Release(ttid);
  if (drop_records) return backend_->AbortTransaction(ttid);
  return absl::OkStatus();
}

std::vector<uint64_t> TransactionManager::ExpireUnvoted() {
  std::vector<uint64_t> expired;
  if (options_.unvoted_timeout <= absl::ZeroDuration()) return expired;
  const absl::Time now = clock_->Now();
  {
    absl::MutexLock l(&mu_);
    for (auto it = txns_.begin(); it != txns_.end();) {
      const Txn& txn = it->second;
      // A store waiting for a lock, or a vote in progress, keeps it alive.
      if (txn.state == State::kStoring && txn.active_stores == 0 &&
          now - txn.last_activity >= options_.unvoted_timeout) {
        expired.push_back(it->first);
        RememberFinished(it->first, Finished::kExpired, 0);
        txns_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  // Nothing durable to drop: its objects were only in memory.
  for (uint64_t ttid : expired) locks_->Release(ttid);
  return expired;
}

size_t TransactionManager::MarkVotesInDoubt() {
  absl::MutexLock l(&mu_);
  size_t marked = 0;
  for (auto& [ttid, txn] : txns_) {
    if (txn.state != State::kVoted && txn.state != State::kLocking) continue;
    if (!txn.in_doubt) ++marked;
    txn.in_doubt = true;
  }
  return marked;
}

uint64_t TransactionManager::InDoubtVoteOn(uint64_t oid) const {
  const uint64_t holder = locks_->Holder(oid);  // outside mu_ (lock order)
  if (holder == 0) return 0;
  absl::MutexLock l(&mu_);
  auto it = txns_.find(holder);
  if (it == txns_.end() || !it->second.in_doubt) return 0;
  if (it->second.state != State::kVoted && it->second.state != State::kLocking) return 0;
  return holder;
}

uint64_t TransactionManager::LowestInDoubtVote(uint32_t partition,
                                               uint32_t num_partitions) const {
  if (num_partitions == 0) return 0;
  absl::MutexLock l(&mu_);
  uint64_t lowest = 0;
  for (const auto& [ttid, txn] : txns_) {
    if (!txn.in_doubt || (txn.state != State::kVoted && txn.state != State::kLocking)) {
      continue;
    }
    if (lowest != 0 && ttid >= lowest) continue;
    const bool touches =
        ttid % num_partitions == partition ||
        std::any_of(txn.voted_oids.begin(), txn.voted_oids.end(),
                    [&](uint64_t oid) { return oid % num_partitions == partition; });
    if (touches) lowest = ttid;
  }
  return lowest;
}

std::vector<uint64_t> TransactionManager::StaleVotes(absl::Duration age, size_t limit) const {
  std::vector<uint64_t> stale;
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  for (const auto& [ttid, txn] : txns_) {
    if (stale.size() >= limit) break;
    if (txn.state == State::kVoted && now - txn.last_activity >= age) stale.push_back(ttid);
  }
  return stale;
}

TransactionManager::Known TransactionManager::KnownState(uint64_t ttid) const {
  absl::MutexLock l(&mu_);
  Known known;
  auto it = txns_.find(ttid);
  if (it != txns_.end()) {
    switch (it->second.state) {
      case State::kStoring:
      case State::kVoteFailed:  // nothing durable
        known.kind = Known::kStoring;
        break;
      case State::kVoting:
      case State::kVoted:
      case State::kLocking:
        known.kind = Known::kVoted;
        break;
      case State::kLocked:
        known.kind = Known::kLocked;
        known.tid = it->second.tid;
        break;
    }
    return known;
  }
  auto f = finished_.find(ttid);
  if (f != finished_.end()) {
    if (f->second.how == Finished::kCommitted) {
      known.kind = Known::kLocked;
      known.tid = f->second.tid;
    } else {
      known.kind = Known::kAborted;
    }
  }
  return known;
}

size_t TransactionManager::open_transactions() const {
  absl::MutexLock l(&mu_);
  return txns_.size();
}

std::vector<uint64_t> TransactionManager::OpenTransactionIds() const {
  absl::MutexLock l(&mu_);
  std::vector<uint64_t> ttids;
  ttids.reserve(txns_.size());
  for (const auto& [ttid, txn] : txns_) ttids.push_back(ttid);
  return ttids;
}

std::optional<TransactionManager::State> TransactionManager::StateOf(
    uint64_t ttid) const {
  absl::MutexLock l(&mu_);
  auto it = txns_.find(ttid);
  if (it == txns_.end()) return std::nullopt;
  return it->second.state;
}

std::vector<uint64_t> TransactionManager::TransactionsOfClient(
    uint32_t client_node_id) const {
  absl::MutexLock l(&mu_);
  std::vector<uint64_t> out;
  for (const auto& [ttid, txn] : txns_) {
    if (txn.client_node_id == client_node_id) out.push_back(ttid);
  }
  return out;
}

}  // namespace cellar::storage
