// cellar-load: drives a running cellar cluster on loopback for a bounded
// time (see load_generator.h), then prints one line of results.
//
//   cellar-load --master=127.0.0.1:17100 --admin=127.0.0.1:17300 --duration=20s
//
// Exit codes: 0 commits and loads succeeded; 1 the run failed, nothing
// committed, or unexpected errors exceeded --max_error_ratio of the
// operations (a healthy cluster has none); 2 bad flags (non-loopback
// address); 3 the run overran its time bound (a watchdog ends the process).

#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "tools/prometheus/load_generator.h"

ABSL_FLAG(std::string, master, "127.0.0.1:7100", "Primary master address (loopback only)");
ABSL_FLAG(std::string, admin, "", "Admin address (loopback only); empty: no Admin calls");
ABSL_FLAG(std::string, cluster, "cellar", "Cluster name");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(20), "How long to run");
ABSL_FLAG(int, threads, 4, "Worker threads (one client session each)");
ABSL_FLAG(int, hot_objects, 16, "Objects of the shared hot set");
ABSL_FLAG(int, stale_every, 10, "Every N-th update uses a stale serial (0: never)");
ABSL_FLAG(double, max_error_ratio, 0.01,
          "Fail if unexpected errors (not conflicts, not NOT_FOUND of missing objects) "
          "exceed this share of operations");

namespace {

bool IsLoopback(const std::string& address) {
  return absl::StartsWith(address, "127.") || absl::StartsWith(address, "localhost:") ||
         absl::StartsWith(address, "[::1]:");
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("cellar-load: bounded load on a loopback cellar cluster");
  absl::ParseCommandLine(argc, argv);
  cellar::tools::LoadOptions options;
  options.master_address = absl::GetFlag(FLAGS_master);
  options.admin_address = absl::GetFlag(FLAGS_admin);
  options.cluster_name = absl::GetFlag(FLAGS_cluster);
  options.duration = absl::GetFlag(FLAGS_duration);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.hot_objects = absl::GetFlag(FLAGS_hot_objects);
  options.stale_every = absl::GetFlag(FLAGS_stale_every);
  if (!IsLoopback(options.master_address) ||
      (!options.admin_address.empty() && !IsLoopback(options.admin_address))) {
    std::cerr << "cellar-load: addresses must be on loopback (127.x, localhost, [::1])\n";
    return 2;
  }

  // Whatever happens, the process ends: duration + connect + one RPC
  // timeout per thread, with room to spare.
  const absl::Duration bound =
      options.duration + 4 * options.rpc_timeout + absl::Seconds(10);
  std::thread([bound] {
    absl::SleepFor(bound);
    std::cerr << "cellar-load: still running after " << bound << ", giving up\n";
    _exit(3);
  }).detach();

  std::cout << "cellar-load: " << options.threads << " threads on " << options.master_address
            << (options.admin_address.empty() ? "" : " + admin " + options.admin_address)
            << " for " << options.duration << std::endl;
  absl::StatusOr<cellar::tools::LoadReport> report = cellar::tools::RunLoad(options);
  if (!report.ok()) {
    std::cerr << "cellar-load: " << report.status() << "\n";
    return 1;
  }
  const cellar::tools::LoadReport& r = *report;
  std::cout << "cellar-load: " << cellar::tools::FormatReport(r) << std::endl;
  if (r.commits <= 1 || r.loads == 0) {
    std::cerr << "cellar-load: FAILED: nothing committed or loaded\n";
    return 1;
  }
  const double ops = static_cast<double>(r.commits + r.conflicts + r.commit_errors + r.loads +
                                         r.admin_calls);
  const uint64_t errors = r.commit_errors + r.load_errors + r.admin_errors;
  if (errors > absl::GetFlag(FLAGS_max_error_ratio) * ops) {
    std::cerr << "cellar-load: FAILED: " << errors << " unexpected errors in " << ops
              << " operations (more than " << 100 * absl::GetFlag(FLAGS_max_error_ratio)
              << "%): the cluster is not healthy under load\n";
    return 1;
  }
  return 0;
}
