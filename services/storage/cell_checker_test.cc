#include "services/storage/cell_checker.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/common/checksum.h"
#include "services/common/status_matchers.h"
#include "services/storage/testing/memory_backend.h"

namespace cellar::storage {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::cellar::storage::testing::MemoryBackend;

constexpr uint32_t kPartition = 1;

TransactionRecord Txn(uint64_t tid) {
  TransactionRecord t;
  t.partition = kPartition;
  t.tid = t.ttid = tid;
  t.description = "t";
  return t;
}

ObjectRecord Obj(uint64_t tid, uint64_t oid, std::string data) {
  ObjectRecord o;
  o.partition = kPartition;
  o.tid = tid;
  o.oid = oid;
  o.checksum = common::Checksum(data);
  o.data = std::move(data);
  return o;
}

// Transactions at tids 10, 20, ..., 100 with two objects each; tid 110
// has objects only (its record lives in another partition).
void Fill(MemoryBackend& backend) {
  std::vector<TransactionRecord> transactions;
  std::vector<ObjectRecord> objects;
  for (uint64_t tid = 10; tid <= 100; tid += 10) {
    transactions.push_back(Txn(tid));
    objects.push_back(Obj(tid, 1, "a" + std::to_string(tid)));
    objects.push_back(Obj(tid, 6, "b" + std::to_string(tid)));
  }
  objects.push_back(Obj(110, 11, "c"));
  ASSERT_THAT(backend.ImportCommitted(transactions, objects), IsOk());
}

CellCheckRequest Range(uint64_t min_tid, uint64_t max_tid, uint32_t cap = 0,
                       bool with_data = false) {
  CellCheckRequest r;
  r.partition = kPartition;
  r.min_tid = min_tid;
  r.max_tid = max_tid;
  r.max_transactions = cap;
  r.with_data = with_data;
  return r;
}

bool SameHashes(const CellCheckResult& a, const CellCheckResult& b) {
  return a.transaction_count == b.transaction_count && a.tid_hash == b.tid_hash &&
         a.object_count == b.object_count && a.oid_hash == b.oid_hash &&
         a.data_hash == b.data_hash && a.last_tid == b.last_tid;
}

TEST(CellCheckerTest, CountsWholeRange) {
  MemoryBackend backend;
  Fill(backend);
  absl::StatusOr<CellCheckResult> r = CellChecker(&backend).Check(Range(0, 1000));
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_EQ(r->transaction_count, 10u);
  EXPECT_EQ(r->object_count, 21u);
  EXPECT_EQ(r->last_tid, 1000u);
  EXPECT_EQ(r->tid_hash.size(), 20u);
  EXPECT_EQ(r->oid_hash.size(), 20u);
  EXPECT_TRUE(r->data_hash.empty());
}

TEST(CellCheckerTest, EqualReplicasHashEqualAndPagingDoesNotMatter) {
  MemoryBackend a, b;
  Fill(a);
  Fill(b);
  absl::StatusOr<CellCheckResult> ra = CellChecker(&a).Check(Range(0, 1000, 0, true));
  absl::StatusOr<CellCheckResult> rb =
      CellChecker(&b, /*object_page=*/1).Check(Range(0, 1000, 0, true));
  ASSERT_THAT(ra.status(), IsOk());
  ASSERT_THAT(rb.status(), IsOk());
  EXPECT_TRUE(SameHashes(*ra, *rb));
  EXPECT_EQ(ra->data_hash.size(), 20u);
}

TEST(CellCheckerTest, MissingTransactionRecordChangesTidHashOnly) {
  MemoryBackend a, b;
  Fill(a);
  std::vector<TransactionRecord> transactions;
  std::vector<ObjectRecord> objects;
  for (uint64_t tid = 10; tid <= 100; tid += 10) {
    if (tid != 50) transactions.push_back(Txn(tid));
    objects.push_back(Obj(tid, 1, "a" + std::to_string(tid)));
    objects.push_back(Obj(tid, 6, "b" + std::to_string(tid)));
  }
  objects.push_back(Obj(110, 11, "c"));
  ASSERT_THAT(b.ImportCommitted(transactions, objects), IsOk());
  absl::StatusOr<CellCheckResult> ra = CellChecker(&a).Check(Range(0, 1000));
  absl::StatusOr<CellCheckResult> rb = CellChecker(&b).Check(Range(0, 1000));
  ASSERT_THAT(ra.status(), IsOk());
  ASSERT_THAT(rb.status(), IsOk());
  EXPECT_EQ(rb->transaction_count, 9u);
  EXPECT_NE(ra->tid_hash, rb->tid_hash);
  EXPECT_EQ(ra->oid_hash, rb->oid_hash);
  // Outside the damaged range they agree.
  ra = CellChecker(&a).Check(Range(60, 1000));
  rb = CellChecker(&b).Check(Range(60, 1000));
  ASSERT_THAT(ra.status(), IsOk());
  ASSERT_THAT(rb.status(), IsOk());
  EXPECT_TRUE(SameHashes(*ra, *rb));
}

TEST(CellCheckerTest, DifferentDataShowsOnlyWithData) {
  MemoryBackend a, b;
  Fill(a);
  std::vector<TransactionRecord> transactions;
  std::vector<ObjectRecord> objects;
  for (uint64_t tid = 10; tid <= 100; tid += 10) {
    transactions.push_back(Txn(tid));
    objects.push_back(Obj(tid, 1, tid == 30 ? "changed" : "a" + std::to_string(tid)));
    objects.push_back(Obj(tid, 6, "b" + std::to_string(tid)));
  }
  objects.push_back(Obj(110, 11, "c"));
  ASSERT_THAT(b.ImportCommitted(transactions, objects), IsOk());
  absl::StatusOr<CellCheckResult> ra = CellChecker(&a).Check(Range(0, 1000));
  absl::StatusOr<CellCheckResult> rb = CellChecker(&b).Check(Range(0, 1000));
  ASSERT_THAT(ra.status(), IsOk());
  ASSERT_THAT(rb.status(), IsOk());
  EXPECT_TRUE(SameHashes(*ra, *rb));
  ra = CellChecker(&a).Check(Range(0, 1000, 0, true));
  rb = CellChecker(&b).Check(Range(0, 1000, 0, true));
  ASSERT_THAT(ra.status(), IsOk());
  ASSERT_THAT(rb.status(), IsOk());
  EXPECT_NE(ra->data_hash, rb->data_hash);
  EXPECT_EQ(ra->oid_hash, rb->oid_hash);
}

TEST(CellCheckerTest, CapCutsTheRange) {
  MemoryBackend backend;
  Fill(backend);
  CellChecker checker(&backend, /*object_page=*/3);
  absl::StatusOr<CellCheckResult> r = checker.Check(Range(0, 1000, 4));
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_EQ(r->transaction_count, 4u);
  EXPECT_EQ(r->object_count, 8u);
  EXPECT_EQ(r->last_tid, 40u);
  // Chunks walked one after the other cover everything once.
  uint64_t transactions = 0, objects = 0, min_tid = 0;
  for (int chunks = 0; chunks < 10; ++chunks) {
    r = checker.Check(Range(min_tid, 1000, 4));
    ASSERT_THAT(r.status(), IsOk());
    transactions += r->transaction_count;
    objects += r->object_count;
    if (r->last_tid == 1000) break;
    min_tid = r->last_tid + 1;
  }
  EXPECT_EQ(transactions, 10u);
  EXPECT_EQ(objects, 21u);
  // Objects alone (tid 110) count as a tid of the chunk.
  r = checker.Check(Range(100, 1000, 1));
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_EQ(r->last_tid, 100u);
  EXPECT_EQ(r->object_count, 2u);
}

TEST(CellCheckerTest, RefusesBadRequests) {
  MemoryBackend backend;
  EXPECT_THAT(CellChecker(&backend).Check(Range(5, 4)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(CellChecker(&backend).Check(Range(0, 4, kMaxCheckTransactions + 1)).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace cellar::storage
