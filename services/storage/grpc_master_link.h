#ifndef CELLAR_SERVICES_STORAGE_GRPC_MASTER_LINK_H_
#define CELLAR_SERVICES_STORAGE_GRPC_MASTER_LINK_H_

// MasterLink over gRPC. Given several master addresses, RegisterNode tries
// them in turn starting with the last one that answered, and sticks to the
// first that accepts (the primary); Watch and GetClusterInfo go to that one.
// Every unary call has a deadline (rpc_timeout); the Watch stream has none
// (keepalive detects a dead peer). A master is dialled on a new channel
// after its Watch stream ends and after a registration on it fails
// (common::RedialAfter).
//
// Thread-safe.

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/storage/master_link.h"
#include "services/common/channel.h"

namespace cellar::storage {

class GrpcMasterLink final : public MasterLink {
 public:
  // `addresses`: host:port of each master (at least one). `node_channel`:
  // the node bearer (NodeBearer of the cluster secret; empty = none) sent
  // on every call, and the transport (TLS or plaintext; default plaintext).
  GrpcMasterLink(std::vector<std::string> addresses, absl::Duration rpc_timeout,
                 common::ChannelSecurity node_channel = {});
  ~GrpcMasterLink() override;

  absl::StatusOr<::cellar::v1::RegisterNodeResponse> RegisterNode(
      const ::cellar::v1::RegisterNodeRequest& request) override;
  absl::StatusOr<::cellar::v1::GetClusterInfoResponse> GetClusterInfo() override;
  absl::Status Watch(
      uint32_t node_id,
      const std::function<void(const ::cellar::v1::ClusterEvent&)>& on_event) override;
  absl::Status Heartbeat(uint32_t node_id, const std::vector<uint64_t>& stale_votes,
                         const common::DataPathSample& data_path) override;
  absl::StatusOr<::cellar::v1::GetTokenTableResponse> GetTokenTable(
      uint64_t known_version) override;
  absl::StatusOr<::cellar::v1::ReportReplicationResponse> ReportReplication(
      const ::cellar::v1::ReportReplicationRequest& request) override;
  void Cancel() override;

 private:
  // A unary call to the current master with a deadline, tracked for Cancel.
  template <typename Request, typename Response, typename Method>
  absl::StatusOr<Response> Unary(const char* what, const Request& request, Method method);
  // Shared: Redial may drop the stub while a call uses it.
  std::shared_ptr<::cellar::v1::Master::Stub> Stub(size_t index);
  // The next call to master `index` dials on a new channel (a fresh DNS
  // resolution of its name, common::RedialAfter).
  void Redial(size_t index);
  // Registers `context` so Cancel() can cancel it; false if cancelled.
  bool Track(grpc::ClientContext* context);
  void Untrack(grpc::ClientContext* context);

  const std::vector<std::string> addresses_;
  const absl::Duration rpc_timeout_;
  const common::ChannelSecurity node_channel_;
  absl::Mutex mu_;
  std::vector<std::shared_ptr<::cellar::v1::Master::Stub>> stubs_ ABSL_GUARDED_BY(mu_);
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<grpc::ClientContext*> active_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_GRPC_MASTER_LINK_H_
