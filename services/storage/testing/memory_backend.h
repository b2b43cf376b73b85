#ifndef CELLAR_SERVICES_STORAGE_TESTING_MEMORY_BACKEND_H_
#define CELLAR_SERVICES_STORAGE_TESTING_MEMORY_BACKEND_H_

// An in-memory StorageBackend for unit tests of the storage node (testonly).
// Follows the contract of storage_backend.h (atomic vector operations,
// NOT_FOUND reasons on loads) without durability; counts calls and lets a
// test hook the commit-path methods (to block them, make them fail, or see
// their batch sizes).
//
// Thread-safe: every method may be called from several threads at once.
// Hooks run outside the internal mutex, on the calling thread.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "services/storage/backend/storage_backend.h"

namespace cellar::storage::testing {

class MemoryBackend final : public StorageBackend {
 public:
  // Called at the start of StoreVotes / LockTransactions; a non-OK status
  // is returned instead of doing the work.
  using StoreVotesHook =
      std::function<absl::Status(const std::vector<VoteRecord>&)>;
  using LockHook = std::function<absl::Status(const std::vector<LockRecord>&)>;
  // Called at the start of SetConfig / SavePartitionTable (fault
  // injection: a failed persist); a non-OK status is returned instead.
  using SetConfigHook =
      std::function<absl::Status(absl::string_view key, absl::string_view value)>;
  using SavePartitionTableHook =
      std::function<absl::Status(const PartitionTableRecord&)>;

  MemoryBackend() = default;

  void set_store_votes_hook(StoreVotesHook hook);
  void set_lock_hook(LockHook hook);
  void set_set_config_hook(SetConfigHook hook);
  void set_save_partition_table_hook(SavePartitionTableHook hook);
  // What GetDiskUsage answers (default nullopt: unknown).
  void set_disk_usage(std::optional<DiskUsage> usage);

  // Number of StoreVotes / LockTransactions / GetLastSerials calls so far,
  // and the record count of each StoreVotes / LockTransactions call.
  int store_votes_calls() const;
  int lock_calls() const;
  int last_serials_calls() const;
  std::vector<size_t> store_votes_sizes() const;
  std::vector<size_t> lock_sizes() const;
  // Number of ttids with temporary records.
  size_t temporary_count() const;

  std::string Kind() const override { return "memory"; }
  absl::StatusOr<std::optional<std::string>> GetConfig(
      absl::string_view key) override;
  absl::Status SetConfig(absl::string_view key, absl::string_view value) override;
  absl::Status SavePartitionTable(const PartitionTableRecord& table) override;
  absl::StatusOr<PartitionTableRecord> LoadPartitionTable() override;
  absl::Status StoreVotes(const std::vector<VoteRecord>& votes) override;
  absl::Status LockTransactions(const std::vector<LockRecord>& locks) override;
  absl::Status AbortTransaction(uint64_t ttid) override;
  absl::StatusOr<std::vector<uint64_t>> ListVotedTransactions() override;
  absl::StatusOr<std::vector<VotedTransaction>> ListVotedObjects() override;
  absl::StatusOr<uint64_t> FindCommittedTid(uint64_t ttid) override;
  absl::StatusOr<uint64_t> GetLockedTid(uint64_t ttid) override;
  absl::Status ForgetLocks(const std::vector<uint64_t>& ttids) override;
  absl::StatusOr<std::vector<uint64_t>> GetLastSerials(
      uint32_t num_partitions, const std::vector<uint64_t>& oids) override;
  absl::StatusOr<LoadedObject> LoadBefore(uint32_t partition, uint64_t oid,
                                          uint64_t before_tid) override;
  absl::StatusOr<LoadedObject> LoadSerial(uint32_t partition, uint64_t oid,
                                          uint64_t serial) override;
  absl::StatusOr<std::vector<HistoryEntry>> History(uint32_t partition,
                                                    uint64_t oid,
                                                    uint32_t limit) override;
  absl::StatusOr<std::vector<TransactionRecord>> LastTransactions(
      uint32_t limit, uint64_t before_tid) override;
  absl::StatusOr<LastIds> GetLastIds() override;
  absl::StatusOr<BackendStats> GetStats() override;
  absl::StatusOr<std::optional<DiskUsage>> GetDiskUsage() override;
  absl::StatusOr<std::vector<TransactionRecord>> ListTransactions(
      uint32_t partition, uint64_t min_tid, uint64_t max_tid,
      uint32_t limit) override;
  absl::StatusOr<std::vector<ObjectRecord>> ListObjects(
      uint32_t partition, uint64_t min_tid, uint64_t max_tid,
      uint32_t limit) override;
  absl::StatusOr<std::vector<ObjectRecord>> ListObjectsFrom(
      uint32_t partition, uint64_t min_tid, uint64_t min_oid, uint64_t max_tid,
      uint32_t limit) override;
  absl::Status ImportCommitted(const std::vector<TransactionRecord>& transactions,
                               const std::vector<ObjectRecord>& objects) override;
  absl::Status DeletePartition(uint32_t partition) override;
  absl::Status Truncate(uint64_t tid) override;

 private:
  using ObjKey = std::pair<uint32_t, uint64_t>;  // (partition, oid)
  using Revisions = std::map<uint64_t, ObjectRecord>;  // tid -> record

  LoadedObject ToLoaded(const Revisions& revs, Revisions::const_iterator it) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  StoreVotesHook store_votes_hook_ ABSL_GUARDED_BY(mu_);
  LockHook lock_hook_ ABSL_GUARDED_BY(mu_);
  SetConfigHook set_config_hook_ ABSL_GUARDED_BY(mu_);
  SavePartitionTableHook save_partition_table_hook_ ABSL_GUARDED_BY(mu_);
  int store_votes_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int lock_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int last_serials_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<size_t> store_votes_sizes_ ABSL_GUARDED_BY(mu_);
  std::vector<size_t> lock_sizes_ ABSL_GUARDED_BY(mu_);

  std::optional<DiskUsage> disk_usage_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> config_ ABSL_GUARDED_BY(mu_);
  PartitionTableRecord pt_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, VoteRecord> temporary_ ABSL_GUARDED_BY(mu_);
  std::map<ObjKey, Revisions> objects_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, TransactionRecord> transactions_ ABSL_GUARDED_BY(mu_);
  // ttid -> tid of locked transactions (the backend's tlock table).
  std::map<uint64_t, uint64_t> locked_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::storage::testing

#endif  // CELLAR_SERVICES_STORAGE_TESTING_MEMORY_BACKEND_H_
