#ifndef CELLAR_SERVICES_STORAGE_MASTER_LINK_H_
#define CELLAR_SERVICES_STORAGE_MASTER_LINK_H_

// The storage node's connection to the primary master, as the node sees it:
// messages in, absl::Status out (no gRPC types). GrpcMasterLink is the real
// one; tests may substitute their own.
//
// Implementations are thread-safe; Cancel() may be called from any thread
// while another thread is inside Watch().

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "protos/cellar/v1/master.pb.h"
#include "services/common/data_path_stats.h"

namespace cellar::storage {

class MasterLink {
 public:
  virtual ~MasterLink() = default;

  // Master.RegisterNode. Errors as the master sends them (FAILED_PRECONDITION
  // with reason WRONG_CLUSTER / PROTOCOL_MISMATCH), UNAVAILABLE when no
  // master answers.
  virtual absl::StatusOr<::cellar::v1::RegisterNodeResponse> RegisterNode(
      const ::cellar::v1::RegisterNodeRequest& request) = 0;

  // Master.GetClusterInfo (to re-fetch the partition table after a gap).
  virtual absl::StatusOr<::cellar::v1::GetClusterInfoResponse> GetClusterInfo() = 0;

  // Master.Watch: calls `on_event` for every event, in order, on the
  // calling thread, until the stream ends; returns how it ended (OK if the
  // master closed it cleanly, CANCELLED after Cancel()).
  virtual absl::Status Watch(
      uint32_t node_id,
      const std::function<void(const ::cellar::v1::ClusterEvent&)>& on_event) = 0;

  // Master.Heartbeat, with the votes the master should resolve
  // (HeartbeatRequest.stale_votes) and this node's cumulative data-path
  // counters (HeartbeatRequest.data_path, for the canary analysis):
  // NOT_FOUND when the master does not count this node as connected (it
  // will end the Watch stream; register again).
  virtual absl::Status Heartbeat(uint32_t node_id, const std::vector<uint64_t>& stale_votes,
                                 const common::DataPathSample& data_path) = 0;

  // Master.ReportReplication (replication progress of one cell).
  virtual absl::StatusOr<::cellar::v1::ReportReplicationResponse> ReportReplication(
      const ::cellar::v1::ReportReplicationRequest& request) = 0;

  // Master.GetTokenTable: the cluster token table when its version is not
  // `known_version`. (The default answers UNIMPLEMENTED, for fakes.)
  virtual absl::StatusOr<::cellar::v1::GetTokenTableResponse> GetTokenTable(
      uint64_t /*known_version*/) {
    return absl::UnimplementedError("GetTokenTable");
  }

  // Ends a Watch in progress and makes every later call fail with
  // CANCELLED (node shutdown). Idempotent.
  virtual void Cancel() = 0;
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_MASTER_LINK_H_
