#ifndef CELLAR_TOOLS_BENCH_CELLAR_SCENARIOS_H_
#define CELLAR_TOOLS_BENCH_CELLAR_SCENARIOS_H_

// The cellar scenarios, through the client library against a running
// cluster (each thread has its own client::Client: its own connections and
// Watch stream; the object cache is disabled):
//   tiny_commit_c<N>        transactions of 1 new object  [txn/s]
//   bulk_<B>x<S>_c<N>       transactions of B new objects  [objects/s]
//   load_uncached_c<N>      Load() of random existing objects
//                           (load_objects written first)  [loads/s]
//   load_many100_c<N>       LoadMany() of 100 random existing objects per
//                           call, at the low client count  [objects/s]
// Every commit must succeed (new objects cannot conflict); every load is
// compared with what was written; after each write scenario a sample of
// the committed objects is read back through a fresh client and must have
// the committed data and serial == the commit's tid.
//
// Thread-safety: blocks; one call at a time per cluster.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "services/common/tls_config.h"
#include "tools/bench/report.h"
#include "tools/bench/runner.h"

namespace cellar::bench {

struct CellarTarget {
  // Master address(es) and cluster name of the cluster under test.
  std::vector<std::string> master_addresses;
  std::string cluster_name = "cellar";
  // Backend label of the rows ("sqlite" or "postgresql"; "sqlite+tls"
  // for the secured cluster of --mode=security).
  std::string backend;
  // Bearer token and TLS of every client (ClientOptions::token, ::tls).
  // Defaults: none, plaintext.
  std::string token;
  std::optional<common::TlsClientConfig> tls;
  // CPU seconds used so far by a cluster running in other processes,
  // added to this process's in the rows' cpu us. Default none (the
  // in-process LocalCluster is already counted).
  std::function<double()> cluster_cpu_seconds;
  // A line about the cluster printed after each commit scenario (the
  // in-process cluster: how the master batched its locks). Default none.
  std::function<std::string()> cluster_note;
};

// A committed object: what to read back.
struct Committed {
  uint64_t oid;
  uint64_t tid;
};

// A client of `target` with its object cache disabled (every load goes to
// a storage).
absl::StatusOr<std::unique_ptr<client::Client>> ConnectClient(const CellarTarget& target);

// Writes `count` objects in transactions of `per_txn`, from `threads`
// clients; returns them.
absl::StatusOr<std::vector<Committed>> WriteObjects(const CellarTarget& target, int count,
                                                    int per_txn, int threads,
                                                    int object_bytes);

// Workers of the scenarios, for other drivers (flood.h): one transaction
// of `objects` new objects per Op; one Load of a random object of
// `population` (not owned; checked against what was written) per Op.
std::unique_ptr<Worker> NewCommitWorker(std::unique_ptr<client::Client> client, int objects,
                                        int object_bytes);
std::unique_ptr<Worker> NewLoadWorker(std::unique_ptr<client::Client> client, int seed,
                                      const std::vector<Committed>* population,
                                      int object_bytes);

// Runs every cellar scenario; rows in the order above. Fails only if the
// cluster can't be reached at all (operation failures are counted in the
// rows' `errors`).
absl::StatusOr<std::vector<BenchRow>> RunCellarScenarios(const CellarTarget& target,
                                                         const WorkloadOptions& workload,
                                                         std::ostream& progress);

}  // namespace cellar::bench

#endif  // CELLAR_TOOLS_BENCH_CELLAR_SCENARIOS_H_
