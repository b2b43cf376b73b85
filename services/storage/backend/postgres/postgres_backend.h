#ifndef CELLAR_SERVICES_STORAGE_BACKEND_POSTGRES_POSTGRES_BACKEND_H_
#define CELLAR_SERVICES_STORAGE_BACKEND_POSTGRES_POSTGRES_BACKEND_H_

// The PostgreSQL storage backend (libpq), for production.
//
// One PostgreSQL database holds one storage node. Open() takes an
// ownership lock on it (pg_try_advisory_lock on a session of its own,
// held for the backend's lifetime: a second node on the same database gets
// FAILED_PRECONDITION), creates or migrates the schema (version in the
// `config` table, row "schema_version"; a newer one is refused with
// FAILED_PRECONDITION), and serves every call from a small pool of
// connections. Only prepared, parameterized statements touch data (binary
// parameters; bulk paths send arrays and unnest() them, one statement per
// table). Multi-statement operations are sent as one libpq pipeline: one
// round trip, one (implicit) database transaction, atomic.
//
// Object bytes (schema version 4) live in table `data` (id from sequence
// data_id_seq), written once by the vote (or an import); obj / tobj rows
// reference them by data_id (NULL: no bytes), so the lock moves metadata
// only. See docs/storage-node.md.
//
// Durability: every write the StorageBackend contract calls durable
// commits with synchronous_commit on. AbortTransaction alone commits with
// synchronous_commit off: losing an abort in a crash only brings the
// temporary records back as "voted" (in doubt), which recovery resolves.
//
// Identifiers: PostgreSQL has no unsigned 64-bit type. OIDs and TIDs are
// stored in bigint columns as their (non-negative) signed values, which
// keeps their order. OIDs and TIDs >= 2^63 (above common::kMaxTid) can't
// be stored: as oids anywhere, and as tids in writes and in LoadSerial,
// they are refused with INVALID_ARGUMENT. As upper bounds of ranges
// (LoadBefore's before_tid, max_tid, Truncate's tid, ...) they are
// clamped, i.e. mean "no bound". Partitions of object and transaction
// records must be < 2^31 (int columns; INVALID_ARGUMENT otherwise); the
// partition table keeps any uint32 partition and node id (bigint).
//
// Errors: connection failures, server shutdown, serialization failures
// and deadlocks are UNAVAILABLE (retry the call) with PostgreSQL's
// message; data exceptions (e.g. a config key that isn't UTF-8) are
// INVALID_ARGUMENT; constraint violations and anything else INTERNAL.
// If the ownership session dies, the next write tries to take the lock
// again and fails with FAILED_PRECONDITION if another node holds it.
//
// Thread-safe: every method may be called from any number of threads;
// calls beyond pool_size wait (bounded by acquire_timeout) for a
// connection.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/storage/backend/storage_backend.h"

namespace cellar::storage {

class PostgresBackend final : public StorageBackend {
 public:
  struct Options {
    // libpq connection string ("host=/run/postgresql dbname=cellar1") or
    // postgresql:// URI. Required (default "": INVALID_ARGUMENT).
    std::string conninfo;
    // Connections in the pool, opened on demand (default 8). One more
    // session holds the ownership lock.
    int pool_size = 8;
    // How long a call waits for a free pooled connection before failing
    // with UNAVAILABLE (default 30 s).
    absl::Duration acquire_timeout = absl::Seconds(30);
    // libpq connect_timeout for every new connection (default 10 s,
    // rounded up to whole seconds).
    absl::Duration connect_timeout = absl::Seconds(10);
    // application_name of the sessions, shown in pg_stat_activity
    // (default "cellar-storage").
    std::string application_name = "cellar-storage";
  };

  // The advisory lock key that marks a database as owned by a node.
  static constexpr int64_t kOwnershipLockKey = 0x63656c6c61720001;  // "cellar"

  // Connects, takes the ownership lock and creates/migrates the schema.
  // INVALID_ARGUMENT for bad options, UNAVAILABLE if the database can't be
  // reached, FAILED_PRECONDITION if another node owns the database or its
  // schema is newer than this build's.
  static absl::StatusOr<std::unique_ptr<StorageBackend>> Open(
      const Options& options);

  ~PostgresBackend() override;

  std::string Kind() const override { return "postgresql"; }

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
  // GetDiskUsage: not overridden (nullopt): the data lives on the database
  // server's volume, which this process cannot see; pg_database_size()
  // would give the bytes used, not what is free.
  // The pooled sessions (the ownership session is not counted).
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
  // Reads a chunk's rows, then writes the changes in one pipeline (one
  // transaction); see storage_backend.h.
  absl::StatusOr<PackChunk> PackPartition(uint32_t partition, uint64_t pack_tid,
                                          const PackPosition& from,
                                          uint32_t max_items) override;
  absl::Status DeletePartition(uint32_t partition) override;
  absl::Status Truncate(uint64_t tid) override;

 private:
  // The ownership session, the pool and the statement runner
  // (postgres_backend.cc).
  class Impl;

  explicit PostgresBackend(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_BACKEND_POSTGRES_POSTGRES_BACKEND_H_
