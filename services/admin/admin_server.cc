#include "services/admin/admin_server.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace cellar::admin {

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(
    AdminServerOptions options, std::shared_ptr<prometheus::Registry> registry) {
  if (options.admin.master_addresses.empty()) {
    return absl::InvalidArgumentError("admin: at least one master address is required");
  }
  auto server = std::unique_ptr<AdminServer>(new AdminServer);
  server->options_ = options;
  server->service_ = std::make_unique<AdminService>(options.admin);
  common::GrpcServerOptions grpc_options;
  grpc_options.address = options.listen_address;
  grpc_options.services = {server->service_.get()};
  grpc_options.metrics_registry = registry;
  grpc_options.metrics_labels = {{"version", options.version}, {"track", options.track}};
  auto grpc = common::GrpcServer::Start(std::move(grpc_options));
  if (!grpc.ok()) return grpc.status();
  server->grpc_ = *std::move(grpc);
  server->grpc_->SetServing("cellar.v1.Admin", true);
  return server;
}

AdminServer::~AdminServer() { Shutdown(); }

std::string AdminServer::address() const {
  const std::string& listen = options_.listen_address;
  return absl::StrCat(listen.substr(0, listen.rfind(':')), ":", port());
}

void AdminServer::Shutdown() {
  if (grpc_) grpc_->Shutdown(absl::Milliseconds(500));
}

}  // namespace cellar::admin
