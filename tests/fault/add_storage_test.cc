// Adding a storage to a live cluster under a steady stream of commits
// (tools/cluster add-storage, then Master.ChangePartitionTable ADD): the
// new node's cells catch up while clients keep committing to every
// partition, the FEEDING cells are dropped once their replacements are
// UP_TO_DATE, each node ends with the same number of cells, no
// acknowledged commit is lost and the replicas compare equal.
#include <iostream>
#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/clock.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/grpc_status.h"
#include "services/common/logging.h"
#include "services/common/status_matchers.h"
#include "tests/fault/fault_support.h"

namespace cellar::fault {
namespace {

using common::IsOk;

class AddStorageTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() { common::SetMinLogSeverity(common::LogSeverity::kError); }
};

absl::StatusOr<v1::ChangePartitionTableResponse> AddToTable(const tools::ProcessCluster& c,
                                                            uint32_t node_id) {
  absl::StatusOr<std::string> primary = c.PrimaryMaster();
  if (!primary.ok()) return primary.status();
  auto stub = v1::Master::NewStub(common::MakeChannel(c.address(*primary)));
  v1::ChangePartitionTableRequest request;
  request.set_operation(v1::PT_ADD);
  request.add_node_ids(node_id);
  v1::ChangePartitionTableResponse response;
  grpc::ClientContext context;
  common::SetDeadline(&context, absl::Seconds(10));
  absl::Status s = common::FromGrpcStatus(stub->ChangePartitionTable(&context, request, &response));
  if (!s.ok()) return s;
  return response;
}

TEST_P(AddStorageTest, NewStorageCatchesUpUnderSteadyCommits) {
  tools::ClusterTopology topology = DefaultTopology();
  topology.storages = 2;
  auto cluster = StartCluster(GetParam(), topology);
  ASSERT_THAT(cluster, IsOk());
  tools::ProcessCluster& c = **cluster;
  auto client = Connect(c);
  ASSERT_THAT(client, IsOk());
  CommitLedger ledger;
  Workload::Options options;
  options.threads = 3;
  Workload workload(client->get(), &ledger, options);
  workload.Start();
  ASSERT_THAT(workload.WaitForAcked(100, absl::Seconds(30)), IsOk()) << ledger.FailureSummary();

  absl::StatusOr<std::string> added = c.AddStorage("z3/h3/d1");
  ASSERT_THAT(added, IsOk());
  ASSERT_THAT(c.WaitForNodeState(*added, v1::NODE_PENDING, absl::Seconds(30)), IsOk());
  auto change = AddToTable(c, c.node_id(*added));
  ASSERT_THAT(change, IsOk());
  EXPECT_TRUE(change->applied());
  std::cerr << change->plan() << "\n";

  // The commits go on while the new cells catch up: they must converge
  // anyway (a commit planned with the new table writes to them).
  const size_t acked_at_add = workload.acked();
  const absl::Time added_at = absl::Now();
  ASSERT_THAT(WaitForAllCellsUpToDate(c, absl::Seconds(90)), IsOk());
  const size_t acked_during = workload.acked() - acked_at_add;
  std::cerr << "every cell UP_TO_DATE " << absl::FormatDuration(absl::Now() - added_at)
            << " after the add; " << acked_during << " commits acknowledged meanwhile\n";
  EXPECT_GT(acked_during, 0u) << "the workload stalled during the move";
  ASSERT_THAT(workload.WaitForAcked(workload.acked() + 50, absl::Seconds(30)), IsOk())
      << ledger.FailureSummary();
  workload.Stop();
  EXPECT_EQ(ledger.failed_other_than_lock_contention(), 0u) << ledger.FailureSummary();

  // 12 partitions x 2 copies over 3 nodes: 8 cells each, none FEEDING.
  for (const std::string& name : c.storage_names()) {
    auto cells = CellsOf(c, name);
    ASSERT_THAT(cells, IsOk());
    EXPECT_EQ(cells->size(), 8u) << name;
  }
  VerifyOptions all;
  all.require_all_cells = true;
  VerifyReport report = Verify(c, ledger, all);
  EXPECT_TRUE(report.ok()) << report.Summary();
}

INSTANTIATE_TEST_SUITE_P(Backends, AddStorageTest, ::testing::ValuesIn(Backends()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace cellar::fault
