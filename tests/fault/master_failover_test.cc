// (f) kill -9 the primary master during commits, with a standby (2
// masters electing a primary with a PostgreSQL lease, --election_pg, lease
// 3 s; on SQLite the lease still lives in the test PostgreSQL server): the
// standby takes over within the lease, storages and clients move to it,
// commits resume, and the transactions in doubt at the kill (Finish lost
// with the old primary) end committed everywhere or nowhere: the checks'
// all-or-nothing rule on failed commits, and replicas equal. The old
// primary, restarted, is a standby.
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

class MasterFailoverTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() { common::SetMinLogSeverity(common::LogSeverity::kError); }
};

// (f) kill -9 the primary master during commits: a standby takes over,
// clients reconnect, and in-doubt transactions end committed everywhere or
// nowhere (Verify: a failed commit is all-or-nothing, replicas equal).
TEST_P(MasterFailoverTest, PrimaryKilledDuringCommitsStandbyTakesOver) {
  tools::ClusterTopology topology = DefaultTopology();
  topology.masters = 2;
  topology.election_pg = true;
  topology.master_flags = {"--election_lease=3s"};
  auto cluster = StartCluster(GetParam(), topology);
  ASSERT_THAT(cluster, IsOk());
  tools::ProcessCluster& c = **cluster;
  auto old_primary = c.WaitForPrimary(absl::Seconds(30));
  ASSERT_THAT(old_primary, IsOk());

  auto client = Connect(c, absl::Seconds(5));
  ASSERT_THAT(client, IsOk());
  CommitLedger ledger;
  Workload workload(client->get(), &ledger, {});
  Reader reader(client->get(), &ledger);
  workload.Start();
  reader.Start();
  ASSERT_THAT(workload.WaitForAcked(100, absl::Seconds(30)), IsOk());

  const uint64_t sessions = (*client)->session_count();
  ASSERT_THAT(c.Kill(*old_primary, SIGKILL), IsOk());
  const absl::Time killed = absl::Now();
  auto new_primary = c.WaitForPrimary(absl::Seconds(20));
  ASSERT_THAT(new_primary, IsOk());
  EXPECT_NE(*new_primary, *old_primary);
  std::cerr << *new_primary << " took over " << absl::FormatDuration(absl::Now() - killed)
            << " after the kill of " << *old_primary << "\n";
  ASSERT_THAT(c.WaitUntilRunning(), IsOk());
  ASSERT_THAT((*client)->AwaitSession(sessions + 1, absl::Seconds(30)), IsOk());
  ASSERT_THAT(workload.WaitForAcked(workload.acked() + 100, absl::Seconds(30)), IsOk())
      << ledger.FailureSummary();
  workload.Stop();
  reader.Stop();
  std::cerr << ledger.FailureSummary() << "\n";

  VerifyOptions all;
  all.require_all_cells = true;
  VerifyReport report = Verify(c, ledger, all);
  EXPECT_TRUE(report.ok()) << report.Summary();

  // The old primary comes back as a standby.
  ASSERT_THAT(c.Start(*old_primary), IsOk());
  auto primary = c.PrimaryMaster();
  ASSERT_THAT(primary, IsOk());
  EXPECT_EQ(*primary, *new_primary);
}

INSTANTIATE_TEST_SUITE_P(Backends, MasterFailoverTest, ::testing::ValuesIn(Backends()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cellar::fault
