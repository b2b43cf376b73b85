// Canary storages hold extra cells only (docs/rollouts.md, "Canary
// storages"), end to end on an in-process cluster: a master, two stable
// storages (S1, S2) with replicas = 0, a canary storage (track "canary")
// and the real client library.
//  - the new cluster's table leaves the canary out (it joins PENDING);
//  - PT_ADD of the canary gives it one extra cell per partition, copied
//    from the stable cells, and changes no stable cell;
//  - a stable storage dies: its partitions are readable on the canary
//    only, and PT_DROP of it is refused (FAILED_PRECONDITION) until a
//    tweak has copied them back to the other stable storage;
//  - the canary is disabled (stopped, then dropped): nothing is lost,
//    every object still loads.

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/partition_table.h"
#include "services/common/status_matchers.h"
#include "tests/integration/cluster_helpers.h"
#include "tests/integration/test_backends.h"
#include "tools/local/local_cluster.h"

namespace cellar {
namespace {

using common::IsOk;
using ::testing::HasSubstr;
using testing_support::WaitFor;
namespace v1 = ::cellar::v1;

constexpr uint32_t kPartitions = 4;
constexpr int kCanary = 2;  // storage index
constexpr char kCluster[] = "canary-cells";
constexpr absl::Duration kSettle = absl::Seconds(60);

class CanaryCellsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    common::SetMinLogSeverity(common::LogSeverity::kWarning);
    backends_ = testing_support::MakeTestBackends("sqlite", 3);
    ASSERT_THAT(backends_, IsOk());
    tools::LocalClusterOptions options =
        testing_support::ReplicatedClusterOptions(**backends_, 3, kPartitions, kCluster);
    options.replicas = 0;
    auto replicated = options.storage_options;
    options.storage_options = [replicated](int i, storage::StorageServerOptions* o) {
      if (replicated) replicated(i, o);
      if (i == kCanary) {
        o->version = "0.2.0";
        o->track = "canary";
      }
    };
    auto cluster = tools::LocalCluster::Start(options);
    ASSERT_THAT(cluster, IsOk());
    cluster_ = *std::move(cluster);
    master_ = v1::Master::NewStub(common::MakeChannel(cluster_->master_address()));
    client_ = testing_support::ConnectClient(cluster_->master_address(), kCluster);
    ASSERT_NE(client_, nullptr);
  }

  void TearDown() override {
    client_.reset();
    if (cluster_) cluster_->Shutdown();
  }

  uint32_t Id(int i) { return cluster_->storage_node_id(i); }

  common::PartitionTable Pt() {
    auto pt = common::PartitionTable::FromProto(
        testing_support::ClusterInfo(*master_).partition_table());
    EXPECT_THAT(pt, IsOk());
    return pt.ok() ? *pt : common::PartitionTable();
  }

  v1::NodeState StateOf(uint32_t id) {
    const v1::GetClusterInfoResponse info = testing_support::ClusterInfo(*master_);
    for (const auto& n : info.nodes()) {
      if (n.node_id() == id) return n.state();
    }
    return v1::NODE_STATE_UNSPECIFIED;
  }

  absl::StatusOr<v1::ChangePartitionTableResponse> Change(v1::PartitionTableOperation op,
                                                           std::vector<uint32_t> ids) {
    return testing_support::ChangePartitionTable(*master_, op, ids);
  }

  // The cells of `id` as (partition -> state).
  std::map<uint32_t, v1::CellState> CellsOf(const common::PartitionTable& pt, uint32_t id) {
    std::map<uint32_t, v1::CellState> cells;
    for (uint32_t p = 0; p < pt.num_partitions(); ++p) {
      const v1::CellState s = pt.CellStateOf(p, id);
      if (s != v1::CELL_STATE_UNSPECIFIED) cells[p] = s;
    }
    return cells;
  }

  // Every cell on the nodes `ids` is UP_TO_DATE.
  bool UpToDateOn(const std::vector<uint32_t>& ids) {
    const common::PartitionTable pt = Pt();
    for (uint32_t id : ids) {
      for (const auto& [p, state] : CellsOf(pt, id)) {
        if (state != v1::CELL_UP_TO_DATE) return false;
      }
    }
    return true;
  }

  // Commits `n` transactions of one new object each, spread over the
  // partitions, retrying a store refused right after a table change.
  void Commit(int n) {
    for (int i = 0; i < n; ++i) {
      auto oid = client_->NewOid();
      ASSERT_THAT(oid, IsOk());
      const std::string data = absl::StrCat("object-", *oid, "-", i);
      absl::StatusOr<uint64_t> tid;
      for (int attempt = 1; attempt <= 20; ++attempt) {
        auto txn = client_->NewTransaction();
        txn->Store(*oid, 0, data);
        tid = txn->Commit();
        if (tid.ok() || tid.status().code() != absl::StatusCode::kUnavailable) break;
        absl::SleepFor(absl::Milliseconds(100));
      }
      ASSERT_THAT(tid, IsOk());
      latest_[*oid] = {*tid, data};
    }
  }

  // Every object loads its latest revision through a fresh client.
  void CheckLoads(const std::string& when) {
    auto reader = testing_support::ConnectClient(cluster_->master_address(), kCluster);
    ASSERT_NE(reader, nullptr);
    ASSERT_FALSE(latest_.empty());
    for (const auto& [oid, revision] : latest_) {
      auto r = reader->Load(oid);
      ASSERT_THAT(r, IsOk()) << when << ": oid " << oid;
      EXPECT_EQ(r->serial, revision.first) << when << ": oid " << oid;
      EXPECT_EQ(r->data, revision.second) << when << ": oid " << oid;
    }
  }

  // Stops storage `i` and waits until the master has it DOWN.
  void Stop(int i) {
    const uint32_t id = Id(i);
    cluster_->StopStorage(i);
    ASSERT_TRUE(WaitFor([&] { return StateOf(id) == v1::NODE_DOWN; }, absl::Seconds(30)))
        << common::NodeName(id) << " is " << v1::NodeState_Name(StateOf(id));
  }

  absl::StatusOr<std::unique_ptr<testing_support::TestBackends>> backends_;
  std::unique_ptr<tools::LocalCluster> cluster_;
  std::unique_ptr<v1::Master::Stub> master_;
  std::unique_ptr<client::Client> client_;
  std::map<uint64_t, std::pair<uint64_t, std::string>> latest_;  // oid -> (serial, data)
};

TEST_F(CanaryCellsTest, ACanaryHoldsOnlyExtraCellsAndLeavesWithoutLosingData) {
  const uint32_t s1 = Id(0), s2 = Id(1), canary = Id(kCanary);
  // A new cluster's table is made over the stable storages.
  common::PartitionTable pt = Pt();
  EXPECT_TRUE(CellsOf(pt, canary).empty()) << pt.ToGrid();
  EXPECT_EQ(StateOf(canary), v1::NODE_PENDING);
  ASSERT_NO_FATAL_FAILURE(Commit(12));
  const std::map<uint32_t, v1::CellState> s1_before = CellsOf(pt, s1);
  const std::map<uint32_t, v1::CellState> s2_before = CellsOf(pt, s2);

  // Add: one extra cell per partition, copied from the stable ones; no
  // stable cell changes.
  auto added = Change(v1::PT_ADD, {canary});
  ASSERT_THAT(added, IsOk());
  EXPECT_TRUE(added->applied());
  pt = Pt();
  EXPECT_EQ(CellsOf(pt, s1), s1_before) << added->plan();
  EXPECT_EQ(CellsOf(pt, s2), s2_before) << added->plan();
  EXPECT_EQ(CellsOf(pt, canary).size(), kPartitions) << added->plan();
  ASSERT_TRUE(WaitFor([&] { return UpToDateOn({s1, s2, canary}); }, kSettle))
      << "the canary cells never caught up:\n"
      << Pt().ToGrid();
  ASSERT_NO_FATAL_FAILURE(Commit(8));
  CheckLoads("after add");

  // S1 dies: its partitions are readable on the canary only. Dropping S1
  // would make that final: refused.
  ASSERT_NO_FATAL_FAILURE(Stop(0));
  auto refused = Change(v1::PT_DROP, {s1});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("would leave only canary cells readable"));
  // A tweak copies them to S2 from the canary; then S1 may go.
  auto tweaked = Change(v1::PT_TWEAK, {});
  ASSERT_THAT(tweaked, IsOk());
  EXPECT_TRUE(tweaked->applied());
  ASSERT_TRUE(WaitFor(
      [&] {
        const common::PartitionTable now = Pt();
        return CellsOf(now, s2).size() == kPartitions && UpToDateOn({s2});
      },
      kSettle))
      << "S2 never got every partition back from the canary:\n"
      << Pt().ToGrid();
  auto dropped = Change(v1::PT_DROP, {s1});
  ASSERT_THAT(dropped, IsOk());
  EXPECT_TRUE(dropped->applied());
  CheckLoads("after S1 was replaced from the canary");

  // The canary is disabled: stopped, then dropped. Nothing is lost.
  ASSERT_NO_FATAL_FAILURE(Stop(kCanary));
  EXPECT_EQ(testing_support::ClusterInfo(*master_).cluster_state(), v1::CLUSTER_RUNNING);
  CheckLoads("canary down");
  auto gone = Change(v1::PT_DROP, {canary});
  ASSERT_THAT(gone, IsOk());
  pt = Pt();
  EXPECT_FALSE(pt.NodeIds().contains(canary));
  for (uint32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(pt.CellStateOf(p, s2), v1::CELL_UP_TO_DATE) << "partition " << p;
  }
  ASSERT_NO_FATAL_FAILURE(Commit(4));
  CheckLoads("canary dropped");
}

}  // namespace
}  // namespace cellar
