#include "services/common/channel.h"

#include <grpcpp/support/client_interceptor.h>

#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/tls_credentials.h"

namespace cellar::common {
namespace {

// Adds the bearer to each call's initial metadata. An interceptor rather
// than call credentials: gRPC refuses call credentials on a plaintext
// channel (they need a secure transport), and the same code serves both.
class BearerInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit BearerInterceptor(const std::string* value) : value_(value) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", *value_);
    }
    methods->Proceed();
  }

 private:
  const std::string* value_;  // owned by the factory (lives with the channel)
};

class BearerInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerInterceptorFactory(const std::string& token)
      : value_(absl::StrCat("Bearer ", token)) {}

  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new BearerInterceptor(&value_);
  }

 private:
  const std::string value_;
};

}  // namespace

absl::StatusOr<ChannelSecurity> MakeChannelSecurity(std::string bearer_token,
                                                    const std::optional<TlsClientConfig>& tls,
                                                    const TlsFileNames& names) {
  ChannelSecurity security;
  security.bearer_token = std::move(bearer_token);
  if (tls.has_value()) {
    absl::Status checked = CheckTlsClientConfig(*tls, names);
    if (!checked.ok()) return checked;
    security.credentials = TlsChannelCredentials(*tls);
    security.server_name = tls->server_name;
  }
  return security;
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address,
                                           const std::string& bearer_token) {
  ChannelSecurity security;
  security.bearer_token = bearer_token;
  return MakeChannel(address, security);
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address,
                                           const ChannelSecurity& security) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Reconnect quickly after a peer restarts (a pod restart takes about a
  // second; attempts to a refused port are cheap).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 250);
  // Not set: GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS (gRPC's default
  // 30 s). A Kubernetes pod comes back under its DNS name with a new IP;
  // peers follow it by dialling a new channel instead, when the node
  // registers again or a session call to it fails (RedialAfter). 1 s
  // broke //tests/fault:sigstop_test: a stopped process's kernel accepts
  // the TCP connection and the HTTP/2 handshake never ends, so each attempt
  // lasts the 20 s minimum connect timeout. gRPC 1.51's pick_first makes
  // calls fail fast (UNAVAILABLE) once an attempt has failed ("sticky"
  // TRANSIENT_FAILURE), but keeps that flag per address list: every
  // resolver result starts a new list, whose next attempt is reported
  // CONNECTING, and calls queue until their deadline. A failed attempt asks
  // for a re-resolution; with 1 s it comes back at once, before the next
  // attempt, so every attempt queued calls (commits waited 3 s on the
  // stopped storage each); with 30 s it mostly lands during an attempt and
  // the list goes on failing fast.
  return MakeChannelWithArgs(address, std::move(args), security);
}

std::shared_ptr<grpc::Channel> MakeChannelWithArgs(const std::string& address,
                                                   grpc::ChannelArguments args,
                                                   const ChannelSecurity& security) {
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      security.credentials != nullptr ? security.credentials
                                      : grpc::InsecureChannelCredentials();
  if (security.credentials != nullptr && !security.server_name.empty()) {
    args.SetSslTargetNameOverride(security.server_name);
  }
  if (security.bearer_token.empty()) {
    return grpc::CreateCustomChannel(address, credentials, args);
  }
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(std::make_unique<BearerInterceptorFactory>(security.bearer_token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      address, credentials, args, std::move(interceptors));
}

bool RedialAfter(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED;
}

void SetDeadline(grpc::ClientContext* context, absl::Duration timeout) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

absl::Time DeadlineOf(const grpc::ServerContext& context) {
  const std::chrono::system_clock::time_point deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

}  // namespace cellar::common
