#include "services/common/partition_table.h"

#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/common/status_matchers.h"

namespace cellar::common {
namespace {

using ::cellar::v1::CELL_DISCARDED;
using ::cellar::v1::CELL_OUT_OF_DATE;
using ::cellar::v1::CELL_UP_TO_DATE;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

TEST(PartitionTableTest, BalancedTableSpreadsCellsEvenly) {
  auto pt = PartitionTable::MakeBalanced(12, 1, {1, 2, 3});
  ASSERT_TRUE(pt.ok()) << pt.status();
  EXPECT_EQ(pt->ptid(), 1u);
  std::map<uint32_t, int> per_node;
  for (uint32_t p = 0; p < 12; ++p) {
    ASSERT_EQ(pt->Row(p).size(), 2u);
    EXPECT_NE(pt->Row(p)[0].node_id, pt->Row(p)[1].node_id);
    for (const PtCell& c : pt->Row(p)) ++per_node[c.node_id];
  }
  EXPECT_EQ(per_node[1], 8);
  EXPECT_EQ(per_node[2], 8);
  EXPECT_EQ(per_node[3], 8);
  EXPECT_TRUE(pt->IsOperational({1, 2, 3}));
}

TEST(PartitionTableTest, FewerNodesThanCopies) {
  auto pt = PartitionTable::MakeBalanced(4, 2, {7});
  ASSERT_TRUE(pt.ok());
  for (uint32_t p = 0; p < 4; ++p) EXPECT_EQ(pt->Row(p).size(), 1u);
  EXPECT_THAT(PartitionTable::MakeBalanced(4, 1, {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(PartitionTable::MakeBalanced(0, 1, {1}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PartitionTableTest, ProtoRoundTripAndValidation) {
  auto pt = PartitionTable::MakeBalanced(3, 1, {1, 2});
  ASSERT_TRUE(pt.ok());
  auto back = PartitionTable::FromProto(pt->ToProto());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToProto().SerializeAsString(), pt->ToProto().SerializeAsString());

  ::cellar::v1::PartitionTable bad = pt->ToProto();
  bad.mutable_rows(0)->add_cells()->set_node_id(bad.rows(0).cells(0).node_id());
  bad.mutable_rows(0)->mutable_cells(2)->set_state(CELL_UP_TO_DATE);
  EXPECT_THAT(PartitionTable::FromProto(bad), StatusIs(absl::StatusCode::kInvalidArgument));
  bad = pt->ToProto();
  bad.mutable_rows(1)->set_partition(9);
  EXPECT_THAT(PartitionTable::FromProto(bad), StatusIs(absl::StatusCode::kInvalidArgument));
}

// Found by fuzz/client_events: a table claiming 3.5e9 partitions made the
// client (and the master, from a registering storage) allocate ~80 GB.
TEST(PartitionTableTest, HugePartitionCountIsRefusedBeforeAllocating) {
  ::cellar::v1::PartitionTable huge;
  huge.set_ptid(7);
  huge.set_num_partitions(0xfffffff0);
  EXPECT_THAT(PartitionTable::FromProto(huge), StatusIs(absl::StatusCode::kInvalidArgument));
  huge.set_num_partitions(kMaxPartitions + 1);
  EXPECT_THAT(PartitionTable::FromProto(huge), StatusIs(absl::StatusCode::kInvalidArgument));
  huge.set_num_partitions(kMaxPartitions);
  EXPECT_TRUE(PartitionTable::FromProto(huge).ok());
}

TEST(PartitionTableTest, DeltasApplyInOrderAndGapsAreRefused) {
  auto pt = PartitionTable::MakeBalanced(2, 1, {1, 2});
  ASSERT_TRUE(pt.ok());
  ::cellar::v1::PartitionTableDelta delta;
  delta.set_ptid(2);
  auto* c = delta.add_changes();
  c->set_partition(0);
  c->set_node_id(2);
  c->set_state(CELL_OUT_OF_DATE);
  ASSERT_THAT(pt->ApplyDelta(delta), IsOk());
  EXPECT_EQ(pt->ptid(), 2u);
  EXPECT_THAT(pt->ReadableNodes(0), ElementsAre(1));
  EXPECT_THAT(pt->WritableNodes(0), UnorderedElementsAre(1, 2));

  EXPECT_THAT(pt->ApplyDelta(delta), StatusIs(absl::StatusCode::kFailedPrecondition));
  delta.set_ptid(3);
  delta.mutable_changes(0)->set_state(CELL_DISCARDED);
  ASSERT_THAT(pt->ApplyDelta(delta), IsOk());
  EXPECT_THAT(pt->WritableNodes(0), ElementsAre(1));
}

TEST(PartitionTableTest, OperationalNeedsAReadableCellOnARunningNode) {
  auto pt = PartitionTable::MakeBalanced(2, 0, {1, 2});
  ASSERT_TRUE(pt.ok());
  EXPECT_TRUE(pt->IsOperational({1, 2}));
  EXPECT_FALSE(pt->IsOperational({1}));
  pt->SetCell(0, 2, CELL_OUT_OF_DATE);
  EXPECT_THAT(pt->ToGrid(), ::testing::HasSubstr("U"));
}

}  // namespace
}  // namespace cellar::common
