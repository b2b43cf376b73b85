#include "services/common/storage_sizes.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace cellar::common {
namespace {

::cellar::v1::PartitionStats Cell(uint32_t partition, bool readable, uint64_t objects,
                                  uint64_t revisions, uint64_t bytes) {
  ::cellar::v1::PartitionStats p;
  p.set_partition(partition);
  p.set_readable(readable);
  p.set_objects(objects);
  p.set_revisions(revisions);
  p.set_bytes(bytes);
  return p;
}

TEST(StorageSizesTest, NodesSumTheirReadableCellsTheTotalCountsEachPartitionOnce) {
  // 3 partitions, 2 replicas: S1 {0, 1}, S2 {1, 2 (out of date)}, S3 {0, 2}.
  ::cellar::v1::GetPartitionStatsResponse s1, s2, s3;
  *s1.add_partitions() = Cell(0, true, 10, 20, 1000);
  *s1.add_partitions() = Cell(1, true, 5, 6, 100);
  *s2.add_partitions() = Cell(1, true, 5, 6, 100);
  *s2.add_partitions() = Cell(2, false, 1, 1, 1);  // partial: not counted
  *s3.add_partitions() = Cell(0, true, 10, 20, 1000);
  *s3.add_partitions() = Cell(2, true, 7, 8, 70);
  ClusterSizes sizes = SumClusterSizes(3, {{3, s3}, {1, s1}, {2, s2}});
  ASSERT_EQ(sizes.nodes.size(), 3u);
  EXPECT_EQ(sizes.nodes[0].node_id, 1u);
  EXPECT_EQ(sizes.nodes[0].sizes.objects, 15u);
  EXPECT_EQ(sizes.nodes[0].sizes.revisions, 26u);
  EXPECT_EQ(sizes.nodes[0].sizes.bytes, 1100u);
  EXPECT_EQ(sizes.nodes[0].readable_cells, 2u);
  EXPECT_EQ(sizes.nodes[1].sizes.objects, 5u) << "the out-of-date cell is not counted";
  EXPECT_EQ(sizes.nodes[1].readable_cells, 1u);
  EXPECT_EQ(sizes.nodes[2].sizes.bytes, 1070u);
  EXPECT_EQ(sizes.partitions_counted, 3u);
  EXPECT_EQ(sizes.total.objects, 22u);
  EXPECT_EQ(sizes.total.revisions, 34u);
  EXPECT_EQ(sizes.total.bytes, 1170u);
}

TEST(StorageSizesTest, ASilentStorageHasNoSizesAndThePartitionsOnlyItHoldsAreMissing) {
  ::cellar::v1::GetPartitionStatsResponse s1;
  *s1.add_partitions() = Cell(0, true, 1, 2, 3);
  *s1.add_partitions() = Cell(7, true, 1, 1, 1);  // beyond num_partitions: not in the total
  ClusterSizes sizes =
      SumClusterSizes(2, {{1, s1}, {2, absl::DeadlineExceededError("too slow")}});
  ASSERT_EQ(sizes.nodes.size(), 2u);
  EXPECT_TRUE(sizes.nodes[0].status.ok());
  EXPECT_EQ(sizes.nodes[1].status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(sizes.nodes[1].sizes.objects, 0u);
  EXPECT_EQ(sizes.partitions_counted, 1u);
  EXPECT_EQ(sizes.num_partitions, 2u);
  EXPECT_EQ(sizes.total.objects, 1u);
}

TEST(StorageSizesTest, HumanBytes) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(5ull << 30), "5.0 GiB");
  EXPECT_EQ(HumanBytes(~0ull), "16.0 EiB");
}

}  // namespace
}  // namespace cellar::common
