#ifndef CELLAR_SERVICES_MASTER_STORAGE_CALLER_H_
#define CELLAR_SERVICES_MASTER_STORAGE_CALLER_H_

// How the master talks to storage nodes, as a domain interface (the gRPC
// implementation is grpc_storage_caller.h; tests may fake it). Every call
// carries the primary's epoch so that storages refuse a deposed master.
// Implementations are thread-safe.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/common.pb.h"

namespace cellar::master {

// One chunk of a replica check (Storage.CheckCell), asked and answered.
struct CellCheckRange {
  uint32_t partition = 0;
  // Inclusive.
  uint64_t min_tid = 0;
  uint64_t max_tid = 0;
  // 1..100000 (0 = the storage's default, 10000).
  uint32_t max_transactions = 0;
  bool with_data = false;
};
struct CellCheck {
  uint64_t transaction_count = 0;
  std::string tid_hash;
  uint64_t object_count = 0;
  std::string oid_hash;
  std::string data_hash;
  // The covered range is [min_tid, last_tid].
  uint64_t last_tid = 0;
};

// A storage node to call.
struct StorageTarget {
  uint32_t node_id = 0;
  std::string address;
};

// What one storage knows of a transaction (Storage.GetTransactionOutcome).
struct StorageOutcome {
  enum class State { kUnknown, kStoring, kVoted, kLocked, kAborted };
  State state = State::kUnknown;
  // The final tid when kLocked.
  uint64_t tid = 0;
  // When kLocked: the transaction's oids as this storage knows them (from
  // its transaction record; empty without it).
  std::vector<uint64_t> oids;
  // When kLocked: the partitions its lock committed (its lock record;
  // empty: not known, every stored object).
  std::vector<uint32_t> partitions;
};

// The oids a commit committed, for the nodes holding its transaction
// record (the cells of partition(ttid) that locked it).
struct RecordOids {
  std::vector<uint32_t> holders;
  std::vector<uint64_t> oids;
};

// What a storage answered when it locked a transaction.
struct LockedOids {
  // False when the storage could not tell (a storage of an older version,
  // or one that found the transaction already locked or committed after a
  // restart): `oids` is then empty and means nothing.
  bool known = false;
  // The oids the storage stored for the transaction (read-current checks
  // excluded), in no particular order.
  std::vector<uint64_t> oids;
};

class StorageCaller {
 public:
  virtual ~StorageCaller() = default;

  // A storage (re-)registered from `address`: calls to it start on a fresh
  // connection instead of failing fast through a reconnect backoff left
  // from its previous life (a restarted storage is reachable at once).
  virtual void Reconnect(const std::string& address) {}

  // LockTransaction on every target in parallel; one answer per target
  // (same order). Blocks until all answered or timed out. `min_ptid`: the
  // storages must hold at least this table version before locking.
  // `partitions`: the partitions the commit touches; the storages commit
  // only their stored objects of these (empty: all).
  virtual std::vector<absl::StatusOr<LockedOids>> LockAll(
      const std::vector<StorageTarget>& targets, uint64_t epoch, uint64_t ttid, uint64_t tid,
      uint64_t min_ptid, const std::vector<uint32_t>& partitions) = 0;

  // UnlockTransaction on every target, without waiting (best effort:
  // failures are logged; storages also release on restart). `forget_lock`:
  // every voter locked, the storages may drop their ttid -> tid record.
  // `record`, if given: the targets among its holders also get its oids
  // (UnlockTransactionRequest.record_oids).
  virtual void UnlockAsync(const std::vector<StorageTarget>& targets,
                           uint64_t epoch, uint64_t ttid, uint64_t tid,
                           bool forget_lock, const RecordOids* record = nullptr) = 0;

  // AbortTransaction on every target in parallel; waits (bounded).
  virtual std::vector<absl::Status> AbortAll(const std::vector<StorageTarget>& targets,
                                             uint64_t epoch, uint64_t ttid) = 0;

  // AbortTransaction on every target, without waiting (best effort).
  virtual void AbortAsync(const std::vector<StorageTarget>& targets, uint64_t epoch,
                          uint64_t ttid) = 0;

  // GetTransactionOutcome on every target in parallel; one result per
  // target (same order). Blocks until all answered or timed out.
  virtual std::vector<absl::StatusOr<StorageOutcome>> OutcomeAll(
      const std::vector<StorageTarget>& targets, uint64_t ttid) = 0;

  // SaveMasterState on every target in parallel: persists the OID
  // high-water mark (storage.proto); one status per target (same order).
  // Blocks until all answered or timed out. (The default answers
  // UNIMPLEMENTED, for fakes that allocate no OID.)
  virtual std::vector<absl::Status> SaveMasterStateAll(const std::vector<StorageTarget>& targets,
                                                       uint64_t epoch,
                                                       uint64_t oid_high_water) {
    return std::vector<absl::Status>(targets.size(),
                                     absl::UnimplementedError("SaveMasterState"));
  }

  // SaveTokenTable on every target in parallel: persists the cluster token
  // table (storage.proto); one status per target (same order). Blocks
  // until all answered or timed out. (The default answers UNIMPLEMENTED.)
  virtual std::vector<absl::Status> SaveTokenTableAll(
      const std::vector<StorageTarget>& targets, uint64_t /*epoch*/,
      const cellar::v1::ClusterTokenTable& /*table*/) {
    return std::vector<absl::Status>(targets.size(),
                                     absl::UnimplementedError("SaveTokenTable"));
  }

  // SaveFeatureFlags on every target in parallel: persists the feature
  // flag table (storage.proto); one status per target (same order). Blocks
  // until all answered or timed out. (The default answers UNIMPLEMENTED.)
  virtual std::vector<absl::Status> SaveFeatureFlagsAll(
      const std::vector<StorageTarget>& targets, uint64_t /*epoch*/,
      const cellar::v1::FeatureFlagTable& /*table*/) {
    return std::vector<absl::Status>(targets.size(),
                                     absl::UnimplementedError("SaveFeatureFlags"));
  }

  // ---- Operator actions: replica check and truncate.
  // (Defaults answer UNIMPLEMENTED, for fakes that do not need them.)

  // Storage.CheckCell on `target`; blocks until it answered or timed out.
  // The storage's error otherwise (UNAVAILABLE NOT_READABLE, STALE_EPOCH, ...).
  virtual absl::StatusOr<CellCheck> CheckCell(const StorageTarget& target, uint64_t epoch,
                                              const CellCheckRange& range) {
    return absl::UnimplementedError("CheckCell");
  }

  // Storage.TruncateData on `target`: the node's last committed tid
  // afterwards. Blocks until it answered or timed out (a longer deadline
  // than other calls: the deletion may be large).
  virtual absl::StatusOr<uint64_t> TruncateData(const StorageTarget& target, uint64_t epoch,
                                                uint64_t tid) {
    return absl::UnimplementedError("TruncateData");
  }

  // Is `target` there? (Master.ReportUnreachable: the master checks a
  // storage a client could not reach.) Storage.GetNodeStatus (health
  // only) with deadline `timeout`. OK when the node answered as itself,
  // or answered at all with an error other than UNAVAILABLE or
  // DEADLINE_EXCEEDED (it is up, only refusing this call); UNAVAILABLE or
  // DEADLINE_EXCEEDED when it did not answer in time, or answered as
  // another node. (The default answers UNIMPLEMENTED, for fakes that are
  // never asked: the master then keeps the node up.)
  virtual absl::Status Probe(const StorageTarget& target, absl::Duration timeout) {
    return absl::UnimplementedError("Probe");
  }

  // Storage.Pack on `target`: asks it to pack at `pack_tid` (0: only
  // read its progress) and answers its progress (node_id set, error
  // empty). Blocks until it answered or timed out.
  virtual absl::StatusOr<cellar::v1::StoragePackProgress> Pack(const StorageTarget& target,
                                                               uint64_t epoch,
                                                               uint64_t pack_tid) {
    return absl::UnimplementedError("Pack");
  }

  // Storage.Shutdown on `target` (operator KillNode with stop): asks the
  // node to stop cleanly; blocks until it answered or timed out. OK once
  // the node acknowledged; its error (UNAVAILABLE if unreachable,
  // UNIMPLEMENTED if it cannot stop on request) otherwise.
  virtual absl::Status Shutdown(const StorageTarget& target, const std::string& reason) = 0;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_STORAGE_CALLER_H_
