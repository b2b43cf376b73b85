#ifndef CELLAR_SERVICES_ADMIN_CLUSTER_MONITOR_H_
#define CELLAR_SERVICES_ADMIN_CLUSTER_MONITOR_H_

// Watches every configured cluster: each poll asks each cluster's master
// for GetClusterInfo and then every RUNNING storage of the cluster for
// Storage.GetNodeStatus, turns the answers into a ClusterObservation, runs
// the cluster's ClusterAlertRules and reconciles the AlertIndex with the
// verdict. Start() runs Poll() at once and then every `period` on a
// background thread; tests call Poll() themselves with a fake clock.
//
// What is measured:
//  - GetClusterInfo: reachability, cluster state, operational, node
//    states, cell states; the master's clock (unix_time_ms; from older
//    masters only "the last TID is ahead of the admin's clock").
//  - GetNodeStatus of each RUNNING storage (deadline
//    `storage_status_timeout`): backend_errors_total and the disk figures
//    (backend-errors, disk-almost-full), the replicated_tid of each
//    OUT_OF_DATE cell (replication-stalled; a cell with no entry yet is
//    at position 0), and the node's clock (clock-skew). A storage that
//    does not answer is skipped (its earlier backend-errors and
//    disk-almost-full alerts are kept as they were); it is not an error of
//    the poll.
// Clock skew = node time - the admin's time at the middle of the call
// (admin time before + half the round trip). A call whose round trip is
// longer than the clock-skew threshold measures nothing (too imprecise).
//
// Thread-safe. Clusters are polled one after the other; one poll of an
// unreachable cluster costs at most the rpc timeout of each of its masters,
// plus at most `storage_status_timeout` per storage.

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
  // Deadline of each Storage.GetNodeStatus call. Default 1 s.
  absl::Duration storage_status_timeout = absl::Seconds(1);
};

// Where the monitor gets each storage's Storage.GetNodeStatus (tests fake
// it). Thread-compatible: called from the monitor's poll only.
class StorageStatusSource {
 public:
  virtual ~StorageStatusSource() = default;
  // GetNodeStatus of the storage at `address` (host:port), waiting at most
  // `timeout`. Any error means "did not answer".
  virtual absl::StatusOr<cellar::v1::GetNodeStatusResponse> GetNodeStatus(
      const std::string& address, absl::Duration timeout) = 0;
};

// GetNodeStatus over gRPC through ClusterClients' cached storage stubs.
class GrpcStorageStatusSource final : public StorageStatusSource {
 public:
  // `clients` must outlive this object.
  explicit GrpcStorageStatusSource(ClusterClients* clients) : clients_(clients) {}
  absl::StatusOr<cellar::v1::GetNodeStatusResponse> GetNodeStatus(
      const std::string& address, absl::Duration timeout) override;

 private:
  ClusterClients* const clients_;
};

// One storage's answer, with the admin's clock around the call.
struct StorageStatusAnswer {
  uint32_t node_id = 0;
  absl::StatusOr<cellar::v1::GetNodeStatusResponse> status;
  // The admin's clock just before and just after the call.
  absl::Time sent;
  absl::Time received;
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
  // Clock skews that poll measured (master and storages).
  std::vector<ClockSkewSample> clock_skews;
};

class ClusterMonitor {
 public:
  // `source`, `storages`, `alerts` and `clock` must outlive the monitor.
  // `storages` may be null: storages are not asked (their kinds are not
  // evaluated).
  ClusterMonitor(std::vector<std::string> clusters, ClusterInfoSource* source,
                 StorageStatusSource* storages, AlertIndex* alerts,
                 const common::Clock* clock, ClusterMonitorOptions options = {});
  // The admin's wiring: masters and storages through `clients` (gRPC).
  ClusterMonitor(std::vector<std::string> clusters, ClusterClients* clients,
                 AlertIndex* alerts, const common::Clock* clock,
                 ClusterMonitorOptions options = {});
  // Masters only (storages are not asked).
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
  // tests): reachability, the answer, and the clock signal. `sent` is the
  // admin's clock when the call started (InfinitePast = unknown: `now`).
  static ClusterObservation Observe(
      absl::Time now, const absl::StatusOr<cellar::v1::GetClusterInfoResponse>& info,
      absl::Time sent = absl::InfinitePast(),
      absl::Duration clock_skew_threshold = absl::Seconds(1));
  // Adds what the storages answered to `obs` (exposed for tests): health,
  // replication positions of the OUT_OF_DATE cells, clock skews. Answers
  // with an error only mark the storage as not answering.
  static void ObserveStorages(const std::vector<StorageStatusAnswer>& answers,
                              absl::Duration clock_skew_threshold, ClusterObservation* obs);

  // Clock skew of a node that said `node_time` during a call between `sent`
  // and `received` (admin's clock); nullopt if the round trip is longer
  // than `max_round_trip`.
  static absl::optional<absl::Duration> Skew(absl::Time node_time, absl::Time sent,
                                             absl::Time received,
                                             absl::Duration max_round_trip);

 private:
  void Run();

  // The RUNNING storages of `info`, asked one after the other.
  std::vector<StorageStatusAnswer> AskStorages(const cellar::v1::GetClusterInfoResponse& info);

  const std::vector<std::string> clusters_;
  ClusterInfoSource* const source_;
  // Owned when built from ClusterClients.
  std::unique_ptr<StorageStatusSource> owned_storages_;
  StorageStatusSource* storages_ = nullptr;
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
