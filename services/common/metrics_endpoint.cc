#include "services/common/metrics_endpoint.h"

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"

namespace cellar::common {

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry) {
  auto endpoint = std::unique_ptr<MetricsEndpoint>(new MetricsEndpoint);
  try {
    endpoint->exposer_ = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics endpoint cannot listen on ", address, ": ", e.what()));
  }
  endpoint->exposer_->RegisterCollectable(registry);
  const std::vector<int> ports = endpoint->exposer_->GetListeningPorts();
  endpoint->port_ = ports.empty() ? 0 : ports.front();
  return endpoint;
}

void MetricsEndpoint::Add(std::shared_ptr<prometheus::Collectable> collectable) {
  exposer_->RegisterCollectable(collectable);
  extra_.push_back(std::move(collectable));
}

}  // namespace cellar::common
