#ifndef CELLAR_SERVICES_MASTER_MASTER_SERVER_H_
#define CELLAR_SERVICES_MASTER_MASTER_SERVER_H_

// Lifecycle handle of a primary master: wires the domain objects, the
// gRPC service and the harness together.
//
//   CELLAR_ASSIGN_OR_RETURN(auto master, MasterServer::Start(options, clock));
//   ... master->port() ...
//   master->Shutdown();
//
// Thread-safe.

#include <memory>
#include <string>

#include <prometheus/collectable.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/clock.h"
#include "services/common/grpc_server.h"
#include "services/master/cluster_manager.h"
#include "services/master/event_hub.h"
#include "services/master/grpc_storage_caller.h"
#include "services/master/master_service.h"
#include "services/master/transaction_coordinator.h"

namespace cellar::master {

struct MasterServerOptions {
  // gRPC listen address; port 0 picks one. Default "127.0.0.1:0".
  std::string listen_address = "127.0.0.1:0";
  // Cluster identity and new-cluster shape (see ClusterOptions).
  ClusterOptions cluster;
  // Deadline of master -> storage calls (lock, unlock, abort). Default 10 s.
  absl::Duration storage_rpc_timeout = absl::Seconds(10);
  // Software version and track, as metric labels.
  std::string version = "0.1.0";
  std::string track = "stable";
};

class MasterServer {
 public:
  // Starts serving. `clock` must outlive the server. `registry` (may be
  // null) receives the gRPC server metrics.
  static absl::StatusOr<std::unique_ptr<MasterServer>> Start(
      MasterServerOptions options, const common::Clock* clock,
      std::shared_ptr<prometheus::Registry> registry);
  ~MasterServer();

  int port() const { return grpc_->port(); }
  std::string address() const;

  // Domain metrics (cluster state, nodes, commits, clock lag), computed at
  // scrape time: register on a MetricsEndpoint.
  std::shared_ptr<prometheus::Collectable> collector() const { return collector_; }

  ClusterManager& cluster() { return *cluster_; }
  TransactionCoordinator& coordinator() { return *coordinator_; }

  // Stops serving: open Watch streams end, clients see UNAVAILABLE.
  void Shutdown();

 private:
  MasterServer() = default;

  MasterServerOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<EventHub> hub_;
  std::unique_ptr<ClusterManager> cluster_;
  std::unique_ptr<GrpcStorageCaller> caller_;
  std::unique_ptr<TransactionCoordinator> coordinator_;
  std::unique_ptr<MasterService> service_;
  std::unique_ptr<common::GrpcServer> grpc_;
  std::shared_ptr<prometheus::Collectable> collector_;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_MASTER_SERVER_H_
