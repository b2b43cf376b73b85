#ifndef CELLAR_SERVICES_ADMIN_CLUSTER_CLIENTS_H_
#define CELLAR_SERVICES_ADMIN_CLUSTER_CLIENTS_H_

// The clusters one admin process serves and watches (a configured list,
// the first being the default), and its gRPC connections to them: master
// stubs per cluster (tried in order: the first that answers wins) and
// storage stubs by address. A master is dialled on a new channel after a
// call to it fails (common::RedialAfter), a storage after it
// registered again: a fresh DNS resolution of its name. Every call has a
// deadline. Master errors come back as absl::Status with their details
// (google.rpc.Status payloads).
//
// Thread-safe.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/channel.h"

namespace cellar::admin {

// One configured cluster.
struct ClusterTarget {
  // Name operators use in `cluster` fields: [A-Za-z0-9._-]+.
  std::string name;
  // Its masters (host:port), tried in order. At least one.
  std::vector<std::string> master_addresses;
};

// Parses "name=host:port[;host:port],name2=host:port" (the --clusters
// flag). INVALID_ARGUMENT with the offending part on a malformed list.
absl::StatusOr<std::vector<ClusterTarget>> ParseClusterList(absl::string_view text);

// Where the monitor gets GetClusterInfo from (tests fake it).
class ClusterInfoSource {
 public:
  virtual ~ClusterInfoSource() = default;
  // The cluster's GetClusterInfo from the first master that answers.
  // NOT_FOUND for an unknown cluster; UNAVAILABLE if no master answered.
  virtual absl::StatusOr<cellar::v1::GetClusterInfoResponse> GetClusterInfo(
      absl::string_view cluster) = 0;
};

class ClusterClients final : public ClusterInfoSource {
 public:
  // INVALID_ARGUMENT if `clusters` is empty, a name is malformed or
  // repeated, or a cluster has no master address. `node_channel`:
  // the node bearer (NodeBearer of the cluster secret; empty = none) sent
  // on every call, and the transport (TLS or plaintext; default plaintext).
  static absl::StatusOr<std::unique_ptr<ClusterClients>> Create(
      std::vector<ClusterTarget> clusters, absl::Duration rpc_timeout,
      common::ChannelSecurity node_channel = {});

  // In configuration order; the first is the default.
  const std::vector<ClusterTarget>& clusters() const { return clusters_; }
  const std::string& default_cluster() const { return clusters_.front().name; }

  // The configured name for a request's `cluster` field ("" = the
  // default). NOT_FOUND (listing the known names) if unknown.
  absl::StatusOr<std::string> Resolve(absl::string_view cluster) const;

  absl::StatusOr<cellar::v1::GetClusterInfoResponse> GetClusterInfo(
      absl::string_view cluster) override;

  // Master.StartCluster on the first master that answers; the master's
  // refusal (e.g. FAILED_PRECONDITION) is returned as is, with details.
  absl::StatusOr<cellar::v1::ClusterState> StartCluster(absl::string_view cluster);

  // Runs `call` on the cluster's masters in order until one answers (a
  // status other than UNAVAILABLE / DEADLINE_EXCEEDED); that answer is
  // returned as is, with its details (a refusal is the master's word).
  // `call` gets a context with a deadline of `timeout` (0 = rpc_timeout).
  // NOT_FOUND for an unknown cluster; UNAVAILABLE if no master answered.
  absl::Status CallMaster(
      absl::string_view cluster,
      const std::function<grpc::Status(cellar::v1::Master::Stub*, grpc::ClientContext*)>& call,
      absl::Duration timeout = absl::ZeroDuration());

  // A stub for the storage at `address` (cached; made anew once
  // GetClusterInfo shows that the storage there registered again).
  std::shared_ptr<cellar::v1::Storage::Stub> StorageStub(const std::string& address);

  absl::Duration rpc_timeout() const { return rpc_timeout_; }

 private:
  ClusterClients(std::vector<ClusterTarget> clusters, absl::Duration rpc_timeout,
                 common::ChannelSecurity node_channel);
  // Index of `cluster` in clusters_, or NOT_FOUND.
  absl::StatusOr<size_t> Find(absl::string_view cluster) const;
  // The stub of clusters_[cluster].master_addresses[master].
  std::shared_ptr<cellar::v1::Master::Stub> MasterStub(size_t cluster, size_t master);
  // After a failed call to that master: its next call dials on a new
  // channel if common::RedialAfter says so (a fresh DNS resolution).
  void MasterCallFailed(size_t cluster, size_t master, const grpc::Status& status);
  // Drops the stubs of storages that registered again since the last
  // GetClusterInfo (registered_unix_ms changed): a restarted pod comes back
  // under its DNS name with a new IP, and a new channel resolves it afresh.
  void ForgetRestartedStorages(const cellar::v1::GetClusterInfoResponse& info);

  const std::vector<ClusterTarget> clusters_;
  const absl::Duration rpc_timeout_;
  const common::ChannelSecurity node_channel_;
  absl::Mutex mu_;
  // masters_[i][j]: stub of clusters_[i].master_addresses[j].
  std::vector<std::vector<std::shared_ptr<cellar::v1::Master::Stub>>> masters_
      ABSL_GUARDED_BY(mu_);
  // By address.
  absl::flat_hash_map<std::string, std::shared_ptr<cellar::v1::Storage::Stub>> storages_
      ABSL_GUARDED_BY(mu_);
  // Storage address -> registered_unix_ms last seen in GetClusterInfo.
  absl::flat_hash_map<std::string, int64_t> registered_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::admin

#endif  // CELLAR_SERVICES_ADMIN_CLUSTER_CLIENTS_H_
