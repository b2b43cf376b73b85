#include "services/master/pt_planner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/common/partition_table.h"
#include "services/common/status_matchers.h"

namespace cellar::master {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::PartitionTable;
using ::cellar::common::PtCell;
using ::cellar::common::StatusIs;
using ::cellar::v1::CELL_CORRUPTED;
using ::cellar::v1::CELL_DISCARDED;
using ::cellar::v1::CELL_FEEDING;
using ::cellar::v1::CELL_OUT_OF_DATE;
using ::cellar::v1::CELL_STATE_UNSPECIFIED;
using ::cellar::v1::CELL_UP_TO_DATE;
using ::cellar::v1::CellState;
using ::cellar::v1::NODE_DOWN;
using ::cellar::v1::NODE_PENDING;
using ::cellar::v1::NODE_RUNNING;
using ::cellar::v1::NODE_UNKNOWN;
using ::testing::AllOf;
using ::testing::ContainsRegex;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;

// ---- helpers -------------------------------------------------------------

std::vector<StorageNode> Running(uint32_t first, uint32_t last) {
  std::vector<StorageNode> nodes;
  for (uint32_t id = first; id <= last; ++id) nodes.push_back({id, NODE_RUNNING, ""});
  return nodes;
}

std::vector<uint32_t> Ids(uint32_t first, uint32_t last) {
  std::vector<uint32_t> ids;
  for (uint32_t id = first; id <= last; ++id) ids.push_back(id);
  return ids;
}

PartitionTable Balanced(uint32_t partitions, uint32_t replicas, std::vector<uint32_t> ids) {
  auto pt = PartitionTable::MakeBalanced(partitions, replicas, ids);
  EXPECT_TRUE(pt.ok()) << pt.status();
  return *pt;
}

// Cells per row, ptid 1.
PartitionTable Table(uint32_t replicas,
                     const std::vector<std::vector<std::pair<uint32_t, CellState>>>& rows) {
  PartitionTable pt(static_cast<uint32_t>(rows.size()), replicas);
  for (uint32_t p = 0; p < rows.size(); ++p) {
    for (const auto& [id, state] : rows[p]) pt.SetCell(p, id, state);
  }
  pt.set_ptid(1);
  return pt;
}

PartitionTable Apply(const PartitionTable& pt, const Plan& plan) {
  auto next = ApplyPlan(pt, plan);
  EXPECT_TRUE(next.ok()) << next.status();
  return next.ok() ? *next : pt;
}

bool IsAssigned(CellState s) { return s == CELL_UP_TO_DATE || s == CELL_OUT_OF_DATE; }

// UP_TO_DATE + OUT_OF_DATE cells per node.
std::map<uint32_t, int> Loads(const PartitionTable& pt, const std::vector<uint32_t>& nodes) {
  std::map<uint32_t, int> loads;
  for (uint32_t id : nodes) loads[id] = 0;
  for (uint32_t p = 0; p < pt.num_partitions(); ++p) {
    for (const PtCell& c : pt.Row(p)) {
      if (IsAssigned(c.state)) ++loads[c.node_id];
    }
  }
  return loads;
}

int Spread(const std::map<uint32_t, int>& loads) {
  int lo = 1 << 30, hi = -1;
  for (const auto& [id, l] : loads) {
    lo = std::min(lo, l);
    hi = std::max(hi, l);
  }
  return hi - lo;
}

std::vector<uint32_t> AssignedNodes(const PartitionTable& pt, uint32_t p) {
  std::vector<uint32_t> ids;
  for (const PtCell& c : pt.Row(p)) {
    if (IsAssigned(c.state)) ids.push_back(c.node_id);
  }
  return ids;
}

int Count(const PartitionTable& pt, CellState state) {
  int n = 0;
  for (uint32_t p = 0; p < pt.num_partitions(); ++p) {
    for (const PtCell& c : pt.Row(p)) n += c.state == state;
  }
  return n;
}

// Replication finished: every OUT_OF_DATE cell turns UP_TO_DATE.
PartitionTable CatchUp(const PartitionTable& pt) {
  ::cellar::v1::PartitionTableDelta delta;
  delta.set_ptid(pt.ptid() + 1);
  for (uint32_t p = 0; p < pt.num_partitions(); ++p) {
    for (const PtCell& c : pt.Row(p)) {
      if (c.state != CELL_OUT_OF_DATE) continue;
      auto* change = delta.add_changes();
      change->set_partition(p);
      change->set_node_id(c.node_id);
      change->set_state(CELL_UP_TO_DATE);
    }
  }
  PartitionTable out = pt;
  EXPECT_THAT(out.ApplyDelta(delta), IsOk());
  return out;
}

// Every partition that had a readable cell (on a running node) still has one.
void ExpectReadableKept(const PartitionTable& before, const PartitionTable& after,
                        const std::set<uint32_t>& running) {
  for (uint32_t p = 0; p < before.num_partitions(); ++p) {
    auto on_running = [&](const PartitionTable& pt) {
      for (uint32_t id : pt.ReadableNodes(p)) {
        if (running.count(id)) return true;
      }
      return false;
    };
    if (!before.ReadableNodes(p).empty()) {
      EXPECT_FALSE(after.ReadableNodes(p).empty()) << "partition " << p;
    }
    if (on_running(before)) {
      EXPECT_TRUE(on_running(after)) << "partition " << p;
    }
  }
}

size_t CountChanges(const Plan& plan, CellState state, CellState previous) {
  return std::count_if(plan.changes.begin(), plan.changes.end(), [&](const PlannedChange& c) {
    return c.state == state && c.previous == previous;
  });
}

std::string Zone(const std::string& label) { return label.substr(0, label.find('/')); }
std::string Host(const std::string& label) {
  const size_t second = label.find('/', label.find('/') + 1);
  return label.substr(0, second);
}

// A messy table: random subsets of nodes (skewed towards the low ids),
// random states, the first cell of every row readable. Deterministic:
// std::mt19937 is fully specified and only raw draws are used.
PartitionTable RandomTable(uint32_t partitions, uint32_t replicas, const std::vector<uint32_t>& ids,
                           std::mt19937* rng, bool corrupted = true) {
  PartitionTable pt(partitions, replicas);
  for (uint32_t p = 0; p < partitions; ++p) {
    std::vector<uint32_t> pool = ids;
    if ((*rng)() % 2 == 0 && pool.size() > 2) pool.resize((pool.size() + 1) / 2);
    for (size_t i = pool.size(); i > 1; --i) std::swap(pool[i - 1], pool[(*rng)() % i]);
    const size_t cells = 1 + (*rng)() % std::min<size_t>(replicas + 2, pool.size());
    for (size_t c = 0; c < cells; ++c) {
      CellState state = CELL_UP_TO_DATE;
      if (c > 0) {
        static const CellState kStates[] = {CELL_UP_TO_DATE, CELL_UP_TO_DATE, CELL_OUT_OF_DATE,
                                            CELL_FEEDING, CELL_CORRUPTED};
        state = kStates[(*rng)() % (corrupted ? 5 : 4)];
      }
      pt.SetCell(p, pool[c], state);
    }
  }
  pt.set_ptid(1 + (*rng)() % 100);
  return pt;
}

const PtPlanner kPlanner;

PlanOptions DryRun() {
  PlanOptions options;
  options.dry_run = true;
  return options;
}

// ---- tweak: balance ------------------------------------------------------

TEST(PtPlannerTest, BalancedTableIsLeftAlone) {
  const PartitionTable pt = Balanced(12, 1, {1, 2, 3});
  auto plan = kPlanner.Tweak(pt, Running(1, 3));
  ASSERT_THAT(plan, IsOk());
  EXPECT_TRUE(plan->empty());
  EXPECT_THAT(plan->changes, IsEmpty());
  EXPECT_THAT(plan->warnings, IsEmpty());
  EXPECT_EQ(plan->ToString(),
            "tweak: ptid 1, no changes\n"
            "S1: cells 8 -> 8\n"
            "S2: cells 8 -> 8\n"
            "S3: cells 8 -> 8\n");
}

TEST(PtPlannerTest, BalancesWithinOneForManySizes) {
  // P=12, R=1..2, 2..7 nodes, starting from a table over fewer nodes.
  for (uint32_t replicas = 1; replicas <= 2; ++replicas) {
    for (uint32_t n = 2; n <= 7; ++n) {
      for (uint32_t start = 1; start <= n; ++start) {
        SCOPED_TRACE(absl::StrCat("R=", replicas, " nodes=", n, " start=", start));
        const PartitionTable pt = Balanced(12, replicas, Ids(1, start));
        auto plan = kPlanner.Tweak(pt, Running(1, n));
        ASSERT_THAT(plan, IsOk());
        const PartitionTable after = Apply(pt, *plan);
        EXPECT_EQ(after.ptid(), pt.ptid() + 1);
        EXPECT_LE(Spread(Loads(after, Ids(1, n))), 1) << plan->ToString();
        for (uint32_t p = 0; p < 12; ++p) {
          EXPECT_EQ(AssignedNodes(after, p).size(), std::min(replicas + 1, n));
        }
        ExpectReadableKept(pt, after, {});
      }
    }
  }
}

TEST(PtPlannerTest, RandomTablesEndBalancedAndComplete) {
  std::mt19937 rng(20240601);
  int cases = 0;
  for (uint32_t partitions : {1u, 3u, 12u, 31u, 64u}) {
    for (uint32_t replicas = 0; replicas <= 2; ++replicas) {
      for (uint32_t n = 2; n <= 7; ++n) {
        for (int round = 0; round < 3; ++round, ++cases) {
          SCOPED_TRACE(
              absl::StrCat("P=", partitions, " R=", replicas, " nodes=", n, " round=", round));
          const PartitionTable pt = RandomTable(partitions, replicas, Ids(1, n), &rng);
          const std::vector<uint32_t> ids = Ids(1, n);
          const std::set<uint32_t> running(ids.begin(), ids.end());
          auto plan = kPlanner.Tweak(pt, Running(1, n));
          ASSERT_THAT(plan, IsOk());
          // Moves keep the old cell readable.
          for (const PlannedChange& c : plan->changes) {
            if (c.state == CELL_FEEDING) {
              EXPECT_EQ(c.previous, CELL_UP_TO_DATE);
            }
            if (c.previous == CELL_UP_TO_DATE) {
              EXPECT_NE(c.state, CELL_OUT_OF_DATE);
            }
          }
          PartitionTable after = Apply(pt, *plan);
          ExpectReadableKept(pt, after, running);
          EXPECT_EQ(Count(after, CELL_CORRUPTED), 0);
          // A node whose cell was CORRUPTED gets no new cell of that
          // partition in the same plan: with few nodes the partition stays
          // one short (with a warning), and balance may have to wait, until
          // the next tweak.
          size_t short_partitions = 0;
          for (const std::string& w : plan->warnings) {
            short_partitions += w.find("short of cells") != std::string::npos;
          }
          if (short_partitions == 0) {
            EXPECT_LE(Spread(Loads(after, Ids(1, n))), 1) << pt.ToGrid() << plan->ToString();
          } else {
            auto second = kPlanner.Tweak(after, Running(1, n));
            ASSERT_THAT(second, IsOk());
            EXPECT_GE(second->changes.size(), short_partitions);
            after = Apply(after, *second);
            EXPECT_LE(Spread(Loads(after, Ids(1, n))), 1);
          }
          for (uint32_t p = 0; p < partitions; ++p) {
            EXPECT_EQ(AssignedNodes(after, p).size(), std::min(replicas + 1, n))
                << pt.ToGrid() << plan->ToString();
          }
          // Another tweak has nothing left to do.
          auto again = kPlanner.Tweak(after, Running(1, n));
          ASSERT_THAT(again, IsOk());
          EXPECT_TRUE(again->empty()) << again->ToString();
          // Replication finishes, FEEDING cells go; the table stays balanced.
          const PartitionTable caught_up = CatchUp(after);
          const PartitionTable done = Apply(caught_up, kPlanner.FinishFeeding(caught_up));
          ExpectReadableKept(after, done, running);
          EXPECT_EQ(Count(done, CELL_FEEDING), 0) << done.ToGrid();
          EXPECT_LE(Spread(Loads(done, Ids(1, n))), 1);
          for (uint32_t p = 0; p < partitions; ++p) {
            EXPECT_EQ(done.ReadableNodes(p).size(), std::min(replicas + 1, n));
          }
        }
      }
    }
  }
  EXPECT_EQ(cases, 5 * 3 * 6 * 3);
}

TEST(PtPlannerTest, NeverDropsTheLastReadableCellWithDownNodes) {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    const uint32_t n = 3 + rng() % 5;
    const uint32_t replicas = rng() % 3;
    const PartitionTable pt = RandomTable(12, replicas, Ids(1, n), &rng);
    std::vector<StorageNode> nodes = Running(1, n);
    const std::vector<uint32_t> ids = Ids(1, n);
    std::set<uint32_t> running(ids.begin(), ids.end());
    const uint32_t down = 1 + rng() % n;
    nodes[down - 1].state = NODE_DOWN;
    running.erase(down);
    auto plan =
        round % 2 == 0 ? kPlanner.Tweak(pt, nodes) : kPlanner.SetReplicas(pt, nodes, rng() % 3);
    ASSERT_THAT(plan, IsOk());
    const PartitionTable after = Apply(pt, *plan);
    ExpectReadableKept(pt, after, running);
    // The down node's cells never move and it gets no new cell; an extra
    // cell of a partition may be discarded there.
    for (const PlannedChange& c : plan->changes) {
      if (c.node_id == down) {
        EXPECT_EQ(c.state, CELL_DISCARDED);
      }
    }
    // Every partition with a readable cell on a running node keeps one even
    // once FEEDING cells are gone.
    const PartitionTable done =
        Apply(CatchUp(after), *kPlanner.FinishFeeding(CatchUp(after), nodes));
    ExpectReadableKept(pt, done, running);
  }
}

TEST(PtPlannerTest, MovesFromTheMostLoadedToTheLeastLoaded) {
  // R=0, 12 partitions: S1 holds 6, S2 holds 2, S3 holds 4 -> 4 each.
  std::vector<std::vector<std::pair<uint32_t, CellState>>> rows;
  for (uint32_t p = 0; p < 12; ++p) {
    const uint32_t id = p < 6 ? 1 : (p < 8 ? 2 : 3);
    rows.push_back({{id, CELL_UP_TO_DATE}});
  }
  const PartitionTable pt = Table(0, rows);
  auto plan = kPlanner.Tweak(pt, Running(1, 3));
  ASSERT_THAT(plan, IsOk());
  ASSERT_EQ(plan->changes.size(), 4u) << plan->ToString();
  for (const PlannedChange& c : plan->changes) {
    if (c.node_id == 1) {
      EXPECT_EQ(c.state, CELL_FEEDING);
    } else {
      EXPECT_EQ(c.node_id, 2u);
      EXPECT_EQ(c.state, CELL_OUT_OF_DATE);
    }
  }
  EXPECT_THAT(
      Loads(Apply(pt, *plan), {1, 2, 3}),
      ElementsAre(std::pair<const uint32_t, int>(1, 4), std::pair<const uint32_t, int>(2, 4),
                  std::pair<const uint32_t, int>(3, 4)));
}

TEST(PtPlannerTest, RunningNodeWithoutCellsGetsItsShare) {
  const PartitionTable pt = Balanced(12, 1, {1, 2, 3});
  auto plan = kPlanner.Tweak(pt, Running(1, 4));
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(Loads(Apply(pt, *plan), {4})[4], 6);
}

TEST(PtPlannerTest, DownAndPendingNodesKeepTheirCellsAndGetNone) {
  const PartitionTable pt = Balanced(12, 1, {1, 2, 3, 4});
  std::vector<StorageNode> nodes = Running(1, 3);
  nodes.push_back({4, NODE_DOWN, ""});
  nodes.push_back({5, NODE_PENDING, ""});
  nodes.push_back({6, NODE_UNKNOWN, ""});
  auto plan = kPlanner.Tweak(pt, nodes);
  ASSERT_THAT(plan, IsOk());
  EXPECT_TRUE(plan->empty()) << plan->ToString();
}

TEST(PtPlannerTest, QuarantinedNodesKeepTheirCellsAndGetNone) {
  // A running node without cells would get its share (test above)...
  std::vector<StorageNode> nodes = Running(1, 4);
  nodes[3].quarantined = true;
  const PartitionTable pt = Balanced(12, 1, {1, 2, 3});
  auto plan = kPlanner.Tweak(pt, nodes);
  ASSERT_THAT(plan, IsOk());
  EXPECT_TRUE(plan->empty()) << plan->ToString();
  // ...and more replicas go to the other nodes only, the quarantined one
  // keeping the cells it has.
  const PartitionTable held = Balanced(12, 1, {1, 2, 3, 4});
  auto more = kPlanner.SetReplicas(held, nodes, 2);
  ASSERT_THAT(more, IsOk());
  const PartitionTable after = Apply(held, *more);
  EXPECT_EQ(Loads(after, {4})[4], Loads(held, {4})[4]);
  for (const PlannedChange& c : more->changes) {
    if (c.node_id == 4) ADD_FAILURE() << "the quarantined node changed: " << more->ToString();
  }
  // Add refuses a quarantined node.
  std::vector<StorageNode> pending = Running(1, 3);
  pending.push_back({4, NODE_PENDING, "", /*quarantined=*/true});
  EXPECT_THAT(kPlanner.Add(pt, pending, {4}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("quarantined")));
}

TEST(PtPlannerTest, TweakRevivesAFeedingCellInsteadOfCopying) {
  // Partition 0 lost its replacement cell: S1 is FEEDING, S2 UP_TO_DATE.
  const PartitionTable pt = Table(
      1, {{{1, CELL_FEEDING}, {2, CELL_UP_TO_DATE}}, {{3, CELL_UP_TO_DATE}, {2, CELL_UP_TO_DATE}}});
  auto plan = kPlanner.Tweak(pt, Running(1, 3));
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->changes, ElementsAre(PlannedChange{0, 1, CELL_UP_TO_DATE, CELL_FEEDING}));
  EXPECT_THAT(plan->ToString(), HasSubstr("partition 0: S1 FEEDING -> UP_TO_DATE\n"));
}

TEST(PtPlannerTest, CorruptedCellIsDiscardedAndReplacedElsewhere) {
  PartitionTable pt = Balanced(12, 1, {1, 2, 3});
  pt.SetCell(0, 1, CELL_CORRUPTED);  // partition 0 is on S1 and S2
  auto plan = kPlanner.Tweak(pt, Running(1, 3));
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(CountChanges(*plan, CELL_DISCARDED, CELL_CORRUPTED), 1u);
  const PartitionTable after = Apply(pt, *plan);
  EXPECT_EQ(after.CellStateOf(0, 1), CELL_STATE_UNSPECIFIED);
  EXPECT_EQ(AssignedNodes(after, 0).size(), 2u);
  EXPECT_LE(Spread(Loads(after, {1, 2, 3})), 1);
}

TEST(PtPlannerTest, PartitionWithoutReadableCellIsLeftAsIs) {
  PartitionTable pt = Balanced(6, 1, {1, 2, 3});
  pt.SetCell(2, 2, CELL_OUT_OF_DATE);
  pt.SetCell(2, 3, CELL_CORRUPTED);  // partition 2 is on S2 and S3
  auto plan = kPlanner.Tweak(pt, Running(1, 4));
  ASSERT_THAT(plan, IsOk());
  for (const PlannedChange& c : plan->changes) EXPECT_NE(c.partition, 2u);
  EXPECT_THAT(plan->warnings, ::testing::Contains("partition 2 has no readable cell: left as is"));
}

// ---- add -------------------------------------------------------------------

TEST(PtPlannerTest, AddMovesOnlyWhatTheNewNodeNeeds) {
  for (uint32_t replicas = 0; replicas <= 2; ++replicas) {
    for (uint32_t n = replicas + 2; n <= 8; ++n) {
      SCOPED_TRACE(absl::StrCat("R=", replicas, " nodes=", n));
      const PartitionTable pt = Balanced(12, replicas, Ids(1, n - 1));
      std::vector<StorageNode> nodes = Running(1, n - 1);
      nodes.push_back({n, NODE_PENDING, ""});
      auto plan = kPlanner.Add(pt, nodes, {n});
      ASSERT_THAT(plan, IsOk());
      EXPECT_EQ(plan->operation, absl::StrCat("add S", n));
      const size_t expected = 12 * (replicas + 1) / n;  // P*(R+1)/N, rounded down
      EXPECT_EQ(CountChanges(*plan, CELL_OUT_OF_DATE, CELL_STATE_UNSPECIFIED), expected);
      EXPECT_EQ(CountChanges(*plan, CELL_FEEDING, CELL_UP_TO_DATE), expected);
      EXPECT_EQ(plan->changes.size(), 2 * expected) << plan->ToString();
      for (const PlannedChange& c : plan->changes) {
        if (c.state == CELL_OUT_OF_DATE) {
          EXPECT_EQ(c.node_id, n);
        }
      }
      const PartitionTable after = Apply(pt, *plan);
      EXPECT_LE(Spread(Loads(after, Ids(1, n))), 1);
      EXPECT_EQ(Loads(after, {n})[n], static_cast<int>(expected));
    }
  }
}

TEST(PtPlannerTest, AddValidatesNodes) {
  const PartitionTable pt = Balanced(12, 1, {1, 2});
  std::vector<StorageNode> nodes = Running(1, 2);
  nodes.push_back({3, NODE_DOWN, ""});
  nodes.push_back({4, NODE_PENDING, ""});
  EXPECT_THAT(kPlanner.Add(pt, nodes, {9}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown storage node S9")));
  EXPECT_THAT(kPlanner.Add(pt, nodes, {}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(kPlanner.Add(pt, nodes, {3}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("S3 is DOWN")));
  // RUNNING nodes are accepted (retrying an add is harmless).
  auto plan = kPlanner.Add(pt, nodes, {2, 4, 4});
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->operation, "add S2 S4");
  EXPECT_EQ(Loads(Apply(pt, *plan), {4})[4], 8);
}

// ---- drop ------------------------------------------------------------------

TEST(PtPlannerTest, DropDiscardsTheDeadNodesCellsAndReplicatesThemElsewhere) {
  const PartitionTable pt = Balanced(12, 1, {1, 2, 3, 4});
  std::vector<StorageNode> nodes = Running(1, 3);
  nodes.push_back({4, NODE_DOWN, ""});
  auto plan = kPlanner.Drop(pt, nodes, 4);
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->operation, "drop S4");
  // S4 shares all its partitions with S3: the 6 replacements go to S1 and
  // S2, and 2 more cells must move from them to S3 for balance.
  EXPECT_EQ(CountChanges(*plan, CELL_DISCARDED, CELL_UP_TO_DATE), 6u);
  EXPECT_EQ(CountChanges(*plan, CELL_OUT_OF_DATE, CELL_STATE_UNSPECIFIED), 8u);
  EXPECT_EQ(CountChanges(*plan, CELL_FEEDING, CELL_UP_TO_DATE), 2u);
  EXPECT_EQ(plan->changes.size(), 16u) << plan->ToString();
  const PartitionTable after = Apply(pt, *plan);
  EXPECT_FALSE(after.NodeIds().contains(4));
  EXPECT_THAT(Loads(after, {1, 2, 3}), ElementsAre(std::pair<const uint32_t, int>(1, 8),
                                                   std::pair<const uint32_t, int>(2, 8),
                                                   std::pair<const uint32_t, int>(3, 8)));
  for (uint32_t p = 0; p < 12; ++p) EXPECT_EQ(AssignedNodes(after, p).size(), 2u);
  ExpectReadableKept(pt, after, {1, 2, 3});
  EXPECT_THAT(plan->ToString(), ContainsRegex("partition [0-9]+: S4 -> S[123] \\(S4 DISCARDED, "
                                              "S[123] OUT_OF_DATE\\)\n"));
  EXPECT_THAT(plan->ToString(), HasSubstr("S4: cells 6 -> 0\n"));
}

TEST(PtPlannerTest, DropRefusesToLoseTheLastReadableCell) {
  PartitionTable pt = Balanced(12, 1, {1, 2, 3});  // partition 7 is on S3 and S1
  pt.SetCell(7, 1, CELL_OUT_OF_DATE);
  std::vector<StorageNode> nodes = Running(1, 2);
  nodes.push_back({3, NODE_DOWN, ""});
  EXPECT_THAT(kPlanner.Drop(pt, nodes, 3),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("would drop the last readable cell of partition 7"),
                             ::testing::Not(HasSubstr("and of")))));
  pt.SetCell(4, 1, CELL_OUT_OF_DATE);  // partition 4 is on S3 and S1 too
  EXPECT_THAT(kPlanner.Drop(pt, nodes, 3),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("dropping S3 would drop the last readable cell of partition 4 "
                                 "(and of partitions 7)")));
  // A FEEDING cell elsewhere is readable: the drop may go ahead.
  pt.SetCell(7, 1, CELL_FEEDING);
  pt.SetCell(4, 1, CELL_UP_TO_DATE);
  auto plan = kPlanner.Drop(pt, nodes, 3);
  ASSERT_THAT(plan, IsOk());
  ExpectReadableKept(pt, Apply(pt, *plan), {1, 2});
}

TEST(PtPlannerTest, DropValidatesTheNode) {
  const PartitionTable pt = Balanced(12, 1, {1, 2, 3});
  EXPECT_THAT(kPlanner.Drop(pt, Running(1, 3), 3),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("S3 is RUNNING: stop it first or use tweak to move its data "
                                 "away")));
  EXPECT_THAT(kPlanner.Drop(pt, Running(1, 3), 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown storage node S8")));
  std::vector<StorageNode> all_down = Running(1, 3);
  for (StorageNode& n : all_down) n.state = NODE_DOWN;
  EXPECT_THAT(kPlanner.Drop(pt, all_down, 3), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                       HasSubstr("no RUNNING storage node")));
}

TEST(PtPlannerTest, DropOfANodeWithoutCellsOnlyRebalances) {
  const PartitionTable pt = Balanced(12, 1, {1, 2, 3});
  std::vector<StorageNode> nodes = Running(1, 3);
  nodes.push_back({4, NODE_PENDING, ""});
  auto plan = kPlanner.Drop(pt, nodes, 4);
  ASSERT_THAT(plan, IsOk());
  EXPECT_TRUE(plan->empty());
}

// ---- set replicas --------------------------------------------------------

TEST(PtPlannerTest, SetReplicasUpAddsOutOfDateCells) {
  const PartitionTable pt = Balanced(12, 0, {1, 2, 3, 4});
  auto plan = kPlanner.SetReplicas(pt, Running(1, 4), 2);
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->num_replicas, 2u);
  EXPECT_EQ(plan->num_replicas_before, 0u);
  EXPECT_EQ(CountChanges(*plan, CELL_OUT_OF_DATE, CELL_STATE_UNSPECIFIED), 24u);
  EXPECT_EQ(plan->changes.size(), 24u) << plan->ToString();
  const PartitionTable after = Apply(pt, *plan);
  EXPECT_EQ(after.num_replicas(), 2u);
  EXPECT_EQ(after.ptid(), 2u);
  for (uint32_t p = 0; p < 12; ++p) EXPECT_EQ(AssignedNodes(after, p).size(), 3u);
  EXPECT_EQ(Spread(Loads(after, Ids(1, 4))), 0);
  EXPECT_THAT(plan->ToString(), HasSubstr(", replicas 0 -> 2\n"));
}

TEST(PtPlannerTest, SetReplicasDownRemovesCellsAndStaysBalanced) {
  for (uint32_t n = 3; n <= 6; ++n) {
    SCOPED_TRACE(absl::StrCat("nodes=", n));
    const PartitionTable pt = Balanced(12, 2, Ids(1, n));
    auto plan = kPlanner.SetReplicas(pt, Running(1, n), 0);
    ASSERT_THAT(plan, IsOk());
    const PartitionTable after = Apply(pt, *plan);
    EXPECT_EQ(after.num_replicas(), 0u);
    for (uint32_t p = 0; p < 12; ++p) {
      EXPECT_EQ(AssignedNodes(after, p).size(), 1u);
      EXPECT_FALSE(after.ReadableNodes(p).empty());
    }
    EXPECT_LE(Spread(Loads(after, Ids(1, n))), 1) << plan->ToString();
    EXPECT_EQ(CountChanges(*plan, CELL_DISCARDED, CELL_UP_TO_DATE), 24u) << plan->ToString();
  }
}

TEST(PtPlannerTest, SetReplicasDownPrefersNonReadableCells) {
  PartitionTable pt = Balanced(3, 2, {1, 2, 3});  // every partition on every node
  pt.SetCell(0, 2, CELL_OUT_OF_DATE);
  auto plan = kPlanner.SetReplicas(pt, Running(1, 3), 1);
  ASSERT_THAT(plan, IsOk());
  const PartitionTable after = Apply(pt, *plan);
  EXPECT_EQ(after.CellStateOf(0, 2), CELL_STATE_UNSPECIFIED) << plan->ToString();
  EXPECT_EQ(Spread(Loads(after, Ids(1, 3))), 0);
}

TEST(PtPlannerTest, SetReplicasDownKeepsTheLastReadableCell) {
  const PartitionTable pt =
      Table(2, {{{1, CELL_UP_TO_DATE}, {2, CELL_OUT_OF_DATE}, {3, CELL_OUT_OF_DATE}},
                {{2, CELL_UP_TO_DATE}, {3, CELL_UP_TO_DATE}, {1, CELL_UP_TO_DATE}},
                {{3, CELL_UP_TO_DATE}, {1, CELL_UP_TO_DATE}, {2, CELL_UP_TO_DATE}}});
  auto plan = kPlanner.SetReplicas(pt, Running(1, 3), 0);
  ASSERT_THAT(plan, IsOk());
  const PartitionTable after = Apply(pt, *plan);
  EXPECT_EQ(AssignedNodes(after, 0), std::vector<uint32_t>{1}) << plan->ToString();
  EXPECT_EQ(after.CellStateOf(0, 1), CELL_UP_TO_DATE);
  EXPECT_EQ(Spread(Loads(after, Ids(1, 3))), 0);
}

TEST(PtPlannerTest, SetReplicasBeyondTheNodesWarns) {
  const PartitionTable pt = Balanced(6, 1, {1, 2, 3});
  auto plan = kPlanner.SetReplicas(pt, Running(1, 3), 4);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->warnings,
              ElementsAre("only 3 storage nodes can hold cells: partitions get 3 cells instead "
                          "of 5"));
  const PartitionTable after = Apply(pt, *plan);
  for (uint32_t p = 0; p < 6; ++p) EXPECT_EQ(AssignedNodes(after, p).size(), 3u);
  EXPECT_THAT(kPlanner.SetReplicas(pt, Running(1, 3), PtPlanner::kMaxReplicas + 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 64")));
}

TEST(PtPlannerTest, SetReplicasToTheSameValueIsATweak) {
  const PartitionTable pt = Balanced(12, 1, {1, 2, 3});
  auto plan = kPlanner.SetReplicas(pt, Running(1, 3), 1);
  ASSERT_THAT(plan, IsOk());
  EXPECT_TRUE(plan->empty());
}

// ---- failure domains -----------------------------------------------------

std::vector<StorageNode> Labelled(const std::vector<std::string>& labels) {
  std::vector<StorageNode> nodes;
  for (size_t i = 0; i < labels.size(); ++i) {
    nodes.push_back({static_cast<uint32_t>(i + 1), NODE_RUNNING, labels[i]});
  }
  return nodes;
}

const std::vector<std::string> kThreeZones = {"z1/h1", "z1/h2", "z2/h1", "z2/h2", "z3/h1", "z3/h2"};

void ExpectDistinct(const PartitionTable& pt, const std::vector<std::string>& labels,
                    std::string (*level)(const std::string&), size_t want) {
  for (uint32_t p = 0; p < pt.num_partitions(); ++p) {
    std::set<std::string> domains;
    for (uint32_t id : AssignedNodes(pt, p)) domains.insert(level(labels[id - 1]));
    EXPECT_EQ(domains.size(), want) << "partition " << p << "\n" << pt.ToGrid();
  }
}

TEST(PtPlannerTest, ReplicasSpreadOverThreeZones) {
  // MakeBalanced puts S1, S2, S3 (two of them in z1) on partition 0.
  const PartitionTable pt = Balanced(12, 2, Ids(1, 6));
  auto plan = kPlanner.Tweak(pt, Labelled(kThreeZones));
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->warnings, IsEmpty());
  const PartitionTable after = Apply(pt, *plan);
  ExpectDistinct(after, kThreeZones, &Zone, 3);
  EXPECT_EQ(Spread(Loads(after, Ids(1, 6))), 0);
  ExpectReadableKept(pt, after, {1, 2, 3, 4, 5, 6});
  // Once replication is done, the readable cells are spread too.
  const PartitionTable caught_up = CatchUp(after);
  const PartitionTable done = Apply(caught_up, kPlanner.FinishFeeding(caught_up));
  ExpectDistinct(done, kThreeZones, &Zone, 3);
  EXPECT_EQ(Count(done, CELL_FEEDING), 0);
  auto again = kPlanner.Tweak(done, Labelled(kThreeZones));
  ASSERT_THAT(again, IsOk());
  EXPECT_TRUE(again->empty()) << again->ToString();
}

TEST(PtPlannerTest, ReplicasSpreadOverThreeZonesFromRandomTables) {
  std::mt19937 rng(99);
  for (int round = 0; round < 40; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    const PartitionTable pt = RandomTable(12, 2, Ids(1, 6), &rng, /*corrupted=*/false);
    auto plan = kPlanner.Tweak(pt, Labelled(kThreeZones));
    ASSERT_THAT(plan, IsOk());
    EXPECT_THAT(plan->warnings, IsEmpty()) << plan->ToString();
    const PartitionTable after = Apply(pt, *plan);
    ExpectDistinct(after, kThreeZones, &Zone, 3);
    EXPECT_LE(Spread(Loads(after, Ids(1, 6))), 1);
  }
}

TEST(PtPlannerTest, AddingNodesKeepsZonesApart) {
  // Start on S1, S3, S5 (one per zone) and add the second host of each zone.
  const std::vector<std::string> labels = kThreeZones;
  const PartitionTable pt = Balanced(12, 2, {1, 3, 5});
  std::vector<StorageNode> nodes = Labelled(labels);
  for (uint32_t id : {2, 4, 6}) nodes[id - 1].state = NODE_PENDING;
  auto plan = kPlanner.Add(pt, nodes, {2, 4, 6});
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->warnings, IsEmpty());
  const PartitionTable after = Apply(pt, *plan);
  ExpectDistinct(after, labels, &Zone, 3);
  EXPECT_EQ(Spread(Loads(after, Ids(1, 6))), 0);
  // Half of every node's cells move, and nothing more.
  EXPECT_EQ(CountChanges(*plan, CELL_OUT_OF_DATE, CELL_STATE_UNSPECIFIED), 18u);
  EXPECT_EQ(plan->changes.size(), 36u);
}

TEST(PtPlannerTest, WarnsWhenZonesCannotBeKeptApart) {
  const std::vector<std::string> labels = {"z1/h1", "z1/h2", "z2/h1", "z2/h2"};
  const PartitionTable pt = Balanced(12, 2, Ids(1, 4));
  auto plan = kPlanner.Tweak(pt, Labelled(labels));
  ASSERT_THAT(plan, IsOk());
  ASSERT_EQ(plan->warnings.size(), 12u);
  for (size_t i = 0; i < plan->warnings.size(); ++i) {
    EXPECT_THAT(plan->warnings[i],
                MatchesRegex(absl::StrCat("partition ", i,
                                          ": replicas S[1-4] and S[1-4] share zone z[12]")));
  }
  // Best effort: the two replicas in one zone are on different hosts.
  const PartitionTable after = Apply(pt, *plan);
  ExpectDistinct(after, labels, &Host, 3);
  ExpectDistinct(after, labels, &Zone, 2);
  EXPECT_THAT(plan->ToString(), HasSubstr("warning: partition 3: replicas S"));
}

TEST(PtPlannerTest, SpreadsOverHostsThenDevicesInOneZone) {
  const std::vector<std::string> labels = {"z1/h1/d1", "z1/h1/d2", "z1/h2/d1",
                                           "z1/h2/d2", "z1/h3/d1", "z1/h3/d2"};
  const PartitionTable pt = Balanced(12, 2, Ids(1, 6));
  auto plan = kPlanner.Tweak(pt, Labelled(labels));
  ASSERT_THAT(plan, IsOk());
  const PartitionTable after = Apply(pt, *plan);
  ExpectDistinct(after, labels, &Host, 3);
  ASSERT_EQ(plan->warnings.size(), 12u);
  for (const std::string& w : plan->warnings) {
    EXPECT_THAT(w, HasSubstr("share zone z1"));
    EXPECT_THAT(w, ::testing::Not(HasSubstr("share host")));
  }
  // Devices: two nodes on one device are kept apart too.
  const std::vector<std::string> devices = {"z1/h1/d1", "z1/h1/d1", "z1/h1/d2", "z1/h1/d2"};
  const PartitionTable small = Balanced(8, 1, Ids(1, 4));  // rows {1,2}, {3,4}, ...
  auto by_device = kPlanner.Tweak(small, Labelled(devices));
  ASSERT_THAT(by_device, IsOk());
  const PartitionTable spread = Apply(small, *by_device);
  for (uint32_t p = 0; p < 8; ++p) {
    std::set<std::string> seen;
    for (uint32_t id : AssignedNodes(spread, p)) seen.insert(devices[id - 1]);
    EXPECT_EQ(seen.size(), 2u) << spread.ToGrid();
  }
  for (const std::string& w : by_device->warnings) {
    EXPECT_THAT(w, MatchesRegex("partition [0-9]: replicas S[1-4] and S[1-4] share host z1/h1"));
  }
}

TEST(PtPlannerTest, UnlabelledNodesNeverWarn) {
  const PartitionTable pt = Balanced(12, 2, Ids(1, 4));
  auto plan = kPlanner.Tweak(pt, Running(1, 4));
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->warnings, IsEmpty());
}

TEST(PtPlannerTest, WarningNamesTheSharedZone) {
  // One partition, R=1, two nodes in z1: nothing better is possible.
  const PartitionTable pt = Table(1, {{{1, CELL_UP_TO_DATE}, {4, CELL_UP_TO_DATE}}});
  std::vector<StorageNode> nodes = {{1, NODE_RUNNING, "z1/a"}, {4, NODE_RUNNING, "z1/b"}};
  auto plan = kPlanner.Tweak(pt, nodes);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->warnings, ElementsAre("partition 0: replicas S1 and S4 share zone z1"));
}

TEST(PtPlannerTest, SpreadsZonesForManyLayouts) {
  struct Layout {
    std::vector<std::string> labels;
    uint32_t replicas;
  };
  const std::vector<Layout> layouts = {
      {kThreeZones, 2},
      {kThreeZones, 1},
      {{"z1", "z2", "z3", "z4", "z1", "z2", "z3", "z4"}, 3},
      {{"z1", "z2", "z3", "z1", "z2", "z3", "z1", "z2", "z3"}, 2},
      {{"z1/a", "z1/b", "z1/c", "z2/a", "z2/b", "z2/c", "z3/a", "z3/b", "z3/c"}, 2},
      {{"z1/a", "z1/b", "z2/a", "z2/b", "z3/a", "z3/b", "z4/a", "z4/b"}, 2},
  };
  std::mt19937 rng(1234);
  for (const Layout& layout : layouts) {
    const uint32_t n = static_cast<uint32_t>(layout.labels.size());
    for (uint32_t partitions : {12u, 24u, 60u}) {
      for (int round = 0; round < 30; ++round) {
        SCOPED_TRACE(absl::StrCat(layout.labels[0], " nodes=", n, " R=", layout.replicas,
                                  " P=", partitions, " round=", round));
        const PartitionTable pt =
            RandomTable(partitions, layout.replicas, Ids(1, n), &rng, /*corrupted=*/false);
        auto plan = kPlanner.Tweak(pt, Labelled(layout.labels));
        ASSERT_THAT(plan, IsOk());
        EXPECT_THAT(plan->warnings, IsEmpty());
        const PartitionTable after = Apply(pt, *plan);
        EXPECT_LE(Spread(Loads(after, Ids(1, n))), 1);
        ExpectDistinct(after, layout.labels, &Zone, layout.replicas + 1);
      }
    }
  }
}

TEST(PtPlannerTest, LargeClusterAddMovesOnlyTheNewShare) {
  // 1000 partitions, R=2, 100 nodes in 10 zones, then 10 more nodes.
  std::vector<std::string> labels;
  for (int zone = 0; zone < 10; ++zone) {
    for (int host = 0; host < 11; ++host) labels.push_back(absl::StrCat("z", zone, "/h", host));
  }
  std::vector<StorageNode> nodes = Labelled(labels);
  std::vector<uint32_t> first, added;
  for (StorageNode& node : nodes) {
    if (node.node_id % 11 == 0) {
      node.state = NODE_PENDING;
      added.push_back(node.node_id);
    } else {
      first.push_back(node.node_id);
    }
  }
  const PartitionTable initial = Balanced(1000, 2, first);
  auto spread = kPlanner.Tweak(initial, nodes);  // fixes MakeBalanced's zone clashes
  ASSERT_THAT(spread, IsOk());
  EXPECT_THAT(spread->warnings, IsEmpty());
  PartitionTable pt = CatchUp(Apply(initial, *spread));
  pt = Apply(pt, kPlanner.FinishFeeding(pt));

  auto plan = kPlanner.Add(pt, nodes, added);
  ASSERT_THAT(plan, IsOk());
  EXPECT_THAT(plan->warnings, IsEmpty());
  // 3000 cells over 110 nodes: each new node gets 27, and that is all
  // that moves.
  EXPECT_EQ(CountChanges(*plan, CELL_OUT_OF_DATE, CELL_STATE_UNSPECIFIED), 270u);
  EXPECT_EQ(CountChanges(*plan, CELL_FEEDING, CELL_UP_TO_DATE), 270u);
  EXPECT_EQ(plan->changes.size(), 540u);
  const PartitionTable after = Apply(pt, *plan);
  std::vector<uint32_t> all = first;
  all.insert(all.end(), added.begin(), added.end());
  EXPECT_LE(Spread(Loads(after, all)), 1);
  ExpectDistinct(after, labels, &Zone, 3);
}

// ---- finish feeding ------------------------------------------------------

TEST(PtPlannerTest, FinishFeedingWaitsForTheReplacements) {
  const PartitionTable pt = Balanced(12, 1, {1, 2, 3});
  std::vector<StorageNode> nodes = Running(1, 3);
  nodes.push_back({4, NODE_PENDING, ""});
  auto plan = kPlanner.Add(pt, nodes, {4});
  ASSERT_THAT(plan, IsOk());
  const PartitionTable moving = Apply(pt, *plan);
  EXPECT_EQ(Count(moving, CELL_FEEDING), 6);
  // Replacements still OUT_OF_DATE: nothing to finish.
  EXPECT_TRUE(kPlanner.FinishFeeding(moving).empty());

  const PartitionTable caught_up = CatchUp(moving);
  const Plan finish = kPlanner.FinishFeeding(caught_up);
  EXPECT_EQ(finish.operation, "finish feeding");
  EXPECT_EQ(finish.changes.size(), 6u);
  EXPECT_EQ(CountChanges(finish, CELL_DISCARDED, CELL_FEEDING), 6u);
  const PartitionTable done = Apply(caught_up, finish);
  EXPECT_EQ(Count(done, CELL_FEEDING), 0);
  EXPECT_EQ(Spread(Loads(done, Ids(1, 4))), 0);
  for (uint32_t p = 0; p < 12; ++p) EXPECT_EQ(done.ReadableNodes(p).size(), 2u);
  EXPECT_THAT(finish.ToString(), ContainsRegex("partition [0-9]+: S[123] FEEDING -> DISCARDED\n"));
}

TEST(PtPlannerTest, FinishFeedingCountsOnlyRunningNodes) {
  // Partition 0: S1 FEEDING, S2 UP_TO_DATE, S3 UP_TO_DATE (R=1).
  const PartitionTable pt =
      Table(1, {{{1, CELL_FEEDING}, {2, CELL_UP_TO_DATE}, {3, CELL_UP_TO_DATE}}});
  std::vector<StorageNode> nodes = Running(1, 3);
  auto all_up = kPlanner.FinishFeeding(pt, nodes);
  ASSERT_THAT(all_up, IsOk());
  EXPECT_THAT(all_up->changes, ElementsAre(PlannedChange{0, 1, CELL_DISCARDED, CELL_FEEDING}));
  nodes[2].state = NODE_DOWN;
  auto one_down = kPlanner.FinishFeeding(pt, nodes);
  ASSERT_THAT(one_down, IsOk());
  EXPECT_TRUE(one_down->empty());
  EXPECT_TRUE(kPlanner.FinishFeeding(PartitionTable()).empty());
}

// ---- canary storages ------------------------------------------------------

StorageNode Canary(uint32_t id, ::cellar::v1::NodeState state = NODE_RUNNING) {
  StorageNode node{id, state, ""};
  node.canary = true;
  return node;
}

// Per partition: assigned cells on stable nodes (ids < first_canary) and
// on canary nodes, and whether a stable cell is readable.
struct GroupCells {
  size_t stable = 0, canary = 0;
  bool stable_readable = false, canary_readable = false;
};
// Loads of the nodes `ids` only.
std::map<uint32_t, int> LoadsOf(const PartitionTable& pt, const std::vector<uint32_t>& ids) {
  std::map<uint32_t, int> all = Loads(pt, ids), out;
  for (uint32_t id : ids) out[id] = all[id];
  return out;
}

GroupCells CellsOf(const PartitionTable& pt, uint32_t p, uint32_t first_canary) {
  GroupCells out;
  for (const PtCell& c : pt.Row(p)) {
    const bool canary = c.node_id >= first_canary;
    if (IsAssigned(c.state)) ++(canary ? out.canary : out.stable);
    if (common::IsReadable(c.state)) (canary ? out.canary_readable : out.stable_readable) = true;
  }
  return out;
}

TEST(PtPlannerTest, ACanaryJoiningGetsOnlyExtraCells) {
  const PartitionTable pt = Balanced(12, 1, {1, 2, 3});
  std::vector<StorageNode> nodes = Running(1, 3);
  nodes.push_back(Canary(4, NODE_PENDING));
  nodes.push_back(Canary(5, NODE_PENDING));
  auto plan = kPlanner.Add(pt, nodes, {4, 5});
  ASSERT_THAT(plan, IsOk());
  // Nothing of the stable layout changes: every change is a new cell on a
  // canary, one per partition, spread evenly.
  for (const PlannedChange& c : plan->changes) {
    EXPECT_GE(c.node_id, 4u) << "a stable cell changed: " << plan->ToString();
    EXPECT_EQ(c.state, CELL_OUT_OF_DATE);
    EXPECT_EQ(c.previous, CELL_STATE_UNSPECIFIED);
  }
  EXPECT_EQ(plan->changes.size(), 12u) << plan->ToString();
  const PartitionTable after = Apply(pt, *plan);
  EXPECT_THAT(LoadsOf(after, {4, 5}), ElementsAre(std::pair<const uint32_t, int>(4, 6),
                                                  std::pair<const uint32_t, int>(5, 6)));
  for (uint32_t p = 0; p < 12; ++p) {
    const GroupCells cells = CellsOf(after, p, 4);
    EXPECT_EQ(cells.stable, 2u) << "partition " << p;
    EXPECT_EQ(cells.canary, 1u) << "partition " << p;
    // The stable replicas stay readable: they keep checking conflicts.
    EXPECT_EQ(after.ReadableNodes(p).size(), 2u) << "partition " << p;
  }
  // Caught up: nothing to finish, nothing to tweak.
  nodes[3].state = nodes[4].state = NODE_RUNNING;
  const PartitionTable caught_up = CatchUp(after);
  auto finish = kPlanner.FinishFeeding(caught_up, nodes);
  ASSERT_THAT(finish, IsOk());
  EXPECT_TRUE(finish->empty()) << finish->ToString();
  auto tweak = kPlanner.Tweak(caught_up, nodes);
  ASSERT_THAT(tweak, IsOk());
  EXPECT_TRUE(tweak->empty()) << tweak->ToString();
}

TEST(PtPlannerTest, CanaryCellsNeverCountAsReplicas) {
  // S1..S3 stable with R = 1, C4 holding one extra cell of every partition.
  PartitionTable pt = Balanced(6, 1, {1, 2, 3});
  for (uint32_t p = 0; p < 6; ++p) pt.SetCell(p, 4, CELL_UP_TO_DATE);
  std::vector<StorageNode> nodes = Running(1, 3);
  nodes.push_back(Canary(4));
  auto tweak = kPlanner.Tweak(pt, nodes);
  ASSERT_THAT(tweak, IsOk());
  EXPECT_TRUE(tweak->empty()) << tweak->ToString();
  // More replicas: on stable nodes only; fewer: the canary cells stay and
  // a stable one remains readable everywhere.
  for (uint32_t replicas : {2u, 0u}) {
    auto plan = kPlanner.SetReplicas(pt, nodes, replicas);
    ASSERT_THAT(plan, IsOk());
    const PartitionTable after = Apply(pt, *plan);
    for (uint32_t p = 0; p < 6; ++p) {
      const GroupCells cells = CellsOf(after, p, 4);
      EXPECT_EQ(cells.stable, replicas + 1) << "partition " << p << "\n" << plan->ToString();
      EXPECT_EQ(cells.canary, 1u) << "partition " << p;
      EXPECT_TRUE(cells.stable_readable) << "partition " << p;
    }
  }
  // A stable FEEDING cell goes once R+1 *stable* cells are UP_TO_DATE: the
  // canary's does not count.
  const PartitionTable moving = Table(1, {{{1, CELL_FEEDING},
                                           {2, CELL_UP_TO_DATE},
                                           {3, CELL_OUT_OF_DATE},
                                           {4, CELL_UP_TO_DATE}}});
  auto finish = kPlanner.FinishFeeding(moving, nodes);
  ASSERT_THAT(finish, IsOk());
  EXPECT_TRUE(finish->empty()) << finish->ToString();
}

TEST(PtPlannerTest, DroppingTheCanaryLosesNothing) {
  PartitionTable pt = Balanced(12, 1, {1, 2, 3});
  for (uint32_t p = 0; p < 12; ++p) pt.SetCell(p, p % 2 == 0 ? 4 : 5, CELL_UP_TO_DATE);
  // The operator disables the canary: its storages go down, then are dropped.
  std::vector<StorageNode> nodes = Running(1, 3);
  nodes.push_back(Canary(4, NODE_DOWN));
  nodes.push_back(Canary(5, NODE_DOWN));
  for (uint32_t id : {4u, 5u}) {
    auto plan = kPlanner.Drop(pt, nodes, id);
    ASSERT_THAT(plan, IsOk());
    EXPECT_EQ(plan->changes.size(), 6u) << plan->ToString();
    for (const PlannedChange& c : plan->changes) {
      EXPECT_EQ(c.node_id, id) << plan->ToString();
      EXPECT_EQ(c.state, CELL_DISCARDED);
    }
    pt = Apply(pt, *plan);
    nodes.erase(std::find_if(nodes.begin(), nodes.end(),
                             [id](const StorageNode& n) { return n.node_id == id; }));
  }
  EXPECT_THAT(LoadsOf(pt, {4, 5}), ElementsAre(std::pair<const uint32_t, int>(4, 0),
                                               std::pair<const uint32_t, int>(5, 0)));
  for (uint32_t p = 0; p < 12; ++p) EXPECT_EQ(pt.ReadableNodes(p).size(), 2u) << p;
}

TEST(PtPlannerTest, DropRefusesToLeaveOnlyCanaryCellsReadable) {
  // R = 0: S1 holds the even partitions, S2 the odd ones, C3 all of them.
  PartitionTable pt = Balanced(4, 0, {1, 2});
  for (uint32_t p = 0; p < 4; ++p) pt.SetCell(p, 3, CELL_UP_TO_DATE);
  std::vector<StorageNode> nodes = Running(1, 2);
  nodes.push_back(Canary(3));
  nodes[0].state = NODE_DOWN;  // S1 dies
  EXPECT_THAT(kPlanner.Drop(pt, nodes, 1),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("dropping S1 would leave only canary cells readable in "
                                 "partition 0 (and in partitions 2): tweak first")));
  // The master marks the dead node's cells OUT_OF_DATE (the canary's are
  // readable): still refused, and tweak copies them to S2 from the canary.
  pt.SetCell(0, 1, CELL_OUT_OF_DATE);
  pt.SetCell(2, 1, CELL_OUT_OF_DATE);
  EXPECT_THAT(kPlanner.Drop(pt, nodes, 1),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("only canary cells")));
  auto tweak = kPlanner.Tweak(pt, nodes);
  ASSERT_THAT(tweak, IsOk());
  EXPECT_THAT(tweak->changes,
              ElementsAre(PlannedChange{0, 2, CELL_OUT_OF_DATE, CELL_STATE_UNSPECIFIED},
                          PlannedChange{2, 2, CELL_OUT_OF_DATE, CELL_STATE_UNSPECIFIED}))
      << tweak->ToString();
  const PartitionTable rescued = CatchUp(Apply(pt, *tweak));
  auto drop = kPlanner.Drop(rescued, nodes, 1);
  ASSERT_THAT(drop, IsOk());
  const PartitionTable after = Apply(rescued, *drop);
  for (uint32_t p = 0; p < 4; ++p) {
    EXPECT_TRUE(CellsOf(after, p, 3).stable_readable) << "partition " << p;
  }
  // The canary's own cells: the usual "last readable cell" refusal.
  PartitionTable alone = pt;
  alone.SetCell(0, 3, CELL_UP_TO_DATE);
  nodes[2].state = NODE_DOWN;
  EXPECT_THAT(kPlanner.Drop(alone, nodes, 3),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("would drop the last readable cell of partition 0")));
}

TEST(PtPlannerTest, EveryPartitionKeepsItsReplicasOnStableNodes) {
  // Random tables over stable S1..S5 and canaries S6, S7: after a tweak,
  // catch-up and finish, every partition has R+1 stable cells and at most
  // one canary cell, and a stable cell is readable wherever data was.
  std::mt19937 rng(14);
  for (int round = 0; round < 40; ++round) {
    const PartitionTable pt = RandomTable(16, 1 + round % 2, Ids(1, 7), &rng);
    std::vector<StorageNode> nodes = Running(1, 5);
    nodes.push_back(Canary(6));
    nodes.push_back(Canary(7));
    auto plan = kPlanner.Tweak(pt, nodes);
    ASSERT_THAT(plan, IsOk());
    PartitionTable after = CatchUp(Apply(pt, *plan));
    auto finish = kPlanner.FinishFeeding(after, nodes);
    ASSERT_THAT(finish, IsOk());
    after = Apply(after, *finish);
    for (uint32_t p = 0; p < 16; ++p) {
      if (pt.ReadableNodes(p).empty()) continue;
      const GroupCells cells = CellsOf(after, p, 6);
      EXPECT_EQ(cells.stable, pt.num_replicas() + 1) << "round " << round << " partition " << p;
      EXPECT_TRUE(cells.stable_readable) << "round " << round << " partition " << p;
      EXPECT_LE(cells.canary, 1u) << "round " << round << " partition " << p;
    }
    EXPECT_LE(Spread(LoadsOf(after, {6, 7})), 1) << "round " << round;
  }
}

// ---- output ----------------------------------------------------------------

TEST(PtPlannerTest, DryRunString) {
  // P=4, R=0: S1 has partitions 0 and 2, S2 has 1 and 3; S3 joins.
  const PartitionTable pt = Balanced(4, 0, {1, 2});
  std::vector<StorageNode> nodes = Running(1, 2);
  nodes.push_back({3, NODE_PENDING, ""});
  auto plan = kPlanner.Add(pt, nodes, {3}, DryRun());
  ASSERT_THAT(plan, IsOk());
  EXPECT_TRUE(plan->dry_run);
  EXPECT_EQ(plan->ToString(),
            "add S3 (dry run): ptid 1 -> 2, 1 move, 0 new cells, 0 removed, 0 other changes\n"
            "partition 0: S1 -> S3 (S1 FEEDING, S3 OUT_OF_DATE)\n"
            "S1: cells 2 -> 1, 1 feeding\n"
            "S2: cells 2 -> 2\n"
            "S3: cells 0 -> 1\n");
  ASSERT_EQ(plan->nodes.size(), 3u);
  EXPECT_EQ(plan->nodes[0].cells_before, 2u);
  EXPECT_EQ(plan->nodes[0].cells_after, 1u);
  EXPECT_EQ(plan->nodes[0].feeding_after, 1u);
  EXPECT_EQ(plan->nodes[2].cells_after, 1u);
}

TEST(PtPlannerTest, DryRunStringForNewDiscardedAndFeedingCells) {
  // Partition 0: S2's cell is CORRUPTED. Partition 1 has one cell too many;
  // S3's (OUT_OF_DATE) is the one kept, as it is in another zone.
  const PartitionTable pt =
      Table(1, {{{1, CELL_UP_TO_DATE}, {2, CELL_CORRUPTED}},
                {{1, CELL_UP_TO_DATE}, {2, CELL_UP_TO_DATE}, {3, CELL_OUT_OF_DATE}}});
  std::vector<StorageNode> nodes = {
      {1, NODE_RUNNING, "z1"}, {2, NODE_RUNNING, "z1"}, {3, NODE_RUNNING, "z2"}};
  auto plan = kPlanner.Tweak(pt, nodes, DryRun());
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->ToString(),
            "tweak (dry run): ptid 1 -> 2, 0 moves, 1 new cell, 0 removed, 2 other changes\n"
            "partition 0: new S3 (OUT_OF_DATE)\n"
            "partition 0: S2 CORRUPTED -> DISCARDED\n"
            "partition 1: S1 UP_TO_DATE -> FEEDING\n"
            "S1: cells 2 -> 1, 1 feeding\n"
            "S2: cells 1 -> 1\n"
            "S3: cells 1 -> 2\n");
}

TEST(PtPlannerTest, DryRunStringForRemovalsAndWarnings) {
  // Every partition on S1, S2 (zone z1) and S3 (zone z2); down to R=1.
  // Balance leaves S3 two cells, so one partition must stay in z1 only.
  const PartitionTable pt = Balanced(3, 2, {1, 2, 3});
  std::vector<StorageNode> nodes = {
      {1, NODE_RUNNING, "z1/h1"}, {2, NODE_RUNNING, "z1/h2"}, {3, NODE_RUNNING, "z2/h1"}};
  auto plan = kPlanner.SetReplicas(pt, nodes, 1, DryRun());
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->ToString(),
            "set replicas 1 (dry run): ptid 1 -> 2, 0 moves, 0 new cells, 3 removed, "
            "0 other changes, replicas 2 -> 1\n"
            "partition 0: remove S3 (was UP_TO_DATE)\n"
            "partition 1: remove S2 (was UP_TO_DATE)\n"
            "partition 2: remove S1 (was UP_TO_DATE)\n"
            "warning: partition 0: replicas S1 and S2 share zone z1\n"
            "S1: cells 3 -> 2\n"
            "S2: cells 3 -> 2\n"
            "S3: cells 3 -> 2\n");
}

TEST(PtPlannerTest, ToDeltaAndApplyPlan) {
  const PartitionTable pt = Balanced(4, 0, {1, 2});
  std::vector<StorageNode> nodes = Running(1, 2);
  nodes.push_back({3, NODE_PENDING, ""});
  auto plan = kPlanner.Add(pt, nodes, {3});
  ASSERT_THAT(plan, IsOk());
  const ::cellar::v1::PartitionTableDelta delta = plan->ToDelta(2);
  EXPECT_EQ(delta.ptid(), 2u);
  ASSERT_EQ(delta.changes_size(), 2);
  EXPECT_EQ(delta.changes(0).partition(), 0u);
  EXPECT_EQ(delta.changes(0).node_id(), 1u);
  EXPECT_EQ(delta.changes(0).state(), CELL_FEEDING);
  EXPECT_EQ(delta.changes(1).node_id(), 3u);
  EXPECT_EQ(delta.changes(1).state(), CELL_OUT_OF_DATE);
  // The delta is what ApplyPlan applies.
  PartitionTable by_delta = pt;
  ASSERT_THAT(by_delta.ApplyDelta(delta), IsOk());
  const PartitionTable applied = Apply(pt, *plan);
  EXPECT_EQ(applied.ToProto().SerializeAsString(), by_delta.ToProto().SerializeAsString());
  // A plan made for another ptid is stale.
  EXPECT_THAT(ApplyPlan(applied, *plan),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("plan again")));
}

TEST(PtPlannerTest, SamePlanForSameInput) {
  std::mt19937 rng(5);
  for (int round = 0; round < 20; ++round) {
    const PartitionTable pt = RandomTable(24, 2, Ids(1, 6), &rng);
    std::vector<StorageNode> nodes = Labelled(kThreeZones);
    auto first = kPlanner.Tweak(pt, nodes);
    auto second = kPlanner.Tweak(pt, nodes);
    std::reverse(nodes.begin(), nodes.end());  // the order of the node list does not matter
    auto third = kPlanner.Tweak(pt, nodes);
    ASSERT_THAT(first, IsOk());
    ASSERT_THAT(second, IsOk());
    ASSERT_THAT(third, IsOk());
    EXPECT_EQ(first->changes, second->changes);
    EXPECT_EQ(first->changes, third->changes);
    EXPECT_EQ(first->ToString(), second->ToString());
    EXPECT_EQ(first->ToString(), third->ToString());
  }
}

// ---- validation ------------------------------------------------------------

TEST(PtPlannerTest, RejectsBadInput) {
  const PartitionTable pt = Balanced(12, 1, {1, 2, 3});
  EXPECT_THAT(kPlanner.Tweak(PartitionTable(), Running(1, 3)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no partition table")));
  std::vector<StorageNode> twice = Running(1, 3);
  twice.push_back({2, NODE_RUNNING, ""});
  EXPECT_THAT(kPlanner.Tweak(pt, twice),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("S2 is listed twice")));
  std::vector<StorageNode> zero = Running(1, 3);
  zero.push_back({0, NODE_RUNNING, ""});
  EXPECT_THAT(kPlanner.Tweak(pt, zero), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(kPlanner.Tweak(pt, Running(1, 2)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("S3 holds cells (partition 1) but is not in the node list")));
  for (const char* label : {"a/b/c/d", "z1//d1", "/h1", "z1/"}) {
    std::vector<StorageNode> labelled = Running(1, 3);
    labelled[0].label = label;
    EXPECT_THAT(kPlanner.Tweak(pt, labelled),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("label")))
        << label;
  }
  std::vector<StorageNode> no_state = Running(1, 3);
  no_state[1].state = ::cellar::v1::NODE_STATE_UNSPECIFIED;
  EXPECT_THAT(kPlanner.Tweak(pt, no_state), StatusIs(absl::StatusCode::kInvalidArgument));
  std::vector<StorageNode> none_running = Running(1, 3);
  for (StorageNode& n : none_running) n.state = NODE_DOWN;
  EXPECT_THAT(kPlanner.Tweak(pt, none_running),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no RUNNING")));
  EXPECT_THAT(kPlanner.FinishFeeding(pt, Running(1, 2)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace cellar::master
