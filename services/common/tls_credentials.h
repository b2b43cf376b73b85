#ifndef CELLAR_SERVICES_COMMON_TLS_CREDENTIALS_H_
#define CELLAR_SERVICES_COMMON_TLS_CREDENTIALS_H_

// gRPC credentials from a TlsServerConfig / TlsClientConfig (tls_config.h),
// built on gRPC's FileWatcherCertificateProvider: the files are re-read
// every reload_interval, so a rotated certificate is used by new
// connections without a restart. Hostname checking is gRPC's: the
// server's certificate must carry the dialled host (or
// TlsClientConfig::server_name) as a DNS or IP subject alternative name.
//
// Thread-safe (the credentials are immutable; gRPC's provider has its own
// refresh thread).

#include <memory>

#include <grpc/grpc_security.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/tls_certificate_provider.h>

#include "services/common/tls_config.h"

namespace cellar::common {

// Server-side TLS: the provider (one per server; it watches the files) and
// what to build credentials from.
class TlsServerCredentialsSource {
 public:
  explicit TlsServerCredentialsSource(TlsServerConfig config);

  // New core server credentials (owned by the caller, released with
  // grpc_server_credentials_release) using the shared provider.
  grpc_server_credentials* NewCoreCredentials() const;

  const TlsServerConfig& config() const { return config_; }

 private:
  const TlsServerConfig config_;
  const std::shared_ptr<grpc::experimental::FileWatcherCertificateProvider> provider_;
};

// Channel credentials verifying the server against config.ca_file and,
// with cert_file/key_file, presenting them (mTLS). Files are not checked
// here (CheckTlsClientConfig).
std::shared_ptr<grpc::ChannelCredentials> TlsChannelCredentials(const TlsClientConfig& config);

// True if the peer of `context` presented a verified certificate carrying
// kNodeIdentityUri (only servers with a client CA ask for certificates;
// any other certificate is refused in the handshake).
bool PeerHasNodeIdentity(const grpc_auth_context* context);
bool PeerHasNodeIdentity(const grpc::AuthContext& context);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_TLS_CREDENTIALS_H_
