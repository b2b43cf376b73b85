#ifndef CELLAR_SERVICES_COMMON_GRPC_SERVER_H_
#define CELLAR_SERVICES_COMMON_GRPC_SERVER_H_

// The server harness every cellar process uses: a gRPC server with
// grpc.health.v1 and reflection, keepalive, message-size limits, the gRPC
// server metrics interceptor, the audit log of admin actions (audit_log.h),
// TLS (optionally mTLS) with a TlsServerConfig,
// and, with an authenticator, a role check of every call before its
// handler (server_auth.h, docs/security.md).
// Services are owned by the caller.
//
//   CELLAR_ASSIGN_OR_RETURN(auto server, GrpcServer::Start(options));
//   server->SetServing("cellar.v1.Storage", true);
//   ... server->port() ...; server->Shutdown();
//
// Thread-safe after Start.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/audit_log.h"
#include "services/common/authenticator.h"
#include "services/common/tls_config.h"

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
  // Decides every call (refusals counted in cellar_auth_refused_total on
  // metrics_registry). Null: auth off, every call runs. Default null.
  std::shared_ptr<const Authenticator> authenticator;
  // Without an authenticator, an address that is not loopback is refused
  // (FAILED_PRECONDITION) unless this is true; then a warning is logged and
  // cellar_insecure_mode is 1. TLS does not count as authentication here.
  // Default false.
  bool insecure = false;
  // Admin actions are written to the audit log (audit_log.h): always to the
  // process log, and appended to this file when set. Default empty.
  std::string audit_log_file;

  // TLS on the listening port (certificates re-read every
  // tls->reload_interval; with a client CA, client certificates are
  // verified, and a node certificate is role node). nullopt: plaintext.
  // Default nullopt.
  std::optional<TlsServerConfig> tls;
};

// True for 127.0.0.0/8, ::1, localhost and unix: addresses (host:port).
bool IsLoopbackAddress(const std::string& address);

class GrpcServer {
 public:
  // Builds and starts the server. UNAVAILABLE if it cannot listen;
  // FAILED_PRECONDITION for a non-loopback address without auth or insecure.
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
  std::shared_ptr<const Authenticator> authenticator_;
  std::unique_ptr<AuditLog> audit_log_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_GRPC_SERVER_H_
