#include "services/master/primary_gate.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/channel.h"

namespace cellar::master {

// Scope of one forwarded call.
class PrimaryGate::Call {
 public:
  Call(PrimaryGate* gate, grpc::ServerContext* context)
      : gate_(gate), context_(context), inner_(gate->Enter(context, &refusal_)) {}
  ~Call() {
    if (inner_ != nullptr) gate_->Leave(context_);
  }
  cellar::v1::Master::Service* inner() const { return inner_; }
  const grpc::Status& refusal() const { return refusal_; }

 private:
  PrimaryGate* gate_;
  grpc::ServerContext* context_;
  grpc::Status refusal_;
  cellar::v1::Master::Service* inner_;
};

PrimaryGate::PrimaryGate(std::function<bool()> is_primary,
                         std::function<std::string()> primary_address, CallHolder* holder)
    : is_primary_(std::move(is_primary)),
      primary_address_(std::move(primary_address)),
      holder_(holder) {}

void PrimaryGate::Open(cellar::v1::Master::Service* inner) {
  absl::MutexLock l(&mu_);
  if (!closed_) inner_ = inner;
}

void PrimaryGate::Close(const std::string& reason) {
  absl::MutexLock l(&mu_);
  if (!closed_) {
    closed_ = true;
    close_reason_ = reason;
  }
  inner_ = nullptr;
  for (grpc::ServerContext* context : active_) context->TryCancel();
}

int PrimaryGate::calls_in_progress() const {
  absl::MutexLock l(&mu_);
  return static_cast<int>(active_.size());
}

cellar::v1::Master::Service* PrimaryGate::Enter(grpc::ServerContext* context,
                                                 grpc::Status* refusal) {
  constexpr absl::Duration kPoll = absl::Milliseconds(100);
  std::optional<CallHolder::Hold> hold;
  bool expired = false;
  std::string reason;
  std::string primary;
  while (true) {
    bool standby;
    {
      absl::MutexLock l(&mu_);
      if (inner_ != nullptr && is_primary_()) {
        active_.insert(context);
        return inner_;
      }
      // Open but no longer primary: the lease ran out, Close() is coming.
      standby = !closed_ && inner_ == nullptr;
      reason = closed_ ? close_reason_ : std::string();
    }
    primary = primary_address_();
    // Held only while no master is known to be primary.
    if (!standby || holder_ == nullptr || !primary.empty()) break;
    if (context->IsCancelled()) {
      *refusal = grpc::Status(grpc::StatusCode::CANCELLED,
                              "call cancelled while held waiting for a primary master");
      return nullptr;
    }
    if (!hold.has_value()) {
      hold = holder_->TryHold(absl::Now(), common::DeadlineOf(*context));
      if (!hold.has_value()) break;  // over the bound: refused at once
    }
    const absl::Time now = absl::Now();
    if (now >= hold->until()) {
      expired = true;
      break;
    }
    absl::MutexLock l(&mu_);
    auto changed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_ || inner_ != nullptr;
    };
    mu_.AwaitWithDeadline(absl::Condition(&changed), std::min(hold->until(), now + kPoll));
  }
  const std::string message = absl::StrCat(
      "not the primary",
      primary.empty() ? std::string(" (primary unknown: election in progress)")
                      : absl::StrCat(" (primary is ", primary, ")"),
      reason.empty() ? std::string() : absl::StrCat(": ", reason));
  if (expired) {
    const absl::Status s =
        hold->Expired(absl::UnavailableError(message), absl::Now());
    *refusal = grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
  } else {
    *refusal = grpc::Status(grpc::StatusCode::UNAVAILABLE, message);
  }
  return nullptr;
}

void PrimaryGate::Leave(grpc::ServerContext* context) {
  absl::MutexLock l(&mu_);
  active_.erase(context);
}

#define CELLAR_GATED(call_expr)                    \
  Call call(this, context);                        \
  if (call.inner() == nullptr) return call.refusal(); \
  return call.inner()->call_expr

grpc::Status PrimaryGate::RegisterNode(grpc::ServerContext* context,
                                       const cellar::v1::RegisterNodeRequest* request,
                                       cellar::v1::RegisterNodeResponse* response) {
  CELLAR_GATED(RegisterNode(context, request, response));
}

grpc::Status PrimaryGate::Watch(grpc::ServerContext* context,
                                const cellar::v1::WatchRequest* request,
                                grpc::ServerWriter<cellar::v1::ClusterEvent>* writer) {
  CELLAR_GATED(Watch(context, request, writer));
}

grpc::Status PrimaryGate::AllocateOids(grpc::ServerContext* context,
                                       const cellar::v1::AllocateOidsRequest* request,
                                       cellar::v1::AllocateOidsResponse* response) {
  CELLAR_GATED(AllocateOids(context, request, response));
}

grpc::Status PrimaryGate::Begin(grpc::ServerContext* context,
                                const cellar::v1::BeginRequest* request,
                                cellar::v1::BeginResponse* response) {
  CELLAR_GATED(Begin(context, request, response));
}

grpc::Status PrimaryGate::Finish(grpc::ServerContext* context,
                                 const cellar::v1::FinishRequest* request,
                                 cellar::v1::FinishResponse* response) {
  CELLAR_GATED(Finish(context, request, response));
}

grpc::Status PrimaryGate::Abort(grpc::ServerContext* context,
                                const cellar::v1::AbortRequest* request,
                                cellar::v1::AbortResponse* response) {
  CELLAR_GATED(Abort(context, request, response));
}

grpc::Status PrimaryGate::GetTransactionStatus(
    grpc::ServerContext* context, const cellar::v1::GetTransactionStatusRequest* request,
    cellar::v1::GetTransactionStatusResponse* response) {
  CELLAR_GATED(GetTransactionStatus(context, request, response));
}

grpc::Status PrimaryGate::GetClusterInfo(grpc::ServerContext* context,
                                         const cellar::v1::GetClusterInfoRequest* request,
                                         cellar::v1::GetClusterInfoResponse* response) {
  CELLAR_GATED(GetClusterInfo(context, request, response));
}

grpc::Status PrimaryGate::StartCluster(grpc::ServerContext* context,
                                       const cellar::v1::StartClusterRequest* request,
                                       cellar::v1::StartClusterResponse* response) {
  CELLAR_GATED(StartCluster(context, request, response));
}

grpc::Status PrimaryGate::Heartbeat(grpc::ServerContext* context,
                                    const cellar::v1::HeartbeatRequest* request,
                                    cellar::v1::HeartbeatResponse* response) {
  CELLAR_GATED(Heartbeat(context, request, response));
}

grpc::Status PrimaryGate::ReportReplication(grpc::ServerContext* context,
                                            const cellar::v1::ReportReplicationRequest* request,
                                            cellar::v1::ReportReplicationResponse* response) {
  CELLAR_GATED(ReportReplication(context, request, response));
}

grpc::Status PrimaryGate::ReportUnreachable(grpc::ServerContext* context,
                                            const cellar::v1::ReportUnreachableRequest* request,
                                            cellar::v1::ReportUnreachableResponse* response) {
  CELLAR_GATED(ReportUnreachable(context, request, response));
}

grpc::Status PrimaryGate::CheckReplicas(grpc::ServerContext* context,
                                        const cellar::v1::CheckReplicasRequest* request,
                                        cellar::v1::CheckReplicasResponse* response) {
  CELLAR_GATED(CheckReplicas(context, request, response));
}

grpc::Status PrimaryGate::GetCheckStatus(grpc::ServerContext* context,
                                         const cellar::v1::GetCheckStatusRequest* request,
                                         cellar::v1::GetCheckStatusResponse* response) {
  CELLAR_GATED(GetCheckStatus(context, request, response));
}

grpc::Status PrimaryGate::RepairCell(grpc::ServerContext* context,
                                     const cellar::v1::RepairCellRequest* request,
                                     cellar::v1::RepairCellResponse* response) {
  CELLAR_GATED(RepairCell(context, request, response));
}

grpc::Status PrimaryGate::Truncate(grpc::ServerContext* context,
                                   const cellar::v1::TruncateRequest* request,
                                   cellar::v1::TruncateResponse* response) {
  CELLAR_GATED(Truncate(context, request, response));
}

grpc::Status PrimaryGate::Pack(grpc::ServerContext* context,
                               const cellar::v1::PackRequest* request,
                               cellar::v1::PackResponse* response) {
  CELLAR_GATED(Pack(context, request, response));
}

grpc::Status PrimaryGate::GetPackStatus(grpc::ServerContext* context,
                                        const cellar::v1::GetPackStatusRequest* request,
                                        cellar::v1::GetPackStatusResponse* response) {
  CELLAR_GATED(GetPackStatus(context, request, response));
}

// Operator actions (partition table, cluster state, kill).
grpc::Status PrimaryGate::SetClusterState(grpc::ServerContext* context,
                                          const cellar::v1::SetClusterStateRequest* request,
                                          cellar::v1::SetClusterStateResponse* response) {
  CELLAR_GATED(SetClusterState(context, request, response));
}

grpc::Status PrimaryGate::ChangePartitionTable(
    grpc::ServerContext* context, const cellar::v1::ChangePartitionTableRequest* request,
    cellar::v1::ChangePartitionTableResponse* response) {
  CELLAR_GATED(ChangePartitionTable(context, request, response));
}

grpc::Status PrimaryGate::KillNode(grpc::ServerContext* context,
                                   const cellar::v1::KillNodeRequest* request,
                                   cellar::v1::KillNodeResponse* response) {
  CELLAR_GATED(KillNode(context, request, response));
}

// Cluster tokens.
grpc::Status PrimaryGate::CreateToken(grpc::ServerContext* context,
                                      const cellar::v1::CreateTokenRequest* request,
                                      cellar::v1::CreateTokenResponse* response) {
  CELLAR_GATED(CreateToken(context, request, response));
}

grpc::Status PrimaryGate::ListTokens(grpc::ServerContext* context,
                                     const cellar::v1::ListTokensRequest* request,
                                     cellar::v1::ListTokensResponse* response) {
  CELLAR_GATED(ListTokens(context, request, response));
}

grpc::Status PrimaryGate::RevokeToken(grpc::ServerContext* context,
                                      const cellar::v1::RevokeTokenRequest* request,
                                      cellar::v1::RevokeTokenResponse* response) {
  CELLAR_GATED(RevokeToken(context, request, response));
}

grpc::Status PrimaryGate::GetTokenTable(grpc::ServerContext* context,
                                        const cellar::v1::GetTokenTableRequest* request,
                                        cellar::v1::GetTokenTableResponse* response) {
  CELLAR_GATED(GetTokenTable(context, request, response));
}

grpc::Status PrimaryGate::SetFeatureFlag(grpc::ServerContext* context,
                                         const cellar::v1::SetFeatureFlagRequest* request,
                                         cellar::v1::SetFeatureFlagResponse* response) {
  CELLAR_GATED(SetFeatureFlag(context, request, response));
}

grpc::Status PrimaryGate::ListFeatureFlags(grpc::ServerContext* context,
                                           const cellar::v1::ListFeatureFlagsRequest* request,
                                           cellar::v1::ListFeatureFlagsResponse* response) {
  CELLAR_GATED(ListFeatureFlags(context, request, response));
}

grpc::Status PrimaryGate::DeleteFeatureFlag(grpc::ServerContext* context,
                                            const cellar::v1::DeleteFeatureFlagRequest* request,
                                            cellar::v1::DeleteFeatureFlagResponse* response) {
  CELLAR_GATED(DeleteFeatureFlag(context, request, response));
}

grpc::Status PrimaryGate::ListVersions(grpc::ServerContext* context,
                                       const cellar::v1::ListVersionsRequest* request,
                                       cellar::v1::ListVersionsResponse* response) {
  CELLAR_GATED(ListVersions(context, request, response));
}

grpc::Status PrimaryGate::QuarantineVersion(grpc::ServerContext* context,
                                            const cellar::v1::QuarantineVersionRequest* request,
                                            cellar::v1::QuarantineVersionResponse* response) {
  CELLAR_GATED(QuarantineVersion(context, request, response));
}

grpc::Status PrimaryGate::UnquarantineVersion(
    grpc::ServerContext* context, const cellar::v1::QuarantineVersionRequest* request,
    cellar::v1::QuarantineVersionResponse* response) {
  CELLAR_GATED(UnquarantineVersion(context, request, response));
}

grpc::Status PrimaryGate::GetCanaryAnalysis(grpc::ServerContext* context,
                                            const cellar::v1::GetCanaryAnalysisRequest* request,
                                            cellar::v1::GetCanaryAnalysisResponse* response) {
  CELLAR_GATED(GetCanaryAnalysis(context, request, response));
}

#undef CELLAR_GATED

}  // namespace cellar::master
