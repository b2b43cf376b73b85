#include "services/admin/cluster_monitor.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include "services/admin/admin_metrics.h"
#include "services/admin/alert_index.h"
#include "services/admin/cluster_clients.h"
#include "services/admin/testing/fake_master.h"
#include "services/common/fake_clock.h"
#include "services/common/ids.h"
#include "services/common/status_matchers.h"

namespace cellar::admin {
namespace {

using ::cellar::admin::testing::FakeMaster;
using ::cellar::admin::testing::HealthyClusterInfo;
using ::cellar::common::FakeClock;
using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// Canned answers per cluster name.
class FakeSource final : public ClusterInfoSource {
 public:
  absl::StatusOr<cellar::v1::GetClusterInfoResponse> GetClusterInfo(
      absl::string_view cluster) override {
    absl::MutexLock l(&mu_);
    ++calls_;
    auto it = answers_.find(std::string(cluster));
    if (it == answers_.end()) return absl::NotFoundError("unknown cluster");
    return it->second;
  }
  void Set(const std::string& cluster,
           absl::StatusOr<cellar::v1::GetClusterInfoResponse> answer) {
    absl::MutexLock l(&mu_);
    answers_.insert_or_assign(cluster, std::move(answer));
  }
  int calls() const {
    absl::MutexLock l(&mu_);
    return calls_;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, absl::StatusOr<cellar::v1::GetClusterInfoResponse>> answers_;
  int calls_ = 0;
};

std::vector<std::string> ActiveIds(const AlertIndex& index) {
  std::vector<std::string> ids;
  for (const Alert& a : index.List()) ids.push_back(a.id);
  return ids;
}

uint32_t S(int i) { return common::MakeNodeId(common::NodeKind::kStorage, i); }

class ClusterMonitorTest : public ::testing::Test {
 protected:
  ClusterMonitorTest() {
    options_.period = absl::ZeroDuration();  // the test polls
    options_.rules.not_running_grace = absl::Seconds(10);
  }
  FakeClock clock_;
  FakeSource source_;
  AlertIndex index_{&clock_};
  ClusterMonitorOptions options_;
};

TEST_F(ClusterMonitorTest, RaisesAndClearsAcrossPolls) {
  ClusterMonitor monitor({"prod", "staging"}, &source_, &index_, &clock_, options_);
  // Before any poll.
  for (const ClusterPoll& p : monitor.LastPolls()) {
    EXPECT_EQ(p.polled_at, absl::InfinitePast());
  }
  source_.Set("prod", HealthyClusterInfo());
  source_.Set("staging", absl::UnavailableError("no master answered"));
  monitor.Poll();
  EXPECT_EQ(monitor.rounds(), 1);
  EXPECT_THAT(ActiveIds(index_), ElementsAre("staging/cluster-unreachable/"));
  std::vector<ClusterPoll> polls = monitor.LastPolls();
  ASSERT_EQ(polls.size(), 2u);
  EXPECT_EQ(polls[0].cluster, "prod");
  EXPECT_THAT(polls[0].status, IsOk());
  EXPECT_EQ(polls[0].polled_at, clock_.Now());
  EXPECT_THAT(polls[1].status, StatusIs(absl::StatusCode::kUnavailable));

  // A storage of prod goes down; staging comes back.
  auto info = HealthyClusterInfo();
  for (auto& n : *info.mutable_nodes()) {
    if (n.node_id() == S(2)) n.set_state(cellar::v1::NODE_DOWN);
  }
  source_.Set("prod", info);
  source_.Set("staging", HealthyClusterInfo());
  clock_.Advance(absl::Seconds(2));
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), ElementsAre("prod/node-down/S2"));
  AlertFilter resolved;
  resolved.include_resolved = true;
  resolved.cluster = "staging";
  ASSERT_EQ(index_.List(resolved).size(), 1u);
  EXPECT_FALSE(index_.List(resolved)[0].active);

  // prod unreachable: node-down is kept (can't tell), unreachable raised.
  source_.Set("prod", absl::UnavailableError("gone"));
  clock_.Advance(absl::Seconds(2));
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_),
              ElementsAre("prod/cluster-unreachable/", "prod/node-down/S2"));

  // prod back and healthy: everything clears.
  source_.Set("prod", HealthyClusterInfo());
  clock_.Advance(absl::Seconds(2));
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), IsEmpty());
}

TEST_F(ClusterMonitorTest, GraceUsesTheInjectedClock) {
  ClusterMonitor monitor({"prod"}, &source_, &index_, &clock_, options_);
  auto info = HealthyClusterInfo();
  info.set_cluster_state(cellar::v1::CLUSTER_RECOVERING);
  source_.Set("prod", info);
  monitor.Poll();
  clock_.Advance(absl::Seconds(9));
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), IsEmpty());
  clock_.Advance(absl::Seconds(1));
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), ElementsAre("prod/cluster-not-running/"));
  EXPECT_EQ(index_.Get("prod/cluster-not-running/")->first_seen, clock_.Now());
}

TEST_F(ClusterMonitorTest, LastTidAheadOfTheClockIsClockSkew) {
  ClusterMonitor monitor({"prod"}, &source_, &index_, &clock_, options_);
  auto info = HealthyClusterInfo();
  info.set_last_tid(common::TidFromTime(clock_.Now() + absl::Seconds(5)));
  source_.Set("prod", info);
  monitor.Poll();
  ASSERT_THAT(ActiveIds(index_), ElementsAre("prod/clock-skew/M1"));
  EXPECT_THAT(index_.Get("prod/clock-skew/M1")->spec.summary, HasSubstr("M1: clock ahead by 5"));
  // The admin's clock catches up: cleared.
  clock_.Advance(absl::Seconds(5));
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), IsEmpty());

  ClusterObservation obs = ClusterMonitor::Observe(clock_.Now(), HealthyClusterInfo());
  EXPECT_TRUE(obs.clock_measured);
  EXPECT_THAT(obs.clock_skews, IsEmpty()) << "no TID yet";
  obs = ClusterMonitor::Observe(clock_.Now(), absl::UnavailableError("x"));
  EXPECT_FALSE(obs.clock_measured);
  EXPECT_THAT(obs.reachable, StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(ClusterMonitorTest, BackgroundThreadPollsUntilStopped) {
  options_.period = absl::Milliseconds(5);
  ClusterMonitor monitor({"prod"}, &source_, &index_, &clock_, options_);
  source_.Set("prod", HealthyClusterInfo());
  monitor.Start();
  for (int i = 0; i < 2000 && monitor.rounds() < 3; ++i) absl::SleepFor(absl::Milliseconds(5));
  monitor.Stop();
  const int64_t rounds = monitor.rounds();
  EXPECT_GE(rounds, 3);
  absl::SleepFor(absl::Milliseconds(30));
  EXPECT_EQ(monitor.rounds(), rounds) << "no poll after Stop";
  monitor.Stop();  // idempotent
}

TEST_F(ClusterMonitorTest, NoPeriodNoThread) {
  ClusterMonitor monitor({"prod"}, &source_, &index_, &clock_, options_);
  source_.Set("prod", HealthyClusterInfo());
  monitor.Start();
  absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(source_.calls(), 0);
}

TEST_F(ClusterMonitorTest, MetricsExportAlertsAndReachability) {
  auto index = std::make_shared<AlertIndex>(&clock_);
  auto monitor = std::make_shared<ClusterMonitor>(std::vector<std::string>{"prod", "staging"},
                                                  &source_, index.get(), &clock_, options_);
  auto info = HealthyClusterInfo();
  for (auto& n : *info.mutable_nodes()) {
    if (n.node_id() == S(1) || n.node_id() == S(3)) n.set_state(cellar::v1::NODE_DOWN);
  }
  source_.Set("prod", info);
  source_.Set("staging", absl::UnavailableError("down"));
  monitor->Poll();
  ASSERT_THAT(index->Acknowledge("prod/node-down/S3", "me"), IsOk());
  auto collector = MakeAdminCollector({{"version", "0.1.0"}}, index, monitor);
  const std::string text = prometheus::TextSerializer().Serialize(collector->Collect());
  EXPECT_THAT(text, HasSubstr("cellar_admin_alerts{version=\"0.1.0\",cluster=\"prod\","
                              "kind=\"node-down\",severity=\"warning\",acknowledged=\"false\"} 1"));
  EXPECT_THAT(text, HasSubstr("cellar_admin_alerts{version=\"0.1.0\",cluster=\"prod\","
                              "kind=\"node-down\",severity=\"warning\",acknowledged=\"true\"} 1"));
  EXPECT_THAT(text, HasSubstr("cluster=\"staging\",kind=\"cluster-unreachable\","
                              "severity=\"critical\",acknowledged=\"false\"} 1"));
  EXPECT_THAT(text, HasSubstr("cellar_admin_cluster_reachable{version=\"0.1.0\","
                              "cluster=\"prod\"} 1"));
  EXPECT_THAT(text, HasSubstr("cellar_admin_cluster_reachable{version=\"0.1.0\","
                              "cluster=\"staging\"} 0"));
  EXPECT_THAT(text, HasSubstr("cellar_admin_cluster_operational{version=\"0.1.0\","
                              "cluster=\"prod\"} 1"));
  EXPECT_THAT(text, Not(HasSubstr("cellar_admin_cluster_operational{version=\"0.1.0\","
                                  "cluster=\"staging\"}")));
  EXPECT_THAT(text, HasSubstr("cellar_admin_monitor_rounds_total{version=\"0.1.0\"} 1"));
  EXPECT_THAT(text, HasSubstr("cellar_node_up{version=\"0.1.0\",role=\"admin\"} 1"));
}

// The monitor over real gRPC: ClusterClients against a canned master.
TEST(ClusterMonitorGrpcTest, PollsAFakeMasterOverGrpc) {
  auto master = FakeMaster::Start();
  ASSERT_THAT(master, IsOk());
  auto info = HealthyClusterInfo();
  for (auto& n : *info.mutable_nodes()) {
    if (n.node_id() == S(2)) n.set_state(cellar::v1::NODE_DOWN);
  }
  (*master)->SetClusterInfo(info);
  auto clients = ClusterClients::Create(
      {{"prod", {(*master)->address()}}, {"offline", {"127.0.0.1:1"}}}, absl::Seconds(5));
  ASSERT_THAT(clients, IsOk());
  FakeClock clock;
  AlertIndex index(&clock);
  ClusterMonitorOptions options;
  options.period = absl::ZeroDuration();
  ClusterMonitor monitor({"prod", "offline"}, clients->get(), &index, &clock, options);
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index), ElementsAre("offline/cluster-unreachable/", "prod/node-down/S2"));
  EXPECT_THAT(index.Get("offline/cluster-unreachable/")->spec.summary, HasSubstr("127.0.0.1:1"));
}

}  // namespace
}  // namespace cellar::admin
