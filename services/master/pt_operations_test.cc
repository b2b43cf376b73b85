// ClusterManager's operator actions: SetClusterState, ChangePartitionTable
// (PtPlanner wired to the live table: catch-up of new cells, FinishFeeding,
// node states, events) and KillNode. No gRPC; a fake clock.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "services/common/errors.h"
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

class PtOperationsTest : public ::testing::Test {
 protected:
  // Finish's votes: partition -> the storages that voted for it.
  static CommitVotes Votes(absl::btree_map<uint32_t, std::vector<uint32_t>> voters,
                           uint64_t client_ptid = 0) {
    CommitVotes votes;
    votes.voters = std::move(voters);
    votes.client_ptid = client_ptid;
    return votes;
  }

  // `n` storages (S1..Sn, watching), `partitions` partitions, R = `replicas`,
  // RUNNING.
  void Start(int n, uint32_t partitions = 6, uint32_t replicas = 1) {
    ClusterOptions options;
    options.cluster_name = "test";
    options.num_partitions = partitions;
    options.num_replicas = replicas;
    options.autostart = static_cast<uint32_t>(n);
    cluster_ = std::make_unique<ClusterManager>(options, &clock_, &hub_);
    for (int i = 0; i < n; ++i) storages_.push_back(AddStorage());
    ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  }

  // Registers a new storage and watches it.
  uint32_t AddStorage() {
    return RegisterAndWatch(*cluster_, cellar::v1::NODE_ROLE_STORAGE,
                            absl::StrCat("127.0.0.1:", 7200 + next_port_++), subs_);
  }

  common::PartitionTable Pt() {
    auto pt = common::PartitionTable::FromProto(cluster_->Info().partition_table());
    EXPECT_TRUE(pt.ok()) << pt.status();
    return *pt;
  }

  cellar::v1::NodeState NodeStateOf(uint32_t id) {
    const cellar::v1::GetClusterInfoResponse info = cluster_->Info();
    for (const auto& n : info.nodes()) {
      if (n.node_id() == id) return n.state();
    }
    return cellar::v1::NODE_STATE_UNSPECIFIED;
  }

  bool Known(uint32_t id) { return NodeStateOf(id) != cellar::v1::NODE_STATE_UNSPECIFIED; }

  // Cells of `state` on `node`.
  int Count(uint32_t node, common::CellState state) {
    const common::PartitionTable pt = Pt();
    int n = 0;
    for (uint32_t p = 0; p < pt.num_partitions(); ++p) n += pt.CellStateOf(p, node) == state;
    return n;
  }

  absl::StatusOr<cellar::v1::ReportReplicationResponse> Report(uint32_t node,
                                                               uint32_t partition,
                                                               uint64_t tid) {
    cellar::v1::ReportReplicationRequest r;
    r.set_node_id(node);
    r.set_partition(partition);
    r.set_tid(tid);
    return cluster_->ReportReplication(r);
  }

  // Reports every OUT_OF_DATE cell as caught up (first from 0, then to
  // the last tid, as a replicator does).
  void CatchUpAll() {
    for (int round = 0; round < 10; ++round) {
      const common::PartitionTable pt = Pt();
      bool any = false;
      for (uint32_t p = 0; p < pt.num_partitions(); ++p) {
        for (const common::PtCell& c : pt.Row(p)) {
          if (c.state != cellar::v1::CELL_OUT_OF_DATE) continue;
          any = true;
          auto first = Report(c.node_id, p, 0);
          ASSERT_THAT(first, IsOk());
          if (first->up_to_date()) continue;
          auto done = Report(c.node_id, p, hub_.last_tid());
          ASSERT_THAT(done, IsOk());
          EXPECT_TRUE(done->up_to_date()) << "partition " << p;
        }
      }
      if (!any) return;
    }
    ADD_FAILURE() << "cells still OUT_OF_DATE after 10 rounds:\n" << Pt().ToGrid();
  }

  // Events queued for `node`'s stream, without waiting.
  std::vector<cellar::v1::ClusterEvent> Drain(uint32_t node) {
    std::vector<cellar::v1::ClusterEvent> out;
    cellar::v1::ClusterEvent e;
    while (hub_.Next(*subs_[node], &e, absl::ZeroDuration())) out.push_back(e);
    return out;
  }

  std::vector<cellar::v1::ClusterEvent> TableEvents(uint32_t node) {
    std::vector<cellar::v1::ClusterEvent> out;
    for (auto& e : Drain(node)) {
      if (e.has_partition_table() || e.has_partition_table_delta()) out.push_back(e);
    }
    return out;
  }

  common::FakeClock clock_;
  EventHub hub_;
  std::unique_ptr<ClusterManager> cluster_;
  std::vector<uint32_t> storages_;
  std::map<uint32_t, std::shared_ptr<EventHub::Subscriber>> subs_;
  int next_port_ = 0;
};

TEST_F(PtOperationsTest, NewStorageWhileRunningIsPending) {
  Start(2);
  const uint32_t s3 = AddStorage();
  EXPECT_EQ(NodeStateOf(s3), cellar::v1::NODE_PENDING);
  EXPECT_EQ(NodeStateOf(storages_[0]), cellar::v1::NODE_RUNNING);
}

TEST_F(PtOperationsTest, DryRunChangesNothing) {
  Start(2);
  const uint32_t s3 = AddStorage();
  const std::string before = cluster_->Info().partition_table().SerializeAsString();
  Drain(storages_[0]);
  auto r = cluster_->ChangePartitionTable(cellar::v1::PT_ADD, {s3}, 0, /*dry_run=*/true);
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->applied);
  EXPECT_FALSE(r->plan.changes.empty());
  EXPECT_EQ(r->ptid, r->ptid_before);
  EXPECT_THAT(r->plan.ToString(), HasSubstr("(dry run)"));
  EXPECT_EQ(cluster_->Info().partition_table().SerializeAsString(), before);
  EXPECT_EQ(NodeStateOf(s3), cellar::v1::NODE_PENDING);
  EXPECT_TRUE(TableEvents(storages_[0]).empty());
}

TEST_F(PtOperationsTest, AddPendingNodeBalancesThenFinishesFeeding) {
  Start(2);  // 6 partitions x 2 cells: 6 each
  hub_.SetLastTid(1000);  // something was committed
  const uint32_t s3 = AddStorage();
  Drain(storages_[0]);
  const uint64_t ptid = Pt().ptid();
  auto r = cluster_->ChangePartitionTable(cellar::v1::PT_ADD, {s3}, 0, false);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->applied);
  EXPECT_EQ(r->ptid_before, ptid);
  EXPECT_EQ(r->ptid, ptid + 1);
  EXPECT_EQ(NodeStateOf(s3), cellar::v1::NODE_RUNNING);
  // One delta, ptid + 1, with the plan's changes.
  auto events = TableEvents(storages_[0]);
  ASSERT_EQ(events.size(), 1u);
  ASSERT_TRUE(events[0].has_partition_table_delta());
  EXPECT_EQ(events[0].partition_table_delta().ptid(), ptid + 1);
  EXPECT_EQ(static_cast<size_t>(events[0].partition_table_delta().changes_size()),
            r->plan.changes.size());
  // S3 gets its share, OUT_OF_DATE; the cells moving away are FEEDING.
  EXPECT_EQ(Count(s3, cellar::v1::CELL_OUT_OF_DATE), 4);
  EXPECT_EQ(Count(storages_[0], cellar::v1::CELL_FEEDING) +
                Count(storages_[1], cellar::v1::CELL_FEEDING),
            4);

  // A new cell must be filled from 0: a report of an earlier progress is
  // refused (CELL_RECREATED), and it is not up to date before the last tid.
  uint32_t p = 0;
  while (Pt().CellStateOf(p, s3) != cellar::v1::CELL_OUT_OF_DATE) ++p;
  auto stale = Report(s3, p, 500);
  EXPECT_THAT(stale, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(common::ErrorReason(stale.status()), common::kReasonCellRecreated);
  auto first = Report(s3, p, 0);
  ASSERT_THAT(first, IsOk());
  EXPECT_FALSE(first->up_to_date());
  EXPECT_EQ(first->min_tid(), 0u);
  EXPECT_EQ(first->max_tid(), 1000u);
  EXPECT_EQ(first->sources_size(), 2);  // both readable cells (one FEEDING)
  auto partial = Report(s3, p, 999);
  ASSERT_THAT(partial, IsOk());
  EXPECT_FALSE(partial->up_to_date());
  auto done = Report(s3, p, 1000);
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(done->up_to_date());
  // That partition now has R+1 UP_TO_DATE cells: its FEEDING cell went.
  const common::PartitionTable pt = Pt();
  EXPECT_EQ(pt.Row(p).size(), 2u) << pt.ToGrid();
  for (const common::PtCell& c : pt.Row(p)) EXPECT_EQ(c.state, cellar::v1::CELL_UP_TO_DATE);
  events = TableEvents(storages_[0]);
  ASSERT_EQ(events.size(), 2u);  // the UP_TO_DATE mark, then the FEEDING drop
  ASSERT_EQ(events[1].partition_table_delta().changes_size(), 1);
  EXPECT_EQ(events[1].partition_table_delta().changes(0).state(), cellar::v1::CELL_DISCARDED);

  CatchUpAll();
  for (uint32_t id : {storages_[0], storages_[1], s3}) {
    EXPECT_EQ(Count(id, cellar::v1::CELL_UP_TO_DATE), 4) << common::NodeName(id);
    EXPECT_EQ(Count(id, cellar::v1::CELL_FEEDING), 0) << common::NodeName(id);
  }
  // Adding it again changes nothing.
  r = cluster_->ChangePartitionTable(cellar::v1::PT_ADD, {s3}, 0, false);
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->applied);
  EXPECT_EQ(r->ptid, r->ptid_before);
}

TEST_F(PtOperationsTest, NewCellMissesTransactionsBeingCommitted) {
  Start(2);
  hub_.SetLastTid(1000);
  // A transaction got tid 2000 (PrepareCommit) but has not completed.
  ASSERT_THAT(cluster_->PrepareCommit(2000, Votes({{0, {storages_[0], storages_[1]}}}), {0}), IsOk());
  const uint32_t s3 = AddStorage();
  ASSERT_THAT(cluster_->ChangePartitionTable(cellar::v1::PT_ADD, {s3}, 0, false), IsOk());
  uint32_t p = 0;
  while (Pt().CellStateOf(p, s3) != cellar::v1::CELL_OUT_OF_DATE) ++p;
  ASSERT_THAT(Report(s3, p, 0), IsOk());
  auto r = Report(s3, p, 1000);
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->up_to_date()) << "tid 2000 may be missing";
  hub_.SetLastTid(2000);
  r = Report(s3, p, 2000);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->up_to_date());
}

// A client that planned with the table holding the new cell wrote to it:
// its commit does not push the cell's catch-up further.
TEST_F(PtOperationsTest, CommitsPlannedWithTheNewCellDoNotDelayIt) {
  Start(2);
  hub_.SetLastTid(1000);
  const uint32_t s3 = AddStorage();
  auto change = cluster_->ChangePartitionTable(cellar::v1::PT_ADD, {s3}, 0, false);
  ASSERT_THAT(change, IsOk());
  uint32_t p = 0;
  while (Pt().CellStateOf(p, s3) != cellar::v1::CELL_OUT_OF_DATE) ++p;
  ASSERT_THAT(cluster_->PrepareCommit(
                  3000, Votes({{p, {storages_[0], storages_[1], s3}}}, Pt().ptid()), {p}),
              IsOk());
  hub_.SetLastTid(3000);
  ASSERT_THAT(Report(s3, p, 0), IsOk());
  auto r = Report(s3, p, 1000);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->up_to_date()) << "the new cell voted for tid 3000 with a table that has it";
}

TEST_F(PtOperationsTest, NewCellCatchesUpPastCommitsItsNodeVotedFor) {
  Start(2);
  hub_.SetLastTid(1000);
  const uint32_t s3 = AddStorage();
  ASSERT_THAT(cluster_->ChangePartitionTable(cellar::v1::PT_ADD, {s3}, 0, false), IsOk());
  uint32_t p = 0;
  while (Pt().CellStateOf(p, s3) != cellar::v1::CELL_OUT_OF_DATE) ++p;
  // A client with the table before the change stored p's objects on S1 and
  // S2 only: the new cell did not get them (votes count per partition).
  ASSERT_THAT(cluster_->PrepareCommit(3000, Votes({{p, {storages_[0], storages_[1]}}}), {p}),
              IsOk());
  hub_.SetLastTid(3000);
  ASSERT_THAT(Report(s3, p, 0), IsOk());
  auto r = Report(s3, p, 1000);
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->up_to_date()) << "tid 3000 may be missing from the new cell";
  r = Report(s3, p, 3000);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->up_to_date());
}

TEST_F(PtOperationsTest, DropOfRunningNodeIsRefused) {
  Start(3);
  auto r = cluster_->ChangePartitionTable(cellar::v1::PT_DROP, {storages_[0]}, 0, false);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(r.status().message(), HasSubstr("is RUNNING"));
  EXPECT_TRUE(Known(storages_[0]));
}

TEST_F(PtOperationsTest, KilledNodeCanBeDroppedAndIsForgotten) {
  Start(3);
  const uint32_t s1 = storages_[0];
  auto killed = cluster_->KillNode(s1);
  ASSERT_THAT(killed, IsOk());
  EXPECT_EQ(killed->node.state(), cellar::v1::NODE_DOWN);
  EXPECT_EQ(killed->target.node_id, s1);
  EXPECT_FALSE(killed->target.address.empty());
  EXPECT_EQ(NodeStateOf(s1), cellar::v1::NODE_DOWN);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  EXPECT_EQ(Count(s1, cellar::v1::CELL_UP_TO_DATE), 0);  // all OUT_OF_DATE now
  const int s1_cells = Count(s1, cellar::v1::CELL_OUT_OF_DATE);
  EXPECT_GT(s1_cells, 0);

  auto r = cluster_->ChangePartitionTable(cellar::v1::PT_DROP, {s1}, 0, false);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->applied);
  EXPECT_FALSE(Known(s1));
  EXPECT_FALSE(Pt().NodeIds().contains(s1));
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  CatchUpAll();
  // R+1 = 2 cells per partition over the 2 nodes left.
  EXPECT_EQ(Count(storages_[1], cellar::v1::CELL_UP_TO_DATE), 6);
  EXPECT_EQ(Count(storages_[2], cellar::v1::CELL_UP_TO_DATE), 6);
  EXPECT_TRUE(cluster_->Info().operational());
}

TEST_F(PtOperationsTest, KillNodeRefusesTheMasterAndUnknownNodes) {
  Start(2);
  EXPECT_THAT(cluster_->KillNode(0x01000001), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(cluster_->KillNode(common::MakeNodeId(common::NodeKind::kStorage, 99)),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(PtOperationsTest, KillingTheLastReadableCellSendsTheClusterBackToRecovering) {
  Start(2, 4, /*replicas=*/0);
  ASSERT_THAT(cluster_->KillNode(storages_[0]), IsOk());
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RECOVERING);
  // The table cannot change then: the dead node's cells are the last copies.
  auto r = cluster_->ChangePartitionTable(cellar::v1::PT_DROP, {storages_[0]}, 0, false);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(r.status().message(), HasSubstr("RECOVERING"));
}

TEST_F(PtOperationsTest, SetReplicasPublishesTheWholeTable) {
  Start(3);
  hub_.SetLastTid(1000);
  Drain(storages_[0]);
  auto dry = cluster_->ChangePartitionTable(cellar::v1::PT_SET_REPLICAS, {}, 2, true);
  ASSERT_THAT(dry, IsOk());
  EXPECT_EQ(dry->plan.num_replicas, 2u);
  EXPECT_EQ(Pt().num_replicas(), 1u);
  auto r = cluster_->ChangePartitionTable(cellar::v1::PT_SET_REPLICAS, {}, 2, false);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->applied);
  EXPECT_EQ(r->num_replicas, 2u);
  auto events = TableEvents(storages_[0]);
  ASSERT_EQ(events.size(), 1u);
  ASSERT_TRUE(events[0].has_partition_table());
  EXPECT_EQ(events[0].partition_table().num_replicas(), 2u);
  EXPECT_EQ(events[0].partition_table().ptid(), r->ptid);
  const common::PartitionTable pt = Pt();
  for (uint32_t p = 0; p < pt.num_partitions(); ++p) EXPECT_EQ(pt.Row(p).size(), 3u);
  CatchUpAll();
  for (uint32_t id : storages_) EXPECT_EQ(Count(id, cellar::v1::CELL_UP_TO_DATE), 6);
  // And back down: cells are removed at once, one delta.
  r = cluster_->ChangePartitionTable(cellar::v1::PT_SET_REPLICAS, {}, 1, false);
  ASSERT_THAT(r, IsOk());
  for (uint32_t id : storages_) EXPECT_EQ(Count(id, cellar::v1::CELL_UP_TO_DATE), 4);
}

TEST_F(PtOperationsTest, BadRequestsAreInvalidArguments) {
  Start(2);
  const uint32_t s1 = storages_[0];
  EXPECT_THAT(cluster_->ChangePartitionTable(
                  cellar::v1::PARTITION_TABLE_OPERATION_UNSPECIFIED, {}, 0, false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cluster_->ChangePartitionTable(cellar::v1::PT_ADD, {}, 0, false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cluster_->ChangePartitionTable(cellar::v1::PT_DROP, {s1, storages_[1]}, 0, false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cluster_->ChangePartitionTable(cellar::v1::PT_TWEAK, {s1}, 0, false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cluster_->ChangePartitionTable(cellar::v1::PT_SET_REPLICAS, {}, 65, false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cluster_->ChangePartitionTable(
                  cellar::v1::PT_ADD, {common::MakeNodeId(common::NodeKind::kStorage, 42)},
                  0, false),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cluster_->ChangePartitionTable(
                  cellar::v1::PT_ADD, {common::MakeNodeId(common::NodeKind::kClient, 1)}, 0,
                  false),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(PtOperationsTest, TableChangesOnlyWhileRunning) {
  Start(2);
  ASSERT_THAT(cluster_->SetClusterState(cellar::v1::CLUSTER_STOPPING), IsOk());
  EXPECT_THAT(cluster_->ChangePartitionTable(cellar::v1::PT_TWEAK, {}, 0, true),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(PtOperationsTest, StoppingRefusesNewWorkButLetsFinishComplete) {
  Start(2);
  Drain(storages_[0]);
  auto state = cluster_->SetClusterState(cellar::v1::CLUSTER_STOPPING);
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(*state, cellar::v1::CLUSTER_STOPPING);
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_STOPPING);
  bool published = false;
  for (const auto& e : Drain(storages_[0])) {
    published |= e.has_cluster_state() && e.cluster_state() == cellar::v1::CLUSTER_STOPPING;
  }
  EXPECT_TRUE(published);
  // Begin and AllocateOids check this.
  EXPECT_THAT(cluster_->CheckRunning(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(cluster_->AllocateOids(10), StatusIs(absl::StatusCode::kFailedPrecondition));
  // A Finish already asked for completes.
  EXPECT_THAT(cluster_->PrepareCommit(5000, Votes({{0, {storages_[0], storages_[1]}}}), {0}), IsOk());
  // STOPPING again is fine.
  EXPECT_THAT(cluster_->SetClusterState(cellar::v1::CLUSTER_STOPPING), IsOk());
}

TEST_F(PtOperationsTest, AStopCanBeResumedThroughRecovery) {
  Start(2);
  ASSERT_THAT(cluster_->SetClusterState(cellar::v1::CLUSTER_STOPPING), IsOk());
  Drain(storages_[0]);
  // The way back is a recovery with verification, as after a restart.
  auto running = cluster_->SetClusterState(cellar::v1::CLUSTER_RUNNING);
  ASSERT_THAT(running, IsOk());
  EXPECT_EQ(*running, cellar::v1::CLUSTER_RUNNING);
  std::vector<cellar::v1::ClusterState> seen;
  for (const auto& e : Drain(storages_[0])) {
    if (e.has_cluster_state()) seen.push_back(e.cluster_state());
  }
  EXPECT_THAT(seen, ::testing::ElementsAre(cellar::v1::CLUSTER_RECOVERING,
                                           cellar::v1::CLUSTER_VERIFYING,
                                           cellar::v1::CLUSTER_RUNNING));
  EXPECT_THAT(cluster_->CheckRunning(), IsOk());
}

TEST_F(PtOperationsTest, AStopIsNotResumedWithoutEnoughStorages) {
  Start(2);
  ASSERT_THAT(cluster_->SetClusterState(cellar::v1::CLUSTER_STOPPING), IsOk());
  for (uint32_t id : storages_) cluster_->WatchEnded(id, subs_[id]);
  auto running = cluster_->SetClusterState(cellar::v1::CLUSTER_RUNNING);
  EXPECT_THAT(running, StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(running.status().message(), HasSubstr("cluster stays STOPPING"));
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_STOPPING);
}

TEST_F(PtOperationsTest, IllegalTransitionsAreRefused) {
  Start(2);
  // Already RUNNING: asking for RUNNING is a no-op.
  EXPECT_THAT(cluster_->SetClusterState(cellar::v1::CLUSTER_RUNNING), IsOk());
  EXPECT_THAT(cluster_->SetClusterState(cellar::v1::CLUSTER_VERIFYING),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(cluster_->SetClusterState(cellar::v1::CLUSTER_RECOVERING),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(cluster_->SetClusterState(cellar::v1::CLUSTER_BACKINGUP),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(cluster_->SetClusterState(cellar::v1::CLUSTER_STATE_UNSPECIFIED),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(cluster_->SetClusterState(static_cast<cellar::v1::ClusterState>(99)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
}

TEST_F(PtOperationsTest, RunningFromRecoveringStartsTheCluster) {
  ClusterOptions options;
  options.cluster_name = "test";
  options.num_partitions = 4;
  cluster_ = std::make_unique<ClusterManager>(options, &clock_, &hub_);
  EXPECT_THAT(cluster_->SetClusterState(cellar::v1::CLUSTER_RUNNING),
              StatusIs(absl::StatusCode::kFailedPrecondition));  // no storage yet
  AddStorage();
  auto state = cluster_->SetClusterState(cellar::v1::CLUSTER_RUNNING);
  ASSERT_THAT(state, IsOk());
  EXPECT_EQ(*state, cellar::v1::CLUSTER_RUNNING);
}

}  // namespace
}  // namespace cellar::master
