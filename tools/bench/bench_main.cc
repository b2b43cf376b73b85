// The cellar benchmark: cellar (client library -> in-process cluster) on
// SQLite and PostgreSQL against raw PostgreSQL (and raw SQLite), on this
// machine. See tools/bench/bench.h and docs/performance.md.
//
//   tools/bench/run                                   # defaults, both backends
//   bazel run //tools/bench:bench -- --backends=sqlite --seconds=2 --json=/tmp/b.json
//
// Prints a table to stdout and progress to stderr. Exit status: 0 when
// everything ran without an error (targets are reported, not enforced),
// 1 on bad flags or set-up failures, 2 when an operation or a read-back
// check failed.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "services/common/logging.h"
#include "tools/bench/bench.h"
#include "tools/bench/security_bench.h"

ABSL_FLAG(std::string, mode, "perf",
          "perf: cellar against raw PostgreSQL (the default); security: CPU per commit and "
          "per load with TLS + tokens against plaintext without auth (SQLite); flood: a "
          "client's p50/p99 while another token floods at a multiple of the rate limit "
          "(SQLite). See docs/performance.md");
ABSL_FLAG(std::string, flood_client_options, "",
          "--mode=flood_client (started by --mode=flood, not by hand): client A's options file");
ABSL_FLAG(int, security_rounds, 2,
          "--mode=security: rounds of (plaintext, secured) runs, alternating order");
ABSL_FLAG(double, rate_limit, 200, "--mode=flood: calls/s per token on every node");
ABSL_FLAG(double, rate_limit_burst, 0, "--mode=flood: bucket size (0: 2 x --rate_limit)");
ABSL_FLAG(double, flood_factor, 10,
          "--mode=flood: client A offers this multiple of --rate_limit to every node");
ABSL_FLAG(int, flood_clients, 32,
          "--mode=flood: client A's concurrent clients, for loads and for commits each");
ABSL_FLAG(std::string, flood_ops, "loads,commits",
          "--mode=flood: what client A floods with (loads, commits or both)");
ABSL_FLAG(int, flood_objects, 2000,
          "--mode=flood: objects written (by client B, within its rate limit) for the loads");
ABSL_FLAG(double, steady_loads, 50, "--mode=flood: client B's loads per second");
ABSL_FLAG(double, steady_commits, 10, "--mode=flood: client B's commits per second");
ABSL_FLAG(double, flood_seconds, 15,
          "--mode=flood: measured seconds of each phase (A idle, A flooding)");
ABSL_FLAG(std::string, backends, "sqlite,postgresql",
          "Comma-separated storage backends to benchmark (sqlite, postgresql)");
ABSL_FLAG(int, storages, 2, "Storage nodes per cluster");
ABSL_FLAG(uint32_t, replicas, 1, "Replicas (copies = replicas + 1)");
ABSL_FLAG(uint32_t, partitions, 12, "Partitions");
ABSL_FLAG(double, seconds, 5, "Measured seconds per scenario");
ABSL_FLAG(double, warmup, 1, "Warm-up seconds before each scenario");
ABSL_FLAG(std::string, pg, "",
          "libpq conninfo of an existing PostgreSQL server (superuser) to use instead of "
          "starting a throwaway one");
ABSL_FLAG(bool, raw_pg, true, "Measure the raw PostgreSQL baseline (libpq)");
ABSL_FLAG(bool, raw_sqlite, true, "Also measure a raw SQLite baseline");
ABSL_FLAG(int, pg_writer_threads, 4, "Group-commit writer threads per PostgreSQL storage");
ABSL_FLAG(int, clients, 16, "High concurrency level (tiny commits and loads)");
ABSL_FLAG(int, bulk_clients, 2, "Clients of the bulk scenario");
ABSL_FLAG(int, bulk_objects, 100, "Objects per bulk transaction");
ABSL_FLAG(int, object_bytes, 300, "Bytes per object");
ABSL_FLAG(int, load_objects, 20000, "Objects written before the load scenarios");
ABSL_FLAG(int, verify_sample, 200, "Objects read back after each write scenario");
ABSL_FLAG(std::string, tmp_dir, "", "Parent of the temporary SQLite directory ($TMPDIR)");
ABSL_FLAG(std::string, json, "", "Also write the rows as JSON to this file");
ABSL_FLAG(bool, verbose, false, "Show the cluster's INFO logs");

namespace {

// The 1-minute load average ("?" if unknown): other work on the machine
// skews every number, so the report shows it.
std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string first;
  if (!(in >> first)) return "?";
  return first;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "cellar benchmark: cellar on SQLite/PostgreSQL vs raw PostgreSQL on this machine");
  absl::ParseCommandLine(argc, argv);
  if (!absl::GetFlag(FLAGS_verbose)) {
    // A flooding client logs a warning for each abort the limit refused.
    cellar::common::SetMinLogSeverity(absl::GetFlag(FLAGS_mode) == "flood"
                                          ? cellar::common::LogSeverity::kError
                                          : cellar::common::LogSeverity::kWarning);
  }

  if (absl::GetFlag(FLAGS_mode) == "flood_client") {
    const absl::Status status =
        cellar::bench::RunFloodClient(absl::GetFlag(FLAGS_flood_client_options), std::cout);
    if (!status.ok()) std::cerr << "bench: flood client: " << status << std::endl;
    return status.ok() ? 0 : 1;
  }
  cellar::bench::BenchOptions options;
  options.argv0 = std::filesystem::absolute(argv[0]).string();  // the nodes run elsewhere
  options.mode = absl::GetFlag(FLAGS_mode);
  options.security_rounds = absl::GetFlag(FLAGS_security_rounds);
  cellar::bench::FloodOptions& flood = options.flood;
  flood.rate_limit = absl::GetFlag(FLAGS_rate_limit);
  flood.rate_limit_burst = absl::GetFlag(FLAGS_rate_limit_burst);
  flood.factor = absl::GetFlag(FLAGS_flood_factor);
  flood.flood_clients = absl::GetFlag(FLAGS_flood_clients);
  flood.objects = absl::GetFlag(FLAGS_flood_objects);
  flood.a_loads = absl::StrContains(absl::GetFlag(FLAGS_flood_ops), "loads");
  flood.a_commits = absl::StrContains(absl::GetFlag(FLAGS_flood_ops), "commits");
  flood.b_loads_per_s = absl::GetFlag(FLAGS_steady_loads);
  flood.b_commits_per_s = absl::GetFlag(FLAGS_steady_commits);
  flood.duration = absl::Seconds(absl::GetFlag(FLAGS_flood_seconds));
  flood.warmup = absl::Seconds(absl::GetFlag(FLAGS_warmup));
  options.backends = absl::StrSplit(absl::GetFlag(FLAGS_backends), ',', absl::SkipEmpty());
  options.storages = absl::GetFlag(FLAGS_storages);
  options.replicas = absl::GetFlag(FLAGS_replicas);
  options.partitions = absl::GetFlag(FLAGS_partitions);
  options.pg_conninfo = absl::GetFlag(FLAGS_pg);
  options.raw_pg = absl::GetFlag(FLAGS_raw_pg);
  options.raw_sqlite = absl::GetFlag(FLAGS_raw_sqlite);
  options.pg_writer_threads = absl::GetFlag(FLAGS_pg_writer_threads);
  options.tmp_dir = absl::GetFlag(FLAGS_tmp_dir);
  cellar::bench::WorkloadOptions& w = options.workload;
  w.duration = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  w.warmup = absl::Seconds(absl::GetFlag(FLAGS_warmup));
  w.high_clients = absl::GetFlag(FLAGS_clients);
  w.bulk_clients = absl::GetFlag(FLAGS_bulk_clients);
  w.bulk_objects = absl::GetFlag(FLAGS_bulk_objects);
  w.object_bytes = absl::GetFlag(FLAGS_object_bytes);
  w.load_objects = absl::GetFlag(FLAGS_load_objects);
  w.verify_sample = absl::GetFlag(FLAGS_verify_sample);

  const std::string load_before = LoadAverage();
  absl::StatusOr<cellar::bench::BenchResult> result =
      cellar::bench::RunBench(options, std::cerr);
  const std::string load_after = LoadAverage();
  if (!result.ok()) {
    std::cerr << "bench: " << result.status() << std::endl;
    return 1;
  }
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  const double ram_gib = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) *
                         static_cast<double>(::sysconf(_SC_PAGE_SIZE)) / (1 << 30);
  std::cout << "\nmachine: " << cpus << " CPUs, " << static_cast<int>(ram_gib + 0.5)
            << " GiB RAM; load average " << load_before << " before, " << load_after
            << " after; " << absl::GetFlag(FLAGS_storages) << " storages, "
            << absl::GetFlag(FLAGS_replicas) << " replica(s), " << absl::GetFlag(FLAGS_partitions)
            << " partitions; " << absl::GetFlag(FLAGS_seconds) << " s per scenario after "
            << absl::GetFlag(FLAGS_warmup) << " s warm-up\n\n";
  cellar::bench::PrintTable(result->rows, result->targets, std::cout);
  if (!result->summary.empty()) std::cout << "\n" << result->summary;
  for (const std::string& failure : result->failures) {
    std::cout << "NOT RUN: " << failure << "\n";
  }
  std::cout << std::flush;

  const std::string json_path = absl::GetFlag(FLAGS_json);
  if (!json_path.empty()) {
    std::ofstream out(json_path, std::ios::trunc);
    out << cellar::bench::ToJson(result->rows);
    out.close();
    if (!out) {
      std::cerr << "bench: cannot write " << json_path << std::endl;
      return 1;
    }
    std::cerr << "[bench] wrote " << json_path << std::endl;
  }
  if (!result->failures.empty()) return 1;
  return result->errors > 0 ? 2 : 0;
}
