#ifndef CELLAR_SERVICES_MASTER_REPLICA_CHECKER_H_
#define CELLAR_SERVICES_MASTER_REPLICA_CHECKER_H_

// Replica checks (Master.CheckReplicas / GetCheckStatus, semantics.md
// "Replication and checks"): one background check at a time compares the
// readable cells of chosen partitions over a tid range.
//
// For each partition, in order:
//   reference = the first UP_TO_DATE cell of the row on a connected
//               storage; compared = every other readable cell on a
//               connected storage. Fewer than two: the partition is
//               skipped (listed in skipped_partitions).
//   chunks    = the reference answers Storage.CheckCell for [min, max_tid]
//               with at most `chunk_transactions` transactions and says
//               where it stopped (last_tid); every compared cell is asked
//               for exactly [min, last_tid]; counts and hashes must be
//               equal. A cell that differs is recorded once (its first
//               differing chunk, with what differs) and not compared
//               further; the walk goes on with the others from
//               last_tid + 1 until max_tid.
// A failing CheckCell (a storage went away, a cell stopped being
// readable, a deposed master), or the cluster leaving RUNNING (e.g. for a
// truncate), ends the whole check with `error` set.
// Progress (partitions done, transactions compared on reference cells)
// is visible while it runs.
//
// Thread-safe. The check runs on one thread of its own; the destructor
// stops it between two chunks and joins it.

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "protos/cellar/v1/master.pb.h"
#include "services/common/clock.h"
#include "services/master/storage_caller.h"

namespace cellar::master {

struct ReplicaCheckerOptions {
  // Transactions per chunk asked from reference cells (Storage.CheckCell
  // max_transactions, 1..100000). Default 10000.
  uint32_t chunk_transactions = 10000;
};

class ReplicaChecker {
 public:
  // The cluster as the master sees it now (state, partition table, nodes
  // with their addresses and states, last tid, epoch).
  using ClusterView = std::function<cellar::v1::GetClusterInfoResponse()>;

  // `storages` and `clock` are not owned and must outlive the checker.
  ReplicaChecker(ClusterView view, StorageCaller* storages, const common::Clock* clock,
                 ReplicaCheckerOptions options = {});
  ~ReplicaChecker();

  ReplicaChecker(const ReplicaChecker&) = delete;
  ReplicaChecker& operator=(const ReplicaChecker&) = delete;

  // Starts a check; returns its id (1, 2, ...). FAILED_PRECONDITION unless
  // the cluster is RUNNING or while another check runs (its id in the
  // message); INVALID_ARGUMENT for a partition out of range or
  // min_tid > max_tid (max_tid 0 = the last committed tid).
  absl::StatusOr<uint64_t> Start(const cellar::v1::CheckReplicasRequest& request);

  // Checked by Start() before a check begins (e.g. no pack in progress:
  // packed and unpacked cells differ); its error is Start()'s. Set before
  // the checker is used.
  void set_start_precondition(std::function<absl::Status()> precondition) {
    start_precondition_ = std::move(precondition);
  }

  // The check `check_id` (0 = the current or last one). NOT_FOUND if no
  // check ran yet or for another id than the current/last one.
  absl::StatusOr<cellar::v1::GetCheckStatusResponse> Status(uint64_t check_id) const;

  // Tests: blocks until no check runs, or `timeout`; true if none runs.
  bool WaitIdle(absl::Duration timeout) const;

 private:
  std::function<absl::Status()> start_precondition_;
  struct Plan {
    std::vector<uint32_t> partitions;
    uint64_t min_tid = 0;
    uint64_t max_tid = 0;
    bool with_data = false;
  };
  // The cells of one partition to compare (reference first).
  struct Cells {
    StorageTarget reference;
    std::vector<StorageTarget> others;
  };

  void Run(Plan plan);
  // Checks one partition; an error ends the check.
  absl::Status CheckPartition(const Plan& plan, uint32_t partition, const Cells& cells);
  // The cells to compare, or nullopt-like false when fewer than two.
  static bool ChooseCells(const cellar::v1::GetClusterInfoResponse& info, uint32_t partition,
                          Cells* cells);
  bool Stopping() const;

  const ClusterView view_;
  StorageCaller* const storages_;
  const common::Clock* const clock_;
  const ReplicaCheckerOptions options_;

  mutable absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  // The current or last check (check_id 0 = none yet).
  cellar::v1::GetCheckStatusResponse status_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // touched only by Start (under start_mu_) and the destructor
  absl::Mutex start_mu_;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_REPLICA_CHECKER_H_
