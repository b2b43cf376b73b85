#ifndef CELLAR_SERVICES_ADMIN_ADMIN_SERVER_H_
#define CELLAR_SERVICES_ADMIN_ADMIN_SERVER_H_

// Lifecycle handle of the admin node: the clusters it serves
// (ClusterClients), the alert index, the monitor thread that feeds it, and
// the cellar.v1.Admin service on the common harness (health, reflection,
// gRPC metrics). Domain metrics (alerts, cluster reachability) come from
// collector(): register it on the admin's MetricsEndpoint.
//
//   CELLAR_ASSIGN_OR_RETURN(auto admin, AdminServer::Start(options, registry));
//   metrics->Add(admin->collector());
//   ... admin->port() ...; admin->Shutdown();
//
// Thread-safe.

#include <memory>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/admin/admin_service.h"
#include "services/admin/alert_index.h"
#include "services/admin/alert_rules.h"
#include "services/admin/cluster_clients.h"
#include "services/admin/token_follower.h"
#include "services/admin/cluster_monitor.h"
#include "services/common/clock.h"
#include "services/common/authenticator.h"
#include "services/common/grpc_server.h"

namespace cellar::admin {

struct AdminOptions {
  // The clusters to serve and watch; the first is the default. When empty,
  // one cluster named `cluster_name` with `master_addresses`.
  std::vector<ClusterTarget> clusters;
  // The single cluster's masters (used when `clusters` is empty).
  std::vector<std::string> master_addresses;
  // The single cluster's name (used when `clusters` is empty). Default
  // "cellar" (the master's default --cluster_name).
  std::string cluster_name = "cellar";
  // Deadline of each call to a master or a storage. Default 5 s.
  absl::Duration rpc_timeout = absl::Seconds(5);
  // Monitor: poll period (0 = no monitor thread) and rule thresholds.
  // Default 2 s and AlertRuleOptions' defaults.
  ClusterMonitorOptions monitor;
  // How long resolved alerts stay listed. Default 1 h.
  AlertIndexOptions alert_index;
};

struct AdminServerOptions {
  // gRPC listen address; port 0 picks one. Default "127.0.0.1:0".
  std::string listen_address = "127.0.0.1:0";
  // Clusters, timeouts, monitor.
  AdminOptions admin;
  // Metric labels. Defaults "0.1.0" and "stable".
  std::string version = "0.1.0";
  std::string track = "stable";
  // Authentication of the gRPC port, and the node bearer sent to masters
  // and storages (docs/security.md). Default: off (loopback listeners
  // only).
  common::AuthSetup auth;
};

class AdminServer {
 public:
  // Starts serving and the monitor thread. `registry` (may be null)
  // receives the gRPC server metrics; `clock` (null = real clock) must
  // outlive the server. INVALID_ARGUMENT on a bad cluster list;
  // UNAVAILABLE if it cannot listen.
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(
      AdminServerOptions options, std::shared_ptr<prometheus::Registry> registry,
      const common::Clock* clock = nullptr);
  ~AdminServer();

  int port() const { return grpc_->port(); }
  std::string address() const;

  // Domain metrics (see admin_metrics.h), computed at scrape time.
  std::shared_ptr<prometheus::Collectable> collector() const { return collector_; }

  AlertIndex& alerts() { return *alerts_; }
  ClusterMonitor& monitor() { return *monitor_; }

  // Stops the monitor and the server. Idempotent.
  void Shutdown();

 private:
  AdminServer() = default;
  AdminServerOptions options_;
  std::unique_ptr<ClusterClients> clusters_;
  // Shared with the metrics collector.
  std::shared_ptr<AlertIndex> alerts_;
  std::shared_ptr<ClusterMonitor> monitor_;
  std::unique_ptr<AdminService> service_;
  std::unique_ptr<common::GrpcServer> grpc_;
  std::shared_ptr<prometheus::Collectable> collector_;
  // With auth on: follows the default cluster's token table.
  std::unique_ptr<TokenFollower> tokens_;
};

}  // namespace cellar::admin

#endif  // CELLAR_SERVICES_ADMIN_ADMIN_SERVER_H_
