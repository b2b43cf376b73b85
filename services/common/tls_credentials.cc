#include "services/common/tls_credentials.h"

#include <grpcpp/security/tls_credentials_options.h>

#include <string>
#include <utility>

namespace cellar::common {
namespace {

unsigned int RefreshSeconds(absl::Duration interval) {
  return static_cast<unsigned int>(
      std::max<int64_t>(1, absl::ToInt64Seconds(interval)));
}

std::shared_ptr<grpc::experimental::FileWatcherCertificateProvider> ServerProvider(
    const TlsServerConfig& config) {
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      config.key_file, config.cert_file, config.client_ca_file,
      RefreshSeconds(config.reload_interval));
}

// The property a certificate's URI SANs land in, one per URI (DNS, IP and
// email SANs have others: a DNS name spelled like the URI does not count).
constexpr const char* kUriProperties[] = {GRPC_PEER_URI_PROPERTY_NAME};

}  // namespace

TlsServerCredentialsSource::TlsServerCredentialsSource(TlsServerConfig config)
    : config_(std::move(config)), provider_(ServerProvider(config_)) {}

grpc_server_credentials* TlsServerCredentialsSource::NewCoreCredentials() const {
  // What grpc::experimental::TlsServerCredentials does, kept at the core
  // level so that server_auth can set its C metadata processor on it. The
  // core credentials take ownership of the options' C object.
  grpc::experimental::TlsServerCredentialsOptions options(provider_);
  options.watch_identity_key_cert_pairs();
  if (!config_.client_ca_file.empty()) {
    options.watch_root_certs();
    options.set_cert_request_type(
        config_.require_client_cert
            ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
            : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc_tls_server_credentials_create(options.c_credentials_options());
}

std::shared_ptr<grpc::ChannelCredentials> TlsChannelCredentials(const TlsClientConfig& config) {
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          config.key_file, config.cert_file, config.ca_file,
          RefreshSeconds(config.reload_interval)));
  options.watch_root_certs();
  if (!config.cert_file.empty()) options.watch_identity_key_cert_pairs();
  return grpc::experimental::TlsCredentials(options);
}

bool PeerHasNodeIdentity(const grpc_auth_context* context) {
  if (context == nullptr) return false;
  for (const char* name : kUriProperties) {
    grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(context, name);
    while (const grpc_auth_property* p = grpc_auth_property_iterator_next(&it)) {
      if (std::string(p->value, p->value_length) == kNodeIdentityUri) return true;
    }
  }
  return false;
}

bool PeerHasNodeIdentity(const grpc::AuthContext& context) {
  for (const char* name : kUriProperties) {
    for (const grpc::string_ref& value : context.FindPropertyValues(name)) {
      if (absl::string_view(value.data(), value.size()) == kNodeIdentityUri) return true;
    }
  }
  return false;
}

}  // namespace cellar::common
