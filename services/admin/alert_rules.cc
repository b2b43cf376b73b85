#include "services/admin/alert_rules.h"

#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "services/common/ids.h"

namespace cellar::admin {
namespace {

using cellar::v1::GetClusterInfoResponse;

// What to do, per kind: one or two sentences; the help page says more.
constexpr char kHelpUnreachable[] =
    "Check that the master pods/processes run and that the admin can reach them "
    "(address, network policy); then look at the master's log.";
constexpr char kHelpNotOperational[] =
    "Clients cannot read or write some partitions. Bring back the DOWN storages that hold "
    "their cells (ListNodes, GetPartitionTable); if they are lost for good, see the help page.";
constexpr char kHelpNodeDown[] =
    "Restart the storage node or find out why it left (its log, its disk, its database); its "
    "cells are not being written, so redundancy is reduced until it is back.";
constexpr char kHelpOutOfDate[] =
    "Replication to these cells is slow or stuck: check the storage's log and load, and that "
    "a readable cell of each partition is on a running storage.";
constexpr char kHelpCorrupted[] =
    "A replica check found these cells differ from their peers: they are neither read nor "
    "written. Keep the node; repair the cells from a good replica (see the help page).";
constexpr char kHelpStalled[] =
    "Replication made no progress: check the storage's log, the source cell's node and the "
    "network between them.";
constexpr char kHelpClockSkew[] =
    "Fix time synchronisation (NTP/chrony) on the node's host. TIDs come from the primary "
    "master's clock; a clock far off makes TIDs (and their times) misleading.";
constexpr char kHelpBackendErrors[] =
    "The storage's database reports errors: check its log and the database server "
    "(connections, disk, permissions).";
constexpr char kHelpDisk[] =
    "Free space on the storage's volume: pack old revisions, grow the volume, or add "
    "storage nodes and rebalance.";

std::string Percent(double fraction) { return absl::StrFormat("%.1f%%", fraction * 100); }

std::string PartitionList(const std::vector<uint32_t>& partitions) {
  constexpr size_t kMax = 8;
  std::vector<std::string> parts;
  for (size_t i = 0; i < partitions.size() && i < kMax; ++i) {
    parts.push_back(absl::StrCat(partitions[i]));
  }
  std::string out = absl::StrJoin(parts, ", ");
  if (partitions.size() > kMax) absl::StrAppend(&out, ", ...");
  return out;
}

std::string ShortDuration(absl::Duration d) {
  return absl::FormatDuration(absl::Trunc(d, absl::Seconds(1)));
}

}  // namespace

const std::vector<std::string>& AllAlertKinds() {
  static const std::vector<std::string>* const kinds = new std::vector<std::string>{
      kClusterUnreachable, kClusterNotRunning, kClusterNotOperational, kNodeDown,
      kCellOutOfDate,      kCellCorrupted,     kReplicationStalled,    kClockSkew,
      kBackendErrors,      kDiskAlmostFull};
  return *kinds;
}

ClusterAlertRules::ClusterAlertRules(std::string cluster, AlertRuleOptions options)
    : cluster_(std::move(cluster)), options_(std::move(options)) {}

absl::Duration ClusterAlertRules::Held(const std::string& key, absl::Time now) {
  touched_[key] = now;
  auto [it, inserted] = since_.try_emplace(key, now);
  return now - it->second;
}

AlertSpec ClusterAlertRules::Spec(const std::string& kind, const std::string& subject,
                                  AlertSeverity severity, std::string summary,
                                  std::string help) const {
  AlertSpec spec;
  spec.cluster = cluster_;
  spec.kind = kind;
  spec.subject = subject;
  spec.severity = severity;
  spec.summary = std::move(summary);
  spec.help = std::move(help);
  spec.help_uri = absl::StrCat(options_.help_base, kind, ".md");
  return spec;
}

AlertEvaluation ClusterAlertRules::Evaluate(const ClusterObservation& obs) {
  AlertEvaluation out;
  const absl::Time now = obs.now;
  if (!obs.reachable.ok()) {
    // Nothing else can be judged: keep the other alerts as they are.
    out.evaluated_kinds = {kClusterUnreachable};
    out.alerts.push_back(
        Spec(kClusterUnreachable, "", AlertSeverity::kCritical,
             obs.reachable.message().empty()
                 ? absl::StrCat("cluster \"", cluster_, "\": no master answered")
                 : std::string(obs.reachable.message()),
             kHelpUnreachable));
    return out;
  }
  touched_.clear();
  out.evaluated_kinds = {kClusterUnreachable, kClusterNotRunning, kClusterNotOperational,
                         kNodeDown, kCellOutOfDate, kCellCorrupted};
  const GetClusterInfoResponse& info = obs.info;

  // Node states by id.
  absl::flat_hash_map<uint32_t, const cellar::v1::NodeInfo*> nodes;
  for (const auto& node : info.nodes()) nodes[node.node_id()] = &node;
  auto running = [&](uint32_t id) {
    auto it = nodes.find(id);
    return it != nodes.end() && it->second->state() == cellar::v1::NODE_RUNNING;
  };

  // cluster-not-running.
  if (info.cluster_state() != cellar::v1::CLUSTER_RUNNING) {
    const absl::Duration held = Held("not-running", now);
    if (held >= options_.not_running_grace) {
      const std::string state = cellar::v1::ClusterState_Name(info.cluster_state());
      std::string help;
      switch (info.cluster_state()) {
        case cellar::v1::CLUSTER_RECOVERING:
          help =
              "The master waits for the storages that hold readable cells. Start the missing "
              "storages (ListNodes shows them DOWN). If they are lost for good, StartCluster "
              "starts without them (see the help page first).";
          break;
        case cellar::v1::CLUSTER_STOPPING:
          help = "The cluster is being stopped by an operator; nothing to do unless unexpected.";
          break;
        default:
          help = "Should pass by itself; if it persists, read the primary master's log.";
      }
      out.alerts.push_back(Spec(
          kClusterNotRunning, "",
          info.cluster_state() == cellar::v1::CLUSTER_STOPPING ? AlertSeverity::kInfo
                                                               : AlertSeverity::kWarning,
          absl::StrCat("cluster is ", state, " (not RUNNING) for ", ShortDuration(held)),
          std::move(help)));
    }
  }

  // cluster-not-operational: partitions without a readable cell on a
  // running storage.
  std::vector<uint32_t> unreadable;
  for (const auto& row : info.partition_table().rows()) {
    bool readable = false;
    for (const auto& cell : row.cells()) {
      if ((cell.state() == cellar::v1::CELL_UP_TO_DATE ||
           cell.state() == cellar::v1::CELL_FEEDING) &&
          running(cell.node_id())) {
        readable = true;
      }
    }
    if (!readable) unreadable.push_back(row.partition());
  }
  if (!info.operational() || !unreadable.empty()) {
    const absl::Duration held = Held("not-operational", now);
    if (held >= options_.not_running_grace) {
      std::string summary =
          unreadable.empty()
              ? std::string("the partition table is not operational")
              : absl::StrCat(unreadable.size(), " of ", info.partition_table().rows_size(),
                             " partitions have no readable cell on a running storage (",
                             PartitionList(unreadable), ")");
      absl::StrAppend(&summary, " for ", ShortDuration(held));
      out.alerts.push_back(Spec(kClusterNotOperational, "", AlertSeverity::kCritical,
                                std::move(summary), kHelpNotOperational));
    }
  }

  // Cells per node, by state.
  std::map<uint32_t, std::vector<uint32_t>> node_cells, out_of_date, corrupted;
  std::map<uint32_t, absl::Duration> out_of_date_longest, corrupted_longest;
  for (const auto& row : info.partition_table().rows()) {
    for (const auto& cell : row.cells()) {
      node_cells[cell.node_id()].push_back(row.partition());
      if (cell.state() == cellar::v1::CELL_OUT_OF_DATE) {
        const absl::Duration held =
            Held(absl::StrCat("ood/", row.partition(), "/", cell.node_id()), now);
        if (held >= options_.out_of_date_threshold) {
          out_of_date[cell.node_id()].push_back(row.partition());
          auto& longest = out_of_date_longest[cell.node_id()];
          if (held > longest) longest = held;
        }
      } else if (cell.state() == cellar::v1::CELL_CORRUPTED) {
        const absl::Duration held =
            Held(absl::StrCat("corrupted/", row.partition(), "/", cell.node_id()), now);
        if (held >= options_.corrupted_threshold) {
          corrupted[cell.node_id()].push_back(row.partition());
          auto& longest = corrupted_longest[cell.node_id()];
          if (held > longest) longest = held;
        }
      }
    }
  }

  // node-down.
  for (const auto& node : info.nodes()) {
    if (node.role() != cellar::v1::NODE_ROLE_STORAGE ||
        node.state() != cellar::v1::NODE_DOWN) {
      continue;
    }
    const std::string name = common::NodeName(node.node_id());
    const absl::Duration held = Held(absl::StrCat("down/", node.node_id()), now);
    if (held < options_.node_down_grace) continue;
    const auto& cells = node_cells[node.node_id()];
    out.alerts.push_back(Spec(
        kNodeDown, name, AlertSeverity::kWarning,
        absl::StrCat("storage ", name, " (", node.address(), ") is DOWN; it holds ",
                     cells.size(), " cells",
                     cells.empty() ? "" : absl::StrCat(" (partitions ", PartitionList(cells), ")")),
        kHelpNodeDown));
  }

  for (const auto& [node_id, partitions] : out_of_date) {
    const std::string name = common::NodeName(node_id);
    out.alerts.push_back(Spec(
        kCellOutOfDate, name, AlertSeverity::kWarning,
        absl::StrCat(name, ": ", partitions.size(), " cells OUT_OF_DATE for more than ",
                     ShortDuration(options_.out_of_date_threshold), " (partitions ",
                     PartitionList(partitions), "; longest ",
                     ShortDuration(out_of_date_longest[node_id]), ")"),
        kHelpOutOfDate));
  }
  for (const auto& [node_id, partitions] : corrupted) {
    const std::string name = common::NodeName(node_id);
    out.alerts.push_back(Spec(kCellCorrupted, name, AlertSeverity::kCritical,
                              absl::StrCat(name, ": ", partitions.size(),
                                           " cells CORRUPTED (partitions ",
                                           PartitionList(partitions), ")"),
                              kHelpCorrupted));
  }

  // replication-stalled.
  if (obs.replication_measured) {
    out.evaluated_kinds.push_back(kReplicationStalled);
    absl::flat_hash_map<std::string, std::pair<uint64_t, absl::Time>> next;
    std::map<uint32_t, std::vector<uint32_t>> stalled;
    std::map<uint32_t, absl::Duration> stalled_longest;
    for (const ReplicationSample& sample : obs.replication) {
      bool out_of_date_now = false;
      for (const auto& row : info.partition_table().rows()) {
        if (row.partition() != sample.partition) continue;
        for (const auto& cell : row.cells()) {
          if (cell.node_id() == sample.node_id &&
              cell.state() == cellar::v1::CELL_OUT_OF_DATE) {
            out_of_date_now = true;
          }
        }
      }
      if (!out_of_date_now) continue;
      const std::string key = absl::StrCat(sample.partition, "/", sample.node_id);
      auto it = replication_.find(key);
      std::pair<uint64_t, absl::Time> entry{sample.position, now};
      if (it != replication_.end() && it->second.first == sample.position) {
        entry.second = it->second.second;  // no progress since then
      }
      next[key] = entry;
      const absl::Duration still = now - entry.second;
      if (still >= options_.replication_stall_threshold) {
        stalled[sample.node_id].push_back(sample.partition);
        auto& longest = stalled_longest[sample.node_id];
        if (still > longest) longest = still;
      }
    }
    replication_ = std::move(next);
    for (const auto& [node_id, partitions] : stalled) {
      const std::string name = common::NodeName(node_id);
      out.alerts.push_back(Spec(
          kReplicationStalled, name, AlertSeverity::kWarning,
          absl::StrCat(name, ": replication of ", partitions.size(),
                       " cells made no progress for ", ShortDuration(stalled_longest[node_id]),
                       " (partitions ", PartitionList(partitions), ")"),
          kHelpStalled));
    }
  }

  // clock-skew.
  if (obs.clock_measured) {
    out.evaluated_kinds.push_back(kClockSkew);
    for (const ClockSkewSample& sample : obs.clock_skews) {
      const absl::Duration magnitude = absl::AbsDuration(sample.skew);
      if (magnitude <= options_.clock_skew_threshold) continue;
      out.alerts.push_back(Spec(
          kClockSkew, sample.subject,
          magnitude > options_.clock_skew_threshold * 10 ? AlertSeverity::kCritical
                                                         : AlertSeverity::kWarning,
          absl::StrCat(sample.subject, ": clock ",
                       sample.skew > absl::ZeroDuration() ? "ahead" : "behind", " by ",
                       absl::FormatDuration(absl::Trunc(magnitude + absl::Microseconds(500),
                                                        absl::Milliseconds(1))),
                       " (threshold ", absl::FormatDuration(options_.clock_skew_threshold),
                       sample.source.empty() ? "" : "; " + sample.source, ")"),
          kHelpClockSkew));
    }
  }

  // backend-errors and disk-almost-full.
  if (!obs.storages.empty() || !obs.storages_silent.empty()) {
    out.evaluated_kinds.push_back(kBackendErrors);
    out.evaluated_kinds.push_back(kDiskAlmostFull);
    absl::flat_hash_map<uint32_t, std::vector<AlertSpec>> kept;
    for (uint32_t node_id : obs.storages_silent) {
      auto it = storage_alerts_.find(node_id);
      if (it == storage_alerts_.end()) continue;
      for (const AlertSpec& spec : it->second) out.alerts.push_back(spec);
      kept[node_id] = it->second;
    }
    storage_alerts_ = std::move(kept);
    for (const StorageHealthSample& s : obs.storages) {
      const size_t first_alert = out.alerts.size();
      const std::string name = common::NodeName(s.node_id);
      if (s.backend_errors_total.has_value()) {
        const uint64_t total = *s.backend_errors_total;
        auto it = backend_errors_.find(s.node_id);
        if (it == backend_errors_.end() || total < it->second.first) {
          // First sample, or the node restarted: no known growth.
          backend_errors_[s.node_id] = {total, absl::InfinitePast()};
        } else if (total > it->second.first) {
          it->second = {total, now};
        }
        const absl::Time grew = backend_errors_[s.node_id].second;
        if (now - grew < options_.backend_error_window) {
          out.alerts.push_back(Spec(
              kBackendErrors, name, AlertSeverity::kCritical,
              absl::StrCat(name, ": backend errors grew to ", total, " in the last ",
                           ShortDuration(options_.backend_error_window)),
              kHelpBackendErrors));
        }
      }
      if (s.disk_free_bytes.has_value() && s.disk_total_bytes.has_value() &&
          *s.disk_total_bytes > 0) {
        const double free = static_cast<double>(*s.disk_free_bytes) /
                            static_cast<double>(*s.disk_total_bytes);
        if (free < options_.disk_free_warning) {
          out.alerts.push_back(Spec(
              kDiskAlmostFull, name,
              free < options_.disk_free_critical ? AlertSeverity::kCritical
                                                 : AlertSeverity::kWarning,
              absl::StrCat(name, ": ", Percent(free), " of its disk free (",
                           *s.disk_free_bytes >> 20, " MiB of ", *s.disk_total_bytes >> 20,
                           " MiB)"),
              kHelpDisk));
        }
      }
      for (size_t i = first_alert; i < out.alerts.size(); ++i) {
        storage_alerts_[s.node_id].push_back(out.alerts[i]);
      }
    }
  }

  // Conditions that no longer hold start from scratch next time.
  for (auto it = since_.begin(); it != since_.end();) {
    if (!touched_.contains(it->first)) {
      since_.erase(it++);
    } else {
      ++it;
    }
  }
  return out;
}

}  // namespace cellar::admin
