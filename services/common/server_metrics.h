#ifndef CELLAR_SERVICES_COMMON_SERVER_METRICS_H_
#define CELLAR_SERVICES_COMMON_SERVER_METRICS_H_

// gRPC server metrics from one interceptor, the same on every process:
//   grpc_server_started_total{grpc_service,grpc_method,grpc_type}
//   grpc_server_handled_total{grpc_service,grpc_method,grpc_type,grpc_code}
//   grpc_server_handling_seconds{grpc_service,grpc_method,grpc_type}
//     (histogram, buckets from 50 us to 10 s)
// Families are registered once per registry, in the factory's constructor.
// Thread-safe.

#include <memory>
#include <string>

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace cellar::common {

class ServerMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `registry` must outlive the factory (and the server using it).
  // `const_labels` (e.g. version, track) are added to every series.
  ServerMetricsInterceptorFactory(prometheus::Registry& registry,
                                  const prometheus::Labels& const_labels);

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

  // Per-method series, created on first use and cached.
  struct MethodSeries {
    prometheus::Counter* started;
    prometheus::Histogram* handling;
    std::string service;
    std::string method;
    std::string type;
  };
  MethodSeries* SeriesFor(const char* full_method,
                          grpc::internal::RpcMethod::RpcType type);
  prometheus::Counter* HandledFor(MethodSeries* series, int code);

 private:
  prometheus::Labels const_labels_;
  prometheus::Family<prometheus::Counter>& started_;
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Histogram>& handling_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<MethodSeries>> series_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::pair<MethodSeries*, int>, prometheus::Counter*>
      handled_series_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_SERVER_METRICS_H_
