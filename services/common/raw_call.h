#ifndef CELLAR_SERVICES_COMMON_RAW_CALL_H_
#define CELLAR_SERVICES_COMMON_RAW_CALL_H_

// Tests of the server harness: a unary call of any method path, carrying
// empty Health messages (the auth check runs before the handler, so an
// allowed call of a method the server does not serve is UNIMPLEMENTED);
// a call of any method with any bytes as its request.

#include <google/protobuf/descriptor.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/impl/codegen/sync_stream.h>

#include <memory>
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

// Calls `method` on `channel` with `request` as its serialized request
// message (any bytes), within `deadline`. A server stream that sends a
// message counts as OK and is cancelled (a Watch would go on forever).
inline grpc::Status RawBytesCall(grpc::Channel* channel,
                                 const google::protobuf::MethodDescriptor& method,
                                 const std::string& request, absl::Duration deadline) {
  const std::string path = "/" + method.service()->full_name() + "/" + method.name();
  grpc::ClientContext context;
  SetDeadline(&context, deadline);
  grpc::Slice slice(request);
  grpc::ByteBuffer buffer(&slice, 1);
  grpc::ByteBuffer response;
  if (method.server_streaming()) {
    grpc::internal::RpcMethod rpc(path.c_str(), grpc::internal::RpcMethod::SERVER_STREAMING);
    std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
        grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(channel, rpc, &context,
                                                                       buffer));
    if (reader->Read(&response)) {
      context.TryCancel();
      return grpc::Status::OK;
    }
    return reader->Finish();
  }
  grpc::internal::RpcMethod rpc(path.c_str(), grpc::internal::RpcMethod::NORMAL_RPC);
  return grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
      channel, rpc, &context, buffer, &response);
}

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_RAW_CALL_H_
