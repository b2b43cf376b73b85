// kill -9 of a storage node (3 storages, replicas = 1, so every partition
// keeps a readable cell elsewhere):
//  (b) during a stream of commits: clients keep committing and reading
//      from the replicas, and every acknowledged commit stays readable;
//      then it comes back: its cells were OUT_OF_DATE (it missed commits),
//      it catches up while clients go on, and readers never see it stale;
//  (c) with no commit while it is away: restarted, it rejoins (same node
//      id, serving, every cell UP_TO_DATE again) and takes new commits;
//  in the middle of its replication: restarted, it resumes from where it
//      was (keeps what it had copied) and catches up.
#include <signal.h>

#include <iostream>

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

TEST_P(StorageKillTest, KillDuringCommitsKeepsServingThenCatchesUp) {
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
  ASSERT_THAT(c.WaitForNodeState("S2", v1::NODE_DOWN, absl::Seconds(10)), IsOk());
  // Clients keep committing (a commit in flight at the kill may fail; the
  // workload goes on with the next one) and reading.
  ASSERT_THAT(workload.WaitForAcked(workload.acked() + 300, absl::Seconds(30)), IsOk())
      << ledger.FailureSummary();
  ASSERT_THAT(WaitForCellsOf(c, "S2", v1::CELL_OUT_OF_DATE, absl::Seconds(10)), IsOk())
      << "S2 missed commits: its cells must not be readable";
  workload.Stop();
  reader.Stop();
  auto info = c.ClusterInfo();
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->cluster_state(), v1::CLUSTER_RUNNING);
  EXPECT_TRUE(info->operational());
  {
    VerifyOptions live;
    live.required_storages = {"S1", "S3"};
    VerifyReport report = Verify(c, ledger, live);
    EXPECT_TRUE(report.ok()) << "with S2 down: " << report.Summary();
  }

  // Back: it catches up while clients commit and read.
  Workload after(client->get(), &ledger, {});
  Reader reader_after(client->get(), &ledger);
  after.Start();
  reader_after.Start();
  ASSERT_THAT(c.Start("S2", /*wait_ready=*/false), IsOk());
  ASSERT_THAT(WaitForAllCellsUpToDate(c, absl::Seconds(60)), IsOk());
  ASSERT_THAT(after.WaitForAcked(100, absl::Seconds(30)), IsOk()) << ledger.FailureSummary();
  after.Stop();
  reader_after.Stop();
  EXPECT_EQ(reader_after.failures(), 0u)
      << ::testing::PrintToString(reader_after.failure_messages());

  EXPECT_GT(reader.reads(), 0u);
  EXPECT_EQ(reader.failures(), 0u) << ::testing::PrintToString(reader.failure_messages());
  // Only the commits in flight at the kill may fail otherwise than by
  // lock contention.
  EXPECT_LE(ledger.failed_other_than_lock_contention(), 4u) << ledger.FailureSummary();
  VerifyOptions all;
  all.require_all_cells = true;
  VerifyReport report = Verify(c, ledger, all);
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
  ASSERT_THAT(WaitForAllCellsUpToDate(c, absl::Seconds(30)), IsOk());

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

// Replication is slowed down (1 MiB/s, chunks of 50 records) so that the
// kill lands in its middle. "Resumes from where it was" is checked by its
// effect: the objects it had copied are still there right after the
// restart, and it completes. (When replication reports its position, e.g.
// in GetNodeStatus, assert the restart position directly.)
TEST_P(StorageKillTest, KillDuringReplicationResumes) {
  tools::ClusterTopology topology = DefaultTopology();
  topology.storage_flags = {"--replication_bytes_per_second=1048576",
                            "--replication_idle_bytes_per_second=1048576",
                            "--replication_chunk_records=50"};
  auto cluster = StartCluster(GetParam(), topology);
  ASSERT_THAT(cluster, IsOk());
  tools::ProcessCluster& c = **cluster;
  auto client = Connect(c, absl::Seconds(5));
  ASSERT_THAT(client, IsOk());
  CommitLedger ledger;
  ASSERT_THAT(CommitFresh(**client, ledger, 10), IsOk());
  auto before = StorageStatus(c, "S2");
  ASSERT_THAT(before, IsOk());

  // S2 misses ~5 MiB of commits.
  ASSERT_THAT(c.Kill("S2", SIGKILL), IsOk());
  ASSERT_THAT(c.WaitForNodeState("S2", v1::NODE_DOWN, absl::Seconds(10)), IsOk());
  {
    Workload::Options options;
    options.value_bytes = 8192;
    options.update_fraction = 0;
    Workload workload(client->get(), &ledger, options);
    workload.Start();
    ASSERT_THAT(workload.WaitForAcked(600, absl::Seconds(40)), IsOk());
  }
  ASSERT_THAT(WaitForCellsOf(c, "S2", v1::CELL_OUT_OF_DATE, absl::Seconds(10)), IsOk());

  // Restarted, it replicates; kill it again once it copied some of it.
  ASSERT_THAT(c.Start("S2", /*wait_ready=*/false), IsOk());
  uint64_t at_kill = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (at_kill == 0) {
    auto status = StorageStatus(c, "S2");
    if (status.ok() && status->object_count() > before->object_count()) {
      at_kill = status->object_count();
      break;
    }
    ASSERT_LT(absl::Now(), deadline) << "S2 did not start replicating";
    absl::SleepFor(absl::Milliseconds(20));
  }
  auto cells = CellsOf(c, "S2");
  ASSERT_THAT(cells, IsOk());
  bool behind = false;
  for (const auto& [p, state] : *cells) behind = behind || state == v1::CELL_OUT_OF_DATE;
  ASSERT_TRUE(behind) << "replication finished before the test could interrupt it";
  ASSERT_THAT(c.Kill("S2", SIGKILL), IsOk());
  std::cerr << "S2 killed after replicating " << at_kill - before->object_count()
            << " objects\n";

  ASSERT_THAT(c.Start("S2", /*wait_ready=*/false), IsOk());
  auto after = StorageStatus(c, "S2");
  ASSERT_THAT(after, IsOk());
  EXPECT_GE(after->object_count(), at_kill) << "S2 dropped what it had replicated";
  ASSERT_THAT(WaitForAllCellsUpToDate(c, absl::Seconds(60)), IsOk());

  VerifyOptions all;
  all.require_all_cells = true;
  VerifyReport report = Verify(c, ledger, all);
  EXPECT_TRUE(report.ok()) << report.Summary();
}

INSTANTIATE_TEST_SUITE_P(Backends, StorageKillTest, ::testing::ValuesIn(Backends()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cellar::fault
