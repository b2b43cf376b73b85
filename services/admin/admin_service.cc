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
#include "services/common/feature_flags.h"
#include "services/common/cluster_tokens.h"
#include "services/common/channel.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/server_auth.h"
#include "services/common/storage_sizes.h"

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

// GetClusterStatus waits at most this long (or rpc_timeout if shorter) for
// the storages' sizes.
constexpr absl::Duration kSizesTimeout = absl::Seconds(2);

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
  // Bounded: a storage that does not answer leaves its sizes unset.
  const common::ClusterSizes sizes = common::FetchClusterSizes(
      *info, [this](const std::string& address) { return clusters_->StorageStub(address); },
      std::min(clusters_->rpc_timeout(), kSizesTimeout));
  for (const common::NodeSizes& node : sizes.nodes) {
    cellar::v1::StorageNodeSize* out = response->add_storage_sizes();
    out->set_node_id(node.node_id);
    out->set_name(common::NodeName(node.node_id));
    if (!node.status.ok()) {
      out->set_error(node.status.ToString());
      continue;
    }
    out->set_objects(node.sizes.objects);
    out->set_revisions(node.sizes.revisions);
    out->set_bytes(node.sizes.bytes);
    out->set_readable_cells(node.readable_cells);
  }
  response->set_size_partitions_counted(sizes.partitions_counted);
  if (sizes.num_partitions > 0 && sizes.partitions_counted == sizes.num_partitions) {
    response->set_total_objects(sizes.total.objects);
    response->set_total_revisions(sizes.total.revisions);
    response->set_total_bytes(sizes.total.bytes);
  }
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
      return Invalid(absl::StrCat("name: ", common::Quoted(request->name()),
                                  " is not a node name such as S1, M1, A1 or C1"));
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
  // Nothing past the last tid the master published: a storage may hold a
  // commit that is still being finished (or, after a master restart, not
  // yet verified), which no client snapshot includes.
  const uint64_t published = info->last_tid();
  if (published == 0) return grpc::Status::OK;
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
    req.set_before_tid(published + 1);
    cellar::v1::LastTransactionsResponse resp;
    grpc::Status s = clusters_->StorageStub(node.address())->LastTransactions(&context, req, &resp);
    if (!s.ok()) {
      last_error = s;
      continue;
    }
    ++answered;
    for (const auto& txn : resp.transactions()) {
      if (txn.tid() <= published && seen.insert(txn.tid()).second) all.push_back(txn);
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
          // Only revisions the master published (see LastTransactions).
          for (const auto& revision : resp.revisions()) {
            if (revision.serial() <= info->last_tid()) *response->add_revisions() = revision;
          }
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
      return Invalid(absl::StrCat("kind: unknown kind ", common::Quoted(request->kind()),
                                  " (known: ", absl::StrJoin(kinds, ", "), ")"));
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

// ---------------------------------------------------------------------------
// Operator actions: validate, resolve node names, forward to the primary
// master (StopNode: to the storage), pass refusals on as they came.

namespace {

// Partition-table changes and kills wait for the master to apply and
// broadcast; a truncation waits for every storage.
absl::Duration ActionTimeout(absl::Duration rpc_timeout) {
  return std::max(rpc_timeout, absl::Seconds(30));
}
absl::Duration TruncateTimeout(absl::Duration rpc_timeout) {
  return std::max(rpc_timeout, absl::Seconds(120));
}

// The node a request names by id (`id_field`) or by name (`name_field`):
// exactly one. INVALID_ARGUMENT otherwise.
absl::StatusOr<uint32_t> RequestNode(uint32_t node_id, const std::string& name,
                                     absl::string_view id_field, absl::string_view name_field) {
  if (node_id != 0 && !name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("give ", id_field, " or ", name_field, ", not both"));
  }
  if (node_id != 0) return node_id;
  if (name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(id_field, " or ", name_field, ": one is required"));
  }
  uint32_t id = 0;
  if (!ParseNodeName(name, &id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        name_field, ": ", common::Quoted(name), " is not a node name such as S1, M1, A1 or C1"));
  }
  return id;
}

// As RequestNode, and the node must be a storage.
absl::StatusOr<uint32_t> RequestStorage(uint32_t node_id, const std::string& name,
                                        absl::string_view id_field,
                                        absl::string_view name_field) {
  absl::StatusOr<uint32_t> id = RequestNode(node_id, name, id_field, name_field);
  if (!id.ok()) return id;
  if (common::NodeKindOf(*id) != common::NodeKind::kStorage) {
    return absl::InvalidArgumentError(absl::StrCat(
        name.empty() ? id_field : name_field, ": ", common::NodeName(*id), " (id ", *id,
        ") is not a storage node"));
  }
  return id;
}

// A master that does not know the rpc (an older version) says so plainly;
// every other answer is passed on as it came.
absl::Status FromMaster(const absl::Status& status, absl::string_view rpc) {
  if (status.code() != absl::StatusCode::kUnimplemented) return status;
  return absl::UnimplementedError(absl::StrCat(
      "the master does not implement Master.", rpc, " (an older version?)",
      status.message().empty() ? "" : ": ", status.message()));
}

void SetUnixMillis(int64_t ms, google::protobuf::Timestamp* out) {
  SetTime(absl::FromUnixMillis(ms), out);
}

}  // namespace

grpc::Status AdminService::SetClusterState(grpc::ServerContext*,
                                           const cellar::v1::AdminSetClusterStateRequest* request,
                                           cellar::v1::AdminSetClusterStateResponse* response) {
  if (request->state() != cellar::v1::CLUSTER_STOPPING &&
      request->state() != cellar::v1::CLUSTER_RUNNING) {
    return Invalid(absl::StrCat("state: ", cellar::v1::ClusterState_Name(request->state()),
                                " cannot be set (CLUSTER_STOPPING or CLUSTER_RUNNING)"));
  }
  CELLAR_LOG(INFO) << "admin: SetClusterState " << cellar::v1::ClusterState_Name(request->state())
                   << " (cluster \"" << request->cluster() << "\")";
  cellar::v1::SetClusterStateRequest req;
  req.set_state(request->state());
  cellar::v1::SetClusterStateResponse resp;
  absl::Status s = clusters_->CallMaster(
      request->cluster(),
      [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->SetClusterState(context, req, &resp);
      },
      ActionTimeout(clusters_->rpc_timeout()));
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "SetClusterState"));
  response->set_cluster_state(resp.cluster_state());
  return grpc::Status::OK;
}

grpc::Status AdminService::ChangePartitionTable(
    absl::string_view cluster, const cellar::v1::ChangePartitionTableRequest& request,
    cellar::v1::PartitionTableChangeResponse* response) {
  CELLAR_LOG(INFO) << "admin: ChangePartitionTable "
                   << cellar::v1::PartitionTableOperation_Name(request.operation())
                   << (request.dry_run() ? " (dry run)" : "") << " (cluster \"" << cluster
                   << "\")";
  cellar::v1::ChangePartitionTableResponse resp;
  absl::Status s = clusters_->CallMaster(
      cluster,
      [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->ChangePartitionTable(context, request, &resp);
      },
      ActionTimeout(clusters_->rpc_timeout()));
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "ChangePartitionTable"));
  response->set_plan(resp.plan());
  *response->mutable_changes() = resp.changes();
  for (const cellar::v1::CellChange& change : resp.changes()) {
    cellar::v1::CellChangeSummary* line = response->add_listing();
    line->set_partition(change.partition());
    line->set_node(common::NodeName(change.node_id()));
    line->set_state(change.state());
  }
  *response->mutable_warnings() = resp.warnings();
  response->set_applied(resp.applied());
  response->set_dry_run(request.dry_run());
  response->set_ptid_before(resp.ptid_before());
  response->set_ptid(resp.ptid());
  response->set_num_replicas(resp.num_replicas());
  return grpc::Status::OK;
}

grpc::Status AdminService::TweakPartitionTable(
    grpc::ServerContext*, const cellar::v1::TweakPartitionTableRequest* request,
    cellar::v1::PartitionTableChangeResponse* response) {
  cellar::v1::ChangePartitionTableRequest req;
  req.set_operation(cellar::v1::PT_TWEAK);
  req.set_dry_run(request->dry_run());
  return ChangePartitionTable(request->cluster(), req, response);
}

grpc::Status AdminService::AddStorages(grpc::ServerContext*,
                                       const cellar::v1::AddStoragesRequest* request,
                                       cellar::v1::PartitionTableChangeResponse* response) {
  if (request->node_ids().empty() && request->names().empty()) {
    return Invalid("node_ids or names: at least one storage is required");
  }
  cellar::v1::ChangePartitionTableRequest req;
  req.set_operation(cellar::v1::PT_ADD);
  req.set_dry_run(request->dry_run());
  absl::flat_hash_set<uint32_t> seen;
  for (uint32_t id : request->node_ids()) {
    absl::StatusOr<uint32_t> node = RequestStorage(id, "", "node_ids", "names");
    if (!node.ok()) return common::ToGrpcStatus(node.status());
    if (seen.insert(*node).second) req.add_node_ids(*node);
  }
  for (const std::string& name : request->names()) {
    absl::StatusOr<uint32_t> node = RequestStorage(0, name, "node_ids", "names");
    if (!node.ok()) return common::ToGrpcStatus(node.status());
    if (seen.insert(*node).second) req.add_node_ids(*node);
  }
  return ChangePartitionTable(request->cluster(), req, response);
}

grpc::Status AdminService::DropStorage(grpc::ServerContext*,
                                       const cellar::v1::DropStorageRequest* request,
                                       cellar::v1::PartitionTableChangeResponse* response) {
  absl::StatusOr<uint32_t> node =
      RequestStorage(request->node_id(), request->name(), "node_id", "name");
  if (!node.ok()) return common::ToGrpcStatus(node.status());
  cellar::v1::ChangePartitionTableRequest req;
  req.set_operation(cellar::v1::PT_DROP);
  req.add_node_ids(*node);
  req.set_dry_run(request->dry_run());
  return ChangePartitionTable(request->cluster(), req, response);
}

grpc::Status AdminService::SetReplicas(grpc::ServerContext*,
                                       const cellar::v1::SetReplicasRequest* request,
                                       cellar::v1::PartitionTableChangeResponse* response) {
  if (!request->has_replicas()) {
    return Invalid("replicas: required (the new R, 0..64; 0 keeps a single copy of each "
                   "partition and must be asked for explicitly)");
  }
  if (request->replicas() > 64) return Invalid("replicas: must be at most 64");
  cellar::v1::ChangePartitionTableRequest req;
  req.set_operation(cellar::v1::PT_SET_REPLICAS);
  req.set_replicas(request->replicas());
  req.set_dry_run(request->dry_run());
  return ChangePartitionTable(request->cluster(), req, response);
}

grpc::Status AdminService::KillNode(grpc::ServerContext*,
                                    const cellar::v1::AdminKillNodeRequest* request,
                                    cellar::v1::AdminKillNodeResponse* response) {
  absl::StatusOr<uint32_t> node =
      RequestNode(request->node_id(), request->name(), "node_id", "name");
  if (!node.ok()) return common::ToGrpcStatus(node.status());
  CELLAR_LOG(INFO) << "admin: KillNode " << common::NodeName(*node)
                   << (request->stop() ? " (and stop it)" : "") << " (cluster \""
                   << request->cluster() << "\")";
  cellar::v1::KillNodeRequest req;
  req.set_node_id(*node);
  req.set_stop(request->stop());
  cellar::v1::KillNodeResponse resp;
  absl::Status s = clusters_->CallMaster(
      request->cluster(),
      [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->KillNode(context, req, &resp);
      },
      ActionTimeout(clusters_->rpc_timeout()));
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "KillNode"));
  *response->mutable_node() = resp.node();
  response->set_name(common::NodeName(*node));
  response->set_stopped(resp.stopped());
  return grpc::Status::OK;
}

grpc::Status AdminService::CheckReplicas(grpc::ServerContext*,
                                         const cellar::v1::AdminCheckReplicasRequest* request,
                                         cellar::v1::AdminCheckReplicasResponse* response) {
  if (request->max_tid() != 0 && request->min_tid() > request->max_tid()) {
    return Invalid("min_tid: must be at most max_tid (or max_tid 0: the last tid)");
  }
  CELLAR_LOG(INFO) << "admin: CheckReplicas (cluster \"" << request->cluster() << "\")";
  cellar::v1::CheckReplicasRequest req;
  *req.mutable_partitions() = request->partitions();
  req.set_min_tid(request->min_tid());
  req.set_max_tid(request->max_tid());
  req.set_with_data(request->with_data());
  cellar::v1::CheckReplicasResponse resp;
  absl::Status s = clusters_->CallMaster(
      request->cluster(), [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->CheckReplicas(context, req, &resp);
      });
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "CheckReplicas"));
  response->set_check_id(resp.check_id());
  return grpc::Status::OK;
}

grpc::Status AdminService::GetCheckStatus(grpc::ServerContext*,
                                          const cellar::v1::AdminGetCheckStatusRequest* request,
                                          cellar::v1::AdminGetCheckStatusResponse* response) {
  cellar::v1::GetCheckStatusRequest req;
  req.set_check_id(request->check_id());
  cellar::v1::GetCheckStatusResponse resp;
  absl::Status s = clusters_->CallMaster(
      request->cluster(), [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->GetCheckStatus(context, req, &resp);
      });
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "GetCheckStatus"));
  response->set_check_id(resp.check_id());
  response->set_running(resp.running());
  response->set_partitions_done(resp.partitions_done());
  response->set_partitions_total(resp.partitions_total());
  response->set_transactions_checked(resp.transactions_checked());
  response->set_min_tid(resp.min_tid());
  response->set_max_tid(resp.max_tid());
  response->set_min_tid_time(resp.min_tid() == 0 ? "" : common::TidTime(resp.min_tid()));
  response->set_max_tid_time(resp.max_tid() == 0 ? "" : common::TidTime(resp.max_tid()));
  for (const cellar::v1::CheckMismatch& m : resp.mismatches()) {
    cellar::v1::CheckMismatchSummary* out = response->add_mismatches();
    out->set_partition(m.partition());
    out->set_node(common::NodeName(m.node_id()));
    out->set_reference_node(common::NodeName(m.reference_node_id()));
    out->set_node_id(m.node_id());
    out->set_reference_node_id(m.reference_node_id());
    out->set_min_tid(common::TidHex(m.min_tid()));
    out->set_max_tid(common::TidHex(m.max_tid()));
    out->set_detail(m.detail());
  }
  response->set_error(resp.error());
  *response->mutable_skipped_partitions() = resp.skipped_partitions();
  if (resp.started_unix_ms() > 0) {
    SetUnixMillis(resp.started_unix_ms(), response->mutable_started_time());
  }
  if (resp.finished_unix_ms() > 0) {
    SetUnixMillis(resp.finished_unix_ms(), response->mutable_finished_time());
  }
  return grpc::Status::OK;
}

grpc::Status AdminService::RepairCell(grpc::ServerContext*,
                                      const cellar::v1::AdminRepairCellRequest* request,
                                      cellar::v1::AdminRepairCellResponse* response) {
  absl::StatusOr<uint32_t> node =
      RequestStorage(request->node_id(), request->name(), "node_id", "name");
  if (!node.ok()) return common::ToGrpcStatus(node.status());
  absl::StatusOr<uint32_t> source = RequestStorage(
      request->source_node_id(), request->source_name(), "source_node_id", "source_name");
  if (!source.ok()) return common::ToGrpcStatus(source.status());
  if (*node == *source) return Invalid("source: must differ from the cell to repair");
  CELLAR_LOG(INFO) << "admin: RepairCell partition " << request->partition() << " on "
                   << common::NodeName(*node) << " from " << common::NodeName(*source)
                   << " (cluster \"" << request->cluster() << "\")";
  cellar::v1::RepairCellRequest req;
  req.set_partition(request->partition());
  req.set_node_id(*node);
  req.set_source_node_id(*source);
  cellar::v1::RepairCellResponse resp;
  absl::Status s = clusters_->CallMaster(
      request->cluster(),
      [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->RepairCell(context, req, &resp);
      },
      ActionTimeout(clusters_->rpc_timeout()));
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "RepairCell"));
  response->set_ptid(resp.ptid());
  return grpc::Status::OK;
}

grpc::Status AdminService::Truncate(grpc::ServerContext*,
                                    const cellar::v1::AdminTruncateRequest* request,
                                    cellar::v1::AdminTruncateResponse* response) {
  if (request->tid() == 0) return Invalid("tid: required (transactions after it are deleted)");
  if (request->tid() > common::kMaxTid) return Invalid("tid: past the largest TID");
  CELLAR_LOG(WARNING) << "admin: Truncate after tid " << common::TidHex(request->tid())
                      << " (cluster \"" << request->cluster() << "\")";
  cellar::v1::TruncateRequest req;
  req.set_tid(request->tid());
  cellar::v1::TruncateResponse resp;
  absl::Status s = clusters_->CallMaster(
      request->cluster(),
      [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->Truncate(context, req, &resp);
      },
      TruncateTimeout(clusters_->rpc_timeout()));
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "Truncate"));
  response->set_last_tid(resp.last_tid());
  response->set_last_tid_time(resp.last_tid() == 0 ? "" : common::TidTime(resp.last_tid()));
  response->set_cluster_state(resp.cluster_state());
  return grpc::Status::OK;
}

grpc::Status AdminService::Pack(grpc::ServerContext*, const cellar::v1::AdminPackRequest* request,
                                cellar::v1::AdminPackResponse* response) {
  if (request->pack_tid() == 0) {
    return Invalid("pack_tid: required (revisions older than the one current at it go)");
  }
  if (request->pack_tid() > common::kMaxTid) return Invalid("pack_tid: past the largest TID");
  CELLAR_LOG(WARNING) << "admin: Pack at tid " << common::TidHex(request->pack_tid())
                      << " (cluster \"" << request->cluster() << "\")";
  cellar::v1::PackRequest req;
  req.set_pack_tid(request->pack_tid());
  cellar::v1::PackResponse resp;
  absl::Status s = clusters_->CallMaster(
      request->cluster(),
      [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->Pack(context, req, &resp);
      },
      ActionTimeout(clusters_->rpc_timeout()));
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "Pack"));
  *response->mutable_status() = resp.status();
  const uint64_t tid = resp.status().pack_tid();
  response->set_pack_tid_time(tid == 0 ? "" : common::TidTime(tid));
  return grpc::Status::OK;
}

grpc::Status AdminService::GetPackStatus(grpc::ServerContext*,
                                         const cellar::v1::AdminGetPackStatusRequest* request,
                                         cellar::v1::AdminGetPackStatusResponse* response) {
  cellar::v1::GetPackStatusRequest req;
  cellar::v1::GetPackStatusResponse resp;
  absl::Status s = clusters_->CallMaster(
      request->cluster(),
      [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->GetPackStatus(context, req, &resp);
      },
      ActionTimeout(clusters_->rpc_timeout()));
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "GetPackStatus"));
  *response->mutable_status() = resp.status();
  const uint64_t tid = resp.status().pack_tid();
  response->set_pack_tid_time(tid == 0 ? "" : common::TidTime(tid));
  return grpc::Status::OK;
}

grpc::Status AdminService::StopNode(grpc::ServerContext*,
                                    const cellar::v1::StopNodeRequest* request,
                                    cellar::v1::StopNodeResponse* response) {
  absl::StatusOr<uint32_t> node =
      RequestStorage(request->node_id(), request->name(), "node_id", "name");
  if (!node.ok()) return common::ToGrpcStatus(node.status());
  const std::string name = common::NodeName(*node);
  auto info = clusters_->GetClusterInfo(request->cluster());
  if (!info.ok()) return common::ToGrpcStatus(info.status());
  const cellar::v1::NodeInfo* found = nullptr;
  for (const auto& n : info->nodes()) {
    if (n.node_id() == *node) found = &n;
  }
  if (found == nullptr) {
    return grpc::Status(StatusCode::NOT_FOUND, absl::StrCat("the master knows no node ", name,
                                                            " (id ", *node, "): see ListNodes"));
  }
  if (!Connected(*found) || found->address().empty()) {
    return grpc::Status(
        StatusCode::FAILED_PRECONDITION,
        absl::StrCat(name, " is ", cellar::v1::NodeState_Name(found->state()),
                     ": the master does not count it as connected (already stopped?)"));
  }
  const std::string reason = request->reason().empty()
                                 ? std::string("stopped by an operator (admin StopNode)")
                                 : request->reason();
  CELLAR_LOG(INFO) << "admin: StopNode " << name << " at " << found->address() << ": "
                   << reason;
  grpc::ClientContext context;
  common::SetDeadline(&context, clusters_->rpc_timeout());
  cellar::v1::ShutdownRequest req;
  req.set_reason(reason);
  req.set_node_id(*node);
  cellar::v1::ShutdownResponse resp;
  grpc::Status s = clusters_->StorageStub(found->address())->Shutdown(&context, req, &resp);
  if (!s.ok()) {
    return grpc::Status(s.error_code(),
                        absl::StrCat("storage ", name, " at ", found->address(), ": ",
                                     s.error_message()),
                        s.error_details());
  }
  response->set_name(name);
  response->set_address(found->address());
  response->set_stopped(true);
  return grpc::Status::OK;
}

}  // namespace cellar::admin

namespace cellar::admin {

// ---- Tokens: validated here, then forwarded to the master.

grpc::Status AdminService::CreateToken(grpc::ServerContext*,
                                       const cellar::v1::AdminCreateTokenRequest* request,
                                       cellar::v1::CreateTokenResponse* response) {
  if (absl::Status s = common::TokenRoleFromProto(request->role()).status(); !s.ok()) {
    return common::ToGrpcStatus(s);
  }
  if (absl::Status s = common::ValidateTokenName(request->name()); !s.ok()) {
    return common::ToGrpcStatus(s);
  }
  cellar::v1::CreateTokenRequest req;
  req.set_name(request->name());
  req.set_role(request->role());
  absl::Status s = clusters_->CallMaster(
      request->cluster(),
      [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->CreateToken(context, req, response);
      },
      ActionTimeout(clusters_->rpc_timeout()));
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "CreateToken"));
  if (on_tokens_changed_) on_tokens_changed_();
  return grpc::Status::OK;
}

grpc::Status AdminService::ListTokens(grpc::ServerContext*,
                                      const cellar::v1::AdminListTokensRequest* request,
                                      cellar::v1::ListTokensResponse* response) {
  absl::Status s = clusters_->CallMaster(
      request->cluster(), [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->ListTokens(context, cellar::v1::ListTokensRequest(), response);
      });
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "ListTokens"));
  return grpc::Status::OK;
}

grpc::Status AdminService::RevokeToken(grpc::ServerContext*,
                                       const cellar::v1::AdminRevokeTokenRequest* request,
                                       cellar::v1::RevokeTokenResponse* response) {
  if (request->id().empty()) return Invalid("id: required (the token's id, from ListTokens)");
  cellar::v1::RevokeTokenRequest req;
  req.set_id(request->id());
  absl::Status s = clusters_->CallMaster(
      request->cluster(),
      [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->RevokeToken(context, req, response);
      },
      ActionTimeout(clusters_->rpc_timeout()));
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "RevokeToken"));
  if (on_tokens_changed_) on_tokens_changed_();
  return grpc::Status::OK;
}

// ---- Feature flags: validated here, then forwarded to the master.

grpc::Status AdminService::SetFeatureFlag(grpc::ServerContext*,
                                          const cellar::v1::AdminSetFeatureFlagRequest* request,
                                          cellar::v1::SetFeatureFlagResponse* response) {
  if (absl::Status s = common::ValidateFlagName(request->name()); !s.ok()) {
    return common::ToGrpcStatus(s);
  }
  cellar::v1::SetFeatureFlagRequest req;
  req.set_name(request->name());
  switch (request->value_case()) {
    case cellar::v1::AdminSetFeatureFlagRequest::kBoolValue:
      req.set_bool_value(request->bool_value());
      break;
    case cellar::v1::AdminSetFeatureFlagRequest::kStringValue:
      req.set_string_value(request->string_value());
      break;
    default:
      return Invalid("value: required (set bool_value or string_value)");
  }
  req.set_description(request->description());
  req.set_owner(request->owner());
  absl::Status s = clusters_->CallMaster(
      request->cluster(),
      [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->SetFeatureFlag(context, req, response);
      },
      ActionTimeout(clusters_->rpc_timeout()));
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "SetFeatureFlag"));
  return grpc::Status::OK;
}

grpc::Status AdminService::ListFeatureFlags(
    grpc::ServerContext*, const cellar::v1::AdminListFeatureFlagsRequest* request,
    cellar::v1::ListFeatureFlagsResponse* response) {
  absl::Status s = clusters_->CallMaster(
      request->cluster(), [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->ListFeatureFlags(context, cellar::v1::ListFeatureFlagsRequest(), response);
      });
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "ListFeatureFlags"));
  return grpc::Status::OK;
}

grpc::Status AdminService::DeleteFeatureFlag(
    grpc::ServerContext*, const cellar::v1::AdminDeleteFeatureFlagRequest* request,
    cellar::v1::DeleteFeatureFlagResponse* response) {
  if (request->name().empty()) {
    return Invalid("name: required (the flag's name, from ListFeatureFlags)");
  }
  if (absl::Status s = common::ValidateFlagName(request->name()); !s.ok()) {
    return common::ToGrpcStatus(s);
  }
  cellar::v1::DeleteFeatureFlagRequest req;
  req.set_name(request->name());
  absl::Status s = clusters_->CallMaster(
      request->cluster(),
      [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->DeleteFeatureFlag(context, req, response);
      },
      ActionTimeout(clusters_->rpc_timeout()));
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "DeleteFeatureFlag"));
  return grpc::Status::OK;
}

// ---- Version registry and quarantine: checked here, forwarded to the master.

grpc::Status AdminService::ListVersions(grpc::ServerContext*,
                                        const cellar::v1::AdminListVersionsRequest* request,
                                        cellar::v1::ListVersionsResponse* response) {
  absl::Status s = clusters_->CallMaster(
      request->cluster(), [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->ListVersions(context, cellar::v1::ListVersionsRequest(), response);
      });
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "ListVersions"));
  return grpc::Status::OK;
}

grpc::Status AdminService::GetCanaryAnalysis(
    grpc::ServerContext*, const cellar::v1::AdminGetCanaryAnalysisRequest* request,
    cellar::v1::GetCanaryAnalysisResponse* response) {
  absl::Status s = clusters_->CallMaster(
      request->cluster(), [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* context) {
        return stub->GetCanaryAnalysis(context, cellar::v1::GetCanaryAnalysisRequest(), response);
      });
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, "GetCanaryAnalysis"));
  return grpc::Status::OK;
}

grpc::Status AdminService::ForwardQuarantine(
    const grpc::ServerContext& context, const cellar::v1::AdminQuarantineVersionRequest& request,
    bool quarantine, cellar::v1::QuarantineVersionResponse* response) {
  if (request.version().empty()) {
    return Invalid("version: required (the version, from ListVersions)");
  }
  if (request.track().empty()) return Invalid("track: required (stable, canary or shadow)");
  if (request.reason().empty()) return Invalid("reason: required (why, for the history)");
  cellar::v1::QuarantineVersionRequest req;
  req.set_version(request.version());
  req.set_track(request.track());
  req.set_reason(request.reason());
  const std::string principal = common::CallerPrincipal(context, authenticator_);
  req.set_by(principal.empty() ? "operator (auth off)" : principal);
  const char* what = quarantine ? "QuarantineVersion" : "UnquarantineVersion";
  absl::Status s = clusters_->CallMaster(
      request.cluster(),
      [&](cellar::v1::Master::Stub* stub, grpc::ClientContext* client_context) {
        return quarantine ? stub->QuarantineVersion(client_context, req, response)
                          : stub->UnquarantineVersion(client_context, req, response);
      },
      ActionTimeout(clusters_->rpc_timeout()));
  if (!s.ok()) return common::ToGrpcStatus(FromMaster(s, what));
  return grpc::Status::OK;
}

grpc::Status AdminService::QuarantineVersion(
    grpc::ServerContext* context, const cellar::v1::AdminQuarantineVersionRequest* request,
    cellar::v1::QuarantineVersionResponse* response) {
  return ForwardQuarantine(*context, *request, /*quarantine=*/true, response);
}

grpc::Status AdminService::UnquarantineVersion(
    grpc::ServerContext* context, const cellar::v1::AdminQuarantineVersionRequest* request,
    cellar::v1::QuarantineVersionResponse* response) {
  return ForwardQuarantine(*context, *request, /*quarantine=*/false, response);
}

}  // namespace cellar::admin
