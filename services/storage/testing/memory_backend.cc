#include "services/storage/testing/memory_backend.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "services/common/errors.h"

namespace cellar::storage::testing {

using ::cellar::common::ErrorWithReason;

void MemoryBackend::set_store_votes_hook(StoreVotesHook hook) {
  absl::MutexLock l(&mu_);
  store_votes_hook_ = std::move(hook);
}

void MemoryBackend::set_lock_hook(LockHook hook) {
  absl::MutexLock l(&mu_);
  lock_hook_ = std::move(hook);
}

void MemoryBackend::set_set_config_hook(SetConfigHook hook) {
  absl::MutexLock l(&mu_);
  set_config_hook_ = std::move(hook);
}

void MemoryBackend::set_save_partition_table_hook(SavePartitionTableHook hook) {
  absl::MutexLock l(&mu_);
  save_partition_table_hook_ = std::move(hook);
}

int MemoryBackend::store_votes_calls() const {
  absl::MutexLock l(&mu_);
  return store_votes_calls_;
}

int MemoryBackend::lock_calls() const {
  absl::MutexLock l(&mu_);
  return lock_calls_;
}

int MemoryBackend::last_serials_calls() const {
  absl::MutexLock l(&mu_);
  return last_serials_calls_;
}

std::vector<size_t> MemoryBackend::store_votes_sizes() const {
  absl::MutexLock l(&mu_);
  return store_votes_sizes_;
}

std::vector<size_t> MemoryBackend::lock_sizes() const {
  absl::MutexLock l(&mu_);
  return lock_sizes_;
}

size_t MemoryBackend::temporary_count() const {
  absl::MutexLock l(&mu_);
  return temporary_.size();
}

absl::StatusOr<std::optional<std::string>> MemoryBackend::GetConfig(
    absl::string_view key) {
  absl::MutexLock l(&mu_);
  auto it = config_.find(std::string(key));
  if (it == config_.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

absl::Status MemoryBackend::SetConfig(absl::string_view key,
                                      absl::string_view value) {
  SetConfigHook hook;
  {
    absl::MutexLock l(&mu_);
    hook = set_config_hook_;
  }
  if (hook) {
    absl::Status s = hook(key, value);
    if (!s.ok()) return s;
  }
  absl::MutexLock l(&mu_);
  config_[std::string(key)] = std::string(value);
  return absl::OkStatus();
}

absl::Status MemoryBackend::SavePartitionTable(const PartitionTableRecord& table) {
  SavePartitionTableHook hook;
  {
    absl::MutexLock l(&mu_);
    hook = save_partition_table_hook_;
  }
  if (hook) {
    absl::Status s = hook(table);
    if (!s.ok()) return s;
  }
  absl::MutexLock l(&mu_);
  pt_ = table;
  return absl::OkStatus();
}

absl::StatusOr<PartitionTableRecord> MemoryBackend::LoadPartitionTable() {
  absl::MutexLock l(&mu_);
  return pt_;
}

absl::Status MemoryBackend::StoreVotes(const std::vector<VoteRecord>& votes) {
  StoreVotesHook hook;
  {
    absl::MutexLock l(&mu_);
    ++store_votes_calls_;
    store_votes_sizes_.push_back(votes.size());
    hook = store_votes_hook_;
  }
  if (hook) {
    absl::Status s = hook(votes);
    if (!s.ok()) return s;
  }
  absl::MutexLock l(&mu_);
  for (const VoteRecord& v : votes) {
    if (v.ttid == 0) return absl::InvalidArgumentError("vote with ttid 0");
  }
  for (const VoteRecord& v : votes) temporary_[v.ttid] = v;
  return absl::OkStatus();
}

absl::Status MemoryBackend::LockTransactions(const std::vector<LockRecord>& locks) {
  LockHook hook;
  {
    absl::MutexLock l(&mu_);
    ++lock_calls_;
    lock_sizes_.push_back(locks.size());
    hook = lock_hook_;
  }
  if (hook) {
    absl::Status s = hook(locks);
    if (!s.ok()) return s;
  }
  absl::MutexLock l(&mu_);
  for (const LockRecord& lock : locks) {
    auto it = temporary_.find(lock.ttid);
    if (it == temporary_.end()) continue;  // already locked, or nothing here
    locked_[lock.ttid] = lock.tid;
    for (ObjectRecord obj : it->second.objects) {
      obj.tid = lock.tid;
      objects_[{obj.partition, obj.oid}][lock.tid] = std::move(obj);
    }
    if (it->second.transaction.has_value()) {
      TransactionRecord t = *it->second.transaction;
      t.tid = lock.tid;
      t.ttid = lock.ttid;
      transactions_[lock.tid] = std::move(t);
    }
    temporary_.erase(it);
  }
  return absl::OkStatus();
}

absl::Status MemoryBackend::AbortTransaction(uint64_t ttid) {
  absl::MutexLock l(&mu_);
  temporary_.erase(ttid);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> MemoryBackend::ListVotedTransactions() {
  absl::MutexLock l(&mu_);
  std::vector<uint64_t> out;
  for (const auto& [ttid, v] : temporary_) out.push_back(ttid);
  return out;
}

absl::StatusOr<std::vector<VotedTransaction>> MemoryBackend::ListVotedObjects() {
  absl::MutexLock l(&mu_);
  std::map<uint64_t, std::vector<uint64_t>> voted;
  for (const auto& [ttid, v] : temporary_) {
    std::vector<uint64_t>& oids = voted[ttid];
    for (const ObjectRecord& o : v.objects) oids.push_back(o.oid);
  }
  return SortedVotedTransactions(std::move(voted));
}

absl::StatusOr<uint64_t> MemoryBackend::FindCommittedTid(uint64_t ttid) {
  absl::MutexLock l(&mu_);
  for (const auto& [tid, t] : transactions_) {
    if (t.ttid == ttid) return tid;
  }
  return uint64_t{0};
}

absl::StatusOr<uint64_t> MemoryBackend::GetLockedTid(uint64_t ttid) {
  absl::MutexLock l(&mu_);
  auto it = locked_.find(ttid);
  return it == locked_.end() ? uint64_t{0} : it->second;
}

absl::Status MemoryBackend::ForgetLocks(const std::vector<uint64_t>& ttids) {
  absl::MutexLock l(&mu_);
  for (uint64_t ttid : ttids) locked_.erase(ttid);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> MemoryBackend::GetLastSerials(
    uint32_t num_partitions, const std::vector<uint64_t>& oids) {
  if (num_partitions == 0) {
    return absl::InvalidArgumentError("num_partitions must be > 0");
  }
  absl::MutexLock l(&mu_);
  ++last_serials_calls_;
  std::vector<uint64_t> out;
  out.reserve(oids.size());
  for (uint64_t oid : oids) {
    auto it = objects_.find({static_cast<uint32_t>(oid % num_partitions), oid});
    out.push_back(it == objects_.end() || it->second.empty()
                      ? 0
                      : it->second.rbegin()->first);
  }
  return out;
}

LoadedObject MemoryBackend::ToLoaded(const Revisions& revs,
                                     Revisions::const_iterator it) const {
  LoadedObject out;
  out.oid = it->second.oid;
  out.serial = it->first;
  auto next = std::next(it);
  out.next_serial = next == revs.end() ? 0 : next->first;
  out.data = it->second.data;
  out.checksum = it->second.checksum;
  out.data_tid = it->second.data_tid;
  if (out.data_tid != 0) {
    auto src = revs.find(out.data_tid);
    if (src != revs.end()) {
      out.data = src->second.data;
      out.checksum = src->second.checksum;
    }
  }
  return out;
}

absl::StatusOr<LoadedObject> MemoryBackend::LoadBefore(uint32_t partition,
                                                       uint64_t oid,
                                                       uint64_t before_tid) {
  absl::MutexLock l(&mu_);
  auto it = objects_.find({partition, oid});
  if (it == objects_.end() || it->second.empty()) {
    return ErrorWithReason(absl::StatusCode::kNotFound,
                           common::kReasonNoSuchObject,
                           absl::StrCat("no object ", oid));
  }
  const Revisions& revs = it->second;
  auto rev = revs.lower_bound(before_tid);
  if (rev == revs.begin()) {
    return ErrorWithReason(absl::StatusCode::kNotFound,
                           common::kReasonNoEarlierRevision,
                           absl::StrCat("no revision of ", oid, " before ", before_tid));
  }
  return ToLoaded(revs, std::prev(rev));
}

absl::StatusOr<LoadedObject> MemoryBackend::LoadSerial(uint32_t partition,
                                                       uint64_t oid,
                                                       uint64_t serial) {
  absl::MutexLock l(&mu_);
  auto it = objects_.find({partition, oid});
  if (it == objects_.end() || it->second.empty()) {
    return ErrorWithReason(absl::StatusCode::kNotFound,
                           common::kReasonNoSuchObject,
                           absl::StrCat("no object ", oid));
  }
  auto rev = it->second.find(serial);
  if (rev == it->second.end()) {
    return ErrorWithReason(absl::StatusCode::kNotFound,
                           common::kReasonNoSuchRevision,
                           absl::StrCat("no revision ", serial, " of ", oid));
  }
  return ToLoaded(it->second, rev);
}

absl::StatusOr<std::vector<HistoryEntry>> MemoryBackend::History(
    uint32_t partition, uint64_t oid, uint32_t limit) {
  absl::MutexLock l(&mu_);
  std::vector<HistoryEntry> out;
  auto it = objects_.find({partition, oid});
  if (it == objects_.end()) return out;
  for (auto rev = it->second.rbegin();
       rev != it->second.rend() && out.size() < limit; ++rev) {
    HistoryEntry e;
    e.serial = rev->first;
    e.size_bytes = rev->second.data.size();
    e.data_tid = rev->second.data_tid;
    e.deleted = rev->second.data.empty() && rev->second.data_tid == 0;
    out.push_back(e);
  }
  return out;
}

absl::StatusOr<std::vector<TransactionRecord>> MemoryBackend::LastTransactions(
    uint32_t limit, uint64_t before_tid) {
  absl::MutexLock l(&mu_);
  std::vector<TransactionRecord> out;
  for (auto it = transactions_.rbegin();
       it != transactions_.rend() && out.size() < limit; ++it) {
    if (before_tid != 0 && it->first >= before_tid) continue;
    out.push_back(it->second);  // size_bytes as stored with the record
  }
  return out;
}

absl::StatusOr<LastIds> MemoryBackend::GetLastIds() {
  absl::MutexLock l(&mu_);
  LastIds ids;
  for (const auto& [key, revs] : objects_) {
    if (revs.empty()) continue;
    ids.last_oid = std::max(ids.last_oid, key.second);
    ids.last_tid = std::max(ids.last_tid, revs.rbegin()->first);
  }
  if (!transactions_.empty()) {
    ids.last_tid = std::max(ids.last_tid, transactions_.rbegin()->first);
  }
  for (const auto& [ttid, v] : temporary_) {
    ids.last_ttid = std::max(ids.last_ttid, ttid);
    for (const ObjectRecord& o : v.objects) ids.last_oid = std::max(ids.last_oid, o.oid);
  }
  return ids;
}

void MemoryBackend::set_disk_usage(std::optional<DiskUsage> usage) {
  absl::MutexLock l(&mu_);
  disk_usage_ = usage;
}

absl::StatusOr<std::optional<DiskUsage>> MemoryBackend::GetDiskUsage() {
  absl::MutexLock l(&mu_);
  return disk_usage_;
}

absl::StatusOr<BackendStats> MemoryBackend::GetStats() {
  absl::MutexLock l(&mu_);
  BackendStats stats;
  for (const auto& [key, revs] : objects_) {
    stats.object_count += revs.size();
    for (const auto& [tid, rec] : revs) stats.data_bytes += rec.data.size();
  }
  stats.transaction_count = transactions_.size();
  return stats;
}

absl::StatusOr<std::vector<TransactionRecord>> MemoryBackend::ListTransactions(
    uint32_t partition, uint64_t min_tid, uint64_t max_tid, uint32_t limit) {
  absl::MutexLock l(&mu_);
  std::vector<TransactionRecord> out;
  for (auto it = transactions_.lower_bound(min_tid);
       it != transactions_.end() && it->first <= max_tid && out.size() < limit;
       ++it) {
    if (it->second.partition == partition) out.push_back(it->second);
  }
  return out;
}

absl::StatusOr<std::vector<ObjectRecord>> MemoryBackend::ListObjects(
    uint32_t partition, uint64_t min_tid, uint64_t max_tid, uint32_t limit) {
  absl::MutexLock l(&mu_);
  std::vector<ObjectRecord> all;
  for (const auto& [key, revs] : objects_) {
    if (key.first != partition) continue;
    for (const auto& [tid, rec] : revs) {
      if (tid >= min_tid && tid <= max_tid) all.push_back(rec);
    }
  }
  std::sort(all.begin(), all.end(), [](const ObjectRecord& a, const ObjectRecord& b) {
    return std::make_pair(a.tid, a.oid) < std::make_pair(b.tid, b.oid);
  });
  if (all.size() > limit) all.resize(limit);
  return all;
}

absl::StatusOr<std::vector<ObjectRecord>> MemoryBackend::ListObjectsFrom(
    uint32_t partition, uint64_t min_tid, uint64_t min_oid, uint64_t max_tid,
    uint32_t limit) {
  absl::MutexLock l(&mu_);
  std::vector<ObjectRecord> all;
  for (const auto& [key, revs] : objects_) {
    if (key.first != partition) continue;
    for (const auto& [tid, rec] : revs) {
      if (tid <= max_tid && std::make_pair(tid, rec.oid) >= std::make_pair(min_tid, min_oid)) {
        all.push_back(rec);
      }
    }
  }
  std::sort(all.begin(), all.end(), [](const ObjectRecord& a, const ObjectRecord& b) {
    return std::make_pair(a.tid, a.oid) < std::make_pair(b.tid, b.oid);
  });
  if (all.size() > limit) all.resize(limit);
  return all;
}

absl::Status MemoryBackend::ImportCommitted(
    const std::vector<TransactionRecord>& transactions,
    const std::vector<ObjectRecord>& objects) {
  absl::MutexLock l(&mu_);
  for (const TransactionRecord& t : transactions) transactions_[t.tid] = t;
  for (const ObjectRecord& o : objects) objects_[{o.partition, o.oid}][o.tid] = o;
  return absl::OkStatus();
}

absl::Status MemoryBackend::DeletePartition(uint32_t partition) {
  absl::MutexLock l(&mu_);
  for (auto it = objects_.begin(); it != objects_.end();) {
    it = it->first.first == partition ? objects_.erase(it) : std::next(it);
  }
  for (auto it = transactions_.begin(); it != transactions_.end();) {
    it = it->second.partition == partition ? transactions_.erase(it) : std::next(it);
  }
  return absl::OkStatus();
}

absl::Status MemoryBackend::Truncate(uint64_t tid) {
  absl::MutexLock l(&mu_);
  for (auto& [key, revs] : objects_) revs.erase(revs.upper_bound(tid), revs.end());
  transactions_.erase(transactions_.upper_bound(tid), transactions_.end());
  temporary_.clear();
  for (auto it = locked_.begin(); it != locked_.end();) {
    it = it->second > tid ? locked_.erase(it) : std::next(it);
  }
  return absl::OkStatus();
}

}  // namespace cellar::storage::testing
