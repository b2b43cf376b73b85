#ifndef CELLAR_TOOLS_BENCH_SECURITY_BENCH_H_
#define CELLAR_TOOLS_BENCH_SECURITY_BENCH_H_

// The security measurements of the benchmark (issue 9), both on SQLite
// clusters in this process (bench_cluster.h):
//
// RunAuthTlsCost (--mode=security): the tiny-commit and uncached-load
// scenarios (cellar_scenarios.h, without bulk) on a plaintext cluster
// without auth and on a cluster with TLS, mTLS between nodes and tokens,
// in the same run, alternating (plain, secure, secure, plain, ...), each
// on a fresh cluster; prints the CPU of the whole process (clients and
// every node) per commit and per load of each, and secure / plain.
//
// RunFlood (--mode=flood): a secured cluster where every node limits each
// token to `rate_limit` calls/s. Client B (its own token) runs a steady
// light workload, paced (loads and commits at fixed rates, latency
// counted from the time each was due, so a late start counts). B's
// latency is measured first with client A idle, then while A (another
// token) offers `factor` x the limit to every node: commit attempts
// (each starts with Begin on the master) at factor x limit, and loads at
// factor x limit x storages (spread over the storages), from many
// concurrent clients. Prints B's p50/p99 in both phases and their ratio,
// and A's answers: how many were RESOURCE_EXHAUSTED and whether they
// carried the retry-after hint. Latencies are reported, not enforced.
//
// Thread-safety: each call blocks; one at a time per process.

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/bench/bench_cluster.h"
#include "tools/bench/report.h"
#include "tools/bench/runner.h"

namespace cellar::bench {

struct FloodOptions {
  // Calls per second each token may make on each node, and the bucket
  // size (0: 2 x the rate). Defaults 200 and 0.
  double rate_limit = 200;
  double rate_limit_burst = 0;
  // A's offered rate, as a multiple of the limit at each node. Default 10.
  double factor = 10;
  // What A floods with: loads, commit attempts (defaults both).
  bool a_loads = true;
  bool a_commits = true;
  // A's clients (threads), for loads and for commits each. Default 32.
  int flood_clients = 32;
  // B's paced workload. Defaults 50 loads/s and 10 commits/s.
  double b_loads_per_s = 50;
  double b_commits_per_s = 10;
  // Objects written (by B, within its rate limit) for the loads. Default
  // 2,000.
  int objects = 2000;
  // Measured length of each phase, after `warmup`. Defaults 15 s, 2 s.
  absl::Duration duration = absl::Seconds(15);
  absl::Duration warmup = absl::Seconds(2);
};

// Rows (JSON) and the readable summary of a security measurement.
struct SecurityReport {
  std::vector<BenchRow> rows;
  std::string summary;
};

// `shape` gives the cluster's shape (its dir, secure and rate fields are
// set here); every cluster lives in a new directory under `dir`.
// `rounds` pairs of runs (>= 1). Fails if a cluster does not start.
absl::StatusOr<SecurityReport> RunAuthTlsCost(const BenchClusterOptions& shape,
                                              const WorkloadOptions& workload, int rounds,
                                              const std::string& dir, std::ostream& progress);

// Client A runs in a child process: this binary (/proc/self/exe) with
// --mode=flood_client (RunFloodClient).
absl::StatusOr<SecurityReport> RunFlood(const BenchClusterOptions& shape,
                                        const WorkloadOptions& workload,
                                        const FloodOptions& flood, const std::string& dir,
                                        std::ostream& progress);

// Client A of RunFlood, in its own process: reads its options from
// `options_file` (written by RunFlood: key=value lines), connects its
// clients, prints "ready", runs its schedules (warm-up, then the measured
// window) and prints what its calls got; `out` is the pipe RunFlood reads.
absl::Status RunFloodClient(const std::string& options_file, std::ostream& out);

}  // namespace cellar::bench

#endif  // CELLAR_TOOLS_BENCH_SECURITY_BENCH_H_
