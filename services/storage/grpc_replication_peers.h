#ifndef CELLAR_SERVICES_STORAGE_GRPC_REPLICATION_PEERS_H_
#define CELLAR_SERVICES_STORAGE_GRPC_REPLICATION_PEERS_H_

// ReplicationPeers over gRPC: progress reports through the node's
// MasterLink (Master.ReportReplication), fetches as Storage.Replicate
// server streams to the source's address (one channel per address,
// cached; made anew after a fetch fails UNAVAILABLE: a fresh DNS
// resolution, common::RedialAfter). A fetch has a deadline (`fetch_timeout`): a stream that outlives
// it ends, and the next round resumes from the stored progress.
//
// Thread-safe.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/channel.h"
#include "services/storage/master_link.h"
#include "services/storage/replicator.h"

namespace cellar::storage {

class GrpcReplicationPeers final : public ReplicationPeers {
 public:
  // `master` is not owned and must outlive this object; `node_id` returns
  // this node's id (0 before registration). `node_channel`: the node
  // bearer (NodeBearer of the cluster secret; empty = none) sent to the
  // sources, and the transport (TLS or plaintext; default plaintext).
  GrpcReplicationPeers(MasterLink* master, std::function<uint32_t()> node_id,
                       absl::Duration fetch_timeout,
                       common::ChannelSecurity node_channel = {});

  absl::StatusOr<ReplicationTarget> Report(uint32_t partition, uint64_t tid) override;
  absl::Status Fetch(const std::string& address, const FetchRequest& request,
                     const std::function<absl::Status(ReplicationChunk)>& on_chunk) override;
  // Cancels fetches in progress and refuses later ones.
  void Cancel() override;

 private:
  // Shared: a failed fetch may drop the map's stub while another uses it.
  std::shared_ptr<::cellar::v1::Storage::Stub> StubFor(const std::string& address);

  MasterLink* const master_;
  const std::function<uint32_t()> node_id_;
  const absl::Duration fetch_timeout_;
  const common::ChannelSecurity node_channel_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<::cellar::v1::Storage::Stub>> stubs_
      ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<grpc::ClientContext*> active_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_GRPC_REPLICATION_PEERS_H_
