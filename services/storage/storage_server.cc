#include "services/storage/storage_server.h"

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/common/build_info.h"
#include "services/common/channel.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"
#include "services/storage/grpc_master_link.h"
#include "services/storage/grpc_replication_peers.h"

namespace cellar::storage {

namespace {
constexpr char kHealthService[] = "cellar.v1.Storage";
// Readiness for rolling updates: serving and every cell caught up.
constexpr char kReadyHealthService[] = "cellar.v1.Storage.Ready";
}  // namespace

absl::StatusOr<std::unique_ptr<StorageServer>> StorageServer::Start(
    StorageServerOptions options, std::unique_ptr<StorageBackend> backend,
    common::Clock* clock, std::shared_ptr<prometheus::Registry> registry) {
  if (options.master_addresses.empty()) {
    return absl::InvalidArgumentError("master_addresses: at least one master is required");
  }
  for (const std::string& a : options.master_addresses) {
    if (a.empty()) return absl::InvalidArgumentError("master_addresses: empty address");
  }
  if (backend == nullptr) return absl::InvalidArgumentError("backend: required");
  if (clock == nullptr) clock = common::RealClock::Get();

  std::unique_ptr<StorageServer> server(new StorageServer);
  server->options_ = options;
  server->registry_ = registry;
  if (registry != nullptr) {
    server->metrics_ =
        std::make_unique<StorageMetrics>(*registry, options.version, options.track);
    common::RegisterBuildInfo(*registry, options.version, options.track, options.build_id,
                              "storage");
  }

  StorageNodeOptions node_options;
  node_options.cluster_name = options.cluster_name;
  node_options.version = options.version;
  node_options.build_id = options.build_id;
  node_options.track = options.track;
  node_options.label = options.label;
  node_options.max_object_bytes = options.max_object_bytes;
  node_options.writer_threads = options.writer_threads;
  node_options.heartbeat_interval = options.heartbeat_interval;
  node_options.stats_interval = options.stats_interval;
  node_options.unvoted_timeout = options.unvoted_timeout;
  node_options.report_votes_after = options.report_votes_after;
  node_options.fault_load_error_ratio = options.fault_load_error_ratio;
  node_options.replication = options.replication;
  node_options.pack = options.pack;
  if (options.auth.authenticator != nullptr) {
    node_options.cluster_tokens = options.auth.authenticator->cluster_tokens();
  }
  const absl::Duration fetch_timeout = options.replication_fetch_timeout;
  CELLAR_ASSIGN_OR_RETURN(
      common::ChannelSecurity node_channel,
      common::MakeChannelSecurity(options.auth.node_bearer, options.auth.tls_client));
  CELLAR_ASSIGN_OR_RETURN(
      server->node_,
      StorageNode::Open(node_options, std::move(backend),
                        std::make_unique<GrpcMasterLink>(options.master_addresses,
                                                         options.master_rpc_timeout,
                                                         node_channel),
                        clock, server->metrics_.get(),
                        [fetch_timeout, node_channel](
                            MasterLink* master, std::function<uint32_t()> node_id)
                            -> std::unique_ptr<ReplicationPeers> {
                          return std::make_unique<GrpcReplicationPeers>(
                              master, std::move(node_id), fetch_timeout, node_channel);
                        }));

  StorageServiceOptions service_options;
  service_options.lock_wait_timeout = options.lock_wait_timeout;
  service_options.authenticator = options.auth.authenticator;
  StorageServer* self = server.get();
  service_options.on_shutdown = [self](const std::string& reason) {
    return self->RequestShutdown(reason);
  };
  server->service_ = std::make_unique<StorageService>(server->node_.get(), service_options);

  common::GrpcServerOptions grpc_options;
  grpc_options.address = options.listen_address;
  grpc_options.services = {server->service_.get()};
  grpc_options.metrics_registry = registry;
  grpc_options.metrics_labels = {{"version", options.version}, {"track", options.track}};
  grpc_options.authenticator = options.auth.authenticator;
  grpc_options.audit_log_file = options.auth.audit_log_file;
  grpc_options.insecure = options.auth.insecure;
  grpc_options.tls = options.auth.tls_server;
  // Room for a full Store (10000 objects) is not the point: one object of
  // max_object_bytes plus overhead must always fit.
  const size_t min_message = options.max_object_bytes + (1 << 20);
  if (static_cast<size_t>(grpc_options.max_receive_message_bytes) < min_message &&
      min_message < static_cast<size_t>(INT32_MAX)) {
    grpc_options.max_receive_message_bytes = static_cast<int>(min_message);
    grpc_options.max_send_message_bytes = static_cast<int>(min_message);
  }
  CELLAR_ASSIGN_OR_RETURN(server->grpc_, common::GrpcServer::Start(grpc_options));
  server->address_ = options.advertise_address.empty()
                         ? absl::StrCat("127.0.0.1:", server->grpc_->port())
                         : options.advertise_address;

  common::GrpcServer* grpc = server->grpc_.get();
  server->node_->SetServingCallback(
      [grpc](bool serving) { grpc->SetServing(kHealthService, serving); });
  server->node_->SetReadyCallback(
      [grpc](bool ready) { grpc->SetServing(kReadyHealthService, ready); });
  server->node_->StartMasterLoop(server->address_);
  CELLAR_LOG(INFO) << "cellar-storage listening on port " << server->grpc_->port()
                   << ", advertised as " << server->address_ << ", masters "
                   << absl::StrJoin(options.master_addresses, ",");
  return server;
}

StorageServer::~StorageServer() {
  Shutdown();
  absl::MutexLock l(&stop_mu_);
  if (stop_thread_.joinable()) stop_thread_.join();
}

int StorageServer::port() const { return grpc_->port(); }

std::string StorageServer::address() const { return address_; }

uint32_t StorageServer::node_id() const { return node_->node_id(); }

absl::Status StorageServer::WaitUntilServing(absl::Duration timeout) {
  return node_->WaitUntilServing(timeout);
}

void StorageServer::Shutdown() {
  absl::MutexLock l(&shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  if (node_ == nullptr) return;
  // Master loop first (no more table changes), lock waits fail at once,
  // then running calls finish, then the writers drain and the backend
  // closes.
  node_->BeginShutdown();
  if (grpc_ != nullptr) grpc_->Shutdown();
  node_->Close();
}

// ---- Operator stop (Storage.Shutdown).

absl::Status StorageServer::RequestShutdown(const std::string& reason) {
  CELLAR_LOG(INFO) << "storage " << common::NodeName(node_id()) << " (" << address_
                   << "): stop requested: " << reason;
  std::fflush(stdout);
  std::fflush(stderr);
  if (options_.on_shutdown_rpc) {
    options_.on_shutdown_rpc(reason);
    return absl::OkStatus();
  }
  absl::MutexLock l(&stop_mu_);
  if (stop_thread_.joinable()) return absl::OkStatus();  // already stopping
  stop_thread_ = std::thread([this] {
    // Let the rpc's answer leave first (Shutdown also waits for it).
    absl::SleepFor(absl::Milliseconds(100));
    Shutdown();
    CELLAR_LOG(INFO) << "storage " << address_ << " stopped (Storage.Shutdown)";
    std::fflush(stderr);
  });
  return absl::OkStatus();
}

}  // namespace cellar::storage
