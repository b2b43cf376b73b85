#ifndef CELLAR_SERVICES_ADMIN_ADMIN_SERVER_H_
#define CELLAR_SERVICES_ADMIN_ADMIN_SERVER_H_

// Lifecycle handle of the admin node: the cellar.v1.Admin service on the
// common harness (health, reflection, gRPC metrics). Thread-safe.

#include <memory>
#include <string>

#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "services/admin/admin_service.h"
#include "services/common/grpc_server.h"

namespace cellar::admin {

struct AdminServerOptions {
  // gRPC listen address; port 0 picks one. Default "127.0.0.1:0".
  std::string listen_address = "127.0.0.1:0";
  // Where the master is, timeouts.
  AdminOptions admin;
  // Metric labels.
  std::string version = "0.1.0";
  std::string track = "stable";
};

class AdminServer {
 public:
  // `registry` (may be null) receives the gRPC server metrics.
  static absl::StatusOr<std::unique_ptr<AdminServer>> Start(
      AdminServerOptions options, std::shared_ptr<prometheus::Registry> registry);
  ~AdminServer();

  int port() const { return grpc_->port(); }
  std::string address() const;
  void Shutdown();

 private:
  AdminServer() = default;
  AdminServerOptions options_;
  std::unique_ptr<AdminService> service_;
  std::unique_ptr<common::GrpcServer> grpc_;
};

}  // namespace cellar::admin

#endif  // CELLAR_SERVICES_ADMIN_ADMIN_SERVER_H_
