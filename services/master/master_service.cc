#include "services/master/master_service.h"

#include <algorithm>
#include <optional>

#include <vector>

#include "absl/strings/str_cat.h"
#include "services/common/channel.h"
#include "services/common/cluster_tokens.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/server_auth.h"
#include "services/common/status_macros.h"
#include "services/common/ttid_token.h"

namespace cellar::master {
namespace {

using common::ToGrpcStatus;

constexpr int kMaxOidsPerFinish = 1000000;
constexpr int kMaxStaleVotes = 10000;

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

}  // namespace

grpc::Status MasterService::RegisterNode(grpc::ServerContext* context,
                                         const cellar::v1::RegisterNodeRequest* request,
                                         cellar::v1::RegisterNodeResponse* response) {
  // The method table lets clients register; a storage or an admin receives
  // the ttid key and the storage role's powers, so only a holder of the
  // cluster secret may register as one (docs/security.md).
  if (request->role() != cellar::v1::NODE_ROLE_CLIENT) {
    if (absl::Status s = common::RequireNodeRole(
            *context, authenticator_,
            absl::StrCat("RegisterNode as ", cellar::v1::NodeRole_Name(request->role())));
        !s.ok()) {
      return ToGrpcStatus(s);
    }
  }
  absl::StatusOr<cellar::v1::RegisterNodeResponse> r = cluster_->RegisterNode(*request);
  if (!r.ok()) return ToGrpcStatus(r.status());
  if (request->role() == cellar::v1::NODE_ROLE_CLIENT && authenticator_ != nullptr) {
    RecordOwner(r->node_id(), common::CallerPrincipal(*context, authenticator_));
  }
  *response = *std::move(r);
  return grpc::Status::OK;
}

void MasterService::RecordOwner(uint32_t node_id, std::string principal) {
  absl::MutexLock l(&owners_mu_);
  owners_[node_id] = std::move(principal);
  if (owners_.size() < prune_owners_at_) return;
  // Forget departed clients (amortized: the bound doubles with what stays).
  for (auto it = owners_.begin(); it != owners_.end();) {
    if (cluster_->CheckClient(it->first).ok()) {
      ++it;
    } else {
      owners_.erase(it++);
    }
  }
  prune_owners_at_ = std::max<size_t>(kMinOwnerPrune, 2 * owners_.size());
}

absl::Status MasterService::CheckOwner(const grpc::ServerContext& context,
                                       uint32_t node_id) const {
  if (authenticator_ == nullptr) return absl::OkStatus();
  const std::string caller = common::CallerPrincipal(context, authenticator_);
  if (caller == "node") return absl::OkStatus();  // cluster components
  absl::MutexLock l(&owners_mu_);
  auto it = owners_.find(node_id);
  if (it == owners_.end() || it->second == caller) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "node_id: ", common::NodeName(node_id),
      " was registered with other credentials: a client acts only for the node ids it "
      "registered itself"));
}

grpc::Status MasterService::Watch(grpc::ServerContext* context,
                                  const cellar::v1::WatchRequest* request,
                                  grpc::ServerWriter<cellar::v1::ClusterEvent>* writer) {
  if (request->node_id() == 0) return Invalid("node_id: required");
  // The stream is the node's liveness: ending a storage's would take it
  // DOWN. Only a node may watch as a storage or an admin.
  if (authenticator_ != nullptr) {
    const cellar::v1::GetClusterInfoResponse info = cluster_->Info();
    for (const cellar::v1::NodeInfo& node : info.nodes()) {
      if (node.node_id() != request->node_id() || node.role() == cellar::v1::NODE_ROLE_CLIENT) {
        continue;
      }
      if (absl::Status s = common::RequireNodeRole(
              *context, authenticator_,
              absl::StrCat("Watch as ", cellar::v1::NodeRole_Name(node.role())));
          !s.ok()) {
        return ToGrpcStatus(s);
      }
    }
  }
  // Ending another client's stream would end its session.
  if (absl::Status s = CheckOwner(*context, request->node_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  // Bounded before the stream takes its thread for good.
  absl::StatusOr<common::StreamLimiter::Slot> slot =
      watch_limiter_->Acquire(common::CallerPrincipal(*context, authenticator_));
  if (!slot.ok()) return ToGrpcStatus(slot.status());
  absl::StatusOr<std::shared_ptr<EventHub::Subscriber>> sub =
      cluster_->Watch(request->node_id());
  if (!sub.ok()) return ToGrpcStatus(sub.status());
  grpc::Status result = grpc::Status::OK;
  cellar::v1::ClusterEvent event;
  while (true) {
    cluster_->ExpireSilentNodes();
    cluster_->PersistQuarantines().IgnoreError();  // automatic decisions
    if (context->IsCancelled()) {
      result = grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled");
      break;
    }
    if (hub_->Next(**sub, &event, absl::Milliseconds(200))) {
      if (!writer->Write(event)) {
        result = grpc::Status(grpc::StatusCode::UNAVAILABLE, "watcher went away");
        break;
      }
    } else if ((*sub)->closed()) {
      result = grpc::Status(grpc::StatusCode::ABORTED,
                            "event stream closed by the master (queue overflow or "
                            "node replaced): register again");
      break;
    }
  }
  cluster_->WatchEnded(request->node_id(), *sub);
  return result;
}

grpc::Status MasterService::AllocateOids(grpc::ServerContext* context,
                                         const cellar::v1::AllocateOidsRequest* request,
                                         cellar::v1::AllocateOidsResponse* response) {
  absl::StatusOr<uint64_t> first = ServeWhenRunning(
      *context, [&] { return cluster_->AllocateOids(request->count()); });
  if (!first.ok()) return ToGrpcStatus(first.status());
  response->set_first_oid(*first);
  response->set_count(request->count());
  return grpc::Status::OK;
}

absl::StatusOr<uint64_t> MasterService::ServeWhenRunning(
    const grpc::ServerContext& context,
    const std::function<absl::StatusOr<uint64_t>()>& serve) const {
  absl::StatusOr<uint64_t> result = serve();
  auto not_running = [](const absl::StatusOr<uint64_t>& r) {
    return !r.ok() && common::ErrorReason(r.status()) == common::kReasonClusterNotRunning;
  };
  if (holder_ == nullptr || !not_running(result)) return result;
  std::optional<CallHolder::Hold> hold =
      holder_->TryHold(absl::Now(), common::DeadlineOf(context));
  if (!hold.has_value()) return result;  // over the bound: refused at once, as before
  while (true) {
    switch (cluster_->AwaitRunning(hold->until(), [&context] { return context.IsCancelled(); })) {
      case ClusterManager::Readiness::kRunning:
        // Served through the usual checks: the state may have changed again.
        result = serve();
        if (!not_running(result)) return result;
        if (absl::Now() >= hold->until()) return hold->Expired(result.status(), absl::Now());
        break;
      case ClusterManager::Readiness::kNotOnTheWay:
        return serve();  // the refusal of that state (STOPPING ...)
      case ClusterManager::Readiness::kTimedOut:
        return hold->Expired(result.status(), absl::Now());
      case ClusterManager::Readiness::kStopped:
        return absl::CancelledError("call cancelled while held waiting for the cluster to run");
      case ClusterManager::Readiness::kShuttingDown:
        return absl::UnavailableError(
            "the master is shutting down (the call was held waiting for the cluster to run): "
            "retry with the next master");
    }
  }
}

grpc::Status MasterService::Begin(grpc::ServerContext* context,
                                  const cellar::v1::BeginRequest* request,
                                  cellar::v1::BeginResponse* response) {
  if (request->node_id() == 0) return Invalid("node_id: required (from RegisterNode)");
  if (absl::Status s = CheckOwner(*context, request->node_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  // Only a registered client's Begin is worth holding.
  if (absl::Status s = cluster_->CheckClient(request->node_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (request->tid() > common::kMaxTid) {
    return Invalid(absl::StrCat("tid: at most ", common::kMaxTid, " (0 = allocate one)"));
  }
  absl::StatusOr<uint64_t> ttid = ServeWhenRunning(
      *context, [&] { return coordinator_->Begin(request->node_id(), request->tid()); });
  if (!ttid.ok()) return ToGrpcStatus(ttid.status());
  response->set_ttid(*ttid);
  response->set_ttid_token(common::TtidToken(cluster_->ttid_key(), *ttid));
  return grpc::Status::OK;
}

grpc::Status MasterService::Finish(grpc::ServerContext* context,
                                   const cellar::v1::FinishRequest* request,
                                   cellar::v1::FinishResponse* response) {
  if (request->node_id() == 0) return Invalid("node_id: required (from RegisterNode)");
  if (absl::Status s = CheckOwner(*context, request->node_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (request->ttid() == 0) return Invalid("ttid: required (from Begin)");
  if (request->partition_voters_size() == 0) {
    return Invalid(
        "partition_voters: required (which storages voted for each touched partition)");
  }
  if (request->oids_size() > kMaxOidsPerFinish) {
    return Invalid(absl::StrCat("oids: at most ", kMaxOidsPerFinish, " per transaction"));
  }
  if (request->partition_voters_size() > kMaxOidsPerFinish ||
      request->conflict_checks_size() > kMaxOidsPerFinish) {
    return Invalid(absl::StrCat("partition_voters, conflict_checks: at most ",
                                kMaxOidsPerFinish, " entries"));
  }
  CommitVotes votes;
  votes.oids.assign(request->oids().begin(), request->oids().end());
  votes.client_ptid = request->ptid();
  for (const cellar::v1::PartitionVoters& v : request->partition_voters()) {
    if (v.node_ids_size() == 0) {
      return Invalid(absl::StrCat("partition_voters: partition ", v.partition(),
                                  " lists no storage"));
    }
    std::vector<uint32_t>& ids = votes.voters[v.partition()];
    ids.insert(ids.end(), v.node_ids().begin(), v.node_ids().end());
  }
  for (const cellar::v1::ConflictCheck& c : request->conflict_checks()) {
    votes.conflict_checks.push_back({c.partition(), c.node_id(), c.ptid()});
  }
  absl::StatusOr<uint64_t> tid =
      coordinator_->Finish(request->node_id(), request->ttid(), votes);
  if (!tid.ok()) return ToGrpcStatus(tid.status());
  response->set_tid(*tid);
  if (request->want_next_ttid()) {
    // The client's next Begin, answered now (docs/protocol.md,
    // "Pre-allocated ttids"); none is not an error.
    if (const uint64_t next = coordinator_->BeginPreallocated(request->node_id()); next != 0) {
      response->set_next_ttid(next);
      response->set_next_ttid_token(common::TtidToken(cluster_->ttid_key(), next));
    }
  }
  return grpc::Status::OK;
}

grpc::Status MasterService::Abort(grpc::ServerContext* context,
                                  const cellar::v1::AbortRequest* request,
                                  cellar::v1::AbortResponse*) {
  if (request->node_id() == 0) return Invalid("node_id: required (from RegisterNode)");
  if (absl::Status s = CheckOwner(*context, request->node_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  if (request->ttid() == 0) return Invalid("ttid: required");
  const std::vector<uint32_t> storages(request->storage_node_ids().begin(),
                                       request->storage_node_ids().end());
  return ToGrpcStatus(coordinator_->Abort(request->node_id(), request->ttid(), storages));
}

grpc::Status MasterService::GetTransactionStatus(
    grpc::ServerContext* context, const cellar::v1::GetTransactionStatusRequest* request,
    cellar::v1::GetTransactionStatusResponse* response) {
  if (request->ttid() == 0) return Invalid("ttid: required");
  if (absl::Status s = CheckStatusAsker(*context, request->node_id(), request->ttid());
      !s.ok()) {
    return ToGrpcStatus(s);
  }
  *response = coordinator_->Status(request->ttid());
  return grpc::Status::OK;
}

absl::Status MasterService::CheckStatusAsker(const grpc::ServerContext& context,
                                             uint32_t node_id, uint64_t ttid) const {
  if (authenticator_ == nullptr) return absl::OkStatus();
  if (node_id == 0) {
    return absl::InvalidArgumentError(
        "node_id: required with authentication on (the client node id from RegisterNode; "
        "clients older than this field do not send it: upgrade the client)");
  }
  CELLAR_RETURN_IF_ERROR(CheckOwner(context, node_id));
  // The ttid's own client, if this master began it: a client asks only
  // about its own transactions (under another node id of the same
  // credentials after a reconnection, too).
  const std::optional<uint32_t> begun_by = coordinator_->BegunBy(ttid);
  if (!begun_by.has_value() || *begun_by == node_id) return absl::OkStatus();
  if (CheckOwner(context, *begun_by).ok()) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "ttid ", common::TidHex(ttid),
      " was begun by a client node registered with other credentials: a client asks only "
      "about its own transactions"));
}

grpc::Status MasterService::GetClusterInfo(grpc::ServerContext*,
                                           const cellar::v1::GetClusterInfoRequest*,
                                           cellar::v1::GetClusterInfoResponse* response) {
  *response = cluster_->Info();
  return grpc::Status::OK;
}

grpc::Status MasterService::StartCluster(grpc::ServerContext*,
                                         const cellar::v1::StartClusterRequest*,
                                         cellar::v1::StartClusterResponse* response) {
  absl::StatusOr<cellar::v1::ClusterState> state = cluster_->Start();
  if (!state.ok()) return ToGrpcStatus(state.status());
  response->set_cluster_state(*state);
  return grpc::Status::OK;
}

grpc::Status MasterService::Heartbeat(grpc::ServerContext*,
                                      const cellar::v1::HeartbeatRequest* request,
                                      cellar::v1::HeartbeatResponse*) {
  if (request->node_id() == 0) return Invalid("node_id: required (from RegisterNode)");
  if (request->stale_votes_size() > kMaxStaleVotes) {
    return Invalid(absl::StrCat("stale_votes: at most ", kMaxStaleVotes, " per heartbeat"));
  }
  std::optional<common::DataPathSample> data_path;
  if (request->has_data_path()) {
    absl::StatusOr<common::DataPathSample> sample = common::DataPathFromProto(request->data_path());
    if (!sample.ok()) return ToGrpcStatus(sample.status());
    data_path = *sample;
  }
  const std::vector<uint64_t> stale(request->stale_votes().begin(),
                                    request->stale_votes().end());
  if (absl::Status s = cluster_->Heartbeat(request->node_id(), stale); !s.ok()) {
    return ToGrpcStatus(s);
  }
  VersionKey key;
  if (data_path.has_value() && canary_ != nullptr &&
      common::NodeKindOf(request->node_id()) == common::NodeKind::kStorage &&
      cluster_->VersionOf(request->node_id(), &key)) {
    canary_->Report(request->node_id(), key, *data_path);
  }
  return grpc::Status::OK;
}

grpc::Status MasterService::ReportReplication(
    grpc::ServerContext*, const cellar::v1::ReportReplicationRequest* request,
    cellar::v1::ReportReplicationResponse* response) {
  if (request->node_id() == 0) return Invalid("node_id: required (from RegisterNode)");
  if (request->tid() > common::kMaxTid) {
    return Invalid(absl::StrCat("tid: at most ", common::TidHex(common::kMaxTid)));
  }
  absl::StatusOr<cellar::v1::ReportReplicationResponse> r =
      cluster_->ReportReplication(*request);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = *std::move(r);
  return grpc::Status::OK;
}

grpc::Status MasterService::ReportUnreachable(
    grpc::ServerContext*, const cellar::v1::ReportUnreachableRequest* request,
    cellar::v1::ReportUnreachableResponse* response) {
  if (prober_ == nullptr) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "unreachable reports are not set up");
  }
  if (request->node_id() == 0) return Invalid("node_id: required (the unreachable storage)");
  absl::StatusOr<cellar::v1::ReportOutcome> outcome =
      prober_->Report(request->node_id(), request->reason(), request->reporter_node_id());
  if (!outcome.ok()) return ToGrpcStatus(outcome.status());
  response->set_outcome(*outcome);
  return grpc::Status::OK;
}

// ---- Operator actions ----

grpc::Status MasterService::SetClusterState(grpc::ServerContext*,
                                            const cellar::v1::SetClusterStateRequest* request,
                                            cellar::v1::SetClusterStateResponse* response) {
  // ClusterManager refuses unspecified and unknown states (INVALID_ARGUMENT).
  absl::StatusOr<cellar::v1::ClusterState> state = cluster_->SetClusterState(request->state());
  if (!state.ok()) return ToGrpcStatus(state.status());
  response->set_cluster_state(*state);
  return grpc::Status::OK;
}

grpc::Status MasterService::ChangePartitionTable(
    grpc::ServerContext*, const cellar::v1::ChangePartitionTableRequest* request,
    cellar::v1::ChangePartitionTableResponse* response) {
  if (!cellar::v1::PartitionTableOperation_IsValid(request->operation()) ||
      request->operation() == cellar::v1::PARTITION_TABLE_OPERATION_UNSPECIFIED) {
    return Invalid("operation: must be PT_TWEAK, PT_ADD, PT_DROP or PT_SET_REPLICAS");
  }
  if (request->operation() == cellar::v1::PT_SET_REPLICAS && !request->has_replicas()) {
    return Invalid("replicas: required for PT_SET_REPLICAS (the new R, 0..64)");
  }
  std::vector<uint32_t> node_ids;
  for (uint32_t id : request->node_ids()) {
    if (id == 0 || common::NodeKindOf(id) != common::NodeKind::kStorage) {
      return Invalid(absl::StrCat("node_ids: ", id, " is not a storage node id"));
    }
    node_ids.push_back(id);
  }
  absl::StatusOr<PtChangeResult> r = cluster_->ChangePartitionTable(
      request->operation(), node_ids, request->replicas(), request->dry_run());
  if (!r.ok()) return ToGrpcStatus(r.status());
  response->set_plan(r->plan.ToString());
  for (const PlannedChange& c : r->plan.changes) {
    cellar::v1::CellChange* change = response->add_changes();
    change->set_partition(c.partition);
    change->set_node_id(c.node_id);
    change->set_state(c.state);
  }
  for (const std::string& w : r->plan.warnings) response->add_warnings(w);
  response->set_applied(r->applied);
  response->set_ptid_before(r->ptid_before);
  response->set_ptid(r->ptid);
  // A dry run reports the R it would set.
  response->set_num_replicas(r->applied ? r->num_replicas : r->plan.num_replicas);
  return grpc::Status::OK;
}

grpc::Status MasterService::KillNode(grpc::ServerContext*,
                                     const cellar::v1::KillNodeRequest* request,
                                     cellar::v1::KillNodeResponse* response) {
  if (request->node_id() == 0) return Invalid("node_id: required");
  absl::StatusOr<KilledNode> killed = cluster_->KillNode(request->node_id());
  if (!killed.ok()) return ToGrpcStatus(killed.status());
  *response->mutable_node() = killed->node;
  if (request->stop() && storages_ != nullptr && !killed->target.address.empty()) {
    // Best effort: `stopped` says whether the node acknowledged.
    const absl::Status s = storages_->Shutdown(killed->target, "killed by an operator");
    if (!s.ok()) {
      CELLAR_LOG(WARNING) << "could not stop " << common::NodeName(request->node_id())
                          << ": " << s;
    }
    response->set_stopped(s.ok());
  }
  return grpc::Status::OK;
}

// ---- Replica checks, repair and truncate ----

grpc::Status MasterService::CheckReplicas(grpc::ServerContext*,
                                          const cellar::v1::CheckReplicasRequest* request,
                                          cellar::v1::CheckReplicasResponse* response) {
  if (checker_ == nullptr) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "checks are not set up");
  }
  absl::StatusOr<uint64_t> id = checker_->Start(*request);
  if (!id.ok()) return ToGrpcStatus(id.status());
  response->set_check_id(*id);
  return grpc::Status::OK;
}

grpc::Status MasterService::GetCheckStatus(grpc::ServerContext*,
                                           const cellar::v1::GetCheckStatusRequest* request,
                                           cellar::v1::GetCheckStatusResponse* response) {
  if (checker_ == nullptr) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "checks are not set up");
  }
  absl::StatusOr<cellar::v1::GetCheckStatusResponse> status =
      checker_->Status(request->check_id());
  if (!status.ok()) return ToGrpcStatus(status.status());
  *response = *std::move(status);
  return grpc::Status::OK;
}

grpc::Status MasterService::RepairCell(grpc::ServerContext*,
                                       const cellar::v1::RepairCellRequest* request,
                                       cellar::v1::RepairCellResponse* response) {
  if (request->node_id() == 0) return Invalid("node_id: required");
  if (request->source_node_id() == 0) return Invalid("source_node_id: required");
  absl::StatusOr<uint64_t> ptid = cluster_->RepairCell(
      request->partition(), request->node_id(), request->source_node_id());
  if (!ptid.ok()) return ToGrpcStatus(ptid.status());
  response->set_ptid(*ptid);
  return grpc::Status::OK;
}

grpc::Status MasterService::Truncate(grpc::ServerContext*,
                                     const cellar::v1::TruncateRequest* request,
                                     cellar::v1::TruncateResponse* response) {
  if (truncator_ == nullptr) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "truncate is not set up");
  }
  if (request->tid() == 0) return Invalid("tid: must not be 0");
  absl::StatusOr<cellar::v1::ClusterState> state = truncator_->Truncate(request->tid());
  if (!state.ok()) return ToGrpcStatus(state.status());
  response->set_last_tid(request->tid());
  response->set_cluster_state(*state);
  return grpc::Status::OK;
}

grpc::Status MasterService::Pack(grpc::ServerContext*, const cellar::v1::PackRequest* request,
                                 cellar::v1::PackResponse* response) {
  if (pack_ == nullptr) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "pack is not set up");
  }
  if (request->pack_tid() == 0) return Invalid("pack_tid: required, not 0");
  absl::StatusOr<cellar::v1::PackStatus> status = pack_->Request(request->pack_tid());
  if (!status.ok()) return ToGrpcStatus(status.status());
  *response->mutable_status() = *std::move(status);
  return grpc::Status::OK;
}

grpc::Status MasterService::GetPackStatus(grpc::ServerContext*,
                                          const cellar::v1::GetPackStatusRequest*,
                                          cellar::v1::GetPackStatusResponse* response) {
  if (pack_ == nullptr) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "pack is not set up");
  }
  *response->mutable_status() = pack_->Status();
  return grpc::Status::OK;
}

}  // namespace cellar::master

namespace cellar::master {

// ---- Cluster tokens ----

grpc::Status MasterService::CreateToken(grpc::ServerContext* /*context*/,
                                        const cellar::v1::CreateTokenRequest* request,
                                        cellar::v1::CreateTokenResponse* response) {
  // An id of this master's tokens file is not reused (the file is looked
  // up first: the new token would never work here).
  auto in_file = [this](absl::string_view id) {
    if (authenticator_ == nullptr) return false;
    for (const common::TokenEntry& entry : authenticator_->FileTokens()) {
      if (entry.id == id) return true;
    }
    return false;
  };
  absl::StatusOr<TokenRegistry::Created> created = cluster_->tokens().Create(
      request->name(), request->role(), in_file,
      [this](const cellar::v1::ClusterTokenTable& t) { return cluster_->PersistTokenTable(t); });
  if (!created.ok()) return ToGrpcStatus(created.status());
  response->set_token(created->token);
  *response->mutable_info() = common::ClusterTokenInfo(created->entry);
  return grpc::Status::OK;
}

grpc::Status MasterService::ListTokens(grpc::ServerContext* /*context*/,
                                       const cellar::v1::ListTokensRequest* /*request*/,
                                       cellar::v1::ListTokensResponse* response) {
  std::vector<cellar::v1::TokenInfo> tokens;
  if (authenticator_ != nullptr) {
    for (const common::TokenEntry& entry : authenticator_->FileTokens()) {
      tokens.push_back(common::FileTokenInfo(entry));
    }
  }
  const cellar::v1::ClusterTokenTable table = cluster_->tokens().Table();
  for (const cellar::v1::ClusterToken& token : table.tokens()) {
    tokens.push_back(common::ClusterTokenInfo(token));
  }
  std::stable_sort(tokens.begin(), tokens.end(),
                   [](const cellar::v1::TokenInfo& a, const cellar::v1::TokenInfo& b) {
                     return a.id() < b.id();
                   });
  for (cellar::v1::TokenInfo& info : tokens) *response->add_tokens() = std::move(info);
  response->set_version(table.version());
  return grpc::Status::OK;
}

grpc::Status MasterService::RevokeToken(grpc::ServerContext* /*context*/,
                                        const cellar::v1::RevokeTokenRequest* request,
                                        cellar::v1::RevokeTokenResponse* response) {
  if (authenticator_ != nullptr) {
    for (const common::TokenEntry& entry : authenticator_->FileTokens()) {
      if (entry.id != request->id()) continue;
      return ToGrpcStatus(absl::FailedPreconditionError(absl::StrCat(
          "token ", entry.id, " is in the tokens file (--auth_tokens_file), not in the cluster "
          "table: revoke it by deleting its line from the file on every process")));
    }
  }
  absl::StatusOr<cellar::v1::ClusterToken> revoked = cluster_->tokens().Revoke(
      request->id(),
      [this](const cellar::v1::ClusterTokenTable& t) { return cluster_->PersistTokenTable(t); });
  if (!revoked.ok()) return ToGrpcStatus(revoked.status());
  *response->mutable_info() = common::ClusterTokenInfo(*revoked);
  return grpc::Status::OK;
}

grpc::Status MasterService::GetTokenTable(grpc::ServerContext* /*context*/,
                                          const cellar::v1::GetTokenTableRequest* request,
                                          cellar::v1::GetTokenTableResponse* response) {
  cellar::v1::ClusterTokenTable table = cluster_->tokens().Table();
  if (table.version() == request->known_version()) return grpc::Status::OK;
  response->set_changed(true);
  *response->mutable_table() = std::move(table);
  return grpc::Status::OK;
}

// ---- Feature flags ----

grpc::Status MasterService::SetFeatureFlag(grpc::ServerContext* /*context*/,
                                           const cellar::v1::SetFeatureFlagRequest* request,
                                           cellar::v1::SetFeatureFlagResponse* response) {
  absl::StatusOr<FlagRegistry::SetResult> set = cluster_->SetFeatureFlag(*request);
  if (!set.ok()) return ToGrpcStatus(set.status());
  *response->mutable_flag() = std::move(set->flag);
  response->set_created(set->created);
  response->set_version(set->version);
  return grpc::Status::OK;
}

grpc::Status MasterService::ListFeatureFlags(grpc::ServerContext* /*context*/,
                                             const cellar::v1::ListFeatureFlagsRequest* /*request*/,
                                             cellar::v1::ListFeatureFlagsResponse* response) {
  cellar::v1::FeatureFlagTable table = cluster_->FeatureFlags();
  response->set_version(table.version());
  *response->mutable_flags() = std::move(*table.mutable_flags());
  return grpc::Status::OK;
}

grpc::Status MasterService::DeleteFeatureFlag(grpc::ServerContext* /*context*/,
                                              const cellar::v1::DeleteFeatureFlagRequest* request,
                                              cellar::v1::DeleteFeatureFlagResponse* response) {
  absl::StatusOr<cellar::v1::DeleteFeatureFlagResponse> deleted =
      cluster_->DeleteFeatureFlag(request->name());
  if (!deleted.ok()) return ToGrpcStatus(deleted.status());
  *response = std::move(*deleted);
  return grpc::Status::OK;
}

// ---- Version registry and quarantine ----

namespace {

void VersionToProto(const VersionStatus& v, cellar::v1::VersionInfo* out) {
  out->set_version(v.key.version);
  out->set_track(v.key.track);
  auto count = [&](common::NodeKind kind) {
    auto it = v.nodes.find(kind);
    return it == v.nodes.end() ? 0u : it->second;
  };
  out->set_storages(count(common::NodeKind::kStorage));
  out->set_clients(count(common::NodeKind::kClient));
  out->set_admins(count(common::NodeKind::kAdmin));
  for (uint32_t id : v.node_ids) out->add_node_ids(id);
  out->set_restarts(v.restarts);
  out->set_worst_node_restarts(v.worst_node_restarts);
  out->set_downs(v.downs);
  out->set_quarantined(v.quarantined);
  if (v.quarantined) {
    out->set_reason(v.reason);
    out->set_quarantined_by(v.by);
    out->set_quarantined_unix_ms(absl::ToUnixMillis(v.since));
  }
}

// Every field is required (an unset proto field never means "all"), and
// bounded.
constexpr size_t kMaxQuarantineString = 1024;
constexpr size_t kMaxVersionString = 256;  // as a registration's

absl::Status CheckQuarantineRequest(const cellar::v1::QuarantineVersionRequest& r) {
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"version", &r.version()},
        {"track", &r.track()},
        {"reason", &r.reason()},
        {"by", &r.by()}}) {
    if (value->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
    }
    const size_t max = value == &r.version() ? kMaxVersionString : kMaxQuarantineString;
    if (value->size() > max) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": at most ", max, " bytes"));
    }
  }
  if (r.track() != "stable" && r.track() != "canary" && r.track() != "shadow") {
    return absl::InvalidArgumentError("track: must be stable, canary or shadow");
  }
  return absl::OkStatus();
}

grpc::Status ChangeQuarantine(
    ClusterManager* cluster, const cellar::v1::QuarantineVersionRequest& request,
    cellar::v1::QuarantineVersionResponse* response,
    absl::StatusOr<bool> (ClusterManager::*change)(const VersionKey&, const std::string&,
                                                   const std::string&)) {
  if (absl::Status s = CheckQuarantineRequest(request); !s.ok()) return ToGrpcStatus(s);
  const VersionKey key{request.version(), request.track()};
  absl::StatusOr<bool> changed = (cluster->*change)(key, request.by(), request.reason());
  if (!changed.ok()) return ToGrpcStatus(changed.status());
  response->set_changed(*changed);
  for (const VersionStatus& v : cluster->ListVersions().versions) {
    if (v.key == key) VersionToProto(v, response->mutable_version());
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::Status MasterService::ListVersions(grpc::ServerContext* /*context*/,
                                         const cellar::v1::ListVersionsRequest* /*request*/,
                                         cellar::v1::ListVersionsResponse* response) {
  const ClusterManager::Versions versions = cluster_->ListVersions();
  for (const VersionStatus& v : versions.versions) VersionToProto(v, response->add_versions());
  for (const VersionDecision& d : versions.history) {
    *response->add_history() = DecisionRecord(d);
  }
  const QuarantineThresholds& t = cluster_->quarantine_thresholds();
  response->set_quarantine_restarts(t.restarts);
  response->set_quarantine_downs(t.downs);
  response->set_quarantine_window_ms(absl::ToInt64Milliseconds(t.window));
  return grpc::Status::OK;
}

grpc::Status MasterService::QuarantineVersion(
    grpc::ServerContext* /*context*/, const cellar::v1::QuarantineVersionRequest* request,
    cellar::v1::QuarantineVersionResponse* response) {
  return ChangeQuarantine(cluster_, *request, response, &ClusterManager::QuarantineVersion);
}

grpc::Status MasterService::UnquarantineVersion(
    grpc::ServerContext* /*context*/, const cellar::v1::QuarantineVersionRequest* request,
    cellar::v1::QuarantineVersionResponse* response) {
  return ChangeQuarantine(cluster_, *request, response, &ClusterManager::UnquarantineVersion);
}

// ---- Canary analysis ----

grpc::Status MasterService::GetCanaryAnalysis(grpc::ServerContext* /*context*/,
                                              const cellar::v1::GetCanaryAnalysisRequest*,
                                              cellar::v1::GetCanaryAnalysisResponse* response) {
  if (canary_ == nullptr) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no canary analysis on this master");
  }
  for (const CanaryStatus& c : canary_->Analysis()) {
    cellar::v1::CanaryVersionAnalysis* out = response->add_canaries();
    out->set_version(c.key.version);
    out->set_track(c.key.track);
    out->set_verdict(VerdictName(c.verdict));
    out->set_reason(c.reason);
    out->set_consecutive_passes(c.consecutive_passes);
    out->set_quarantined(c.quarantined);
    for (const CanaryInterval& i : c.intervals) {
      cellar::v1::CanaryIntervalResult* r = out->add_intervals();
      r->set_start_unix_ms(absl::ToUnixMillis(i.start));
      r->set_end_unix_ms(absl::ToUnixMillis(i.end));
      r->set_outcome(OutcomeName(i.outcome));
      r->set_reason(i.reason);
      r->set_loads(i.canary.loads);
      r->set_load_errors(i.canary.load_errors);
      r->set_stores(i.canary.stores);
      r->set_store_errors(i.canary.store_errors);
      r->set_checksum_failures(i.canary.checksum_failures);
      r->set_error_ratio(i.error_ratio);
      r->set_load_p99_ms(i.load_p99_ms);
      r->set_store_p99_ms(i.store_p99_ms);
      r->set_stable_load_p99_ms(i.stable_load_p99_ms);
      r->set_stable_store_p99_ms(i.stable_store_p99_ms);
      r->set_stable_error_ratio(i.stable_error_ratio);
    }
  }
  const CanaryThresholds& t = canary_->thresholds();
  response->set_interval_ms(absl::ToInt64Milliseconds(t.interval));
  response->set_max_error_ratio(t.max_error_ratio);
  response->set_max_latency_ratio(t.max_latency_ratio);
  response->set_min_requests(t.min_requests);
  response->set_promote_after(t.promote_after);
  response->set_current_interval_start_unix_ms(
      absl::ToUnixMillis(canary_->current_interval_start()));
  return grpc::Status::OK;
}

}  // namespace cellar::master
