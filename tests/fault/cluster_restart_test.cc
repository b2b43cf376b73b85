// (a) Stop and restart the whole cluster (SIGTERM every process, start them
// again on the same data): the master stays RECOVERING while a storage
// holding readable cells is missing (no split brain), then goes RUNNING
// with every acknowledged commit on every cell, and new commits get larger
// tids.
#include <signal.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/clock.h"
#include "services/common/logging.h"
#include "services/common/status_matchers.h"
#include "tests/fault/fault_support.h"

namespace cellar::fault {
namespace {

using common::IsOk;

class ClusterRestartTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() { common::SetMinLogSeverity(common::LogSeverity::kError); }
};

TEST_P(ClusterRestartTest, StopAllThenStartRecoversEverything) {
  auto cluster = StartCluster(GetParam(), DefaultTopology());
  ASSERT_THAT(cluster, IsOk());
  tools::ProcessCluster& c = **cluster;
  CommitLedger ledger;
  {
    auto client = Connect(c);
    ASSERT_THAT(client, IsOk());
    Workload workload(client->get(), &ledger, {});
    workload.Start();
    ASSERT_THAT(workload.WaitForAcked(150, absl::Seconds(30)), IsOk());
    workload.Stop();
  }
  EXPECT_EQ(ledger.failed_other_than_lock_contention(), 0u)
      << "no fault yet, every commit should succeed: " << ledger.FailureSummary();
  const size_t failed_before = ledger.failed_count();
  uint64_t max_tid = 0;
  for (const auto& a : ledger.acked()) max_tid = std::max(max_tid, a.tid);

  // A clean stop: every process exits on SIGTERM (no SIGKILL needed).
  ASSERT_THAT(c.StopAll(SIGTERM), IsOk());
  for (const std::string& name : c.node_names()) {
    EXPECT_EQ(c.Probe(name).process, tools::NodeProbe::Process::kDead) << name;
  }

  // The master alone, then two of three storages: still RECOVERING.
  ASSERT_THAT(c.Start("M1"), IsOk());
  ASSERT_THAT(c.WaitForClusterState(v1::CLUSTER_RECOVERING, absl::Seconds(10)), IsOk());
  ASSERT_THAT(c.Start("S1", /*wait_ready=*/false), IsOk());
  ASSERT_THAT(c.Start("S2", /*wait_ready=*/false), IsOk());
  ASSERT_THAT(c.WaitForNodeState("S1", v1::NODE_PENDING, absl::Seconds(10)), IsOk());
  ASSERT_THAT(c.WaitForNodeState("S2", v1::NODE_PENDING, absl::Seconds(10)), IsOk());
  // Observed for a second (not a synchronization): S3 holds the only other
  // readable cells of some partitions, so recovery must wait for it.
  const absl::Time until = absl::Now() + absl::Seconds(1);
  while (absl::Now() < until) {
    auto info = c.ClusterInfo();
    ASSERT_THAT(info, IsOk());
    ASSERT_EQ(info->cluster_state(), v1::CLUSTER_RECOVERING)
        << "the cluster left RECOVERING without S3";
    absl::SleepFor(absl::Milliseconds(100));
  }

  ASSERT_THAT(c.Start("S3", /*wait_ready=*/false), IsOk());
  ASSERT_THAT(c.Start("A1"), IsOk());
  ASSERT_THAT(c.WaitUntilRunning(), IsOk());
  // Nothing to catch up: the master went first, no cell was marked.
  ASSERT_THAT(WaitForAllCellsUpToDate(c, absl::Seconds(30)), IsOk());

  VerifyOptions all;
  all.require_all_cells = true;
  VerifyReport report = Verify(c, ledger, all);
  EXPECT_TRUE(report.ok()) << report.Summary();
  EXPECT_EQ(report.failed_but_visible, 0u);
  EXPECT_EQ(report.failed_commits, failed_before);

  // New commits work and their tids are above everything before the stop.
  auto client = Connect(c);
  ASSERT_THAT(client, IsOk());
  CommitLedger after;
  ASSERT_THAT(CommitFresh(**client, after, 20), IsOk());
  for (const auto& a : after.acked()) EXPECT_GT(a.tid, max_tid);
  for (const auto& a : after.acked()) ledger.AddAcked(a.tid, a.objects);
  report = Verify(c, ledger, all);
  EXPECT_TRUE(report.ok()) << report.Summary();
}

INSTANTIATE_TEST_SUITE_P(Backends, ClusterRestartTest, ::testing::ValuesIn(Backends()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cellar::fault
