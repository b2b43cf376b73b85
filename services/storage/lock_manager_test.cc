#include "services/storage/lock_manager.h"

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "services/common/errors.h"
#include "services/common/status_matchers.h"

namespace cellar::storage {
namespace {

using ::cellar::common::ErrorReason;
using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;

absl::Time Far() { return absl::Now() + absl::Seconds(30); }

// Polls `pred` until true or 10 s pass (a bounded wait, not a sleep used as
// synchronization: the condition is what the test waits for).
template <typename Pred>
bool WaitFor(Pred pred) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!pred()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

TEST(LockManagerTest, FreeLockIsGrantedAndSameTtidRelocks) {
  LockManager locks;
  std::vector<uint64_t> newly;
  ASSERT_THAT(locks.LockAll(10, {1, 2}, Far(), &newly), IsOk());
  EXPECT_THAT(newly, ::testing::ElementsAre(1, 2));
  EXPECT_EQ(locks.Holder(1), 10u);
  ASSERT_THAT(locks.LockAll(10, {2, 3}, Far(), &newly), IsOk());
  EXPECT_THAT(newly, ::testing::ElementsAre(3));
  EXPECT_EQ(locks.locked_count(), 3u);
  locks.Release(10);
  EXPECT_EQ(locks.locked_count(), 0u);
  EXPECT_EQ(locks.Holder(1), 0u);
}

TEST(LockManagerTest, YoungerDiesAtOnceAgainstOlderHolder) {
  LockManager locks;
  ASSERT_THAT(locks.LockAll(10, {7}, Far()), IsOk());
  const absl::Time start = absl::Now();
  absl::Status s = locks.LockAll(20, {7}, Far());
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(ErrorReason(s), "LOCK_CONTENTION");
  EXPECT_LT(absl::Now() - start, absl::Seconds(5)) << "the younger must not wait";
  EXPECT_EQ(locks.Holder(7), 10u);
}

TEST(LockManagerTest, OlderWaitsUntilDeadline) {
  LockManager locks;
  ASSERT_THAT(locks.LockAll(20, {7}, Far()), IsOk());
  absl::Status s = locks.LockAll(10, {7}, absl::Now() + absl::Milliseconds(50));
  // Lock contention (retry the transaction), not "this node is gone".
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(ErrorReason(s), "LOCK_CONTENTION");
  EXPECT_EQ(locks.Holder(7), 20u);
  EXPECT_EQ(locks.waiting_count(), 0u);
}

TEST(LockManagerTest, ReleaseWakesOlderWaiter) {
  LockManager locks;
  ASSERT_THAT(locks.LockAll(20, {7}, Far()), IsOk());
  absl::Status result;
  std::thread waiter([&] { result = locks.LockAll(10, {7}, Far()); });
  ASSERT_TRUE(WaitFor([&] { return locks.waiting_count() == 1; }))
      << "the older transaction never started waiting";
  locks.Release(20);
  waiter.join();
  EXPECT_THAT(result, IsOk());
  EXPECT_EQ(locks.Holder(7), 10u);
}

TEST(LockManagerTest, YoungerWaitsForACommittedHolderInsteadOfDying) {
  LockManager locks;
  ASSERT_THAT(locks.LockAll(10, {7}, Far()), IsOk());
  locks.MarkCommitted(10);  // locked: it only awaits the master's unlock
  absl::Status result;
  std::thread waiter([&] { result = locks.LockAll(20, {7}, Far()); });
  ASSERT_TRUE(WaitFor([&] { return locks.waiting_count() == 1; }))
      << "the younger transaction should wait for a committed holder";
  locks.Release(10);
  waiter.join();
  EXPECT_THAT(result, IsOk());
  EXPECT_EQ(locks.Holder(7), 20u);
  // Release cleared the mark: a new older holder is wait-die as usual.
  locks.Release(20);
  ASSERT_THAT(locks.LockAll(30, {8}, Far()), IsOk());
  EXPECT_THAT(locks.LockAll(40, {8}, Far()), StatusIs(absl::StatusCode::kAborted));
}

TEST(LockManagerTest, FailedLockAllReleasesOnlyWhatItTook) {
  LockManager locks;
  ASSERT_THAT(locks.LockAll(10, {3}, Far()), IsOk());
  ASSERT_THAT(locks.LockAll(20, {1}, Far()), IsOk());
  // 20 already holds 1; takes 2; dies on 3 (held by older 10).
  EXPECT_THAT(locks.LockAll(20, {1, 2, 3}, Far()),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(locks.Holder(1), 20u);
  EXPECT_EQ(locks.Holder(2), 0u);
  EXPECT_EQ(locks.Holder(3), 10u);
}

TEST(LockManagerTest, ReleaseCancelsTheTtidsOwnWait) {
  LockManager locks;
  ASSERT_THAT(locks.LockAll(20, {7}, Far()), IsOk());
  absl::Status result;
  std::thread waiter([&] { result = locks.LockAll(10, {6, 7}, Far()); });
  ASSERT_TRUE(WaitFor([&] { return locks.waiting_count() == 1; }));
  locks.Release(10);  // e.g. the transaction was aborted
  waiter.join();
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(locks.Holder(6), 0u);
  EXPECT_EQ(locks.Holder(7), 20u);
  // A later request of the same ttid is a fresh one.
  locks.Release(20);
  EXPECT_THAT(locks.LockAll(10, {7}, Far()), IsOk());
}

TEST(LockManagerTest, ShutdownFailsWaiters) {
  LockManager locks;
  ASSERT_THAT(locks.LockAll(20, {7}, Far()), IsOk());
  absl::Status result;
  std::thread waiter([&] { result = locks.LockAll(10, {7}, Far()); });
  ASSERT_TRUE(WaitFor([&] { return locks.waiting_count() == 1; }));
  locks.Shutdown();
  waiter.join();
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(locks.LockAll(30, {8}, Far()),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(LockManagerTest, CrossingTransactionsDoNotDeadlock) {
  LockManager locks;
  ASSERT_THAT(locks.LockAll(10, {1}, Far()), IsOk());
  ASSERT_THAT(locks.LockAll(20, {2}, Far()), IsOk());
  absl::Status older;
  std::thread t([&] { older = locks.LockAll(10, {2}, Far()); });
  ASSERT_TRUE(WaitFor([&] { return locks.waiting_count() == 1; }));
  // The younger wants the older's lock: dies instead of closing the cycle.
  absl::Status younger = locks.LockAll(20, {1}, Far());
  EXPECT_THAT(younger, StatusIs(absl::StatusCode::kAborted));
  locks.Release(20);  // its client aborts it
  t.join();
  EXPECT_THAT(older, IsOk());
  EXPECT_EQ(locks.Holder(1), 10u);
  EXPECT_EQ(locks.Holder(2), 10u);
}

TEST(LockManagerTest, ManyThreadsOnFewOidsAllFinish) {
  LockManager locks;
  std::atomic<uint64_t> next_ttid{1};
  std::atomic<int> committed{0};
  constexpr int kThreads = 8;
  constexpr int kCommitsPerThread = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      int done = 0;
      while (done < kCommitsPerThread) {
        const uint64_t ttid = next_ttid.fetch_add(1);
        std::vector<uint64_t> oids;
        for (int i = 0; i < 3; ++i) oids.push_back(rng() % 5);
        absl::Status s = locks.LockAll(ttid, oids, absl::Now() + absl::Seconds(20));
        locks.Release(ttid);
        if (s.ok()) {
          ++done;
          committed.fetch_add(1);
        } else {
          ASSERT_THAT(s, StatusIs(absl::StatusCode::kAborted)) << s;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(committed.load(), kThreads * kCommitsPerThread);
  EXPECT_EQ(locks.locked_count(), 0u);
}

}  // namespace
}  // namespace cellar::storage
