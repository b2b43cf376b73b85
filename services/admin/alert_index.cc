#include "services/admin/alert_index.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "services/common/logging.h"

namespace cellar::admin {

absl::string_view SeverityName(AlertSeverity severity) {
  switch (severity) {
    case AlertSeverity::kInfo:
      return "info";
    case AlertSeverity::kWarning:
      return "warning";
    case AlertSeverity::kCritical:
      return "critical";
  }
  return "unknown";
}

AlertIndex::AlertIndex(const common::Clock* clock, AlertIndexOptions options)
    : clock_(clock), options_(options) {}

std::string AlertIndex::MakeId(absl::string_view cluster, absl::string_view kind,
                               absl::string_view subject) {
  return absl::StrCat(cluster, "/", kind, "/", subject);
}

Alert AlertIndex::RaiseLocked(const AlertSpec& spec, absl::Time now) {
  const std::string id = MakeId(spec.cluster, spec.kind, spec.subject);
  auto [it, created] = alerts_.try_emplace(id);
  Alert& alert = it->second;
  if (created) {
    alert.id = id;
    alert.first_seen = now;
    alert.count = 1;
  } else if (!alert.active) {
    // A new occurrence: the operator has not seen this one yet.
    ++alert.count;
    alert.active = true;
    alert.resolved_at = absl::InfinitePast();
    alert.acknowledged = false;
    alert.acknowledged_by.clear();
    alert.acknowledged_at = absl::InfinitePast();
  } else if (spec.severity > alert.spec.severity) {
    // Got worse than what was acknowledged.
    alert.acknowledged = false;
    alert.acknowledged_by.clear();
    alert.acknowledged_at = absl::InfinitePast();
  }
  alert.spec = spec;
  alert.last_seen = now;
  return alert;
}

Alert AlertIndex::Raise(const AlertSpec& spec) {
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  return RaiseLocked(spec, now);
}

bool AlertIndex::Clear(absl::string_view id) {
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  auto it = alerts_.find(id);
  if (it == alerts_.end() || !it->second.active) return false;
  it->second.active = false;
  it->second.resolved_at = now;
  return true;
}

void AlertIndex::Reconcile(absl::string_view cluster,
                           const std::vector<std::string>& evaluated_kinds,
                           const std::vector<AlertSpec>& raised) {
  const absl::Time now = clock_->Now();
  absl::flat_hash_set<std::string> kinds(evaluated_kinds.begin(), evaluated_kinds.end());
  absl::flat_hash_set<std::string> seen;
  absl::MutexLock l(&mu_);
  for (const AlertSpec& spec : raised) {
    AlertSpec s = spec;
    s.cluster = std::string(cluster);
    seen.insert(RaiseLocked(s, now).id);
  }
  for (auto& [id, alert] : alerts_) {
    if (alert.active && alert.spec.cluster == cluster && kinds.contains(alert.spec.kind) &&
        !seen.contains(id)) {
      alert.active = false;
      alert.resolved_at = now;
    }
  }
  ExpireLocked(now);
}

std::vector<Alert> AlertIndex::List(const AlertFilter& filter) const {
  std::vector<Alert> out;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [id, alert] : alerts_) {
      if (!filter.cluster.empty() && alert.spec.cluster != filter.cluster) continue;
      if (!filter.kind.empty() && alert.spec.kind != filter.kind) continue;
      if (filter.min_severity.has_value() && alert.spec.severity < *filter.min_severity) {
        continue;
      }
      if (filter.acknowledged.has_value() && alert.acknowledged != *filter.acknowledged) {
        continue;
      }
      if (!filter.include_resolved && !alert.active) continue;
      out.push_back(alert);
    }
  }
  std::sort(out.begin(), out.end(), [](const Alert& a, const Alert& b) {
    if (a.spec.severity != b.spec.severity) return a.spec.severity > b.spec.severity;
    if (a.first_seen != b.first_seen) return a.first_seen < b.first_seen;
    return a.id < b.id;
  });
  return out;
}

absl::StatusOr<Alert> AlertIndex::Get(absl::string_view id) const {
  absl::MutexLock l(&mu_);
  auto it = alerts_.find(id);
  if (it == alerts_.end()) {
    return absl::NotFoundError(absl::StrCat("id: no alert with id ", common::Quoted(id)));
  }
  return it->second;
}

absl::StatusOr<Alert> AlertIndex::Acknowledge(absl::string_view id, absl::string_view by) {
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  auto it = alerts_.find(id);
  if (it == alerts_.end()) {
    return absl::NotFoundError(absl::StrCat("id: no alert with id ", common::Quoted(id),
                                            " (it may have been deleted or expired)"));
  }
  Alert& alert = it->second;
  if (!alert.acknowledged) {
    alert.acknowledged = true;
    alert.acknowledged_by = std::string(by);
    alert.acknowledged_at = now;
  }
  return alert;
}

absl::Status AlertIndex::Delete(absl::string_view id) {
  absl::MutexLock l(&mu_);
  auto it = alerts_.find(id);
  if (it == alerts_.end()) {
    return absl::NotFoundError(absl::StrCat("id: no alert with id ", common::Quoted(id)));
  }
  alerts_.erase(it);
  return absl::OkStatus();
}

void AlertIndex::ExpireResolved() {
  const absl::Time now = clock_->Now();
  absl::MutexLock l(&mu_);
  ExpireLocked(now);
}

void AlertIndex::ExpireLocked(absl::Time now) {
  for (auto it = alerts_.begin(); it != alerts_.end();) {
    const Alert& alert = it->second;
    if (!alert.active && now - alert.resolved_at >= options_.resolved_retention) {
      alerts_.erase(it++);
    } else {
      ++it;
    }
  }
}

}  // namespace cellar::admin
