#ifndef CELLAR_CLIENT_CLUSTER_VIEW_H_
#define CELLAR_CLIENT_CLUSTER_VIEW_H_

// The client's view of the cluster, fed by the master's Watch stream: the
// partition table, the storage nodes (addresses, states) and the cluster
// state, plus one gRPC stub per storage address (channels are shared,
// created lazily, and made anew when the node registers again).
//
// Routing rules:
//   - reads go to readable cells (UP_TO_DATE, FEEDING) on storage nodes
//     that have an address and are not DOWN/UNKNOWN, rotated round-robin
//     so that load spreads over replicas; nodes of a quarantined version
//     (NodeInfo.quarantined) come after all the others, so they serve a
//     read only when no other replica is readable or answers;
//   - writes go to every writable cell (UP_TO_DATE, OUT_OF_DATE, FEEDING),
//     whatever the node's state: a node that cannot be reached simply does
//     not vote, and the master decides (semantics.md, commit rule 8).
//
// Thread-safe. Tables are handed out as immutable snapshots
// (shared_ptr<const PartitionTable>), so a commit plans on one version.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "protos/cellar/v1/master.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/partition_table.h"

namespace cellar::client {

class ClusterView {
 public:
  using StorageStub = ::cellar::v1::Storage::StubInterface;
  // Makes a stub for a storage address. The default dials with
  // common::MakeChannel.
  using StubFactory =
      std::function<std::shared_ptr<StorageStub>(const std::string& address)>;

  explicit ClusterView(StubFactory factory = nullptr);

  ClusterView(const ClusterView&) = delete;
  ClusterView& operator=(const ClusterView&) = delete;

  // Replaces everything (first Watch event). INVALID_ARGUMENT if the table
  // is malformed (the nodes and state are still taken).
  absl::Status Reset(const ::cellar::v1::ClusterSnapshot& snapshot);
  // Applies a delta. A delta the table already includes (ptid <= ptid())
  // is ignored. FAILED_PRECONDITION on a ptid gap (INVALID_ARGUMENT if it
  // does not fit the table): fetch the full table and call ReplaceTable.
  absl::Status ApplyDelta(const ::cellar::v1::PartitionTableDelta& delta);
  // Replaces the table. INVALID_ARGUMENT if malformed.
  absl::Status ReplaceTable(const ::cellar::v1::PartitionTable& table);
  // Adds or updates a node (address, state, ...). A node that starts a new
  // life (a new registration: registered_unix_ms changed; back from DOWN;
  // a new address) gets a new stub on its next call: a new channel, so a
  // fresh DNS resolution of its name (a restarted Kubernetes pod comes back
  // under its name with a new IP) and no backoff left from the old life.
  void UpdateNode(const ::cellar::v1::NodeInfo& node);
  // Replaces the whole node list (same rule for the nodes it keeps).
  void ReplaceNodes(const std::vector<::cellar::v1::NodeInfo>& nodes);
  void SetClusterState(::cellar::v1::ClusterState state);

  ::cellar::v1::ClusterState cluster_state() const;
  uint64_t epoch() const;
  // The current table (never null; empty before the first snapshot).
  std::shared_ptr<const common::PartitionTable> table() const;

  // Storage nodes to read `oid` from (readable cells of partition(oid) on
  // reachable nodes), in the order to try them: the start rotates on each
  // call; quarantined nodes last.
  std::vector<uint32_t> ReadNodesFor(uint64_t oid) const;
  // Storage nodes with role STORAGE, state RUNNING and an address.
  std::vector<uint32_t> RunningStorageNodes() const;
  // The node, if known.
  bool GetNode(uint32_t node_id, ::cellar::v1::NodeInfo* node) const;
  // A stub for the node's current address, or null if it has none.
  std::shared_ptr<StorageStub> Stub(uint32_t node_id) const;

 private:
  bool Reachable(const ::cellar::v1::NodeInfo& node) const;
  // Stores `node`, dropping the stub of a node that starts a new life.
  void SetNodeLocked(const ::cellar::v1::NodeInfo& node)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // A random first offset: short-lived clients (one `cellarctl get`
  // each) spread their reads over the replicas instead of all asking the
  // first readable one.
  static uint64_t RandomOffset();

  const StubFactory factory_;
  mutable std::atomic<uint64_t> round_robin_{RandomOffset()};
  mutable absl::Mutex mu_;
  std::shared_ptr<const common::PartitionTable> table_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, ::cellar::v1::NodeInfo> nodes_
      ABSL_GUARDED_BY(mu_);
  ::cellar::v1::ClusterState cluster_state_ ABSL_GUARDED_BY(mu_) =
      ::cellar::v1::CLUSTER_STATE_UNSPECIFIED;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  // By address; kept across node updates so channels are reused, dropped
  // when the node starts a new life (SetNodeLocked).
  mutable absl::flat_hash_map<std::string, std::shared_ptr<StorageStub>> stubs_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::client

#endif  // CELLAR_CLIENT_CLUSTER_VIEW_H_
