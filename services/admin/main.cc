// cellar-admin: the operator API of a cellar cluster.
// Flags -> AdminServerOptions -> Start -> wait for SIGINT/SIGTERM.

#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "services/admin/admin_server.h"
#include "services/common/collector.h"
#include "services/common/metrics_endpoint.h"
#include "services/common/signals.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7300", "gRPC listen address (host:port)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9300",
          "Prometheus /metrics address; empty disables it");
ABSL_FLAG(std::string, master, "127.0.0.1:7100", "Master address(es), comma-separated");
ABSL_FLAG(std::string, track, "stable", "Deployment track: stable, canary or shadow");

int main(int argc, char** argv) {
  cellar::common::BlockTerminationSignals();
  absl::SetProgramUsageMessage("cellar-admin: operator API of a cellar cluster");
  absl::ParseCommandLine(argc, argv);

  cellar::admin::AdminServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.admin.master_addresses =
      absl::StrSplit(absl::GetFlag(FLAGS_master), ',', absl::SkipEmpty());
  options.track = absl::GetFlag(FLAGS_track);
  auto registry = std::make_shared<prometheus::Registry>();
  auto admin = cellar::admin::AdminServer::Start(options, registry);
  if (!admin.ok()) {
    std::cerr << "cellar-admin: " << admin.status() << "\n";
    return 1;
  }
  std::unique_ptr<cellar::common::MetricsEndpoint> metrics;
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    auto endpoint =
        cellar::common::MetricsEndpoint::Start(absl::GetFlag(FLAGS_metrics_listen), registry);
    if (!endpoint.ok()) {
      std::cerr << "cellar-admin: " << endpoint.status() << "\n";
      return 1;
    }
    metrics = *std::move(endpoint);
    metrics->Add(std::make_shared<cellar::common::CallbackCollector>(
        cellar::common::MetricLabels{{"version", options.version}, {"track", options.track}},
        [](cellar::common::MetricsBuilder& m) {
          m.Gauge("cellar_node_up", "1 while the process serves.", {{"role", "admin"}}, 1);
        }));
  }
  std::cout << "cellar-admin: serving on " << (*admin)->address();
  if (metrics) std::cout << " (metrics on port " << metrics->port() << ")";
  std::cout << std::endl;
  cellar::common::WaitForTerminationSignal();
  (*admin)->Shutdown();
  return 0;
}
