#ifndef CELLAR_SERVICES_STORAGE_INSTRUMENTED_BACKEND_H_
#define CELLAR_SERVICES_STORAGE_INSTRUMENTED_BACKEND_H_

// A StorageBackend decorator that counts failed backend operations and
// samples the backend's connection pool. Every
// call is forwarded to the wrapped backend, and a result whose code says
// the database failed (UNAVAILABLE, INTERNAL, UNKNOWN, DATA_LOSS,
// DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, PERMISSION_DENIED,
// UNAUTHENTICATED) adds one to the count. Answers that are part of the
// contract (NOT_FOUND loads, INVALID_ARGUMENT, FAILED_PRECONDITION,
// ABORTED, ...) are not errors of the backend.
//
// The storage node wraps its backend in one of these, so every path that
// reaches the database (write batcher, transaction manager, loads,
// replication, status) is counted in one place. The count feeds
// Storage.GetNodeStatus backend_errors_total (the admin's backend-errors
// alert) and the counter cellar_storage_backend_errors_total.
//
// Pool use (StorageBackend::GetPoolUsage) is sampled into the gauges
// cellar_storage_backend_pool_connections{state} whenever GetStats() is
// called: the node's stats refresher does every 15 s, and GetNodeStatus.
//
// Every StorageBackend method must be forwarded here (a method added to
// the interface with a default body must be added too).
//
// Thread-safe (as the wrapped backend is).

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/storage/backend/storage_backend.h"
#include "services/storage/storage_metrics.h"

namespace cellar::storage {

// True if `status` says the database failed (see above).
bool IsBackendFailure(const absl::Status& status);

class InstrumentedBackend final : public StorageBackend {
 public:
  // `metrics` may be null (no metrics); it must outlive this object.
  InstrumentedBackend(std::unique_ptr<StorageBackend> backend, StorageMetrics* metrics);

  // Failed operations since construction (monotonic).
  uint64_t errors_total() const { return errors_.load(std::memory_order_relaxed); }

  std::string Kind() const override;
  absl::StatusOr<std::optional<std::string>> GetConfig(absl::string_view key) override;
  absl::Status SetConfig(absl::string_view key, absl::string_view value) override;
  absl::Status SavePartitionTable(const PartitionTableRecord& table) override;
  absl::StatusOr<PartitionTableRecord> LoadPartitionTable() override;
  absl::Status StoreVotes(const std::vector<VoteRecord>& votes) override;
  absl::Status LockTransactions(const std::vector<LockRecord>& locks) override;
  absl::StatusOr<LockRecord> GetLock(uint64_t ttid) override;
  absl::Status SetTransactionOids(uint32_t partition, uint64_t tid,
                                  const std::vector<uint64_t>& oids) override;
  absl::Status ForgetLocks(const std::vector<uint64_t>& ttids) override;
  absl::Status AbortTransaction(uint64_t ttid) override;
  absl::StatusOr<std::vector<uint64_t>> ListVotedTransactions() override;
  absl::StatusOr<std::vector<VotedTransaction>> ListVotedObjects() override;
  absl::StatusOr<uint64_t> FindCommittedTid(uint64_t ttid) override;
  absl::StatusOr<std::vector<uint64_t>> GetLastSerials(
      uint32_t num_partitions, const std::vector<uint64_t>& oids) override;
  absl::StatusOr<LoadedObject> LoadBefore(uint32_t partition, uint64_t oid,
                                          uint64_t before_tid) override;
  absl::StatusOr<LoadedObject> LoadSerial(uint32_t partition, uint64_t oid,
                                          uint64_t serial) override;
  absl::StatusOr<std::vector<HistoryEntry>> History(uint32_t partition, uint64_t oid,
                                                    uint32_t limit) override;
  absl::StatusOr<std::vector<TransactionRecord>> LastTransactions(uint32_t limit,
                                                                  uint64_t before_tid) override;
  absl::StatusOr<std::vector<TransactionRecord>> ScanTransactions(
      uint64_t min_tid, uint64_t max_tid, uint32_t limit) override;
  absl::StatusOr<LastIds> GetLastIds() override;
  absl::StatusOr<BackendStats> GetStats() override;
  absl::StatusOr<std::optional<TransactionRecord>> GetTransaction(uint64_t tid) override;
  absl::StatusOr<std::vector<PartitionStats>> GetPartitionStats() override;
  absl::StatusOr<std::optional<DiskUsage>> GetDiskUsage() override;
  std::optional<PoolUsage> GetPoolUsage() override;
  absl::StatusOr<std::vector<TransactionRecord>> ListTransactions(uint32_t partition,
                                                                  uint64_t min_tid,
                                                                  uint64_t max_tid,
                                                                  uint32_t limit) override;
  absl::StatusOr<std::vector<ObjectRecord>> ListObjects(uint32_t partition, uint64_t min_tid,
                                                        uint64_t max_tid,
                                                        uint32_t limit) override;
  absl::StatusOr<std::vector<ObjectRecord>> ListObjectsFrom(uint32_t partition,
                                                            uint64_t min_tid, uint64_t min_oid,
                                                            uint64_t max_tid,
                                                            uint32_t limit) override;
  absl::Status ImportCommitted(const std::vector<TransactionRecord>& transactions,
                               const std::vector<ObjectRecord>& objects) override;
  absl::StatusOr<PackChunk> PackPartition(uint32_t partition, uint64_t pack_tid,
                                          const PackPosition& from,
                                          uint32_t max_items) override;
  absl::Status DeletePartition(uint32_t partition) override;
  absl::Status Truncate(uint64_t tid) override;

 private:
  // Counts `status` if it is a failure; returns it unchanged.
  absl::Status Count(absl::Status status);
  template <typename T>
  absl::StatusOr<T> Count(absl::StatusOr<T> result) {
    if (!result.ok()) Count(result.status());
    return result;
  }

  const std::unique_ptr<StorageBackend> backend_;
  StorageMetrics* const metrics_;
  std::atomic<uint64_t> errors_{0};
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_INSTRUMENTED_BACKEND_H_
