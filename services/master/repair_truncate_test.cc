// ClusterManager::RepairCell and Truncator (ClusterManager::BeginTruncate /
// FinishTruncate + TransactionCoordinator), with a fake StorageCaller that
// records TruncateData calls.
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "services/common/fake_clock.h"
#include "services/common/ids.h"
#include "services/common/partition_table.h"
#include "services/common/status_matchers.h"
#include "services/master/cluster_manager.h"
#include "services/master/event_hub.h"
#include "services/master/ok_storage_caller.h"
#include "services/master/transaction_coordinator.h"
#include "services/master/truncator.h"

namespace cellar::master {
namespace {

using common::IsOk;
using common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class FakeStorages : public OkStorageCaller {
 public:
  absl::StatusOr<uint64_t> TruncateData(const StorageTarget& target, uint64_t,
                                        uint64_t tid) override {
    absl::MutexLock l(&mu_);
    truncated_.push_back({target.node_id, tid});
    auto it = fail_.find(target.node_id);
    if (it != fail_.end()) return it->second;
    return tid;
  }

  void Fail(uint32_t node, absl::Status status) {
    absl::MutexLock l(&mu_);
    fail_[node] = std::move(status);
  }
  void Heal() {
    absl::MutexLock l(&mu_);
    fail_.clear();
  }
  std::vector<std::pair<uint32_t, uint64_t>> truncated() {
    absl::MutexLock l(&mu_);
    return truncated_;
  }

 private:
  absl::Mutex mu_;
  std::map<uint32_t, absl::Status> fail_;
  std::vector<std::pair<uint32_t, uint64_t>> truncated_;
};

class RepairTruncateTest : public ::testing::Test {
 protected:
  // 3 storages S1..S3 (watching), `partitions` partitions, `replicas`,
  // RUNNING, last tid 1000.
  void Start(uint32_t replicas, uint32_t partitions = 4) {
    ClusterOptions options;
    options.cluster_name = "test";
    options.num_partitions = partitions;
    options.num_replicas = replicas;
    options.autostart = 3;
    cluster_ = std::make_unique<ClusterManager>(options, &clock_, &hub_);
    coordinator_ =
        std::make_unique<TransactionCoordinator>(&clock_, cluster_.get(), &storages_, &hub_);
    cluster_->set_on_verify([this](const std::vector<uint64_t>& in_doubt,
                                   const std::vector<StorageTarget>& targets,
                                   uint64_t last_tid) {
      coordinator_->Recover(in_doubt, targets, last_tid);
    });
    TruncatorOptions t;
    t.drain_timeout = absl::Seconds(5);
    t.storage_timeout = absl::Seconds(1);
    truncator_ = std::make_unique<Truncator>(cluster_.get(), coordinator_.get(), &storages_, t);
    for (int i = 0; i < 3; ++i) {
      cellar::v1::RegisterNodeRequest r = Request(cellar::v1::NODE_ROLE_STORAGE);
      r.set_address(absl::StrCat("127.0.0.1:", 7200 + i));
      auto registered = cluster_->RegisterNode(r);
      ASSERT_TRUE(registered.ok()) << registered.status();
      ids_.push_back(registered->node_id());
      auto sub = cluster_->Watch(registered->node_id());
      ASSERT_TRUE(sub.ok()) << sub.status();
      subs_[registered->node_id()] = *sub;
    }
    ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
    hub_.SetLastTid(1000);
  }

  cellar::v1::RegisterNodeRequest Request(cellar::v1::NodeRole role) {
    cellar::v1::RegisterNodeRequest r;
    r.set_cluster_name("test");
    r.set_protocol_version(cellar::v1::PROTOCOL_VERSION_1);
    r.set_role(role);
    return r;
  }

  common::CellState StateOf(uint32_t partition, uint32_t node) {
    auto pt = common::PartitionTable::FromProto(cluster_->Info().partition_table());
    EXPECT_TRUE(pt.ok());
    return pt->CellStateOf(partition, node);
  }

  absl::StatusOr<cellar::v1::ReportReplicationResponse> Report(uint32_t node, uint32_t p,
                                                               uint64_t tid) {
    cellar::v1::ReportReplicationRequest r;
    r.set_node_id(node);
    r.set_partition(p);
    r.set_tid(tid);
    return cluster_->ReportReplication(r);
  }

  std::vector<cellar::v1::ClusterEvent> Drain(uint32_t node) {
    std::vector<cellar::v1::ClusterEvent> out;
    cellar::v1::ClusterEvent e;
    while (hub_.Next(*subs_[node], &e, absl::ZeroDuration())) out.push_back(e);
    return out;
  }

  common::FakeClock clock_;
  EventHub hub_;
  FakeStorages storages_;
  std::unique_ptr<ClusterManager> cluster_;
  std::unique_ptr<TransactionCoordinator> coordinator_;
  std::unique_ptr<Truncator> truncator_;
  std::vector<uint32_t> ids_;
  std::map<uint32_t, std::shared_ptr<EventHub::Subscriber>> subs_;
};

TEST_F(RepairTruncateTest, RepairDropsAndReAddsTheCellAndCopiesFromTheSourceOnly) {
  Start(/*replicas=*/2);  // every partition on S1, S2, S3
  const uint32_t s1 = ids_[0], s2 = ids_[1], s3 = ids_[2];
  const uint64_t ptid = cluster_->Info().partition_table().ptid();
  Drain(s2);
  absl::StatusOr<uint64_t> repaired = cluster_->RepairCell(1, s2, s1);
  ASSERT_THAT(repaired.status(), IsOk());
  EXPECT_EQ(*repaired, ptid + 2);
  EXPECT_EQ(StateOf(1, s2), cellar::v1::CELL_OUT_OF_DATE);
  // Two deltas: the cell dropped, then back OUT_OF_DATE.
  std::vector<cellar::v1::CellState> changes;
  for (const auto& e : Drain(s2)) {
    if (!e.has_partition_table_delta()) continue;
    for (const auto& c : e.partition_table_delta().changes()) {
      if (c.partition() == 1 && c.node_id() == s2) changes.push_back(c.state());
    }
  }
  EXPECT_THAT(changes, ElementsAre(cellar::v1::CELL_DISCARDED, cellar::v1::CELL_OUT_OF_DATE));
  // It must copy everything, from S1 only (S3 is readable too).
  auto r = Report(s2, 1, 0);
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_FALSE(r->up_to_date());
  EXPECT_EQ(r->min_tid(), 0u);
  EXPECT_EQ(r->max_tid(), 1000u);
  ASSERT_EQ(r->sources_size(), 1);
  EXPECT_EQ(r->sources(0).node_id(), s1);
  // Other cells still get every source.
  ASSERT_THAT(cluster_->RepairCell(2, s3, s2).status(), IsOk());
  // A storage reporting progress (it missed the drop) must reset first.
  EXPECT_THAT(Report(s3, 2, 500).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("anew")));
  r = Report(s3, 2, 0);
  ASSERT_THAT(r.status(), IsOk());
  ASSERT_EQ(r->sources_size(), 1);
  EXPECT_EQ(r->sources(0).node_id(), s2);
  // Done: UP_TO_DATE again.
  r = Report(s2, 1, 1000);
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_TRUE(r->up_to_date());
  EXPECT_EQ(StateOf(1, s2), cellar::v1::CELL_UP_TO_DATE);
}

TEST_F(RepairTruncateTest, RepairRefusals) {
  Start(/*replicas=*/2);
  const uint32_t s1 = ids_[0], s2 = ids_[1], s3 = ids_[2];
  EXPECT_THAT(cluster_->RepairCell(4, s2, s1).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));  // partition out of range
  EXPECT_THAT(cluster_->RepairCell(0, s2, s2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cluster_->RepairCell(0, s2, 0x01000001).status(),  // the master
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cluster_->RepairCell(0, common::MakeNodeId(common::NodeKind::kStorage, 9), s1)
                  .status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("holds no cell")));
  // A source whose cell is not readable.
  ASSERT_THAT(cluster_->RepairCell(0, s3, s1).status(), IsOk());
  EXPECT_THAT(cluster_->RepairCell(0, s2, s3).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no readable cell")));
}

TEST_F(RepairTruncateTest, TruncateGoesThroughRecoveryAndSetsTheLastTid) {
  Start(/*replicas=*/1);
  // A client whose stream must be closed (it re-registers, dropping its cache).
  auto client = cluster_->RegisterNode(Request(cellar::v1::NODE_ROLE_CLIENT));
  ASSERT_TRUE(client.ok());
  auto client_sub = cluster_->Watch(client->node_id());
  ASSERT_TRUE(client_sub.ok());

  EXPECT_THAT(truncator_->Truncate(1001).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is after the last committed tid")));
  EXPECT_THAT(cluster_->BeginTruncate(0).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(storages_.truncated().empty());

  Drain(ids_[0]);  // the start's events
  absl::StatusOr<cellar::v1::ClusterState> state = truncator_->Truncate(500);
  ASSERT_THAT(state.status(), IsOk());
  EXPECT_EQ(*state, cellar::v1::CLUSTER_RUNNING);
  EXPECT_THAT(storages_.truncated(),
              ElementsAre(std::make_pair(ids_[0], uint64_t{500}),
                          std::make_pair(ids_[1], uint64_t{500}),
                          std::make_pair(ids_[2], uint64_t{500})));
  EXPECT_EQ(hub_.last_tid(), 500u);
  EXPECT_EQ(cluster_->Info().last_tid(), 500u);
  // The cluster went through RECOVERING and VERIFYING.
  std::vector<cellar::v1::ClusterState> states;
  for (const auto& e : Drain(ids_[0])) {
    if (e.event_case() == cellar::v1::ClusterEvent::kClusterState) {
      states.push_back(e.cluster_state());
    }
  }
  EXPECT_THAT(states, ElementsAre(cellar::v1::CLUSTER_RECOVERING, cellar::v1::CLUSTER_VERIFYING,
                                  cellar::v1::CLUSTER_RUNNING));
  // The client's stream was closed.
  cellar::v1::ClusterEvent e;
  while (hub_.Next(**client_sub, &e, absl::ZeroDuration())) {
  }
  EXPECT_TRUE((*client_sub)->closed());
}

TEST_F(RepairTruncateTest, AFailedTruncateStaysRecoveringAndCanBeRetried) {
  Start(/*replicas=*/1);
  storages_.Fail(ids_[1], absl::InternalError("disk on fire"));
  EXPECT_THAT(truncator_->Truncate(700).status(),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("stays RECOVERING")));
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RECOVERING);
  EXPECT_THAT(cluster_->Start().status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("did not finish")));
  storages_.Heal();
  absl::StatusOr<cellar::v1::ClusterState> state = truncator_->Truncate(600);
  ASSERT_THAT(state.status(), IsOk());
  EXPECT_EQ(*state, cellar::v1::CLUSTER_RUNNING);
  EXPECT_EQ(hub_.last_tid(), 600u);
}

TEST_F(RepairTruncateTest, TruncateNeedsEveryStorageHoldingCells) {
  Start(/*replicas=*/1);
  cluster_->WatchEnded(ids_[2], subs_[ids_[2]]);  // S3 gone; still RUNNING (R = 1)
  ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  EXPECT_THAT(truncator_->Truncate(500).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(common::NodeName(ids_[2]))));
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  EXPECT_TRUE(storages_.truncated().empty());
}

}  // namespace
}  // namespace cellar::master
