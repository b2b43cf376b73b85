// cellar-master: the primary master of a cellar cluster.
// Flags -> MasterServerOptions -> Start -> wait for SIGINT/SIGTERM.

#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/clock.h"
#include "services/common/clock.h"
#include "services/common/logging.h"
#include "services/common/metrics_endpoint.h"
#include "services/common/signals.h"
#include "services/master/master_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7100", "gRPC listen address (host:port)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9100",
          "Prometheus /metrics address; empty disables it");
ABSL_FLAG(std::string, cluster_name, "cellar", "Cluster name every node must present");
ABSL_FLAG(uint32_t, partitions, 12, "Partitions of a NEW cluster (kept from storage after)");
ABSL_FLAG(uint32_t, replicas, 1, "Replicas of a NEW cluster (copies = replicas + 1)");
ABSL_FLAG(uint32_t, autostart, 0,
          "Start a new cluster once this many storages joined (0: wait for an operator's "
          "StartCluster)");
ABSL_FLAG(std::string, track, "stable", "Deployment track: stable, canary or shadow");

int main(int argc, char** argv) {
  cellar::common::BlockTerminationSignals();
  absl::SetProgramUsageMessage("cellar-master: primary master of a cellar cluster");
  absl::ParseCommandLine(argc, argv);

  cellar::master::MasterServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.cluster.cluster_name = absl::GetFlag(FLAGS_cluster_name);
  options.cluster.num_partitions = absl::GetFlag(FLAGS_partitions);
  options.cluster.num_replicas = absl::GetFlag(FLAGS_replicas);
  options.cluster.autostart = absl::GetFlag(FLAGS_autostart);
  // Grows across restarts, so storages accept a restarted primary and
  // refuse a deposed one.
  options.cluster.epoch = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  options.track = absl::GetFlag(FLAGS_track);
  if (options.cluster.num_partitions == 0) {
    std::cerr << "cellar-master: --partitions must be at least 1\n";
    return 2;
  }

  auto registry = std::make_shared<prometheus::Registry>();
  auto master = cellar::master::MasterServer::Start(options,
                                                    cellar::common::RealClock::Get(), registry);
  if (!master.ok()) {
    std::cerr << "cellar-master: " << master.status() << "\n";
    return 1;
  }
  std::unique_ptr<cellar::common::MetricsEndpoint> metrics;
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    auto endpoint =
        cellar::common::MetricsEndpoint::Start(absl::GetFlag(FLAGS_metrics_listen), registry);
    if (!endpoint.ok()) {
      std::cerr << "cellar-master: " << endpoint.status() << "\n";
      return 1;
    }
    metrics = *std::move(endpoint);
    metrics->Add((*master)->collector());
  }
  std::cout << "cellar-master: serving cluster \"" << options.cluster.cluster_name << "\" on "
            << (*master)->address();
  if (metrics) std::cout << " (metrics on port " << metrics->port() << ")";
  std::cout << std::endl;

  const int sig = cellar::common::WaitForTerminationSignal();
  CELLAR_LOG(INFO) << "signal " << sig << ": shutting down";
  (*master)->Shutdown();
  return 0;
}
