#include "services/master/tid_allocator.h"

#include <gtest/gtest.h>

#include "services/common/fake_clock.h"
#include "services/common/ids.h"

namespace cellar::master {
namespace {

TEST(TidAllocatorTest, FollowsTheClock) {
  common::FakeClock clock;
  TidAllocator tids(&clock);
  const uint64_t a = tids.NextTtid();
  EXPECT_EQ(a, common::TidFromTime(clock.Now()));
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(tids.NextTtid(), common::TidFromTime(clock.Now()));
}

TEST(TidAllocatorTest, StrictlyIncreasingWhenTheClockStandsStillOrJumpsBack) {
  common::FakeClock clock;
  TidAllocator tids(&clock);
  uint64_t prev = tids.NextTtid();
  for (int i = 0; i < 100; ++i) {
    const uint64_t t = tids.NextTtid();
    EXPECT_GT(t, prev);
    prev = t;
  }
  clock.Advance(-absl::Hours(1));
  const uint64_t after_jump = tids.NextTtid();
  EXPECT_GT(after_jump, prev);
  EXPECT_GT(tids.ClockLag(), absl::Minutes(59));
}

TEST(TidAllocatorTest, FinalTidMatchesTtidPartitionAndIsLater) {
  common::FakeClock clock;
  TidAllocator tids(&clock);
  for (uint32_t p : {1u, 2u, 7u, 12u}) {
    for (int i = 0; i < 20; ++i) {
      const uint64_t ttid = tids.NextTtid();
      const uint64_t other = tids.NextTtid();  // interleaved allocations
      const uint64_t tid = tids.NextTid(ttid, p);
      EXPECT_GT(tid, ttid);
      EXPECT_GT(tid, other);
      EXPECT_EQ(tid % p, ttid % p) << "P=" << p;
    }
  }
}

TEST(TidAllocatorTest, AdvanceToRaisesTheFloor) {
  common::FakeClock clock;
  TidAllocator tids(&clock);
  const uint64_t future = common::TidFromTime(clock.Now() + absl::Hours(2));
  tids.AdvanceTo(future);
  EXPECT_GT(tids.NextTtid(), future);
}

}  // namespace
}  // namespace cellar::master
