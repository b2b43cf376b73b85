#include "services/common/data_path_stats.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/common/errors.h"
#include "services/common/status_matchers.h"

namespace cellar::common {
namespace {

using ::cellar::common::StatusIs;

TEST(DataPathStatsTest, BucketsAndQuantiles) {
  EXPECT_EQ(LatencyBucket(absl::Microseconds(300)), 0u);
  EXPECT_EQ(LatencyBucket(absl::Milliseconds(3)), 2u);
  EXPECT_EQ(LatencyBucket(absl::Seconds(30)), kLatencyBuckets - 1);
  LatencyHistogram h{};
  EXPECT_EQ(LatencyQuantileMs(h, 0.99), 0);
  h[0] = 98;  // <= 1 ms
  h[4] = 2;   // <= 25 ms
  EXPECT_EQ(LatencyQuantileMs(h, 0.99), 25);
  EXPECT_EQ(LatencyQuantileMs(h, 0.5), 1);
  h[kLatencyBuckets - 1] = 100;
  EXPECT_EQ(LatencyQuantileMs(h, 0.99), 2500);
}

TEST(DataPathStatsTest, SinceDetectsAReset) {
  DataPathSample before;
  before.loads = 10;
  before.load_latency[1] = 10;
  DataPathSample now = before;
  now.loads = 15;
  now.load_errors = 2;
  now.load_latency[1] = 15;
  DataPathSample delta;
  ASSERT_TRUE(now.Since(before, &delta));
  EXPECT_EQ(delta.loads, 5u);
  EXPECT_EQ(delta.load_errors, 2u);
  EXPECT_EQ(delta.load_latency[1], 5u);
  DataPathSample restarted;
  restarted.loads = 3;
  EXPECT_FALSE(restarted.Since(before, &delta));
  EXPECT_EQ(delta.loads, 5u) << "left untouched";
}

TEST(DataPathStatsTest, ErrorsOfTheNodeOnly) {
  EXPECT_TRUE(IsDataPathError(absl::InternalError("x")));
  EXPECT_TRUE(IsDataPathError(absl::DataLossError("x")));
  EXPECT_TRUE(IsDataPathError(absl::UnknownError("x")));
  EXPECT_TRUE(IsDataPathError(absl::UnavailableError("x")));
  EXPECT_TRUE(IsDataPathError(
      ErrorWithReason(absl::StatusCode::kUnavailable, kReasonFaultInjected, "x")));
  EXPECT_FALSE(IsDataPathError(
      ErrorWithReason(absl::StatusCode::kUnavailable, kReasonNotReadable, "x")));
  EXPECT_FALSE(
      IsDataPathError(ErrorWithReason(absl::StatusCode::kUnavailable, kReasonInDoubt, "x")));
  EXPECT_FALSE(IsDataPathError(absl::OkStatus()));
  EXPECT_FALSE(IsDataPathError(absl::NotFoundError("x")));
  EXPECT_FALSE(IsDataPathError(absl::AbortedError("conflict")));
  EXPECT_FALSE(IsDataPathError(absl::InvalidArgumentError("x")));
}

TEST(DataPathStatsTest, ProtoRoundTripAndRefusals) {
  DataPathSample sample;
  sample.incarnation = 7;
  sample.loads = 10;
  sample.load_errors = 3;
  sample.stores = 4;
  sample.store_errors = 1;
  sample.checksum_failures = 1;
  sample.load_latency[3] = 9;
  sample.store_latency[11] = 4;
  cellar::v1::DataPathCounters proto;
  DataPathToProto(sample, &proto);
  absl::StatusOr<DataPathSample> back = DataPathFromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->loads, 10u);
  EXPECT_EQ(back->load_latency[3], 9u);
  EXPECT_EQ(back->store_latency[11], 4u);

  EXPECT_THAT(DataPathFromProto(cellar::v1::DataPathCounters()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  cellar::v1::DataPathCounters bad = proto;
  bad.add_load_latency_buckets(1);
  EXPECT_THAT(DataPathFromProto(bad).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  bad = proto;
  bad.set_load_errors(11);
  EXPECT_THAT(DataPathFromProto(bad).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  bad = proto;
  bad.set_checksum_failures(5);
  EXPECT_THAT(DataPathFromProto(bad).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  cellar::v1::DataPathCounters none;
  none.set_incarnation(1);
  EXPECT_TRUE(DataPathFromProto(none).ok()) << "histograms are optional";
}

}  // namespace
}  // namespace cellar::common
