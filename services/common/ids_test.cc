#include "services/common/ids.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/civil_time.h"

namespace cellar::common {
namespace {

absl::Time Utc(int y, int mo, int d, int h, int mi, double s) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, 0),
                         absl::UTCTimeZone()) +
         absl::Seconds(s);
}

TEST(TidTest, HighBitsCountMinutesWithThirtyOneDayMonths) {
  // 1900-01-01 00:00 is minute 0; 1900-02-01 is 31 days later.
  EXPECT_EQ(TidFromTime(Utc(1900, 1, 1, 0, 0, 0)) >> 32, 0u);
  EXPECT_EQ(TidFromTime(Utc(1900, 2, 1, 0, 0, 0)) >> 32, 31u * 24 * 60);
  const uint64_t expected =
      ((((2026ull - 1900) * 12 + 10) * 31 + 21) * 24 + 2) * 60 + 30;
  EXPECT_EQ(TidFromTime(Utc(2026, 11, 22, 2, 30, 0)) >> 32, expected);
}

TEST(TidTest, LowBitsScaleSecondsWithinTheMinute) {
  const Tid t = TidFromTime(Utc(2026, 11, 22, 2, 30, 30));
  EXPECT_EQ(t & 0xffffffffu, 0x80000000u);
}

TEST(TidTest, RoundTripsThroughTime) {
  const absl::Time t = Utc(2026, 11, 22, 2, 30, 12.25);
  EXPECT_LT(absl::AbsDuration(TimeFromTid(TidFromTime(t)) - t),
            absl::Microseconds(1));
  EXPECT_EQ(TidTime(TidFromTime(t)), "2026-11-22T02:30:12.250000Z");
}

TEST(TidTest, IsMonotonicInTime) {
  const absl::Time t = Utc(2026, 1, 31, 23, 59, 59.9);
  EXPECT_LT(TidFromTime(t), TidFromTime(t + absl::Milliseconds(200)));
}

TEST(TidTest, FormatsHexAndTime) {
  const Tid t = TidFromTime(Utc(2026, 11, 22, 2, 30, 0));
  EXPECT_THAT(FormatTid(t), ::testing::StartsWith(TidHex(t) + " (2026-11-22T02:30:00"));
  EXPECT_EQ(TidHex(1), "0x0000000000000001");
  EXPECT_EQ(FormatOid(255), "0xff");
}

TEST(ParseUint64Test, AcceptsHexAndDecimalRejectsJunk) {
  uint64_t v = 0;
  EXPECT_TRUE(ParseUint64("0x1f", &v));
  EXPECT_EQ(v, 31u);
  EXPECT_TRUE(ParseUint64("42", &v));
  EXPECT_EQ(v, 42u);
  EXPECT_FALSE(ParseUint64("", &v));
  EXPECT_FALSE(ParseUint64("1f", &v));
  EXPECT_FALSE(ParseUint64("0x", &v));
  EXPECT_FALSE(ParseUint64("0x11112222333344445", &v));
  EXPECT_FALSE(ParseUint64("-1", &v));
  EXPECT_FALSE(ParseUint64("99999999999999999999", &v));
}

TEST(NodeNameTest, PrintsRoleLetterAndId) {
  EXPECT_EQ(NodeName('S', 3), "S3");
  EXPECT_EQ(NodeName(MakeNodeId(NodeKind::kClient, 7)), "C7");
  EXPECT_EQ(NodeName(3), "S3");
  EXPECT_NE(MakeNodeId(NodeKind::kClient, 1), MakeNodeId(NodeKind::kStorage, 1));
}

}  // namespace
}  // namespace cellar::common
