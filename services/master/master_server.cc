#include "services/master/master_server.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/collector.h"
#include "services/common/ids.h"

namespace cellar::master {
namespace {

std::shared_ptr<prometheus::Collectable> MakeCollector(const MasterServerOptions& options,
                                                       ClusterManager* cluster,
                                                       TransactionCoordinator* coordinator) {
  common::MetricLabels labels = {{"version", options.version}, {"track", options.track}};
  return std::make_shared<common::CallbackCollector>(
      labels, [cluster, coordinator](common::MetricsBuilder& m) {
        const cellar::v1::GetClusterInfoResponse info = cluster->Info();
        for (int s = cellar::v1::CLUSTER_RECOVERING; s <= cellar::v1::CLUSTER_STOPPING_BACKUP;
             ++s) {
          m.Gauge("cellar_cluster_state", "1 for the cluster's current state.",
                  {{"state", cellar::v1::ClusterState_Name(
                                 static_cast<cellar::v1::ClusterState>(s))}},
                  info.cluster_state() == s ? 1 : 0);
        }
        m.Gauge("cellar_cluster_operational",
                "1 when every partition has a readable cell on a running storage.", {},
                info.operational() ? 1 : 0);
        m.Gauge("cellar_cluster_ptid", "Partition table version.", {},
                static_cast<double>(info.partition_table().ptid()));
        m.Gauge("cellar_cluster_last_tid_seconds",
                "Time of the last committed transaction (Unix seconds).", {},
                info.last_tid() == 0
                    ? 0
                    : absl::ToDoubleSeconds(common::TimeFromTid(info.last_tid()) -
                                            absl::UnixEpoch()));
        m.Gauge("cellar_cluster_last_oid", "Highest OID allocated.", {},
                static_cast<double>(info.last_oid()));
        std::map<std::pair<std::string, std::string>, int> nodes;
        for (const auto& node : info.nodes()) {
          ++nodes[{cellar::v1::NodeRole_Name(node.role()),
                   cellar::v1::NodeState_Name(node.state())}];
        }
        for (const auto& [key, n] : nodes) {
          m.Gauge("cellar_nodes", "Nodes known to the master by role and state.",
                  {{"role", key.first}, {"node_state", key.second}}, n);
        }
        std::map<std::string, int> cells;
        for (const auto& row : info.partition_table().rows()) {
          for (const auto& cell : row.cells()) {
            ++cells[cellar::v1::CellState_Name(cell.state())];
          }
        }
        for (const auto& [state, n] : cells) {
          m.Gauge("cellar_cells", "Cells of the partition table by state.",
                  {{"cell_state", state}}, n);
        }
        const CoordinatorStats stats = coordinator->stats();
        m.Counter("cellar_master_transactions_begun_total", "Transactions begun.", {},
                  static_cast<double>(stats.begun));
        m.Counter("cellar_master_commits_total", "Transactions committed.", {},
                  static_cast<double>(stats.committed));
        m.Counter("cellar_master_aborts_total", "Transactions aborted.", {},
                  static_cast<double>(stats.aborted));
        m.Counter("cellar_master_lock_failures_total",
                  "Finishes where no storage could lock.", {},
                  static_cast<double>(stats.lock_failures));
        m.Gauge("cellar_master_transactions_active", "Transactions begun, not finished.",
                {}, stats.active);
        m.Gauge("cellar_master_clock_lag_seconds",
                "How far the wall clock is behind the last TID (clock went backwards).",
                {}, absl::ToDoubleSeconds(coordinator->ClockLag()));
        m.Gauge("cellar_node_up", "1 while the process serves.", {{"role", "master"}}, 1);
      });
}

}  // namespace

absl::StatusOr<std::unique_ptr<MasterServer>> MasterServer::Start(
    MasterServerOptions options, const common::Clock* clock,
    std::shared_ptr<prometheus::Registry> registry) {
  auto server = std::unique_ptr<MasterServer>(new MasterServer);
  server->options_ = options;
  server->registry_ = registry;
  server->hub_ = std::make_unique<EventHub>();
  options.cluster.version = options.version;
  server->cluster_ =
      std::make_unique<ClusterManager>(options.cluster, clock, server->hub_.get());
  server->caller_ = std::make_unique<GrpcStorageCaller>(options.storage_rpc_timeout);
  server->coordinator_ = std::make_unique<TransactionCoordinator>(
      clock, server->cluster_.get(), server->caller_.get(), server->hub_.get());
  TransactionCoordinator* coordinator = server->coordinator_.get();
  server->cluster_->set_on_client_gone(
      [coordinator](uint32_t node_id) { coordinator->AbortClientTransactions(node_id); });
  server->cluster_->set_on_verify(
      [coordinator](const std::vector<uint64_t>& in_doubt,
                    const std::vector<StorageTarget>& storages, uint64_t last_tid) {
        coordinator->Recover(in_doubt, storages, last_tid);
      });
  server->service_ = std::make_unique<MasterService>(
      server->cluster_.get(), server->coordinator_.get(), server->hub_.get());

  common::GrpcServerOptions grpc_options;
  grpc_options.address = options.listen_address;
  grpc_options.services = {server->service_.get()};
  grpc_options.metrics_registry = registry;
  grpc_options.metrics_labels = {{"version", options.version}, {"track", options.track}};
  absl::StatusOr<std::unique_ptr<common::GrpcServer>> grpc =
      common::GrpcServer::Start(std::move(grpc_options));
  if (!grpc.ok()) return grpc.status();
  server->grpc_ = *std::move(grpc);
  server->grpc_->SetServing("cellar.v1.Master", true);
  server->collector_ =
      MakeCollector(options, server->cluster_.get(), server->coordinator_.get());
  return server;
}

MasterServer::~MasterServer() { Shutdown(); }

std::string MasterServer::address() const {
  const std::string& listen = options_.listen_address;
  return absl::StrCat(listen.substr(0, listen.rfind(':')), ":", port());
}

void MasterServer::Shutdown() {
  if (grpc_) grpc_->Shutdown(absl::Milliseconds(500));
}

}  // namespace cellar::master
