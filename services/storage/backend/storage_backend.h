#ifndef CELLAR_SERVICES_STORAGE_BACKEND_STORAGE_BACKEND_H_
#define CELLAR_SERVICES_STORAGE_BACKEND_STORAGE_BACKEND_H_

// The storage adapter: everything a storage node keeps, behind one
// interface with one implementation per database (sqlite/, postgres/).
// Every implementation passes backend_conformance_test.
//
// Data model. Committed object revisions live in `obj` rows keyed by
// (partition, oid, tid); committed transaction records in `trans` rows
// keyed by (partition, tid). Object bytes live apart, in `data` rows that
// object rows reference by id: they are written once, by StoreVotes (or
// ImportCommitted), and never copied. A transaction in commit first has
// temporary rows (written durably by StoreVotes), keyed by ttid;
// LockTransactions moves them into place with their final tid in one
// durable step, after which the transaction is committed on this node.
// That step writes metadata only (object rows of fixed size, the
// transaction record, `tlock`): a lock needs no database space for the
// data its vote wrote, so a vote that fit is never followed by a lock
// that does not. Whatever drops object rows (AbortTransaction, a re-vote,
// Truncate, DeletePartition) drops the bytes only they referenced. There is no separate
// "unlock" in the database: unlock only releases in-memory object locks.
// LockTransactions also writes a small durable `ttid -> tid` record (table
// `tlock`), so that a node holding only objects of a transaction (not its
// record) can still tell, after a crash, that it locked it and with which
// tid (verification, see docs/design.md). ForgetLocks drops those records
// once the transaction is locked on every node that voted for it.
//
// Thread-safety: every method may be called from several threads at once;
// implementations serialize or pool connections internally. Methods that
// take vectors apply them atomically (all or nothing) and durably when
// they return OK; callers batch concurrent requests into one call (group
// commit).
//
// Errors: INVALID_ARGUMENT for malformed input (e.g. a partition out of
// range); NOT_FOUND with the reasons in services/common/errors.h for
// loads; FAILED_PRECONDITION for schema/ownership problems; UNAVAILABLE or
// INTERNAL when the database fails (the message says what it said).

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cellar::storage {

// The schema version this build writes. Open() migrates older schemas and
// refuses newer ones with FAILED_PRECONDITION.
// Version 2 added the `tlock` table (ttid -> tid of locked transactions).
// Version 3 added `size` (TransactionRecord::size_bytes, default 0) to the
// committed and temporary transaction tables.
// Version 4 moved object bytes out of `obj` / `tobj` into the `data` table
// (written once at vote; the lock only moves metadata).
// Version 5 added per-partition counts (objects, revisions, bytes) kept up
// to date with every insert of committed object rows (GetPartitionStats).
// Version 6 added the partitions a lock committed to `tlock` (GetLock).
inline constexpr int kSchemaVersion = 6;

// Config keys are names cellar's code chooses ("node_id", "name",
// "replication/3"): 1 to 256 printable ASCII characters. Every backend
// refuses any other key with INVALID_ARGUMENT, the same way (PostgreSQL
// keeps keys as text, which cannot hold a NUL or invalid UTF-8). Values
// are any bytes.
inline absl::Status CheckConfigKey(absl::string_view key) {
  bool printable = !key.empty() && key.size() <= 256;
  for (char c : key) printable = printable && c >= 0x20 && c <= 0x7e;
  if (printable) return absl::OkStatus();
  return absl::InvalidArgumentError(
      "config key: must be 1 to 256 printable ASCII characters");
}

// One object revision. For temporary records `tid` is 0.
struct ObjectRecord {
  uint32_t partition = 0;
  uint64_t oid = 0;
  uint64_t tid = 0;
  // The bytes; empty with data_tid == 0 means a deletion.
  std::string data;
  // SHA-1 of data (20 bytes), as the client sent it.
  std::string checksum;
  // Undo: the revision whose data this one re-uses (0 = none).
  uint64_t data_tid = 0;
};

// One transaction record.
struct TransactionRecord {
  uint32_t partition = 0;
  uint64_t tid = 0;  // 0 while temporary
  uint64_t ttid = 0;
  std::string user;
  std::string description;
  std::string extension;
  std::vector<uint64_t> oids;
  bool packed = false;
  // Total bytes of object data the transaction stores, all partitions (the
  // client's TransactionMetadata.size_bytes). A stored field: written by
  // StoreVotes, kept by LockTransactions, imported by ImportCommitted and
  // returned by LastTransactions and ListTransactions, whichever objects
  // this node holds. 0 for records written before schema version 3.
  uint64_t size_bytes = 0;
};

// Everything one transaction writes on this node, made durable at vote.
struct VoteRecord {
  uint64_t ttid = 0;
  std::vector<ObjectRecord> objects;
  // Set only on the node(s) holding partition(ttid).
  std::optional<TransactionRecord> transaction;
};

// A transaction voted on this node (temporary records, not locked yet)
// and the oids of its temporary object records: the object locks it held
// before a restart (ListVotedObjects).
struct VotedTransaction {
  uint64_t ttid = 0;
  // Ascending; empty when this node holds only its transaction record.
  std::vector<uint64_t> oids;

  friend bool operator==(const VotedTransaction& a, const VotedTransaction& b) {
    return a.ttid == b.ttid && a.oids == b.oids;
  }
};

// ttid -> oids (any order) as ListVotedObjects answers: by ttid, oids
// sorted. For backend implementations.
inline std::vector<VotedTransaction> SortedVotedTransactions(
    std::map<uint64_t, std::vector<uint64_t>> voted) {
  std::vector<VotedTransaction> out;
  out.reserve(voted.size());
  for (auto& [ttid, oids] : voted) {
    std::sort(oids.begin(), oids.end());
    out.push_back(VotedTransaction{ttid, std::move(oids)});
  }
  return out;
}

// A ttid and the final tid it gets at lock.
struct LockRecord {
  uint64_t ttid = 0;
  uint64_t tid = 0;
  // The partitions the commit touches: temporary object records of other
  // partitions are dropped with their bytes instead of committed (a client
  // stored them for a partition its Finish left out). Empty: all.
  std::vector<uint32_t> partitions;
};

// A revision as returned by loads. `data` is resolved through data_tid
// (undo back-pointers) already; `data_tid` tells it was one.
struct LoadedObject {
  uint64_t oid = 0;
  uint64_t serial = 0;
  // Next revision's tid, 0 if this is the latest committed one.
  uint64_t next_serial = 0;
  std::string data;
  std::string checksum;
  uint64_t data_tid = 0;
};

// One line of an object's history.
struct HistoryEntry {
  uint64_t serial = 0;
  uint64_t size_bytes = 0;
  bool deleted = false;
  uint64_t data_tid = 0;
};

// One cell of the persisted partition table.
struct CellRecord {
  uint32_t partition = 0;
  uint32_t node_id = 0;
  // cellar.v1.CellState numeric value.
  int state = 0;
};

// The persisted partition table (ptid 0 = none yet).
struct PartitionTableRecord {
  uint64_t ptid = 0;
  std::vector<CellRecord> cells;
};

// Highest ids this node holds, for recovery.
struct LastIds {
  // Highest committed tid (obj or trans), 0 if none.
  uint64_t last_tid = 0;
  // Highest oid in committed or temporary object rows, 0 if none.
  uint64_t last_oid = 0;
  // Highest ttid among temporary records, 0 if none.
  uint64_t last_ttid = 0;
};

// The volume holding a backend's data.
struct DiskUsage {
  // Bytes available to the node (statvfs f_bavail * f_frsize).
  uint64_t free_bytes = 0;
  // Size of the volume (f_blocks * f_frsize).
  uint64_t total_bytes = 0;
};

// A backend's connection pool right now.
struct PoolUsage {
  // Connections serving a call.
  int in_use = 0;
  // Open connections waiting for a call.
  int idle = 0;
};

// Counts for status output and metrics.
struct BackendStats {
  uint64_t object_count = 0;       // committed obj rows
  uint64_t transaction_count = 0;  // committed trans rows
  uint64_t data_bytes = 0;         // sum of committed data sizes
  // Rows of the `data` table: one per committed or temporary object record
  // with bytes, none other (a leftover would be leaked space). 0 for a
  // backend without such a table.
  uint64_t data_rows = 0;
};

// What one partition of this node holds (committed records only), for
// size reports and metrics. Kept up to date by every write (no scan).
struct PartitionStats {
  uint32_t partition = 0;
  // Oids whose latest committed revision is not a deletion (empty data
  // with data_tid 0). An undo record counts as an object even when the
  // revision it points to is a deletion.
  uint64_t objects = 0;
  // Committed object revisions (rows), deletions included.
  uint64_t revisions = 0;
  // Bytes of object data of those revisions (deletions and undo records
  // have none of their own).
  uint64_t bytes = 0;

  friend bool operator==(const PartitionStats& a, const PartitionStats& b) {
    return a.partition == b.partition && a.objects == b.objects &&
           a.revisions == b.revisions && a.bytes == b.bytes;
  }
};

// Where the pack of one partition stands: PackPartition's resume key.
// A pack first removes old object revisions, oid by oid, then marks the
// partition's old transaction records packed, tid by tid.
struct PackPosition {
  // false: removing revisions of oids >= next; true: marking transaction
  // records with tid >= next.
  bool transactions = false;
  uint64_t next = 0;

  friend bool operator==(const PackPosition& a, const PackPosition& b) {
    return a.transactions == b.transactions && a.next == b.next;
  }
};

// What one PackPartition call did.
struct PackChunk {
  // Object revisions removed, and the bytes of object data they alone
  // held (deleted `data` rows).
  uint64_t rows_removed = 0;
  uint64_t bytes_removed = 0;
  // Transaction records newly marked packed.
  uint64_t transactions_marked = 0;
  // Where the next call resumes (meaningless once done).
  PackPosition next;
  // The partition is packed up to pack_tid.
  bool done = false;
};

class StorageBackend {
 public:
  virtual ~StorageBackend() = default;

  // "sqlite" or "postgresql" ("memory" for the test fake).
  virtual std::string Kind() const = 0;

  // --- Configuration (node id, cluster name, partitions, ...) ---

  // The value stored under `key`, or nullopt.
  virtual absl::StatusOr<std::optional<std::string>> GetConfig(
      absl::string_view key) = 0;
  // Stores `value` under `key` durably (overwrites).
  virtual absl::Status SetConfig(absl::string_view key,
                                 absl::string_view value) = 0;

  // --- Partition table ---

  // Replaces the persisted table with `table`, durably.
  virtual absl::Status SavePartitionTable(const PartitionTableRecord& table) = 0;
  // The persisted table (ptid 0 and no cells if none).
  virtual absl::StatusOr<PartitionTableRecord> LoadPartitionTable() = 0;

  // --- Commit path ---

  // Writes the temporary records of several transactions durably, in one
  // database transaction. A ttid that already has temporary records gets
  // them replaced (idempotent re-vote).
  virtual absl::Status StoreVotes(const std::vector<VoteRecord>& votes) = 0;

  // For each lock: moves the ttid's temporary records into place with the
  // final tid, durably, all in one database transaction, and records
  // `ttid -> tid` with the lock's partitions (GetLock) for every ttid that
  // had temporary records.
  // A ttid that is already committed with that tid is a no-op
  // (idempotent); a ttid with no temporary records is skipped (this node
  // held nothing of it, or already locked it). Committed rows that already
  // exist (e.g. imported by replication) are kept: the move never fails
  // on them.
  virtual absl::Status LockTransactions(const std::vector<LockRecord>& locks) = 0;

  // The durable record LockTransactions writes for `ttid`: the tid this
  // node locked it with and the partitions it committed (empty: every
  // stored object); tid 0 if it never locked it here or the record was
  // forgotten.
  virtual absl::StatusOr<LockRecord> GetLock(uint64_t ttid) = 0;
  // GetLock's tid.
  absl::StatusOr<uint64_t> GetLockedTid(uint64_t ttid) {
    absl::StatusOr<LockRecord> lock = GetLock(ttid);
    if (!lock.ok()) return lock.status();
    return lock->tid;
  }

  // Replaces the oids of the committed transaction record (partition,
  // tid), durably; no-op if there is none (the master corrects a record
  // whose client listed other oids than the commit committed).
  virtual absl::Status SetTransactionOids(uint32_t partition, uint64_t tid,
                                          const std::vector<uint64_t>& oids) = 0;

  // Drops the `ttid -> tid` records of these ttids (unknown ones are
  // ignored), in one database transaction.
  virtual absl::Status ForgetLocks(const std::vector<uint64_t>& ttids) = 0;

  // Drops the temporary records of `ttid` (no-op if none).
  virtual absl::Status AbortTransaction(uint64_t ttid) = 0;

  // ttids that have temporary records (voted, not locked): in doubt after
  // a restart.
  virtual absl::StatusOr<std::vector<uint64_t>> ListVotedTransactions() = 0;
  // The same transactions (ascending ttid), each with the oids of its
  // temporary object records, read in one snapshot: a restarted node takes
  // their object locks again before it serves stores.
  virtual absl::StatusOr<std::vector<VotedTransaction>> ListVotedObjects() = 0;

  // The committed tid of a transaction by its ttid, if this node holds its
  // trans record (0 if not).
  virtual absl::StatusOr<uint64_t> FindCommittedTid(uint64_t ttid) = 0;

  // For each oid (same order): its latest committed serial, 0 if none.
  virtual absl::StatusOr<std::vector<uint64_t>> GetLastSerials(
      uint32_t num_partitions, const std::vector<uint64_t>& oids) = 0;

  // --- Reads (committed data only) ---

  // The newest revision with tid < before_tid. NOT_FOUND with reason
  // NO_SUCH_OBJECT if the oid has no committed revision at all, or
  // NO_EARLIER_REVISION if none before `before_tid`.
  virtual absl::StatusOr<LoadedObject> LoadBefore(uint32_t partition,
                                                  uint64_t oid,
                                                  uint64_t before_tid) = 0;
  // Exactly revision `serial`. NOT_FOUND (NO_SUCH_OBJECT / NO_SUCH_REVISION).
  virtual absl::StatusOr<LoadedObject> LoadSerial(uint32_t partition,
                                                  uint64_t oid,
                                                  uint64_t serial) = 0;
  // Up to `limit` revisions of `oid`, newest first (empty if unknown).
  virtual absl::StatusOr<std::vector<HistoryEntry>> History(uint32_t partition,
                                                            uint64_t oid,
                                                            uint32_t limit) = 0;
  // Up to `limit` committed transaction records with tid < before_tid
  // (0 = no bound), newest first, over all partitions of this node.
  virtual absl::StatusOr<std::vector<TransactionRecord>> LastTransactions(
      uint32_t limit, uint64_t before_tid) = 0;

  // Up to `limit` committed transaction records with min_tid <= tid <=
  // max_tid (clamped to the largest tid), ascending by (tid, partition),
  // over all partitions of this node: a page of the iteration over
  // transactions (ZODB's iterator; Storage.ScanTransactions filters the
  // partitions). Empty for min_tid > max_tid or limit 0. Index-backed
  // (reads at most `limit` records, whatever partitions they are in).
  virtual absl::StatusOr<std::vector<TransactionRecord>> ScanTransactions(
      uint64_t min_tid, uint64_t max_tid, uint32_t limit) = 0;

  // The committed transaction record with this tid, whichever partition
  // holds it (a record lives in partition(ttid), which the tid does not
  // tell), or nullopt if this node has none. Index-backed.
  virtual absl::StatusOr<std::optional<TransactionRecord>> GetTransaction(
      uint64_t tid) = 0;

  virtual absl::StatusOr<LastIds> GetLastIds() = 0;
  virtual absl::StatusOr<BackendStats> GetStats() = 0;

  // Per partition that has committed object revisions on this node
  // (ascending partition; partitions with none are left out): objects,
  // revisions, bytes. Cheap: maintained by the writes, not a scan.
  virtual absl::StatusOr<std::vector<PartitionStats>> GetPartitionStats() = 0;

  // Free and total bytes of the volume holding the data, or nullopt when
  // this backend cannot know them (the default; e.g. PostgreSQL, whose
  // files live on the database server, or an in-memory database).
  virtual absl::StatusOr<std::optional<DiskUsage>> GetDiskUsage() { return std::nullopt; }

  // The connection pool's use (PostgreSQL: the pooled sessions; SQLite:
  // the reader connections, not the single writer), or nullopt without a
  // pool (the default). Cheap: no database round trip.
  virtual std::optional<PoolUsage> GetPoolUsage() { return std::nullopt; }

  // --- Partition-level operations (replication, checks, truncate) ---

  // Committed transaction records of `partition` with min_tid <= tid <=
  // max_tid, ascending, at most `limit`.
  virtual absl::StatusOr<std::vector<TransactionRecord>> ListTransactions(
      uint32_t partition, uint64_t min_tid, uint64_t max_tid,
      uint32_t limit) = 0;
  // Committed object records of `partition` with min_tid <= tid <= max_tid,
  // ordered by (tid, oid), at most `limit`, with data (not resolved).
  virtual absl::StatusOr<std::vector<ObjectRecord>> ListObjects(
      uint32_t partition, uint64_t min_tid, uint64_t max_tid,
      uint32_t limit) = 0;
  // Like ListObjects, but starting at (min_tid, min_oid): objects with
  // (tid, oid) >= (min_tid, min_oid) and tid <= max_tid, ordered by
  // (tid, oid), at most `limit`. Lets replication page through one
  // transaction that has more objects than a page.
  virtual absl::StatusOr<std::vector<ObjectRecord>> ListObjectsFrom(
      uint32_t partition, uint64_t min_tid, uint64_t min_oid, uint64_t max_tid,
      uint32_t limit) = 0;
  // Writes already-committed records (from a replica) durably, in one
  // database transaction; existing identical rows are kept (idempotent).
  virtual absl::Status ImportCommitted(
      const std::vector<TransactionRecord>& transactions,
      const std::vector<ObjectRecord>& objects) = 0;
  // One chunk of a pack of `partition` at `pack_tid` (docs/lifecycle.md),
  // in one short database transaction, starting at `from` and examining
  // at most `max_items` oids (or, in the transactions phase, transaction
  // records): every committed revision older than the one current at
  // pack_tid (the newest with tid <= pack_tid) is removed with the bytes
  // only it used; kept undo revisions pointing into the removed ones are
  // rewritten (pack_plan.h); once no oid is left, every transaction
  // record of the partition with tid < pack_tid is marked packed.
  // GetPartitionStats stays exact. Idempotent: packing again at the same
  // or a lower tid removes nothing more. INVALID_ARGUMENT for pack_tid 0
  // (or above the largest tid) or max_items 0.
  virtual absl::StatusOr<PackChunk> PackPartition(uint32_t partition,
                                                  uint64_t pack_tid,
                                                  const PackPosition& from,
                                                  uint32_t max_items) = 0;

  // Deletes every committed record of `partition` (a discarded cell).
  virtual absl::Status DeletePartition(uint32_t partition) = 0;
  // Deletes every committed record with tid > `tid`, and all temporary ones
  // (and the ttid -> tid records of locks with tid > `tid`).
  virtual absl::Status Truncate(uint64_t tid) = 0;
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_BACKEND_STORAGE_BACKEND_H_
