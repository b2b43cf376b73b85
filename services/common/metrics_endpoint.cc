#include "services/common/metrics_endpoint.h"

#include <CivetServer.h>

#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace cellar::common {
namespace {

// civetweb's own error messages (why a start failed: "cannot load
// libssl", "cannot open certificate", ...), kept for the status message.
absl::Mutex civet_mu;
std::string* civet_last_error ABSL_GUARDED_BY(civet_mu) = nullptr;

int KeepCivetMessage(const struct mg_connection*, const char* message) {
  absl::MutexLock l(&civet_mu);
  if (civet_last_error == nullptr) civet_last_error = new std::string;
  *civet_last_error = message;
  return 1;  // handled: civetweb prints nothing itself
}

std::string TakeCivetMessage() {
  absl::MutexLock l(&civet_mu);
  if (civet_last_error == nullptr) return "";
  std::string message = std::move(*civet_last_error);
  civet_last_error->clear();
  return message;
}

}  // namespace

MetricsEndpointOptions MetricsOptionsFor(const std::string& address, const AuthSetup& auth) {
  MetricsEndpointOptions options;
  options.address = address;
  if (auth.metrics_auth) options.authenticator = auth.authenticator;
  return options;
}

bool MayScrapeMetrics(const Authenticator& authenticator, const std::string& password) {
  if (password.empty()) return false;
  absl::StatusOr<Role> role = authenticator.Identify(absl::StrCat("Bearer ", password));
  return role.ok() && (*role == Role::kReadonly || *role == Role::kAdmin || *role == Role::kNode);
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry) {
  MetricsEndpointOptions options;
  options.address = address;
  return Start(options, std::move(registry));
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const MetricsEndpointOptions& options, std::shared_ptr<prometheus::Registry> registry) {
  auto endpoint = std::unique_ptr<MetricsEndpoint>(new MetricsEndpoint);
  const std::vector<std::string> civet = {"listening_ports", options.address, "num_threads",
                                          "2"};
  static CivetCallbacks callbacks = [] {
    CivetCallbacks c;
    c.log_message = KeepCivetMessage;
    return c;
  }();
  TakeCivetMessage();
  try {
    endpoint->exposer_ = std::make_unique<prometheus::Exposer>(civet, &callbacks);
  } catch (const std::exception& e) {
    const std::string why = TakeCivetMessage();
    return absl::UnavailableError(absl::StrCat(
        "metrics endpoint cannot listen on ", options.address, ": ",
        why.empty() ? e.what() : why));
  }
  endpoint->exposer_->RegisterCollectable(registry);
  if (options.authenticator != nullptr) {
    endpoint->exposer_->RegisterAuth(
        [auth = options.authenticator](const std::string&, const std::string& password) {
          return MayScrapeMetrics(*auth, password);
        },
        "cellar metrics");
  }
  const std::vector<int> ports = endpoint->exposer_->GetListeningPorts();
  endpoint->port_ = ports.empty() ? 0 : ports.front();
  return endpoint;
}

void MetricsEndpoint::Add(std::shared_ptr<prometheus::Collectable> collectable) {
  exposer_->RegisterCollectable(collectable);
  extra_.push_back(std::move(collectable));
}

}  // namespace cellar::common
