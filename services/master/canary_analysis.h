#ifndef CELLAR_SERVICES_MASTER_CANARY_ANALYSIS_H_
#define CELLAR_SERVICES_MASTER_CANARY_ANALYSIS_H_

// The primary master's canary analysis (docs/rollouts.md, "Canary
// analysis"), in the spirit of Flagger's but on cellar's own counters, so
// it works the same in `cellar local`, the multi-process tests and
// Kubernetes. Storages send their cumulative data-path counters with every
// heartbeat (common/data_path_stats.h); Report() turns them into deltas per
// node and adds them to the current interval of the node's (version,
// track). Every `interval` the interval closes: each version on the
// "canary" track is compared with all "stable" storages together over it.
// An interval of a canary
//  - has no data when its loads + stores are below `min_requests`;
//  - fails on an error ratio above `max_error_ratio`, a checksum failure,
//    a p99 load or store latency above max(`latency_floor`,
//    `max_latency_ratio` x stable's p99) (skipped when stable served no
//    such call), or when the version is quarantined;
//  - passes otherwise.
// Verdict per canary version: `rollback` after any failing interval (and
// the version is quarantined through the callback, with the reason);
// `promote` after `promote_after` passing intervals in a row (no-data
// intervals neither count nor break the run); `hold` otherwise. A rollback
// stays until an operator lifts the version's quarantine: the analysis
// then starts over (hold, no passes).
//
// Counter resets: the first report of a node only sets its baseline (the
// master does not know over which period the counts were made); a new
// incarnation or a counter that went down (the process restarted) counts
// the new values whole (everything since the restart).
//
// No thread: intervals close lazily, on the first Report() or Analysis()
// after they ended (storages heartbeat every 2 s). Thread-safe.
// `quarantine` is called without this object's lock held,
// `is_quarantined` with it (it must not call back into this object).

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/clock.h"
#include "services/common/data_path_stats.h"
#include "services/master/version_registry.h"

namespace cellar::master {

struct CanaryThresholds {
  // Length of an analysis interval. Must be positive.
  absl::Duration interval = absl::Minutes(1);
  // Highest (load + store errors) / (loads + stores) that passes. 0..1.
  double max_error_ratio = 0.01;
  // Highest canary p99 / stable p99 (loads and stores apart). >= 1.
  double max_latency_ratio = 2;
  // A canary p99 at or below this always passes (bucket noise).
  absl::Duration latency_floor = absl::Milliseconds(5);
  // Fewer loads + stores in an interval: no data. >= 1.
  uint64_t min_requests = 100;
  // Passing intervals in a row before `promote`. >= 1.
  uint32_t promote_after = 5;
};

enum class CanaryVerdict { kHold, kPromote, kRollback };
// "hold", "promote", "rollback".
const char* VerdictName(CanaryVerdict verdict);
// The metric encoding: 0 hold, 1 promote, 2 rollback.
int VerdictValue(CanaryVerdict verdict);

struct CanaryInterval {
  absl::Time start;
  absl::Time end;
  enum class Outcome { kPass, kFail, kNoData };
  Outcome outcome = Outcome::kNoData;
  std::string reason;
  common::DataPathSample canary;
  common::DataPathSample stable;
  double error_ratio = 0;
  double stable_error_ratio = 0;
  double load_p99_ms = 0;
  double store_p99_ms = 0;
  double stable_load_p99_ms = 0;
  double stable_store_p99_ms = 0;
};
// "pass", "fail", "no_data".
const char* OutcomeName(CanaryInterval::Outcome outcome);

struct CanaryStatus {
  VersionKey key;
  CanaryVerdict verdict = CanaryVerdict::kHold;
  std::string reason;
  uint32_t consecutive_passes = 0;
  bool quarantined = false;
  // Oldest first, at most kMaxIntervals.
  std::vector<CanaryInterval> intervals;
};

class CanaryAnalysis {
 public:
  // Quarantines a version (automatic: "canary-analysis" is who).
  using Quarantine = std::function<absl::Status(const VersionKey&, const std::string& reason)>;
  using IsQuarantined = std::function<bool(const VersionKey&)>;

  static constexpr size_t kMaxIntervals = 20;

  // `clock` is not owned. The first interval starts now.
  CanaryAnalysis(const common::Clock* clock, CanaryThresholds thresholds, Quarantine quarantine,
                 IsQuarantined is_quarantined);

  // INVALID_ARGUMENT for a non-positive interval, an error ratio outside
  // 0..1, a latency ratio below 1, zero min_requests or promote_after.
  static absl::Status ValidateThresholds(const CanaryThresholds& thresholds);

  // A heartbeat's counters from `node_id`, registered as `key`.
  void Report(uint32_t node_id, const VersionKey& key, const common::DataPathSample& sample);
  // Every canary version seen in this term (closing intervals due first).
  std::vector<CanaryStatus> Analysis();
  // When the current interval started.
  absl::Time current_interval_start() const;
  const CanaryThresholds& thresholds() const { return thresholds_; }

 private:
  struct NodeState {
    VersionKey key;
    common::DataPathSample last;
  };
  struct Canary {
    CanaryVerdict verdict = CanaryVerdict::kHold;
    std::string reason;
    uint32_t passes = 0;
    // Rolled back and seen quarantined: lifting the quarantine starts over.
    bool seen_quarantined = false;
    std::deque<CanaryInterval> intervals;
  };

  // Closes the current interval if it is over; returns the versions to
  // quarantine, with why.
  std::vector<std::pair<VersionKey, std::string>> AdvanceLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  CanaryInterval Judge(const VersionKey& key, const common::DataPathSample& canary,
                       const common::DataPathSample& stable, bool quarantined) const;
  // Runs due intervals and the quarantines they decided.
  void Advance();

  const common::Clock* const clock_;
  const CanaryThresholds thresholds_;
  const Quarantine quarantine_;
  const IsQuarantined is_quarantined_;

  mutable absl::Mutex mu_;
  absl::Time interval_start_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<uint32_t, NodeState> nodes_ ABSL_GUARDED_BY(mu_);
  // The current interval's counts per (version, track).
  absl::btree_map<VersionKey, common::DataPathSample> current_ ABSL_GUARDED_BY(mu_);
  absl::btree_map<VersionKey, Canary> canaries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_CANARY_ANALYSIS_H_
