// cellar-admin: the operator API of one or more cellar clusters.
// Flags -> AdminServerOptions -> Start -> wait for SIGINT/SIGTERM.

#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "services/admin/admin_server.h"
#include "services/admin/cluster_clients.h"
#include "services/common/auth_flags.h"
#include "services/common/metrics_endpoint.h"
#include "services/common/signals.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7300", "gRPC listen address (host:port)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9300",
          "Prometheus /metrics address; empty disables it");
ABSL_FLAG(std::string, master, "127.0.0.1:7100",
          "Master address(es) of the single cluster, comma-separated (ignored with --clusters)");
ABSL_FLAG(std::string, cluster_name, "cellar",
          "Name of the single cluster given by --master (ignored with --clusters)");
ABSL_FLAG(std::string, clusters, "",
          "Clusters to serve and watch: name=host:port[;host:port],name2=...; the first is "
          "the default. Overrides --master/--cluster_name.");
ABSL_FLAG(absl::Duration, monitor_period, absl::Seconds(2),
          "How often the monitor polls every cluster (0 disables the monitor)");
ABSL_FLAG(absl::Duration, rpc_timeout, absl::Seconds(5),
          "Deadline of each call to a master or storage");
ABSL_FLAG(absl::Duration, not_running_grace, absl::Seconds(30),
          "cluster-not-running/-operational alerts wait this long");
ABSL_FLAG(absl::Duration, out_of_date_threshold, absl::Minutes(10),
          "cell-out-of-date: a cell OUT_OF_DATE for longer than this");
ABSL_FLAG(absl::Duration, clock_skew_threshold, absl::Seconds(1),
          "clock-skew: skew above this (critical above 10x)");
ABSL_FLAG(std::string, track, "stable", "Deployment track: stable, canary or shadow");

int main(int argc, char** argv) {
  cellar::common::BlockTerminationSignals();
  absl::SetProgramUsageMessage("cellar-admin: operator API of cellar clusters");
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil checks every Mutex operation for lock-order cycles:
  // 12 % of a commit's instructions (docs/performance.md). Tests keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  cellar::admin::AdminServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  if (!absl::GetFlag(FLAGS_clusters).empty()) {
    auto clusters = cellar::admin::ParseClusterList(absl::GetFlag(FLAGS_clusters));
    if (!clusters.ok()) {
      std::cerr << "cellar-admin: --" << clusters.status().message() << "\n";
      return 2;
    }
    options.admin.clusters = *std::move(clusters);
  } else {
    options.admin.master_addresses =
        absl::StrSplit(absl::GetFlag(FLAGS_master), ',', absl::SkipEmpty());
    options.admin.cluster_name = absl::GetFlag(FLAGS_cluster_name);
  }
  options.admin.rpc_timeout = absl::GetFlag(FLAGS_rpc_timeout);
  options.admin.monitor.period = absl::GetFlag(FLAGS_monitor_period);
  options.admin.monitor.rules.not_running_grace = absl::GetFlag(FLAGS_not_running_grace);
  options.admin.monitor.rules.out_of_date_threshold = absl::GetFlag(FLAGS_out_of_date_threshold);
  options.admin.monitor.rules.clock_skew_threshold = absl::GetFlag(FLAGS_clock_skew_threshold);
  options.track = absl::GetFlag(FLAGS_track);
  options.auth = cellar::common::AuthSetupFromFlagsOrExit("cellar-admin");
  auto registry = std::make_shared<prometheus::Registry>();
  auto admin = cellar::admin::AdminServer::Start(options, registry);
  if (!admin.ok()) {
    std::cerr << "cellar-admin: " << admin.status() << "\n";
    return 1;
  }
  std::unique_ptr<cellar::common::MetricsEndpoint> metrics;
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    auto endpoint =
        cellar::common::MetricsEndpoint::Start(
            cellar::common::MetricsOptionsFor(absl::GetFlag(FLAGS_metrics_listen), options.auth),
            registry);
    if (!endpoint.ok()) {
      std::cerr << "cellar-admin: " << endpoint.status() << "\n";
      return 1;
    }
    metrics = *std::move(endpoint);
    metrics->Add((*admin)->collector());
  }
  std::cout << "cellar-admin: serving on " << (*admin)->address();
  if (metrics) std::cout << " (metrics on port " << metrics->port() << ")";
  std::cout << std::endl;
  cellar::common::WaitForTerminationSignal();
  (*admin)->Shutdown();
  cellar::common::ExitAfterShutdown(0);
}
