// ClusterManager with its VersionRegistry: crash loops and downs
// quarantine a version, the nodes are published with
// NodeInfo.quarantined, the planner gives their storages no new cells,
// and the refusals. No gRPC; a fake clock.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "services/common/fake_clock.h"
#include "services/common/ids.h"
#include "services/common/partition_table.h"
#include "services/common/status_matchers.h"
#include "services/master/cluster_manager.h"
#include "services/master/event_hub.h"
#include "services/master/test_nodes.h"

namespace cellar::master {
namespace {

using common::IsOk;
using common::StatusIs;
using ::testing::HasSubstr;

const VersionKey kStable{"0.1.0", "stable"};  // the master's own
const VersionKey kCanary{"0.2.0", "canary"};
// A newer version on the stable track (a partitioned rolling upgrade):
// its storages hold replicas, unlike canaries (docs/rollouts.md).
const VersionKey kNewStable{"0.2.0", "stable"};

class VersionQuarantineTest : public ::testing::Test {
 protected:
  // `stable` storages of kStable then `canary` of `other` (kCanary: they
  // join PENDING, holding no cell; a stable track: in the table), R = 1,
  // RUNNING.
  void Start(int stable, int canary, QuarantineThresholds thresholds = {},
             const VersionKey& other = kCanary) {
    ClusterOptions options;
    options.cluster_name = "test";
    options.num_partitions = 12;
    options.num_replicas = 1;
    options.autostart = static_cast<uint32_t>(stable + canary);
    options.version = kStable.version;
    options.track = kStable.track;
    options.quarantine = thresholds;
    cluster_ = std::make_unique<ClusterManager>(options, &clock_, &hub_);
    for (int i = 0; i < stable + canary; ++i) {
      const VersionKey& key = i < stable ? kStable : other;
      const std::string address = absl::StrCat("127.0.0.1:", 7200 + i);
      const uint32_t id = RegisterAndWatch(*cluster_, cellar::v1::NODE_ROLE_STORAGE, address,
                                           subs_, key.version, key.track);
      addresses_[id] = address;
      (i < stable ? stable_ : canary_).push_back(id);
    }
    ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  }

  // The storage registers again under its id (a restart).
  void Restart(uint32_t id, const VersionKey& key) {
    RegisterAndWatch(*cluster_, cellar::v1::NODE_ROLE_STORAGE, addresses_[id], subs_,
                     key.version, key.track, id);
  }

  bool Quarantined(const VersionKey& key) {
    for (const VersionStatus& v : cluster_->ListVersions().versions) {
      if (v.key == key) return v.quarantined;
    }
    return false;
  }

  cellar::v1::NodeInfo NodeOf(uint32_t id) {
    const cellar::v1::GetClusterInfoResponse info = cluster_->Info();
    for (const auto& n : info.nodes()) {
      if (n.node_id() == id) return n;
    }
    return {};
  }

  int AssignedCells(uint32_t node) {
    auto pt = common::PartitionTable::FromProto(cluster_->Info().partition_table());
    EXPECT_TRUE(pt.ok());
    int n = 0;
    for (uint32_t p = 0; p < pt->num_partitions(); ++p) {
      const common::CellState s = pt->CellStateOf(p, node);
      n += s == cellar::v1::CELL_UP_TO_DATE || s == cellar::v1::CELL_OUT_OF_DATE;
    }
    return n;
  }

  common::FakeClock clock_;
  EventHub hub_;
  std::unique_ptr<ClusterManager> cluster_;
  std::vector<uint32_t> stable_, canary_;
  std::map<uint32_t, std::string> addresses_;
  std::map<uint32_t, std::shared_ptr<EventHub::Subscriber>> subs_;
};

TEST_F(VersionQuarantineTest, CrashLoopQuarantinesTheVersionAndMarksItsNodes) {
  Start(2, 1, {.restarts = 3, .downs = 0, .window = absl::Minutes(10)});
  const uint32_t canary = canary_[0];
  Restart(canary, kCanary);
  Restart(canary, kCanary);
  EXPECT_FALSE(Quarantined(kCanary));
  EXPECT_FALSE(NodeOf(canary).quarantined());
  // A watcher (a client) sees the change as a node event.
  std::map<uint32_t, std::shared_ptr<EventHub::Subscriber>> client_subs;
  const uint32_t client =
      RegisterAndWatch(*cluster_, cellar::v1::NODE_ROLE_CLIENT, "", client_subs);
  cellar::v1::ClusterEvent e;
  ASSERT_TRUE(hub_.Next(*client_subs[client], &e, absl::ZeroDuration()));  // snapshot
  Restart(canary, kCanary);
  EXPECT_TRUE(Quarantined(kCanary));
  EXPECT_FALSE(Quarantined(kStable));
  EXPECT_TRUE(NodeOf(canary).quarantined());
  EXPECT_FALSE(NodeOf(stable_[0]).quarantined());
  bool seen = false;
  while (hub_.Next(*client_subs[client], &e, absl::ZeroDuration())) {
    seen = seen || (e.has_node() && e.node().node_id() == canary && e.node().quarantined());
  }
  EXPECT_TRUE(seen) << "no node event with quarantined = true";
  const ClusterManager::Versions versions = cluster_->ListVersions();
  ASSERT_FALSE(versions.history.empty());
  EXPECT_EQ(versions.history.back().by, "auto");
  EXPECT_THAT(versions.history.back().reason, HasSubstr("restarted 3 times"));
}

TEST_F(VersionQuarantineTest, HealthDownsCountButOperatorKillsDoNot) {
  Start(2, 2, {.restarts = 0, .downs = 2, .window = absl::Minutes(10)});
  ASSERT_THAT(cluster_->KillNode(canary_[0]), IsOk());
  EXPECT_FALSE(Quarantined(kCanary));
  Restart(canary_[0], kCanary);
  // The master's probes fail for both canaries (confirmed unreachable).
  for (uint32_t id : canary_) {
    auto probe = cluster_->UnreachableTarget(id);
    ASSERT_THAT(probe, IsOk());
    EXPECT_TRUE(cluster_->ProbeFailed(id, probe->generation, clock_.Now(), "probe failed"));
  }
  EXPECT_TRUE(Quarantined(kCanary));
}

TEST_F(VersionQuarantineTest, QuarantinedStoragesGetNoNewCells) {
  Start(3, 1, {}, kNewStable);
  const uint32_t canary = canary_[0];
  const int before = AssignedCells(canary);
  ASSERT_GT(before, 0);
  ASSERT_THAT(cluster_->QuarantineVersion(kNewStable, "op", "bad upgrade"), IsOk());
  EXPECT_TRUE(NodeOf(canary).quarantined());
  // One more replica of every partition: 12 * 3 cells over 4 nodes would
  // give the canary 9; quarantined, it keeps its 6 and the stable
  // storages take the other 30.
  auto result = cluster_->ChangePartitionTable(cellar::v1::PT_SET_REPLICAS, {}, 2, false);
  ASSERT_THAT(result, IsOk());
  EXPECT_TRUE(result->applied);
  EXPECT_EQ(AssignedCells(canary), before);
  for (uint32_t id : stable_) EXPECT_EQ(AssignedCells(id), 10) << common::NodeName(id);
}

TEST_F(VersionQuarantineTest, AddOfAQuarantinedStorageIsRefused) {
  Start(2, 0);
  std::map<uint32_t, std::shared_ptr<EventHub::Subscriber>> subs;
  const uint32_t pending = RegisterAndWatch(*cluster_, cellar::v1::NODE_ROLE_STORAGE,
                                            "127.0.0.1:7299", subs, "0.2.0", "canary");
  ASSERT_THAT(cluster_->QuarantineVersion(kCanary, "op", "bad canary"), IsOk());
  EXPECT_THAT(cluster_->ChangePartitionTable(cellar::v1::PT_ADD, {pending}, 0, false),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("quarantined")));
  EXPECT_EQ(AssignedCells(pending), 0);
  // Lifted: the same add gives it cells.
  ASSERT_THAT(cluster_->UnquarantineVersion(kCanary, "op", "fixed"), IsOk());
  EXPECT_FALSE(NodeOf(pending).quarantined());
  ASSERT_THAT(cluster_->ChangePartitionTable(cellar::v1::PT_ADD, {pending}, 0, false), IsOk());
  EXPECT_GT(AssignedCells(pending), 0);
}

TEST_F(VersionQuarantineTest, RefusesTheMastersVersionAndTheOnlyReadableVersion) {
  Start(0, 2, {.restarts = 1, .downs = 0, .window = absl::Minutes(10)}, kNewStable);
  // Every readable cell is on 0.2.0: a crash loop does not quarantine.
  Restart(canary_[0], kNewStable);
  Restart(canary_[0], kNewStable);
  EXPECT_FALSE(Quarantined(kNewStable));
  EXPECT_FALSE(NodeOf(canary_[0]).quarantined());
  EXPECT_THAT(cluster_->QuarantineVersion(kNewStable, "op", "x"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("readable data")));
  // The master's own version (a client registered with it).
  std::map<uint32_t, std::shared_ptr<EventHub::Subscriber>> subs;
  RegisterAndWatch(*cluster_, cellar::v1::NODE_ROLE_CLIENT, "", subs, kStable.version,
                   kStable.track);
  EXPECT_THAT(cluster_->QuarantineVersion(kStable, "op", "x"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("primary master")));
}

}  // namespace
}  // namespace cellar::master
