#ifndef CELLAR_SERVICES_COMMON_BYTE_LIMIT_INTERCEPTOR_H_
#define CELLAR_SERVICES_COMMON_BYTE_LIMIT_INTERCEPTOR_H_

// Charges the bytes each caller moves through cellar's services to its byte budget
// (Authenticator::ChargeBytes; the refusal itself happens before the next
// call's handler, in Authorize): the request of every unary and
// server-streaming call, and the answer of every unary call (a Watch
// stream's pushes are the server's doing, not the caller's). Sizes are
// protobuf bytes, as sent on the wire before HTTP/2 framing.

#include <grpcpp/support/server_interceptor.h>

#include "services/common/authenticator.h"

namespace cellar::common {

class ByteLimitInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `authenticator` (not owned, with a byte limit) outlives the server.
  explicit ByteLimitInterceptorFactory(const Authenticator* authenticator)
      : authenticator_(authenticator) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  const Authenticator* authenticator_;
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_BYTE_LIMIT_INTERCEPTOR_H_
