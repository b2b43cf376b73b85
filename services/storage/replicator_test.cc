// The receiving side of replication, with a fake master and in-memory
// sources: chunked copy, the master's known tid, checksum failures and
// broken streams moving to the next source, resuming from the stored
// progress after a restart, the pause hook, more rounds while
// transactions are in flight, throttling.
#include "services/storage/replicator.h"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "services/common/checksum.h"
#include "services/common/errors.h"
#include "services/common/status_matchers.h"
#include "services/storage/replication_source.h"
#include "services/storage/storage_metrics.h"
#include "services/storage/testing/memory_backend.h"

namespace cellar::storage {
namespace {

using common::IsOk;
using common::StatusIs;
using ::testing::ElementsAre;
using ::testing::SizeIs;

constexpr uint32_t kP = 3;
constexpr uint32_t kPartition = 1;

uint64_t Tid(int n) { return 0x03f1a2b300000000 + uint64_t(n) * 3 + 1; }  // partition 1

// Writes `n` transactions of partition 1 (two objects each) into `b`.
void Fill(testing::MemoryBackend& b, int n) {
  for (int i = 1; i <= n; ++i) {
    TransactionRecord t;
    t.partition = kPartition;
    t.tid = t.ttid = Tid(i);
    t.user = absl::StrCat("user", i);
    t.oids = {1, 4};
    std::vector<ObjectRecord> objects;
    for (uint64_t oid : t.oids) {
      ObjectRecord o;
      o.partition = kPartition;
      o.oid = oid;
      o.tid = Tid(i);
      o.data = absl::StrCat("oid ", oid, " at ", i);
      o.checksum = common::Checksum(o.data);
      objects.push_back(std::move(o));
    }
    ASSERT_THAT(b.ImportCommitted({t}, objects), IsOk());
  }
}

// A fake master (needed/known/last per the ReportReplication rules) and
// named in-memory sources that can corrupt data or break the stream.
class FakePeers : public ReplicationPeers {
 public:
  struct Source {
    testing::MemoryBackend* backend = nullptr;
    bool corrupt = false;      // flips a byte of the first object it sends
    int fail_after_chunks = -1;  // UNAVAILABLE after this many chunks
  };

  absl::StatusOr<ReplicationTarget> Report(uint32_t partition, uint64_t tid) override {
    absl::MutexLock l(&mu_);
    reports.push_back(tid);
    EXPECT_EQ(partition, kPartition);
    ReplicationTarget target;
    if (std::max(std::min(tid, last), known) >= needed) {
      target.up_to_date = true;
      return target;
    }
    target.min_tid = known;
    target.max_tid = last;
    for (const std::string& name : order) target.sources.push_back({0, name});
    return target;
  }

  absl::Status Fetch(const std::string& address, const FetchRequest& request,
                     const std::function<absl::Status(ReplicationChunk)>& on_chunk) override {
    Source source;
    {
      absl::MutexLock l(&mu_);
      fetches.push_back({address, request.min_tid});
      source = sources[address];
    }
    int sent = 0;
    bool corrupted = false;
    return StreamPartition(*source.backend, request.partition, request.min_tid,
                           request.max_tid, request.limits, [&](ReplicationChunk c) {
                             if (source.fail_after_chunks >= 0 &&
                                 sent >= source.fail_after_chunks) {
                               return absl::UnavailableError("source went away");
                             }
                             ++sent;
                             if (source.corrupt && !corrupted && !c.objects.empty()) {
                               c.objects[0].data[0] ^= 1;
                               corrupted = true;
                             }
                             return on_chunk(std::move(c));
                           });
  }

  absl::Mutex mu_;
  uint64_t needed = 0, known = 0, last = 0;
  std::map<std::string, Source> sources;
  std::vector<std::string> order;
  std::vector<uint64_t> reports;
  std::vector<std::pair<std::string, uint64_t>> fetches;  // address, min_tid
};

class ReplicatorTest : public ::testing::Test {
 protected:
  ReplicatorTest() : metrics_(registry_, "test", "stable") {}

  std::unique_ptr<Replicator> Make(ReplicatorOptions options = {}) {
    if (options.chunk_records == 1000) options.chunk_records = 2;
    return std::make_unique<Replicator>(&dest_, &peers_, options, &metrics_,
                                        [this] { return activity_.load(); });
  }

  // Every committed record of partition 1, as a comparable string.
  static std::string Dump(testing::MemoryBackend& b) {
    std::string out;
    auto t = b.ListTransactions(kPartition, 0, ~uint64_t{0} >> 1, 100000);
    auto o = b.ListObjects(kPartition, 0, ~uint64_t{0} >> 1, 100000);
    EXPECT_TRUE(t.ok() && o.ok());
    for (const auto& r : *t) absl::StrAppend(&out, "T", r.tid, r.user, ";");
    for (const auto& r : *o) absl::StrAppend(&out, "O", r.oid, "@", r.tid, "=", r.data, ";");
    return out;
  }

  prometheus::Registry registry_;
  StorageMetrics metrics_;
  testing::MemoryBackend source_a_, source_b_, dest_;
  FakePeers peers_;
  std::atomic<uint64_t> activity_{0};
};

TEST_F(ReplicatorTest, CopiesWhatIsMissingInChunksThenReportsDone) {
  Fill(source_a_, 20);
  peers_.needed = peers_.last = Tid(20);
  peers_.sources["a"] = {&source_a_};
  peers_.order = {"a"};
  auto replicator = Make();
  auto done = replicator->ReplicateOnce(kPartition);
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(*done);
  EXPECT_EQ(Dump(dest_), Dump(source_a_));
  EXPECT_THAT(replicator->Progress(kPartition), IsOk());
  EXPECT_EQ(*replicator->Progress(kPartition), Tid(20));
  EXPECT_THAT(peers_.reports, ElementsAre(0, Tid(20)));
  ASSERT_THAT(peers_.fetches, SizeIs(1));
  EXPECT_EQ(peers_.fetches[0].second, 1u);
  // Two records per chunk: many chunks.
  EXPECT_GE(replicator->total_chunks(), 20u);
  EXPECT_GE(metrics_.replication_chunks->Value(), 20);
  EXPECT_GT(metrics_.replication_bytes->Value(), 0);
  auto status = replicator->Status();
  ASSERT_THAT(status, SizeIs(1));
  EXPECT_EQ(status[0].replicated_tid, Tid(20));
  EXPECT_EQ(status[0].started_from_tid, 0u);
  EXPECT_FALSE(status[0].active);
  EXPECT_EQ(metrics_.replication_cells->Value(), 0);
}

TEST_F(ReplicatorTest, StartsAfterWhatTheMasterKnowsTheCellHolds) {
  Fill(source_a_, 10);
  peers_.known = Tid(6);
  peers_.needed = peers_.last = Tid(10);
  peers_.sources["a"] = {&source_a_};
  peers_.order = {"a"};
  auto replicator = Make();
  ASSERT_THAT(replicator->ReplicateOnce(kPartition), IsOk());
  ASSERT_THAT(peers_.fetches, SizeIs(1));
  EXPECT_EQ(peers_.fetches[0].second, Tid(6) + 1);
  // Only (Tid(6), Tid(10)] was copied.
  auto t = dest_.ListTransactions(kPartition, 0, Tid(100), 100);
  ASSERT_THAT(t, IsOk());
  ASSERT_THAT(*t, SizeIs(4));
  EXPECT_EQ(t->front().tid, Tid(7));
}

TEST_F(ReplicatorTest, ChecksumMismatchMovesToTheNextSource) {
  Fill(source_a_, 8);
  Fill(source_b_, 8);
  peers_.needed = peers_.last = Tid(8);
  peers_.sources["a"] = {&source_a_, /*corrupt=*/true};
  peers_.sources["b"] = {&source_b_};
  peers_.order = {"a", "b"};
  auto replicator = Make();
  auto done = replicator->ReplicateOnce(kPartition);
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(*done);
  // The bad chunk was refused: what was imported is the good data.
  EXPECT_EQ(Dump(dest_), Dump(source_b_));
  EXPECT_EQ(metrics_.replication_checksum_failures->Value(), 1);
  ASSERT_THAT(peers_.fetches, SizeIs(2));
  EXPECT_EQ(peers_.fetches[1].first, "b");
}

TEST_F(ReplicatorTest, ABrokenStreamResumesFromTheProgressReachedOnTheNextSource) {
  Fill(source_a_, 10);
  Fill(source_b_, 10);
  peers_.needed = peers_.last = Tid(10);
  peers_.sources["a"] = {&source_a_, false, /*fail_after_chunks=*/4};
  peers_.sources["b"] = {&source_b_};
  peers_.order = {"a", "b"};
  auto replicator = Make();
  ASSERT_THAT(replicator->ReplicateOnce(kPartition), IsOk());
  ASSERT_THAT(peers_.fetches, SizeIs(2));
  EXPECT_GT(peers_.fetches[1].second, 1u) << "B should start where A stopped";
  EXPECT_EQ(Dump(dest_), Dump(source_a_));
}

TEST_F(ReplicatorTest, EverySourceFailingIsAnErrorAndProgressIsKept) {
  Fill(source_a_, 10);
  peers_.needed = peers_.last = Tid(10);
  peers_.sources["a"] = {&source_a_, false, /*fail_after_chunks=*/5};
  peers_.order = {"a"};
  uint64_t reached;
  {
    auto replicator = Make();
    EXPECT_THAT(replicator->ReplicateOnce(kPartition),
                StatusIs(absl::StatusCode::kUnavailable));
    auto progress = replicator->Progress(kPartition);
    ASSERT_THAT(progress, IsOk());
    reached = *progress;
    EXPECT_GT(reached, 0u);
    EXPECT_LT(reached, Tid(10));
    EXPECT_FALSE(replicator->Status()[0].last_error.empty());
  }
  // "Restart": a new replicator on the same database resumes there.
  peers_.sources["a"].fail_after_chunks = -1;
  auto replicator = Make();
  auto done = replicator->ReplicateOnce(kPartition);
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(*done);
  EXPECT_EQ(peers_.fetches.back().second, reached + 1);
  EXPECT_EQ(replicator->Status()[0].started_from_tid, reached);
  EXPECT_EQ(Dump(dest_), Dump(source_a_));
}

TEST_F(ReplicatorTest, MoreRoundsWhileATransactionThatMissedTheCellIsInFlight) {
  Fill(source_a_, 5);
  peers_.needed = Tid(6);  // T6 is locking: not copyable yet
  peers_.last = Tid(5);
  peers_.sources["a"] = {&source_a_};
  peers_.order = {"a"};
  auto replicator = Make();
  auto done = replicator->ReplicateOnce(kPartition);
  ASSERT_THAT(done, IsOk());
  EXPECT_FALSE(*done);
  // T6 completed.
  Fill(source_a_, 6);
  peers_.last = Tid(6);
  done = replicator->ReplicateOnce(kPartition);
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(*done);
  EXPECT_EQ(Dump(dest_), Dump(source_a_));
  EXPECT_EQ(peers_.fetches.back().second, Tid(5) + 1);
}

TEST_F(ReplicatorTest, NoSourceIsAnError) {
  peers_.needed = peers_.last = Tid(3);
  auto replicator = Make();
  EXPECT_THAT(replicator->ReplicateOnce(kPartition),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(ReplicatorTest, ThePauseHookStopsProgressUntilStop) {
  Fill(source_a_, 10);
  peers_.needed = peers_.last = Tid(10);
  peers_.sources["a"] = {&source_a_};
  peers_.order = {"a"};
  ReplicatorOptions options;
  options.chunk_records = 1;
  options.pause_after_chunks = 3;
  auto replicator = Make(options);
  replicator->Start([] { return std::vector<uint32_t>{kPartition}; });
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (replicator->total_chunks() < 3 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(replicator->total_chunks(), 3u) << "never reached the pause";
  auto progress = replicator->Progress(kPartition);
  ASSERT_THAT(progress, IsOk());
  EXPECT_LT(*progress, Tid(10));
  replicator->Stop();  // returns although paused
  EXPECT_EQ(replicator->total_chunks(), 3u);
}

TEST_F(ReplicatorTest, TheBackgroundThreadCatchesUpTheCellsItIsGiven) {
  Fill(source_a_, 10);
  peers_.needed = peers_.last = Tid(10);
  peers_.sources["a"] = {&source_a_};
  peers_.order = {"a"};
  auto replicator = Make();
  std::atomic<bool> out_of_date{true};
  replicator->Start([&] {
    return out_of_date ? std::vector<uint32_t>{kPartition} : std::vector<uint32_t>{};
  });
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Dump(dest_) != Dump(source_a_) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(Dump(dest_), Dump(source_a_)) << "not caught up within 10 s";
  out_of_date = false;  // the master marked it UP_TO_DATE
  replicator->Wake();
  replicator->Stop();
}

TEST_F(ReplicatorTest, ClientTrafficSlowsItDownToTheMinimumSpeed) {
  Fill(source_a_, 20);
  peers_.needed = peers_.last = Tid(20);
  peers_.sources["a"] = {&source_a_};
  peers_.order = {"a"};
  ReplicatorOptions options;
  options.chunk_records = 4;
  options.busy_bytes_per_second = 4000;  // ~3.5 KB to copy: ~0.9 s when busy
  options.idle_bytes_per_second = 0;
  // Busy: the activity counter moves between chunks.
  auto replicator = std::make_unique<Replicator>(
      &dest_, &peers_, options, &metrics_, [this] { return activity_.fetch_add(1); });
  const absl::Time start = absl::Now();
  ASSERT_THAT(replicator->ReplicateOnce(kPartition), IsOk());
  const absl::Duration busy = absl::Now() - start;
  EXPECT_GE(busy, absl::Milliseconds(300)) << "not throttled";
  EXPECT_EQ(Dump(dest_), Dump(source_a_));
}

// ---- Cells discarded or re-created (ForgetPartition, CELL_RECREATED) ----

// Delegates to FakePeers; `before_chunk` runs before each chunk is applied,
// and reports above tid 0 get CELL_RECREATED while `recreated` is set (a
// report of 0 clears it).
class HookedPeers : public ReplicationPeers {
 public:
  explicit HookedPeers(FakePeers* inner) : inner_(inner) {}
  absl::StatusOr<ReplicationTarget> Report(uint32_t partition, uint64_t tid) override {
    if (recreated && tid > 0) {
      return common::ErrorWithReason(absl::StatusCode::kFailedPrecondition,
                                     common::kReasonCellRecreated, "cell created anew");
    }
    if (tid == 0) recreated = false;  // as the master: a report of 0 resets it
    return inner_->Report(partition, tid);
  }
  absl::Status Fetch(const std::string& address, const FetchRequest& request,
                     const std::function<absl::Status(ReplicationChunk)>& on_chunk) override {
    return inner_->Fetch(address, request, [&](ReplicationChunk c) {
      if (before_chunk) before_chunk();
      return on_chunk(std::move(c));
    });
  }
  bool recreated = false;
  std::function<void()> before_chunk;

 private:
  FakePeers* inner_;
};

TEST_F(ReplicatorTest, ForgetPartitionFencesARoundInProgress) {
  Fill(source_a_, 20);
  peers_.needed = peers_.last = Tid(20);
  peers_.sources["a"] = {&source_a_};
  peers_.order = {"a"};
  HookedPeers hooked(&peers_);
  ReplicatorOptions options;
  options.chunk_records = 2;
  Replicator replicator(&dest_, &hooked, options, &metrics_, nullptr);
  int chunks = 0;
  hooked.before_chunk = [&] {
    if (++chunks == 3) {
      // The cell is discarded while the round runs; its data goes.
      ASSERT_THAT(replicator.ForgetPartition(kPartition), IsOk());
      ASSERT_THAT(dest_.DeletePartition(kPartition), IsOk());
    }
  };
  auto done = replicator.ReplicateOnce(kPartition);
  EXPECT_THAT(done, StatusIs(absl::StatusCode::kAborted));
  // Nothing was written after the reset: no records, progress 0.
  EXPECT_EQ(Dump(dest_), "");
  ASSERT_THAT(replicator.Progress(kPartition), IsOk());
  EXPECT_EQ(*replicator.Progress(kPartition), 0u);
  // The next round (the cell added again) starts from the beginning.
  hooked.before_chunk = nullptr;
  peers_.fetches.clear();
  done = replicator.ReplicateOnce(kPartition);
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(*done);
  ASSERT_THAT(peers_.fetches, SizeIs(1));
  EXPECT_EQ(peers_.fetches[0].second, 1u);
  EXPECT_EQ(Dump(dest_), Dump(source_a_));
}

TEST_F(ReplicatorTest, CellRecreatedAnswerDeletesTheCellAndStartsOver) {
  Fill(source_a_, 10);
  Fill(dest_, 4);  // left from an earlier cell of the partition
  ASSERT_THAT(dest_.SetConfig(ReplicationProgressKey(kPartition), absl::StrCat(Tid(4))),
              IsOk());
  peers_.needed = peers_.last = Tid(10);
  peers_.sources["a"] = {&source_a_};
  peers_.order = {"a"};
  HookedPeers hooked(&peers_);
  hooked.recreated = true;  // the master re-created the cell
  Replicator replicator(&dest_, &hooked, ReplicatorOptions{}, &metrics_, nullptr);
  auto done = replicator.ReplicateOnce(kPartition);
  ASSERT_THAT(done, IsOk());
  EXPECT_FALSE(*done);
  EXPECT_EQ(Dump(dest_), "");
  EXPECT_EQ(*replicator.Progress(kPartition), 0u);
  done = replicator.ReplicateOnce(kPartition);  // reports 0: accepted
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(*done);
  EXPECT_EQ(Dump(dest_), Dump(source_a_));
}

}  // namespace
}  // namespace cellar::storage
