#ifndef CELLAR_SERVICES_ADMIN_TESTING_FAKE_MASTER_H_
#define CELLAR_SERVICES_ADMIN_TESTING_FAKE_MASTER_H_

// A canned cellar.v1.Master for admin tests (testonly): GetClusterInfo
// answers what the test set (or the status it set), StartCluster answers
// the state or status the test set. The operator actions (SetClusterState,
// ChangePartitionTable, KillNode, CheckReplicas, GetCheckStatus, RepairCell,
// Truncate) record their request and answer canned values, or the error
// the test set. Serves on 127.0.0.1:0 with the common
// harness (so reflection and health work too).
//
// Thread-safe.

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/common/grpc_server.h"

namespace cellar::admin::testing {

class FakeMaster final : public ::cellar::v1::Master::Service {
 public:
  static absl::StatusOr<std::unique_ptr<FakeMaster>> Start();
  ~FakeMaster() override;

  std::string address() const;

  // GetClusterInfo answers `info` (OK) ...
  void SetClusterInfo(const ::cellar::v1::GetClusterInfoResponse& info);
  // ... or fails with `status` while it is not OK.
  void SetClusterInfoError(const absl::Status& status);
  // StartCluster answers `state`, or fails with `status` if not OK.
  void SetStartResult(::cellar::v1::ClusterState state, const absl::Status& status);
  int start_calls() const;

  // Every operator action fails with `status` while it is not OK.
  void SetActionError(const absl::Status& status);
  // ChangePartitionTable's and GetCheckStatus's answers. The others:
  // SetClusterState echoes the state, KillNode the node (DOWN, stopped =
  // stop), CheckReplicas check_id 7, RepairCell ptid 5, Truncate last_tid =
  // tid and RUNNING.
  void SetChangeResponse(const ::cellar::v1::ChangePartitionTableResponse& response);
  void SetCheckStatus(const ::cellar::v1::GetCheckStatusResponse& response);
  // The last action's rpc name ("" if none) and request (T must match).
  std::string last_action() const;
  template <typename T>
  T last_request() const {
    absl::MutexLock l(&mu_);
    T out;
    if (last_request_ != nullptr && last_request_->GetDescriptor() == T::descriptor()) {
      out.CopyFrom(*last_request_);
    }
    return out;
  }

  void Shutdown();

  grpc::Status GetClusterInfo(grpc::ServerContext* context,
                              const ::cellar::v1::GetClusterInfoRequest* request,
                              ::cellar::v1::GetClusterInfoResponse* response) override;
  grpc::Status StartCluster(grpc::ServerContext* context,
                            const ::cellar::v1::StartClusterRequest* request,
                            ::cellar::v1::StartClusterResponse* response) override;
  grpc::Status SetClusterState(grpc::ServerContext* context,
                               const ::cellar::v1::SetClusterStateRequest* request,
                               ::cellar::v1::SetClusterStateResponse* response) override;
  grpc::Status ChangePartitionTable(grpc::ServerContext* context,
                                    const ::cellar::v1::ChangePartitionTableRequest* request,
                                    ::cellar::v1::ChangePartitionTableResponse* response) override;
  grpc::Status KillNode(grpc::ServerContext* context,
                        const ::cellar::v1::KillNodeRequest* request,
                        ::cellar::v1::KillNodeResponse* response) override;
  grpc::Status CheckReplicas(grpc::ServerContext* context,
                             const ::cellar::v1::CheckReplicasRequest* request,
                             ::cellar::v1::CheckReplicasResponse* response) override;
  grpc::Status GetCheckStatus(grpc::ServerContext* context,
                              const ::cellar::v1::GetCheckStatusRequest* request,
                              ::cellar::v1::GetCheckStatusResponse* response) override;
  grpc::Status RepairCell(grpc::ServerContext* context,
                          const ::cellar::v1::RepairCellRequest* request,
                          ::cellar::v1::RepairCellResponse* response) override;
  grpc::Status Truncate(grpc::ServerContext* context,
                        const ::cellar::v1::TruncateRequest* request,
                        ::cellar::v1::TruncateResponse* response) override;

 private:
  FakeMaster() = default;
  std::unique_ptr<common::GrpcServer> server_;
  mutable absl::Mutex mu_;
  ::cellar::v1::GetClusterInfoResponse info_ ABSL_GUARDED_BY(mu_);
  absl::Status info_error_ ABSL_GUARDED_BY(mu_);
  ::cellar::v1::ClusterState start_state_ ABSL_GUARDED_BY(mu_) = ::cellar::v1::CLUSTER_RUNNING;
  absl::Status start_error_ ABSL_GUARDED_BY(mu_);
  int start_calls_ ABSL_GUARDED_BY(mu_) = 0;
  // Records an action; returns the error to answer (OK: answer).
  grpc::Status Action(const std::string& name, const google::protobuf::Message& request);
  absl::Status action_error_ ABSL_GUARDED_BY(mu_);
  std::string last_action_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<google::protobuf::Message> last_request_ ABSL_GUARDED_BY(mu_);
  ::cellar::v1::ChangePartitionTableResponse change_response_ ABSL_GUARDED_BY(mu_);
  ::cellar::v1::GetCheckStatusResponse check_status_ ABSL_GUARDED_BY(mu_);
};

// A RUNNING cluster "cellar" with `storages` running storages S1..Sn,
// master M1, `partitions` partitions with `replicas`+1 UP_TO_DATE cells
// each (round-robin), registered at `registered_unix_ms`.
::cellar::v1::GetClusterInfoResponse HealthyClusterInfo(int storages = 3, int partitions = 4,
                                                         int replicas = 1,
                                                         int64_t registered_unix_ms = 0);

}  // namespace cellar::admin::testing

#endif  // CELLAR_SERVICES_ADMIN_TESTING_FAKE_MASTER_H_
