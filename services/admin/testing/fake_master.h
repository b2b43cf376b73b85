#ifndef CELLAR_SERVICES_ADMIN_TESTING_FAKE_MASTER_H_
#define CELLAR_SERVICES_ADMIN_TESTING_FAKE_MASTER_H_

// A canned cellar.v1.Master for admin tests (testonly): GetClusterInfo
// answers what the test set (or the status it set), StartCluster answers
// the state or status the test set. Serves on 127.0.0.1:0 with the common
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

  void Shutdown();

  grpc::Status GetClusterInfo(grpc::ServerContext* context,
                              const ::cellar::v1::GetClusterInfoRequest* request,
                              ::cellar::v1::GetClusterInfoResponse* response) override;
  grpc::Status StartCluster(grpc::ServerContext* context,
                            const ::cellar::v1::StartClusterRequest* request,
                            ::cellar::v1::StartClusterResponse* response) override;

 private:
  FakeMaster() = default;
  std::unique_ptr<common::GrpcServer> server_;
  mutable absl::Mutex mu_;
  ::cellar::v1::GetClusterInfoResponse info_ ABSL_GUARDED_BY(mu_);
  absl::Status info_error_ ABSL_GUARDED_BY(mu_);
  ::cellar::v1::ClusterState start_state_ ABSL_GUARDED_BY(mu_) = ::cellar::v1::CLUSTER_RUNNING;
  absl::Status start_error_ ABSL_GUARDED_BY(mu_);
  int start_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

// A RUNNING cluster "cellar" with `storages` running storages S1..Sn,
// master M1, `partitions` partitions with `replicas`+1 UP_TO_DATE cells
// each (round-robin), registered at `registered_unix_ms`.
::cellar::v1::GetClusterInfoResponse HealthyClusterInfo(int storages = 3, int partitions = 4,
                                                         int replicas = 1,
                                                         int64_t registered_unix_ms = 0);

}  // namespace cellar::admin::testing

#endif  // CELLAR_SERVICES_ADMIN_TESTING_FAKE_MASTER_H_
