#include "services/admin/alert_rules.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/admin/testing/fake_master.h"
#include "services/common/ids.h"

namespace cellar::admin {
namespace {

using ::cellar::admin::testing::HealthyClusterInfo;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

const absl::Time kT0 = absl::FromUnixSeconds(1800000000);

uint32_t S(int i) { return common::MakeNodeId(common::NodeKind::kStorage, i); }

std::vector<std::string> Ids(const AlertEvaluation& e) {
  std::vector<std::string> ids;
  for (const AlertSpec& s : e.alerts) ids.push_back(AlertIndex::MakeId(s.cluster, s.kind, s.subject));
  return ids;
}

const AlertSpec* Find(const AlertEvaluation& e, const std::string& kind) {
  for (const AlertSpec& s : e.alerts) {
    if (s.kind == kind) return &s;
  }
  return nullptr;
}

ClusterObservation Observe(absl::Time now, cellar::v1::GetClusterInfoResponse info) {
  ClusterObservation obs;
  obs.now = now;
  obs.info = std::move(info);
  return obs;
}

void SetNodeState(cellar::v1::GetClusterInfoResponse* info, uint32_t node_id,
                  cellar::v1::NodeState state) {
  for (auto& node : *info->mutable_nodes()) {
    if (node.node_id() == node_id) node.set_state(state);
  }
}

void SetCell(cellar::v1::GetClusterInfoResponse* info, uint32_t partition, uint32_t node_id,
             cellar::v1::CellState state) {
  for (auto& row : *info->mutable_partition_table()->mutable_rows()) {
    if (row.partition() != partition) continue;
    for (auto& cell : *row.mutable_cells()) {
      if (cell.node_id() == node_id) {
        cell.set_state(state);
        return;
      }
    }
    auto* cell = row.add_cells();
    cell->set_node_id(node_id);
    cell->set_state(state);
    return;
  }
}

class AlertRulesTest : public ::testing::Test {
 protected:
  AlertRuleOptions options_;
};

TEST_F(AlertRulesTest, HealthyClusterRaisesNothing) {
  ClusterAlertRules rules("prod", options_);
  AlertEvaluation e = rules.Evaluate(Observe(kT0, HealthyClusterInfo()));
  EXPECT_THAT(e.alerts, IsEmpty());
  EXPECT_THAT(e.evaluated_kinds,
              UnorderedElementsAre(kClusterUnreachable, kClusterNotRunning,
                                   kClusterNotOperational, kNodeDown, kCellOutOfDate,
                                   kCellCorrupted));
}

TEST_F(AlertRulesTest, UnreachableEvaluatesNothingElse) {
  ClusterAlertRules rules("prod", options_);
  ClusterObservation obs;
  obs.now = kT0;
  obs.reachable = absl::UnavailableError("127.0.0.1:7100: connection refused");
  AlertEvaluation e = rules.Evaluate(obs);
  EXPECT_THAT(e.evaluated_kinds, ElementsAre(kClusterUnreachable));
  ASSERT_THAT(Ids(e), ElementsAre("prod/cluster-unreachable/"));
  EXPECT_EQ(e.alerts[0].severity, AlertSeverity::kCritical);
  EXPECT_THAT(e.alerts[0].summary, HasSubstr("connection refused"));
  EXPECT_EQ(e.alerts[0].help_uri, "docs/alerts/cluster-unreachable.md");
  EXPECT_FALSE(e.alerts[0].help.empty());
}

TEST_F(AlertRulesTest, NotRunningWaitsForTheGrace) {
  ClusterAlertRules rules("prod", options_);
  auto info = HealthyClusterInfo();
  info.set_cluster_state(cellar::v1::CLUSTER_RECOVERING);
  EXPECT_THAT(Ids(rules.Evaluate(Observe(kT0, info))), IsEmpty());
  EXPECT_THAT(Ids(rules.Evaluate(Observe(kT0 + absl::Seconds(29), info))), IsEmpty());
  AlertEvaluation e = rules.Evaluate(Observe(kT0 + absl::Seconds(30), info));
  ASSERT_THAT(Ids(e), ElementsAre("prod/cluster-not-running/"));
  EXPECT_EQ(e.alerts[0].severity, AlertSeverity::kWarning);
  EXPECT_THAT(e.alerts[0].summary, HasSubstr("CLUSTER_RECOVERING"));
  EXPECT_THAT(e.alerts[0].summary, HasSubstr("30s"));

  // RUNNING again resets the timer.
  EXPECT_THAT(Ids(rules.Evaluate(Observe(kT0 + absl::Seconds(31), HealthyClusterInfo()))),
              IsEmpty());
  EXPECT_THAT(Ids(rules.Evaluate(Observe(kT0 + absl::Seconds(32), info))), IsEmpty());
}

TEST_F(AlertRulesTest, StoppingIsInfo) {
  options_.not_running_grace = absl::ZeroDuration();
  ClusterAlertRules rules("prod", options_);
  auto info = HealthyClusterInfo();
  info.set_cluster_state(cellar::v1::CLUSTER_STOPPING);
  AlertEvaluation e = rules.Evaluate(Observe(kT0, info));
  ASSERT_NE(Find(e, kClusterNotRunning), nullptr);
  EXPECT_EQ(Find(e, kClusterNotRunning)->severity, AlertSeverity::kInfo);
}

TEST_F(AlertRulesTest, NotOperationalWhenAPartitionLosesItsReadableCells) {
  options_.not_running_grace = absl::Seconds(10);
  ClusterAlertRules rules("prod", options_);
  // 4 partitions, 1 replica, 3 storages: partition 0 is on S1 and S2.
  auto info = HealthyClusterInfo(3, 4, 1);
  SetNodeState(&info, S(1), cellar::v1::NODE_DOWN);
  SetNodeState(&info, S(2), cellar::v1::NODE_DOWN);
  info.set_operational(false);
  info.set_cluster_state(cellar::v1::CLUSTER_RECOVERING);
  EXPECT_EQ(Find(rules.Evaluate(Observe(kT0, info)), kClusterNotOperational), nullptr);
  AlertEvaluation e = rules.Evaluate(Observe(kT0 + absl::Seconds(10), info));
  const AlertSpec* a = Find(e, kClusterNotOperational);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->severity, AlertSeverity::kCritical);
  EXPECT_EQ(a->subject, "");
  EXPECT_THAT(a->summary, HasSubstr("of 4 partitions have no readable cell"));
  EXPECT_THAT(a->summary, HasSubstr("(0"));
  EXPECT_THAT(Ids(e), Contains("prod/node-down/S1"));
  EXPECT_THAT(Ids(e), Contains("prod/node-down/S2"));
}

TEST_F(AlertRulesTest, NodeDownNamesTheStorageAndItsCells) {
  ClusterAlertRules rules("prod", options_);
  auto info = HealthyClusterInfo(3, 6, 1);
  SetNodeState(&info, S(3), cellar::v1::NODE_DOWN);
  AlertEvaluation e = rules.Evaluate(Observe(kT0, info));
  ASSERT_THAT(Ids(e), ElementsAre("prod/node-down/S3"));
  EXPECT_EQ(e.alerts[0].severity, AlertSeverity::kWarning);
  EXPECT_THAT(e.alerts[0].summary, HasSubstr("storage S3 (127.0.0.1:7202) is DOWN"));
  EXPECT_THAT(e.alerts[0].summary, HasSubstr("4 cells"));
  // Back up: nothing.
  EXPECT_THAT(Ids(rules.Evaluate(Observe(kT0 + absl::Seconds(2), HealthyClusterInfo(3, 6, 1)))),
              IsEmpty());
}

TEST_F(AlertRulesTest, NodeDownGrace) {
  options_.node_down_grace = absl::Seconds(20);
  ClusterAlertRules rules("prod", options_);
  auto info = HealthyClusterInfo();
  SetNodeState(&info, S(2), cellar::v1::NODE_DOWN);
  EXPECT_THAT(Ids(rules.Evaluate(Observe(kT0, info))), IsEmpty());
  EXPECT_THAT(Ids(rules.Evaluate(Observe(kT0 + absl::Seconds(20), info))),
              ElementsAre("prod/node-down/S2"));
}

TEST_F(AlertRulesTest, CellsOutOfDateForLongerThanTheThreshold) {
  options_.out_of_date_threshold = absl::Minutes(10);
  ClusterAlertRules rules("prod", options_);
  auto info = HealthyClusterInfo(3, 4, 1);
  SetCell(&info, 1, S(2), cellar::v1::CELL_OUT_OF_DATE);
  EXPECT_THAT(Ids(rules.Evaluate(Observe(kT0, info))), IsEmpty());
  SetCell(&info, 3, S(2), cellar::v1::CELL_OUT_OF_DATE);  // a second cell, later
  EXPECT_THAT(Ids(rules.Evaluate(Observe(kT0 + absl::Minutes(5), info))), IsEmpty());
  AlertEvaluation e = rules.Evaluate(Observe(kT0 + absl::Minutes(10), info));
  ASSERT_THAT(Ids(e), ElementsAre("prod/cell-out-of-date/S2"));
  EXPECT_EQ(e.alerts[0].severity, AlertSeverity::kWarning);
  EXPECT_THAT(e.alerts[0].summary, HasSubstr("S2: 1 cells OUT_OF_DATE for more than 10m"));
  EXPECT_THAT(e.alerts[0].summary, HasSubstr("(partitions 1;"));

  e = rules.Evaluate(Observe(kT0 + absl::Minutes(15), info));
  ASSERT_THAT(Ids(e), ElementsAre("prod/cell-out-of-date/S2"));
  EXPECT_THAT(e.alerts[0].summary, HasSubstr("2 cells"));
  EXPECT_THAT(e.alerts[0].summary, HasSubstr("longest 15m"));

  // Partition 1 caught up, then fell behind again: its timer restarts.
  SetCell(&info, 1, S(2), cellar::v1::CELL_UP_TO_DATE);
  rules.Evaluate(Observe(kT0 + absl::Minutes(16), info));
  SetCell(&info, 1, S(2), cellar::v1::CELL_OUT_OF_DATE);
  e = rules.Evaluate(Observe(kT0 + absl::Minutes(17), info));
  ASSERT_THAT(Ids(e), ElementsAre("prod/cell-out-of-date/S2"));
  EXPECT_THAT(e.alerts[0].summary, HasSubstr("1 cells"));
  EXPECT_THAT(e.alerts[0].summary, HasSubstr("partitions 3;"));
}

TEST_F(AlertRulesTest, CorruptedCellsAreCriticalAtOnce) {
  ClusterAlertRules rules("prod", options_);
  auto info = HealthyClusterInfo(3, 4, 1);
  SetCell(&info, 2, S(1), cellar::v1::CELL_CORRUPTED);
  AlertEvaluation e = rules.Evaluate(Observe(kT0, info));
  const AlertSpec* a = Find(e, kCellCorrupted);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->subject, "S1");
  EXPECT_EQ(a->severity, AlertSeverity::kCritical);
  EXPECT_THAT(a->summary, HasSubstr("1 cells CORRUPTED (partitions 2)"));
}

TEST_F(AlertRulesTest, ReplicationStalledNeedsSamplesAndNoProgress) {
  options_.replication_stall_threshold = absl::Minutes(5);
  ClusterAlertRules rules("prod", options_);
  auto info = HealthyClusterInfo(3, 4, 1);
  SetCell(&info, 1, S(2), cellar::v1::CELL_OUT_OF_DATE);
  auto obs = [&](absl::Time t, uint64_t position) {
    ClusterObservation o = Observe(t, info);
    o.replication_measured = true;
    o.replication.push_back({1, S(2), position});
    return o;
  };
  AlertEvaluation e = rules.Evaluate(Observe(kT0, info));
  EXPECT_THAT(e.evaluated_kinds, Not(Contains(kReplicationStalled)));
  e = rules.Evaluate(obs(kT0, 100));
  EXPECT_THAT(e.evaluated_kinds, Contains(kReplicationStalled));
  EXPECT_EQ(Find(e, kReplicationStalled), nullptr);
  EXPECT_EQ(Find(rules.Evaluate(obs(kT0 + absl::Minutes(4), 200)), kReplicationStalled), nullptr)
      << "progress";
  EXPECT_EQ(Find(rules.Evaluate(obs(kT0 + absl::Minutes(8), 200)), kReplicationStalled), nullptr);
  e = rules.Evaluate(obs(kT0 + absl::Minutes(9), 200));
  const AlertSpec* a = Find(e, kReplicationStalled);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->subject, "S2");
  EXPECT_THAT(a->summary, HasSubstr("no progress for 5m"));
  // Up to date now: samples of that cell no longer count.
  SetCell(&info, 1, S(2), cellar::v1::CELL_UP_TO_DATE);
  EXPECT_EQ(Find(rules.Evaluate(obs(kT0 + absl::Minutes(10), 200)), kReplicationStalled),
            nullptr);
}

TEST_F(AlertRulesTest, ClockSkewThresholdAndSeverity) {
  options_.clock_skew_threshold = absl::Seconds(1);
  ClusterAlertRules rules("prod", options_);
  auto obs = [&](std::vector<ClockSkewSample> samples) {
    ClusterObservation o = Observe(kT0, HealthyClusterInfo());
    o.clock_measured = true;
    o.clock_skews = std::move(samples);
    return o;
  };
  AlertEvaluation e = rules.Evaluate(obs({{"M1", absl::Milliseconds(900), "test"}}));
  EXPECT_THAT(e.evaluated_kinds, Contains(kClockSkew));
  EXPECT_THAT(Ids(e), IsEmpty());
  e = rules.Evaluate(obs({{"M1", absl::Milliseconds(2500), "last TID"},
                          {"S2", -absl::Seconds(11), "probe"}}));
  ASSERT_THAT(Ids(e), ElementsAre("prod/clock-skew/M1", "prod/clock-skew/S2"));
  EXPECT_EQ(e.alerts[0].severity, AlertSeverity::kWarning);
  EXPECT_THAT(e.alerts[0].summary, HasSubstr("M1: clock ahead by 2.5s"));
  EXPECT_THAT(e.alerts[0].summary, HasSubstr("last TID"));
  EXPECT_EQ(e.alerts[1].severity, AlertSeverity::kCritical);
  EXPECT_THAT(e.alerts[1].summary, HasSubstr("S2: clock behind by 11s"));
  // Not measured: not evaluated (existing alerts stay).
  EXPECT_THAT(rules.Evaluate(Observe(kT0, HealthyClusterInfo())).evaluated_kinds,
              Not(Contains(kClockSkew)));
}

TEST_F(AlertRulesTest, BackendErrorsWhileTheCounterGrows) {
  options_.backend_error_window = absl::Minutes(5);
  ClusterAlertRules rules("prod", options_);
  auto obs = [&](absl::Time t, uint64_t errors) {
    ClusterObservation o = Observe(t, HealthyClusterInfo());
    StorageHealthSample s;
    s.node_id = S(1);
    s.backend_errors_total = errors;
    o.storages.push_back(s);
    return o;
  };
  AlertEvaluation e = rules.Evaluate(obs(kT0, 7));
  EXPECT_THAT(e.evaluated_kinds, Contains(kBackendErrors));
  EXPECT_THAT(Ids(e), IsEmpty()) << "old errors of a first sample are not news";
  e = rules.Evaluate(obs(kT0 + absl::Minutes(1), 9));
  ASSERT_THAT(Ids(e), ElementsAre("prod/backend-errors/S1"));
  EXPECT_EQ(e.alerts[0].severity, AlertSeverity::kCritical);
  EXPECT_THAT(e.alerts[0].summary, HasSubstr("grew to 9"));
  EXPECT_THAT(Ids(rules.Evaluate(obs(kT0 + absl::Minutes(5), 9))),
              ElementsAre("prod/backend-errors/S1"));
  EXPECT_THAT(Ids(rules.Evaluate(obs(kT0 + absl::Minutes(6), 9))), IsEmpty());
  EXPECT_THAT(Ids(rules.Evaluate(obs(kT0 + absl::Minutes(7), 2))), IsEmpty())
      << "a restarted node's counter starts again";
  EXPECT_THAT(Ids(rules.Evaluate(obs(kT0 + absl::Minutes(8), 3))),
              ElementsAre("prod/backend-errors/S1"));
}

TEST_F(AlertRulesTest, DiskAlmostFull) {
  ClusterAlertRules rules("prod", options_);
  auto obs = [&](absl::optional<uint64_t> free, absl::optional<uint64_t> total) {
    ClusterObservation o = Observe(kT0, HealthyClusterInfo());
    StorageHealthSample s;
    s.node_id = S(2);
    s.disk_free_bytes = free;
    s.disk_total_bytes = total;
    o.storages.push_back(s);
    return o;
  };
  const uint64_t gib = uint64_t{1} << 30;
  EXPECT_THAT(Ids(rules.Evaluate(obs(50 * gib, 100 * gib))), IsEmpty());
  AlertEvaluation e = rules.Evaluate(obs(8 * gib, 100 * gib));
  ASSERT_THAT(Ids(e), ElementsAre("prod/disk-almost-full/S2"));
  EXPECT_EQ(e.alerts[0].severity, AlertSeverity::kWarning);
  EXPECT_THAT(e.alerts[0].summary, HasSubstr("S2: 8.0% of its disk free"));
  e = rules.Evaluate(obs(4 * gib, 100 * gib));
  ASSERT_THAT(Ids(e), ElementsAre("prod/disk-almost-full/S2"));
  EXPECT_EQ(e.alerts[0].severity, AlertSeverity::kCritical);
  EXPECT_THAT(Ids(rules.Evaluate(obs(4 * gib, absl::nullopt))), IsEmpty());
}

TEST_F(AlertRulesTest, EveryKindHasAHelpPage) {
  EXPECT_EQ(AllAlertKinds().size(), 10u);
  options_.help_base = "https://example.com/alerts/";
  ClusterAlertRules rules("x", options_);
  ClusterObservation obs;
  obs.reachable = absl::UnavailableError("down");
  EXPECT_EQ(rules.Evaluate(obs).alerts[0].help_uri,
            "https://example.com/alerts/cluster-unreachable.md");
}

}  // namespace
}  // namespace cellar::admin
