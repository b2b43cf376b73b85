#ifndef CELLAR_SERVICES_STORAGE_BACKEND_SQLITE_SQLITE_BACKEND_H_
#define CELLAR_SERVICES_STORAGE_BACKEND_SQLITE_SQLITE_BACKEND_H_

// StorageBackend on an embedded SQLite database (WAL mode): the default for
// `cellar local`, tests and small installs.
//
// Layout. One database file `path` (plus SQLite's `-wal`/`-shm` files) and
// an ownership lock file `path + ".lock"`. Tables (schema version
// kSchemaVersion, kept in config key "schema_version"):
//   config(name TEXT PRIMARY KEY, value BLOB)
//   pt(part, node_id, state)                     + config "ptid"
//   data(id INTEGER PRIMARY KEY, data BLOB)      object bytes, written once
//   obj(part, oid, tid, data_tid, checksum, data_id)  committed revisions
//   trans(part, tid, ttid, packed, user, description, extension, oids, size)
//   tobj / ttrans: the same keyed by ttid         temporary (voted) records
//   tlock(ttid, tid)                              locked ttids (verification)
// obj / tobj are WITHOUT ROWID tables; data_id is NULL for a record without
// bytes (deletion, undo). A vote writes the bytes (data) and tobj rows; the
// lock copies the tobj rows (metadata) into obj: no bytes are written
// twice (schema version 4; see docs/storage-node.md).
// 64-bit ids are stored in INTEGER columns as their signed bit pattern:
// tids are <= kMaxTid (2^63 - 1) so they sort correctly; oids are expected
// to stay below 2^63 as well (a larger oid round-trips but sorts before
// smaller ones in ListObjects and GetLastIds). `trans.oids` is the oid list
// packed as little-endian uint64s; `size` is TransactionRecord::size_bytes
// (schema version 3; rows written before it hold 0).
//
// Durability: the writer connection runs with synchronous=FULL, so every
// write method (StoreVotes, LockTransactions, SetConfig, ...) has fsync'ed
// the WAL when it returns OK.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "services/storage/backend/storage_backend.h"

namespace cellar::storage {

namespace sqlite_internal {
class Connection;
}  // namespace sqlite_internal

// Thread-safe: every method may be called from any number of threads. All
// writes go through one writer connection, serialized by a mutex; reads
// take one of `read_connections` reader connections from a pool (blocking
// while all are busy), so loads run concurrently with each other and with
// a write in progress (WAL readers see the last committed state).
class SqliteBackend : public StorageBackend {
 public:
  struct Options {
    // The database file; created if absent. Required. The directory must
    // exist. ":memory:" and URIs are not supported (readers need the file).
    std::string path;
    // Number of reader connections (>= 1). Default 4.
    int read_connections = 4;
    // How long a connection waits on a database lock held by another
    // connection of this process (e.g. a checkpoint) before failing with
    // UNAVAILABLE. Default 5000 ms.
    int busy_timeout_ms = 5000;
    // Caps the database at this many pages (PRAGMA max_page_count on the
    // writer): a write that would grow it further fails with UNAVAILABLE,
    // as on a full disk. 0 (default) keeps SQLite's limit. For tests.
    int64_t max_page_count = 0;
  };

  // Takes the ownership lock on `options.path + ".lock"` (FAILED_PRECONDITION
  // "database <path> is in use by another storage node" if another backend,
  // in this process or another, holds it), opens the database in WAL mode,
  // creates or migrates the schema, and refuses a schema newer than
  // kSchemaVersion with FAILED_PRECONDITION. INVALID_ARGUMENT for bad
  // options.
  static absl::StatusOr<std::unique_ptr<StorageBackend>> Open(
      const Options& options);

  // Closes every connection (checkpointing the WAL) and releases the lock.
  ~SqliteBackend() override;

  SqliteBackend(const SqliteBackend&) = delete;
  SqliteBackend& operator=(const SqliteBackend&) = delete;

  std::string Kind() const override;

  // "schema_version" and "ptid" are reserved (INVALID_ARGUMENT on SetConfig).
  absl::StatusOr<std::optional<std::string>> GetConfig(
      absl::string_view key) override;
  absl::Status SetConfig(absl::string_view key,
                         absl::string_view value) override;

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
  // statvfs of the database file's directory.
  absl::StatusOr<std::optional<DiskUsage>> GetDiskUsage() override;
  // The reader connections (the writer is not pooled).
  std::optional<PoolUsage> GetPoolUsage() override;

  absl::StatusOr<std::vector<TransactionRecord>> ListTransactions(
      uint32_t partition, uint64_t min_tid, uint64_t max_tid,
      uint32_t limit) override;
  absl::StatusOr<std::vector<ObjectRecord>> ListObjects(
      uint32_t partition, uint64_t min_tid, uint64_t max_tid,
      uint32_t limit) override;
  absl::StatusOr<std::vector<ObjectRecord>> ListObjectsFrom(
      uint32_t partition, uint64_t min_tid, uint64_t min_oid, uint64_t max_tid,
      uint32_t limit) override;
  absl::Status ImportCommitted(
      const std::vector<TransactionRecord>& transactions,
      const std::vector<ObjectRecord>& objects) override;
  absl::StatusOr<PackChunk> PackPartition(uint32_t partition, uint64_t pack_tid,
                                          const PackPosition& from,
                                          uint32_t max_items) override;
  absl::Status DeletePartition(uint32_t partition) override;
  absl::Status Truncate(uint64_t tid) override;

 private:
  using Connection = sqlite_internal::Connection;
  class ReaderLease;

  SqliteBackend(std::string path, int lock_fd);

  // Runs `body` in a write transaction (BEGIN IMMEDIATE ... COMMIT) on the
  // writer connection; rolls back if it fails.
  template <typename Body>
  absl::Status Write(absl::string_view what, Body body);
  // Runs `body` in a read transaction (one consistent snapshot) on a pooled
  // reader connection.
  template <typename Body>
  absl::Status Read(absl::string_view what, Body body);

  Connection* AcquireReader();
  void ReleaseReader(Connection* reader);

  // Revision `tid` of `oid` (exact) or the newest one before `tid`, with
  // its next serial and its undo back-pointer resolved; NOT_FOUND with the
  // contract's reasons.
  static absl::StatusOr<LoadedObject> LoadRevision(Connection& c,
                                                   uint32_t partition,
                                                   uint64_t oid, uint64_t tid,
                                                   bool exact);

  const std::string path_;
  const int lock_fd_;  // flock()ed on path_ + ".lock" for our lifetime

  absl::Mutex writer_mu_;
  std::unique_ptr<Connection> writer_ ABSL_GUARDED_BY(writer_mu_);

  // Owns the reader connections (fixed after Open).
  std::vector<std::unique_ptr<Connection>> readers_;
  absl::Mutex pool_mu_;
  std::vector<Connection*> free_readers_ ABSL_GUARDED_BY(pool_mu_);
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_BACKEND_SQLITE_SQLITE_BACKEND_H_
