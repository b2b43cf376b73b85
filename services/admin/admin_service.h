#ifndef CELLAR_SERVICES_ADMIN_ADMIN_SERVICE_H_
#define CELLAR_SERVICES_ADMIN_ADMIN_SERVICE_H_

// cellar.v1.Admin: the operator API. A thin adapter: validates the
// request, resolves its `cluster`, asks the cluster's primary master
// (state, nodes, partition table, start, and the operator actions: state
// changes, partition-table changes, kill, check, repair, truncate) or
// storage nodes (transactions, histories, StopNode) through ClusterClients, or reads the AlertIndex, and maps
// absl::Status to grpc::Status (details kept). Every outbound call has a
// deadline; a cluster whose masters do not answer is UNAVAILABLE.
//
// Thread-safe.

#include <functional>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "protos/cellar/v1/admin.grpc.pb.h"
#include "services/admin/alert_index.h"
#include "services/admin/cluster_clients.h"
#include "services/common/authenticator.h"
#include "services/common/clock.h"

namespace cellar::admin {

class AdminService final : public cellar::v1::Admin::Service {
 public:
  // Every pointer must outlive the service.
  AdminService(ClusterClients* clusters, AlertIndex* alerts, const common::Clock* clock);

  grpc::Status GetClusterStatus(grpc::ServerContext* context,
                                const cellar::v1::GetClusterStatusRequest* request,
                                cellar::v1::GetClusterStatusResponse* response) override;
  grpc::Status ListNodes(grpc::ServerContext* context,
                         const cellar::v1::ListNodesRequest* request,
                         cellar::v1::ListNodesResponse* response) override;
  grpc::Status GetNode(grpc::ServerContext* context, const cellar::v1::GetNodeRequest* request,
                       cellar::v1::GetNodeResponse* response) override;
  grpc::Status GetPartitionTable(grpc::ServerContext* context,
                                 const cellar::v1::GetPartitionTableRequest* request,
                                 cellar::v1::GetPartitionTableResponse* response) override;
  grpc::Status StartCluster(grpc::ServerContext* context,
                            const cellar::v1::AdminStartClusterRequest* request,
                            cellar::v1::AdminStartClusterResponse* response) override;
  grpc::Status LastTransactions(grpc::ServerContext* context,
                                const cellar::v1::AdminLastTransactionsRequest* request,
                                cellar::v1::AdminLastTransactionsResponse* response) override;
  grpc::Status ObjectHistory(grpc::ServerContext* context,
                             const cellar::v1::ObjectHistoryRequest* request,
                             cellar::v1::ObjectHistoryResponse* response) override;
  grpc::Status ListClusters(grpc::ServerContext* context,
                            const cellar::v1::ListClustersRequest* request,
                            cellar::v1::ListClustersResponse* response) override;
  grpc::Status ListAlerts(grpc::ServerContext* context,
                          const cellar::v1::ListAlertsRequest* request,
                          cellar::v1::ListAlertsResponse* response) override;
  grpc::Status AcknowledgeAlert(grpc::ServerContext* context,
                                const cellar::v1::AcknowledgeAlertRequest* request,
                                cellar::v1::AcknowledgeAlertResponse* response) override;
  grpc::Status DeleteAlert(grpc::ServerContext* context,
                           const cellar::v1::DeleteAlertRequest* request,
                           cellar::v1::DeleteAlertResponse* response) override;

  // ---- Operator actions (forwarded to the master; StopNode to the storage).
  grpc::Status SetClusterState(grpc::ServerContext* context,
                               const cellar::v1::AdminSetClusterStateRequest* request,
                               cellar::v1::AdminSetClusterStateResponse* response) override;
  grpc::Status TweakPartitionTable(grpc::ServerContext* context,
                                   const cellar::v1::TweakPartitionTableRequest* request,
                                   cellar::v1::PartitionTableChangeResponse* response) override;
  grpc::Status AddStorages(grpc::ServerContext* context,
                           const cellar::v1::AddStoragesRequest* request,
                           cellar::v1::PartitionTableChangeResponse* response) override;
  grpc::Status DropStorage(grpc::ServerContext* context,
                           const cellar::v1::DropStorageRequest* request,
                           cellar::v1::PartitionTableChangeResponse* response) override;
  grpc::Status SetReplicas(grpc::ServerContext* context,
                           const cellar::v1::SetReplicasRequest* request,
                           cellar::v1::PartitionTableChangeResponse* response) override;
  grpc::Status KillNode(grpc::ServerContext* context,
                        const cellar::v1::AdminKillNodeRequest* request,
                        cellar::v1::AdminKillNodeResponse* response) override;
  grpc::Status CheckReplicas(grpc::ServerContext* context,
                             const cellar::v1::AdminCheckReplicasRequest* request,
                             cellar::v1::AdminCheckReplicasResponse* response) override;
  grpc::Status GetCheckStatus(grpc::ServerContext* context,
                              const cellar::v1::AdminGetCheckStatusRequest* request,
                              cellar::v1::AdminGetCheckStatusResponse* response) override;
  grpc::Status RepairCell(grpc::ServerContext* context,
                          const cellar::v1::AdminRepairCellRequest* request,
                          cellar::v1::AdminRepairCellResponse* response) override;
  grpc::Status Pack(grpc::ServerContext* context, const cellar::v1::AdminPackRequest* request,
                    cellar::v1::AdminPackResponse* response) override;
  grpc::Status GetPackStatus(grpc::ServerContext* context,
                             const cellar::v1::AdminGetPackStatusRequest* request,
                             cellar::v1::AdminGetPackStatusResponse* response) override;
  grpc::Status Truncate(grpc::ServerContext* context,
                        const cellar::v1::AdminTruncateRequest* request,
                        cellar::v1::AdminTruncateResponse* response) override;
  grpc::Status StopNode(grpc::ServerContext* context, const cellar::v1::StopNodeRequest* request,
                        cellar::v1::StopNodeResponse* response) override;

  // ---- Tokens (forwarded to the master) ----
  grpc::Status CreateToken(grpc::ServerContext* context,
                           const cellar::v1::AdminCreateTokenRequest* request,
                           cellar::v1::CreateTokenResponse* response) override;
  grpc::Status ListTokens(grpc::ServerContext* context,
                          const cellar::v1::AdminListTokensRequest* request,
                          cellar::v1::ListTokensResponse* response) override;
  grpc::Status RevokeToken(grpc::ServerContext* context,
                           const cellar::v1::AdminRevokeTokenRequest* request,
                           cellar::v1::RevokeTokenResponse* response) override;
  // ---- Feature flags (forwarded to the master) ----
  grpc::Status SetFeatureFlag(grpc::ServerContext* context,
                              const cellar::v1::AdminSetFeatureFlagRequest* request,
                              cellar::v1::SetFeatureFlagResponse* response) override;
  grpc::Status ListFeatureFlags(grpc::ServerContext* context,
                                const cellar::v1::AdminListFeatureFlagsRequest* request,
                                cellar::v1::ListFeatureFlagsResponse* response) override;
  grpc::Status DeleteFeatureFlag(grpc::ServerContext* context,
                                 const cellar::v1::AdminDeleteFeatureFlagRequest* request,
                                 cellar::v1::DeleteFeatureFlagResponse* response) override;
  // Called after CreateToken or RevokeToken changed the table (the admin
  // then adopts it at once). Set before serving. Default none.
  // ---- Version registry and quarantine (forwarded to the master) ----
  grpc::Status ListVersions(grpc::ServerContext* context,
                            const cellar::v1::AdminListVersionsRequest* request,
                            cellar::v1::ListVersionsResponse* response) override;
  grpc::Status QuarantineVersion(grpc::ServerContext* context,
                                 const cellar::v1::AdminQuarantineVersionRequest* request,
                                 cellar::v1::QuarantineVersionResponse* response) override;
  grpc::Status UnquarantineVersion(grpc::ServerContext* context,
                                   const cellar::v1::AdminQuarantineVersionRequest* request,
                                   cellar::v1::QuarantineVersionResponse* response) override;
  grpc::Status GetCanaryAnalysis(grpc::ServerContext* context,
                                 const cellar::v1::AdminGetCanaryAnalysisRequest* request,
                                 cellar::v1::GetCanaryAnalysisResponse* response) override;
  // Identifies callers for the quarantine history (their principal). Not
  // owned; null (default) when auth is off. Set before serving.
  void set_authenticator(const common::Authenticator* authenticator) {
    authenticator_ = authenticator;
  }
  void set_on_tokens_changed(std::function<void()> callback) {
    on_tokens_changed_ = std::move(callback);
  }

 private:
  // Master.ChangePartitionTable with `request`, answered into `response`.
  grpc::Status ChangePartitionTable(absl::string_view cluster,
                                    const cellar::v1::ChangePartitionTableRequest& request,
                                    cellar::v1::PartitionTableChangeResponse* response);

  ClusterClients* const clusters_;
  AlertIndex* const alerts_;
  const common::Clock* const clock_;
  std::function<void()> on_tokens_changed_;
  const common::Authenticator* authenticator_ = nullptr;
  // Quarantine and Unquarantine: checked here, then forwarded.
  grpc::Status ForwardQuarantine(const grpc::ServerContext& context,
                                 const cellar::v1::AdminQuarantineVersionRequest& request,
                                 bool quarantine, cellar::v1::QuarantineVersionResponse* response);
};

}  // namespace cellar::admin

#endif  // CELLAR_SERVICES_ADMIN_ADMIN_SERVICE_H_
