// ClusterManager + TransactionCoordinator + EventHub, with a fake
// StorageCaller: registration rules, cluster start, recovery, commit order,
// invalidations, aborts.
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/synchronization/notification.h"
#include "services/common/errors.h"
#include "services/common/fake_clock.h"
#include "services/common/ids.h"
#include "services/common/status_matchers.h"
#include "services/master/cluster_manager.h"
#include "services/master/event_hub.h"
#include "services/master/transaction_coordinator.h"

namespace cellar::master {
namespace {

using common::IsOk;
using common::StatusIs;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

// Records calls; a lock of `blocked_ttid` waits for `release`.
class FakeStorageCaller : public StorageCaller {
 public:
  std::vector<absl::Status> LockAll(const std::vector<StorageTarget>& targets, uint64_t,
                                    uint64_t ttid, uint64_t tid) override {
    {
      absl::MutexLock l(&mu_);
      locks_.push_back({ttid, tid});
    }
    if (ttid == blocked_ttid) {
      entered.Notify();
      release.WaitForNotification();
    }
    if (ttid == notify_ttid) locked.Notify();
    return std::vector<absl::Status>(targets.size(), lock_result);
  }
  void UnlockAsync(const std::vector<StorageTarget>&, uint64_t, uint64_t ttid,
                   uint64_t) override {
    absl::MutexLock l(&mu_);
    unlocks_.push_back(ttid);
  }
  std::vector<absl::Status> AbortAll(const std::vector<StorageTarget>& targets, uint64_t,
                                     uint64_t ttid) override {
    absl::MutexLock l(&mu_);
    aborts_.push_back(ttid);
    return std::vector<absl::Status>(targets.size(), absl::OkStatus());
  }
  std::vector<uint64_t> aborts() {
    absl::MutexLock l(&mu_);
    return aborts_;
  }
  std::vector<uint64_t> unlocks() {
    absl::MutexLock l(&mu_);
    return unlocks_;
  }

  absl::Status lock_result;
  uint64_t blocked_ttid = 0;
  uint64_t notify_ttid = 0;
  absl::Notification entered;  // the blocked lock was asked for
  absl::Notification release;
  absl::Notification locked;

 private:
  absl::Mutex mu_;
  std::vector<std::pair<uint64_t, uint64_t>> locks_;
  std::vector<uint64_t> unlocks_;
  std::vector<uint64_t> aborts_;
};

class MasterDomainTest : public ::testing::Test {
 protected:
  void Init(uint32_t autostart, uint32_t partitions = 4, uint32_t replicas = 1) {
    ClusterOptions options;
    options.cluster_name = "test";
    options.num_partitions = partitions;
    options.num_replicas = replicas;
    options.autostart = autostart;
    cluster_ = std::make_unique<ClusterManager>(options, &clock_, &hub_);
    coordinator_ =
        std::make_unique<TransactionCoordinator>(&clock_, cluster_.get(), &caller_, &hub_);
    cluster_->set_on_client_gone(
        [this](uint32_t id) { coordinator_->AbortClientTransactions(id); });
    cluster_->set_on_verify([this](const std::vector<uint64_t>& in_doubt,
                                   const std::vector<StorageTarget>& storages,
                                   uint64_t last_tid) {
      coordinator_->Recover(in_doubt, storages, last_tid);
    });
  }

  cellar::v1::RegisterNodeRequest Request(cellar::v1::NodeRole role, uint32_t id = 0,
                                          int port = 0) {
    cellar::v1::RegisterNodeRequest r;
    r.set_cluster_name("test");
    r.set_protocol_version(cellar::v1::PROTOCOL_VERSION_1);
    r.set_role(role);
    r.set_node_id(id);
    if (port) r.set_address(absl::StrCat("127.0.0.1:", port));
    return r;
  }

  uint32_t AddStorage(int port, uint32_t id = 0) {
    auto r = cluster_->RegisterNode(Request(cellar::v1::NODE_ROLE_STORAGE, id, port));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->node_id() : 0;
  }

  uint32_t AddClient() {
    auto r = cluster_->RegisterNode(Request(cellar::v1::NODE_ROLE_CLIENT));
    EXPECT_TRUE(r.ok()) << r.status();
    return r->node_id();
  }

  // Events queued for `sub`, without waiting.
  std::vector<cellar::v1::ClusterEvent> Drain(EventHub::Subscriber& sub) {
    std::vector<cellar::v1::ClusterEvent> out;
    cellar::v1::ClusterEvent e;
    while (hub_.Next(sub, &e, absl::ZeroDuration())) out.push_back(e);
    return out;
  }

  common::FakeClock clock_;
  EventHub hub_;
  FakeStorageCaller caller_;
  std::unique_ptr<ClusterManager> cluster_;
  std::unique_ptr<TransactionCoordinator> coordinator_;
};

TEST_F(MasterDomainTest, RefusesWrongClusterProtocolAndRole) {
  Init(0);
  auto r = Request(cellar::v1::NODE_ROLE_STORAGE, 0, 7200);
  r.set_cluster_name("other");
  auto res = cluster_->RegisterNode(r);
  EXPECT_THAT(res, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(common::ErrorReason(res.status()), "WRONG_CLUSTER");

  r = Request(cellar::v1::NODE_ROLE_STORAGE, 0, 7200);
  r.set_protocol_version(cellar::v1::PROTOCOL_VERSION_UNSPECIFIED);
  res = cluster_->RegisterNode(r);
  EXPECT_THAT(res, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(common::ErrorReason(res.status()), "PROTOCOL_MISMATCH");

  EXPECT_THAT(cluster_->RegisterNode(Request(cellar::v1::NODE_ROLE_MASTER)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cluster_->RegisterNode(Request(cellar::v1::NODE_ROLE_STORAGE)),
              StatusIs(absl::StatusCode::kInvalidArgument));  // no address
  r = Request(cellar::v1::NODE_ROLE_CLIENT);
  r.set_track("beta");
  EXPECT_THAT(cluster_->RegisterNode(r), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(MasterDomainTest, NodeIdsCarryTheirRole) {
  Init(0);
  const uint32_t s = AddStorage(7200);
  const uint32_t c = AddClient();
  EXPECT_EQ(common::NodeName(s), "S1");
  EXPECT_EQ(common::NodeName(c), "C1");
  EXPECT_NE(s, c);
}

TEST_F(MasterDomainTest, NewClusterWaitsForOperatorOrAutostart) {
  Init(/*autostart=*/0);
  EXPECT_THAT(cluster_->Start(), StatusIs(absl::StatusCode::kFailedPrecondition));
  AddStorage(7200);
  AddStorage(7201);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RECOVERING);
  EXPECT_THAT(cluster_->CheckRunning(), StatusIs(absl::StatusCode::kFailedPrecondition));
  auto state = cluster_->Start();
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(*state, cellar::v1::CLUSTER_RUNNING);
  const auto info = cluster_->Info();
  EXPECT_EQ(info.partition_table().ptid(), 1u);
  EXPECT_EQ(info.partition_table().num_partitions(), 4u);
  EXPECT_TRUE(info.operational());
  EXPECT_THAT(cluster_->Start(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(MasterDomainTest, AutostartAfterNStorages) {
  Init(/*autostart=*/3);
  AddStorage(7200);
  AddStorage(7201);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RECOVERING);
  AddStorage(7202);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  const auto info = cluster_->Info();
  for (const auto& node : info.nodes()) {
    EXPECT_EQ(node.state(), cellar::v1::NODE_RUNNING);
  }
}

TEST_F(MasterDomainTest, OidBatches) {
  Init(1);
  EXPECT_THAT(cluster_->AllocateOids(10), StatusIs(absl::StatusCode::kFailedPrecondition));
  AddStorage(7200);
  EXPECT_THAT(cluster_->AllocateOids(0), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cluster_->AllocateOids(1001), StatusIs(absl::StatusCode::kInvalidArgument));
  auto a = cluster_->AllocateOids(100);
  auto b = cluster_->AllocateOids(5);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(*a, 1u);
  EXPECT_EQ(*b, 101u);
}

TEST_F(MasterDomainTest, CommitPicksTidInTtidPartitionAndInvalidatesInOrder) {
  Init(2, /*partitions=*/7);
  const uint32_t s1 = AddStorage(7200);
  const uint32_t s2 = AddStorage(7201);
  const uint32_t c1 = AddClient();
  const uint32_t c2 = AddClient();
  auto watcher = cluster_->Watch(c2);
  ASSERT_THAT(watcher, IsOk());
  Drain(**watcher);

  EXPECT_THAT(coordinator_->Begin(12345), StatusIs(absl::StatusCode::kNotFound));
  auto ttid = coordinator_->Begin(c1);
  ASSERT_THAT(ttid, IsOk());
  auto tid = coordinator_->Finish(c1, *ttid, {s1, s2}, {3, 4});
  ASSERT_THAT(tid, IsOk());
  EXPECT_GT(*tid, *ttid);
  EXPECT_EQ(*tid % 7, *ttid % 7);
  EXPECT_THAT(caller_.unlocks(), ElementsAre(*ttid));
  EXPECT_EQ(cluster_->Info().last_tid(), *tid);

  const auto events = Drain(**watcher);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].invalidation().tid(), *tid);
  EXPECT_THAT(events[0].invalidation().oids(), ElementsAre(3, 4));

  const auto status = coordinator_->Status(*ttid);
  EXPECT_EQ(status.outcome(), cellar::v1::TRANSACTION_COMMITTED);
  EXPECT_EQ(status.tid(), *tid);
  EXPECT_THAT(coordinator_->Finish(c1, *ttid, {s1}, {}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(coordinator_->Abort(c1, *ttid, {}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(MasterDomainTest, CommitsCompleteInTidOrder) {
  Init(1);
  const uint32_t s1 = AddStorage(7200);
  const uint32_t c1 = AddClient();
  auto watcher = cluster_->Watch(c1);
  ASSERT_THAT(watcher, IsOk());
  Drain(**watcher);

  const uint64_t t1 = *coordinator_->Begin(c1);
  const uint64_t t2 = *coordinator_->Begin(c1);
  caller_.blocked_ttid = t1;   // T1's lock answers late
  caller_.notify_ttid = t2;
  absl::StatusOr<uint64_t> tid1, tid2;
  std::thread a([&] { tid1 = coordinator_->Finish(c1, t1, {s1}, {1}); });
  // T1 has its tid (it is locking) before T2 asks for one.
  ASSERT_TRUE(caller_.entered.WaitForNotificationWithTimeout(absl::Seconds(10)))
      << "T1 never reached lock";
  std::thread b([&] { tid2 = coordinator_->Finish(c1, t2, {s1}, {2}); });
  ASSERT_TRUE(caller_.locked.WaitForNotificationWithTimeout(absl::Seconds(10)))
      << "T2 never locked";
  // T2 is locked but must wait for T1: nothing is published yet.
  EXPECT_TRUE(Drain(**watcher).empty());
  caller_.release.Notify();
  a.join();
  b.join();
  ASSERT_THAT(tid1, IsOk());
  ASSERT_THAT(tid2, IsOk());
  const auto events = Drain(**watcher);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_LT(events[0].invalidation().tid(), events[1].invalidation().tid());
  EXPECT_EQ(events[1].invalidation().tid(), std::max(*tid1, *tid2));
}

TEST_F(MasterDomainTest, LockFailureEverywhereAbortsWithUnavailable) {
  Init(1);
  const uint32_t s1 = AddStorage(7200);
  const uint32_t c1 = AddClient();
  caller_.lock_result = absl::UnavailableError("disk full");
  const uint64_t ttid = *coordinator_->Begin(c1);
  EXPECT_THAT(coordinator_->Finish(c1, ttid, {s1}, {1}),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(caller_.aborts(), ElementsAre(ttid));
  EXPECT_EQ(coordinator_->Status(ttid).outcome(), cellar::v1::TRANSACTION_ABORTED);
  // The next transaction is not stuck behind the failed one.
  caller_.lock_result = absl::OkStatus();
  const uint64_t next = *coordinator_->Begin(c1);
  EXPECT_THAT(coordinator_->Finish(c1, next, {s1}, {1}), IsOk());
}

TEST_F(MasterDomainTest, DepartedClientHasItsTransactionsAborted) {
  Init(1);
  AddStorage(7200);
  const uint32_t c1 = AddClient();
  auto watcher = cluster_->Watch(c1);
  ASSERT_THAT(watcher, IsOk());
  const uint64_t ttid = *coordinator_->Begin(c1);
  cluster_->WatchEnded(c1, *watcher);
  EXPECT_THAT(caller_.aborts(), ElementsAre(ttid));
  EXPECT_EQ(coordinator_->Status(ttid).outcome(), cellar::v1::TRANSACTION_ABORTED);
  EXPECT_THAT(coordinator_->Begin(c1), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(MasterDomainTest, RestartAdoptsHighestTableAndWaitsForEveryReadableNode) {
  Init(0);
  auto pt = common::PartitionTable::MakeBalanced(4, 1, {1, 2});
  ASSERT_THAT(pt, IsOk());
  pt->set_ptid(5);
  auto r1 = Request(cellar::v1::NODE_ROLE_STORAGE, 1, 7200);
  *r1.mutable_partition_table() = pt->ToProto();
  const uint64_t old_tid = common::TidFromTime(clock_.Now() + absl::Hours(1));
  r1.set_last_tid(old_tid);
  r1.set_last_oid(41);
  r1.add_voted_ttids(old_tid - 5);
  ASSERT_THAT(cluster_->RegisterNode(r1), IsOk());
  // S2 holds readable cells too: no start without it.
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RECOVERING);
  EXPECT_EQ(cluster_->Info().partition_table().ptid(), 5u);

  auto stale = pt->ToProto();
  stale.set_ptid(3);
  auto r2 = Request(cellar::v1::NODE_ROLE_STORAGE, 2, 7201);
  *r2.mutable_partition_table() = stale;
  ASSERT_THAT(cluster_->RegisterNode(r2), IsOk());
  const auto info = cluster_->Info();
  EXPECT_EQ(info.cluster_state(), cellar::v1::CLUSTER_RUNNING);
  EXPECT_EQ(info.partition_table().ptid(), 5u);
  EXPECT_EQ(info.last_tid(), old_tid);
  // The in-doubt transaction was dropped, and tids continue after old ones.
  EXPECT_THAT(caller_.aborts(), ElementsAre(old_tid - 5));
  EXPECT_EQ(*cluster_->AllocateOids(1), 42u);
  const uint32_t c = AddClient();
  EXPECT_GT(*coordinator_->Begin(c), old_tid);
}

TEST_F(MasterDomainTest, LosingTheLastReadableCellGoesBackToRecovering) {
  Init(2, 4, /*replicas=*/0);
  const uint32_t s1 = AddStorage(7200);
  AddStorage(7201);
  ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  auto sub = cluster_->Watch(s1);
  ASSERT_THAT(sub, IsOk());
  cluster_->WatchEnded(s1, *sub);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RECOVERING);
  EXPECT_FALSE(cluster_->Info().operational());
  // It comes back: the cluster runs again.
  AddStorage(7200, s1);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
}

TEST_F(MasterDomainTest, WatchOfUnknownNodeIsNotFound) {
  Init(0);
  EXPECT_THAT(cluster_->Watch(99), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace cellar::master
