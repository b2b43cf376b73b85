#include "services/common/auth_flags.h"

#include <cstdlib>
#include <iostream>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "services/common/auth_tokens.h"

ABSL_FLAG(std::string, auth_tokens_file, "",
          "Tokens file ('<id> <role> <sha256hex> <name>' per line; see docs/security.md), "
          "re-read when it changes. Turns authentication on");
ABSL_FLAG(std::string, cluster_secret_file, "",
          "File holding the cluster secret (at least 16 bytes, e.g. `openssl rand -hex 32`): "
          "grants the node role to processes that know it and is sent on this process's "
          "calls to other nodes. Turns authentication on");
ABSL_FLAG(bool, reflection, false,
          "With authentication on, serve gRPC reflection without credentials");
ABSL_FLAG(bool, insecure, false,
          "Allow listening on a non-loopback address without authentication (logs a "
          "warning and sets cellar_insecure_mode 1)");

ABSL_FLAG(double, rate_limit, 0,
          "Calls per second each token may make (token bucket; the node role is never "
          "limited); over it: RESOURCE_EXHAUSTED with a retry-after hint. 0: no limit");
ABSL_FLAG(double, rate_limit_burst, 0,
          "Calls a token may make in a burst above --rate_limit (0: twice the rate)");
ABSL_FLAG(double, rate_limit_bytes, 0,
          "Bytes per second each token may move through this server (its requests, and the "
          "answers of unary calls; token bucket, charged as messages arrive, so a token in "
          "debt is refused with RESOURCE_EXHAUSTED and a retry-after hint until it has "
          "refilled; the node role is never limited). 0: no limit");
ABSL_FLAG(double, rate_limit_bytes_burst, 0,
          "Bytes a token may move in a burst above --rate_limit_bytes (0: twice the rate)");
ABSL_FLAG(bool, metrics_auth, false,
          "The metrics port asks for HTTP basic auth: the password must be a token with role "
          "readonly or admin (or the node bearer); needs authentication on");
ABSL_FLAG(std::string, audit_log_file, "",
          "Append one JSON line per admin action (who, what, when, outcome) to this "
          "file; they always go to the log too (docs/security.md)");

ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain of this process: served on its gRPC port (TLS) and presented "
          "as client certificate on its calls to other nodes. Needs --tls_key_file and "
          "--tls_ca_file");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA bundle client certificates are verified against (mTLS): a certificate that "
          "does not chain to it is refused, one carrying the URI SAN spiffe://cellar/node is "
          "role node. Turns authentication on");
ABSL_FLAG(bool, tls_require_client_cert, false,
          "With --tls_client_ca_file, refuse connections without a client certificate");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM CA bundle the certificates of the nodes this process dials must chain to: its "
          "calls to other nodes use TLS");
ABSL_FLAG(std::string, tls_server_name, "",
          "Name (DNS or IP SAN) the dialled nodes' certificates must carry, instead of the "
          "host of their address");
ABSL_FLAG(absl::Duration, tls_reload_interval, absl::Seconds(60),
          "How often the TLS files are re-read (rotation without restart)");

namespace cellar::common {
namespace {

// --tls_*: what this process serves and how it dials.
absl::Status TlsFromFlags(AuthSetup& setup) {
  TlsFileNames names;
  names.ca = "--tls_ca_file";
  names.cert = "--tls_cert_file";
  names.key = "--tls_key_file";
  names.client_ca = "--tls_client_ca_file";
  const std::string cert = absl::GetFlag(FLAGS_tls_cert_file);
  const std::string key = absl::GetFlag(FLAGS_tls_key_file);
  const std::string ca = absl::GetFlag(FLAGS_tls_ca_file);
  const absl::Duration reload = absl::GetFlag(FLAGS_tls_reload_interval);
  if (!cert.empty() || !key.empty() || !absl::GetFlag(FLAGS_tls_client_ca_file).empty() ||
      absl::GetFlag(FLAGS_tls_require_client_cert)) {
    TlsServerConfig server;
    server.cert_file = cert;
    server.key_file = key;
    server.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
    server.require_client_cert = absl::GetFlag(FLAGS_tls_require_client_cert);
    server.reload_interval = reload;
    absl::Status s = CheckTlsServerConfig(server, names);
    if (!s.ok()) return s;
    if (ca.empty()) {
      // Every node dials others (storage -> master, master -> storage,
      // admin -> both): a TLS server with plaintext calls would fail later
      // and less clearly.
      return absl::InvalidArgumentError(
          "--tls_ca_file: required with --tls_cert_file (the CA of the other nodes' "
          "certificates; usually the same file as --tls_client_ca_file)");
    }
    setup.tls_server = std::move(server);
  }
  const std::string server_name = absl::GetFlag(FLAGS_tls_server_name);
  if (ca.empty()) {
    if (!server_name.empty()) {
      return absl::InvalidArgumentError("--tls_server_name: needs --tls_ca_file");
    }
    return absl::OkStatus();
  }
  TlsClientConfig client;
  client.ca_file = ca;
  client.cert_file = cert;
  client.key_file = key;
  client.server_name = server_name;
  client.reload_interval = reload;
  absl::Status s = CheckTlsClientConfig(client, names);
  if (!s.ok()) return s;
  setup.tls_client = std::move(client);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<AuthSetup> AuthSetupFromFlags() {
  AuthSetup setup;
  setup.insecure = absl::GetFlag(FLAGS_insecure);
  setup.audit_log_file = absl::GetFlag(FLAGS_audit_log_file);

  absl::Status tls = TlsFromFlags(setup);
  if (!tls.ok()) return tls;
  AuthenticatorOptions options;
  options.node_certificates =
      setup.tls_server.has_value() && !setup.tls_server->client_ca_file.empty();
  options.tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
  options.open_reflection = absl::GetFlag(FLAGS_reflection);
  options.rate_limit_per_second = absl::GetFlag(FLAGS_rate_limit);
  options.rate_limit_burst = absl::GetFlag(FLAGS_rate_limit_burst);
  if (!(options.rate_limit_per_second >= 0) || !(options.rate_limit_burst >= 0)) {
    return absl::InvalidArgumentError(
        "--rate_limit, --rate_limit_burst: must be 0 (no limit) or positive");
  }
  options.byte_limit_per_second = absl::GetFlag(FLAGS_rate_limit_bytes);
  options.byte_limit_burst = absl::GetFlag(FLAGS_rate_limit_bytes_burst);
  if (!(options.byte_limit_per_second >= 0) || !(options.byte_limit_burst >= 0)) {
    return absl::InvalidArgumentError(
        "--rate_limit_bytes, --rate_limit_bytes_burst: must be 0 (no limit) or positive");
  }
  const std::string secret_file = absl::GetFlag(FLAGS_cluster_secret_file);
  if (!secret_file.empty()) {
    absl::StatusOr<std::string> secret = ReadClusterSecret(secret_file);
    if (!secret.ok()) return secret.status();
    options.cluster_secret = *std::move(secret);
    setup.node_bearer = NodeBearer(options.cluster_secret);
  }
  setup.metrics_auth = absl::GetFlag(FLAGS_metrics_auth);
  if (options.tokens_file.empty() && options.cluster_secret.empty() &&
      !options.node_certificates) {
    if (setup.metrics_auth) {
      return absl::InvalidArgumentError(
          "--metrics_auth: needs authentication on (--auth_tokens_file or "
          "--cluster_secret_file): the scrape's password is a token");
    }
    if (options.rate_limit_per_second > 0 || options.byte_limit_per_second > 0) {
      return absl::InvalidArgumentError(
          "--rate_limit, --rate_limit_bytes: need authentication on (--auth_tokens_file or "
          "--cluster_secret_file): the limits are per token");
    }
    return setup;
  }
  absl::StatusOr<std::unique_ptr<Authenticator>> auth =
      Authenticator::Create(std::move(options));
  if (!auth.ok()) return auth.status();
  setup.authenticator = *std::move(auth);
  return setup;
}

AuthSetup AuthSetupFromFlagsOrExit(const char* program) {
  absl::StatusOr<AuthSetup> setup = AuthSetupFromFlags();
  if (!setup.ok()) {
    std::cerr << program << ": " << setup.status().message() << "\n";
    std::exit(2);
  }
  return *std::move(setup);
}

}  // namespace cellar::common
