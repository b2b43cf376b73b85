#include "services/admin/admin_server.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "services/admin/admin_metrics.h"

namespace cellar::admin {

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(
    AdminServerOptions options, std::shared_ptr<prometheus::Registry> registry,
    const common::Clock* clock) {
  if (clock == nullptr) clock = common::RealClock::Get();
  std::vector<ClusterTarget> clusters = options.admin.clusters;
  if (clusters.empty()) {
    if (options.admin.master_addresses.empty()) {
      return absl::InvalidArgumentError("admin: at least one master address is required");
    }
    clusters.push_back({options.admin.cluster_name, options.admin.master_addresses});
  }
  absl::StatusOr<common::ChannelSecurity> node_channel =
      common::MakeChannelSecurity(options.auth.node_bearer, options.auth.tls_client);
  if (!node_channel.ok()) return node_channel.status();
  auto clients =
      ClusterClients::Create(clusters, options.admin.rpc_timeout, *std::move(node_channel));
  if (!clients.ok()) return clients.status();

  auto server = std::unique_ptr<AdminServer>(new AdminServer);
  server->options_ = options;
  server->clusters_ = *std::move(clients);
  server->alerts_ = std::make_shared<AlertIndex>(clock, options.admin.alert_index);
  std::vector<std::string> names;
  for (const ClusterTarget& c : server->clusters_->clusters()) names.push_back(c.name);
  server->monitor_ =
      std::make_shared<ClusterMonitor>(std::move(names), server->clusters_.get(),
                                       server->alerts_.get(), clock, options.admin.monitor);
  server->service_ = std::make_unique<AdminService>(server->clusters_.get(),
                                                    server->alerts_.get(), clock);
  server->service_->set_authenticator(options.auth.authenticator.get());
  if (options.auth.authenticator != nullptr) {
    // The admin accepts the tokens of its default cluster's table.
    ClusterClients* clients = server->clusters_.get();
    server->tokens_ = std::make_unique<TokenFollower>(
        [clients](uint64_t known) -> absl::StatusOr<cellar::v1::GetTokenTableResponse> {
          cellar::v1::GetTokenTableRequest request;
          request.set_known_version(known);
          cellar::v1::GetTokenTableResponse response;
          absl::Status s = clients->CallMaster(
              clients->default_cluster(),
              [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
                return stub->GetTokenTable(context, request, &response);
              });
          if (!s.ok()) return s;
          return response;
        },
        options.auth.authenticator->cluster_tokens());
    TokenFollower* follower = server->tokens_.get();
    server->service_->set_on_tokens_changed([follower] { (void)follower->Refresh(); });
  }
  server->collector_ = MakeAdminCollector({{"version", options.version}, {"track", options.track}},
                                          server->alerts_, server->monitor_);
  common::GrpcServerOptions grpc_options;
  grpc_options.address = options.listen_address;
  grpc_options.services = {server->service_.get()};
  grpc_options.metrics_registry = registry;
  grpc_options.metrics_labels = {{"version", options.version}, {"track", options.track}};
  grpc_options.authenticator = options.auth.authenticator;
  grpc_options.audit_log_file = options.auth.audit_log_file;
  grpc_options.insecure = options.auth.insecure;
  grpc_options.tls = options.auth.tls_server;
  auto grpc = common::GrpcServer::Start(std::move(grpc_options));
  if (!grpc.ok()) return grpc.status();
  server->grpc_ = *std::move(grpc);
  server->grpc_->SetServing("cellar.v1.Admin", true);
  server->monitor_->Start();
  if (server->tokens_ != nullptr) server->tokens_->Start();
  return server;
}

AdminServer::~AdminServer() { Shutdown(); }

std::string AdminServer::address() const {
  const std::string& listen = options_.listen_address;
  return absl::StrCat(listen.substr(0, listen.rfind(':')), ":", port());
}

void AdminServer::Shutdown() {
  if (monitor_) monitor_->Stop();
  if (tokens_) tokens_->Stop();
  if (grpc_) grpc_->Shutdown(absl::Milliseconds(500));
}

}  // namespace cellar::admin
