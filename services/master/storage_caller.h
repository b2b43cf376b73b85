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

namespace cellar::master {

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
};

class StorageCaller {
 public:
  virtual ~StorageCaller() = default;

  // LockTransaction on every target in parallel; one status per target
  // (same order). Blocks until all answered or timed out. `min_ptid`: the
  // storages must hold at least this table version before locking.
  virtual std::vector<absl::Status> LockAll(const std::vector<StorageTarget>& targets,
                                            uint64_t epoch, uint64_t ttid, uint64_t tid,
                                            uint64_t min_ptid) = 0;

  // UnlockTransaction on every target, without waiting (best effort:
  // failures are logged; storages also release on restart). `forget_lock`:
  // every voter locked, the storages may drop their ttid -> tid record.
  virtual void UnlockAsync(const std::vector<StorageTarget>& targets,
                           uint64_t epoch, uint64_t ttid, uint64_t tid,
                           bool forget_lock) = 0;

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
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_STORAGE_CALLER_H_
