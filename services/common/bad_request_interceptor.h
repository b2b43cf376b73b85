#ifndef CELLAR_SERVICES_COMMON_BAD_REQUEST_INTERCEPTOR_H_
#define CELLAR_SERVICES_COMMON_BAD_REQUEST_INTERCEPTOR_H_

// A request message that does not parse is the caller's error, but gRPC's
// deserializer answers it with INTERNAL (and an empty message) before any
// handler runs. This interceptor answers it with INVALID_ARGUMENT naming
// the request and the method instead (docs/security.md, "Validation").
// Unary and server-streaming methods only (one request message each).
// Stateless: thread-safe.

#include <grpcpp/support/server_interceptor.h>

namespace cellar::common {

class BadRequestInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_BAD_REQUEST_INTERCEPTOR_H_
