#ifndef CELLAR_SERVICES_MASTER_UNREACHABLE_PROBER_H_
#define CELLAR_SERVICES_MASTER_UNREACHABLE_PROBER_H_

// Master.ReportUnreachable: a client (or storage) could not reach a
// storage the table says is running. The master does not take the
// report's word: it probes the storage itself (StorageCaller::Probe, a
// short deadline) and only when its own probe fails treats the storage
// as one that missed its heartbeats (ClusterManager::ProbeFailed: DOWN,
// cells OUT_OF_DATE, events on Watch), without waiting for the heartbeat
// timeout (docs/operations.md, "Unreachable storages").
//
// Report() only checks and enqueues: probes run on the prober's own
// worker threads, never on the rpc's. Reports are coalesced per storage:
// at most one probe in flight, and at most one probe started per
// `interval`, so a flood of reports cannot make the master hammer a
// storage, nor flap it. Thread-safe.

#include <cstdint>
#include <deque>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.pb.h"
#include "services/common/clock.h"
#include "services/master/cluster_manager.h"
#include "services/master/storage_caller.h"

namespace cellar::master {

struct UnreachableProberOptions {
  // At most one probe of a storage started per interval (reports in
  // between are coalesced). Default 1 s.
  absl::Duration interval = absl::Seconds(1);
  // Deadline of a probe: a storage that does not answer within it is
  // treated as gone. Default 2 s.
  absl::Duration timeout = absl::Seconds(2);
  // Probes of different storages run in parallel on this many threads.
  // Default 4.
  int workers = 4;
};

// Counters since the prober started (cellar_master_unreachable_reports_total).
struct UnreachableStats {
  // Reports whose probe failed: the storage was taken down.
  uint64_t probed_down = 0;
  // Reports whose probe succeeded: the storage stays up.
  uint64_t probed_up = 0;
  // Reports that added nothing: a probe in flight, or one started less
  // than `interval` ago.
  uint64_t coalesced = 0;
  // Reports of a storage already DOWN, or whose probe failed after the
  // storage went down, registered again by itself, or sent a heartbeat
  // (alive and talking to the master: slow, not gone).
  uint64_t ignored = 0;
  // Total time spent probing (cellar_master_unreachable_probe_seconds_total).
  absl::Duration probe_time;
};

class UnreachableProber {
 public:
  // `cluster` and `storages` must outlive the prober; `clock` drives the
  // interval.
  UnreachableProber(ClusterManager* cluster, StorageCaller* storages,
                    const common::Clock* clock, UnreachableProberOptions options = {});
  // Stops the workers; probes in flight finish first (bounded by the
  // timeout).
  ~UnreachableProber();

  UnreachableProber(const UnreachableProber&) = delete;
  UnreachableProber& operator=(const UnreachableProber&) = delete;

  // What became of a report of `node_id` (the probe runs later). The
  // errors of ClusterManager::UnreachableTarget; INVALID_ARGUMENT for an
  // unspecified or unknown reason. `reporter` (0 = unknown) is only logged.
  absl::StatusOr<cellar::v1::ReportOutcome> Report(uint32_t node_id,
                                                   cellar::v1::UnreachableReason reason,
                                                   uint32_t reporter);

  UnreachableStats stats() const;

  // Waits until no probe is queued or running; false after `timeout`.
  bool AwaitIdle(absl::Duration timeout) const;

 private:
  struct Probe {
    ClusterManager::ProbeTarget target;
    cellar::v1::UnreachableReason reason;
    uint32_t reporter;
  };
  struct PerNode {
    bool in_flight = false;
    absl::Time last_start = absl::InfinitePast();
  };
  void Work();
  void Run(const Probe& probe);

  ClusterManager* const cluster_;
  StorageCaller* const storages_;
  const common::Clock* const clock_;
  const UnreachableProberOptions options_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint32_t, PerNode> nodes_ ABSL_GUARDED_BY(mu_);
  std::deque<Probe> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  UnreachableStats stats_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> workers_;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_UNREACHABLE_PROBER_H_
