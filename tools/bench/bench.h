#ifndef CELLAR_TOOLS_BENCH_BENCH_H_
#define CELLAR_TOOLS_BENCH_BENCH_H_

// The cellar benchmark (`bazel run //tools/bench:bench`, `tools/bench/run`):
// for each backend it starts a LocalCluster (master + storages + admin in
// this process, port 0) and runs the cellar scenarios (cellar_scenarios.h)
// through the client library; in the same run it measures the raw
// baselines (raw_baselines.h) on the same PostgreSQL server (and SQLite
// file system), attaches the raw PostgreSQL numbers as the baseline of
// every cellar row and evaluates the targets (report.h).
//
// PostgreSQL: one database per storage plus one for the raw baseline, on
// ONE server: a ThrowawayPostgres started and stopped here (fsync on),
// unless `pg_conninfo` names an existing server (its databases
// cellar_bench_<pid>_* are created and dropped again).
// SQLite: files in a temporary directory, removed at the end.
//
// --mode=security and --mode=flood run the security measurements instead
// (security_bench.h), on SQLite only, without the raw baselines.
//
// Thread-safety: RunBench blocks; one at a time per process.

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/bench/report.h"
#include "tools/bench/runner.h"
#include "tools/bench/security_bench.h"

namespace cellar::bench {

struct BenchOptions {
  // "perf" (default: the scenarios and baselines above), "security" (CPU
  // of auth + TLS against plaintext) or "flood" (rate limits under a flood).
  std::string mode = "perf";
  // --mode=security: rounds of (plaintext, secured) runs. Default 2.
  int security_rounds = 2;
  // --mode=flood's shape.
  FloodOptions flood;
  // argv[0]: --mode=security and flood find the node binaries in its
  // runfiles (or bazel-bin). Default "".
  std::string argv0;
  // Storage backends to run the cellar scenarios on, in order
  // ("sqlite", "postgresql"). Default both.
  std::vector<std::string> backends = {"sqlite", "postgresql"};
  // Cluster shape (defaults 2 storages, 1 replica = 2 copies, 12 partitions).
  int storages = 2;
  uint32_t replicas = 1;
  uint32_t partitions = 12;
  // Group-commit writer threads per storage (defaults: 4 on PostgreSQL,
  // 1 on SQLite, which has a single writer anyway).
  int pg_writer_threads = 4;
  int sqlite_writer_threads = 1;
  // libpq conninfo of an existing server (a superuser: databases are
  // created). Default "": start a throwaway server.
  std::string pg_conninfo;
  // Run the raw PostgreSQL baseline (default true; needs a server: one is
  // started even for --backends=sqlite) and the raw SQLite one (default true).
  bool raw_pg = true;
  bool raw_sqlite = true;
  // Parent of the temporary directory for SQLite files. Default "": $TMPDIR
  // or /tmp.
  std::string tmp_dir;
  WorkloadOptions workload;
};

struct BenchResult {
  // Cellar rows (per backend, in scenario order), then the raw rows.
  std::vector<BenchRow> rows;
  std::vector<TargetCheck> targets;
  // Total number of errors over every row (must be 0).
  uint64_t errors = 0;
  // Parts that could not run at all (a backend's cluster didn't start, a
  // baseline's database couldn't be created), with the reason. The other
  // parts still ran.
  std::vector<std::string> failures;
  // The readable result of --mode=security / flood ("" otherwise), printed
  // after the rows.
  std::string summary;
};

// Runs everything; progress lines ("[bench] ...") go to `progress`.
// Fails on bad options or when the PostgreSQL server can't be started; a
// backend or baseline that can't be set up is listed in `failures` and the
// rest still runs; failed operations are counted in the rows.
absl::StatusOr<BenchResult> RunBench(const BenchOptions& options, std::ostream& progress);

}  // namespace cellar::bench

#endif  // CELLAR_TOOLS_BENCH_BENCH_H_
