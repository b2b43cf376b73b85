// (g) Clients report unreachable storages (Master.ReportUnreachable).
//
// A storage is SIGSTOPped (its connections stay open: calls to it time
// out). A client keeps loading every object; loads that try the stopped
// node first fail over to the other replica after the client's deadline
// (1 s here). With reports on, that client tells the master, which probes
// the storage itself (--unreachable_probe_timeout=1s) and marks it DOWN
// within seconds; the heartbeat timeout is raised to 20 s so that the two
// detectors are far apart. With reports off (the comparison), the same
// scenario takes the heartbeat timeout. Both print the time measured.
#include <iostream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/logging.h"
#include "services/common/status_matchers.h"
#include "tests/fault/fault_support.h"

namespace cellar::fault {
namespace {

using common::IsOk;

constexpr absl::Duration kHeartbeatTimeout = absl::Seconds(20);
constexpr int kObjects = 36;  // over 12 partitions: every storage holds some

class UnreachableReportTest : public ::testing::TestWithParam<bool> {
 protected:
  static void SetUpTestSuite() { common::SetMinLogSeverity(common::LogSeverity::kError); }
};

TEST_P(UnreachableReportTest, AStoppedStorageIsDownWithinSecondsWhenClientsReportIt) {
  const bool report = GetParam();
  tools::ClusterTopology topology = DefaultTopology();
  topology.master_flags = {
      absl::StrCat("--heartbeat_timeout=", absl::FormatDuration(kHeartbeatTimeout)),
      "--unreachable_probe_timeout=1s", "--unreachable_probe_interval=1s"};
  auto cluster = StartCluster("sqlite", topology);
  ASSERT_THAT(cluster, IsOk());
  tools::ProcessCluster& c = **cluster;
  auto client = Connect(c, /*rpc_timeout=*/absl::Seconds(1), /*cache_bytes=*/0, report);
  ASSERT_THAT(client, IsOk());
  std::vector<uint64_t> oids;
  {
    auto txn = (*client)->NewTransaction();
    for (int i = 0; i < kObjects; ++i) {
      absl::StatusOr<uint64_t> oid = (*client)->NewOid();
      ASSERT_THAT(oid, IsOk());
      txn->Store(*oid, 0, absl::StrCat("object ", i));
      oids.push_back(*oid);
    }
    ASSERT_THAT(txn->Commit(), IsOk());
  }

  ASSERT_THAT(c.Stop("S2"), IsOk());
  const absl::Time stopped = absl::Now();
  const absl::Time give_up = stopped + kHeartbeatTimeout + absl::Seconds(30);
  bool down = false;
  int loads = 0;
  while (!down && absl::Now() < give_up) {
    for (uint64_t oid : oids) {
      absl::StatusOr<client::LoadResult> loaded = (*client)->Load(oid);
      ++loads;
      ASSERT_THAT(loaded, IsOk()) << "a load must fail over to the other replica";
    }
    down = c.WaitForNodeState("S2", v1::NODE_DOWN, absl::ZeroDuration()).ok();
  }
  const absl::Duration detection = absl::Now() - stopped;
  ASSERT_TRUE(down) << "S2 not DOWN " << absl::FormatDuration(detection) << " after SIGSTOP";
  std::cerr << "client reports " << (report ? "on" : "off") << ": S2 declared DOWN "
            << absl::FormatDuration(detection) << " after SIGSTOP (heartbeat timeout "
            << absl::FormatDuration(kHeartbeatTimeout) << "; " << loads << " loads, "
            << (*client)->stats().unreachable_reports << " reports)\n";
  if (report) {
    // Client deadline (1 s) + probe deadline (1 s) + a load round, with
    // room for a slow machine: well before the heartbeat timeout.
    EXPECT_LT(detection, kHeartbeatTimeout / 2);
    EXPECT_GE((*client)->stats().unreachable_reports, 1u);
  } else {
    EXPECT_GE(detection, kHeartbeatTimeout - absl::Seconds(3));
    EXPECT_EQ((*client)->stats().unreachable_reports, 0u);
  }
  auto info = c.ClusterInfo();
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->cluster_state(), v1::CLUSTER_RUNNING);
  EXPECT_TRUE(info->operational());
  // Once DOWN its cells are OUT_OF_DATE: loads no longer wait for it.
  const absl::Time after = absl::Now();
  for (uint64_t oid : oids) ASSERT_THAT((*client)->Load(oid), IsOk());
  EXPECT_LT(absl::Now() - after, absl::Seconds(1) * (kObjects / 2));

  // SIGCONT: it registers again and catches up.
  ASSERT_THAT(c.Cont("S2"), IsOk());
  ASSERT_THAT(c.WaitForNodeState("S2", v1::NODE_RUNNING, absl::Seconds(30)), IsOk());
  ASSERT_THAT(WaitForAllCellsUpToDate(c, absl::Seconds(60)), IsOk());
}

INSTANTIATE_TEST_SUITE_P(Reports, UnreachableReportTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "On" : "Off"; });

}  // namespace
}  // namespace cellar::fault
