#include "services/storage/testing/memory_backend.h"

#include <algorithm>
#include <iterator>
#include <limits>

#include "absl/strings/str_cat.h"
#include "services/common/errors.h"
#include "services/common/ids.h"
#include "services/common/status_macros.h"
#include "services/storage/backend/pack_plan.h"

namespace cellar::storage::testing {

using ::cellar::common::ErrorWithReason;
using ::cellar::common::kMaxTid;

namespace {

// Undo back-pointer chains longer than this are treated as corruption (as
// the SQLite backend does).
constexpr int kMaxUndoChain = 64;

// Tids are 1..kMaxTid (what the databases' signed 64-bit columns hold).
absl::Status CheckTid(uint64_t tid, absl::string_view what) {
  if (tid == 0 || tid > kMaxTid) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", tid, " is not a valid tid (1..", kMaxTid, ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckDataTid(const ObjectRecord& o) {
  if (o.data_tid > kMaxTid) {
    return absl::InvalidArgumentError(absl::StrCat(
        "oid ", o.oid, ": data_tid ", o.data_tid, " is not a valid tid"));
  }
  return absl::OkStatus();
}

// A record that has bytes of its own (a row of the real backends' `data`
// table); deletions and undo records have none.
bool HasData(const ObjectRecord& o) { return !o.data.empty(); }

}  // namespace

MemoryBackend::MemoryBackend() : MemoryBackend(std::make_shared<MemoryStore>()) {
  absl::MutexLock l(&store_->mu_);
  store_->open_ = true;
}

MemoryBackend::MemoryBackend(std::shared_ptr<MemoryStore> store)
    : store_(std::move(store)) {}

absl::StatusOr<std::unique_ptr<MemoryBackend>> MemoryBackend::Open(
    std::shared_ptr<MemoryStore> store) {
  if (store == nullptr) return absl::InvalidArgumentError("no MemoryStore");
  {
    absl::MutexLock l(&store->mu_);
    if (store->open_) {
      return absl::FailedPreconditionError(
          "memory store: already open by another backend");
    }
    store->open_ = true;
  }
  return std::unique_ptr<MemoryBackend>(new MemoryBackend(std::move(store)));
}

MemoryBackend::~MemoryBackend() {
  absl::MutexLock l(&store_->mu_);
  store_->open_ = false;
}

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
  absl::MutexLock l(&store_->mu_);
  return store_->temporary_.size();
}

absl::StatusOr<std::optional<std::string>> MemoryBackend::GetConfig(
    absl::string_view key) {
  absl::Status key_ok = CheckConfigKey(key);
  if (!key_ok.ok()) return key_ok;
  absl::MutexLock l(&store_->mu_);
  auto it = store_->config_.find(std::string(key));
  if (it == store_->config_.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

absl::Status MemoryBackend::SetConfig(absl::string_view key,
                                      absl::string_view value) {
  absl::Status key_ok = CheckConfigKey(key);
  if (!key_ok.ok()) return key_ok;
  SetConfigHook hook;
  {
    absl::MutexLock l(&mu_);
    hook = set_config_hook_;
  }
  if (hook) {
    absl::Status s = hook(key, value);
    if (!s.ok()) return s;
  }
  absl::MutexLock l(&store_->mu_);
  store_->config_[std::string(key)] = std::string(value);
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
  absl::MutexLock l(&store_->mu_);
  store_->pt_ = table;
  return absl::OkStatus();
}

absl::StatusOr<PartitionTableRecord> MemoryBackend::LoadPartitionTable() {
  absl::MutexLock l(&store_->mu_);
  return store_->pt_;
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
  // All or nothing: check the whole batch first.
  for (const VoteRecord& v : votes) {
    absl::Status s = CheckTid(v.ttid, "ttid");
    for (const ObjectRecord& o : v.objects) {
      if (s.ok()) s = CheckDataTid(o);
    }
    if (!s.ok()) return s;
  }
  absl::MutexLock l(&store_->mu_);
  for (const VoteRecord& v : votes) store_->temporary_[v.ttid] = v;
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
  // All or nothing: a bad tid refuses the whole batch.
  for (const LockRecord& lock : locks) {
    absl::Status s = CheckTid(lock.tid, "tid");
    if (!s.ok()) return s;
  }
  absl::MutexLock l(&store_->mu_);
  for (const LockRecord& lock : locks) {
    auto it = store_->temporary_.find(lock.ttid);
    if (it == store_->temporary_.end()) continue;  // already locked, or nothing here
    store_->locked_[lock.ttid] = lock;
    // Committed rows that already exist (imported by replication) are kept.
    for (ObjectRecord obj : it->second.objects) {
      if (!lock.partitions.empty() &&
          std::find(lock.partitions.begin(), lock.partitions.end(), obj.partition) ==
              lock.partitions.end()) {
        continue;
      }
      obj.tid = lock.tid;
      store_->objects_[{obj.partition, obj.oid}].emplace(lock.tid, std::move(obj));
    }
    if (it->second.transaction.has_value()) {
      TransactionRecord t = *it->second.transaction;
      t.tid = lock.tid;
      t.ttid = lock.ttid;
      store_->transactions_.emplace(MemoryStore::TransKey{lock.tid, t.partition},
                                    std::move(t));
    }
    store_->temporary_.erase(it);
  }
  return absl::OkStatus();
}

absl::Status MemoryBackend::AbortTransaction(uint64_t ttid) {
  absl::MutexLock l(&store_->mu_);
  store_->temporary_.erase(ttid);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> MemoryBackend::ListVotedTransactions() {
  absl::MutexLock l(&store_->mu_);
  std::vector<uint64_t> out;
  for (const auto& [ttid, v] : store_->temporary_) out.push_back(ttid);
  return out;
}

absl::StatusOr<std::vector<VotedTransaction>> MemoryBackend::ListVotedObjects() {
  absl::MutexLock l(&store_->mu_);
  std::map<uint64_t, std::vector<uint64_t>> voted;
  for (const auto& [ttid, v] : store_->temporary_) {
    std::vector<uint64_t>& oids = voted[ttid];
    for (const ObjectRecord& o : v.objects) oids.push_back(o.oid);
  }
  return SortedVotedTransactions(std::move(voted));
}

absl::StatusOr<uint64_t> MemoryBackend::FindCommittedTid(uint64_t ttid) {
  absl::MutexLock l(&store_->mu_);
  for (const auto& [key, t] : store_->transactions_) {
    if (t.ttid == ttid) return key.first;
  }
  return uint64_t{0};
}

absl::StatusOr<LockRecord> MemoryBackend::GetLock(uint64_t ttid) {
  absl::MutexLock l(&store_->mu_);
  auto it = store_->locked_.find(ttid);
  return it == store_->locked_.end() ? LockRecord{} : it->second;
}

absl::Status MemoryBackend::SetTransactionOids(uint32_t partition, uint64_t tid,
                                               const std::vector<uint64_t>& oids) {
  absl::MutexLock l(&store_->mu_);
  auto it = store_->transactions_.find({tid, partition});
  if (it != store_->transactions_.end()) it->second.oids = oids;
  return absl::OkStatus();
}

absl::Status MemoryBackend::ForgetLocks(const std::vector<uint64_t>& ttids) {
  absl::MutexLock l(&store_->mu_);
  for (uint64_t ttid : ttids) store_->locked_.erase(ttid);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> MemoryBackend::GetLastSerials(
    uint32_t num_partitions, const std::vector<uint64_t>& oids) {
  if (num_partitions == 0) {
    return absl::InvalidArgumentError("num_partitions must be > 0");
  }
  {
    absl::MutexLock l(&mu_);
    ++last_serials_calls_;
  }
  absl::MutexLock l(&store_->mu_);
  std::vector<uint64_t> out;
  out.reserve(oids.size());
  for (uint64_t oid : oids) {
    auto it = store_->objects_.find({static_cast<uint32_t>(oid % num_partitions), oid});
    out.push_back(it == store_->objects_.end() || it->second.empty()
                      ? 0
                      : it->second.rbegin()->first);
  }
  return out;
}

const ObjectRecord* MemoryBackend::Resolve(const Revisions& revs,
                                           Revisions::const_iterator it) const {
  const ObjectRecord* rec = &it->second;
  for (int hops = 0; rec->data_tid != 0; ++hops) {
    auto src = revs.find(rec->data_tid);
    if (src == revs.end() || hops == kMaxUndoChain) return nullptr;
    rec = &src->second;
  }
  return rec;
}

absl::StatusOr<LoadedObject> MemoryBackend::ToLoaded(
    const Revisions& revs, Revisions::const_iterator it) const {
  LoadedObject out;
  out.oid = it->second.oid;
  out.serial = it->first;
  auto next = std::next(it);
  out.next_serial = next == revs.end() ? 0 : next->first;
  out.data_tid = it->second.data_tid;
  // Undo: the data (and its checksum) come from the revision pointed at.
  const ObjectRecord* rec = Resolve(revs, it);
  if (rec == nullptr) {
    return absl::InternalError(absl::StrCat(
        "oid ", out.oid, " revision ", out.serial,
        ": undo back-pointer to a missing revision (or a chain too long)"));
  }
  out.data = rec->data;
  out.checksum = rec->checksum;
  return out;
}

absl::StatusOr<LoadedObject> MemoryBackend::LoadBefore(uint32_t partition,
                                                       uint64_t oid,
                                                       uint64_t before_tid) {
  absl::MutexLock l(&store_->mu_);
  auto it = store_->objects_.find({partition, oid});
  if (it == store_->objects_.end() || it->second.empty()) {
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
  absl::MutexLock l(&store_->mu_);
  auto it = store_->objects_.find({partition, oid});
  if (it == store_->objects_.end() || it->second.empty()) {
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
  absl::MutexLock l(&store_->mu_);
  std::vector<HistoryEntry> out;
  auto it = store_->objects_.find({partition, oid});
  if (it == store_->objects_.end()) return out;
  const Revisions& revs = it->second;
  for (auto rev = revs.rbegin(); rev != revs.rend() && out.size() < limit; ++rev) {
    HistoryEntry e;
    e.serial = rev->first;
    e.data_tid = rev->second.data_tid;
    e.deleted = rev->second.data.empty() && rev->second.data_tid == 0;
    // Undo revisions report the size of the data they re-use (a dangling
    // back-pointer: the record's own size, 0).
    const ObjectRecord* rec = Resolve(revs, std::prev(rev.base()));
    e.size_bytes = (rec != nullptr ? rec : &rev->second)->data.size();
    out.push_back(e);
  }
  return out;
}

absl::StatusOr<std::vector<TransactionRecord>> MemoryBackend::LastTransactions(
    uint32_t limit, uint64_t before_tid) {
  absl::MutexLock l(&store_->mu_);
  std::vector<TransactionRecord> out;
  for (auto it = store_->transactions_.rbegin();
       it != store_->transactions_.rend() && out.size() < limit; ++it) {
    if (before_tid != 0 && it->first.first >= before_tid) continue;
    out.push_back(it->second);  // size_bytes as stored with the record
  }
  return out;
}

absl::StatusOr<LastIds> MemoryBackend::GetLastIds() {
  absl::MutexLock l(&store_->mu_);
  LastIds ids;
  for (const auto& [key, revs] : store_->objects_) {
    if (revs.empty()) continue;
    ids.last_oid = std::max(ids.last_oid, key.second);
    ids.last_tid = std::max(ids.last_tid, revs.rbegin()->first);
  }
  if (!store_->transactions_.empty()) {
    ids.last_tid = std::max(ids.last_tid, store_->transactions_.rbegin()->first.first);
  }
  for (const auto& [ttid, v] : store_->temporary_) {
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
  absl::MutexLock l(&store_->mu_);
  BackendStats stats;
  for (const auto& [key, revs] : store_->objects_) {
    stats.object_count += revs.size();
    for (const auto& [tid, rec] : revs) {
      stats.data_bytes += rec.data.size();
      stats.data_rows += HasData(rec) ? 1 : 0;
    }
  }
  for (const auto& [ttid, v] : store_->temporary_) {
    for (const ObjectRecord& o : v.objects) stats.data_rows += HasData(o) ? 1 : 0;
  }
  stats.transaction_count = store_->transactions_.size();
  return stats;
}

absl::StatusOr<std::optional<TransactionRecord>> MemoryBackend::GetTransaction(
    uint64_t tid) {
  if (absl::Status bad = CheckTid(tid, "tid"); !bad.ok()) return bad;
  absl::MutexLock l(&store_->mu_);
  auto it = store_->transactions_.lower_bound({tid, 0});
  if (it == store_->transactions_.end() || it->first.first != tid) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::vector<TransactionRecord>> MemoryBackend::ScanTransactions(
    uint64_t min_tid, uint64_t max_tid, uint32_t limit) {
  absl::MutexLock l(&store_->mu_);
  std::vector<TransactionRecord> out;
  for (auto it = store_->transactions_.lower_bound({min_tid, 0});
       it != store_->transactions_.end() && it->first.first <= std::min(max_tid, kMaxTid) &&
       out.size() < limit;
       ++it) {
    out.push_back(it->second);
  }
  return out;
}

absl::StatusOr<std::vector<PartitionStats>> MemoryBackend::GetPartitionStats() {
  // A scan: the fake keeps no counters (the databases do).
  absl::MutexLock l(&store_->mu_);
  std::map<uint32_t, PartitionStats> by_partition;
  for (const auto& [key, revs] : store_->objects_) {
    if (revs.empty()) continue;
    PartitionStats& p = by_partition[key.first];
    p.partition = key.first;
    const ObjectRecord& latest = revs.rbegin()->second;
    p.objects += latest.data.empty() && latest.data_tid == 0 ? 0 : 1;
    p.revisions += revs.size();
    for (const auto& [tid, rec] : revs) p.bytes += rec.data.size();
  }
  std::vector<PartitionStats> out;
  for (auto& [partition, p] : by_partition) out.push_back(p);
  return out;
}

absl::StatusOr<std::vector<TransactionRecord>> MemoryBackend::ListTransactions(
    uint32_t partition, uint64_t min_tid, uint64_t max_tid, uint32_t limit) {
  absl::MutexLock l(&store_->mu_);
  std::vector<TransactionRecord> out;
  for (auto it = store_->transactions_.lower_bound({min_tid, 0});
       it != store_->transactions_.end() && it->first.first <= max_tid &&
       out.size() < limit;
       ++it) {
    if (it->first.second == partition) out.push_back(it->second);
  }
  return out;
}

absl::StatusOr<std::vector<ObjectRecord>> MemoryBackend::ListObjects(
    uint32_t partition, uint64_t min_tid, uint64_t max_tid, uint32_t limit) {
  return ListObjectsFrom(partition, min_tid, 0, max_tid, limit);
}

absl::StatusOr<std::vector<ObjectRecord>> MemoryBackend::ListObjectsFrom(
    uint32_t partition, uint64_t min_tid, uint64_t min_oid, uint64_t max_tid,
    uint32_t limit) {
  absl::MutexLock l(&store_->mu_);
  std::vector<ObjectRecord> all;
  for (const auto& [key, revs] : store_->objects_) {
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
  // All or nothing: check the whole batch first.
  for (const TransactionRecord& t : transactions) {
    absl::Status s = CheckTid(t.tid, "transaction tid");
    if (!s.ok()) return s;
  }
  for (const ObjectRecord& o : objects) {
    absl::Status s = CheckTid(o.tid, "object tid");
    if (s.ok()) s = CheckDataTid(o);
    if (!s.ok()) return s;
  }
  // Rows that already exist are kept (idempotent).
  absl::MutexLock l(&store_->mu_);
  for (const TransactionRecord& t : transactions) {
    store_->transactions_.emplace(MemoryStore::TransKey{t.tid, t.partition}, t);
  }
  for (const ObjectRecord& o : objects) {
    store_->objects_[{o.partition, o.oid}].emplace(o.tid, o);
  }
  return absl::OkStatus();
}

absl::Status MemoryBackend::DeletePartition(uint32_t partition) {
  absl::MutexLock l(&store_->mu_);
  auto& objects = store_->objects_;
  for (auto it = objects.begin(); it != objects.end();) {
    it = it->first.first == partition ? objects.erase(it) : std::next(it);
  }
  auto& transactions = store_->transactions_;
  for (auto it = transactions.begin(); it != transactions.end();) {
    it = it->first.second == partition ? transactions.erase(it) : std::next(it);
  }
  return absl::OkStatus();
}

absl::StatusOr<PackChunk> MemoryBackend::PackPartition(uint32_t partition,
                                                       uint64_t pack_tid,
                                                       const PackPosition& from,
                                                       uint32_t max_items) {
  CELLAR_RETURN_IF_ERROR(CheckPackArguments(pack_tid, max_items));
  absl::MutexLock l(&store_->mu_);
  PackChunk chunk;
  if (!from.transactions) {
    auto it = store_->objects_.lower_bound({partition, from.next});
    uint32_t examined = 0;
    for (; it != store_->objects_.end() && it->first.first == partition &&
           examined < max_items;
         ++it, ++examined) {
      Revisions& revs = it->second;
      std::vector<PackRow> rows;
      for (const auto& [tid, rec] : revs) {
        rows.push_back(PackRow{tid, rec.data_tid, HasData(rec) ? 1 : 0,
                               rec.checksum, rec.data.size()});
      }
      OidPackPlan plan = PlanOidPack(rows, pack_tid);
      for (const PackRewrite& rw : plan.rewrites) {
        ObjectRecord& rec = revs.at(rw.tid);
        rec.data_tid = rw.data_tid;
        if (rw.source_tid != 0) {
          rec.data = revs.at(rw.source_tid).data;
          rec.checksum = rw.checksum;
        }
      }
      for (uint64_t tid : plan.removed_tids) revs.erase(tid);
      chunk.rows_removed += plan.removed_tids.size();
      chunk.bytes_removed += plan.bytes_freed;
    }
    if (it != store_->objects_.end() && it->first.first == partition) {
      chunk.next = PackPosition{false, it->first.second};
      return chunk;
    }
    chunk.next = PackPosition{true, 0};
  } else {
    chunk.next = from;
  }
  // Transaction records: (tid, partition) keys, so a walk over tids.
  uint32_t examined = 0;
  auto t = store_->transactions_.lower_bound({chunk.next.next, 0});
  for (; t != store_->transactions_.end() && t->first.first < pack_tid &&
         examined < max_items;
       ++t) {
    if (t->first.second != partition) continue;
    ++examined;
    if (!t->second.packed) ++chunk.transactions_marked;
    t->second.packed = true;
  }
  if (t != store_->transactions_.end() && t->first.first < pack_tid) {
    chunk.next = PackPosition{true, t->first.first};
    return chunk;
  }
  chunk.done = true;
  return chunk;
}

absl::Status MemoryBackend::Truncate(uint64_t tid) {
  absl::MutexLock l(&store_->mu_);
  auto& objects = store_->objects_;
  for (auto it = objects.begin(); it != objects.end();) {
    Revisions& revs = it->second;
    revs.erase(revs.upper_bound(tid), revs.end());
    it = revs.empty() ? objects.erase(it) : std::next(it);
  }
  auto& transactions = store_->transactions_;
  transactions.erase(
      transactions.upper_bound({tid, std::numeric_limits<uint32_t>::max()}),
      transactions.end());
  store_->temporary_.clear();
  auto& locked = store_->locked_;
  for (auto it = locked.begin(); it != locked.end();) {
    it = it->second.tid > tid ? locked.erase(it) : std::next(it);
  }
  return absl::OkStatus();
}

}  // namespace cellar::storage::testing
