#ifndef CELLAR_TOOLS_CLUSTER_CHECKER_NEMESIS_H_
#define CELLAR_TOOLS_CLUSTER_CHECKER_NEMESIS_H_

// The nemesis of a checked run: faults a running ProcessCluster the way
// Kubernetes and machines do, while the workload (workload.h) runs, and
// records each fault in the History (time of the fault, time the cluster
// was ready again).
//
//   rolling     a StatefulSet rolling update: SIGTERM each storage (highest
//               ordinal first), start it again and wait until it is ready
//               and the cluster RUNNING, then the same for each master
//               (standbys first, the primary last). One event per node.
//   kill        kill -9 of one node, then start it again and wait: a random
//               storage on odd cycles, the primary master on even ones.
//   pause       SIGSTOP a random storage for `pause_time`, SIGCONT, wait
//               until it serves again.
//   pg-restart  restart (pg_ctl stop -m fast, start) the PostgreSQL server
//               under the storages; only with a server the cluster started
//               itself (not a shared one given by conninfo).
//
// A cycle runs every selected fault once, in the order given, with
// `interval` of quiet between two faults. Deterministic for a seed (the
// random storage choices).
//
// Thread-safety: Run() must be called from the thread that started the
// cluster (children die with their parent thread, see
// ProcessClusterOptions::die_with_parent), one Run at a time.

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/cluster/checker/history.h"
#include "tools/cluster/process_cluster.h"

namespace cellar::tools::checker {

enum class Fault { kRolling, kKill, kPause, kPgRestart };

const char* FaultName(Fault fault);

// "rolling,kill,pause,pg-restart" (any subset, in the order to run them) or
// "none" (empty list). INVALID_ARGUMENT naming an unknown fault.
absl::StatusOr<std::vector<Fault>> ParseFaults(const std::string& text);

struct NemesisOptions {
  // Faults of one cycle (default none).
  std::vector<Fault> faults;
  // Cycles (default 1).
  int cycles = 1;
  // Seeds the random choices (default 1).
  uint64_t seed = 1;
  // How long a paused storage stays stopped (default 5 s).
  absl::Duration pause_time = absl::Seconds(5);
  // Quiet time after each fault healed (default 2 s).
  absl::Duration interval = absl::Seconds(2);
  // Bound on the wait for the cluster to be ready after a fault
  // (default 60 s).
  absl::Duration heal_timeout = absl::Seconds(60);
  // Lines saying what is done (default none).
  std::function<void(const std::string&)> on_progress;
};

class Nemesis {
 public:
  Nemesis(ProcessCluster* cluster, History* history, NemesisOptions options);

  // Runs every cycle. Returns the first error that stopped it (a node that
  // did not come back within heal_timeout: DEADLINE_EXCEEDED; pg-restart
  // on a shared server: FAILED_PRECONDITION); the event is recorded with
  // the error either way.
  absl::Status Run();

 private:
  absl::Status RollingRestart();
  absl::Status KillOne(bool primary);
  absl::Status PauseOne();
  absl::Status RestartPostgres();
  // Restarts `name` (SIGTERM or SIGKILL first) and waits until healed.
  absl::Status Hit(const std::string& kind, const std::string& name, int signal, bool planned);
  // Waits until the cluster runs, every running storage serves and a
  // primary answers.
  // Until every cell is UP_TO_DATE and the cluster RUNNING (a storage's
  // readiness in a rolling update), at most heal_timeout.
  absl::Status WaitCaughtUp();
  absl::Status WaitHealed();
  void Progress(const std::string& line);
  void Record(NemesisEvent event, const absl::Status& status);

  ProcessCluster* const cluster_;
  History* const history_;
  const NemesisOptions options_;
  std::mt19937_64 rng_;
  int cycle_ = 0;
};

}  // namespace cellar::tools::checker

#endif  // CELLAR_TOOLS_CLUSTER_CHECKER_NEMESIS_H_
