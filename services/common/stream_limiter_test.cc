#include "services/common/stream_limiter.h"

#include <optional>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace cellar::common {
namespace {

using ::testing::HasSubstr;

TEST(StreamLimiterTest, BoundsEachCallerAndTheTotal) {
  StreamLimiter limiter("Watch streams", 3, 2);
  std::vector<StreamLimiter::Slot> held;
  for (int i = 0; i < 2; ++i) {
    auto slot = limiter.Acquire("token aaaa");
    ASSERT_TRUE(slot.ok()) << slot.status();
    held.push_back(*std::move(slot));
  }
  auto third = limiter.Acquire("token aaaa");
  ASSERT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(third.status().message()),
              HasSubstr("too many Watch streams for these credentials: 2 open, at most 2"));
  auto other = limiter.Acquire("token bbbb");
  ASSERT_TRUE(other.ok()) << other.status();
  held.push_back(*std::move(other));
  auto over = limiter.Acquire("token cccc");
  ASSERT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(over.status().message()),
              HasSubstr("too many Watch streams: 3 open, at most 3 on this server"));
  EXPECT_EQ(limiter.open(), 3u);
}

TEST(StreamLimiterTest, ASlotIsReleasedWhenItsStreamEnds) {
  StreamLimiter limiter("streams", 1, 1);
  {
    auto slot = limiter.Acquire("node");
    ASSERT_TRUE(slot.ok());
    std::optional<StreamLimiter::Slot> moved(*std::move(slot));
    EXPECT_FALSE(limiter.Acquire("node").ok());
  }
  EXPECT_EQ(limiter.open(), 0u);
  EXPECT_TRUE(limiter.Acquire("node").ok());
}

TEST(StreamLimiterTest, WithoutACallerOnlyTheTotalApplies) {
  StreamLimiter limiter("streams", 2, 1);
  auto a = limiter.Acquire("");
  auto b = limiter.Acquire("");
  EXPECT_TRUE(a.ok());
  EXPECT_TRUE(b.ok());
  EXPECT_FALSE(limiter.Acquire("").ok());
}

}  // namespace
}  // namespace cellar::common
