#ifndef CELLAR_TOOLS_BENCH_CELLAR_SCENARIOS_H_
#define CELLAR_TOOLS_BENCH_CELLAR_SCENARIOS_H_

// The cellar scenarios, through the client library against a running
// cluster (each thread has its own client::Client: its own connections and
// Watch stream; the object cache is disabled):
//   tiny_commit_c<N>        transactions of 1 new object  [txn/s]
//   bulk_<B>x<S>_c<N>       transactions of B new objects  [objects/s]
//   load_uncached_c<N>      Load() of random existing objects
//                           (load_objects written first)  [loads/s]
// Every commit must succeed (new objects cannot conflict); every load is
// compared with what was written; after each write scenario a sample of
// the committed objects is read back through a fresh client and must have
// the committed data and serial == the commit's tid.
//
// Thread-safety: blocks; one call at a time per cluster.

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/bench/report.h"
#include "tools/bench/runner.h"

namespace cellar::bench {

struct CellarTarget {
  // Master address(es) and cluster name of the cluster under test.
  std::vector<std::string> master_addresses;
  std::string cluster_name = "cellar";
  // Backend label of the rows ("sqlite" or "postgresql").
  std::string backend;
};

// Runs every cellar scenario; rows in the order above. Fails only if the
// cluster can't be reached at all (operation failures are counted in the
// rows' `errors`).
absl::StatusOr<std::vector<BenchRow>> RunCellarScenarios(const CellarTarget& target,
                                                         const WorkloadOptions& workload,
                                                         std::ostream& progress);

}  // namespace cellar::bench

#endif  // CELLAR_TOOLS_BENCH_CELLAR_SCENARIOS_H_
