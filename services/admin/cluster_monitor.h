#ifndef CELLAR_SERVICES_ADMIN_CLUSTER_MONITOR_H_
#define CELLAR_SERVICES_ADMIN_CLUSTER_MONITOR_H_

// Watches every configured cluster: each poll asks each cluster's master
// for GetClusterInfo, turns the answer into a ClusterObservation, runs the
// cluster's ClusterAlertRules and reconciles the AlertIndex with the
// verdict. Start() runs Poll() at once and then every `period` on a
// background thread; tests call Poll() themselves with a fake clock.
//
// What is measured today (GetClusterInfo only): reachability, cluster
// state, operational, node states, cell states, and one clock signal: the
// last TID's time ahead of the admin's clock (a master whose clock is
// ahead, or went backwards, hands out TIDs from the future). Storage
// health and replication progress are not reported by the nodes yet: the
// rules exist (alert_rules.h) and see no samples.
//
// Thread-safe. Clusters are polled one after the other; one poll of an
// unreachable cluster costs at most the rpc timeout of each of its masters.

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.pb.h"
#include "services/admin/alert_index.h"
#include "services/admin/alert_rules.h"
#include "services/admin/cluster_clients.h"
#include "services/common/clock.h"

namespace cellar::admin {

struct ClusterMonitorOptions {
  // Time between polls of the background thread (real time); zero or
  // negative = no thread (Start does nothing). Default 2 s.
  absl::Duration period = absl::Seconds(2);
  // Thresholds of the rules.
  AlertRuleOptions rules;
};

// The latest poll of one cluster.
struct ClusterPoll {
  std::string cluster;
  // InfinitePast = not polled yet.
  absl::Time polled_at = absl::InfinitePast();
  // OK if a master answered, else why not.
  absl::Status status = absl::UnavailableError("not polled yet");
  // The answer (when status is OK).
  cellar::v1::GetClusterInfoResponse info;
};

class ClusterMonitor {
 public:
  // `source`, `alerts` and `clock` must outlive the monitor.
  ClusterMonitor(std::vector<std::string> clusters, ClusterInfoSource* source,
                 AlertIndex* alerts, const common::Clock* clock,
                 ClusterMonitorOptions options = {});
  ~ClusterMonitor();

  ClusterMonitor(const ClusterMonitor&) = delete;
  ClusterMonitor& operator=(const ClusterMonitor&) = delete;

  // Starts the background thread (no-op without a period, or if started).
  void Start();
  // Stops it (waits for a running poll to end). Idempotent.
  void Stop();

  // Polls every cluster once, now, and updates the alerts.
  void Poll();

  // The latest poll of each cluster, in configuration order.
  std::vector<ClusterPoll> LastPolls() const;
  // Completed Poll() rounds.
  int64_t rounds() const;

  // The observation a GetClusterInfo result makes at `now` (exposed for
  // tests): reachability, the answer, and the clock signal.
  static ClusterObservation Observe(
      absl::Time now, const absl::StatusOr<cellar::v1::GetClusterInfoResponse>& info);

 private:
  void Run();

  const std::vector<std::string> clusters_;
  ClusterInfoSource* const source_;
  AlertIndex* const alerts_;
  const common::Clock* const clock_;
  const ClusterMonitorOptions options_;

  // One evaluator per cluster; only Poll() uses them (serialized by poll_mu_).
  absl::Mutex poll_mu_;
  std::vector<ClusterAlertRules> rules_ ABSL_GUARDED_BY(poll_mu_);

  mutable absl::Mutex mu_;
  std::vector<ClusterPoll> last_ ABSL_GUARDED_BY(mu_);
  int64_t rounds_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace cellar::admin

#endif  // CELLAR_SERVICES_ADMIN_CLUSTER_MONITOR_H_
