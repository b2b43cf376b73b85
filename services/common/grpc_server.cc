#include "services/common/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.pb.h"
#include "services/common/bad_request_interceptor.h"
#include "services/common/byte_limit_interceptor.h"
#include "services/common/logging.h"
#include "services/common/server_auth.h"
#include "services/common/server_metrics.h"
#include "services/common/tls_credentials.h"

namespace cellar::common {
namespace {

// Credentials for the listening port: TLS with options.tls, else
// plaintext; with an authenticator, every call is decided before its
// handler.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenCredentials(
    const GrpcServerOptions& options) {
  prometheus::Registry* registry = options.metrics_registry.get();
  std::shared_ptr<const TlsServerCredentialsSource> tls;
  if (options.tls.has_value()) {
    tls = std::make_shared<const TlsServerCredentialsSource>(*options.tls);
  }
  if (options.authenticator != nullptr) {
    AuthRefusalCounters counters;
    if (registry != nullptr) {
      auto& refused = prometheus::BuildCounter()
                          .Name("cellar_auth_refused_total")
                          .Help("gRPC calls refused before their handler, by reason.")
                          .Register(*registry);
      counters.unauthenticated = &refused.Add({{"reason", "unauthenticated"}});
      counters.permission_denied = &refused.Add({{"reason", "permission_denied"}});
      counters.rate_limited = &refused.Add({{"reason", "rate_limited"}});
    }
    return AuthenticatingServerCredentials(options.authenticator, counters, tls);
  }
  const bool loopback = IsLoopbackAddress(options.address);
  if (!loopback && !options.insecure) {
    return absl::FailedPreconditionError(absl::StrCat(
        "refusing to listen on ", options.address,
        " without authentication: anyone who reaches it could register a storage, "
        "write or truncate data. Give --auth_tokens_file, --cluster_secret_file "
        "and/or --tls_client_ca_file (docs/security.md; TLS alone does not "
        "authenticate), listen on loopback, or pass --insecure to accept the risk"));
  }
  if (!loopback) {
    CELLAR_LOG(WARNING) << "INSECURE: listening on " << options.address
                        << " WITHOUT AUTHENTICATION (--insecure): any process that "
                           "reaches this port can do anything to the cluster";
  }
  if (registry != nullptr) {
    prometheus::BuildGauge()
        .Name("cellar_insecure_mode")
        .Help("1 if this process serves a non-loopback gRPC port without authentication.")
        .Register(*registry)
        .Add({})
        .Set(loopback ? 0 : 1);
  }
  if (tls != nullptr) return AuthenticatingServerCredentials(nullptr, {}, tls);
  return grpc::InsecureServerCredentials();
}

}  // namespace

bool IsLoopbackAddress(const std::string& address) {
  if (absl::StartsWith(address, "unix:")) return true;
  absl::string_view host = address;
  const size_t colon = host.rfind(':');
  if (colon != absl::string_view::npos) host = host.substr(0, colon);
  if (absl::ConsumePrefix(&host, "[")) absl::ConsumeSuffix(&host, "]");
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(
    GrpcServerOptions options) {
  grpc::EnableDefaultHealthCheckService(true);
  // gRPC's built-in health service does not publish its descriptor: link
  // ours so that reflection clients (grpcurl) can call Health/Check.
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      ListenCredentials(options);
  if (!credentials.ok()) return credentials.status();
  auto server = std::unique_ptr<GrpcServer>(new GrpcServer);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.address, *credentials, &server->port_);
  for (grpc::Service* service : options.services) builder.RegisterService(service);
  // Handlers block (group commit, lock waits), so many calls run at once.
  // gRPC's sync server keeps at most MAX_POLLERS idle threads (default 2)
  // and ends the others after each call, then creates new ones for the next
  // burst: thousands of thread creations per second under load. Keep them.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 64);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
  builder.SetMaxSendMessageSize(options.max_send_message_bytes);
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIME_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // gRPC sets SO_REUSEPORT by default: a second process on the same port
  // would silently share it. A port conflict must be an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  server->metrics_registry_ = options.metrics_registry;
  server->authenticator_ = options.authenticator;
  absl::StatusOr<std::unique_ptr<AuditLog>> audit_log =
      AuditLog::Open(options.audit_log_file, options.metrics_registry.get());
  if (!audit_log.ok()) return audit_log.status();
  server->audit_log_ = *std::move(audit_log);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      creators;
  // First: the others see INVALID_ARGUMENT for a request that did not parse.
  creators.push_back(std::make_unique<BadRequestInterceptorFactory>());
  if (options.metrics_registry != nullptr) {
    prometheus::Labels labels;
    for (const auto& [k, v] : options.metrics_labels) labels[k] = v;
    creators.push_back(std::make_unique<ServerMetricsInterceptorFactory>(
        *options.metrics_registry, labels));
  }
  if (server->authenticator_ != nullptr && server->authenticator_->limits_bytes()) {
    creators.push_back(
        std::make_unique<ByteLimitInterceptorFactory>(server->authenticator_.get()));
  }
  creators.push_back(std::make_unique<AuditInterceptorFactory>(
      server->audit_log_.get(), server->authenticator_.get()));
  builder.experimental().SetInterceptorCreators(std::move(creators));
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.address,
                     " (address in use or invalid?)"));
  }
  return server;
}

GrpcServer::~GrpcServer() { Shutdown(absl::ZeroDuration()); }

void GrpcServer::SetServing(const std::string& service, bool serving) {
  if (server_ == nullptr) return;
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  if (health == nullptr) return;
  if (service.empty()) {
    health->SetServingStatus(serving);
  } else {
    health->SetServingStatus(service, serving);
  }
}

void GrpcServer::Shutdown(absl::Duration grace) {
  if (server_ == nullptr || shut_down_) return;
  shut_down_ = true;
  if (auto* health = server_->GetHealthCheckService()) {
    health->SetServingStatus(false);
  }
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_->Wait();
}

void GrpcServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace cellar::common
