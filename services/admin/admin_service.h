#ifndef CELLAR_SERVICES_ADMIN_ADMIN_SERVICE_H_
#define CELLAR_SERVICES_ADMIN_ADMIN_SERVICE_H_

// cellar.v1.Admin: the operator API, answered by asking the primary
// master (cluster state, nodes, partition table, start) and the storage
// nodes (transactions, histories). Every outbound call has a deadline;
// an unreachable master is UNAVAILABLE. Thread-safe.

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"

namespace cellar::admin {

struct AdminOptions {
  // Master addresses, tried in order. Required.
  std::vector<std::string> master_addresses;
  // Deadline of each call to the master or a storage. Default 5 s.
  absl::Duration rpc_timeout = absl::Seconds(5);
};

class AdminService final : public cellar::v1::Admin::Service {
 public:
  explicit AdminService(AdminOptions options);

  grpc::Status GetClusterStatus(grpc::ServerContext* context,
                                const cellar::v1::GetClusterStatusRequest* request,
                                cellar::v1::GetClusterStatusResponse* response) override;
  grpc::Status ListNodes(grpc::ServerContext* context,
                         const cellar::v1::ListNodesRequest* request,
                         cellar::v1::ListNodesResponse* response) override;
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

 private:
  // GetClusterInfo from the first master that answers.
  grpc::Status ClusterInfo(cellar::v1::GetClusterInfoResponse* info);
  cellar::v1::Master::Stub* MasterStub(size_t i);
  cellar::v1::Storage::Stub* StorageStub(const std::string& address);

  const AdminOptions options_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<cellar::v1::Master::Stub>> masters_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, std::unique_ptr<cellar::v1::Storage::Stub>>> storages_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::admin

#endif  // CELLAR_SERVICES_ADMIN_ADMIN_SERVICE_H_
