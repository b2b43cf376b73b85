#ifndef CELLAR_SERVICES_COMMON_RAW_CALL_H_
#define CELLAR_SERVICES_COMMON_RAW_CALL_H_

// Tests of the server harness: a unary call of any method path, carrying
// empty Health messages (the auth check runs before the handler, so an
// allowed call of a method the server does not serve is UNIMPLEMENTED).

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>

#include <string>

#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "services/common/channel.h"

namespace cellar::common {

// Calls `path` ("/pkg.Service/Method") on `channel`, 5 s deadline.
inline grpc::Status RawUnaryCall(grpc::Channel* channel, const std::string& path) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(5));
  grpc::health::v1::HealthCheckResponse resp;
  return grpc::internal::BlockingUnaryCall<grpc::health::v1::HealthCheckRequest,
                                           grpc::health::v1::HealthCheckResponse>(
      channel, grpc::internal::RpcMethod(path.c_str(), grpc::internal::RpcMethod::NORMAL_RPC),
      &ctx, grpc::health::v1::HealthCheckRequest(), &resp);
}

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_RAW_CALL_H_
