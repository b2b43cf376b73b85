#include "services/common/byte_limit_interceptor.h"

#include <google/protobuf/message_lite.h>
#include <grpcpp/support/byte_buffer.h>

#include "absl/strings/match.h"
#include "services/common/tls_credentials.h"

namespace cellar::common {
namespace {

class ByteLimitInterceptor final : public grpc::experimental::Interceptor {
 public:
  ByteLimitInterceptor(const Authenticator* authenticator,
                       grpc::experimental::ServerRpcInfo* info, bool charge_answers)
      : authenticator_(authenticator), info_(info), charge_answers_(charge_answers) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE)) {
      // A cellar.v1 rpc (the factory takes no other): its request is a
      // generated protobuf message (null when it did not parse; it then
      // reaches no handler).
      const auto* request =
          static_cast<const google::protobuf::MessageLite*>(methods->GetRecvMessage());
      if (request != nullptr) Charge(request->ByteSizeLong());
    }
    if (charge_answers_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      // Serialized here rather than later by gRPC: the same work, once.
      grpc::ByteBuffer* answer = methods->GetSerializedSendMessage();
      if (answer != nullptr) Charge(answer->Length());
    }
    methods->Proceed();
  }

 private:
  void Charge(size_t bytes) {
    grpc::ServerContextBase* context = info_->server_context();
    if (context == nullptr) return;
    absl::string_view authorization;
    auto it = context->client_metadata().find("authorization");
    if (it != context->client_metadata().end()) {
      authorization = absl::string_view(it->second.data(), it->second.size());
    }
    std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
    authenticator_->ChargeBytes(authorization, auth != nullptr && PeerHasNodeIdentity(*auth),
                                bytes);
  }

  const Authenticator* authenticator_;
  grpc::experimental::ServerRpcInfo* info_;
  const bool charge_answers_;
};

}  // namespace

grpc::experimental::Interceptor* ByteLimitInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  using Type = grpc::experimental::ServerRpcInfo::Type;
  // Only cellar's own services: gRPC's health service (open anyway) hands
  // interceptors raw bytes, not a protobuf message.
  if (authenticator_ == nullptr || !authenticator_->limits_bytes() ||
      info->method() == nullptr || !absl::StartsWith(info->method(), "/cellar.") ||
      (info->type() != Type::UNARY && info->type() != Type::SERVER_STREAMING)) {
    return nullptr;
  }
  return new ByteLimitInterceptor(authenticator_, info, info->type() == Type::UNARY);
}

}  // namespace cellar::common
