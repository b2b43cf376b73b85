#include "services/admin/alert_index.h"

#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/common/fake_clock.h"
#include "services/common/status_matchers.h"

namespace cellar::admin {
namespace {

using ::cellar::common::FakeClock;
using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

AlertSpec Spec(const std::string& cluster, const std::string& kind, const std::string& subject,
               AlertSeverity severity = AlertSeverity::kWarning) {
  AlertSpec spec;
  spec.cluster = cluster;
  spec.kind = kind;
  spec.subject = subject;
  spec.severity = severity;
  spec.summary = kind + " " + subject;
  spec.help = "do something";
  spec.help_uri = "docs/alerts/" + kind + ".md";
  return spec;
}

std::vector<std::string> Ids(const std::vector<Alert>& alerts) {
  std::vector<std::string> ids;
  for (const Alert& a : alerts) ids.push_back(a.id);
  return ids;
}

class AlertIndexTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  AlertIndex index_{&clock_};
};

TEST_F(AlertIndexTest, RaiseCreatesThenRefreshes) {
  const absl::Time t0 = clock_.Now();
  Alert a = index_.Raise(Spec("c", "node-down", "S2"));
  EXPECT_EQ(a.id, "c/node-down/S2");
  EXPECT_EQ(a.count, 1);
  EXPECT_EQ(a.first_seen, t0);
  EXPECT_EQ(a.last_seen, t0);
  EXPECT_TRUE(a.active);
  EXPECT_FALSE(a.acknowledged);
  EXPECT_EQ(a.spec.help_uri, "docs/alerts/node-down.md");

  clock_.Advance(absl::Seconds(5));
  AlertSpec changed = Spec("c", "node-down", "S2");
  changed.summary = "still down";
  a = index_.Raise(changed);
  EXPECT_EQ(a.count, 1) << "a problem that persists is one occurrence";
  EXPECT_EQ(a.first_seen, t0);
  EXPECT_EQ(a.last_seen, t0 + absl::Seconds(5));
  EXPECT_EQ(a.spec.summary, "still down");
}

TEST_F(AlertIndexTest, ClearResolvesAndReoccurrenceCounts) {
  index_.Raise(Spec("c", "node-down", "S2"));
  EXPECT_TRUE(index_.Clear("c/node-down/S2"));
  EXPECT_FALSE(index_.Clear("c/node-down/S2")) << "already resolved";
  EXPECT_FALSE(index_.Clear("c/node-down/S9")) << "unknown";
  EXPECT_THAT(index_.List(), IsEmpty()) << "resolved alerts are hidden by default";
  AlertFilter all;
  all.include_resolved = true;
  std::vector<Alert> listed = index_.List(all);
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_FALSE(listed[0].active);
  EXPECT_EQ(listed[0].resolved_at, clock_.Now());

  clock_.Advance(absl::Seconds(10));
  Alert again = index_.Raise(Spec("c", "node-down", "S2"));
  EXPECT_TRUE(again.active);
  EXPECT_EQ(again.count, 2);
  EXPECT_EQ(again.resolved_at, absl::InfinitePast());
}

TEST_F(AlertIndexTest, AcknowledgeIsIdempotentAndResetByNewOccurrence) {
  index_.Raise(Spec("c", "node-down", "S2"));
  absl::StatusOr<Alert> a = index_.Acknowledge("c/node-down/S2", "alice");
  ASSERT_THAT(a, IsOk());
  EXPECT_TRUE(a->acknowledged);
  EXPECT_EQ(a->acknowledged_by, "alice");
  const absl::Time acked_at = clock_.Now();
  clock_.Advance(absl::Seconds(1));
  a = index_.Acknowledge("c/node-down/S2", "bob");
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->acknowledged_by, "alice") << "the first acknowledgement is kept";
  EXPECT_EQ(a->acknowledged_at, acked_at);

  // Persisting: stays acknowledged.
  EXPECT_TRUE(index_.Raise(Spec("c", "node-down", "S2")).acknowledged);
  // Cleared then back: a new occurrence nobody has seen.
  index_.Clear("c/node-down/S2");
  EXPECT_FALSE(index_.Raise(Spec("c", "node-down", "S2")).acknowledged);
}

TEST_F(AlertIndexTest, HigherSeverityUnacknowledges) {
  index_.Raise(Spec("c", "disk-almost-full", "S1", AlertSeverity::kWarning));
  ASSERT_THAT(index_.Acknowledge("c/disk-almost-full/S1", ""), IsOk());
  EXPECT_TRUE(
      index_.Raise(Spec("c", "disk-almost-full", "S1", AlertSeverity::kWarning)).acknowledged);
  EXPECT_FALSE(
      index_.Raise(Spec("c", "disk-almost-full", "S1", AlertSeverity::kCritical)).acknowledged);
  ASSERT_THAT(index_.Acknowledge("c/disk-almost-full/S1", ""), IsOk());
  EXPECT_TRUE(index_.Raise(Spec("c", "disk-almost-full", "S1", AlertSeverity::kWarning))
                  .acknowledged)
      << "getting better keeps the acknowledgement";
}

TEST_F(AlertIndexTest, UnknownIdsAreNotFound) {
  EXPECT_THAT(index_.Acknowledge("nope", "x"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(index_.Delete("nope"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(index_.Get("nope"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(AlertIndexTest, DeleteForgetsAndAFreshAlertComesBack) {
  index_.Raise(Spec("c", "node-down", "S2"));
  index_.Clear("c/node-down/S2");
  index_.Raise(Spec("c", "node-down", "S2"));  // count 2
  ASSERT_THAT(index_.Acknowledge("c/node-down/S2", "alice"), IsOk());
  ASSERT_THAT(index_.Delete("c/node-down/S2"), IsOk());
  EXPECT_THAT(index_.Get("c/node-down/S2"), StatusIs(absl::StatusCode::kNotFound));
  clock_.Advance(absl::Seconds(3));
  Alert fresh = index_.Raise(Spec("c", "node-down", "S2"));
  EXPECT_EQ(fresh.count, 1);
  EXPECT_FALSE(fresh.acknowledged);
  EXPECT_EQ(fresh.first_seen, clock_.Now());
}

TEST_F(AlertIndexTest, ListFiltersAndOrders) {
  index_.Raise(Spec("a", "node-down", "S1", AlertSeverity::kWarning));
  clock_.Advance(absl::Seconds(1));
  index_.Raise(Spec("b", "cluster-unreachable", "", AlertSeverity::kCritical));
  clock_.Advance(absl::Seconds(1));
  index_.Raise(Spec("a", "clock-skew", "M1", AlertSeverity::kInfo));
  clock_.Advance(absl::Seconds(1));
  index_.Raise(Spec("a", "cluster-not-operational", "", AlertSeverity::kCritical));
  ASSERT_THAT(index_.Acknowledge("a/node-down/S1", ""), IsOk());

  EXPECT_THAT(Ids(index_.List()),
              ElementsAre("b/cluster-unreachable/", "a/cluster-not-operational/",
                          "a/node-down/S1", "a/clock-skew/M1"));
  AlertFilter f;
  f.cluster = "a";
  EXPECT_THAT(Ids(index_.List(f)),
              ElementsAre("a/cluster-not-operational/", "a/node-down/S1", "a/clock-skew/M1"));
  f.min_severity = AlertSeverity::kWarning;
  EXPECT_THAT(Ids(index_.List(f)), ElementsAre("a/cluster-not-operational/", "a/node-down/S1"));
  f.acknowledged = false;
  EXPECT_THAT(Ids(index_.List(f)), ElementsAre("a/cluster-not-operational/"));
  f = {};
  f.acknowledged = true;
  EXPECT_THAT(Ids(index_.List(f)), ElementsAre("a/node-down/S1"));
  f = {};
  f.kind = "clock-skew";
  EXPECT_THAT(Ids(index_.List(f)), ElementsAre("a/clock-skew/M1"));
}

TEST_F(AlertIndexTest, ReconcileClearsOnlyEvaluatedKindsOfThatCluster) {
  index_.Raise(Spec("a", "node-down", "S1"));
  index_.Raise(Spec("a", "node-down", "S2"));
  index_.Raise(Spec("a", "clock-skew", "M1"));
  index_.Raise(Spec("b", "node-down", "S1"));
  clock_.Advance(absl::Seconds(2));
  // The poll of "a" evaluated node-down only and still sees S2 down.
  index_.Reconcile("a", {"node-down"}, {Spec("a", "node-down", "S2")});
  EXPECT_THAT(Ids(index_.List()),
              ElementsAre("a/clock-skew/M1", "a/node-down/S2", "b/node-down/S1"));
  EXPECT_EQ(index_.Get("a/node-down/S2")->last_seen, clock_.Now());
  EXPECT_FALSE(index_.Get("a/node-down/S1")->active);
  // The cluster in the spec is forced to the reconciled one.
  index_.Reconcile("a", {"node-down"}, {Spec("zzz", "node-down", "S2")});
  EXPECT_THAT(index_.Get("zzz/node-down/S2"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(AlertIndexTest, ResolvedAlertsExpire) {
  AlertIndex index(&clock_, AlertIndexOptions{absl::Minutes(10)});
  index.Raise(Spec("c", "node-down", "S1"));
  index.Clear("c/node-down/S1");
  clock_.Advance(absl::Minutes(9));
  index.ExpireResolved();
  EXPECT_THAT(index.Get("c/node-down/S1"), IsOk());
  clock_.Advance(absl::Minutes(1));
  index.ExpireResolved();
  EXPECT_THAT(index.Get("c/node-down/S1"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(AlertIndexTest, ConcurrentUseIsSafe) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < 500; ++i) {
        const std::string subject = "S" + std::to_string(i % 7);
        index_.Raise(Spec("c", "node-down", subject));
        if (i % 3 == t % 3) index_.Clear("c/node-down/" + subject);
        (void)index_.Acknowledge("c/node-down/" + subject, "x");
        index_.List();
        if (i % 11 == 0) (void)index_.Delete("c/node-down/" + subject);
      }
    });
  }
  for (auto& th : threads) th.join();
  AlertFilter all;
  all.include_resolved = true;
  EXPECT_LE(index_.List(all).size(), 7u);
}

TEST(SeverityNameTest, Names) {
  EXPECT_EQ(SeverityName(AlertSeverity::kInfo), "info");
  EXPECT_EQ(SeverityName(AlertSeverity::kWarning), "warning");
  EXPECT_EQ(SeverityName(AlertSeverity::kCritical), "critical");
}

}  // namespace
}  // namespace cellar::admin
