// cellar local: master + storages + admin in one process, on SQLite files
// in --data_dir (or PostgreSQL with --postgres). Runs in the foreground
// until Ctrl-C. Started by `tools/cellar local`, which maps --data-dir
// style flags to these.

#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "services/common/logging.h"
#include "services/common/signals.h"
#include "tools/local/local_cluster.h"

ABSL_FLAG(std::string, data_dir, "./cellar-data",
          "Where the storages keep their SQLite files (storage-<i>.db)");
ABSL_FLAG(int, storages, 3, "Number of storage nodes");
ABSL_FLAG(uint32_t, replicas, 1, "Replicas of a new cluster (copies = replicas + 1)");
ABSL_FLAG(uint32_t, partitions, 12, "Partitions of a new cluster");
ABSL_FLAG(std::string, cluster_name, "cellar", "Cluster name");
ABSL_FLAG(std::string, host, "127.0.0.1", "Address every endpoint binds to");
ABSL_FLAG(int, master_port, 7100, "Master gRPC port");
ABSL_FLAG(int, storage_port, 7200, "First storage gRPC port (storage i: +i)");
ABSL_FLAG(int, admin_port, 7300, "Admin gRPC port");
ABSL_FLAG(int, master_metrics_port, 9100, "Master /metrics port (0: none)");
ABSL_FLAG(int, storage_metrics_port, 9200, "First storage /metrics port (0: none)");
ABSL_FLAG(int, admin_metrics_port, 9300, "Admin /metrics port (0: none)");
ABSL_FLAG(std::string, postgres, "",
          "Comma-separated PostgreSQL conninfos, one per storage, instead of SQLite");
ABSL_FLAG(bool, quiet, false, "Log warnings and errors only");

int main(int argc, char** argv) {
  cellar::common::BlockTerminationSignals();
  absl::SetProgramUsageMessage(
      "cellar local: a whole cellar cluster (master, storages, admin) in one process");
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_quiet)) {
    cellar::common::SetMinLogSeverity(cellar::common::LogSeverity::kWarning);
  }

  const std::string host = absl::GetFlag(FLAGS_host);
  cellar::tools::LocalClusterOptions options;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.storages = absl::GetFlag(FLAGS_storages);
  options.replicas = absl::GetFlag(FLAGS_replicas);
  options.partitions = absl::GetFlag(FLAGS_partitions);
  options.cluster_name = absl::GetFlag(FLAGS_cluster_name);
  options.master_listen = absl::StrCat(host, ":", absl::GetFlag(FLAGS_master_port));
  options.storage_host = host;
  options.storage_base_port = absl::GetFlag(FLAGS_storage_port);
  options.admin_listen = absl::StrCat(host, ":", absl::GetFlag(FLAGS_admin_port));
  if (absl::GetFlag(FLAGS_master_metrics_port) != 0) {
    options.master_metrics_listen =
        absl::StrCat(host, ":", absl::GetFlag(FLAGS_master_metrics_port));
  }
  if (absl::GetFlag(FLAGS_admin_metrics_port) != 0) {
    options.admin_metrics_listen = absl::StrCat(host, ":", absl::GetFlag(FLAGS_admin_metrics_port));
  }
  options.metrics_storage_base_port = absl::GetFlag(FLAGS_storage_metrics_port);
  if (!absl::GetFlag(FLAGS_postgres).empty()) {
    options.storage_backends = absl::StrSplit(absl::GetFlag(FLAGS_postgres), ',');
    options.writer_threads = 4;
  }

  std::cout << "cellar local: starting " << options.storages << " storages ("
            << (options.storage_backends.empty() ? "SQLite in " + options.data_dir
                                                 : std::string("PostgreSQL"))
            << "), " << options.partitions << " partitions, " << options.replicas
            << " replicas..." << std::endl;
  auto cluster = cellar::tools::LocalCluster::Start(options);
  if (!cluster.ok()) {
    std::cerr << "cellar local: " << cluster.status() << std::endl;
    return 1;
  }
  auto& c = **cluster;
  std::cout << "cellar local: cluster \"" << options.cluster_name << "\" is RUNNING\n"
            << "  master   " << c.master_address();
  if (c.master_metrics_port()) std::cout << "   metrics http://" << host << ":" << c.master_metrics_port() << "/metrics";
  std::cout << "\n";
  for (int i = 0; i < c.num_storages(); ++i) {
    std::cout << "  storage  " << c.storage_address(i) << " (S" << (c.storage_node_id(i) & 0xffffff)
              << ")";
    if (c.storage_metrics_port(i)) {
      std::cout << "   metrics http://" << host << ":" << c.storage_metrics_port(i) << "/metrics";
    }
    std::cout << "\n";
  }
  std::cout << "  admin    " << c.admin_address();
  if (c.admin_metrics_port()) std::cout << "   metrics http://" << host << ":" << c.admin_metrics_port() << "/metrics";
  std::cout << "\n"
            << "Try: tools/cellarctl/run status    (Ctrl-C stops the cluster; data stays in "
            << options.data_dir << ")" << std::endl;

  cellar::common::WaitForTerminationSignal();
  std::cout << "cellar local: stopping..." << std::endl;
  c.Shutdown();
  std::cout << "cellar local: stopped" << std::endl;
  return 0;
}
