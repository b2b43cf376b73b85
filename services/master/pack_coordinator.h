#ifndef CELLAR_SERVICES_MASTER_PACK_COORDINATOR_H_
#define CELLAR_SERVICES_MASTER_PACK_COORDINATOR_H_

// Master.Pack / GetPackStatus (docs/lifecycle.md): hands the highest pack
// tid requested to every connected storage holding cells (Storage.Pack),
// which packs in the background, and gathers their progress.
//
// The master keeps no pack state of its own on disk: each storage
// persists the pack tid it was asked, and the master learns the highest
// one back from their answers (after a master restart or failover).
// Every `sync_interval` a thread of its own asks every connected storage
// holding cells again, so a storage that was down, or joins later, gets
// the pack when it is back.
//
// Replica checks compare cells revision by revision: a cell packed and
// one not (yet) packed at the same tid differ. CheckIdle() tells whether
// every storage is packed at the same tid; the replica checker refuses to
// start otherwise, and Request() refuses while a check runs.
//
// Thread-safe.

#include <cstdint>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/common.pb.h"
#include "protos/cellar/v1/master.pb.h"
#include "services/master/storage_caller.h"

namespace cellar::master {

struct PackCoordinatorOptions {
  // How often every storage is asked again. Zero: never (tests drive
  // Status()). Default 10 s.
  absl::Duration sync_interval = absl::Seconds(10);
};

class PackCoordinator {
 public:
  // The cluster as the master sees it now (state, table, nodes, last tid,
  // epoch).
  using ClusterView = std::function<cellar::v1::GetClusterInfoResponse()>;
  // OK unless a replica check runs (its FAILED_PRECONDITION).
  using CheckBusy = std::function<absl::Status()>;

  // `storages` is not owned and must outlive the coordinator.
  PackCoordinator(ClusterView view, StorageCaller* storages, CheckBusy check_busy,
                  PackCoordinatorOptions options = {});
  ~PackCoordinator();
  PackCoordinator(const PackCoordinator&) = delete;
  PackCoordinator& operator=(const PackCoordinator&) = delete;

  // See master.proto (Pack). The status after handing the pack out.
  absl::StatusOr<cellar::v1::PackStatus> Request(uint64_t pack_tid);
  // Asks every connected storage holding cells (handing the pack to those
  // that have a lower pack tid) and answers their progress.
  cellar::v1::PackStatus Status();
  // OK when no pack is in progress: every connected storage holding cells
  // answered, with the same pack tid, and has no partition pending.
  // FAILED_PRECONDITION (saying which storage) otherwise.
  absl::Status CheckIdle();

 private:
  void Loop();

  const ClusterView view_;
  StorageCaller* const storages_;
  const CheckBusy check_busy_;
  const PackCoordinatorOptions options_;

  absl::Mutex sync_mu_;  // one round of calls at a time
  mutable absl::Mutex mu_;
  uint64_t pack_tid_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_PACK_COORDINATOR_H_
