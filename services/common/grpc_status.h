#ifndef CELLAR_SERVICES_COMMON_GRPC_STATUS_H_
#define CELLAR_SERVICES_COMMON_GRPC_STATUS_H_

// The one place where absl::Status and grpc::Status meet. absl payloads
// (ErrorInfo, ConflictDetail) travel as google.rpc.Status details in the
// grpc-status-details-bin trailer, and come back as payloads.

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace cellar::common {

// Messages leave on one line and at most kMaxStatusMessageBytes (they may
// echo a caller's input: logging.h OneLine).
inline constexpr size_t kMaxStatusMessageBytes = 1024;

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_GRPC_STATUS_H_
