// (d) SIGSTOP a storage for longer than the heartbeat timeout, then SIGCONT.
//
// Today's heartbeat is gRPC keepalive on the master's side of the storage's
// Watch stream (server keepalive 30 s + 10 s ping timeout): the master
// declares the stopped node DOWN 30-40 s after SIGSTOP. Meanwhile clients
// keep committing (stores to the stopped node time out, then fail fast once
// the client's keepalive dropped the connection; the commit goes on without
// that replica, semantics.md commit rule 8) and reading (a read that tries
// the stopped node first fails over to the other replica after the
// client's deadline, 3 s here). The checks run while it is still stopped.
// After SIGCONT it re-registers and serves again.
//
// What this test can't assert yet: that the node then catches up. Today
// nothing marks its cells OUT_OF_DATE, so once back it serves reads from
// the partitions it missed commits on (stale serials, NOT_FOUND for new
// objects). pending_test.cc (manual) has that half, for when replication
// and OUT_OF_DATE/UP_TO_DATE marking land.
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
  const size_t acked_at_stop = workload.acked();
  const size_t failed_at_stop = workload.failed();
  ASSERT_THAT(c.WaitForNodeState("S2", v1::NODE_DOWN, absl::Seconds(50)), IsOk());
  const absl::Duration detection = absl::Now() - stopped;
  std::cerr << "S2 declared DOWN " << absl::FormatDuration(detection) << " after SIGSTOP; "
            << workload.acked() - acked_at_stop << " commits acked and "
            << workload.failed() - failed_at_stop << " failed meanwhile\n";
  EXPECT_LE(detection, absl::Seconds(45));
  // Clients kept committing while it was stopped, and still do.
  EXPECT_GT(workload.acked(), acked_at_stop + 20);
  ASSERT_THAT(workload.WaitForAcked(workload.acked() + 50, absl::Seconds(20)), IsOk())
      << ledger.FailureSummary();
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

  // SIGCONT: it re-registers and serves again.
  ASSERT_THAT(c.Cont("S2"), IsOk());
  ASSERT_THAT(c.WaitForNodeState("S2", v1::NODE_RUNNING, absl::Seconds(15)), IsOk());
  ASSERT_THAT(c.WaitUntilRunning(), IsOk());
}

INSTANTIATE_TEST_SUITE_P(Backends, SigstopTest, ::testing::ValuesIn(Backends()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cellar::fault
