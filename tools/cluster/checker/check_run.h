#ifndef CELLAR_TOOLS_CLUSTER_CHECKER_CHECK_RUN_H_
#define CELLAR_TOOLS_CLUSTER_CHECKER_CHECK_RUN_H_

// One checked run over a started ProcessCluster: the workload
// (workload.h) runs on its client threads while the nemesis (nemesis.h)
// faults the cluster from the calling thread; then the cluster is brought
// back whole, the final state is read and the history is checked
// (checker.h) and measured (report.h). Used by `cellar-cluster check` and
// //tests/fault:history_check_test.
//
// The workload runs until both `duration` has passed and the nemesis
// finished its cycles. A progress line goes out every `progress_every`
// (commits so far) besides the nemesis' own lines.
//
// Thread-safety: call from the thread that started the cluster.

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/cluster/checker/nemesis.h"
#include "tools/cluster/checker/report.h"
#include "tools/cluster/checker/workload.h"
#include "tools/cluster/process_cluster.h"

namespace cellar::tools::checker {

struct CheckOptions {
  // The workload; its client options get the cluster's masters and name.
  WorkloadOptions workload;
  NemesisOptions nemesis;
  // For the report only: "sqlite" or "postgresql".
  std::string backend = "sqlite";
  // Minimum workload time (default 60 s).
  absl::Duration duration = absl::Seconds(60);
  // Bound on the final reads (default 120 s).
  absl::Duration final_timeout = absl::Seconds(120);
  // Progress line period (default 5 s).
  absl::Duration progress_every = absl::Seconds(5);
  // Lines saying what happens (default none); called from two threads, one
  // line at a time.
  std::function<void(const std::string&)> on_progress;
};

// Runs the check. Errors only when the run could not happen (the workload's
// objects could not be created); what went wrong during the run (a node
// that did not come back, the final read) is in the report, which fails.
absl::StatusOr<RunReport> RunCheck(ProcessCluster& cluster, CheckOptions options);

}  // namespace cellar::tools::checker

#endif  // CELLAR_TOOLS_CLUSTER_CHECKER_CHECK_RUN_H_
