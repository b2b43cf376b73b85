#ifndef CELLAR_SERVICES_MASTER_MASTER_SERVICE_H_
#define CELLAR_SERVICES_MASTER_MASTER_SERVICE_H_

// cellar.v1.Master over the domain objects: validate -> call -> map status.
// Uses gRPC's synchronous API: Watch streams hold one server thread each
// (one per connected node), which suits clusters of tens to hundreds of
// nodes and keeps blocking commit waits simple. Each Watch stream wakes at
// least every 200 ms and uses that to run the heartbeat check
// (ClusterManager::ExpireSilentNodes), so no extra thread is needed.
// Thread-safe.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/common/authenticator.h"
#include "services/common/stream_limiter.h"
#include "services/master/call_holder.h"
#include "services/master/canary_analysis.h"
#include "services/master/cluster_manager.h"
#include "services/master/event_hub.h"
#include "services/master/pack_coordinator.h"
#include "services/master/replica_checker.h"
#include "services/master/storage_caller.h"
#include "services/master/transaction_coordinator.h"
#include "services/master/truncator.h"
#include "services/master/unreachable_prober.h"

namespace cellar::master {

class MasterService final : public cellar::v1::Master::Service {
 public:
  // `storages` (may be null: KillNode then cannot stop nodes) calls
  // storages for operator actions. `authenticator` (null = auth off, not
  // owned) lets RegisterNode require the node role for storages and admins.
  MasterService(ClusterManager* cluster, TransactionCoordinator* coordinator,
                EventHub* hub, StorageCaller* storages = nullptr,
                const common::Authenticator* authenticator = nullptr)
      : cluster_(cluster),
        coordinator_(coordinator),
        hub_(hub),
        storages_(storages),
        authenticator_(authenticator),
        watch_limiter_(std::make_unique<common::StreamLimiter>(
            "Watch streams", kDefaultMaxWatchStreams, kDefaultMaxWatchStreamsPerCaller)) {}

  // Bounds on concurrent Watch streams (each holds a server thread for the
  // life of a node's session): in all, and per caller (token). Call before
  // serving. Default kDefaultMaxWatchStreams / ...PerCaller.
  static constexpr size_t kDefaultMaxWatchStreams = 1024;
  static constexpr size_t kDefaultMaxWatchStreamsPerCaller = 256;
  void SetWatchLimits(size_t total, size_t per_caller) {
    watch_limiter_ = std::make_unique<common::StreamLimiter>("Watch streams", total, per_caller);
  }

  // Delayed acceptance (call_holder.h): Begin and AllocateOids that
  // arrive while the cluster is RECOVERING or VERIFYING wait (bounded by
  // `holder`) for RUNNING instead of being refused. Null (the default):
  // refused at once. Not owned; call before serving.
  void SetCallHolder(CallHolder* holder) { holder_ = holder; }

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

  // Master.ReportUnreachable (UnreachableProber does the work). Until set,
  // it answers UNIMPLEMENTED. Not owned; call before serving.
  void SetUnreachableProber(UnreachableProber* prober) { prober_ = prober; }
  // Receives the storages' heartbeat counters and answers
  // Master.GetCanaryAnalysis (UNIMPLEMENTED until set). Not owned; call
  // before serving.
  void SetCanaryAnalysis(CanaryAnalysis* canary) { canary_ = canary; }
  grpc::Status ReportUnreachable(grpc::ServerContext* context,
                                 const cellar::v1::ReportUnreachableRequest* request,
                                 cellar::v1::ReportUnreachableResponse* response) override;

  // ---- Replica checks, repair and truncate (docs/operations.md) ----
  // Until set, CheckReplicas/GetCheckStatus/Truncate answer UNIMPLEMENTED.
  // Call before the service serves; neither is owned.
  void SetCheckAndTruncate(ReplicaChecker* checker, Truncator* truncator) {
    checker_ = checker;
    truncator_ = truncator;
  }
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

  // ---- Pack (docs/lifecycle.md) ----
  // Until set, Pack/GetPackStatus answer UNIMPLEMENTED. Not owned.
  void SetPack(PackCoordinator* pack) { pack_ = pack; }
  grpc::Status Pack(grpc::ServerContext* context, const cellar::v1::PackRequest* request,
                    cellar::v1::PackResponse* response) override;
  grpc::Status GetPackStatus(grpc::ServerContext* context,
                             const cellar::v1::GetPackStatusRequest* request,
                             cellar::v1::GetPackStatusResponse* response) override;

  // ---- Operator actions (ClusterManager does the work) ----
  grpc::Status SetClusterState(grpc::ServerContext* context,
                               const cellar::v1::SetClusterStateRequest* request,
                               cellar::v1::SetClusterStateResponse* response) override;
  grpc::Status ChangePartitionTable(grpc::ServerContext* context,
                                    const cellar::v1::ChangePartitionTableRequest* request,
                                    cellar::v1::ChangePartitionTableResponse* response) override;
  grpc::Status KillNode(grpc::ServerContext* context,
                        const cellar::v1::KillNodeRequest* request,
                        cellar::v1::KillNodeResponse* response) override;

  // ---- Cluster tokens (ClusterManager::tokens() does the work) ----
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

  // ---- Feature flags (ClusterManager does the work) ----
  grpc::Status SetFeatureFlag(grpc::ServerContext* context,
                              const cellar::v1::SetFeatureFlagRequest* request,
                              cellar::v1::SetFeatureFlagResponse* response) override;
  grpc::Status ListFeatureFlags(grpc::ServerContext* context,
                                const cellar::v1::ListFeatureFlagsRequest* request,
                                cellar::v1::ListFeatureFlagsResponse* response) override;
  grpc::Status DeleteFeatureFlag(grpc::ServerContext* context,
                                 const cellar::v1::DeleteFeatureFlagRequest* request,
                                 cellar::v1::DeleteFeatureFlagResponse* response) override;

  // ---- Version registry and quarantine (ClusterManager does the work) ----
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
  ReplicaChecker* checker_ = nullptr;
  Truncator* truncator_ = nullptr;
  UnreachableProber* prober_ = nullptr;
  CanaryAnalysis* canary_ = nullptr;
  PackCoordinator* pack_ = nullptr;
  ClusterManager* cluster_;
  TransactionCoordinator* coordinator_;
  EventHub* hub_;
  StorageCaller* storages_;
  const common::Authenticator* authenticator_;
  std::unique_ptr<common::StreamLimiter> watch_limiter_;
  CallHolder* holder_ = nullptr;

  // Runs `serve`; while it refuses because the cluster is not RUNNING yet
  // (CLUSTER_NOT_RUNNING while RECOVERING or VERIFYING), holds the call
  // (holder_) until the cluster is RUNNING and runs `serve` again. See
  // call_holder.h for the bounds and the answers of a hold that expires.
  absl::StatusOr<uint64_t> ServeWhenRunning(
      const grpc::ServerContext& context,
      const std::function<absl::StatusOr<uint64_t>()>& serve) const;

  // With auth on: which principal registered each client node id, so that
  // a client cannot begin, finish, abort or watch as another one.
  void RecordOwner(uint32_t node_id, std::string principal);
  // PERMISSION_DENIED if `node_id` was registered by another principal
  // (the node role acts for anyone; unknown ids are the cluster's to
  // refuse).
  absl::Status CheckOwner(const grpc::ServerContext& context, uint32_t node_id) const;
  // GetTransactionStatus with auth on: `node_id` is required (INVALID_ARGUMENT)
  // and must pass CheckOwner, and so must the node that began `ttid` when
  // this master knows it (PERMISSION_DENIED).
  absl::Status CheckStatusAsker(const grpc::ServerContext& context, uint32_t node_id,
                                uint64_t ttid) const;
  static constexpr size_t kMinOwnerPrune = 1024;
  mutable absl::Mutex owners_mu_;
  absl::flat_hash_map<uint32_t, std::string> owners_ ABSL_GUARDED_BY(owners_mu_);
  size_t prune_owners_at_ ABSL_GUARDED_BY(owners_mu_) = kMinOwnerPrune;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_MASTER_SERVICE_H_
