// The history checker's short mode (tools/cluster/checker, the long mode is
// `tools/cluster/run check --cycles N`, docs/topologies.md): the bank and
// set workloads run on 4 clients while the nemesis does one rolling restart
// (SIGTERM + start of S3, S2, S1 then M1, waiting for readiness like a
// StatefulSet update) and one kill -9 of a storage, on SQLite and on
// PostgreSQL. The bar: no lost acknowledged commit, no invariant violation
// (bank total, set lists growing by appends only), no stale read after a
// newer tid was seen, no object left locked.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <tuple>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "services/common/logging.h"
#include "services/common/status_matchers.h"
#include "tests/fault/fault_support.h"
#include "tools/cluster/checker/check_run.h"

namespace cellar::fault {
namespace {

using common::IsOk;
namespace ck = tools::checker;

class HistoryCheckTest
    : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
 protected:
  static void SetUpTestSuite() { common::SetMinLogSeverity(common::LogSeverity::kError); }
};

TEST_P(HistoryCheckTest, RollingRestartAndKillKeepTheBar) {
  const auto& [backend, workload] = GetParam();
  auto cluster = StartCluster(backend, DefaultTopology());
  ASSERT_THAT(cluster, IsOk());

  ck::CheckOptions options;
  options.backend = backend;
  options.workload.kind = workload == "bank" ? ck::WorkloadKind::kBank : ck::WorkloadKind::kSet;
  options.workload.clients = 4;
  options.workload.seed = 7;
  options.workload.lock_bound = absl::Seconds(30);
  options.workload.client.rpc_timeout = absl::Seconds(5);
  options.workload.client.cache_bytes = 0;
  options.workload.client.connect_timeout = absl::Seconds(15);
  options.nemesis.faults = {ck::Fault::kRolling, ck::Fault::kKill};
  options.nemesis.cycles = 1;
  options.nemesis.seed = 7;
  options.nemesis.interval = absl::Seconds(1);
  options.nemesis.heal_timeout = absl::Seconds(30);
  options.duration = absl::Seconds(10);
  options.final_timeout = absl::Seconds(30);
  options.on_progress = [](const std::string& line) { std::cerr << line << std::endl; };

  absl::StatusOr<ck::RunReport> report = ck::RunCheck(**cluster, options);
  ASSERT_THAT(report, IsOk());
  std::cerr << ck::HumanSummary(*report);
  // The whole report (every violation, up to 100) for a failed run:
  // bazel-testlogs/tests/fault/history_check_test/shard_*/test.outputs/.
  if (const char* out = getenv("TEST_UNDECLARED_OUTPUTS_DIR")) {
    std::ofstream(absl::StrCat(out, "/history_", backend, "_", workload, ".json"))
        << ck::ReportJson(*report);
  }
  const ck::Verdict& v = report->verdict;
  EXPECT_GT(report->acknowledged, 0u);
  EXPECT_THAT(report->errors, ::testing::IsEmpty());
  EXPECT_EQ(report->events.size(), 5u);  // 3 storages + 1 master + 1 kill
  EXPECT_EQ(v.lost, 0u) << v.FirstViolation();
  EXPECT_EQ(v.invariant, 0u) << v.FirstViolation();
  EXPECT_EQ(v.stale, 0u) << v.FirstViolation();
  EXPECT_EQ(v.locked, 0u) << v.FirstViolation();
}

INSTANTIATE_TEST_SUITE_P(
    BackendsAndWorkloads, HistoryCheckTest,
    ::testing::Combine(::testing::ValuesIn(Backends()), ::testing::Values("bank", "set")),
    [](const ::testing::TestParamInfo<HistoryCheckTest::ParamType>& info) {
      return std::get<0>(info.param) + "_" + std::get<1>(info.param);
    });

}  // namespace
}  // namespace cellar::fault
