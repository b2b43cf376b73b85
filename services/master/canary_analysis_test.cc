#include "services/master/canary_analysis.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/common/data_path_stats.h"
#include "services/common/fake_clock.h"
#include "services/common/ids.h"
#include "services/master/version_registry.h"

namespace cellar::master {
namespace {

using ::testing::HasSubstr;

const VersionKey kStable{"0.1.0", "stable"};
const VersionKey kCanary{"0.2.0", "canary"};
const uint32_t kS1 = common::MakeNodeId(common::NodeKind::kStorage, 1);
const uint32_t kS2 = common::MakeNodeId(common::NodeKind::kStorage, 2);

// One storage's cumulative counters, grown call by call.
struct Counters {
  common::DataPathSample sample;
  explicit Counters(uint64_t incarnation) { sample.incarnation = incarnation; }
  // `n` loads of which `errors` failed, each taking `latency`.
  Counters& Loads(uint64_t n, uint64_t errors, absl::Duration latency = absl::Milliseconds(1)) {
    sample.loads += n;
    sample.load_errors += errors;
    sample.load_latency[common::LatencyBucket(latency)] += n;
    return *this;
  }
  Counters& Stores(uint64_t n, absl::Duration latency) {
    sample.stores += n;
    sample.store_latency[common::LatencyBucket(latency)] += n;
    return *this;
  }
};

class CanaryAnalysisTest : public ::testing::Test {
 protected:
  CanaryAnalysisTest()
      : registry_(&clock_, QuarantineThresholds(), {"0.1.0", "stable"},
                  [] { return std::set<VersionKey>{kStable, kCanary}; }) {
    registry_.NodeRegistered(kS1, kStable);
    registry_.NodeRegistered(kS2, kCanary);
  }

  void Make(CanaryThresholds t = Thresholds()) {
    analysis_ = std::make_unique<CanaryAnalysis>(
        &clock_, t,
        [this](const VersionKey& key, const std::string& reason) {
          return registry_.Quarantine(key, "canary-analysis", reason).status();
        },
        [this](const VersionKey& key) { return registry_.IsQuarantined(key); });
  }

  static CanaryThresholds Thresholds() {
    CanaryThresholds t;
    t.interval = absl::Seconds(10);
    t.min_requests = 100;
    t.promote_after = 3;
    return t;
  }

  CanaryStatus Only() {
    std::vector<CanaryStatus> all = analysis_->Analysis();
    EXPECT_EQ(all.size(), 1u);
    return all.empty() ? CanaryStatus() : all[0];
  }

  // One interval: both storages report their counters, then time passes.
  void Interval(Counters& stable, Counters& canary) {
    analysis_->Report(kS1, kStable, stable.sample);
    analysis_->Report(kS2, kCanary, canary.sample);
    clock_.Advance(absl::Seconds(10));
  }

  common::FakeClock clock_;
  VersionRegistry registry_;
  std::unique_ptr<CanaryAnalysis> analysis_;
};

TEST_F(CanaryAnalysisTest, ThresholdsAreValidated) {
  EXPECT_TRUE(CanaryAnalysis::ValidateThresholds(CanaryThresholds()).ok());
  for (auto bad : std::vector<std::function<void(CanaryThresholds&)>>{
           [](CanaryThresholds& t) { t.interval = absl::ZeroDuration(); },
           [](CanaryThresholds& t) { t.max_error_ratio = 1.5; },
           [](CanaryThresholds& t) { t.max_error_ratio = -0.1; },
           [](CanaryThresholds& t) { t.max_latency_ratio = 0.5; },
           [](CanaryThresholds& t) { t.min_requests = 0; },
           [](CanaryThresholds& t) { t.promote_after = 0; }}) {
    CanaryThresholds t;
    bad(t);
    EXPECT_EQ(CanaryAnalysis::ValidateThresholds(t).code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST_F(CanaryAnalysisTest, PassingIntervalsPromoteAfterN) {
  Make();
  Counters stable(1), canary(2);
  Interval(stable, canary);  // baselines
  EXPECT_EQ(Only().verdict, CanaryVerdict::kHold);
  for (int i = 1; i <= 3; ++i) {
    stable.Loads(1000, 1);
    canary.Loads(200, 1).Stores(50, absl::Milliseconds(3));
    Interval(stable, canary);
    const CanaryStatus s = Only();
    EXPECT_EQ(s.consecutive_passes, static_cast<uint32_t>(i));
    EXPECT_EQ(s.verdict, i < 3 ? CanaryVerdict::kHold : CanaryVerdict::kPromote) << i;
  }
  const CanaryStatus s = Only();
  EXPECT_EQ(s.intervals.back().outcome, CanaryInterval::Outcome::kPass);
  EXPECT_EQ(s.intervals.back().canary.loads, 200u);
  EXPECT_DOUBLE_EQ(s.intervals.back().error_ratio, 1.0 / 250);
  EXPECT_FALSE(registry_.IsQuarantined(kCanary));
}

TEST_F(CanaryAnalysisTest, FailingErrorRatioRollsBackAndQuarantines) {
  Make();
  Counters stable(1), canary(2);
  Interval(stable, canary);
  stable.Loads(1000, 0);
  canary.Loads(1000, 300);
  Interval(stable, canary);
  const CanaryStatus s = Only();
  EXPECT_EQ(s.verdict, CanaryVerdict::kRollback);
  EXPECT_THAT(s.reason, HasSubstr("error ratio 0.3000"));
  EXPECT_TRUE(s.quarantined);
  ASSERT_TRUE(registry_.IsQuarantined(kCanary));
  const std::vector<VersionDecision> history = registry_.History();
  ASSERT_FALSE(history.empty());
  EXPECT_EQ(history.back().by, "canary-analysis");
  EXPECT_THAT(history.back().reason, HasSubstr("error ratio"));

  // Passing intervals afterwards change nothing while quarantined.
  canary.Loads(1000, 0);
  stable.Loads(1000, 0);
  Interval(stable, canary);
  EXPECT_EQ(Only().verdict, CanaryVerdict::kRollback);

  // Lifting the quarantine starts the analysis over.
  ASSERT_TRUE(registry_.Unquarantine(kCanary, "operator", "fixed").ok());
  Interval(stable, canary);
  EXPECT_EQ(Only().verdict, CanaryVerdict::kHold);
  EXPECT_EQ(Only().consecutive_passes, 0u);
}

// An operator who lifts the quarantine before the next interval closes
// (seen on Kubernetes: a fixed build deployed within seconds) must also
// get a fresh analysis, not a rollback verdict for good.
TEST_F(CanaryAnalysisTest, AQuarantineLiftedBeforeTheNextIntervalStillStartsOver) {
  Make();
  Counters stable(1), canary(2);
  Interval(stable, canary);
  stable.Loads(1000, 0);
  canary.Loads(1000, 300);
  Interval(stable, canary);
  ASSERT_EQ(Only().verdict, CanaryVerdict::kRollback);
  ASSERT_TRUE(registry_.IsQuarantined(kCanary));
  ASSERT_TRUE(registry_.Unquarantine(kCanary, "operator", "fixed").ok());
  stable.Loads(1000, 0);
  canary.Loads(1000, 0);
  Interval(stable, canary);
  EXPECT_EQ(Only().verdict, CanaryVerdict::kHold);
}

// The interval during which the quarantine is lifted still holds the
// failing build's last calls (on Kubernetes: loads to the bad canary's pod
// while it stopped): they must not quarantine the fixed build at once.
TEST_F(CanaryAnalysisTest, TheIntervalOfTheLiftIsNotJudged) {
  Make();
  Counters stable(1), canary(2);
  Interval(stable, canary);
  stable.Loads(1000, 0);
  canary.Loads(1000, 300);
  Interval(stable, canary);
  ASSERT_EQ(Only().verdict, CanaryVerdict::kRollback);
  // More failures, then the lift, before the interval closes.
  stable.Loads(1000, 0);
  canary.Loads(1000, 300);
  analysis_->Report(kS1, kStable, stable.sample);
  analysis_->Report(kS2, kCanary, canary.sample);
  ASSERT_TRUE(registry_.Unquarantine(kCanary, "operator", "fixed").ok());
  clock_.Advance(absl::Seconds(10));
  const CanaryStatus s = Only();
  EXPECT_EQ(s.verdict, CanaryVerdict::kHold) << s.reason;
  EXPECT_EQ(s.intervals.back().outcome, CanaryInterval::Outcome::kNoData);
  EXPECT_FALSE(registry_.IsQuarantined(kCanary));
}

TEST_F(CanaryAnalysisTest, SlowCanaryRollsBackButTheFloorIsIgnored) {
  Make();
  Counters stable(1), canary(2);
  Interval(stable, canary);
  // 4 ms against 1 ms: above 2x but under the 5 ms floor.
  stable.Loads(1000, 0, absl::Microseconds(500));
  canary.Loads(1000, 0, absl::Milliseconds(4));
  Interval(stable, canary);
  EXPECT_EQ(Only().verdict, CanaryVerdict::kHold);
  EXPECT_EQ(Only().intervals.back().outcome, CanaryInterval::Outcome::kPass);
  stable.Loads(1000, 0, absl::Milliseconds(4));
  canary.Loads(1000, 0, absl::Milliseconds(40));
  Interval(stable, canary);
  EXPECT_EQ(Only().verdict, CanaryVerdict::kRollback);
  EXPECT_THAT(Only().reason, HasSubstr("p99 load latency 50ms"));
}

TEST_F(CanaryAnalysisTest, ChecksumFailureRollsBackEvenWithFewRequests) {
  Make();
  Counters stable(1), canary(2);
  Interval(stable, canary);
  canary.Loads(3, 1);
  canary.sample.checksum_failures = 1;
  Interval(stable, canary);
  EXPECT_EQ(Only().verdict, CanaryVerdict::kRollback);
  EXPECT_THAT(Only().reason, HasSubstr("1 checksum failure"));
}

TEST_F(CanaryAnalysisTest, TooFewRequestsIsNoDataAndHolds) {
  Make();
  Counters stable(1), canary(2);
  Interval(stable, canary);
  for (int i = 0; i < 5; ++i) {
    stable.Loads(1000, 0);
    canary.Loads(99, 50);  // a 50% error ratio, but fewer than min_requests
    Interval(stable, canary);
  }
  const CanaryStatus s = Only();
  EXPECT_EQ(s.verdict, CanaryVerdict::kHold);
  EXPECT_EQ(s.consecutive_passes, 0u);
  EXPECT_EQ(s.intervals.back().outcome, CanaryInterval::Outcome::kNoData);
  EXPECT_THAT(s.reason, HasSubstr("no data"));
  EXPECT_FALSE(registry_.IsQuarantined(kCanary));
}

TEST_F(CanaryAnalysisTest, CounterResetOnRestartCountsOnlyTheNewLife) {
  Make();
  Counters stable(1), canary(2);
  Interval(stable, canary);
  // Many good loads in the old life.
  canary.Loads(100000, 0);
  Interval(stable, canary);
  ASSERT_EQ(Only().intervals.back().canary.loads, 100000u);
  // The canary restarts: a new incarnation, counters from 0. Its 200
  // loads with 100 errors must be the interval's, not "negative" deltas
  // nor lost in the old totals.
  Counters restarted(3);
  restarted.Loads(200, 100);
  Interval(stable, restarted);
  const CanaryStatus s = Only();
  EXPECT_EQ(s.intervals.back().canary.loads, 200u);
  EXPECT_EQ(s.verdict, CanaryVerdict::kRollback);
}

TEST_F(CanaryAnalysisTest, FirstReportIsOnlyABaseline) {
  Make();
  Counters stable(1), canary(2);
  canary.Loads(10000, 5000);  // before this master knew the node
  Interval(stable, canary);
  EXPECT_EQ(Only().intervals.back().outcome, CanaryInterval::Outcome::kNoData);
  EXPECT_EQ(Only().verdict, CanaryVerdict::kHold);
}

TEST_F(CanaryAnalysisTest, HistoryIsBounded) {
  Make();
  Counters stable(1), canary(2);
  for (size_t i = 0; i < CanaryAnalysis::kMaxIntervals + 5; ++i) Interval(stable, canary);
  EXPECT_EQ(Only().intervals.size(), CanaryAnalysis::kMaxIntervals);
}

}  // namespace
}  // namespace cellar::master
