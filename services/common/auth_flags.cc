#include "services/common/auth_flags.h"

#include <cstdlib>
#include <iostream>
#include <utility>

#include "absl/flags/flag.h"
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

ABSL_FLAG(std::string, audit_log_file, "",
          "Append one JSON line per admin action (who, what, when, outcome) to this "
          "file; they always go to the log too (docs/security.md)");

namespace cellar::common {

absl::StatusOr<AuthSetup> AuthSetupFromFlags() {
  AuthSetup setup;
  setup.insecure = absl::GetFlag(FLAGS_insecure);
  setup.audit_log_file = absl::GetFlag(FLAGS_audit_log_file);
  AuthenticatorOptions options;
  options.tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
  options.open_reflection = absl::GetFlag(FLAGS_reflection);
  const std::string secret_file = absl::GetFlag(FLAGS_cluster_secret_file);
  if (!secret_file.empty()) {
    absl::StatusOr<std::string> secret = ReadClusterSecret(secret_file);
    if (!secret.ok()) return secret.status();
    options.cluster_secret = *std::move(secret);
    setup.node_bearer = NodeBearer(options.cluster_secret);
  }
  if (options.tokens_file.empty() && options.cluster_secret.empty()) return setup;
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
