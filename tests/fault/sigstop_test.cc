// (d) SIGSTOP a storage for longer than the heartbeat timeout, then SIGCONT.
//
// The master declares the stopped node DOWN when it misses heartbeats
// (heartbeat timeout, 10 s by default; the test allows 45 s, the bound of
// the gRPC keepalive that was the only detector before) and marks its
// cells OUT_OF_DATE. Clients keep reading (a read that tries the stopped
// node first fails over to the other replica when the client's deadline,
// 3 s here, passes) and committing: a store on the stopped node times out
// and counts as a replica that did not vote, so commits go on with the
// other cells (the master marks the stopped node's cells OUT_OF_DATE).
// The checks run while it is still stopped; after SIGCONT it re-registers, catches up while clients go on
// (readers never see it stale) and the checks run again on every cell.
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

class SigstopTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() { common::SetMinLogSeverity(common::LogSeverity::kError); }
};

TEST_P(SigstopTest, StoppedStorageIsDeclaredDownThenRejoins) {
  auto cluster = StartCluster(GetParam(), DefaultTopology());
  ASSERT_THAT(cluster, IsOk());
  tools::ProcessCluster& c = **cluster;
  auto client = Connect(c, /*rpc_timeout=*/absl::Seconds(3));
  ASSERT_THAT(client, IsOk());
  CommitLedger ledger;
  Workload::Options options;
  options.threads = 3;
  Workload workload(client->get(), &ledger, options);
  Reader reader(client->get(), &ledger);
  workload.Start();
  reader.Start();
  ASSERT_THAT(workload.WaitForAcked(100, absl::Seconds(30)), IsOk());

  ASSERT_THAT(c.Stop("S2"), IsOk());
  const absl::Time stopped = absl::Now();
  ASSERT_THAT(c.WaitForNodeState("S2", v1::NODE_DOWN, absl::Seconds(50)), IsOk());
  const absl::Duration detection = absl::Now() - stopped;
  EXPECT_LE(detection, absl::Seconds(45));
  // Clients keep (or go back to) committing while it is stopped.
  const size_t acked_at_down = workload.acked();
  ASSERT_THAT(workload.WaitForAcked(acked_at_down + 100, absl::Seconds(45)), IsOk())
      << ledger.FailureSummary();
  std::cerr << "S2 declared DOWN " << absl::FormatDuration(detection)
            << " after SIGSTOP; 100 more commits acknowledged "
            << absl::FormatDuration(absl::Now() - stopped) << " after SIGSTOP\n";
  workload.Stop();
  reader.Stop();
  auto info = c.ClusterInfo();
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->cluster_state(), v1::CLUSTER_RUNNING);
  EXPECT_TRUE(info->operational());

  EXPECT_GT(reader.reads(), 0u);
  EXPECT_EQ(reader.failures(), 0u) << ::testing::PrintToString(reader.failure_messages());
  EXPECT_LE(reader.max_latency(), absl::Seconds(7)) << "a read fails over after 3 s";
  std::cerr << "reads: " << reader.reads() << ", slowest "
            << absl::FormatDuration(reader.max_latency()) << "; " << ledger.FailureSummary()
            << "\n";
  for (const auto& f : ledger.failed()) {
    EXPECT_TRUE(f.error.code() == absl::StatusCode::kDeadlineExceeded ||
                f.error.code() == absl::StatusCode::kUnavailable ||
                f.error.code() == absl::StatusCode::kAborted)
        << f.error;
  }
  // The checks, S2 still stopped (DOWN: not compared, not read).
  VerifyOptions live;
  live.required_storages = {"S1", "S3"};
  VerifyReport report = Verify(c, ledger, live);
  EXPECT_TRUE(report.ok()) << report.Summary();

  // SIGCONT: it re-registers, serves again and catches up while clients
  // commit and read.
  Workload after(client->get(), &ledger, options);
  Reader reader_after(client->get(), &ledger);
  after.Start();
  reader_after.Start();
  ASSERT_THAT(c.Cont("S2"), IsOk());
  ASSERT_THAT(c.WaitForNodeState("S2", v1::NODE_RUNNING, absl::Seconds(15)), IsOk());
  ASSERT_THAT(WaitForAllCellsUpToDate(c, absl::Seconds(60)), IsOk());
  ASSERT_THAT(after.WaitForAcked(100, absl::Seconds(30)), IsOk()) << ledger.FailureSummary();
  after.Stop();
  reader_after.Stop();
  EXPECT_EQ(reader_after.failures(), 0u)
      << ::testing::PrintToString(reader_after.failure_messages());
  VerifyOptions all;
  all.require_all_cells = true;
  report = Verify(c, ledger, all);
  EXPECT_TRUE(report.ok()) << report.Summary();
}

INSTANTIATE_TEST_SUITE_P(Backends, SigstopTest, ::testing::ValuesIn(Backends()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cellar::fault
