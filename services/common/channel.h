#ifndef CELLAR_SERVICES_COMMON_CHANNEL_H_
#define CELLAR_SERVICES_COMMON_CHANNEL_H_

// Client channels between cellar processes: keepalive on (long streams),
// 64 MiB messages, plaintext or TLS (ChannelSecurity), and the caller's
// bearer token on every call (docs/security.md).

#include <memory>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/tls_config.h"

namespace cellar::common {

// How a process (or a client) dials cellar servers: which bearer it sends
// and over which transport. Make one per process (or per client) with
// MakeChannelSecurity and share it: the TLS credentials watch their files
// with a thread of their own. Copyable; thread-safe.
struct ChannelSecurity {
  // Sent as "authorization: Bearer <bearer_token>" on every call; "" none.
  std::string bearer_token;
  // TLS credentials; null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // With TLS: the name the server's certificate must carry instead of the
  // dialled host (TlsClientConfig::server_name); "" the host.
  std::string server_name;
};

// `bearer_token` over TLS from `tls` (checked: CheckTlsClientConfig, files
// named as `names`), or plaintext without it.
absl::StatusOr<ChannelSecurity> MakeChannelSecurity(std::string bearer_token,
                                                    const std::optional<TlsClientConfig>& tls,
                                                    const TlsFileNames& names = {});

// A channel to `address` (host:port). Never blocks. With a non-empty
// `bearer_token` (a client token, or NodeBearer(cluster secret) between
// nodes), every call carries "authorization: Bearer <bearer_token>".
// Plaintext.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address,
                                           const std::string& bearer_token = "");

// The same with `security`'s bearer and transport.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address,
                                           const ChannelSecurity& security);

// The same on a channel with the caller's own `args` (e.g. a local
// subchannel pool for polling tools).
std::shared_ptr<grpc::Channel> MakeChannelWithArgs(const std::string& address,
                                                   grpc::ChannelArguments args,
                                                   const ChannelSecurity& security);

// Whether a caller whose short call (a registration, cluster info: a live
// peer answers well within the deadline) failed with `code` should drop its
// channel to that peer and dial it on a new one next time: UNAVAILABLE
// (refused, unreachable, name not resolved) or DEADLINE_EXCEEDED (e.g. a
// connection to the old IP of a deleted pod that nothing answers). A new
// channel resolves the peer's name afresh: a restarted Kubernetes pod
// comes back under its DNS name with a new IP, and a channel re-resolves
// at most every 30 s by itself (GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS,
// left at its default: see MakeChannel). The price: on a stopped process
// (whose kernel accepts connections that never answer) the old channel
// would fail fast once one 20 s connection attempt had failed, where each
// new one waits for the call's deadline; so the hot paths to storages
// (client reads and commits) never use this, they follow registrations.
bool RedialAfter(grpc::StatusCode code);

// `context` with a deadline `timeout` from now.
void SetDeadline(grpc::ClientContext* context, absl::Duration timeout);

// The deadline of a call being served; InfiniteFuture if it has none.
absl::Time DeadlineOf(const grpc::ServerContext& context);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_CHANNEL_H_
