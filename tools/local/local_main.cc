// cellar local: master + storages + admin in one process, on SQLite files
// in --data_dir (or PostgreSQL with --postgres). Runs in the foreground
// until Ctrl-C. Started by `tools/cellar local`, which maps --data-dir
// style flags to these.

#include <arpa/inet.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "services/common/logging.h"
#include "services/master/canary_analysis.h"
#include "services/master/flag_registry.h"
#include "services/common/signals.h"
#include "tools/credentials/throwaway_credentials.h"
#include "tools/local/local_cluster.h"

ABSL_FLAG(std::string, data_dir, "./cellar-data",
          "Where the storages keep their SQLite files (storage-<i>.db)");
ABSL_FLAG(int, storages, 3, "Number of storage nodes");
ABSL_FLAG(int, canary_storages, 0,
          "More storages, on track canary (0..8): added once the cluster runs, they hold "
          "extra cells only and the master's canary analysis compares them with the "
          "stable ones (docs/rollouts.md)");
ABSL_FLAG(double, canary_fault_load_error_ratio, 0,
          "Share (0..1) of the canary storages' object loads that fail: a bad canary on "
          "purpose (cellar-storage --fault_load_error_ratio; demonstrations only)");
ABSL_FLAG(absl::Duration, canary_analysis_interval, absl::Minutes(1),
          "The master's canary analysis interval (cellar-master's flag of the same name); "
          "must be positive");
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
ABSL_FLAG(std::string, initial_feature_flags, "",
          "Feature flags the master creates when absent (cellar-master's flag of the same "
          "name; docs/rollouts.md)");
ABSL_FLAG(bool, secure, false,
          "Tokens, cluster secret and TLS on every port, with throwaway credentials "
          "made once under <data_dir>/secure (a CA, certificates, one token per role); "
          "metrics need a readonly token as basic-auth password");

namespace {

// <data_dir>/secure with the throwaway credentials, made on the first
// --secure start and kept (tokens stay valid across restarts).
absl::StatusOr<std::string> PrepareSecureDir(const std::string& data_dir,
                                             const std::string& host) {
  const std::string dir = data_dir + "/secure";
  if (std::system(("mkdir -p '" + dir + "' && chmod 700 '" + dir + "'").c_str()) != 0) {
    return absl::InternalError("cannot create " + dir);
  }
  if (!cellar::tools::HasThrowawayAuth(dir)) {
    std::cout << "cellar local: --secure: writing tokens and the cluster secret to " << dir
              << std::endl;
    absl::Status s = cellar::tools::WriteThrowawayAuth(dir, "cellar local");
    if (!s.ok()) return s;
  } else if (absl::Status s = cellar::tools::AddMissingThrowawayTokens(dir, "cellar local");
             !s.ok()) {
    return s;
  }
  if (!cellar::tools::HasThrowawayTls(dir)) {
    std::cout << "cellar local: --secure: making a CA and certificates in " << dir
              << "/tls (openssl)" << std::endl;
    std::vector<std::string> sans;
    in_addr ip{};
    if (host != "0.0.0.0" && inet_pton(AF_INET, host.c_str(), &ip) == 1) {
      sans.push_back("IP:" + host);
    }
    absl::Status s = cellar::tools::WriteThrowawayTls(dir, sans);
    if (!s.ok()) return s;
  }
  return dir;
}

void PrintSecureUsage(const std::string& dir, const std::string& master, const std::string& admin,
                      const std::string& host, int master_metrics_port) {
  std::cout << "Credentials in " << dir
            << " (tokens: client.token, reader.token, readonly.token, admin.token;"
            << " CA: tls/ca.pem):\n"
            << "  tools/grpcurl -cacert " << dir << "/tls/ca.pem -H \"authorization: Bearer $(cat "
            << dir << "/admin.token)\" -d '{}' " << admin
            << " cellar.v1.Admin/GetClusterStatus\n"
            << "  tools/cellarctl/run --master " << master << " --admin " << admin
            << " --tls-ca " << dir
            << "/tls/ca.pem --token-file " << dir << "/admin.token status\n";
  if (master_metrics_port != 0) {
    std::cout << "  curl -u \"prometheus:$(cat " << dir << "/readonly.token)\" http://" << host
              << ":" << master_metrics_port << "/metrics\n";
  }
}

}  // namespace

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
  options.canary_storages = absl::GetFlag(FLAGS_canary_storages);
  options.canary_fault_load_error_ratio = absl::GetFlag(FLAGS_canary_fault_load_error_ratio);
  options.replicas = absl::GetFlag(FLAGS_replicas);
  options.partitions = absl::GetFlag(FLAGS_partitions);
  options.cluster_name = absl::GetFlag(FLAGS_cluster_name);
  {
    auto initial = cellar::master::ParseInitialFeatureFlags(
        absl::GetFlag(FLAGS_initial_feature_flags));
    if (!initial.ok()) {
      std::cerr << "cellar local: --initial_feature_flags: " << initial.status().message()
                << "\n";
      return 2;
    }
    cellar::master::CanaryThresholds canary;
    canary.interval = absl::GetFlag(FLAGS_canary_analysis_interval);
    if (absl::Status s = cellar::master::CanaryAnalysis::ValidateThresholds(canary); !s.ok()) {
      std::cerr << "cellar local: --canary_analysis_interval: " << s.message() << "\n";
      return 2;
    }
    options.master_options = [flags = *std::move(initial), canary](
                                 cellar::master::MasterServerOptions* o) {
      o->initial_feature_flags = flags;
      o->canary = canary;
    };
  }
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

  if (absl::Status s = cellar::tools::LocalCluster::ValidateOptions(options); !s.ok()) {
    std::cerr << "cellar local: invalid flags: " << s.message() << "\n";
    return 2;
  }

  std::string secure_dir;
  if (absl::GetFlag(FLAGS_secure)) {
    absl::StatusOr<std::string> dir = PrepareSecureDir(options.data_dir, host);
    if (!dir.ok()) {
      std::cerr << "cellar local: --secure: " << dir.status() << std::endl;
      return 1;
    }
    secure_dir = *dir;
    absl::StatusOr<cellar::common::AuthSetup> auth = cellar::tools::ThrowawayAuthSetup(secure_dir);
    if (!auth.ok()) {
      std::cerr << "cellar local: --secure: " << auth.status() << std::endl;
      return 1;
    }
    options.auth = *std::move(auth);
    options.auth.metrics_auth = true;
  }

  std::cout << "cellar local: starting " << options.storages << " storages"
            << (options.canary_storages == 0
                    ? std::string()
                    : absl::StrCat(" and ", options.canary_storages, " canary storage",
                                   options.canary_storages == 1 ? "" : "s"))
            << " ("
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
  std::cout << "cellar local: cluster \"" << options.cluster_name << "\" is RUNNING"
            << (secure_dir.empty() ? "" : " (secure: TLS and tokens on every port)") << "\n"
            << "  master   " << c.master_address();
  if (c.master_metrics_port()) std::cout << "   metrics http://" << host << ":" << c.master_metrics_port() << "/metrics";
  std::cout << "\n";
  for (int i = 0; i < c.num_storages(); ++i) {
    std::cout << "  storage  " << c.storage_address(i) << " (S" << (c.storage_node_id(i) & 0xffffff)
              << (c.storage_is_canary(i) ? ", track canary" : "") << ")";
    if (c.storage_metrics_port(i)) {
      std::cout << "   metrics http://" << host << ":" << c.storage_metrics_port(i) << "/metrics";
    }
    std::cout << "\n";
  }
  std::cout << "  admin    " << c.admin_address();
  if (c.admin_metrics_port()) std::cout << "   metrics http://" << host << ":" << c.admin_metrics_port() << "/metrics";
  std::cout << "\n";
  if (!c.added_canaries().empty()) {
    std::cout << "  canary storages added (PT_ADD):";
    for (uint32_t id : c.added_canaries()) std::cout << " S" << (id & 0xffffff);
    std::cout << "; their extra cells catch up from the stable storages\n";
  }
  if (options.canary_storages > 0) {
    std::cout << "  canary analysis every " << absl::FormatDuration(
                     absl::GetFlag(FLAGS_canary_analysis_interval))
              << (options.canary_fault_load_error_ratio == 0
                      ? std::string()
                      : absl::StrCat("; FAULT INJECTION: ",
                                     options.canary_fault_load_error_ratio,
                                     " of the canary loads fail"))
              << ": tools/cellarctl/run canary status\n";
  }
  if (secure_dir.empty()) {
    std::cout << "Try: tools/cellarctl/run status";
  } else {
    PrintSecureUsage(secure_dir, c.master_address(), c.admin_address(), host,
                     c.master_metrics_port());
    std::cout << "Try the commands above";
  }
  std::cout << "    (Ctrl-C stops the cluster; data stays in " << options.data_dir << ")"
            << std::endl;

  cellar::common::WaitForTerminationSignal();
  std::cout << "cellar local: stopping..." << std::endl;
  c.Shutdown();
  std::cout << "cellar local: stopped" << std::endl;
  return 0;
}
