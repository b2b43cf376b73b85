// Canary analysis end to end (docs/rollouts.md, "Canary analysis"): a real
// master, two stable storages and one canary storage (version 0.2.0,
// track canary) and an admin in process, talking gRPC; storages heartbeat
// every 200 ms and the master analyses 1 s intervals. A client loads
// objects in a loop (no object cache, so every load reaches a storage).
//  - A bad canary (--fault_load_error_ratio=0.3) gets the verdict rollback
//    and its version quarantined automatically, while the client sees no
//    failed load (it retries another replica on UNAVAILABLE).
//  - A good canary holds, then is promoted after 3 passing intervals.

#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/grpc_status.h"
#include "services/common/http_get.h"
#include "services/common/logging.h"
#include "services/common/partition_table.h"
#include "services/common/status_matchers.h"
#include "tests/integration/cluster_helpers.h"
#include "tools/local/local_cluster.h"

namespace cellar {
namespace {

using ::testing::HasSubstr;
namespace v1 = ::cellar::v1;

constexpr int kCanary = 2;  // storage index
constexpr int kObjects = 24;

class CanaryAnalysisClusterTest : public ::testing::TestWithParam<double> {
 protected:
  void SetUp() override {
    common::SetMinLogSeverity(common::LogSeverity::kWarning);
    started_ = absl::Now();
    tools::LocalClusterOptions options;
    // One directory per test: a quarantine persists with the cluster's
    // data, and the bad canary's must not follow the good one.
    options.data_dir =
        absl::StrCat(::testing::TempDir(), "/canary_analysis_test.", getpid(), ".",
                     absl::StrReplaceAll(
                         ::testing::UnitTest::GetInstance()->current_test_info()->name(),
                         {{"/", "_"}}));
    options.storages = 3;
    options.replicas = 1;
    options.partitions = 6;
    options.master_metrics_listen = "127.0.0.1:0";
    const double fault = GetParam();
    options.storage_options = [fault](int i, storage::StorageServerOptions* o) {
      o->heartbeat_interval = absl::Milliseconds(200);
      if (i == kCanary) {
        o->version = "0.2.0";
        o->track = "canary";
        o->fault_load_error_ratio = fault;
      }
    };
    options.master_options = [](master::MasterServerOptions* o) {
      o->canary.interval = absl::Seconds(1);
      o->canary.min_requests = 20;
      o->canary.promote_after = 3;
      // Latency is not what this test is about: two cores shared with
      // other builds make in-process p99s noisy.
      o->canary.max_latency_ratio = 100;
    };
    auto cluster = tools::LocalCluster::Start(options);
    ASSERT_THAT(cluster, common::IsOk());
    cluster_ = *std::move(cluster);
    admin_ = v1::Admin::NewStub(common::MakeChannel(cluster_->admin_address()));
    ASSERT_NO_FATAL_FAILURE(AddTheCanary());

    client::ClientOptions client_options;
    client_options.master_addresses = {cluster_->master_address()};
    client_options.cache_bytes = 0;  // every load reaches a storage
    auto c = client::Client::Connect(client_options);
    ASSERT_THAT(c, common::IsOk());
    client_ = *std::move(c);
    auto txn = client_->NewTransaction();
    for (int i = 0; i < kObjects; ++i) {
      auto oid = client_->NewOid();
      ASSERT_THAT(oid, common::IsOk());
      oids_.push_back(*oid);
      txn->Store(*oid, 0, absl::StrCat("object ", i));
    }
    ASSERT_THAT(txn->Commit(), common::IsOk());
  }

  // A canary storage joins PENDING and holds nothing until it is added
  // (docs/rollouts.md, "Canary storages"): add it, wait for its extra
  // cells to catch up, so that it serves loads.
  void AddTheCanary() {
    auto master = v1::Master::NewStub(common::MakeChannel(cluster_->master_address()));
    uint32_t canary = 0;
    const v1::GetClusterInfoResponse info = testing_support::ClusterInfo(*master);
    for (const v1::NodeInfo& n : info.nodes()) {
      if (n.role() == v1::NODE_ROLE_STORAGE && n.track() == "canary") canary = n.node_id();
    }
    ASSERT_NE(canary, 0u) << "the canary storage is not registered";
    ASSERT_THAT(testing_support::ChangePartitionTable(*master, v1::PT_ADD, {canary}),
                common::IsOk());
    auto caught_up = [&] {
      auto pt = common::PartitionTable::FromProto(
          testing_support::ClusterInfo(*master).partition_table());
      if (!pt.ok()) return false;
      int cells = 0;
      for (uint32_t p = 0; p < pt->num_partitions(); ++p) {
        const v1::CellState state = pt->CellStateOf(p, canary);
        if (state == v1::CELL_STATE_UNSPECIFIED) continue;
        if (state != v1::CELL_UP_TO_DATE) return false;
        ++cells;
      }
      return cells > 0;
    };
    ASSERT_TRUE(testing_support::WaitFor(caught_up, absl::Seconds(60)))
        << "the canary's cells did not catch up in 60 s";
  }

  void TearDown() override {
    client_.reset();
    cluster_.reset();
  }

  v1::GetCanaryAnalysisResponse Analysis() {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(20));
    v1::GetCanaryAnalysisResponse response;
    const grpc::Status s =
        admin_->GetCanaryAnalysis(&context, v1::AdminGetCanaryAnalysisRequest(), &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  // The canary's analysis (an empty one until the master saw it).
  v1::CanaryVersionAnalysis Canary() {
    const v1::GetCanaryAnalysisResponse analysis = Analysis();
    for (const v1::CanaryVersionAnalysis& c : analysis.canaries()) {
      if (c.version() == "0.2.0" && c.track() == "canary") return c;
    }
    return v1::CanaryVersionAnalysis();
  }

  bool CanaryQuarantined() {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(20));
    v1::ListVersionsResponse list;
    EXPECT_TRUE(admin_->ListVersions(&context, v1::AdminListVersionsRequest(), &list).ok());
    for (const v1::VersionInfo& v : list.versions()) {
      if (v.version() == "0.2.0" && v.track() == "canary") return v.quarantined();
    }
    return false;
  }

  // The master's /metrics line of the canary's verdict ("" if absent).
  std::string VerdictMetric() {
    const common::HttpAnswer answer = common::HttpGet(
        absl::StrCat("http://127.0.0.1:", cluster_->master_metrics_port(), "/metrics"));
    EXPECT_EQ(answer.status, 200) << answer.error;
    for (absl::string_view line : absl::StrSplit(answer.body, '\n')) {
      if (absl::StartsWith(line, "cellar_canary_verdict{") &&
          absl::StrContains(line, "version=\"0.2.0\"")) {
        return std::string(line);
      }
    }
    return "";
  }

  // Loads every object once; counts the loads that failed.
  void LoadRound() {
    for (uint64_t oid : oids_) {
      auto loaded = client_->Load(oid);
      ++loads_;
      if (!loaded.ok()) {
        ++failed_loads_;
        ADD_FAILURE() << "load of " << oid << ": " << loaded.status();
      }
    }
  }

  // Loads until the canary's verdict is `verdict` (or `timeout`); every
  // verdict seen on the way is appended to `seen`.
  bool LoadUntil(const std::string& verdict, absl::Duration timeout,
                 std::vector<std::string>* seen) {
    const absl::Time deadline = absl::Now() + timeout;
    absl::Time next_poll = absl::Now();
    while (absl::Now() < deadline) {
      LoadRound();
      if (absl::Now() < next_poll) continue;
      next_poll = absl::Now() + absl::Milliseconds(200);
      const std::string now = Canary().verdict();
      if (!now.empty() && (seen->empty() || seen->back() != now)) seen->push_back(now);
      if (now == verdict) return true;
    }
    return false;
  }

  absl::Time started_;
  std::unique_ptr<tools::LocalCluster> cluster_;
  std::unique_ptr<v1::Admin::Stub> admin_;
  std::unique_ptr<client::Client> client_;
  std::vector<uint64_t> oids_;
  int loads_ = 0;
  int failed_loads_ = 0;
};

class BadCanaryTest : public CanaryAnalysisClusterTest {};
class GoodCanaryTest : public CanaryAnalysisClusterTest {};

TEST_P(BadCanaryTest, RolledBackAndQuarantinedWhileClientsSeeNoFailedLoad) {
  const absl::Time workload = absl::Now();
  std::vector<std::string> seen;
  ASSERT_TRUE(LoadUntil("rollback", absl::Seconds(30), &seen))
      << "no rollback verdict; seen: " << absl::StrJoin(seen, ", ");
  const absl::Time verdict = absl::Now();
  CELLAR_LOG(WARNING) << "bad canary: rollback verdict "
                      << absl::FormatDuration(verdict - started_) << " after its start, "
                      << absl::FormatDuration(verdict - workload) << " after the workload began";
  const v1::CanaryVersionAnalysis canary = Canary();
  EXPECT_THAT(canary.reason(), HasSubstr("error ratio"));
  ASSERT_GT(canary.intervals_size(), 0);
  const v1::CanaryIntervalResult& last = canary.intervals(canary.intervals_size() - 1);
  EXPECT_EQ(last.outcome(), "fail");
  EXPECT_GT(last.load_errors(), 0u);
  EXPECT_GT(last.error_ratio(), 0.1);
  // Quarantined through the version registry, with the analysis's reason.
  EXPECT_TRUE(testing_support::WaitFor([&] { return CanaryQuarantined(); }, absl::Seconds(5)));
  EXPECT_TRUE(Canary().quarantined());
  EXPECT_THAT(VerdictMetric(), ::testing::EndsWith(" 2"));
  // Reads go on without a failure (quarantined replicas are read last).
  for (int i = 0; i < 5; ++i) LoadRound();
  EXPECT_EQ(failed_loads_, 0) << "of " << loads_ << " loads";
  EXPECT_GT(loads_, 100);
}

TEST_P(GoodCanaryTest, HoldsThenIsPromoted) {
  std::vector<std::string> seen;
  ASSERT_TRUE(LoadUntil("promote", absl::Seconds(30), &seen))
      << "no promote verdict; seen: " << absl::StrJoin(seen, ", ") << "; last reason "
      << Canary().reason();
  EXPECT_EQ(seen.front(), "hold");
  const v1::CanaryVersionAnalysis canary = Canary();
  EXPECT_GE(canary.consecutive_passes(), 3u);
  EXPECT_FALSE(canary.quarantined());
  EXPECT_FALSE(CanaryQuarantined());
  int passes = 0;
  for (const v1::CanaryIntervalResult& r : canary.intervals()) {
    if (r.outcome() == "pass") {
      ++passes;
      EXPECT_GE(r.loads() + r.stores(), 20u);
      EXPECT_EQ(r.load_errors(), 0u);
    }
  }
  EXPECT_GE(passes, 3);
  EXPECT_THAT(VerdictMetric(), ::testing::EndsWith(" 1"));
  EXPECT_EQ(failed_loads_, 0);
}

INSTANTIATE_TEST_SUITE_P(FaultRatio, BadCanaryTest, ::testing::Values(0.3));
INSTANTIATE_TEST_SUITE_P(NoFault, GoodCanaryTest, ::testing::Values(0.0));

}  // namespace
}  // namespace cellar
