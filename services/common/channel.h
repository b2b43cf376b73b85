#ifndef CELLAR_SERVICES_COMMON_CHANNEL_H_
#define CELLAR_SERVICES_COMMON_CHANNEL_H_

// Client channels between cellar processes: keepalive on (long streams),
// 64 MiB messages, insecure for now (TLS is a later issue).

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"

namespace cellar::common {

// A channel to `address` (host:port). Never blocks.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address);

// `context` with a deadline `timeout` from now.
void SetDeadline(grpc::ClientContext* context, absl::Duration timeout);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_CHANNEL_H_
