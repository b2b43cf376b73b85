#include "services/storage/write_batcher.h"

#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "services/common/status_matchers.h"
#include "services/storage/testing/memory_backend.h"

namespace cellar::storage {
namespace {

using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::cellar::storage::testing::MemoryBackend;
using ::testing::ElementsAre;

template <typename Pred>
bool WaitFor(Pred pred) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!pred()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

VoteRecord Vote(uint64_t ttid) {
  VoteRecord v;
  v.ttid = ttid;
  ObjectRecord o;
  o.oid = ttid;
  o.data = "x";
  v.objects.push_back(o);
  return v;
}

TEST(WriteBatcherTest, SingleVoteIsWritten) {
  MemoryBackend backend;
  WriteBatcher batcher(&backend, {});
  EXPECT_THAT(batcher.StoreVote(Vote(5)), IsOk());
  EXPECT_EQ(backend.store_votes_calls(), 1);
  EXPECT_EQ(backend.temporary_count(), 1u);
  EXPECT_THAT(batcher.Lock({5, 6}), IsOk());
  EXPECT_EQ(backend.lock_calls(), 1);
  EXPECT_EQ(backend.temporary_count(), 0u);
}

TEST(WriteBatcherTest, ConcurrentSubmitsShareOneBackendCall) {
  MemoryBackend backend;
  absl::Notification first_call_entered, release_first_call;
  backend.set_store_votes_hook([&](const std::vector<VoteRecord>& votes) {
    if (votes.size() == 1 && votes[0].ttid == 1) {
      first_call_entered.Notify();
      release_first_call.WaitForNotification();
    }
    return absl::OkStatus();
  });
  std::vector<size_t> batch_sizes;
  absl::Mutex sizes_mu;
  WriteBatcherOptions options;
  options.on_batch = [&](size_t n) {
    absl::MutexLock l(&sizes_mu);
    batch_sizes.push_back(n);
  };
  WriteBatcher batcher(&backend, options);

  std::vector<std::thread> threads;
  std::vector<absl::Status> results(6);
  threads.emplace_back([&] { results[0] = batcher.StoreVote(Vote(1)); });
  ASSERT_TRUE(first_call_entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // The only writer is busy: these five queue up behind it.
  for (int i = 1; i < 6; ++i) {
    threads.emplace_back([&, i] { results[i] = batcher.StoreVote(Vote(10 + i)); });
  }
  ASSERT_TRUE(WaitFor([&] { return batcher.queued() == 5; }))
      << "only " << batcher.queued() << " requests queued";
  release_first_call.Notify();
  for (auto& t : threads) t.join();
  for (const auto& s : results) EXPECT_THAT(s, IsOk());
  EXPECT_EQ(backend.store_votes_calls(), 2);
  EXPECT_THAT(backend.store_votes_sizes(), ElementsAre(1, 5));
  absl::MutexLock l(&sizes_mu);
  EXPECT_THAT(batch_sizes, ElementsAre(1, 5));
}

TEST(WriteBatcherTest, FailedBatchIsRetriedPerRecord) {
  MemoryBackend backend;
  absl::Notification first_call_entered, release_first_call;
  backend.set_store_votes_hook([&](const std::vector<VoteRecord>& votes) {
    if (votes.size() == 1 && votes[0].ttid == 1) {
      first_call_entered.Notify();
      release_first_call.WaitForNotification();
    }
    for (const VoteRecord& v : votes) {
      if (v.ttid == 13) return absl::InternalError("disk full for 13");
    }
    return absl::OkStatus();
  });
  WriteBatcher batcher(&backend, {});
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(4);
  threads.emplace_back([&] { results[0] = batcher.StoreVote(Vote(1)); });
  ASSERT_TRUE(first_call_entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  for (int i = 1; i < 4; ++i) {
    threads.emplace_back([&, i] { results[i] = batcher.StoreVote(Vote(11 + i)); });
  }
  ASSERT_TRUE(WaitFor([&] { return batcher.queued() == 3; }));
  release_first_call.Notify();
  for (auto& t : threads) t.join();
  EXPECT_THAT(results[0], IsOk());
  EXPECT_THAT(results[1], IsOk());                                   // 12
  EXPECT_THAT(results[2], StatusIs(absl::StatusCode::kInternal));    // 13
  EXPECT_THAT(results[3], IsOk());                                   // 14
  EXPECT_THAT(backend.store_votes_sizes(), ElementsAre(1, 3, 1, 1, 1));
}

TEST(WriteBatcherTest, VotesAndLocksInOneDrain) {
  MemoryBackend backend;
  WriteBatcher batcher(&backend, {});
  ASSERT_THAT(batcher.StoreVote(Vote(2)), IsOk());
  absl::Notification entered, release;
  backend.set_store_votes_hook([&](const std::vector<VoteRecord>& votes) {
    if (votes[0].ttid == 3) {
      entered.Notify();
      release.WaitForNotification();
    }
    return absl::OkStatus();
  });
  absl::Status a, b, c;
  std::thread ta([&] { a = batcher.StoreVote(Vote(3)); });
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  std::thread tb([&] { b = batcher.Lock({2, 100}); });
  std::thread tc([&] { c = batcher.StoreVote(Vote(4)); });
  ASSERT_TRUE(WaitFor([&] { return batcher.queued() == 2; }));
  release.Notify();
  ta.join();
  tb.join();
  tc.join();
  EXPECT_THAT(a, IsOk());
  EXPECT_THAT(b, IsOk());
  EXPECT_THAT(c, IsOk());
  EXPECT_EQ(backend.lock_calls(), 1);
  auto loaded = backend.LoadSerial(2 % 1, 2, 100);
  EXPECT_THAT(loaded, IsOk());
}

TEST(WriteBatcherTest, ShutdownDrainsThenRefuses) {
  MemoryBackend backend;
  WriteBatcherOptions options;
  options.writer_threads = 3;
  WriteBatcher batcher(&backend, options);
  std::vector<std::thread> threads;
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&, i] { EXPECT_THAT(batcher.StoreVote(Vote(i + 1)), IsOk()); });
  }
  for (auto& t : threads) t.join();
  batcher.Shutdown();
  EXPECT_EQ(backend.temporary_count(), 20u);
  EXPECT_THAT(batcher.StoreVote(Vote(99)), StatusIs(absl::StatusCode::kUnavailable));
  batcher.Shutdown();  // idempotent
}

}  // namespace
}  // namespace cellar::storage
