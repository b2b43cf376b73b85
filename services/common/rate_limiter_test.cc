#include "services/common/rate_limiter.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "services/common/fake_clock.h"

namespace cellar::common {
namespace {

using ::testing::HasSubstr;

TEST(RateLimiterTest, ABurstThenTheSteadyRate) {
  FakeClock clock;
  RateLimiter limiter(/*per_second=*/10, /*burst=*/3, &clock);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Admit("token a").ok()) << i;
  absl::Status refused = limiter.Admit("token a");
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr("at most 10 calls/s (burst 3) per caller; retry after 100 ms"));
  clock.Advance(absl::Milliseconds(100));
  EXPECT_TRUE(limiter.Admit("token a").ok());
  EXPECT_FALSE(limiter.Admit("token a").ok());
}

TEST(RateLimiterTest, OneCallerCannotSpendAnothersBudget) {
  FakeClock clock;
  RateLimiter limiter(1, 2, &clock);
  while (limiter.Admit("token flood").ok()) {
  }
  EXPECT_TRUE(limiter.Admit("token calm").ok());
  EXPECT_TRUE(limiter.Admit("").ok()) << "no caller (auth off): not limited";
}

TEST(RateLimiterTest, AClockGoingBackwardsGrantsNothing) {
  FakeClock clock;
  RateLimiter limiter(1, 1, &clock);
  EXPECT_TRUE(limiter.Admit("c").ok());
  clock.Advance(-absl::Hours(1));
  EXPECT_FALSE(limiter.Admit("c").ok());
  clock.Advance(absl::Hours(1));
  EXPECT_FALSE(limiter.Admit("c").ok()) << "the hour back and forth is not a refill";
  clock.Advance(absl::Seconds(1));
  EXPECT_TRUE(limiter.Admit("c").ok());
}

TEST(RateLimiterTest, QuietCallersAreForgotten) {
  FakeClock clock;
  RateLimiter limiter(100, 1, &clock);
  for (int i = 0; i < 5000; ++i) {
    ASSERT_TRUE(limiter.Admit(absl::StrCat("token ", i)).ok());
    clock.Advance(absl::Milliseconds(1));
  }
  EXPECT_LT(limiter.buckets(), 2100u);
}

TEST(RateLimiterTest, BytesAreChargedAfterTheFactAndADebtRefusesUntilRepaid) {
  FakeClock clock;
  RateLimiter limiter(/*per_second=*/1000, /*burst=*/2000, &clock, "bytes");
  EXPECT_TRUE(limiter.AdmitIfNotInDebt("c").ok()) << "an unknown caller has a full bucket";
  limiter.Charge("c", 1500);
  EXPECT_TRUE(limiter.AdmitIfNotInDebt("c").ok()) << "500 bytes left";
  limiter.Charge("c", 1000);  // one message may overshoot: -500
  absl::Status refused = limiter.AdmitIfNotInDebt("c");
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr("at most 1000 bytes/s (burst 2000) per caller; retry after 500 ms"));
  EXPECT_TRUE(limiter.AdmitIfNotInDebt("other").ok()) << "a debt is its caller's own";
  clock.Advance(absl::Milliseconds(499));
  EXPECT_FALSE(limiter.AdmitIfNotInDebt("c").ok());
  clock.Advance(absl::Milliseconds(2));
  EXPECT_TRUE(limiter.AdmitIfNotInDebt("c").ok());
}

TEST(RateLimiterTest, OneHugeMessageCostsAtMostTwoBurstsOfWaiting) {
  FakeClock clock;
  RateLimiter limiter(100, 100, &clock, "bytes");
  limiter.Charge("c", 1e12);
  EXPECT_FALSE(limiter.AdmitIfNotInDebt("c").ok());
  clock.Advance(absl::Milliseconds(1001));
  EXPECT_TRUE(limiter.AdmitIfNotInDebt("c").ok()) << "the debt is capped at -burst";
  limiter.Charge("", 1e12);
  EXPECT_TRUE(limiter.AdmitIfNotInDebt("").ok()) << "no caller (auth off): not limited";
}

}  // namespace
}  // namespace cellar::common
