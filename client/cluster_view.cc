#include "client/cluster_view.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"

#include "services/common/channel.h"

namespace cellar::client {
namespace {

using ::cellar::v1::NodeInfo;

std::shared_ptr<ClusterView::StorageStub> DefaultStub(
    const std::string& address) {
  return std::shared_ptr<ClusterView::StorageStub>(
      ::cellar::v1::Storage::NewStub(common::MakeChannel(address)));
}

}  // namespace

ClusterView::ClusterView(StubFactory factory)
    : factory_(factory ? std::move(factory) : StubFactory(DefaultStub)),
      table_(std::make_shared<const common::PartitionTable>()) {}

absl::Status ClusterView::Reset(const ::cellar::v1::ClusterSnapshot& snapshot) {
  std::vector<NodeInfo> nodes(snapshot.nodes().begin(), snapshot.nodes().end());
  ReplaceNodes(nodes);
  {
    absl::MutexLock lock(&mu_);
    cluster_state_ = snapshot.cluster_state();
    epoch_ = snapshot.epoch();
  }
  return ReplaceTable(snapshot.partition_table());
}

absl::Status ClusterView::ApplyDelta(
    const ::cellar::v1::PartitionTableDelta& delta) {
  absl::MutexLock lock(&mu_);
  // Already included (a full table fetched after a gap can be ahead of
  // the stream).
  if (!table_->empty() && delta.ptid() <= table_->ptid()) {
    return absl::OkStatus();
  }
  auto updated = std::make_shared<common::PartitionTable>(*table_);
  absl::Status status = updated->ApplyDelta(delta);
  if (!status.ok()) return status;
  table_ = std::move(updated);
  return absl::OkStatus();
}

absl::Status ClusterView::ReplaceTable(
    const ::cellar::v1::PartitionTable& table) {
  absl::StatusOr<common::PartitionTable> parsed =
      common::PartitionTable::FromProto(table);
  if (!parsed.ok()) return parsed.status();
  absl::MutexLock lock(&mu_);
  table_ = std::make_shared<const common::PartitionTable>(*std::move(parsed));
  return absl::OkStatus();
}

void ClusterView::UpdateNode(const NodeInfo& node) {
  absl::MutexLock lock(&mu_);
  SetNodeLocked(node);
}

void ClusterView::ReplaceNodes(const std::vector<NodeInfo>& nodes) {
  absl::MutexLock lock(&mu_);
  absl::flat_hash_map<uint32_t, NodeInfo> before;
  before.swap(nodes_);
  for (const NodeInfo& node : nodes) {
    auto it = before.find(node.node_id());
    if (it != before.end()) nodes_[node.node_id()] = std::move(it->second);
    SetNodeLocked(node);
  }
}

void ClusterView::SetNodeLocked(const NodeInfo& node) {
  auto it = nodes_.find(node.node_id());
  if (it != nodes_.end()) {
    const NodeInfo& before = it->second;
    // A new life of the node (it registered again, came back from DOWN, or
    // moved): its stub goes, so the next call dials afresh (a new channel:
    // a new DNS resolution, no reconnect backoff left from the old life).
    // Not while it is DOWN: the old channel fails fast on a stopped node
    // where a new one would wait for its connection attempt.
    if (before.address() != node.address() ||
        before.registered_unix_ms() != node.registered_unix_ms() ||
        (before.state() == ::cellar::v1::NODE_DOWN &&
         node.state() != ::cellar::v1::NODE_DOWN)) {
      stubs_.erase(before.address());
    }
  }
  nodes_[node.node_id()] = node;
}

void ClusterView::SetClusterState(::cellar::v1::ClusterState state) {
  absl::MutexLock lock(&mu_);
  cluster_state_ = state;
}

::cellar::v1::ClusterState ClusterView::cluster_state() const {
  absl::MutexLock lock(&mu_);
  return cluster_state_;
}

uint64_t ClusterView::epoch() const {
  absl::MutexLock lock(&mu_);
  return epoch_;
}

std::shared_ptr<const common::PartitionTable> ClusterView::table() const {
  absl::MutexLock lock(&mu_);
  return table_;
}

bool ClusterView::Reachable(const NodeInfo& node) const {
  return !node.address().empty() && node.state() != ::cellar::v1::NODE_DOWN &&
         node.state() != ::cellar::v1::NODE_UNKNOWN;
}

uint64_t ClusterView::RandomOffset() {
  absl::BitGen gen;
  return absl::Uniform<uint64_t>(gen);
}

std::vector<uint32_t> ClusterView::ReadNodesFor(uint64_t oid) const {
  std::vector<uint32_t> out;
  // Nodes of a quarantined version: tried last (docs/rollouts.md).
  std::vector<uint32_t> quarantined;
  {
    absl::MutexLock lock(&mu_);
    if (table_->num_partitions() == 0) return out;
    for (uint32_t node_id : table_->ReadableNodes(table_->PartitionOf(oid))) {
      auto it = nodes_.find(node_id);
      if (it == nodes_.end() || !Reachable(it->second)) continue;
      (it->second.quarantined() ? quarantined : out).push_back(node_id);
    }
  }
  for (std::vector<uint32_t>* group : {&out, &quarantined}) {
    if (group->size() > 1) {
      const size_t start = round_robin_.fetch_add(1, std::memory_order_relaxed) %
                           group->size();
      std::rotate(group->begin(), group->begin() + start, group->end());
    }
  }
  out.insert(out.end(), quarantined.begin(), quarantined.end());
  return out;
}

std::vector<uint32_t> ClusterView::RunningStorageNodes() const {
  std::vector<uint32_t> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, node] : nodes_) {
    if (node.role() == ::cellar::v1::NODE_ROLE_STORAGE &&
        node.state() == ::cellar::v1::NODE_RUNNING && !node.address().empty()) {
      out.push_back(id);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool ClusterView::GetNode(uint32_t node_id, NodeInfo* node) const {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end()) return false;
  *node = it->second;
  return true;
}

std::shared_ptr<ClusterView::StorageStub> ClusterView::Stub(
    uint32_t node_id) const {
  absl::MutexLock lock(&mu_);
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || it->second.address().empty()) return nullptr;
  const std::string& address = it->second.address();
  auto stub = stubs_.find(address);
  if (stub != stubs_.end()) return stub->second;
  std::shared_ptr<StorageStub> created = factory_(address);
  stubs_[address] = created;
  return created;
}

}  // namespace cellar::client
