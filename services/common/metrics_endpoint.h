#ifndef CELLAR_SERVICES_COMMON_METRICS_ENDPOINT_H_
#define CELLAR_SERVICES_COMMON_METRICS_ENDPOINT_H_

// Serves a prometheus::Registry at http://<address>/metrics on its own
// port. Note: stopping it takes up to ~2 s (civetweb); tests share one.

#include <memory>
#include <string>
#include <vector>

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"

namespace cellar::common {

class MetricsEndpoint {
 public:
  // Listens on `address` ("127.0.0.1:0" picks a free port). UNAVAILABLE if
  // it cannot listen.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      const std::string& address, std::shared_ptr<prometheus::Registry> registry);

  int port() const { return port_; }

  // Also serves `collectable` (kept alive by the endpoint).
  void Add(std::shared_ptr<prometheus::Collectable> collectable);

 private:
  MetricsEndpoint() = default;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
  std::vector<std::shared_ptr<prometheus::Collectable>> extra_;
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_METRICS_ENDPOINT_H_
