// The sending side of replication: windows, chunk limits, paging inside
// one transaction, completeness markers, errors.
#include "services/storage/replication_source.h"

#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "services/common/checksum.h"
#include "services/common/status_matchers.h"
#include "services/storage/testing/memory_backend.h"

namespace cellar::storage {
namespace {

using common::IsOk;
using common::StatusIs;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr uint32_t kP = 3;

uint64_t Tid(int n) { return 0x03f1a2b300000000 + uint64_t(n) * 3 + 1; }  // partition 1

class ReplicationSourceTest : public ::testing::Test {
 protected:
  // A transaction of partition 1 at Tid(n) writing `oids` (all in
  // partition 1), each with `size` bytes of data.
  void Commit(int n, const std::vector<uint64_t>& oids, size_t size = 4) {
    TransactionRecord t;
    t.partition = 1;
    t.tid = Tid(n);
    t.ttid = Tid(n);
    t.user = "u";
    t.oids = oids;
    std::vector<ObjectRecord> objects;
    for (uint64_t oid : oids) {
      ObjectRecord o;
      o.partition = static_cast<uint32_t>(oid % kP);
      o.oid = oid;
      o.tid = Tid(n);
      o.data = std::string(size, static_cast<char>('a' + n % 26));
      o.checksum = common::Checksum(o.data);
      objects.push_back(std::move(o));
    }
    ASSERT_THAT(backend_.ImportCommitted({t}, objects), IsOk());
    all_tids_.push_back(Tid(n));
  }

  // Streams partition 1 over [min, max] and checks the invariants every
  // stream must keep; returns the chunks.
  std::vector<ReplicationChunk> Stream(uint64_t min, uint64_t max, ChunkLimits limits) {
    std::vector<ReplicationChunk> chunks;
    absl::Status s = StreamPartition(backend_, 1, min, max, limits,
                                     [&](ReplicationChunk c) {
                                       chunks.push_back(std::move(c));
                                       return absl::OkStatus();
                                     });
    EXPECT_THAT(s, IsOk());
    // Order, limits and completeness markers.
    uint64_t last_tid = 0, last_oid = 0, last_complete = 0;
    std::set<uint64_t> transactions_seen;
    for (const ReplicationChunk& c : chunks) {
      EXPECT_LE(c.transactions.size() + c.objects.size(), limits.max_records);
      for (const TransactionRecord& t : c.transactions) {
        EXPECT_GE(t.tid, min);
        EXPECT_LE(t.tid, max);
        EXPECT_TRUE(transactions_seen.insert(t.tid).second) << "sent twice";
      }
      for (const ObjectRecord& o : c.objects) {
        EXPECT_TRUE(o.tid > last_tid || (o.tid == last_tid && o.oid > last_oid))
            << "objects out of (tid, oid) order";
        last_tid = o.tid;
        last_oid = o.oid;
        EXPECT_GT(o.tid, last_complete) << "object below a completed window";
      }
      if (c.complete_through != 0) {
        EXPECT_GT(c.complete_through, last_complete);
        // Everything at or below the mark has been sent.
        for (uint64_t tid : all_tids_) {
          if (tid >= min && tid <= c.complete_through) {
            EXPECT_TRUE(transactions_seen.count(tid)) << "window incomplete";
          }
        }
        last_complete = c.complete_through;
      }
    }
    if (!chunks.empty()) {
      EXPECT_EQ(chunks.back().complete_through, max) << "the stream must end complete";
    }
    return chunks;
  }

  static size_t Count(const std::vector<ReplicationChunk>& chunks, bool objects) {
    size_t n = 0;
    for (const auto& c : chunks) n += objects ? c.objects.size() : c.transactions.size();
    return n;
  }

  testing::MemoryBackend backend_;
  std::vector<uint64_t> all_tids_;
};

TEST_F(ReplicationSourceTest, EmptyRangeIsOneCompleteChunk) {
  auto chunks = Stream(Tid(1), Tid(5), ChunkLimits{});
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_THAT(chunks[0].transactions, IsEmpty());
  EXPECT_THAT(chunks[0].objects, IsEmpty());
  EXPECT_EQ(chunks[0].complete_through, Tid(5));
}

TEST_F(ReplicationSourceTest, SmallChunksCoverTheRangeInOrder) {
  for (int n = 1; n <= 10; ++n) Commit(n, {1, 4});
  Commit(11, {2});  // another partition's object in a partition-1 record
  ChunkLimits limits;
  limits.max_records = 3;
  auto chunks = Stream(0, Tid(20), limits);
  EXPECT_EQ(Count(chunks, false), 11u);
  EXPECT_EQ(Count(chunks, true), 20u);  // oid 2 lives in partition 2
  EXPECT_GT(chunks.size(), 10u);
  // A sub-range starts where asked.
  chunks = Stream(Tid(4), Tid(6), limits);
  EXPECT_EQ(Count(chunks, false), 3u);
  EXPECT_EQ(Count(chunks, true), 6u);
  EXPECT_EQ(chunks.front().transactions.front().tid, Tid(4));
}

TEST_F(ReplicationSourceTest, OneRecordPerChunk) {
  for (int n = 1; n <= 4; ++n) Commit(n, {1, 4, 7});
  ChunkLimits limits;
  limits.max_records = 1;
  auto chunks = Stream(0, Tid(4), limits);
  EXPECT_EQ(Count(chunks, false), 4u);
  EXPECT_EQ(Count(chunks, true), 12u);
  // Every transaction ends a window: resume granularity of one tid.
  int marks = 0;
  for (const auto& c : chunks) marks += c.complete_through != 0;
  EXPECT_GE(marks, 4);
}

TEST_F(ReplicationSourceTest, ATransactionBiggerThanAPageIsPagedByOid) {
  std::vector<uint64_t> oids;
  for (uint64_t i = 0; i < 250; ++i) oids.push_back(1 + 3 * i);
  Commit(1, oids);
  Commit(2, {1});
  auto chunks = Stream(0, Tid(3), ChunkLimits{});
  EXPECT_EQ(Count(chunks, true), 251u);
  EXPECT_EQ(Count(chunks, false), 2u);
}

TEST_F(ReplicationSourceTest, ByteLimitCutsChunks) {
  Commit(1, {1, 4, 7, 10, 13, 16}, /*size=*/1000);
  ChunkLimits limits;
  limits.max_bytes = 2500;
  auto chunks = Stream(0, Tid(1), limits);
  EXPECT_EQ(Count(chunks, true), 6u);
  for (const auto& c : chunks) EXPECT_LE(c.objects.size(), 3u);
  EXPECT_GE(chunks.size(), 3u);
}

TEST_F(ReplicationSourceTest, EmitErrorStopsTheStream) {
  for (int n = 1; n <= 5; ++n) Commit(n, {1});
  ChunkLimits limits;
  limits.max_records = 1;
  int calls = 0;
  absl::Status s = StreamPartition(backend_, 1, 0, Tid(5), limits, [&](ReplicationChunk) {
    return ++calls == 2 ? absl::CancelledError("receiver gone") : absl::OkStatus();
  });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(calls, 2);
}

TEST_F(ReplicationSourceTest, BadArguments) {
  auto ignore = [](ReplicationChunk) { return absl::OkStatus(); };
  EXPECT_THAT(StreamPartition(backend_, 1, Tid(2), Tid(1), ChunkLimits{}, ignore),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ChunkLimits zero;
  zero.max_records = 0;
  EXPECT_THAT(StreamPartition(backend_, 1, 0, Tid(1), zero, ignore),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace cellar::storage
