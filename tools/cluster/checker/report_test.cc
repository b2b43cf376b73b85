#include "tools/cluster/checker/report.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cellar::tools::checker {
namespace {

using ::testing::HasSubstr;

TEST(ReportTest, MeasuresCountsBucketsAndZeroCommitWindows) {
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  auto commit = [&](double at, Outcome outcome, const std::string& error = "") {
    Operation op;
    op.type = OpType::kTransfer;
    op.outcome = outcome;
    op.end = t0 + absl::Seconds(at);
    op.error = error;
    return op;
  };
  std::vector<Operation> ops = {
      commit(0.5, Outcome::kOk),
      commit(1.2, Outcome::kOk),
      commit(1.5, Outcome::kFailed, "ABORTED: Store on S1: conflict"),
      commit(2.0, Outcome::kUnknown, "UNAVAILABLE: Finish: lost"),
      commit(6.5, Outcome::kOk),
  };
  Operation read;
  read.type = OpType::kBankRead;
  read.outcome = Outcome::kFailed;
  ops.push_back(read);
  NemesisEvent kill{"kill-9", "S2", t0 + absl::Seconds(3), t0 + absl::Seconds(4), false, ""};
  NemesisEvent late{"rolling-restart", "M1", t0 + absl::Seconds(6.8), t0 + absl::Seconds(7),
                    true, ""};
  RunReport r;
  r.start = t0;
  r.end = t0 + absl::Seconds(7.5);
  Measure(ops, {kill, late}, r);
  EXPECT_EQ(r.acknowledged, 3u);
  EXPECT_EQ(r.failed, 1u);
  EXPECT_EQ(r.unknown, 1u);
  EXPECT_EQ(r.reads_failed, 1u);
  EXPECT_EQ(r.failed_by_code["ABORTED"], 1u);
  EXPECT_EQ(r.first_failure_by_code["ABORTED"], "ABORTED: Store on S1: conflict");
  EXPECT_EQ(r.commits_per_second, (std::vector<int>{1, 1, 0, 0, 0, 0, 1, 0}));
  EXPECT_EQ(r.longest_zero_window, absl::Seconds(5.3));
  EXPECT_EQ(r.longest_zero_window_at, absl::Seconds(1.2));
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].to_first_commit, absl::Seconds(3.5));
  EXPECT_EQ(r.events[1].to_first_commit, std::nullopt);
  EXPECT_EQ(r.worst_unplanned, absl::Seconds(3.5));
  EXPECT_EQ(r.worst_planned, absl::Seconds(0.7));  // no commit after it: to the end
  EXPECT_THAT(HumanSummary(r), HasSubstr("verdict: PASS"));
  EXPECT_THAT(ReportJson(r), HasSubstr("\"longest_zero_commit_window_s\": 5.3"));
  r.verdict.lost = 1;
  EXPECT_THAT(HumanSummary(r), HasSubstr("verdict: FAIL"));
  EXPECT_THAT(ReportJson(r), HasSubstr("\"pass\": false"));
}

}  // namespace
}  // namespace cellar::tools::checker
