#include "client/cluster_view.h"

#include <map>
#include <memory>
#include <set>
#include <string>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "services/common/status_matchers.h"

namespace cellar::client {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

::cellar::v1::ClusterSnapshot TwoNodeSnapshot() {
  ::cellar::v1::ClusterSnapshot snapshot;
  snapshot.set_cluster_state(::cellar::v1::CLUSTER_RUNNING);
  snapshot.set_last_tid(100);
  snapshot.set_epoch(3);
  auto table = common::PartitionTable::MakeBalanced(2, 1, {1, 2});
  *snapshot.mutable_partition_table() = table->ToProto();
  for (uint32_t id : {1u, 2u}) {
    auto* node = snapshot.add_nodes();
    node->set_node_id(id);
    node->set_role(::cellar::v1::NODE_ROLE_STORAGE);
    node->set_state(::cellar::v1::NODE_RUNNING);
    node->set_address("127.0.0.1:" + std::to_string(1000 + id));
  }
  return snapshot;
}

TEST(ClusterViewTest, ResetAndReadRouting) {
  ClusterView view;
  ASSERT_THAT(view.Reset(TwoNodeSnapshot()), IsOk());
  EXPECT_EQ(view.cluster_state(), ::cellar::v1::CLUSTER_RUNNING);
  EXPECT_EQ(view.epoch(), 3u);
  EXPECT_EQ(view.table()->num_partitions(), 2u);
  // Both replicas readable; the first one tried rotates.
  std::set<uint32_t> firsts;
  for (int i = 0; i < 4; ++i) {
    std::vector<uint32_t> nodes = view.ReadNodesFor(5);
    EXPECT_THAT(nodes, UnorderedElementsAre(1u, 2u));
    firsts.insert(nodes[0]);
  }
  EXPECT_EQ(firsts.size(), 2u);
  EXPECT_THAT(view.RunningStorageNodes(), ElementsAre(1u, 2u));
  EXPECT_NE(view.Stub(1), nullptr);
  EXPECT_EQ(view.Stub(1), view.Stub(1));  // reused
  EXPECT_EQ(view.Stub(9), nullptr);
}

// A client that reads once (one `cellarctl get`) must not always ask the
// same replica: each view starts its rotation at a random replica.
TEST(ClusterViewTest, FreshViewsDoNotAllReadTheSameReplicaFirst) {
  std::set<uint32_t> firsts;
  for (int i = 0; i < 32; ++i) {
    ClusterView view;
    ASSERT_THAT(view.Reset(TwoNodeSnapshot()), IsOk());
    firsts.insert(view.ReadNodesFor(5)[0]);
  }
  // Both replicas were asked first by some view (a fixed start fails this;
  // a random one fails it with probability 2^-31).
  EXPECT_EQ(firsts.size(), 2u);
}

TEST(ClusterViewTest, DeltasAndGaps) {
  ClusterView view;
  ASSERT_THAT(view.Reset(TwoNodeSnapshot()), IsOk());
  const uint64_t ptid = view.table()->ptid();
  ::cellar::v1::PartitionTableDelta delta;
  delta.set_ptid(ptid + 1);
  auto* change = delta.add_changes();
  change->set_partition(1);
  change->set_node_id(1);
  change->set_state(::cellar::v1::CELL_OUT_OF_DATE);
  ASSERT_THAT(view.ApplyDelta(delta), IsOk());
  EXPECT_THAT(view.ReadNodesFor(1), ElementsAre(2u));  // oid 1 → partition 1
  EXPECT_THAT(view.table()->WritableNodes(1), UnorderedElementsAre(1u, 2u));
  // Already applied: ignored.
  EXPECT_THAT(view.ApplyDelta(delta), IsOk());
  // A gap must be reported.
  delta.set_ptid(ptid + 5);
  EXPECT_THAT(view.ApplyDelta(delta),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST(ClusterViewTest, DownNodesAreNotRead) {
  ClusterView view;
  ASSERT_THAT(view.Reset(TwoNodeSnapshot()), IsOk());
  ::cellar::v1::NodeInfo node;
  ASSERT_TRUE(view.GetNode(2, &node));
  node.set_state(::cellar::v1::NODE_DOWN);
  view.UpdateNode(node);
  EXPECT_THAT(view.ReadNodesFor(0), ElementsAre(1u));
  EXPECT_THAT(view.RunningStorageNodes(), ElementsAre(1u));
}

TEST(ClusterViewTest, QuarantinedNodesAreReadLast) {
  ClusterView view;
  ASSERT_THAT(view.Reset(TwoNodeSnapshot()), IsOk());
  ::cellar::v1::NodeInfo node;
  ASSERT_TRUE(view.GetNode(1, &node));
  node.set_quarantined(true);
  view.UpdateNode(node);
  // Whatever the rotation, the other replica comes first...
  for (int i = 0; i < 4; ++i) EXPECT_THAT(view.ReadNodesFor(5), ElementsAre(2u, 1u));
  // ...and the quarantined one still serves when it is the only one.
  ASSERT_TRUE(view.GetNode(2, &node));
  node.set_state(::cellar::v1::NODE_DOWN);
  view.UpdateNode(node);
  EXPECT_THAT(view.ReadNodesFor(5), ElementsAre(1u));
}

// A factory that counts the stubs (channels) it makes, per address.
class CountingFactory {
 public:
  ClusterView::StubFactory factory() {
    return [this](const std::string& address) {
      ++made_[address];
      // A lazy channel: nothing dials until a call.
      return std::shared_ptr<ClusterView::StorageStub>(::cellar::v1::Storage::NewStub(
          grpc::CreateChannel(address, grpc::InsecureChannelCredentials())));
    };
  }
  int made(const std::string& address) const {
    auto it = made_.find(address);
    return it == made_.end() ? 0 : it->second;
  }

 private:
  std::map<std::string, int> made_;
};

TEST(ClusterViewTest, ANodeThatRegistersAgainGetsANewChannel) {
  CountingFactory stubs;
  ClusterView view(stubs.factory());
  ::cellar::v1::ClusterSnapshot snapshot = TwoNodeSnapshot();
  snapshot.mutable_nodes(1)->set_registered_unix_ms(1000);
  ASSERT_THAT(view.Reset(snapshot), IsOk());
  const std::string address = snapshot.nodes(1).address();
  std::shared_ptr<ClusterView::StorageStub> first = view.Stub(2);
  ASSERT_NE(first, nullptr);
  ::cellar::v1::NodeInfo node = snapshot.nodes(1);
  // The same life: the channel stays, DOWN included (it fails fast on a
  // stopped node, where a new one would wait for its connection attempt).
  view.UpdateNode(node);
  EXPECT_EQ(view.Stub(2), first);
  node.set_state(::cellar::v1::NODE_DOWN);
  view.UpdateNode(node);
  EXPECT_EQ(view.Stub(2), first);
  EXPECT_EQ(stubs.made(address), 1);
  // Back from DOWN: a new channel (a new DNS resolution of its name).
  node.set_state(::cellar::v1::NODE_RUNNING);
  view.UpdateNode(node);
  std::shared_ptr<ClusterView::StorageStub> second = view.Stub(2);
  EXPECT_NE(second, first);
  EXPECT_EQ(stubs.made(address), 2);
  EXPECT_EQ(view.Stub(2), second);
  // Registered again (restarted) without being seen DOWN.
  node.set_registered_unix_ms(2000);
  view.UpdateNode(node);
  std::shared_ptr<ClusterView::StorageStub> third = view.Stub(2);
  EXPECT_NE(third, second);
  EXPECT_EQ(stubs.made(address), 3);
  // A new snapshot (a new master session) where it registered again.
  snapshot.mutable_nodes(1)->set_registered_unix_ms(3000);
  ASSERT_THAT(view.Reset(snapshot), IsOk());
  EXPECT_NE(view.Stub(2), third);
  EXPECT_EQ(stubs.made(address), 4);
  // The other node kept its life through both snapshots: one channel.
  ASSERT_NE(view.Stub(1), nullptr);
  ASSERT_THAT(view.Reset(snapshot), IsOk());
  ASSERT_NE(view.Stub(1), nullptr);
  EXPECT_EQ(stubs.made(snapshot.nodes(0).address()), 1);
  // A new address: a channel to it.
  node.set_registered_unix_ms(3000);
  node.set_address("127.0.0.1:2002");
  view.UpdateNode(node);
  ASSERT_NE(view.Stub(2), nullptr);
  EXPECT_EQ(stubs.made("127.0.0.1:2002"), 1);
}

}  // namespace
}  // namespace cellar::client
