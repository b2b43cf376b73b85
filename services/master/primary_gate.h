#ifndef CELLAR_SERVICES_MASTER_PRIMARY_GATE_H_
#define CELLAR_SERVICES_MASTER_PRIMARY_GATE_H_

// The cellar.v1.Master service a master registers with gRPC: a thin
// decorator that forwards every rpc to the real service (MasterService)
// only while this master is the primary.
//
//  - Before Open() (a standby) and after Close() (primacy lost, shutting
//    down) every rpc answers UNAVAILABLE "not the primary (primary is
//    <address>)", so storages and clients move on to the next master
//    address; UNAVAILABLE is what they retry.
//  - Each call also asks `is_primary` (the election) as it starts: a
//    master whose lease ran out refuses even before its lost callback ran.
//  - Delayed acceptance (call_holder.h): with a `holder`, a call that
//    reaches a standby while no master is known to be primary (an
//    election in progress, or this master starting) is held until this
//    master opens (then forwarded), another master is known to be primary
//    or the gate closes (then refused as above), or its hold ends (the
//    refusal, or DEADLINE_EXCEEDED at the caller's deadline; see
//    CallHolder::Hold::Expired). A standby that knows the primary refuses
//    at once: the caller should go there.
//  - Close() cancels the calls in progress: Watch streams end at once (the
//    storages and clients then re-register with the next master), and a
//    Finish waiting on storages is answered CANCELLED (the client asks the
//    new primary for the outcome).
//
// Every rpc of cellar.v1.Master needs a forwarder here (a new rpc without
// one would answer UNIMPLEMENTED): primary_gate_test checks them all
// against the service descriptor.
//
// Thread-safe.

#include <functional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/master/call_holder.h"

namespace cellar::master {

class PrimaryGate final : public cellar::v1::Master::Service {
 public:
  // `is_primary`: asked at the start of every call. `primary_address`:
  // the primary's address as last known ("" if unknown), for refusals.
  // `holder` (may be null: never hold; not owned) bounds the holds.
  PrimaryGate(std::function<bool()> is_primary, std::function<std::string()> primary_address,
              CallHolder* holder = nullptr);

  // Starts forwarding to `inner` (not owned; must outlive every call that
  // started while open). Ignored after Close().
  void Open(cellar::v1::Master::Service* inner);

  // Refuses every new call for good and cancels those in progress.
  // `reason` goes into the refusals ("lost the primary lease", "shutting
  // down"). Idempotent.
  void Close(const std::string& reason);

  // Calls currently forwarded (for tests).
  int calls_in_progress() const;

  grpc::Status RegisterNode(grpc::ServerContext* context,
                            const cellar::v1::RegisterNodeRequest* request,
                            cellar::v1::RegisterNodeResponse* response) override;
  grpc::Status Watch(grpc::ServerContext* context, const cellar::v1::WatchRequest* request,
                     grpc::ServerWriter<cellar::v1::ClusterEvent>* writer) override;
  grpc::Status AllocateOids(grpc::ServerContext* context,
                            const cellar::v1::AllocateOidsRequest* request,
                            cellar::v1::AllocateOidsResponse* response) override;
  grpc::Status Begin(grpc::ServerContext* context, const cellar::v1::BeginRequest* request,
                     cellar::v1::BeginResponse* response) override;
  grpc::Status Finish(grpc::ServerContext* context, const cellar::v1::FinishRequest* request,
                      cellar::v1::FinishResponse* response) override;
  grpc::Status Abort(grpc::ServerContext* context, const cellar::v1::AbortRequest* request,
                     cellar::v1::AbortResponse* response) override;
  grpc::Status GetTransactionStatus(
      grpc::ServerContext* context, const cellar::v1::GetTransactionStatusRequest* request,
      cellar::v1::GetTransactionStatusResponse* response) override;
  grpc::Status GetClusterInfo(grpc::ServerContext* context,
                              const cellar::v1::GetClusterInfoRequest* request,
                              cellar::v1::GetClusterInfoResponse* response) override;
  grpc::Status StartCluster(grpc::ServerContext* context,
                            const cellar::v1::StartClusterRequest* request,
                            cellar::v1::StartClusterResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context,
                         const cellar::v1::HeartbeatRequest* request,
                         cellar::v1::HeartbeatResponse* response) override;
  grpc::Status ReportReplication(grpc::ServerContext* context,
                                 const cellar::v1::ReportReplicationRequest* request,
                                 cellar::v1::ReportReplicationResponse* response) override;
  grpc::Status ReportUnreachable(grpc::ServerContext* context,
                                 const cellar::v1::ReportUnreachableRequest* request,
                                 cellar::v1::ReportUnreachableResponse* response) override;
  // Replica checks, repair and truncate.
  grpc::Status CheckReplicas(grpc::ServerContext* context,
                             const cellar::v1::CheckReplicasRequest* request,
                             cellar::v1::CheckReplicasResponse* response) override;
  grpc::Status GetCheckStatus(grpc::ServerContext* context,
                              const cellar::v1::GetCheckStatusRequest* request,
                              cellar::v1::GetCheckStatusResponse* response) override;
  grpc::Status RepairCell(grpc::ServerContext* context,
                          const cellar::v1::RepairCellRequest* request,
                          cellar::v1::RepairCellResponse* response) override;
  grpc::Status Truncate(grpc::ServerContext* context, const cellar::v1::TruncateRequest* request,
                        cellar::v1::TruncateResponse* response) override;
  grpc::Status Pack(grpc::ServerContext* context, const cellar::v1::PackRequest* request,
                    cellar::v1::PackResponse* response) override;
  grpc::Status GetPackStatus(grpc::ServerContext* context,
                             const cellar::v1::GetPackStatusRequest* request,
                             cellar::v1::GetPackStatusResponse* response) override;
  // Operator actions (partition table, cluster state, kill).
  grpc::Status SetClusterState(grpc::ServerContext* context,
                               const cellar::v1::SetClusterStateRequest* request,
                               cellar::v1::SetClusterStateResponse* response) override;
  grpc::Status ChangePartitionTable(grpc::ServerContext* context,
                                    const cellar::v1::ChangePartitionTableRequest* request,
                                    cellar::v1::ChangePartitionTableResponse* response) override;
  grpc::Status KillNode(grpc::ServerContext* context,
                        const cellar::v1::KillNodeRequest* request,
                        cellar::v1::KillNodeResponse* response) override;
  // Cluster tokens.
  grpc::Status CreateToken(grpc::ServerContext* context,
                           const cellar::v1::CreateTokenRequest* request,
                           cellar::v1::CreateTokenResponse* response) override;
  grpc::Status ListTokens(grpc::ServerContext* context,
                          const cellar::v1::ListTokensRequest* request,
                          cellar::v1::ListTokensResponse* response) override;
  grpc::Status RevokeToken(grpc::ServerContext* context,
                           const cellar::v1::RevokeTokenRequest* request,
                           cellar::v1::RevokeTokenResponse* response) override;
  grpc::Status GetTokenTable(grpc::ServerContext* context,
                             const cellar::v1::GetTokenTableRequest* request,
                             cellar::v1::GetTokenTableResponse* response) override;
  grpc::Status SetFeatureFlag(grpc::ServerContext* context,
                              const cellar::v1::SetFeatureFlagRequest* request,
                              cellar::v1::SetFeatureFlagResponse* response) override;
  grpc::Status ListFeatureFlags(grpc::ServerContext* context,
                                const cellar::v1::ListFeatureFlagsRequest* request,
                                cellar::v1::ListFeatureFlagsResponse* response) override;
  grpc::Status DeleteFeatureFlag(grpc::ServerContext* context,
                                 const cellar::v1::DeleteFeatureFlagRequest* request,
                                 cellar::v1::DeleteFeatureFlagResponse* response) override;
  grpc::Status ListVersions(grpc::ServerContext* context,
                            const cellar::v1::ListVersionsRequest* request,
                            cellar::v1::ListVersionsResponse* response) override;
  grpc::Status QuarantineVersion(grpc::ServerContext* context,
                                 const cellar::v1::QuarantineVersionRequest* request,
                                 cellar::v1::QuarantineVersionResponse* response) override;
  grpc::Status UnquarantineVersion(grpc::ServerContext* context,
                                   const cellar::v1::QuarantineVersionRequest* request,
                                   cellar::v1::QuarantineVersionResponse* response) override;
  grpc::Status GetCanaryAnalysis(grpc::ServerContext* context,
                                 const cellar::v1::GetCanaryAnalysisRequest* request,
                                 cellar::v1::GetCanaryAnalysisResponse* response) override;

 private:
  class Call;

  // The inner service if the call may proceed (the context is then
  // tracked until Leave), else null and `*refusal` set.
  cellar::v1::Master::Service* Enter(grpc::ServerContext* context, grpc::Status* refusal);
  void Leave(grpc::ServerContext* context);

  const std::function<bool()> is_primary_;
  const std::function<std::string()> primary_address_;
  CallHolder* const holder_;
  mutable absl::Mutex mu_;
  cellar::v1::Master::Service* inner_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::string close_reason_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<grpc::ServerContext*> active_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_PRIMARY_GATE_H_
