#include "services/master/version_registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/logging.h"

namespace cellar::master {

const char* ActionName(VersionDecision::Action action) {
  switch (action) {
    case VersionDecision::Action::kQuarantine:
      return "quarantine";
    case VersionDecision::Action::kUnquarantine:
      return "unquarantine";
    case VersionDecision::Action::kRefused:
      return "refused";
  }
  return "unknown";
}

VersionRegistry::VersionRegistry(const common::Clock* clock, QuarantineThresholds thresholds,
                                 VersionKey self, ReadableVersions readable)
    : clock_(clock),
      thresholds_(thresholds),
      self_(std::move(self)),
      readable_(std::move(readable)) {}

absl::Status VersionRegistry::ValidateThresholds(const QuarantineThresholds& thresholds) {
  if (thresholds.window <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the quarantine window must be positive, got ",
                     absl::FormatDuration(thresholds.window)));
  }
  return absl::OkStatus();
}

void VersionRegistry::Prune(Entry& entry) const {
  const absl::Time horizon = clock_->Now() - thresholds_.window;
  while (!entry.restarts.empty() && entry.restarts.front().first <= horizon) {
    entry.restarts.pop_front();
  }
  while (!entry.downs.empty() && entry.downs.front() <= horizon) entry.downs.pop_front();
}

uint32_t VersionRegistry::WorstNodeRestarts(const Entry& entry) {
  std::map<uint32_t, uint32_t> per_node;
  uint32_t worst = 0;
  for (const auto& [at, node_id] : entry.restarts) worst = std::max(worst, ++per_node[node_id]);
  return worst;
}

bool VersionRegistry::NodeRegistered(uint32_t node_id, const VersionKey& key) {
  auto [it, inserted] = nodes_.try_emplace(node_id);
  const bool restart = !inserted && it->second.key == key;
  it->second.key = key;
  it->second.connected = true;
  Entry& entry = versions_[key];
  if (!restart) return false;
  entry.restarts.emplace_back(clock_->Now(), node_id);
  return MaybeQuarantine(key);
}

bool VersionRegistry::NodeDown(uint32_t node_id, DownCause cause) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) return false;
  it->second.connected = false;
  if (cause == DownCause::kStreamEnded || cause == DownCause::kOperator) return false;
  versions_[it->second.key].downs.push_back(clock_->Now());
  return MaybeQuarantine(it->second.key);
}

void VersionRegistry::NodeForgotten(uint32_t node_id) { nodes_.erase(node_id); }

std::string VersionRegistry::RefusalReason(const VersionKey& key) const {
  if (key == self_) {
    return absl::StrCat(key.ToString(),
                        " is the version of the primary master itself (fail over to a master "
                        "of another version first)");
  }
  const std::set<VersionKey> readable = readable_ ? readable_() : std::set<VersionKey>{};
  if (readable.count(key) != 0 && readable.size() == 1) {
    return absl::StrCat(key.ToString(),
                        " is the only version whose storages hold readable data: quarantine "
                        "would leave reads no other replica and new cells no storage");
  }
  return "";
}

bool VersionRegistry::MaybeQuarantine(const VersionKey& key) {
  Entry& entry = versions_[key];
  Prune(entry);
  if (entry.quarantined) return false;
  std::string why;
  if (const uint32_t worst = WorstNodeRestarts(entry);
      thresholds_.restarts > 0 && worst >= thresholds_.restarts) {
    why = absl::StrCat("a node restarted ", worst, " times within ",
                       absl::FormatDuration(thresholds_.window), " (threshold ",
                       thresholds_.restarts, ": a crash loop)");
  } else if (thresholds_.downs > 0 && entry.downs.size() >= thresholds_.downs) {
    why = absl::StrCat(entry.downs.size(), " storages taken down within ",
                       absl::FormatDuration(thresholds_.window), " (threshold ",
                       thresholds_.downs, ")");
  } else {
    return false;
  }
  const std::string refusal = RefusalReason(key);
  if (!refusal.empty()) {
    const std::string text = absl::StrCat(why, "; not quarantined: ", refusal);
    if (entry.refused != refusal) {
      entry.refused = refusal;
      CELLAR_LOG(WARNING) << "version " << key.ToString() << ": " << text;
      Record({clock_->Now(), key, VersionDecision::Action::kRefused, "auto", text});
    }
    return false;
  }
  entry.refused.clear();
  entry.quarantined = true;
  entry.reason = why;
  entry.by = "auto";
  entry.since = clock_->Now();
  ++generation_;
  CELLAR_LOG(WARNING) << "version " << key.ToString() << " quarantined: " << why;
  Record({entry.since, key, VersionDecision::Action::kQuarantine, "auto", why});
  return true;
}

namespace {

absl::Status CheckManual(const VersionKey& key, const std::string& by, const std::string& reason) {
  if (key.version.empty()) return absl::InvalidArgumentError("version: required");
  if (key.track.empty()) {
    return absl::InvalidArgumentError("track: required (stable, canary or shadow)");
  }
  if (reason.empty()) return absl::InvalidArgumentError("reason: required (why, for the audit)");
  if (by.empty()) return absl::InvalidArgumentError("by: required");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<VersionRegistry::Entry*> VersionRegistry::Find(const VersionKey& key) {
  auto it = versions_.find(key);
  if (it == versions_.end()) {
    return absl::NotFoundError(absl::StrCat("no node registered with version ",
                                            key.ToString().substr(0, 64),
                                            " since this master became primary"));
  }
  return &it->second;
}

absl::StatusOr<bool> VersionRegistry::Quarantine(const VersionKey& key, const std::string& by,
                                                 const std::string& reason) {
  if (absl::Status s = CheckManual(key, by, reason); !s.ok()) return s;
  absl::StatusOr<Entry*> found = Find(key);
  if (!found.ok()) return found.status();
  if ((*found)->quarantined) return false;
  if (const std::string refusal = RefusalReason(key); !refusal.empty()) {
    Record({clock_->Now(), key, VersionDecision::Action::kRefused, by,
            absl::StrCat(reason, "; not quarantined: ", refusal)});
    return absl::FailedPreconditionError(absl::StrCat("not quarantined: ", refusal));
  }
  Entry& entry = **found;
  entry.quarantined = true;
  entry.reason = reason;
  entry.by = by;
  entry.since = clock_->Now();
  ++generation_;
  CELLAR_LOG(WARNING) << "version " << key.ToString() << " quarantined by " << by << ": "
                      << reason;
  Record({entry.since, key, VersionDecision::Action::kQuarantine, by, reason});
  return true;
}

absl::StatusOr<bool> VersionRegistry::Unquarantine(const VersionKey& key, const std::string& by,
                                                   const std::string& reason) {
  if (absl::Status s = CheckManual(key, by, reason); !s.ok()) return s;
  absl::StatusOr<Entry*> found = Find(key);
  if (!found.ok()) return found.status();
  Entry& entry = **found;
  if (!entry.quarantined) return false;
  entry = Entry();  // signals forgotten too: a fresh start
  ++generation_;
  CELLAR_LOG(WARNING) << "version " << key.ToString() << " unquarantined by " << by << ": "
                      << reason;
  Record({clock_->Now(), key, VersionDecision::Action::kUnquarantine, by, reason});
  return true;
}

std::vector<VersionStatus> VersionRegistry::List() const {
  std::vector<VersionStatus> out;
  for (const auto& [key, stored] : versions_) {
    Entry entry = stored;
    Prune(entry);
    VersionStatus status;
    status.key = key;
    status.restarts = static_cast<uint32_t>(entry.restarts.size());
    status.worst_node_restarts = WorstNodeRestarts(entry);
    status.downs = static_cast<uint32_t>(entry.downs.size());
    status.quarantined = entry.quarantined;
    status.reason = entry.reason;
    status.by = entry.by;
    status.since = entry.since;
    for (const auto& [id, node] : nodes_) {
      if (!node.connected || !(node.key == key)) continue;
      ++status.nodes[common::NodeKindOf(id)];
      status.node_ids.push_back(id);
    }
    out.push_back(std::move(status));
  }
  return out;
}

bool VersionRegistry::IsQuarantined(const VersionKey& key) const {
  auto it = versions_.find(key);
  return it != versions_.end() && it->second.quarantined;
}

bool VersionRegistry::KeyOf(uint32_t node_id, VersionKey* key) const {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) return false;
  *key = it->second.key;
  return true;
}

std::vector<VersionDecision> VersionRegistry::Quarantined() const {
  std::vector<VersionDecision> out;
  for (const auto& [key, entry] : versions_) {
    if (!entry.quarantined) continue;
    out.push_back({entry.since, key, VersionDecision::Action::kQuarantine, entry.by,
                   entry.reason});
  }
  return out;
}

std::vector<VersionKey> VersionRegistry::Restore(const std::vector<VersionDecision>& persisted) {
  std::vector<VersionKey> restored;
  for (const VersionDecision& decision : persisted) {
    const VersionKey& key = decision.key;
    if (IsQuarantined(key)) continue;
    if (key == self_) {
      Record({clock_->Now(), key, VersionDecision::Action::kRefused, decision.by,
              absl::StrCat("restored quarantine (", decision.reason,
                           ") not applied: it is the primary master's own version")});
      ++generation_;
      continue;
    }
    Entry& entry = versions_[key];
    entry.quarantined = true;
    entry.reason = decision.reason;
    entry.by = decision.by;
    entry.since = decision.at;
    ++generation_;
    CELLAR_LOG(WARNING) << "version " << key.ToString() << " quarantined (restored, by "
                        << decision.by << "): " << decision.reason;
    Record({clock_->Now(), key, VersionDecision::Action::kQuarantine, decision.by,
            absl::StrCat("restored: ", decision.reason)});
    restored.push_back(key);
  }
  return restored;
}

void VersionRegistry::Record(VersionDecision decision) {
  history_.push_back(std::move(decision));
  while (history_.size() > kMaxHistory) history_.pop_front();
}

}  // namespace cellar::master
