// kill -9 of a storage node (3 storages, replicas = 1, so every partition
// keeps a readable cell elsewhere):
//  (b) during a stream of commits: clients keep committing and reading
//      from the replicas; every acknowledged commit stays readable;
//  (c) with no commit while it is away: restarted, it rejoins (RUNNING,
//      serving) with replicas equal to the others', and takes new commits.
// The "comes back and catches up" half of (b) needs replication:
// tests/fault/pending_test.cc (manual).
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

class StorageKillTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() { common::SetMinLogSeverity(common::LogSeverity::kError); }
};

TEST_P(StorageKillTest, KillDuringCommitsKeepsServingFromReplicas) {
  auto cluster = StartCluster(GetParam(), DefaultTopology());
  ASSERT_THAT(cluster, IsOk());
  tools::ProcessCluster& c = **cluster;
  auto client = Connect(c, absl::Seconds(5));
  ASSERT_THAT(client, IsOk());
  CommitLedger ledger;
  Workload workload(client->get(), &ledger, {});
  Reader reader(client->get(), &ledger);
  workload.Start();
  reader.Start();
  ASSERT_THAT(workload.WaitForAcked(100, absl::Seconds(30)), IsOk());

  ASSERT_THAT(c.Kill("S2", SIGKILL), IsOk());
  const size_t at_kill = workload.acked();
  ASSERT_THAT(c.WaitForNodeState("S2", v1::NODE_DOWN, absl::Seconds(10)), IsOk());
  // Clients keep committing (a commit in flight at the kill may fail; the
  // workload goes on with the next one) and reading.
  ASSERT_THAT(workload.WaitForAcked(at_kill + 150, absl::Seconds(30)), IsOk())
      << ledger.FailureSummary();
  workload.Stop();
  reader.Stop();

  auto info = c.ClusterInfo();
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->cluster_state(), v1::CLUSTER_RUNNING);
  EXPECT_TRUE(info->operational());
  EXPECT_GT(reader.reads(), 0u);
  EXPECT_EQ(reader.failures(), 0u) << ::testing::PrintToString(reader.failure_messages());
  // Only the commits in flight at the kill may fail otherwise than by
  // lock contention.
  EXPECT_LE(ledger.failed_other_than_lock_contention(), 4u) << ledger.FailureSummary();

  VerifyOptions options;
  options.required_storages = {"S1", "S3"};
  VerifyReport report = Verify(c, ledger, options);
  EXPECT_TRUE(report.ok()) << report.Summary();
}

TEST_P(StorageKillTest, KilledStorageRejoinsWhenNothingWasCommittedMeanwhile) {
  auto cluster = StartCluster(GetParam(), DefaultTopology());
  ASSERT_THAT(cluster, IsOk());
  tools::ProcessCluster& c = **cluster;
  auto client = Connect(c, absl::Seconds(5));
  ASSERT_THAT(client, IsOk());
  CommitLedger ledger;
  {
    Workload workload(client->get(), &ledger, {});
    workload.Start();
    ASSERT_THAT(workload.WaitForAcked(100, absl::Seconds(30)), IsOk());
  }
  const uint32_t id = c.node_id("S2");

  ASSERT_THAT(c.Kill("S2", SIGKILL), IsOk());
  ASSERT_THAT(c.WaitForNodeState("S2", v1::NODE_DOWN, absl::Seconds(10)), IsOk());
  ASSERT_THAT(c.Start("S2"), IsOk());  // waits until it serves
  ASSERT_THAT(c.WaitForNodeState("S2", v1::NODE_RUNNING, absl::Seconds(10)), IsOk());
  EXPECT_EQ(c.node_id("S2"), id) << "a restarted storage keeps its node id";
  ASSERT_THAT(c.WaitUntilRunning(), IsOk());

  VerifyOptions all;
  all.require_all_cells = true;
  VerifyReport report = Verify(c, ledger, all);
  EXPECT_TRUE(report.ok()) << report.Summary();

  // It takes part in new commits like the others.
  {
    Workload workload(client->get(), &ledger, {});
    workload.Start();
    ASSERT_THAT(workload.WaitForAcked(100, absl::Seconds(30)), IsOk());
  }
  EXPECT_EQ(ledger.failed_other_than_lock_contention(), 0u) << ledger.FailureSummary();
  report = Verify(c, ledger, all);
  EXPECT_TRUE(report.ok()) << report.Summary();
}

INSTANTIATE_TEST_SUITE_P(Backends, StorageKillTest, ::testing::ValuesIn(Backends()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cellar::fault
