#ifndef CELLAR_SERVICES_ADMIN_ADMIN_SERVICE_H_
#define CELLAR_SERVICES_ADMIN_ADMIN_SERVICE_H_

// cellar.v1.Admin: the operator API. A thin adapter: validates the
// request, resolves its `cluster`, asks the cluster's primary master
// (state, nodes, partition table, start) or storage nodes (transactions,
// histories) through ClusterClients, or reads the AlertIndex, and maps
// absl::Status to grpc::Status (details kept). Every outbound call has a
// deadline; a cluster whose masters do not answer is UNAVAILABLE.
//
// Thread-safe.

#include <grpcpp/grpcpp.h>

#include "protos/cellar/v1/admin.grpc.pb.h"
#include "services/admin/alert_index.h"
#include "services/admin/cluster_clients.h"
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

 private:
  ClusterClients* const clusters_;
  AlertIndex* const alerts_;
  const common::Clock* const clock_;
};

}  // namespace cellar::admin

#endif  // CELLAR_SERVICES_ADMIN_ADMIN_SERVICE_H_
