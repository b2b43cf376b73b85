#include "services/storage/packer.h"

#include <cstdint>
#include <memory>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "services/common/status_matchers.h"
#include "services/storage/backend/storage_backend.h"
#include "services/storage/testing/memory_backend.h"

namespace cellar::storage {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::cellar::storage::testing::MemoryBackend;
using ::cellar::storage::testing::MemoryStore;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr uint32_t kPartitions = 3;
constexpr uint64_t kOids = 20;
constexpr int kTxns = 10;

uint64_t Tid(int n) { return 1000 + uint64_t(n) * 16; }

// kTxns transactions, each writing every oid once.
void Fill(StorageBackend& backend) {
  for (int t = 1; t <= kTxns; ++t) {
    VoteRecord v;
    v.ttid = Tid(t);
    for (uint64_t oid = 1; oid <= kOids; ++oid) {
      ObjectRecord o;
      o.partition = oid % kPartitions;
      o.oid = oid;
      o.data = absl::StrCat("oid ", oid, " txn ", t);
      o.checksum = std::string(20, 'c');
      v.objects.push_back(o);
    }
    ASSERT_THAT(backend.StoreVotes({v}), IsOk());
    ASSERT_THAT(backend.LockTransactions({LockRecord{Tid(t), Tid(t)}}), IsOk());
  }
}

// Whether a chunk ran (an error fails the test).
bool Ran(absl::StatusOr<bool> worked) {
  EXPECT_THAT(worked, IsOk());
  return worked.ok() && *worked;
}

std::vector<uint32_t> AllPartitions() { return {0, 1, 2}; }

struct Node {
  std::unique_ptr<MemoryBackend> backend;
  std::unique_ptr<Packer> packer;
  int chunks = 0;
};

void OpenNode(std::shared_ptr<MemoryStore> store, Node* node) {
  node->packer.reset();
  node->backend.reset();
  auto backend = MemoryBackend::Open(store);
  ASSERT_THAT(backend, IsOk());
  node->backend = std::move(*backend);
  PackerOptions options;
  options.chunk_items = 2;
  auto packer = Packer::Open(node->backend.get(), options, AllPartitions,
                             [node](const PackChunk&) { ++node->chunks; });
  ASSERT_THAT(packer, IsOk());
  node->packer = std::move(*packer);
}

TEST(PackerTest, RequestIsValidatedAndOnlyRises) {
  auto store = std::make_shared<MemoryStore>();
  Node node;
  ASSERT_NO_FATAL_FAILURE(OpenNode(store, &node));
  ASSERT_NO_FATAL_FAILURE(Fill(*node.backend));
  EXPECT_THAT(node.packer->Request(0), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(node.packer->Status().pack_tid, 0u);
  EXPECT_FALSE(Ran(node.packer->RunOneChunk()));
  ASSERT_THAT(node.packer->Request(Tid(5)), IsOk());
  ASSERT_THAT(node.packer->Request(Tid(3)), IsOk());
  EXPECT_EQ(node.packer->Status().pack_tid, Tid(5));
  EXPECT_THAT(node.packer->Status().pending_partitions, ElementsAre(0, 1, 2));
  // The request is persisted: a restarted node still has it.
  ASSERT_NO_FATAL_FAILURE(OpenNode(store, &node));
  EXPECT_EQ(node.packer->Status().pack_tid, Tid(5));
  ASSERT_THAT(node.packer->RunUntilIdle(), IsOk());
  PackStatus s = node.packer->Status();
  EXPECT_THAT(s.pending_partitions, IsEmpty());
  EXPECT_THAT(s.done_partitions, ElementsAre(0, 1, 2));
  EXPECT_EQ(s.rows_removed, kOids * 4);
  EXPECT_EQ(node.packer->PackedTid(1), Tid(5));
  // A higher tid packs again, from the start.
  ASSERT_THAT(node.packer->Request(Tid(7)), IsOk());
  ASSERT_THAT(node.packer->RunUntilIdle(), IsOk());
  EXPECT_EQ(node.packer->Status().rows_removed, kOids * 6);
}

// A cell created anew (its data deleted, replicated again) is packed
// again, also after a restart.
TEST(PackerTest, AForgottenPartitionIsPackedAgain) {
  auto store = std::make_shared<MemoryStore>();
  Node node;
  ASSERT_NO_FATAL_FAILURE(OpenNode(store, &node));
  ASSERT_NO_FATAL_FAILURE(Fill(*node.backend));
  ASSERT_THAT(node.packer->Request(Tid(8)), IsOk());
  ASSERT_THAT(node.packer->RunUntilIdle(), IsOk());
  EXPECT_THAT(node.packer->Status().pending_partitions, IsEmpty());
  // Partition 1 is dropped and refilled with unpacked revisions.
  ASSERT_THAT(node.backend->DeletePartition(1), IsOk());
  ASSERT_THAT(node.packer->ForgetPartition(1), IsOk());
  EXPECT_EQ(node.packer->PackedTid(1), 0u);
  ASSERT_NO_FATAL_FAILURE(OpenNode(store, &node));
  EXPECT_THAT(node.packer->Status().pending_partitions, ElementsAre(1));
  std::vector<ObjectRecord> refill;
  for (int t = 1; t <= kTxns; ++t) {
    ObjectRecord o;
    o.partition = 1;
    o.oid = 1;
    o.tid = Tid(t);
    o.data = "again";
    o.checksum = std::string(20, 'c');
    refill.push_back(o);
  }
  ASSERT_THAT(node.backend->ImportCommitted({}, refill), IsOk());
  ASSERT_THAT(node.packer->RunUntilIdle(), IsOk());
  EXPECT_EQ(node.packer->Status().rows_removed, 7u);
  EXPECT_THAT(node.packer->Status().pending_partitions, IsEmpty());
}

// A node restarted in the middle of a pack goes on from the saved
// positions (fewer chunks than a pack from the start) and finishes.
TEST(PackerTest, RestartMidPackResumesAndFinishes) {
  // The whole pack without a restart, for the chunk count.
  int uninterrupted;
  {
    Node node;
    ASSERT_NO_FATAL_FAILURE(OpenNode(std::make_shared<MemoryStore>(), &node));
    ASSERT_NO_FATAL_FAILURE(Fill(*node.backend));
    ASSERT_THAT(node.packer->Request(Tid(8)), IsOk());
    ASSERT_THAT(node.packer->RunUntilIdle(), IsOk());
    uninterrupted = node.chunks;
  }
  ASSERT_GT(uninterrupted, 6);

  auto store = std::make_shared<MemoryStore>();
  Node node;
  ASSERT_NO_FATAL_FAILURE(OpenNode(store, &node));
  ASSERT_NO_FATAL_FAILURE(Fill(*node.backend));
  ASSERT_THAT(node.packer->Request(Tid(8)), IsOk());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Ran(node.packer->RunOneChunk()));
  const uint64_t removed_before = node.packer->Status().rows_removed;
  EXPECT_GT(removed_before, 0u);
  ASSERT_NO_FATAL_FAILURE(OpenNode(store, &node));  // the restart
  node.chunks = 0;
  PackStatus s = node.packer->Status();
  EXPECT_EQ(s.pack_tid, Tid(8));
  EXPECT_FALSE(s.pending_partitions.empty());
  ASSERT_THAT(node.packer->RunUntilIdle(), IsOk());
  EXPECT_EQ(node.chunks, uninterrupted - 5);
  EXPECT_EQ(removed_before + node.packer->Status().rows_removed, kOids * 7);
  EXPECT_THAT(node.packer->Status().pending_partitions, IsEmpty());
  // Every oid keeps its revisions from the one current at the pack tid.
  for (uint64_t oid = 1; oid <= kOids; ++oid) {
    auto history = node.backend->History(oid % kPartitions, oid, 100);
    ASSERT_THAT(history, IsOk());
    EXPECT_EQ(history->size(), 3u) << oid;
  }
}

// The background thread packs without being driven.
TEST(PackerTest, ThreadPacksInTheBackground) {
  auto store = std::make_shared<MemoryStore>();
  Node node;
  ASSERT_NO_FATAL_FAILURE(OpenNode(store, &node));
  ASSERT_NO_FATAL_FAILURE(Fill(*node.backend));
  node.packer->Start();
  ASSERT_THAT(node.packer->Request(Tid(8)), IsOk());
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!node.packer->Status().pending_partitions.empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_THAT(node.packer->Status().pending_partitions, IsEmpty())
      << "the pack did not finish within 30 s";
  EXPECT_EQ(node.packer->Status().rows_removed, kOids * 7);
  node.packer->Stop();
}

}  // namespace
}  // namespace cellar::storage
