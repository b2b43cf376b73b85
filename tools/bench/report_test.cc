#include "tools/bench/report.h"

#include <sstream>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tools/bench/runner.h"

namespace cellar::bench {
namespace {

using ::testing::HasSubstr;

BenchRow Row(std::string name, std::string backend, std::string kind, int clients, double ops,
             bool raw) {
  BenchRow row;
  row.name = std::move(name);
  row.backend = std::move(backend);
  row.kind = std::move(kind);
  row.clients = clients;
  row.ops_per_s = ops;
  row.raw = raw;
  row.unit = "x/s";
  return row;
}

std::vector<BenchRow> SampleRows() {
  return {
      Row("tiny_commit_c16", "sqlite", "commit", 16, 600, false),
      Row("bulk_100x300_c2", "sqlite", "bulk", 2, 60000, false),
      Row("load_uncached_c16", "sqlite", "load", 16, 10000, false),
      Row("raw_pg_commit_c16", "postgresql", "commit", 16, 1000, true),
      Row("raw_pg_bulk_100_c2", "postgresql", "bulk", 2, 80000, true),
      Row("raw_pg_select_c16", "postgresql", "load", 16, 40000, true),
      Row("raw_sqlite_commit_c16", "sqlite", "commit", 16, 50, true),
  };
}

TEST(PercentileTest, NearestRank) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);
  EXPECT_EQ(Percentile(v, 0.5), 50);
  EXPECT_EQ(Percentile(v, 0.99), 99);
  EXPECT_EQ(Percentile(v, 1.0), 100);
  std::vector<double> one = {7};
  EXPECT_EQ(Percentile(one, 0.99), 7);
  std::vector<double> none;
  EXPECT_EQ(Percentile(none, 0.5), 0);
}

TEST(ObjectDataTest, DeterministicAndChecked) {
  EXPECT_EQ(ObjectData(5, 300), ObjectData(5, 300));
  EXPECT_EQ(ObjectData(5, 300).size(), 300u);
  EXPECT_NE(ObjectData(5, 300), ObjectData(6, 300));
  EXPECT_TRUE(CheckObjectData(5, 300, ObjectData(5, 300)).ok());
  EXPECT_EQ(CheckObjectData(5, 300, ObjectData(6, 300)).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(CheckObjectData(5, 300, ObjectData(5, 299)).code(), absl::StatusCode::kDataLoss);
}

TEST(RunScenarioTest, CountsOpsAndErrors) {
  class CountingWorker : public Worker {
   public:
    absl::Status Op() override {
      return ++n_ % 1000 == 0 ? absl::InternalError("boom") : absl::OkStatus();
    }

   private:
    int n_ = 0;
  };
  RunSpec spec;
  spec.threads = 2;
  spec.items_per_op = 10;
  spec.warmup = absl::Milliseconds(10);
  spec.duration = absl::Milliseconds(50);
  absl::StatusOr<Measurement> m = RunScenario(
      spec, [](int) -> absl::StatusOr<std::unique_ptr<Worker>> {
        return std::make_unique<CountingWorker>();
      });
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GT(m->ops, 0u);
  EXPECT_EQ(m->items, m->ops * 10);
  EXPECT_GT(m->errors, 0u);
  EXPECT_THAT(m->first_error, HasSubstr("boom"));
}

TEST(RunScenarioTest, FactoryFailureIsReported) {
  RunSpec spec;
  absl::StatusOr<Measurement> m =
      RunScenario(spec, [](int) -> absl::StatusOr<std::unique_ptr<Worker>> {
        return absl::UnavailableError("no server");
      });
  EXPECT_EQ(m.status().code(), absl::StatusCode::kUnavailable);
}

TEST(ReportTest, BaselinesAndTargets) {
  std::vector<BenchRow> rows = SampleRows();
  AttachBaselines(rows);
  EXPECT_EQ(rows[0].baseline_name, "raw_pg_commit_c16");
  ASSERT_TRUE(rows[0].ratio.has_value());
  EXPECT_DOUBLE_EQ(*rows[0].ratio, 0.6);
  EXPECT_EQ(rows[2].baseline_name, "raw_pg_select_c16");
  EXPECT_TRUE(rows[3].baseline_name.empty());  // raw rows have none
  EXPECT_FALSE(rows[6].ratio.has_value());

  std::vector<TargetCheck> targets = EvaluateTargets(rows, 16);
  ASSERT_EQ(targets.size(), 3u);
  EXPECT_TRUE(targets[0].met);  // 600 >= 0.5 * 1000
  EXPECT_DOUBLE_EQ(*targets[0].threshold, 500);
  EXPECT_TRUE(targets[1].met);   // 60000 >= 50000
  EXPECT_FALSE(targets[2].met);  // 10000 < 20000

  std::ostringstream table;
  PrintTable(rows, targets, table);
  EXPECT_THAT(table.str(), HasSubstr("NOT MET"));
  EXPECT_THAT(table.str(), HasSubstr("raw baselines"));
}

TEST(ReportTest, JsonHasNullsWithoutBaseline) {
  std::vector<BenchRow> rows = SampleRows();
  rows[0].first_error = "quote \" and\nnewline";
  AttachBaselines(rows);
  const std::string json = ToJson(rows);
  EXPECT_THAT(json, HasSubstr("\"baseline_name\": \"raw_pg_commit_c16\""));
  EXPECT_THAT(json, HasSubstr("\"baseline_name\": null, \"baseline_ops_per_s\": null, "
                              "\"ratio\": null"));
  EXPECT_THAT(json, HasSubstr("quote \\\" and\\nnewline"));
  EXPECT_EQ(json.front(), '[');
}

TEST(ReportTest, MissingRowsAreNotMet) {
  std::vector<BenchRow> rows = {Row("tiny_commit_c16", "sqlite", "commit", 16, 600, false)};
  std::vector<TargetCheck> targets = EvaluateTargets(rows, 16);
  ASSERT_EQ(targets.size(), 3u);
  EXPECT_FALSE(targets[0].met);
  EXPECT_FALSE(targets[0].threshold.has_value());
}

}  // namespace
}  // namespace cellar::bench
