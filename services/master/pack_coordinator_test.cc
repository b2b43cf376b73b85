#include "services/master/pack_coordinator.h"

#include <map>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/synchronization/mutex.h"
#include "services/common/status_matchers.h"
#include "services/master/ok_storage_caller.h"

namespace cellar::master {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::HasSubstr;

// Storages that remember the pack tid they were asked and report one
// pending partition until `finish` is called; a storage can be down.
class FakePackStorages : public OkStorageCaller {
 public:
  absl::StatusOr<cellar::v1::StoragePackProgress> Pack(const StorageTarget& target,
                                                       uint64_t epoch,
                                                       uint64_t pack_tid) override {
    absl::MutexLock l(&mu_);
    if (down_.count(target.node_id) != 0) return absl::UnavailableError("down");
    epochs[target.node_id] = epoch;
    uint64_t& tid = tids[target.node_id];
    if (pack_tid > tid) {
      tid = pack_tid;
      done_[target.node_id] = false;
    }
    cellar::v1::StoragePackProgress p;
    p.set_node_id(target.node_id);
    p.set_pack_tid(tid);
    if (tid != 0 && blind_.count(target.node_id) == 0) {
      if (done_[target.node_id]) {
        p.add_done_partitions(0);
      } else {
        p.add_pending_partitions(0);
      }
    }
    return p;
  }
  void Finish(uint32_t node) {
    absl::MutexLock l(&mu_);
    done_[node] = true;
  }
  // The storage does not see its cells as readable yet (just back, its
  // table behind the master's): it reports no partition at all.
  void SetBlind(uint32_t node, bool blind) {
    absl::MutexLock l(&mu_);
    if (blind) {
      blind_[node] = true;
    } else {
      blind_.erase(node);
    }
  }
  void SetDown(uint32_t node, bool down) {
    absl::MutexLock l(&mu_);
    if (down) {
      down_[node] = true;
    } else {
      down_.erase(node);
    }
  }

  absl::Mutex mu_;
  std::map<uint32_t, uint64_t> tids;
  std::map<uint32_t, uint64_t> epochs;
  std::map<uint32_t, bool> done_;
  std::map<uint32_t, bool> down_;
  std::map<uint32_t, bool> blind_;
};

cellar::v1::GetClusterInfoResponse Info(cellar::v1::ClusterState state, uint64_t last_tid) {
  cellar::v1::GetClusterInfoResponse info;
  info.set_cluster_state(state);
  info.set_last_tid(last_tid);
  info.set_epoch(7);
  cellar::v1::PartitionRow* row = info.mutable_partition_table()->add_rows();
  for (uint32_t id : {1, 2}) {
    row->add_cells()->set_node_id(id);
    cellar::v1::NodeInfo* n = info.add_nodes();
    n->set_node_id(id);
    n->set_role(cellar::v1::NODE_ROLE_STORAGE);
    n->set_state(cellar::v1::NODE_RUNNING);
    n->set_address("s" + std::to_string(id));
  }
  // A storage without cells is not asked.
  cellar::v1::NodeInfo* idle = info.add_nodes();
  idle->set_node_id(3);
  idle->set_role(cellar::v1::NODE_ROLE_STORAGE);
  idle->set_state(cellar::v1::NODE_RUNNING);
  return info;
}

PackCoordinatorOptions NoThread() {
  PackCoordinatorOptions o;
  o.sync_interval = absl::ZeroDuration();
  return o;
}

TEST(PackCoordinatorTest, ValidatesThenHandsThePackToEveryStorageHoldingCells) {
  FakePackStorages storages;
  cellar::v1::ClusterState state = cellar::v1::CLUSTER_RECOVERING;
  absl::Status check = absl::OkStatus();
  PackCoordinator pack([&] { return Info(state, 100); }, &storages, [&] { return check; },
                       NoThread());
  EXPECT_THAT(pack.Request(0), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(pack.Request(50), StatusIs(absl::StatusCode::kFailedPrecondition));
  state = cellar::v1::CLUSTER_RUNNING;
  EXPECT_THAT(pack.Request(101), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr("beyond the last committed tid")));
  check = absl::FailedPreconditionError("check 3 runs");
  EXPECT_THAT(pack.Request(50), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(storages.tids.empty());
  check = absl::OkStatus();
  EXPECT_THAT(pack.CheckIdle(), IsOk());  // never packed

  absl::StatusOr<cellar::v1::PackStatus> status = pack.Request(50);
  ASSERT_THAT(status, IsOk());
  EXPECT_EQ(status->pack_tid(), 50u);
  EXPECT_FALSE(status->done());
  EXPECT_EQ(status->storages_size(), 2);
  EXPECT_EQ(storages.tids[1], 50u);
  EXPECT_EQ(storages.tids[2], 50u);
  EXPECT_EQ(storages.tids.count(3), 0u);
  EXPECT_EQ(storages.epochs[1], 7u);
  EXPECT_THAT(pack.CheckIdle(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("in progress")));
  // A lower tid changes nothing.
  ASSERT_THAT(pack.Request(40), IsOk());
  EXPECT_EQ(storages.tids[1], 50u);
  storages.Finish(1);
  storages.Finish(2);
  EXPECT_TRUE(pack.Status().done());
  EXPECT_THAT(pack.CheckIdle(), IsOk());
}

// A storage that was down when the pack was asked gets it when it is
// back; a new master learns the pack tid from the storages.
TEST(PackCoordinatorTest, LateStoragesAndNewMastersCatchUp) {
  FakePackStorages storages;
  auto view = [] { return Info(cellar::v1::CLUSTER_RUNNING, 100); };
  {
    PackCoordinator pack(view, &storages, nullptr, NoThread());
    storages.SetDown(2, true);
    absl::StatusOr<cellar::v1::PackStatus> status = pack.Request(60);
    ASSERT_THAT(status, IsOk());
    EXPECT_EQ(status->storages(1).node_id(), 2u);
    EXPECT_THAT(status->storages(1).error(), HasSubstr("down"));
    EXPECT_EQ(storages.tids.count(2), 0u);
    storages.SetDown(2, false);
    EXPECT_EQ(pack.Status().pack_tid(), 60u);
    EXPECT_EQ(storages.tids[2], 60u);
  }
  // A new master (no state): storage 1 remembers 60, storage 2 lost it
  // (e.g. replaced); the first status round hands 60 to storage 2.
  storages.tids[2] = 0;
  PackCoordinator fresh(view, &storages, nullptr, NoThread());
  cellar::v1::PackStatus status = fresh.Status();
  EXPECT_EQ(status.pack_tid(), 60u);
  EXPECT_EQ(storages.tids[2], 60u);
}

// The background round reaches storages without any call.
TEST(PackCoordinatorTest, BackgroundRoundsHandThePackOut) {
  FakePackStorages storages;
  PackCoordinatorOptions options;
  options.sync_interval = absl::Milliseconds(10);
  PackCoordinator pack([] { return Info(cellar::v1::CLUSTER_RUNNING, 100); }, &storages,
                       nullptr, options);
  storages.SetDown(2, true);
  ASSERT_THAT(pack.Request(70), IsOk());
  storages.SetDown(2, false);
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  for (;;) {
    {
      absl::MutexLock l(&storages.mu_);
      if (storages.tids[2] == 70 || absl::Now() > deadline) break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  absl::MutexLock l(&storages.mu_);
  EXPECT_EQ(storages.tids[2], 70u) << "no background round reached storage 2 in 20 s";
}

// A storage back from a restart answers the pack before it has learnt that
// its cells are readable again: it reports nothing to pack. The master's
// table says the cell is readable there, so the pack is not done and a
// replica check must wait (pack_test saw a check accepted in that window).
TEST(PackCoordinatorTest, AReadableCellTheStorageDoesNotReportIsStillToPack) {
  FakePackStorages storages;
  auto info = [] {
    cellar::v1::GetClusterInfoResponse i = Info(cellar::v1::CLUSTER_RUNNING, 100);
    for (cellar::v1::Cell& c : *i.mutable_partition_table()->mutable_rows(0)->mutable_cells()) {
      c.set_state(cellar::v1::CELL_UP_TO_DATE);
    }
    return i;
  };
  PackCoordinator pack(info, &storages, [] { return absl::OkStatus(); }, NoThread());
  ASSERT_THAT(pack.Request(50), IsOk());
  storages.Finish(1);
  storages.Finish(2);
  storages.SetBlind(2, true);
  const cellar::v1::PackStatus status = pack.Status();
  EXPECT_FALSE(status.done()) << status.DebugString();
  EXPECT_THAT(pack.CheckIdle(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("in progress")));
  storages.SetBlind(2, false);
  EXPECT_TRUE(pack.Status().done());
  EXPECT_THAT(pack.CheckIdle(), IsOk());
}

}  // namespace
}  // namespace cellar::master
