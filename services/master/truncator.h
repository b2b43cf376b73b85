#ifndef CELLAR_SERVICES_MASTER_TRUNCATOR_H_
#define CELLAR_SERVICES_MASTER_TRUNCATOR_H_

// Master.Truncate (semantics.md "truncate", docs/operations.md): deletes
// every transaction after a tid, cluster-wide.
//
//   ClusterManager::BeginTruncate   checks, cluster -> RECOVERING
//   wait for Finish calls in flight (bounded: drain_timeout)
//   Storage.TruncateData on every storage holding cells (each retried
//              while it has not seen RECOVERING yet or is briefly
//              unreachable, bounded: storage_timeout)
//   ClusterManager::FinishTruncate  last tid = tid, VERIFYING -> RUNNING
//
// New tids keep increasing from the highest one ever handed out (the tid
// allocator is not rewound), so they are all above `tid`.
// If a step fails the cluster stays RECOVERING (Start is refused) and
// Truncate may be called again: the error says what failed.
//
// Thread-safe (one truncate at a time: ClusterManager refuses others).

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.pb.h"
#include "services/master/cluster_manager.h"
#include "services/master/storage_caller.h"
#include "services/master/transaction_coordinator.h"

namespace cellar::master {

struct TruncatorOptions {
  // Longest wait for commits in flight to complete. Default 30 s.
  absl::Duration drain_timeout = absl::Seconds(30);
  // Longest time spent getting one storage to truncate. Default 30 s.
  absl::Duration storage_timeout = absl::Seconds(30);
};

class Truncator {
 public:
  // None owned; all must outlive the truncator.
  Truncator(ClusterManager* cluster, TransactionCoordinator* coordinator,
            StorageCaller* storages, TruncatorOptions options = {});

  // See the class comment and master.proto. Returns the cluster state
  // reached (RUNNING unless storages went away meanwhile).
  absl::StatusOr<cellar::v1::ClusterState> Truncate(uint64_t tid);

 private:
  ClusterManager* const cluster_;
  TransactionCoordinator* const coordinator_;
  StorageCaller* const storages_;
  const TruncatorOptions options_;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_TRUNCATOR_H_
