#ifndef CELLAR_SERVICES_COMMON_TLS_CONFIG_H_
#define CELLAR_SERVICES_COMMON_TLS_CONFIG_H_

// TLS settings of a cellar process, as file paths (PEM), and their checks.
// No gRPC types: tls_credentials.h turns them into gRPC credentials.
//
// The files are watched by gRPC (FileWatcherCertificateProvider): a
// certificate or key replaced on disk is used for new connections within
// `reload_interval`, no restart. Replace the key and the certificate
// together and atomically (a new directory behind a symlink), so that a
// reload never reads a new key with an old certificate.
//
// Node identity (docs/security.md): a client certificate that chains to
// the server's client CA and carries the URI SAN kNodeIdentityUri is a
// cluster node (role `node`), without the cluster-secret bearer.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace cellar::common {

// URI subject alternative name that marks a node certificate.
inline constexpr absl::string_view kNodeIdentityUri = "spiffe://cellar/node";

// TLS of a process's gRPC server.
struct TlsServerConfig {
  // The server's certificate chain (leaf first) and its private key, PEM.
  // Required.
  std::string cert_file;
  std::string key_file;
  // CA bundle client certificates are verified against (mTLS). Empty: no
  // client certificate is asked for. Default empty.
  std::string client_ca_file;
  // With client_ca_file: refuse a connection without a client certificate
  // (the handshake fails). False: a client certificate is optional, but one
  // that does not chain to client_ca_file is refused. Default false.
  bool require_client_cert = false;
  // How often gRPC re-reads the files. Default 60 s.
  absl::Duration reload_interval = absl::Seconds(60);
};

// TLS of the channels a process (or a client) opens.
struct TlsClientConfig {
  // CA bundle the server's certificate must chain to, PEM. Required.
  std::string ca_file;
  // Certificate chain and key presented as client certificate (mTLS);
  // both or neither. Default empty: none.
  std::string cert_file;
  std::string key_file;
  // Name the server's certificate must carry (a DNS or IP SAN) instead of
  // the host of the address dialled. Default empty: that host.
  std::string server_name;
  // How often gRPC re-reads the files. Default 60 s.
  absl::Duration reload_interval = absl::Seconds(60);
};

// How check errors name each file, e.g. {"--tls_cert_file", ...} for a
// server's flags or {"--tls-cert", ...} for cellarctl.
struct TlsFileNames {
  std::string ca = "ca_file";
  std::string cert = "cert_file";
  std::string key = "key_file";
  std::string client_ca = "client_ca_file";
};

// Reads and parses every file: INVALID_ARGUMENT naming the file (by
// `names`) when one is missing while another needs it, cannot be read,
// holds no PEM certificate / private key, or when the key is not the
// certificate's.
absl::Status CheckTlsServerConfig(const TlsServerConfig& config,
                                  const TlsFileNames& names = {});
absl::Status CheckTlsClientConfig(const TlsClientConfig& config,
                                  const TlsFileNames& names = {});

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_TLS_CONFIG_H_
