#ifndef CELLAR_SERVICES_STORAGE_TESTING_MEMORY_BACKEND_H_
#define CELLAR_SERVICES_STORAGE_TESTING_MEMORY_BACKEND_H_

// An in-memory StorageBackend for unit tests of the storage node and the
// fuzzers (testonly). Follows the contract of storage_backend.h and passes
// the backend conformance suite (memory_backend_conformance_test); counts
// calls and lets a test hook the commit-path methods (to block them, make
// them fail, or see their batch sizes).
//
// Its records live in a MemoryStore: a backend made with MemoryBackend()
// has a store of its own, one made with MemoryBackend::Open(store) keeps
// its records there, so that a later backend opened on the same store sees
// them (a node restart; hooks and counters belong to the backend and are
// not kept).
//
// Thread-safe: every method may be called from several threads at once.
// Hooks run outside the internal mutexes, on the calling thread.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
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

class MemoryBackend;

// The durable state of MemoryBackends: everything a database would keep
// (config, partition table, committed and temporary records, lock
// records) and the ownership lock: one backend at a time is open on it.
// Thread-safe.
class MemoryStore {
 public:
  MemoryStore() = default;
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

 private:
  friend class MemoryBackend;

  using ObjKey = std::pair<uint32_t, uint64_t>;  // (partition, oid)
  using Revisions = std::map<uint64_t, ObjectRecord>;  // tid -> record
  using TransKey = std::pair<uint64_t, uint32_t>;  // (tid, partition)

  mutable absl::Mutex mu_;
  // A backend is open on this store.
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::string> config_ ABSL_GUARDED_BY(mu_);
  PartitionTableRecord pt_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, VoteRecord> temporary_ ABSL_GUARDED_BY(mu_);
  std::map<ObjKey, Revisions> objects_ ABSL_GUARDED_BY(mu_);
  std::map<TransKey, TransactionRecord> transactions_ ABSL_GUARDED_BY(mu_);
  // ttid -> lock of locked transactions (the backend's tlock table).
  std::map<uint64_t, LockRecord> locked_ ABSL_GUARDED_BY(mu_);
};

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

  // A backend on a fresh store of its own.
  MemoryBackend();
  // A backend on `store`, which keeps its records after this backend is
  // gone. FAILED_PRECONDITION while another backend is open on `store`.
  static absl::StatusOr<std::unique_ptr<MemoryBackend>> Open(
      std::shared_ptr<MemoryStore> store);
  // Releases the store's ownership lock.
  ~MemoryBackend() override;

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
  absl::StatusOr<LockRecord> GetLock(uint64_t ttid) override;
  absl::Status SetTransactionOids(uint32_t partition, uint64_t tid,
                                  const std::vector<uint64_t>& oids) override;
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
  absl::StatusOr<std::vector<TransactionRecord>> ScanTransactions(
      uint64_t min_tid, uint64_t max_tid, uint32_t limit) override;
  absl::StatusOr<LastIds> GetLastIds() override;
  absl::StatusOr<BackendStats> GetStats() override;
  absl::StatusOr<std::optional<TransactionRecord>> GetTransaction(
      uint64_t tid) override;
  absl::StatusOr<std::vector<PartitionStats>> GetPartitionStats() override;
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
  absl::StatusOr<PackChunk> PackPartition(uint32_t partition, uint64_t pack_tid,
                                          const PackPosition& from,
                                          uint32_t max_items) override;
  absl::Status DeletePartition(uint32_t partition) override;
  absl::Status Truncate(uint64_t tid) override;

 private:
  using Revisions = MemoryStore::Revisions;

  explicit MemoryBackend(std::shared_ptr<MemoryStore> store);

  // The revision whose bytes `it` has: itself, or the end of its undo
  // chain; nullptr if a back-pointer dangles (or the chain is too long).
  const ObjectRecord* Resolve(const Revisions& revs,
                              Revisions::const_iterator it) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(store_->mu_);
  absl::StatusOr<LoadedObject> ToLoaded(const Revisions& revs,
                                        Revisions::const_iterator it) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(store_->mu_);

  const std::shared_ptr<MemoryStore> store_;

  // Hooks and counters of this backend (not kept by the store).
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
};

}  // namespace cellar::storage::testing

#endif  // CELLAR_SERVICES_STORAGE_TESTING_MEMORY_BACKEND_H_
