// UnreachableProber over a real ClusterManager (fake clock, a storage
// caller whose probes the test decides): a report never takes a storage
// down by itself; the master's own failed probe does, at once, as a
// missed heartbeat timeout would; reports are coalesced; bad input.
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "services/common/errors.h"
#include "services/common/fake_clock.h"
#include "services/common/ids.h"
#include "services/common/partition_table.h"
#include "services/common/status_matchers.h"
#include "services/master/cluster_manager.h"
#include "services/master/event_hub.h"
#include "services/master/ok_storage_caller.h"
#include "services/master/test_nodes.h"
#include "services/master/unreachable_prober.h"

namespace cellar::master {
namespace {

using common::StatusIs;

// Probes fail (UNAVAILABLE / DEADLINE_EXCEEDED) for the nodes in `down`,
// succeed otherwise; a probe of `blocked` waits for `release`.
class ProbeCaller : public OkStorageCaller {
 public:
  absl::Status Probe(const StorageTarget& target, absl::Duration timeout) override {
    {
      absl::MutexLock l(&mu_);
      ++probes_[target.node_id];
      timeouts_.push_back(timeout);
    }
    if (target.node_id == blocked) {
      if (!entered.HasBeenNotified()) entered.Notify();
      release.WaitForNotification();
    }
    absl::MutexLock l(&mu_);
    if (hung_.count(target.node_id) > 0) return absl::DeadlineExceededError("injected: no answer");
    if (down_.count(target.node_id) > 0) return absl::UnavailableError("injected: refused");
    return absl::OkStatus();
  }
  void SetDown(uint32_t id) {
    absl::MutexLock l(&mu_);
    down_.insert(id);
  }
  void SetHung(uint32_t id) {
    absl::MutexLock l(&mu_);
    hung_.insert(id);
  }
  int Probes(uint32_t id) {
    absl::MutexLock l(&mu_);
    return probes_[id];
  }
  std::vector<absl::Duration> Timeouts() {
    absl::MutexLock l(&mu_);
    return timeouts_;
  }

  uint32_t blocked = 0;
  absl::Notification entered, release;

 private:
  absl::Mutex mu_;
  std::set<uint32_t> down_ ABSL_GUARDED_BY(mu_), hung_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, int> probes_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Duration> timeouts_ ABSL_GUARDED_BY(mu_);
};

class UnreachableProberTest : public ::testing::Test {
 protected:
  // Three storages (watching), 6 partitions, R = 1, RUNNING; the heartbeat
  // timeout is the default 10 s and the fake clock never reaches it.
  void SetUp() override {
    ClusterOptions options;
    options.cluster_name = "test";
    options.num_partitions = 6;
    options.num_replicas = 1;
    options.autostart = 3;
    cluster_ = std::make_unique<ClusterManager>(options, &clock_, &hub_);
    cluster_->set_storage_caller(&caller_);
    for (int i = 0; i < 3; ++i) storages_.push_back(Register(cellar::v1::NODE_ROLE_STORAGE));
    ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
    UnreachableProberOptions prober_options;
    prober_options.interval = absl::Seconds(1);
    prober_options.timeout = absl::Milliseconds(700);
    prober_ = std::make_unique<UnreachableProber>(cluster_.get(), &caller_, &clock_,
                                                  prober_options);
  }
  void TearDown() override {
    if (!caller_.release.HasBeenNotified()) caller_.release.Notify();
    prober_.reset();
  }

  uint32_t Register(cellar::v1::NodeRole role) {
    const bool storage = role == cellar::v1::NODE_ROLE_STORAGE;
    return RegisterAndWatch(*cluster_, role,
                            storage ? absl::StrCat("127.0.0.1:", 7200 + next_port_++) : "",
                            subs_);
  }

  absl::StatusOr<cellar::v1::ReportOutcome> Report(
      uint32_t id, cellar::v1::UnreachableReason reason = cellar::v1::UNREACHABLE_UNAVAILABLE) {
    return prober_->Report(id, reason, /*reporter=*/0);
  }

  void AwaitIdle() { ASSERT_TRUE(prober_->AwaitIdle(absl::Seconds(30))) << "probes never ended"; }

  cellar::v1::NodeState NodeStateOf(uint32_t id) {
    const cellar::v1::GetClusterInfoResponse info = cluster_->Info();
    for (const auto& n : info.nodes()) {
      if (n.node_id() == id) return n.state();
    }
    return cellar::v1::NODE_STATE_UNSPECIFIED;
  }

  // Cells of `node` that are readable.
  int Readable(uint32_t node) {
    auto pt = common::PartitionTable::FromProto(cluster_->Info().partition_table());
    EXPECT_TRUE(pt.ok()) << pt.status();
    int n = 0;
    for (uint32_t p = 0; p < pt->num_partitions(); ++p) {
      n += common::IsReadable(pt->CellStateOf(p, node));
    }
    return n;
  }

  common::FakeClock clock_;
  EventHub hub_;
  ProbeCaller caller_;
  std::unique_ptr<ClusterManager> cluster_;
  std::unique_ptr<UnreachableProber> prober_;
  std::vector<uint32_t> storages_;
  std::map<uint32_t, std::shared_ptr<EventHub::Subscriber>> subs_;
  int next_port_ = 0;
};

TEST_F(UnreachableProberTest, AFailedProbeTakesTheStorageDownAtOnce) {
  const uint32_t s1 = storages_[0];
  ASSERT_GT(Readable(s1), 0);
  const uint64_t ptid = cluster_->Info().partition_table().ptid();
  caller_.SetHung(s1);
  EXPECT_EQ(*Report(s1, cellar::v1::UNREACHABLE_DEADLINE_EXCEEDED), cellar::v1::REPORT_PROBING);
  AwaitIdle();
  // No clock advance: far within the 10 s heartbeat timeout.
  EXPECT_FALSE(cluster_->IsConnected(s1));
  EXPECT_EQ(NodeStateOf(s1), cellar::v1::NODE_DOWN);
  EXPECT_TRUE(subs_[s1]->closed());  // as after missed heartbeats: it registers again
  EXPECT_EQ(Readable(s1), 0);        // its cells are OUT_OF_DATE (R = 1: others hold them)
  EXPECT_GT(cluster_->Info().partition_table().ptid(), ptid);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  EXPECT_TRUE(cluster_->IsConnected(storages_[1]));
  EXPECT_EQ(prober_->stats().probed_down, 1u);
  EXPECT_THAT(caller_.Timeouts(), ::testing::ElementsAre(absl::Milliseconds(700)));
  // Reported again: already DOWN, nothing probed.
  EXPECT_EQ(*Report(s1), cellar::v1::REPORT_ALREADY_DOWN);
  EXPECT_EQ(caller_.Probes(s1), 1);
}

TEST_F(UnreachableProberTest, ItsTableChangeAndNodeStateReachTheWatchers) {
  const uint32_t client = Register(cellar::v1::NODE_ROLE_CLIENT);
  std::shared_ptr<EventHub::Subscriber> sub = subs_[client];
  cellar::v1::ClusterEvent e;
  while (hub_.Next(*sub, &e, absl::ZeroDuration())) {
  }
  caller_.SetDown(storages_[1]);
  ASSERT_EQ(*Report(storages_[1]), cellar::v1::REPORT_PROBING);
  AwaitIdle();
  bool delta = false, node_down = false;
  while (hub_.Next(*sub, &e, absl::ZeroDuration())) {
    delta |= e.has_partition_table_delta();
    node_down |= e.has_node() && e.node().node_id() == storages_[1] &&
                 e.node().state() == cellar::v1::NODE_DOWN;
  }
  EXPECT_TRUE(delta);
  EXPECT_TRUE(node_down);
}

TEST_F(UnreachableProberTest, AStorageThatAnswersStaysUpHoweverManyReports) {
  const uint32_t s2 = storages_[1];
  int probing = 0;
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 200; ++i) {
      auto outcome = Report(s2, i % 2 ? cellar::v1::UNREACHABLE_UNAVAILABLE
                                      : cellar::v1::UNREACHABLE_DEADLINE_EXCEEDED);
      ASSERT_TRUE(outcome.ok()) << outcome.status();
      probing += *outcome == cellar::v1::REPORT_PROBING;
    }
    AwaitIdle();
    clock_.Advance(absl::Milliseconds(1100));
  }
  EXPECT_TRUE(cluster_->IsConnected(s2));
  EXPECT_EQ(NodeStateOf(s2), cellar::v1::NODE_RUNNING);
  EXPECT_GT(Readable(s2), 0);
  EXPECT_FALSE(subs_[s2]->closed());
  // One probe per interval, whatever the flood.
  EXPECT_EQ(probing, 5);
  EXPECT_EQ(caller_.Probes(s2), 5);
  const UnreachableStats stats = prober_->stats();
  EXPECT_EQ(stats.probed_up, 5u);
  EXPECT_EQ(stats.coalesced, 995u);
  EXPECT_EQ(stats.probed_down, 0u);
}

TEST_F(UnreachableProberTest, ReportsAreCoalescedWhileAProbeIsInFlight) {
  const uint32_t s3 = storages_[2];
  caller_.blocked = s3;
  ASSERT_EQ(*Report(s3), cellar::v1::REPORT_PROBING);
  caller_.entered.WaitForNotification();
  clock_.Advance(absl::Seconds(5));  // past the interval: still one in flight
  for (int i = 0; i < 10; ++i) EXPECT_EQ(*Report(s3), cellar::v1::REPORT_COALESCED);
  // Another storage is probed meanwhile.
  EXPECT_EQ(*Report(storages_[0]), cellar::v1::REPORT_PROBING);
  caller_.release.Notify();
  AwaitIdle();
  EXPECT_EQ(caller_.Probes(s3), 1);
  EXPECT_EQ(caller_.Probes(storages_[0]), 1);
  // Done and past the interval: the next report probes again.
  EXPECT_EQ(*Report(s3), cellar::v1::REPORT_PROBING);
  AwaitIdle();
  EXPECT_EQ(caller_.Probes(s3), 2);
}

TEST_F(UnreachableProberTest, AStorageThatRegisteredAgainDuringTheProbeStaysUp) {
  const uint32_t s1 = storages_[0];
  caller_.blocked = s1;
  caller_.SetDown(s1);
  ASSERT_EQ(*Report(s1), cellar::v1::REPORT_PROBING);
  caller_.entered.WaitForNotification();
  // It restarts and registers again while the (old) probe is failing.
  cluster_->WatchEnded(s1, subs_[s1]);
  cellar::v1::RegisterNodeRequest r;
  r.set_cluster_name("test");
  r.set_protocol_version(cellar::v1::PROTOCOL_VERSION_1);
  r.set_role(cellar::v1::NODE_ROLE_STORAGE);
  r.set_node_id(s1);
  r.set_address("127.0.0.1:7200");
  ASSERT_TRUE(cluster_->RegisterNode(r).ok());
  caller_.release.Notify();
  AwaitIdle();
  EXPECT_TRUE(cluster_->IsConnected(s1));
  EXPECT_EQ(prober_->stats().probed_down, 0u);
  EXPECT_EQ(prober_->stats().ignored, 1u);
}

// A storage slow to answer the probe but still sending its heartbeats is
// alive: a client's report (a client with a bad path to it, or a hostile
// one) must not take it down; only the heartbeat timeout does.
TEST_F(UnreachableProberTest, AStorageThatHeartbeatsDuringAFailedProbeStaysUp) {
  const uint32_t s2 = storages_[1];
  caller_.blocked = s2;
  caller_.SetHung(s2);
  ASSERT_EQ(*Report(s2), cellar::v1::REPORT_PROBING);
  caller_.entered.WaitForNotification();
  clock_.Advance(absl::Milliseconds(500));
  ASSERT_TRUE(cluster_->Heartbeat(s2).ok());
  caller_.release.Notify();
  AwaitIdle();
  EXPECT_TRUE(cluster_->IsConnected(s2));
  EXPECT_EQ(NodeStateOf(s2), cellar::v1::NODE_RUNNING);
  EXPECT_EQ(prober_->stats().probed_down, 0u);
  EXPECT_EQ(prober_->stats().ignored, 1u);
}

TEST_F(UnreachableProberTest, HostileReports) {
  const uint32_t client = Register(cellar::v1::NODE_ROLE_CLIENT);
  const uint32_t admin = Register(cellar::v1::NODE_ROLE_ADMIN);
  EXPECT_THAT(Report(0), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Report(client), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Report(admin), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Report(common::MakeNodeId(common::NodeKind::kMaster, 1)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Report(0xFFFFFFFFu), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Report(common::MakeNodeId(common::NodeKind::kStorage, 99)),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Report(storages_[0], cellar::v1::UNREACHABLE_REASON_UNSPECIFIED),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Report(storages_[0], static_cast<cellar::v1::UnreachableReason>(77)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  AwaitIdle();
  EXPECT_EQ(caller_.Probes(storages_[0]), 0);  // nothing probed
}

TEST_F(UnreachableProberTest, OnlyWhileRunning) {
  ASSERT_TRUE(cluster_->SetClusterState(cellar::v1::CLUSTER_STOPPING).ok());
  caller_.SetDown(storages_[0]);
  absl::StatusOr<cellar::v1::ReportOutcome> outcome = Report(storages_[0]);
  EXPECT_THAT(outcome, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(common::ErrorReason(outcome.status()), common::kReasonClusterNotRunning);
  AwaitIdle();
  EXPECT_EQ(caller_.Probes(storages_[0]), 0);
  EXPECT_TRUE(cluster_->IsConnected(storages_[0]));
}

}  // namespace
}  // namespace cellar::master
