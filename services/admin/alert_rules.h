#ifndef CELLAR_SERVICES_ADMIN_ALERT_RULES_H_
#define CELLAR_SERVICES_ADMIN_ALERT_RULES_H_

// The rules that turn one observation of a cluster (what its master and,
// later, its storages report) into alerts. Stateful per cluster: some rules
// need a condition to hold for a while (a cell OUT_OF_DATE for longer than
// a threshold), so the evaluator remembers since when each condition holds.
//
// Kinds (each has a help page docs/alerts/<kind>.md):
//   cluster-unreachable      no master answered                  critical
//   cluster-not-running      state != RUNNING for > grace         warning
//   cluster-not-operational  a partition has no readable cell     critical
//   node-down                a storage is DOWN (subject S<n>)      warning
//   cell-out-of-date         a storage's cells OUT_OF_DATE > threshold  warning
//   cell-corrupted           a storage has CORRUPTED cells         critical
//   replication-stalled      an OUT_OF_DATE cell's replication made no
//                            progress for > threshold             warning
//   clock-skew               a node's clock is off by > threshold  warning
//                            (critical above 10x)
//   backend-errors           a storage's backend errors grew recently  critical
//   disk-almost-full         a storage's free disk below 10% (critical 5%)
//
// The monitor (cluster_monitor.h) feeds every input: the master's
// GetClusterInfo, and each RUNNING storage's GetNodeStatus (health,
// replication positions, clock); see docs/admin.md, "Alerts: inputs".
// Inputs a poll could not measure are left out of the observation, and the
// kinds that need them keep their alerts as they were.
//
// No gRPC types (protobuf messages only). Not thread-safe: one evaluator
// per cluster, called from the monitor thread.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "protos/cellar/v1/master.pb.h"
#include "services/admin/alert_index.h"

namespace cellar::admin {

inline constexpr char kClusterUnreachable[] = "cluster-unreachable";
inline constexpr char kClusterNotRunning[] = "cluster-not-running";
inline constexpr char kClusterNotOperational[] = "cluster-not-operational";
inline constexpr char kNodeDown[] = "node-down";
inline constexpr char kCellOutOfDate[] = "cell-out-of-date";
inline constexpr char kCellCorrupted[] = "cell-corrupted";
inline constexpr char kReplicationStalled[] = "replication-stalled";
inline constexpr char kClockSkew[] = "clock-skew";
inline constexpr char kBackendErrors[] = "backend-errors";
inline constexpr char kDiskAlmostFull[] = "disk-almost-full";

// Every kind above, in that order.
const std::vector<std::string>& AllAlertKinds();

struct AlertRuleOptions {
  // Where help pages live: help_uri = help_base + kind + ".md".
  // Default "docs/alerts/".
  std::string help_base = "docs/alerts/";
  // cluster-not-running / cluster-not-operational wait this long (a
  // starting cluster is RECOVERING for a moment). Default 30 s.
  absl::Duration not_running_grace = absl::Seconds(30);
  // node-down waits this long (0 = at once). Default 0.
  absl::Duration node_down_grace = absl::ZeroDuration();
  // A cell OUT_OF_DATE for longer than this raises cell-out-of-date.
  // Default 10 min.
  absl::Duration out_of_date_threshold = absl::Minutes(10);
  // A cell CORRUPTED for longer than this raises cell-corrupted. Default 0.
  absl::Duration corrupted_threshold = absl::ZeroDuration();
  // An OUT_OF_DATE cell whose replication position did not move for this
  // long raises replication-stalled. Default 5 min.
  absl::Duration replication_stall_threshold = absl::Minutes(5);
  // |skew| above this raises clock-skew (critical above 10x). Default 1 s.
  absl::Duration clock_skew_threshold = absl::Seconds(1);
  // backend-errors stays raised this long after the error counter last
  // grew. Default 5 min.
  absl::Duration backend_error_window = absl::Minutes(5);
  // Free-space fractions for disk-almost-full: warning below the first,
  // critical below the second. Defaults 0.10 and 0.05.
  double disk_free_warning = 0.10;
  double disk_free_critical = 0.05;
};

// A clock offset someone measured. Positive = the subject's clock is ahead.
struct ClockSkewSample {
  // Node name ("M1", "S2").
  std::string subject;
  absl::Duration skew;
  // How it was measured, for the summary ("last TID ahead of the admin's
  // clock").
  std::string source;
};

// What a storage node says about its backend and disk
// (Storage.GetNodeStatus; unset fields: the node does not know).
struct StorageHealthSample {
  uint32_t node_id = 0;
  // Monotonic count of failed backend operations.
  absl::optional<uint64_t> backend_errors_total;
  // Free and total bytes of the volume holding the data.
  absl::optional<uint64_t> disk_free_bytes;
  absl::optional<uint64_t> disk_total_bytes;
};

// Replication position of one OUT_OF_DATE cell (Storage.GetNodeStatus
// replication[].replicated_tid; 0 while the node has no entry for it).
struct ReplicationSample {
  uint32_t partition = 0;
  uint32_t node_id = 0;
  // Anything that grows while replication progresses (e.g. the tid reached).
  uint64_t position = 0;
};

// One poll of one cluster.
struct ClusterObservation {
  // When the poll happened (the admin's clock).
  absl::Time now;
  // OK if a master answered; otherwise why not.
  absl::Status reachable;
  // The master's answer (when reachable).
  cellar::v1::GetClusterInfoResponse info;
  // Clock measurements; the kind is evaluated only if `clock_measured`.
  bool clock_measured = false;
  std::vector<ClockSkewSample> clock_skews;
  // Storage health; backend-errors / disk-almost-full are evaluated only
  // when this or `storages_silent` is non-empty.
  std::vector<StorageHealthSample> storages;
  // Storages that were asked and did not answer: their backend-errors and
  // disk-almost-full alerts are kept as the last evaluation left them.
  std::vector<uint32_t> storages_silent;
  // Replication positions; replication-stalled is evaluated only when
  // `replication_measured`.
  bool replication_measured = false;
  std::vector<ReplicationSample> replication;
};

// The verdict of one evaluation: feed it to AlertIndex::Reconcile.
struct AlertEvaluation {
  // Kinds the observation allowed to evaluate (alerts of other kinds are
  // left as they are).
  std::vector<std::string> evaluated_kinds;
  // Problems found now (cluster field set).
  std::vector<AlertSpec> alerts;
};

class ClusterAlertRules {
 public:
  ClusterAlertRules(std::string cluster, AlertRuleOptions options);

  AlertEvaluation Evaluate(const ClusterObservation& observation);

 private:
  // Remembers when `key` started holding (continuously); returns how long
  // it has held. Keys not touched during an evaluation are forgotten.
  absl::Duration Held(const std::string& key, absl::Time now);
  AlertSpec Spec(const std::string& kind, const std::string& subject, AlertSeverity severity,
                 std::string summary, std::string help) const;

  const std::string cluster_;
  const AlertRuleOptions options_;
  absl::flat_hash_map<std::string, absl::Time> since_;
  absl::flat_hash_map<std::string, absl::Time> touched_;
  // backend-errors: last counter value and when it last grew, per node.
  absl::flat_hash_map<uint32_t, std::pair<uint64_t, absl::Time>> backend_errors_;
  // replication-stalled: last position and since when, per "partition/node".
  absl::flat_hash_map<std::string, std::pair<uint64_t, absl::Time>> replication_;
  // backend-errors / disk-almost-full alerts of the last evaluation, per
  // node (re-raised for a storage that does not answer).
  absl::flat_hash_map<uint32_t, std::vector<AlertSpec>> storage_alerts_;
};

}  // namespace cellar::admin

#endif  // CELLAR_SERVICES_ADMIN_ALERT_RULES_H_
