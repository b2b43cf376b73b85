#ifndef CELLAR_SERVICES_COMMON_METRICS_ENDPOINT_H_
#define CELLAR_SERVICES_COMMON_METRICS_ENDPOINT_H_

// Serves a prometheus::Registry at http://<address>/metrics on its own
// port, optionally behind HTTP basic auth whose password is a cellar token
// (docs/security.md). No TLS: Debian's civetweb 1.15 cannot load OpenSSL 3
// (it looks up SSL_get_peer_certificate, gone in 3.0). Note: stopping it
// takes up to ~2 s (civetweb); tests share one.

#include <memory>
#include <string>
#include <vector>

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "services/common/authenticator.h"

namespace cellar::common {

struct MetricsEndpointOptions {
  // Where to listen ("127.0.0.1:0" picks a free port). Required.
  std::string address;
  // Non-null: every scrape needs HTTP basic auth whose password is a token
  // this authenticator accepts with role readonly, admin or node (the user
  // name is not checked); anything else gets 401. Null: open. Default null.
  std::shared_ptr<const Authenticator> authenticator;
};

class MetricsEndpoint {
 public:
  // Listens as `options` say. UNAVAILABLE if it cannot listen.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      const MetricsEndpointOptions& options, std::shared_ptr<prometheus::Registry> registry);
  // Plain HTTP, open.
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

// The metrics port of a process with this authentication setup.
MetricsEndpointOptions MetricsOptionsFor(const std::string& address, const AuthSetup& auth);

// Whether a basic-auth password may scrape: a token `authenticator` knows
// with role readonly, admin or node.
bool MayScrapeMetrics(const Authenticator& authenticator, const std::string& password);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_METRICS_ENDPOINT_H_
