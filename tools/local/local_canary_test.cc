// `cellar local --canary_storages=N` (LocalClusterOptions::canary_storages):
// the bounds it refuses, and a cluster whose canary storage registers on
// track canary, is added once the cluster runs (extra cells only, every
// partition keeping its replicas on the stable storages) and, on a restart
// on the same data, is not added twice.

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.pb.h"
#include "services/common/logging.h"
#include "tools/local/local_cluster.h"

namespace cellar::tools {
namespace {

namespace v1 = ::cellar::v1;

LocalClusterOptions Valid() {
  LocalClusterOptions options;
  options.storages = 2;
  options.canary_storages = 1;
  return options;
}

void ExpectRefused(const LocalClusterOptions& options, const std::string& says) {
  const absl::Status s = LocalCluster::ValidateOptions(options);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(says), std::string::npos) << s;
}

TEST(LocalCanaryTest, CanaryStoragesOutsideTheBoundsAreRefused) {
  LocalClusterOptions options = Valid();
  options.canary_storages = 0;
  EXPECT_TRUE(LocalCluster::ValidateOptions(options).ok());
  options.canary_storages = LocalCluster::kMaxCanaryStorages;
  EXPECT_TRUE(LocalCluster::ValidateOptions(options).ok());

  options.canary_storages = LocalCluster::kMaxCanaryStorages + 1;
  ExpectRefused(options, "canary_storages: must be within 0..8, got 9");
  options.canary_storages = -1;
  ExpectRefused(options, "canary_storages: must be within 0..8, got -1");
  // Start refuses them too, before starting anything.
  EXPECT_EQ(LocalCluster::Start(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LocalCanaryTest, TheCanaryFaultRatioIsBoundedAndNeedsACanary) {
  LocalClusterOptions options = Valid();
  options.canary_fault_load_error_ratio = 1;
  EXPECT_TRUE(LocalCluster::ValidateOptions(options).ok());
  options.canary_fault_load_error_ratio = 1.5;
  ExpectRefused(options, "canary_fault_load_error_ratio: must be within 0..1");
  options.canary_fault_load_error_ratio = -0.1;
  ExpectRefused(options, "canary_fault_load_error_ratio: must be within 0..1");
  options.canary_fault_load_error_ratio = std::nan("");
  ExpectRefused(options, "canary_fault_load_error_ratio: must be within 0..1");
  options.canary_fault_load_error_ratio = 0.3;
  options.canary_storages = 0;
  ExpectRefused(options, "no canary storage");
}

TEST(LocalCanaryTest, OneBackendPerStorageCanariesIncluded) {
  LocalClusterOptions options = Valid();
  options.storage_backends = {"sqlite:///tmp/a.db", "sqlite:///tmp/b.db"};
  ExpectRefused(options, "one URI per storage, the canary storages' last (3), got 2");
  options.storage_backends.push_back("sqlite:///tmp/c.db");
  EXPECT_TRUE(LocalCluster::ValidateOptions(options).ok());
}

// The cells of `node_id` in the master's table, and whether every
// partition keeps R+1 cells on the other (stable) storages.
struct Cells {
  int on_node = 0;
  int up_to_date_on_node = 0;
  bool replicas_on_stable = true;
};
Cells CellsOf(LocalCluster& cluster, uint32_t node_id) {
  const v1::PartitionTable pt = cluster.master().cluster()->Info().partition_table();
  Cells out;
  for (const v1::PartitionRow& row : pt.rows()) {
    int stable = 0;
    for (const v1::Cell& cell : row.cells()) {
      if (cell.node_id() == node_id) {
        ++out.on_node;
        if (cell.state() == v1::CELL_UP_TO_DATE) ++out.up_to_date_on_node;
      } else {
        ++stable;
      }
    }
    if (stable != static_cast<int>(pt.num_replicas()) + 1) out.replicas_on_stable = false;
  }
  return out;
}

v1::NodeInfo NodeOf(LocalCluster& cluster, uint32_t node_id) {
  const v1::GetClusterInfoResponse info = cluster.master().cluster()->Info();
  for (const v1::NodeInfo& n : info.nodes()) {
    if (n.node_id() == node_id) return n;
  }
  return v1::NodeInfo();
}

TEST(LocalCanaryTest, TheCanaryIsAddedOnceAndHoldsExtraCells) {
  common::SetMinLogSeverity(common::LogSeverity::kWarning);
  LocalClusterOptions options;
  options.data_dir = absl::StrCat(::testing::TempDir(), "/local_canary_test.", getpid());
  options.storages = 2;
  options.canary_storages = 1;
  options.replicas = 1;
  options.partitions = 4;
  {
    auto started = LocalCluster::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    LocalCluster& cluster = **started;
    ASSERT_EQ(cluster.num_storages(), 3);
    EXPECT_FALSE(cluster.storage_is_canary(1));
    ASSERT_TRUE(cluster.storage_is_canary(2));
    const uint32_t canary = cluster.storage_node_id(2);
    EXPECT_EQ(cluster.added_canaries(), std::vector<uint32_t>{canary});
    const v1::NodeInfo node = NodeOf(cluster, canary);
    EXPECT_EQ(node.track(), "canary");
    EXPECT_EQ(node.state(), v1::NODE_RUNNING);
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(NodeOf(cluster, cluster.storage_node_id(i)).track(), "stable");
    }
    // One extra cell per partition (a single canary), catching up from the
    // stable cells; every partition keeps its 2 stable cells.
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    Cells cells = CellsOf(cluster, canary);
    while (cells.up_to_date_on_node < 4 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(50));
      cells = CellsOf(cluster, canary);
    }
    EXPECT_EQ(cells.on_node, 4);
    EXPECT_EQ(cells.up_to_date_on_node, 4) << "the canary's cells did not catch up in 30 s";
    EXPECT_TRUE(cells.replicas_on_stable);
  }
  // The same data again: the canary is back with its cells (in the table
  // already: nothing to add) and on its own file.
  EXPECT_EQ(access((options.data_dir + "/canary-0.db").c_str(), F_OK), 0);
  auto again = LocalCluster::Start(options);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE((*again)->added_canaries().empty());
  const uint32_t canary = (*again)->storage_node_id(2);
  EXPECT_EQ(NodeOf(**again, canary).track(), "canary");
  EXPECT_EQ(CellsOf(**again, canary).on_node, 4);
}

}  // namespace
}  // namespace cellar::tools
