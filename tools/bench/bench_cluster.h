#ifndef CELLAR_TOOLS_BENCH_BENCH_CLUSTER_H_
#define CELLAR_TOOLS_BENCH_BENCH_CLUSTER_H_

// The cluster of the security benchmarks (--mode=security, --mode=flood):
// real cellar-master, cellar-storage and cellar-admin processes on
// loopback (tools/cluster/process_cluster.h, as the fault tests start
// them) on SQLite files, either plaintext without authentication, or
// secured the way `tools/cluster/run up --auth --tls` is: TLS on every
// port with a throwaway CA, mTLS between the nodes (node certificates)
// plus the cluster secret's bearer, tokens required from clients. The
// clients verify the servers against the CA and send a token (no client
// certificate). Separate processes, unlike the in-process LocalCluster of
// --mode=perf: every node has its own gRPC poller, authenticator and rate
// limiter, as deployed.
//
// Thread-safety: not thread-safe (one object from one thread; clients on
// other threads may use the targets meanwhile).

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/bench/cellar_scenarios.h"
#include "tools/cluster/process_cluster.h"

namespace cellar::bench {

struct BenchClusterOptions {
  // Directory for the SQLite files, logs and credentials. Created if
  // missing. Required.
  std::string dir;
  // TLS + tokens (above), or plaintext without auth. Default false.
  bool secure = false;
  // Client tokens (role client, each its own rate-limit bucket); ignored
  // unless secure. Default 1.
  int client_tokens = 1;
  // --rate_limit and --rate_limit_burst of every node; 0: none. Ignored
  // unless secure. Defaults 0.
  double rate_limit_per_second = 0;
  double rate_limit_burst = 0;
  // Cluster shape (BenchOptions').
  int storages = 2;
  uint32_t replicas = 1;
  uint32_t partitions = 12;
  // argv[0] of the bench, to find the node binaries in its runfiles.
  std::string argv0;
};

class BenchCluster {
 public:
  // Writes the credentials (secure), starts the processes and waits until
  // the cluster runs and every client token is accepted.
  static absl::StatusOr<std::unique_ptr<BenchCluster>> Start(const BenchClusterOptions& options);
  // Stops the processes.
  ~BenchCluster();

  // What a client needs, with client token `token` (0 .. client_tokens-1;
  // none when plaintext); rows are labelled `backend`. Its
  // cluster_cpu_seconds reads CPU() of this cluster.
  CellarTarget Target(const std::string& backend, int token = 0) const;

  // CPU seconds (user + system) used so far by the cluster's processes
  // (masters, storages, admin), from /proc/<pid>/stat.
  double CPU() const;

  const std::vector<std::string>& tokens() const { return tokens_; }

 private:
  BenchCluster() = default;

  std::unique_ptr<tools::ProcessCluster> cluster_;
  std::vector<pid_t> pids_;
  std::string ca_file_;  // empty: plaintext
  std::vector<std::string> tokens_;
};

}  // namespace cellar::bench

#endif  // CELLAR_TOOLS_BENCH_BENCH_CLUSTER_H_
