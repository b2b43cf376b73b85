#ifndef CELLAR_SERVICES_COMMON_AUTHENTICATOR_H_
#define CELLAR_SERVICES_COMMON_AUTHENTICATOR_H_

// Decides whether a call may run: who is calling (the bearer token in the
// `authorization` metadata, or a node certificate: see node_certificates)
// and whether that role may call the method
// (auth_policy's table). No gRPC types: server_auth.h plugs it into the
// server, before any handler runs.
//
//   no or unknown credentials          -> UNAUTHENTICATED
//   known caller, role not allowed     -> PERMISSION_DENIED naming the roles
//   grpc.health.v1.*                   -> open
//   reflection                         -> open with open_reflection, else
//                                         any authenticated caller
//
// Tokens come from the tokens file and from the cluster token table
// (cluster_tokens(), fed by the process: docs/security.md, "Cluster
// tokens"); a token of the file is looked up first, a revoked cluster token
// is refused.
//
// The tokens file is re-read when its mtime or size changes (a polling
// thread, every reload_interval), so a token is revoked by deleting its
// line. A file that does not parse keeps the last good table (the error is
// logged once per change). Secrets are compared in constant time.
//
// Thread-safe.

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "services/common/auth_tokens.h"
#include "services/common/clock.h"
#include "services/common/cluster_tokens.h"
#include "services/common/rate_limiter.h"
#include "services/common/tls_config.h"

namespace cellar::common {

struct AuthenticatorOptions {
  // Path of the tokens file (auth_tokens.h). Empty: no tokens (only the
  // node role, from the cluster secret). Default empty.
  std::string tokens_file;
  // The cluster secret itself (not a path). Empty: nobody has the node
  // role. Default empty.
  std::string cluster_secret;
  // A caller without a bearer whose verified client certificate carries
  // the node identity (tls_config.h kNodeIdentityUri; the server decides
  // the "verified" and tells Authorize) has role node. A bearer, when
  // sent, decides instead. Default false.
  bool node_certificates = false;
  // Serve reflection without credentials. Default false.
  bool open_reflection = false;
  // How often the tokens file's mtime is polled; zero: no polling thread
  // (tests call ReloadIfChanged). Default 1 s.
  absl::Duration reload_interval = absl::Seconds(1);
  // Calls per second each token may make (a token bucket per token; the
  // node role is never limited: the cluster's own traffic must flow).
  // Over it: RESOURCE_EXHAUSTED with a retry-after hint (rate_limiter.h).
  // 0: no limit. Default 0.
  double rate_limit_per_second = 0;
  // The bucket's size (calls allowed in a burst). 0: 2 x the rate, at
  // least 1. Default 0.
  double rate_limit_burst = 0;
  // Bytes per second each token may move through this server (requests
  // of every call and the answers of unary calls, as protobuf bytes; a
  // token bucket per token, charged once each message is known, so a
  // caller in debt is refused until it has refilled; never the node
  // role). 0: no limit. Default 0.
  double byte_limit_per_second = 0;
  // The bucket's size in bytes. 0: 2 x the rate. Default 0.
  double byte_limit_burst = 0;
  // The limiter's clock (not owned); null: the real clock. Default null.
  const Clock* clock = nullptr;
};

class Authenticator {
 public:
  // INVALID_ARGUMENT if neither tokens, a secret nor node certificates are
  // given (auth would refuse everything) or if the tokens file does not parse at start;
  // NOT_FOUND if it cannot be read.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Create(
      AuthenticatorOptions options);

  ~Authenticator();

  // The caller's role for a call of `full_method` ("/pkg.Service/Method")
  // carrying `authorization` (the metadata value, "" if absent), or the
  // refusal (UNAUTHENTICATED / PERMISSION_DENIED with a message for the
  // caller; it never contains a secret). nullopt for an open method.
  // `node_certificate`: the peer presented a verified node certificate
  // (honoured with node_certificates).
  absl::StatusOr<std::optional<Role>> Authorize(absl::string_view full_method,
                                                absl::string_view authorization,
                                                bool node_certificate = false) const;

  // The caller's role from an `authorization` metadata value (and
  // `node_certificate`, as Authorize), without a method: UNAUTHENTICATED if
  // missing or unknown.
  absl::StatusOr<Role> Identify(absl::string_view authorization,
                                bool node_certificate = false) const;

  // Who the caller is: its role and a stable principal id (the token's id,
  // "node" for the cluster secret's bearer or a node certificate).
  // UNAUTHENTICATED as Identify.
  struct Caller {
    Role role;
    std::string principal;
  };
  absl::StatusOr<Caller> IdentifyCaller(absl::string_view authorization,
                                        bool node_certificate = false) const;

  // With a byte limit: takes `bytes` from the budget of the caller of
  // `authorization` (nothing for the node role, an unknown caller, or no
  // limit). Called once a message's size is known (ByteLimitInterceptor).
  void ChargeBytes(absl::string_view authorization, bool node_certificate,
                   size_t bytes) const;
  bool limits_bytes() const { return byte_limiter_ != nullptr; }

  // Re-reads the tokens file if it changed since the last read. The error
  // of a bad or unreadable file (the previous table stays).
  absl::Status ReloadIfChanged();

  // Tokens currently loaded from the file.
  size_t token_count() const;

  // The tokens of the file, sorted by id.
  std::vector<TokenEntry> FileTokens() const;

  // The cluster token table this process accepts (never null). The
  // process keeps it current (the master from its own table, storages and
  // the admin by following the master); it is consulted on every call.
  const std::shared_ptr<ClusterTokens>& cluster_tokens() const { return cluster_tokens_; }

 private:
  explicit Authenticator(AuthenticatorOptions options);
  void PollLoop();

  const AuthenticatorOptions options_;
  const std::string node_bearer_;  // empty without a cluster secret
  std::unique_ptr<RateLimiter> limiter_;  // null: no rate limit
  std::unique_ptr<RateLimiter> byte_limiter_;  // null: no byte limit
  const std::shared_ptr<ClusterTokens> cluster_tokens_ = std::make_shared<ClusterTokens>();
  mutable absl::Mutex mu_;
  TokenTable tokens_ ABSL_GUARDED_BY(mu_);
  // Identity of the file last read: (mtime ns, size, inode).
  std::string file_stamp_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread poller_;
};

// A process's authentication: what its server checks and what it sends.
// Default: auth off, nothing sent.
struct AuthSetup {
  // Decides every call of the process's gRPC server; null: auth off.
  std::shared_ptr<const Authenticator> authenticator;
  // NodeBearer(cluster secret), sent on the process's calls to other
  // nodes; empty: none.
  std::string node_bearer;
  // Allow a non-loopback listener without an authenticator
  // (GrpcServerOptions::insecure).
  bool insecure = false;
  // Where admin actions are appended (GrpcServerOptions::audit_log_file);
  // empty: the process log only.
  std::string audit_log_file;

  // TLS of the process's gRPC server (GrpcServerOptions::tls); nullopt:
  // plaintext. Default nullopt.
  std::optional<TlsServerConfig> tls_server;
  // TLS of the process's calls to other nodes (ChannelSecurity); nullopt:
  // plaintext. Default nullopt.
  std::optional<TlsClientConfig> tls_client;

  // The metrics port asks for basic auth with a token (MetricsOptionsFor;
  // needs authenticator). Default false.
  bool metrics_auth = false;
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_AUTHENTICATOR_H_
