#include "services/admin/admin_service.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "services/admin/alert_rules.h"
#include "services/common/channel.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"

namespace cellar::admin {
namespace {

using grpc::StatusCode;

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(StatusCode::INVALID_ARGUMENT, message);
}

void SetTime(absl::Time t, google::protobuf::Timestamp* out) {
  const int64_t nanos = absl::ToUnixNanos(t);
  out->set_seconds(nanos / 1000000000);
  out->set_nanos(static_cast<int32_t>(nanos % 1000000000));
  if (out->nanos() < 0) {
    out->set_seconds(out->seconds() - 1);
    out->set_nanos(out->nanos() + 1000000000);
  }
}

void ToProto(const Alert& alert, cellar::v1::Alert* out) {
  out->set_id(alert.id);
  out->set_cluster(alert.spec.cluster);
  out->set_kind(alert.spec.kind);
  out->set_subject(alert.spec.subject);
  out->set_severity(static_cast<cellar::v1::AlertSeverity>(alert.spec.severity));
  out->set_summary(alert.spec.summary);
  out->set_help(alert.spec.help);
  out->set_help_uri(alert.spec.help_uri);
  SetTime(alert.first_seen, out->mutable_first_seen());
  SetTime(alert.last_seen, out->mutable_last_seen());
  out->set_count(alert.count);
  out->set_acknowledged(alert.acknowledged);
  if (alert.acknowledged) {
    out->set_acknowledged_by(alert.acknowledged_by);
    SetTime(alert.acknowledged_at, out->mutable_acknowledged_time());
  }
  out->set_active(alert.active);
  if (!alert.active) SetTime(alert.resolved_at, out->mutable_resolved_time());
}

// Storages / clients by state, as GetClusterStatus and ListClusters count them.
struct NodeCounts {
  uint32_t storages_running = 0;
  uint32_t storages_total = 0;
  uint32_t clients_connected = 0;
};

NodeCounts CountNodes(const cellar::v1::GetClusterInfoResponse& info) {
  NodeCounts counts;
  for (const auto& node : info.nodes()) {
    if (node.role() == cellar::v1::NODE_ROLE_STORAGE) {
      ++counts.storages_total;
      if (node.state() == cellar::v1::NODE_RUNNING) ++counts.storages_running;
    } else if (node.role() == cellar::v1::NODE_ROLE_CLIENT &&
               node.state() == cellar::v1::NODE_RUNNING) {
      ++counts.clients_connected;
    }
  }
  return counts;
}

bool Connected(const cellar::v1::NodeInfo& node) {
  return node.state() == cellar::v1::NODE_RUNNING || node.state() == cellar::v1::NODE_PENDING;
}

int64_t UptimeSeconds(const cellar::v1::NodeInfo& node, absl::Time now) {
  if (!Connected(node) || node.registered_unix_ms() <= 0) return 0;
  const absl::Duration up = now - absl::FromUnixMillis(node.registered_unix_ms());
  return std::max<int64_t>(0, absl::ToInt64Seconds(up));
}

// `bytes` as valid UTF-8: invalid bytes become \xNN.
std::string PrintableText(const std::string& bytes) {
  std::string out;
  size_t i = 0;
  while (i < bytes.size()) {
    const unsigned char c = static_cast<unsigned char>(bytes[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool ok = len > 0 && i + len <= bytes.size();
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (static_cast<unsigned char>(bytes[i + k]) & 0xc0) == 0x80;
    }
    if (ok && len > 1) {
      // No overlong forms or surrogates.
      const unsigned char c1 = static_cast<unsigned char>(bytes[i + 1]);
      if ((len == 2 && c < 0xc2) || (len == 3 && c == 0xe0 && c1 < 0xa0) ||
          (len == 3 && c == 0xed && c1 >= 0xa0) || (len == 4 && c == 0xf0 && c1 < 0x90) ||
          (len == 4 && (c > 0xf4 || (c == 0xf4 && c1 >= 0x90)))) {
        ok = false;
      }
    }
    if (ok) {
      out.append(bytes, i, len);
      i += len;
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
      ++i;
    }
  }
  return out;
}

// "S1" -> storage id 1, etc. False if malformed.
bool ParseNodeName(absl::string_view name, uint32_t* node_id) {
  if (name.size() < 2) return false;
  common::NodeKind kind;
  switch (absl::ascii_toupper(static_cast<unsigned char>(name[0]))) {
    case 'S':
      kind = common::NodeKind::kStorage;
      break;
    case 'M':
      kind = common::NodeKind::kMaster;
      break;
    case 'A':
      kind = common::NodeKind::kAdmin;
      break;
    case 'C':
      kind = common::NodeKind::kClient;
      break;
    default:
      return false;
  }
  uint32_t index = 0;
  const absl::string_view digits = name.substr(1);
  if (!std::all_of(digits.begin(), digits.end(),
                   [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }) ||
      !absl::SimpleAtoi(digits, &index) || index == 0 || index > 0xffffffu) {
    return false;
  }
  *node_id = common::MakeNodeId(kind, index);
  return true;
}

}  // namespace

AdminService::AdminService(ClusterClients* clusters, AlertIndex* alerts,
                           const common::Clock* clock)
    : clusters_(clusters), alerts_(alerts), clock_(clock) {}

grpc::Status AdminService::GetClusterStatus(grpc::ServerContext*,
                                            const cellar::v1::GetClusterStatusRequest* request,
                                            cellar::v1::GetClusterStatusResponse* response) {
  absl::StatusOr<std::string> cluster = clusters_->Resolve(request->cluster());
  if (!cluster.ok()) return common::ToGrpcStatus(cluster.status());
  auto info = clusters_->GetClusterInfo(*cluster);
  if (!info.ok()) return common::ToGrpcStatus(info.status());
  response->set_cluster(*cluster);
  response->set_cluster_name(info->cluster_name());
  response->set_cluster_state(info->cluster_state());
  response->set_primary_master_node_id(info->master_node_id());
  const NodeCounts counts = CountNodes(*info);
  response->set_storages_running(counts.storages_running);
  response->set_storages_total(counts.storages_total);
  response->set_clients_connected(counts.clients_connected);
  response->set_last_oid(info->last_oid());
  response->set_last_tid(info->last_tid());
  response->set_last_tid_time(info->last_tid() == 0 ? "" : common::TidTime(info->last_tid()));
  response->set_ptid(info->partition_table().ptid());
  response->set_num_partitions(info->partition_table().num_partitions());
  response->set_num_replicas(info->partition_table().num_replicas());
  response->set_operational(info->operational());
  AlertFilter filter;
  filter.cluster = *cluster;
  response->set_active_alerts(static_cast<uint32_t>(alerts_->List(filter).size()));
  return grpc::Status::OK;
}

grpc::Status AdminService::ListNodes(grpc::ServerContext*,
                                     const cellar::v1::ListNodesRequest* request,
                                     cellar::v1::ListNodesResponse* response) {
  auto info = clusters_->GetClusterInfo(request->cluster());
  if (!info.ok()) return common::ToGrpcStatus(info.status());
  const absl::Time now = clock_->Now();
  for (const auto& node : info->nodes()) {
    if (Connected(node)) {
      (*response->mutable_uptime_seconds())[common::NodeName(node.node_id())] =
          UptimeSeconds(node, now);
    }
  }
  *response->mutable_nodes() = info->nodes();
  return grpc::Status::OK;
}

grpc::Status AdminService::GetNode(grpc::ServerContext*, const cellar::v1::GetNodeRequest* request,
                                   cellar::v1::GetNodeResponse* response) {
  uint32_t node_id = request->node_id();
  if (node_id != 0 && !request->name().empty()) {
    return Invalid("give node_id or name, not both");
  }
  if (node_id == 0) {
    if (request->name().empty()) return Invalid("node_id or name: one is required");
    if (!ParseNodeName(request->name(), &node_id)) {
      return Invalid(absl::StrCat("name: \"", request->name(),
                                  "\" is not a node name such as S1, M1, A1 or C1"));
    }
  }
  auto info = clusters_->GetClusterInfo(request->cluster());
  if (!info.ok()) return common::ToGrpcStatus(info.status());
  for (const auto& node : info->nodes()) {
    if (node.node_id() != node_id) continue;
    *response->mutable_node() = node;
    response->set_name(common::NodeName(node_id));
    response->set_uptime_seconds(UptimeSeconds(node, clock_->Now()));
    if (node.registered_unix_ms() > 0) {
      SetTime(absl::FromUnixMillis(node.registered_unix_ms()), response->mutable_registered_time());
    }
    return grpc::Status::OK;
  }
  return grpc::Status(StatusCode::NOT_FOUND,
                      absl::StrCat("the master knows no node ", common::NodeName(node_id),
                                   " (id ", node_id, "): see ListNodes"));
}

grpc::Status AdminService::GetPartitionTable(grpc::ServerContext*,
                                             const cellar::v1::GetPartitionTableRequest* request,
                                             cellar::v1::GetPartitionTableResponse* response) {
  auto info = clusters_->GetClusterInfo(request->cluster());
  if (!info.ok()) return common::ToGrpcStatus(info.status());
  *response->mutable_partition_table() = info->partition_table();
  return grpc::Status::OK;
}

grpc::Status AdminService::StartCluster(grpc::ServerContext*,
                                        const cellar::v1::AdminStartClusterRequest* request,
                                        cellar::v1::AdminStartClusterResponse* response) {
  auto state = clusters_->StartCluster(request->cluster());
  if (!state.ok()) return common::ToGrpcStatus(state.status());
  response->set_cluster_state(*state);
  return grpc::Status::OK;
}

grpc::Status AdminService::LastTransactions(
    grpc::ServerContext*, const cellar::v1::AdminLastTransactionsRequest* request,
    cellar::v1::AdminLastTransactionsResponse* response) {
  if (request->limit() > 1000) return Invalid("limit: must be at most 1000");
  const uint32_t limit = request->limit() == 0 ? 10 : request->limit();
  auto info = clusters_->GetClusterInfo(request->cluster());
  if (!info.ok()) return common::ToGrpcStatus(info.status());
  std::vector<cellar::v1::TransactionInfo> all;
  absl::flat_hash_set<uint64_t> seen;
  int answered = 0;
  grpc::Status last_error;
  for (const auto& node : info->nodes()) {
    if (node.role() != cellar::v1::NODE_ROLE_STORAGE ||
        node.state() != cellar::v1::NODE_RUNNING) {
      continue;
    }
    grpc::ClientContext context;
    common::SetDeadline(&context, clusters_->rpc_timeout());
    cellar::v1::LastTransactionsRequest req;
    req.set_limit(limit);
    cellar::v1::LastTransactionsResponse resp;
    grpc::Status s = clusters_->StorageStub(node.address())->LastTransactions(&context, req, &resp);
    if (!s.ok()) {
      last_error = s;
      continue;
    }
    ++answered;
    for (const auto& txn : resp.transactions()) {
      if (seen.insert(txn.tid()).second) all.push_back(txn);
    }
  }
  if (answered == 0 && !last_error.ok()) {
    return grpc::Status(last_error.error_code(),
                        absl::StrCat("no storage answered LastTransactions: ",
                                     last_error.error_message()),
                        last_error.error_details());
  }
  std::sort(all.begin(), all.end(),
            [](const auto& a, const auto& b) { return a.tid() > b.tid(); });
  if (all.size() > limit) all.resize(limit);
  for (auto& txn : all) {
    cellar::v1::TransactionSummary* line = response->add_listing();
    line->set_tid(common::TidHex(txn.tid()));
    line->set_time(common::TidTime(txn.tid()));
    line->set_user(PrintableText(txn.user()));
    line->set_description(PrintableText(txn.description()));
    line->set_size_bytes(txn.size_bytes());
    line->set_objects(static_cast<uint32_t>(txn.oids_size()));
    *response->add_transactions() = std::move(txn);
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::ObjectHistory(grpc::ServerContext*,
                                         const cellar::v1::ObjectHistoryRequest* request,
                                         cellar::v1::ObjectHistoryResponse* response) {
  if (request->limit() > 1000) return Invalid("limit: must be at most 1000");
  auto info = clusters_->GetClusterInfo(request->cluster());
  if (!info.ok()) return common::ToGrpcStatus(info.status());
  const auto& pt = info->partition_table();
  if (pt.num_partitions() == 0) {
    return grpc::Status(StatusCode::UNAVAILABLE, "the cluster has no partition table yet");
  }
  const uint32_t partition = static_cast<uint32_t>(request->oid() % pt.num_partitions());
  grpc::Status last(StatusCode::UNAVAILABLE,
                    absl::StrCat("no readable cell of partition ", partition,
                                 " is on a running storage"));
  for (const auto& row : pt.rows()) {
    if (row.partition() != partition) continue;
    for (const auto& cell : row.cells()) {
      if (cell.state() != cellar::v1::CELL_UP_TO_DATE &&
          cell.state() != cellar::v1::CELL_FEEDING) {
        continue;
      }
      for (const auto& node : info->nodes()) {
        if (node.node_id() != cell.node_id() || node.state() != cellar::v1::NODE_RUNNING) {
          continue;
        }
        grpc::ClientContext context;
        common::SetDeadline(&context, clusters_->rpc_timeout());
        cellar::v1::HistoryRequest req;
        req.set_oid(request->oid());
        req.set_limit(request->limit());
        cellar::v1::HistoryResponse resp;
        last = clusters_->StorageStub(node.address())->History(&context, req, &resp);
        if (last.ok()) {
          response->set_oid(request->oid());
          *response->mutable_revisions() = resp.revisions();
          return last;
        }
        if (last.error_code() == StatusCode::NOT_FOUND ||
            last.error_code() == StatusCode::INVALID_ARGUMENT) {
          return last;
        }
      }
    }
  }
  return last;
}

grpc::Status AdminService::ListClusters(grpc::ServerContext*,
                                        const cellar::v1::ListClustersRequest*,
                                        cellar::v1::ListClustersResponse* response) {
  const std::vector<Alert> active = alerts_->List();
  for (const ClusterTarget& target : clusters_->clusters()) {
    cellar::v1::ClusterSummary* summary = response->add_clusters();
    summary->set_name(target.name);
    for (const std::string& a : target.master_addresses) summary->add_master_addresses(a);
    summary->set_is_default(target.name == clusters_->default_cluster());
    for (const Alert& alert : active) {
      if (alert.spec.cluster != target.name) continue;
      summary->set_active_alerts(summary->active_alerts() + 1);
      if (alert.spec.severity == AlertSeverity::kCritical) {
        summary->set_critical_alerts(summary->critical_alerts() + 1);
      }
    }
    auto info = clusters_->GetClusterInfo(target.name);
    if (!info.ok()) {
      summary->set_reachable(false);
      summary->set_error(std::string(info.status().message()));
      continue;
    }
    summary->set_reachable(true);
    summary->set_cluster_name(info->cluster_name());
    summary->set_cluster_state(info->cluster_state());
    summary->set_operational(info->operational());
    const NodeCounts counts = CountNodes(*info);
    summary->set_storages_running(counts.storages_running);
    summary->set_storages_total(counts.storages_total);
    summary->set_clients_connected(counts.clients_connected);
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::ListAlerts(grpc::ServerContext*,
                                      const cellar::v1::ListAlertsRequest* request,
                                      cellar::v1::ListAlertsResponse* response) {
  AlertFilter filter;
  if (!request->cluster().empty()) {
    absl::StatusOr<std::string> cluster = clusters_->Resolve(request->cluster());
    if (!cluster.ok()) return common::ToGrpcStatus(cluster.status());
    filter.cluster = *cluster;
  }
  switch (request->min_severity()) {
    case cellar::v1::ALERT_SEVERITY_UNSPECIFIED:
      break;
    case cellar::v1::ALERT_INFO:
    case cellar::v1::ALERT_WARNING:
    case cellar::v1::ALERT_CRITICAL:
      filter.min_severity = static_cast<AlertSeverity>(request->min_severity());
      break;
    default:
      return Invalid(absl::StrCat("min_severity: unknown severity ", request->min_severity()));
  }
  if (!request->kind().empty()) {
    const auto& kinds = AllAlertKinds();
    if (std::find(kinds.begin(), kinds.end(), request->kind()) == kinds.end()) {
      return Invalid(absl::StrCat("kind: unknown kind \"", request->kind(),
                                  "\" (known: ", absl::StrJoin(kinds, ", "), ")"));
    }
    filter.kind = request->kind();
  }
  if (request->has_acknowledged()) filter.acknowledged = request->acknowledged();
  filter.include_resolved = request->include_resolved();
  for (const Alert& alert : alerts_->List(filter)) ToProto(alert, response->add_alerts());
  return grpc::Status::OK;
}

grpc::Status AdminService::AcknowledgeAlert(grpc::ServerContext*,
                                            const cellar::v1::AcknowledgeAlertRequest* request,
                                            cellar::v1::AcknowledgeAlertResponse* response) {
  if (request->id().empty()) return Invalid("id: required (see ListAlerts)");
  if (request->by().size() > 200) return Invalid("by: at most 200 bytes");
  absl::StatusOr<Alert> alert = alerts_->Acknowledge(request->id(), request->by());
  if (!alert.ok()) return common::ToGrpcStatus(alert.status());
  ToProto(*alert, response->mutable_alert());
  return grpc::Status::OK;
}

grpc::Status AdminService::DeleteAlert(grpc::ServerContext*,
                                       const cellar::v1::DeleteAlertRequest* request,
                                       cellar::v1::DeleteAlertResponse*) {
  if (request->id().empty()) return Invalid("id: required (see ListAlerts)");
  return common::ToGrpcStatus(alerts_->Delete(request->id()));
}

}  // namespace cellar::admin
