#include "services/storage/instrumented_backend.h"

#include <utility>

namespace cellar::storage {

bool IsBackendFailure(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      return true;
    default:
      return false;
  }
}

InstrumentedBackend::InstrumentedBackend(std::unique_ptr<StorageBackend> backend,
                                         StorageMetrics* metrics)
    : backend_(std::move(backend)), metrics_(metrics) {}

absl::Status InstrumentedBackend::Count(absl::Status status) {
  if (IsBackendFailure(status)) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    if (metrics_ != nullptr) metrics_->backend_errors->Increment();
  }
  return status;
}

std::string InstrumentedBackend::Kind() const { return backend_->Kind(); }

absl::StatusOr<std::optional<std::string>> InstrumentedBackend::GetConfig(
    absl::string_view key) {
  return Count(backend_->GetConfig(key));
}

absl::Status InstrumentedBackend::SetConfig(absl::string_view key, absl::string_view value) {
  return Count(backend_->SetConfig(key, value));
}

absl::Status InstrumentedBackend::SavePartitionTable(const PartitionTableRecord& table) {
  return Count(backend_->SavePartitionTable(table));
}

absl::StatusOr<PartitionTableRecord> InstrumentedBackend::LoadPartitionTable() {
  return Count(backend_->LoadPartitionTable());
}

absl::Status InstrumentedBackend::StoreVotes(const std::vector<VoteRecord>& votes) {
  return Count(backend_->StoreVotes(votes));
}

absl::Status InstrumentedBackend::LockTransactions(const std::vector<LockRecord>& locks) {
  return Count(backend_->LockTransactions(locks));
}

absl::StatusOr<LockRecord> InstrumentedBackend::GetLock(uint64_t ttid) {
  return Count(backend_->GetLock(ttid));
}

absl::Status InstrumentedBackend::SetTransactionOids(uint32_t partition, uint64_t tid,
                                                     const std::vector<uint64_t>& oids) {
  return Count(backend_->SetTransactionOids(partition, tid, oids));
}

absl::Status InstrumentedBackend::ForgetLocks(const std::vector<uint64_t>& ttids) {
  return Count(backend_->ForgetLocks(ttids));
}

absl::Status InstrumentedBackend::AbortTransaction(uint64_t ttid) {
  return Count(backend_->AbortTransaction(ttid));
}

absl::StatusOr<std::vector<uint64_t>> InstrumentedBackend::ListVotedTransactions() {
  return Count(backend_->ListVotedTransactions());
}

absl::StatusOr<std::vector<VotedTransaction>> InstrumentedBackend::ListVotedObjects() {
  return Count(backend_->ListVotedObjects());
}

absl::StatusOr<uint64_t> InstrumentedBackend::FindCommittedTid(uint64_t ttid) {
  return Count(backend_->FindCommittedTid(ttid));
}

absl::StatusOr<std::vector<uint64_t>> InstrumentedBackend::GetLastSerials(
    uint32_t num_partitions, const std::vector<uint64_t>& oids) {
  return Count(backend_->GetLastSerials(num_partitions, oids));
}

absl::StatusOr<LoadedObject> InstrumentedBackend::LoadBefore(uint32_t partition, uint64_t oid,
                                                              uint64_t before_tid) {
  return Count(backend_->LoadBefore(partition, oid, before_tid));
}

absl::StatusOr<LoadedObject> InstrumentedBackend::LoadSerial(uint32_t partition, uint64_t oid,
                                                              uint64_t serial) {
  return Count(backend_->LoadSerial(partition, oid, serial));
}

absl::StatusOr<std::vector<HistoryEntry>> InstrumentedBackend::History(uint32_t partition,
                                                                        uint64_t oid,
                                                                        uint32_t limit) {
  return Count(backend_->History(partition, oid, limit));
}

absl::StatusOr<std::vector<TransactionRecord>> InstrumentedBackend::LastTransactions(
    uint32_t limit, uint64_t before_tid) {
  return Count(backend_->LastTransactions(limit, before_tid));
}

absl::StatusOr<LastIds> InstrumentedBackend::GetLastIds() {
  return Count(backend_->GetLastIds());
}

absl::StatusOr<BackendStats> InstrumentedBackend::GetStats() {
  if (metrics_ != nullptr) {
    if (std::optional<PoolUsage> pool = backend_->GetPoolUsage(); pool.has_value()) {
      metrics_->backend_pool_in_use->Set(static_cast<double>(pool->in_use));
      metrics_->backend_pool_idle->Set(static_cast<double>(pool->idle));
    }
  }
  return Count(backend_->GetStats());
}

absl::StatusOr<std::vector<TransactionRecord>> InstrumentedBackend::ScanTransactions(
    uint64_t min_tid, uint64_t max_tid, uint32_t limit) {
  return Count(backend_->ScanTransactions(min_tid, max_tid, limit));
}

absl::StatusOr<std::optional<TransactionRecord>> InstrumentedBackend::GetTransaction(
    uint64_t tid) {
  return Count(backend_->GetTransaction(tid));
}

absl::StatusOr<std::vector<PartitionStats>> InstrumentedBackend::GetPartitionStats() {
  return Count(backend_->GetPartitionStats());
}

std::optional<PoolUsage> InstrumentedBackend::GetPoolUsage() { return backend_->GetPoolUsage(); }

absl::StatusOr<std::optional<DiskUsage>> InstrumentedBackend::GetDiskUsage() {
  // statvfs failing is not a database failure: not counted.
  return backend_->GetDiskUsage();
}

absl::StatusOr<std::vector<TransactionRecord>> InstrumentedBackend::ListTransactions(
    uint32_t partition, uint64_t min_tid, uint64_t max_tid, uint32_t limit) {
  return Count(backend_->ListTransactions(partition, min_tid, max_tid, limit));
}

absl::StatusOr<std::vector<ObjectRecord>> InstrumentedBackend::ListObjects(
    uint32_t partition, uint64_t min_tid, uint64_t max_tid, uint32_t limit) {
  return Count(backend_->ListObjects(partition, min_tid, max_tid, limit));
}

absl::StatusOr<std::vector<ObjectRecord>> InstrumentedBackend::ListObjectsFrom(
    uint32_t partition, uint64_t min_tid, uint64_t min_oid, uint64_t max_tid, uint32_t limit) {
  return Count(backend_->ListObjectsFrom(partition, min_tid, min_oid, max_tid, limit));
}

absl::Status InstrumentedBackend::ImportCommitted(
    const std::vector<TransactionRecord>& transactions, const std::vector<ObjectRecord>& objects) {
  return Count(backend_->ImportCommitted(transactions, objects));
}

absl::StatusOr<PackChunk> InstrumentedBackend::PackPartition(uint32_t partition,
                                                             uint64_t pack_tid,
                                                             const PackPosition& from,
                                                             uint32_t max_items) {
  return Count(backend_->PackPartition(partition, pack_tid, from, max_items));
}

absl::Status InstrumentedBackend::DeletePartition(uint32_t partition) {
  return Count(backend_->DeletePartition(partition));
}

absl::Status InstrumentedBackend::Truncate(uint64_t tid) {
  return Count(backend_->Truncate(tid));
}

}  // namespace cellar::storage
