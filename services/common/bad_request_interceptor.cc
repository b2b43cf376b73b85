#include "services/common/bad_request_interceptor.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace cellar::common {
namespace {

class BadRequestInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit BadRequestInterceptor(std::string method) : method_(std::move(method)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    // The server hands interceptors no message when the request did not
    // parse (the handler is then not run: gRPC answers INTERNAL).
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      unparsed_ = true;
    }
    if (unparsed_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) &&
        methods->GetSendStatus().error_code() == grpc::StatusCode::INTERNAL) {
      methods->ModifySendStatus(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("request: not a valid request message of ", method_,
                       " (it does not parse)")));
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
  bool unparsed_ = false;
};

}  // namespace

grpc::experimental::Interceptor* BadRequestInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  using Type = grpc::experimental::ServerRpcInfo::Type;
  if (info->method() == nullptr ||
      (info->type() != Type::UNARY && info->type() != Type::SERVER_STREAMING)) {
    return nullptr;
  }
  return new BadRequestInterceptor(info->method());
}

}  // namespace cellar::common
