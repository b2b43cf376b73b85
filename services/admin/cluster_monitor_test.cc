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
#include "services/storage/storage_server.h"
#include "services/storage/testing/memory_backend.h"

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
using ::testing::UnorderedElementsAre;

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

// Canned GetNodeStatus answers per storage address (unknown: UNAVAILABLE).
// An answer without unix_time_ms gets `clock`'s time (a node in sync).
class FakeStorages final : public StorageStatusSource {
 public:
  explicit FakeStorages(const common::Clock* clock) : clock_(clock) {}
  absl::StatusOr<cellar::v1::GetNodeStatusResponse> GetNodeStatus(
      const std::string& address, absl::Duration timeout) override {
    absl::MutexLock l(&mu_);
    timeouts_.push_back(timeout);
    auto it = answers_.find(address);
    if (it == answers_.end()) return absl::UnavailableError("connection refused");
    absl::StatusOr<cellar::v1::GetNodeStatusResponse> answer = it->second;
    if (answer.ok() && !answer->has_unix_time_ms()) {
      answer->set_unix_time_ms(absl::ToUnixMillis(clock_->Now()));
    }
    return answer;
  }
  void Set(const std::string& address,
           absl::StatusOr<cellar::v1::GetNodeStatusResponse> answer) {
    absl::MutexLock l(&mu_);
    answers_.insert_or_assign(address, std::move(answer));
  }
  std::vector<absl::Duration> timeouts() const {
    absl::MutexLock l(&mu_);
    return timeouts_;
  }

 private:
  const common::Clock* const clock_;
  mutable absl::Mutex mu_;
  std::map<std::string, absl::StatusOr<cellar::v1::GetNodeStatusResponse>> answers_;
  std::vector<absl::Duration> timeouts_;
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

// --- Storage inputs (GetNodeStatus): disk, backend errors, replication,
// clock skew. HealthyClusterInfo's storages S1..S3 are 127.0.0.1:7200..7202.

class StorageInputsTest : public ClusterMonitorTest {
 protected:
  StorageInputsTest() {
    for (int i = 0; i < 3; ++i) Answer(i, Healthy());
  }
  cellar::v1::GetNodeStatusResponse Healthy() const {
    cellar::v1::GetNodeStatusResponse status;
    status.set_backend_errors_total(0);
    status.set_disk_free_bytes(uint64_t{50} << 30);
    status.set_disk_total_bytes(uint64_t{100} << 30);
    return status;
  }
  void Answer(int i, absl::StatusOr<cellar::v1::GetNodeStatusResponse> status) {
    storages_.Set(absl::StrCat("127.0.0.1:", 7200 + i), std::move(status));
  }
  // S1's answer as `edit` changes a healthy one (its time is the admin's).
  template <typename Edit>
  void AnswerS1(Edit edit) {
    cellar::v1::GetNodeStatusResponse status = Healthy();
    edit(status);
    Answer(0, status);
  }
  FakeStorages storages_{&clock_};
};

TEST_F(StorageInputsTest, LowDiskRaisesDiskAlmostFull) {
  ClusterMonitor monitor({"prod"}, &source_, &storages_, &index_, &clock_, options_);
  source_.Set("prod", HealthyClusterInfo());
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), IsEmpty());
  EXPECT_THAT(storages_.timeouts(), ElementsAre(absl::Seconds(1), absl::Seconds(1),
                                                absl::Seconds(1)))
      << "every RUNNING storage, with the short deadline";

  AnswerS1([](auto& s) { s.set_disk_free_bytes(uint64_t{8} << 30); });  // 8%
  clock_.Advance(absl::Seconds(2));
  monitor.Poll();
  ASSERT_THAT(ActiveIds(index_), ElementsAre("prod/disk-almost-full/S1"));
  const Alert warning = *index_.Get("prod/disk-almost-full/S1");
  EXPECT_EQ(warning.spec.severity, AlertSeverity::kWarning);
  EXPECT_THAT(warning.spec.summary, HasSubstr("S1: 8.0% of its disk free"));

  AnswerS1([](auto& s) { s.set_disk_free_bytes(uint64_t{3} << 30); });  // 3%
  clock_.Advance(absl::Seconds(2));
  monitor.Poll();
  EXPECT_EQ(index_.Get("prod/disk-almost-full/S1")->spec.severity, AlertSeverity::kCritical);

  // S1 stops answering: the poll goes on, its alert is kept.
  Answer(0, absl::DeadlineExceededError("deadline"));
  clock_.Advance(absl::Seconds(2));
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), ElementsAre("prod/disk-almost-full/S1"));
  EXPECT_THAT(monitor.LastPolls()[0].status, IsOk());

  // Space freed: cleared. A node without disk figures (PostgreSQL) is fine.
  Answer(0, Healthy());
  AnswerS1([](auto& s) {
    s.clear_disk_free_bytes();
    s.clear_disk_total_bytes();
  });
  clock_.Advance(absl::Seconds(2));
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), IsEmpty());
}

TEST_F(StorageInputsTest, GrowingBackendErrorCounterRaisesBackendErrors) {
  options_.rules.backend_error_window = absl::Minutes(5);
  ClusterMonitor monitor({"prod"}, &source_, &storages_, &index_, &clock_, options_);
  source_.Set("prod", HealthyClusterInfo());
  // Errors from before the admin started watching: no growth seen.
  AnswerS1([](auto& s) { s.set_backend_errors_total(7); });
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), IsEmpty());

  AnswerS1([](auto& s) { s.set_backend_errors_total(9); });
  clock_.Advance(absl::Seconds(2));
  monitor.Poll();
  ASSERT_THAT(ActiveIds(index_), ElementsAre("prod/backend-errors/S1"));
  EXPECT_EQ(index_.Get("prod/backend-errors/S1")->spec.severity, AlertSeverity::kCritical);
  EXPECT_THAT(index_.Get("prod/backend-errors/S1")->spec.summary,
              HasSubstr("backend errors grew to 9"));

  // No more growth: raised for the window, then cleared.
  clock_.Advance(absl::Minutes(4));
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), ElementsAre("prod/backend-errors/S1"));
  clock_.Advance(absl::Minutes(1));
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), IsEmpty());

  // A restarted node (counter back to 0, then growing) raises it again.
  AnswerS1([](auto& s) { s.set_backend_errors_total(0); });
  clock_.Advance(absl::Seconds(2));
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), IsEmpty());
  AnswerS1([](auto& s) { s.set_backend_errors_total(1); });
  clock_.Advance(absl::Seconds(2));
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), ElementsAre("prod/backend-errors/S1"));
}

TEST_F(StorageInputsTest, StuckReplicationPositionRaisesReplicationStalled) {
  options_.rules.replication_stall_threshold = absl::Minutes(5);
  options_.rules.out_of_date_threshold = absl::Hours(1);  // not what is tested
  ClusterMonitor monitor({"prod"}, &source_, &storages_, &index_, &clock_, options_);
  // S2's cell of partition 2 is OUT_OF_DATE (S2 also holds 0 and 3).
  auto info = HealthyClusterInfo();
  for (auto& row : *info.mutable_partition_table()->mutable_rows()) {
    for (auto& cell : *row.mutable_cells()) {
      if (row.partition() == 2 && cell.node_id() == S(2)) {
        cell.set_state(cellar::v1::CELL_OUT_OF_DATE);
      }
    }
  }
  source_.Set("prod", info);
  auto s2_at = [&](uint64_t replicated_tid) {
    cellar::v1::GetNodeStatusResponse status = Healthy();
    auto* r = status.add_replication();
    r->set_partition(2);
    r->set_replicated_tid(replicated_tid);
    r->set_active(true);
    // A cell that is UP_TO_DATE again in the table is ignored.
    auto* done = status.add_replication();
    done->set_partition(3);
    done->set_replicated_tid(1);
    Answer(1, status);
  };
  s2_at(1000);
  monitor.Poll();
  clock_.Advance(absl::Minutes(4));
  s2_at(1000);
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), IsEmpty());
  clock_.Advance(absl::Minutes(1));
  monitor.Poll();
  ASSERT_THAT(ActiveIds(index_), ElementsAre("prod/replication-stalled/S2"));
  EXPECT_THAT(index_.Get("prod/replication-stalled/S2")->spec.summary,
              HasSubstr("S2: replication of 1 cells made no progress for 5m"));

  // Progress: cleared, and the threshold counts from the new position.
  s2_at(2000);
  clock_.Advance(absl::Seconds(2));
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), IsEmpty());
  clock_.Advance(absl::Minutes(4));
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), IsEmpty());

  // A node that never reported on the cell is at position 0: stalled too.
  Answer(1, Healthy());
  clock_.Advance(absl::Seconds(1));
  monitor.Poll();
  clock_.Advance(absl::Minutes(5));
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), ElementsAre("prod/replication-stalled/S2"));
}

TEST_F(StorageInputsTest, NodeClocksGiveClockSkew) {
  ClusterMonitor monitor({"prod"}, &source_, &storages_, &index_, &clock_, options_);
  // The master's clock is 2 s behind, S3's 15 s ahead (critical: > 10x 1 s).
  auto info = HealthyClusterInfo();
  info.set_unix_time_ms(absl::ToUnixMillis(clock_.Now() - absl::Seconds(2)));
  source_.Set("prod", info);
  cellar::v1::GetNodeStatusResponse s3 = Healthy();
  s3.set_unix_time_ms(absl::ToUnixMillis(clock_.Now() + absl::Seconds(15)));
  Answer(2, s3);
  AnswerS1([&](auto& s) {
    s.set_unix_time_ms(absl::ToUnixMillis(clock_.Now() + absl::Milliseconds(900)));
  });
  monitor.Poll();
  ASSERT_THAT(ActiveIds(index_), ElementsAre("prod/clock-skew/S3", "prod/clock-skew/M1"));
  EXPECT_THAT(index_.Get("prod/clock-skew/M1")->spec.summary,
              HasSubstr("M1: clock behind by 2s"));
  EXPECT_EQ(index_.Get("prod/clock-skew/M1")->spec.severity, AlertSeverity::kWarning);
  EXPECT_THAT(index_.Get("prod/clock-skew/S3")->spec.summary,
              HasSubstr("S3: clock ahead by 15s"));
  EXPECT_EQ(index_.Get("prod/clock-skew/S3")->spec.severity, AlertSeverity::kCritical);
  // Also a gauge per measured node.
  auto index = std::shared_ptr<AlertIndex>(&index_, [](AlertIndex*) {});
  auto shared = std::shared_ptr<ClusterMonitor>(&monitor, [](ClusterMonitor*) {});
  const std::string text = prometheus::TextSerializer().Serialize(
      MakeAdminCollector({{"version", "0.1.0"}}, index, shared)->Collect());
  EXPECT_THAT(text, HasSubstr("cellar_admin_clock_skew_seconds{version=\"0.1.0\","
                              "cluster=\"prod\",node=\"M1\"} -2"));
  EXPECT_THAT(text, HasSubstr("cellar_admin_clock_skew_seconds{version=\"0.1.0\","
                              "cluster=\"prod\",node=\"S3\"} 15"));
  EXPECT_THAT(text, HasSubstr("cellar_admin_clock_skew_seconds{version=\"0.1.0\","
                              "cluster=\"prod\",node=\"S1\"} 0.9"));
  EXPECT_THAT(text, HasSubstr("cellar_build_info{version=\"0.1.0\",build_id=\"dev\","
                              "role=\"admin\"} 1"));

  // Clocks fixed: cleared.
  info.set_unix_time_ms(absl::ToUnixMillis(clock_.Now()));
  source_.Set("prod", info);
  Answer(2, Healthy());
  clock_.Advance(absl::Seconds(1));
  info.set_unix_time_ms(absl::ToUnixMillis(clock_.Now()));
  source_.Set("prod", info);
  for (int i = 0; i < 3; ++i) Answer(i, Healthy());
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index_), IsEmpty());
}

TEST(ClusterMonitorSkewTest, HalfTheRoundTripAndTooSlowCalls) {
  const absl::Time sent = absl::FromUnixSeconds(1800000000);
  // The node answered at +300 ms during a 200 ms call: 200 ms ahead.
  EXPECT_EQ(ClusterMonitor::Skew(sent + absl::Milliseconds(300), sent,
                                 sent + absl::Milliseconds(200), absl::Seconds(1)),
            absl::Milliseconds(200));
  EXPECT_EQ(ClusterMonitor::Skew(sent - absl::Seconds(3), sent, sent, absl::Seconds(1)),
            absl::Seconds(-3));
  // Longer than the threshold: not measured.
  EXPECT_EQ(ClusterMonitor::Skew(sent, sent, sent + absl::Seconds(2), absl::Seconds(1)),
            absl::nullopt);
}

// A real in-process storage (memory backend) whose clock is 30 s ahead
// and whose volume is almost full, polled over gRPC; a second storage
// address does not answer and is skipped.
TEST(ClusterMonitorGrpcTest, RealStorageReportsItsClockAndDisk) {
  FakeClock admin_clock;
  FakeClock node_clock(admin_clock.Now() + absl::Seconds(30));
  auto backend = std::make_unique<storage::testing::MemoryBackend>();
  backend->set_disk_usage(storage::DiskUsage{uint64_t{1} << 30, uint64_t{40} << 30});  // 2.5%
  storage::StorageServerOptions storage_options;
  storage_options.master_addresses = {"127.0.0.1:1"};  // never registers: not needed
  auto storage = storage::StorageServer::Start(storage_options, std::move(backend),
                                               &node_clock, nullptr);
  ASSERT_THAT(storage, IsOk());

  auto master = FakeMaster::Start();
  ASSERT_THAT(master, IsOk());
  auto info = HealthyClusterInfo(/*storages=*/2);
  for (auto& n : *info.mutable_nodes()) {
    if (n.node_id() == S(1)) n.set_address((*storage)->address());
    if (n.node_id() == S(2)) n.set_address("127.0.0.1:1");
  }
  (*master)->SetClusterInfo(info);
  auto clients = ClusterClients::Create({{"prod", {(*master)->address()}}}, absl::Seconds(5));
  ASSERT_THAT(clients, IsOk());
  AlertIndex index(&admin_clock);
  ClusterMonitorOptions options;
  options.period = absl::ZeroDuration();
  ClusterMonitor monitor({"prod"}, clients->get(), &index, &admin_clock, options);
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index),
              UnorderedElementsAre("prod/disk-almost-full/S1", "prod/clock-skew/S1"));
  EXPECT_THAT(index.Get("prod/clock-skew/S1")->spec.summary, HasSubstr("ahead by 30s"));
  EXPECT_THAT(index.Get("prod/disk-almost-full/S1")->spec.summary,
              HasSubstr("2.5% of its disk free (1024 MiB of 40960 MiB)"));

  // The node's clock is fixed: clock-skew clears.
  node_clock.Set(admin_clock.Now());
  monitor.Poll();
  EXPECT_THAT(ActiveIds(index), ElementsAre("prod/disk-almost-full/S1"));
  (*storage)->Shutdown();
}

// The monitor over real gRPC: ClusterClients against a canned master.
TEST(ClusterMonitorGrpcTest, PollsAFakeMasterOverGrpc) {
  auto master = FakeMaster::Start();
  ASSERT_THAT(master, IsOk());
  auto info = HealthyClusterInfo();
  for (auto& n : *info.mutable_nodes()) {
    if (n.node_id() == S(2)) n.set_state(cellar::v1::NODE_DOWN);
    // No storage answers (not whatever may listen on 7200 here).
    if (n.role() == cellar::v1::NODE_ROLE_STORAGE) n.set_address("127.0.0.1:1");
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
