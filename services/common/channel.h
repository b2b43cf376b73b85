#ifndef CELLAR_SERVICES_COMMON_CHANNEL_H_
#define CELLAR_SERVICES_COMMON_CHANNEL_H_

// Client channels between cellar processes: keepalive on (long streams),
// 64 MiB messages, plaintext for now (TLS is a later issue), and the
// caller's bearer token on every call (docs/security.md).

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"

namespace cellar::common {

// A channel to `address` (host:port). Never blocks. With a non-empty
// `bearer_token` (a client token, or NodeBearer(cluster secret) between
// nodes), every call carries "authorization: Bearer <bearer_token>".
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address,
                                           const std::string& bearer_token = "");

// The same bearer handling on a channel with the caller's own `args`
// (e.g. a local subchannel pool for polling tools).
std::shared_ptr<grpc::Channel> MakeChannelWithArgs(const std::string& address,
                                                   const grpc::ChannelArguments& args,
                                                   const std::string& bearer_token);

// `context` with a deadline `timeout` from now.
void SetDeadline(grpc::ClientContext* context, absl::Duration timeout);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_CHANNEL_H_
