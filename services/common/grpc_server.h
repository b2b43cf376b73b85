#ifndef CELLAR_SERVICES_COMMON_GRPC_SERVER_H_
#define CELLAR_SERVICES_COMMON_GRPC_SERVER_H_

// The server harness every cellar process uses: a gRPC server with
// grpc.health.v1 and reflection, keepalive, message-size limits and the
// gRPC server metrics interceptor. Services are owned by the caller.
//
//   CELLAR_ASSIGN_OR_RETURN(auto server, GrpcServer::Start(options));
//   server->SetServing("cellar.v1.Storage", true);
//   ... server->port() ...; server->Shutdown();
//
// Thread-safe after Start.

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace cellar::common {

struct GrpcServerOptions {
  // host:port to listen on; port 0 picks a free port (see port()).
  // Default "127.0.0.1:0".
  std::string address = "127.0.0.1:0";
  // Services to register (not owned; must outlive the server).
  std::vector<grpc::Service*> services;
  // Registry for the gRPC server metrics; null = no metrics. The server
  // keeps it alive (the metrics endpoint only holds a weak reference).
  std::shared_ptr<prometheus::Registry> metrics_registry;
  // Labels added to every gRPC server series (e.g. version, track).
  std::vector<std::pair<std::string, std::string>> metrics_labels;
  // Largest request accepted, bytes. Default 64 MiB.
  int max_receive_message_bytes = 64 << 20;
  // Largest response sent, bytes. Default 64 MiB.
  int max_send_message_bytes = 64 << 20;
  // Server keepalive ping period. Default 30 s.
  absl::Duration keepalive_time = absl::Seconds(30);
};

class GrpcServer {
 public:
  // Builds and starts the server. UNAVAILABLE if it cannot listen.
  // Every health service name starts NOT_SERVING except "" (overall),
  // which is SERVING: call SetServing once a service is ready.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(
      GrpcServerOptions options);

  ~GrpcServer();

  // The bound port.
  int port() const { return port_; }

  // Sets the grpc.health.v1 status of `service` ("" = the whole server).
  void SetServing(const std::string& service, bool serving);

  // Stops accepting calls, lets running calls finish for `grace`, then
  // cancels them. Idempotent.
  void Shutdown(absl::Duration grace = absl::Seconds(2));

  // Blocks until Shutdown.
  void Wait();

 private:
  GrpcServer() = default;
  // Declared before server_: the interceptors use it until the server is gone.
  std::shared_ptr<prometheus::Registry> metrics_registry_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_GRPC_SERVER_H_
