#include "services/common/server_metrics.h"

#include <utility>

#include "absl/strings/string_view.h"
#include "absl/time/clock.h"

namespace cellar::common {
namespace {

const char* TypeName(grpc::internal::RpcMethod::RpcType type) {
  switch (type) {
    case grpc::internal::RpcMethod::NORMAL_RPC:
      return "unary";
    case grpc::internal::RpcMethod::CLIENT_STREAMING:
      return "client_stream";
    case grpc::internal::RpcMethod::SERVER_STREAMING:
      return "server_stream";
    case grpc::internal::RpcMethod::BIDI_STREAMING:
      return "bidi_stream";
  }
  return "unknown";
}

// gRPC status code names as Prometheus users expect them (OK, NOT_FOUND...).
const char* CodeName(int code) {
  static const char* const kNames[] = {
      "OK",        "CANCELLED",         "UNKNOWN",           "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",    "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",       "UNAVAILABLE",       "DATA_LOSS",
      "UNAUTHENTICATED"};
  if (code < 0 || code > 16) return "UNKNOWN";
  return kNames[code];
}

prometheus::Labels With(prometheus::Labels base, const prometheus::Labels& more) {
  for (const auto& [k, v] : more) base[k] = v;
  return base;
}

class ServerMetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  ServerMetricsInterceptor(ServerMetricsInterceptorFactory* factory,
                           ServerMetricsInterceptorFactory::MethodSeries* series)
      : factory_(factory), series_(series), start_(absl::Now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      series_->started->Increment();
    }
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      const int code = static_cast<int>(methods->GetSendStatus().error_code());
      factory_->HandledFor(series_, code)->Increment();
      series_->handling->Observe(absl::ToDoubleSeconds(absl::Now() - start_));
    }
    methods->Proceed();
  }

 private:
  ServerMetricsInterceptorFactory* factory_;
  ServerMetricsInterceptorFactory::MethodSeries* series_;
  absl::Time start_;
};

}  // namespace

ServerMetricsInterceptorFactory::ServerMetricsInterceptorFactory(
    prometheus::Registry& registry, const prometheus::Labels& const_labels)
    : const_labels_(const_labels),
      started_(prometheus::BuildCounter()
                   .Name("grpc_server_started_total")
                   .Help("RPCs started on the server, by method.")
                   .Register(registry)),
      handled_(prometheus::BuildCounter()
                   .Name("grpc_server_handled_total")
                   .Help("RPCs completed on the server, by method and code.")
                   .Register(registry)),
      handling_(prometheus::BuildHistogram()
                    .Name("grpc_server_handling_seconds")
                    .Help("Time from receiving an RPC to sending its status.")
                    .Register(registry)) {}

ServerMetricsInterceptorFactory::MethodSeries*
ServerMetricsInterceptorFactory::SeriesFor(
    const char* full_method, grpc::internal::RpcMethod::RpcType type) {
  absl::MutexLock l(&mu_);
  auto& slot = series_[full_method ? full_method : ""];
  if (slot == nullptr) {
    absl::string_view name = full_method ? full_method : "";
    if (!name.empty() && name[0] == '/') name.remove_prefix(1);
    const size_t slash = name.find('/');
    auto series = std::make_unique<MethodSeries>();
    series->service = std::string(name.substr(0, slash));
    series->method =
        slash == absl::string_view::npos ? "" : std::string(name.substr(slash + 1));
    series->type = TypeName(type);
    const prometheus::Labels labels = With(
        const_labels_, {{"grpc_service", series->service},
                        {"grpc_method", series->method},
                        {"grpc_type", series->type}});
    series->started = &started_.Add(labels);
    series->handling = &handling_.Add(
        labels, prometheus::Histogram::BucketBoundaries{
                    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10});
    slot = std::move(series);
  }
  return slot.get();
}

prometheus::Counter* ServerMetricsInterceptorFactory::HandledFor(
    MethodSeries* series, int code) {
  absl::MutexLock l(&mu_);
  prometheus::Counter*& c = handled_series_[{series, code}];
  if (c == nullptr) {
    c = &handled_.Add(With(const_labels_, {{"grpc_service", series->service},
                                           {"grpc_method", series->method},
                                           {"grpc_type", series->type},
                                           {"grpc_code", CodeName(code)}}));
  }
  return c;
}

grpc::experimental::Interceptor*
ServerMetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  grpc::internal::RpcMethod::RpcType type = grpc::internal::RpcMethod::NORMAL_RPC;
  switch (info->type()) {
    case grpc::experimental::ServerRpcInfo::Type::UNARY:
      type = grpc::internal::RpcMethod::NORMAL_RPC;
      break;
    case grpc::experimental::ServerRpcInfo::Type::CLIENT_STREAMING:
      type = grpc::internal::RpcMethod::CLIENT_STREAMING;
      break;
    case grpc::experimental::ServerRpcInfo::Type::SERVER_STREAMING:
      type = grpc::internal::RpcMethod::SERVER_STREAMING;
      break;
    case grpc::experimental::ServerRpcInfo::Type::BIDI_STREAMING:
      type = grpc::internal::RpcMethod::BIDI_STREAMING;
      break;
  }
  return new ServerMetricsInterceptor(this, SeriesFor(info->method(), type));
}

}  // namespace cellar::common
