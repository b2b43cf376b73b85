#ifndef CELLAR_SERVICES_ADMIN_ALERT_INDEX_H_
#define CELLAR_SERVICES_ADMIN_ALERT_INDEX_H_

// The admin's index of current problems ("flags", as NEO's admin calls
// them). A problem is identified by (cluster, kind, subject) — e.g.
// ("prod", "node-down", "S2") — and is one Alert however often it is seen:
//
//   Raise(spec)      the problem is there now: creates the alert (count 1)
//                    or refreshes last_seen/summary/severity; if it had
//                    cleared, it becomes active again and count grows by 1.
//   Clear(id)        the problem went away: the alert stays listed as
//                    resolved for `resolved_retention`, then is dropped.
//   Reconcile(...)   one poll's verdict for one cluster: raises what the
//                    rules found and clears what they no longer find.
//   Acknowledge(id)  an operator saw it. A new occurrence (after it had
//                    cleared) or a higher severity unacknowledges it.
//   Delete(id)       forgets it; if the problem persists the next poll
//                    raises a fresh alert.
//
// No gRPC types. Thread-safe; time comes from the injected clock.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "services/common/clock.h"

namespace cellar::admin {

// Ordered: a larger value is more severe. Numbers match
// cellar.v1.AlertSeverity.
enum class AlertSeverity { kInfo = 1, kWarning = 2, kCritical = 3 };

// "info", "warning", "critical" (metric labels, logs).
absl::string_view SeverityName(AlertSeverity severity);

// What a rule says about one problem, now.
struct AlertSpec {
  // Configured cluster name, e.g. "cellar".
  std::string cluster;
  // Kind of problem, e.g. "node-down" (see alert_rules.h for the list).
  std::string kind;
  // What it is about ("S2"), or "" for the whole cluster.
  std::string subject;
  AlertSeverity severity = AlertSeverity::kWarning;
  // One line: what is wrong now.
  std::string summary;
  // What to do.
  std::string help;
  // The help page, e.g. "docs/alerts/node-down.md".
  std::string help_uri;
};

// An alert as the index keeps it.
struct Alert {
  // "<cluster>/<kind>/<subject>" (AlertIndex::MakeId).
  std::string id;
  // The spec of the latest Raise.
  AlertSpec spec;
  absl::Time first_seen;
  absl::Time last_seen;
  // Occurrences: 1 when created, +1 each time it is raised after clearing.
  int64_t count = 0;
  // Raised and not cleared since.
  bool active = true;
  // When it cleared (InfinitePast while active).
  absl::Time resolved_at = absl::InfinitePast();
  bool acknowledged = false;
  std::string acknowledged_by;
  absl::Time acknowledged_at = absl::InfinitePast();
};

// Which alerts List returns. Default: every active alert.
struct AlertFilter {
  // Only this cluster; "" = all.
  std::string cluster;
  // Only this kind; "" = all.
  std::string kind;
  // Only alerts at least this severe; nullopt = all.
  absl::optional<AlertSeverity> min_severity;
  // Only acknowledged (true) / unacknowledged (false); nullopt = both.
  absl::optional<bool> acknowledged;
  // Also resolved alerts. Default false.
  bool include_resolved = false;
};

struct AlertIndexOptions {
  // How long a resolved alert stays listed (include_resolved) before it is
  // dropped. Default 1 h.
  absl::Duration resolved_retention = absl::Hours(1);
};

class AlertIndex {
 public:
  // `clock` must outlive the index.
  explicit AlertIndex(const common::Clock* clock, AlertIndexOptions options = {});

  AlertIndex(const AlertIndex&) = delete;
  AlertIndex& operator=(const AlertIndex&) = delete;

  // "<cluster>/<kind>/<subject>".
  static std::string MakeId(absl::string_view cluster, absl::string_view kind,
                            absl::string_view subject);

  // The problem is there now (see the file comment). Returns the alert.
  Alert Raise(const AlertSpec& spec);

  // The problem went away. No-op (returns false) if `id` is unknown or
  // already resolved.
  bool Clear(absl::string_view id);

  // One poll's verdict for `cluster`: raises each of `raised` (all of
  // `cluster`), and clears every active alert of `cluster` whose kind is in
  // `evaluated_kinds` but that is not in `raised`. Alerts of kinds the poll
  // could not evaluate (e.g. node-down while the master is unreachable)
  // are left as they are. Also drops expired resolved alerts.
  void Reconcile(absl::string_view cluster, const std::vector<std::string>& evaluated_kinds,
                 const std::vector<AlertSpec>& raised);

  // Matching alerts: most severe first, then oldest first_seen, then id.
  std::vector<Alert> List(const AlertFilter& filter = {}) const;

  // NOT_FOUND if unknown.
  absl::StatusOr<Alert> Get(absl::string_view id) const;

  // Marks it acknowledged by `by` (free text) now; idempotent (the first
  // acknowledgement's time and author are kept). NOT_FOUND if unknown.
  absl::StatusOr<Alert> Acknowledge(absl::string_view id, absl::string_view by);

  // Forgets it. NOT_FOUND if unknown.
  absl::Status Delete(absl::string_view id);

  // Drops resolved alerts older than resolved_retention.
  void ExpireResolved();

 private:
  void ExpireLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Alert RaiseLocked(const AlertSpec& spec, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const common::Clock* const clock_;
  const AlertIndexOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Alert> alerts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::admin

#endif  // CELLAR_SERVICES_ADMIN_ALERT_INDEX_H_
