#ifndef CELLAR_FUZZ_FUZZ_SUPPORT_H_
#define CELLAR_FUZZ_FUZZ_SUPPORT_H_

// What every fuzz target shares: quiet logs, and calling one rpc of a
// service adapter on a request parsed from fuzz bytes. Thread-compatible.

#include <grpcpp/grpcpp.h>

#include "absl/strings/string_view.h"

namespace cellar::fuzz {

// Only fatal cellar logs, no protobuf parse warnings ("invalid UTF-8" on
// every other input). This library's LLVMFuzzerInitialize calls it for
// every target.
void QuietLogs();

// With CELLAR_FUZZ_TRACE set in the environment, prints the call's answer
// to stderr (to see what a seed reaches).
void TraceCall(absl::string_view rpc, const grpc::Status& status);

// Parses `payload` as the method's request and calls it with a fresh
// ServerContext (no deadline, no peer, no credentials). An unparsable
// payload is skipped (gRPC would refuse it): returns false. Otherwise
// *status is the handler's answer and *response what it filled in.
template <typename Service, typename Request, typename Response>
bool CallRpc(absl::string_view payload, Service* service,
             grpc::Status (Service::*method)(grpc::ServerContext*, const Request*, Response*),
             Response* response, grpc::Status* status) {
  Request request;
  if (!request.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return false;
  grpc::ServerContext context;
  *status = (service->*method)(&context, &request, response);
  TraceCall(Request::descriptor()->name(), *status);
  return true;
}

// The same, answer dropped.
template <typename Service, typename Request, typename Response>
void Call(absl::string_view payload, Service* service,
          grpc::Status (Service::*method)(grpc::ServerContext*, const Request*, Response*)) {
  Response response;
  grpc::Status status;
  (void)CallRpc(payload, service, method, &response, &status);
}

}  // namespace cellar::fuzz

#endif  // CELLAR_FUZZ_FUZZ_SUPPORT_H_
