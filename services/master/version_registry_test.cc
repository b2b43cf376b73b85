#include "services/master/version_registry.h"

#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/fake_clock.h"
#include "services/common/ids.h"
#include "services/common/status_matchers.h"

namespace cellar::master {
namespace {

using common::IsOk;
using common::NodeKind;
using common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

MATCHER_P(IsOkAndHolds, value, "is OK and holds the value") {
  return arg.ok() && *arg == value;
}

const VersionKey kStable{"0.1.0", "stable"};
const VersionKey kCanary{"0.2.0", "canary"};
const VersionKey kMaster{"0.1.0", "stable"};

uint32_t S(uint32_t i) { return common::MakeNodeId(NodeKind::kStorage, i); }
uint32_t C(uint32_t i) { return common::MakeNodeId(NodeKind::kClient, i); }

class VersionRegistryTest : public ::testing::Test {
 protected:
  VersionRegistry Make(QuarantineThresholds t = {}, VersionKey self = kMaster) {
    return VersionRegistry(&clock_, t, std::move(self), [this] { return readable_; });
  }
  static std::optional<VersionStatus> Find(const std::vector<VersionStatus>& list,
                                           const VersionKey& key) {
    for (const VersionStatus& s : list) {
      if (s.key == key) return s;
    }
    return std::nullopt;
  }

  common::FakeClock clock_;
  std::set<VersionKey> readable_{kStable, kCanary};
};

TEST_F(VersionRegistryTest, CountsConnectedNodesByRoleAndVersion) {
  VersionRegistry r = Make();
  r.NodeRegistered(S(1), kStable);
  r.NodeRegistered(S(2), kCanary);
  r.NodeRegistered(C(1), kCanary);
  r.NodeRegistered(C(2), kCanary);
  r.NodeDown(S(2), DownCause::kStreamEnded);
  r.NodeForgotten(C(2));
  const std::vector<VersionStatus> list = r.List();
  ASSERT_EQ(list.size(), 2u);
  const std::optional<VersionStatus> canary = Find(list, kCanary);
  ASSERT_TRUE(canary.has_value());
  EXPECT_EQ(canary->nodes.count(NodeKind::kStorage), 0u);  // down: not counted
  EXPECT_EQ(canary->nodes.at(NodeKind::kClient), 1u);
  EXPECT_THAT(canary->node_ids, ElementsAre(C(1)));
  EXPECT_EQ(Find(list, kStable)->nodes.at(NodeKind::kStorage), 1u);
  EXPECT_EQ(canary->downs, 0u);  // a clean stream end is no signal
}

TEST_F(VersionRegistryTest, CrashLoopOfOneNodeQuarantinesItsVersion) {
  VersionRegistry r = Make({.restarts = 3, .downs = 0, .window = absl::Minutes(10)});
  EXPECT_FALSE(r.NodeRegistered(S(2), kCanary));  // first life: no restart
  EXPECT_FALSE(r.NodeRegistered(S(2), kCanary));
  clock_.Advance(absl::Minutes(1));
  EXPECT_FALSE(r.NodeRegistered(S(2), kCanary));
  EXPECT_FALSE(r.IsQuarantined(kCanary));
  EXPECT_TRUE(r.NodeRegistered(S(2), kCanary));
  EXPECT_TRUE(r.IsQuarantined(kCanary));
  EXPECT_FALSE(r.IsQuarantined(kStable));
  const std::optional<VersionStatus> canary = Find(r.List(), kCanary);
  ASSERT_TRUE(canary.has_value());
  EXPECT_TRUE(canary->quarantined);
  EXPECT_EQ(canary->by, "auto");
  EXPECT_THAT(canary->reason, HasSubstr("restarted 3 times"));
  EXPECT_EQ(canary->since, clock_.Now());
  ASSERT_EQ(r.History().size(), 1u);
  EXPECT_EQ(r.History()[0].action, VersionDecision::Action::kQuarantine);
  EXPECT_EQ(r.History()[0].key, kCanary);
}

TEST_F(VersionRegistryTest, RollingRestartOfManyNodesOnceEachQuarantinesNothing) {
  VersionRegistry r = Make({.restarts = 3, .downs = 0, .window = absl::Minutes(10)});
  for (uint32_t i = 1; i <= 6; ++i) r.NodeRegistered(S(i), kCanary);
  for (uint32_t i = 1; i <= 6; ++i) EXPECT_FALSE(r.NodeRegistered(S(i), kCanary));
  EXPECT_FALSE(r.IsQuarantined(kCanary));
  EXPECT_EQ(Find(r.List(), kCanary)->restarts, 6u);
  EXPECT_EQ(Find(r.List(), kCanary)->worst_node_restarts, 1u);
}

TEST_F(VersionRegistryTest, UpgradeToAnotherVersionIsNoRestart) {
  VersionRegistry r = Make({.restarts = 1, .downs = 0, .window = absl::Minutes(10)});
  r.NodeRegistered(S(1), kStable);
  EXPECT_FALSE(r.NodeRegistered(S(1), kCanary));
  EXPECT_FALSE(r.IsQuarantined(kCanary));
  EXPECT_EQ(Find(r.List(), kCanary)->restarts, 0u);
}

TEST_F(VersionRegistryTest, SignalsOutsideTheWindowDoNotCount) {
  VersionRegistry r = Make({.restarts = 3, .downs = 0, .window = absl::Minutes(10)});
  r.NodeRegistered(S(2), kCanary);
  r.NodeRegistered(S(2), kCanary);
  r.NodeRegistered(S(2), kCanary);
  clock_.Advance(absl::Minutes(11));
  EXPECT_EQ(Find(r.List(), kCanary)->restarts, 0u);
  EXPECT_FALSE(r.NodeRegistered(S(2), kCanary));
  EXPECT_FALSE(r.IsQuarantined(kCanary));
}

TEST_F(VersionRegistryTest, DownsCountOnlyForHealthCauses) {
  VersionRegistry r = Make({.restarts = 0, .downs = 2, .window = absl::Minutes(10)});
  r.NodeRegistered(S(2), kCanary);
  r.NodeRegistered(S(3), kCanary);
  EXPECT_FALSE(r.NodeDown(S(2), DownCause::kOperator));
  EXPECT_FALSE(r.NodeDown(S(3), DownCause::kStreamEnded));
  EXPECT_EQ(Find(r.List(), kCanary)->downs, 0u);
  EXPECT_FALSE(r.NodeDown(S(2), DownCause::kMissedHeartbeats));
  EXPECT_TRUE(r.NodeDown(S(3), DownCause::kUnreachable));
  EXPECT_TRUE(r.IsQuarantined(kCanary));
  EXPECT_THAT(Find(r.List(), kCanary)->reason, HasSubstr("2 storages taken down"));
}

TEST_F(VersionRegistryTest, ZeroThresholdsNeverQuarantine) {
  VersionRegistry r = Make({.restarts = 0, .downs = 0, .window = absl::Minutes(10)});
  r.NodeRegistered(S(2), kCanary);
  for (int i = 0; i < 50; ++i) {
    EXPECT_FALSE(r.NodeRegistered(S(2), kCanary));
    EXPECT_FALSE(r.NodeDown(S(2), DownCause::kMissedHeartbeats));
  }
  EXPECT_FALSE(r.IsQuarantined(kCanary));
  EXPECT_FALSE(VersionRegistry::ValidateThresholds({.window = absl::ZeroDuration()}).ok());
  EXPECT_THAT(VersionRegistry::ValidateThresholds({.restarts = 0, .downs = 0}), IsOk());
}

TEST_F(VersionRegistryTest, NeverTheOnlyVersionWithReadableData) {
  readable_ = {kCanary};
  VersionRegistry r = Make({.restarts = 1, .downs = 0, .window = absl::Minutes(10)});
  r.NodeRegistered(S(2), kCanary);
  r.NodeRegistered(S(2), kCanary);
  r.NodeRegistered(S(2), kCanary);
  EXPECT_FALSE(r.IsQuarantined(kCanary));
  // One refusal recorded, not one per signal.
  ASSERT_EQ(r.History().size(), 1u);
  EXPECT_EQ(r.History()[0].action, VersionDecision::Action::kRefused);
  EXPECT_THAT(r.History()[0].reason, HasSubstr("only version whose storages hold readable"));
  EXPECT_THAT(r.Quarantine(kCanary, "operator", "bad canary"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("readable data")));
  // Once another version holds readable data, the next signal quarantines.
  readable_ = {kCanary, kStable};
  EXPECT_TRUE(r.NodeRegistered(S(2), kCanary));
}

TEST_F(VersionRegistryTest, NeverThePrimaryMastersOwnVersion) {
  VersionRegistry r = Make({.restarts = 1, .downs = 0, .window = absl::Minutes(10)}, kCanary);
  r.NodeRegistered(S(2), kCanary);
  r.NodeRegistered(S(2), kCanary);
  EXPECT_FALSE(r.IsQuarantined(kCanary));
  EXPECT_THAT(r.Quarantine(kCanary, "operator", "bad canary"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("primary master")));
}

TEST_F(VersionRegistryTest, ManualQuarantineAndUnquarantine) {
  VersionRegistry r = Make({.restarts = 2, .downs = 0, .window = absl::Minutes(10)});
  r.NodeRegistered(S(2), kCanary);
  EXPECT_THAT(r.Quarantine({"", "canary"}, "op", "x"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(r.Quarantine({"0.2.0", ""}, "op", "x"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(r.Quarantine(kCanary, "op", ""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(r.Quarantine({"9.9.9", "canary"}, "op", "x"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(r.Unquarantine(kCanary, "op", "x"), IsOkAndHolds(false));
  EXPECT_THAT(r.Quarantine(kCanary, "op", "slow reads"), IsOkAndHolds(true));
  EXPECT_THAT(r.Quarantine(kCanary, "op", "again"), IsOkAndHolds(false));  // replay
  EXPECT_EQ(Find(r.List(), kCanary)->by, "op");
  EXPECT_EQ(Find(r.List(), kCanary)->reason, "slow reads");
  // One restart counted while quarantined...
  r.NodeRegistered(S(2), kCanary);
  EXPECT_THAT(r.Unquarantine(kCanary, "op", "fixed"), IsOkAndHolds(true));
  EXPECT_FALSE(r.IsQuarantined(kCanary));
  // ...is forgotten: it takes two new ones.
  EXPECT_FALSE(r.NodeRegistered(S(2), kCanary));
  EXPECT_TRUE(r.NodeRegistered(S(2), kCanary));
  std::vector<VersionDecision> h = r.History();
  ASSERT_EQ(h.size(), 3u);
  EXPECT_EQ(h[0].action, VersionDecision::Action::kQuarantine);
  EXPECT_EQ(h[1].action, VersionDecision::Action::kUnquarantine);
  EXPECT_EQ(h[1].reason, "fixed");
  EXPECT_EQ(h[2].by, "auto");
}

TEST_F(VersionRegistryTest, HistoryIsBounded) {
  VersionRegistry r = Make();
  r.NodeRegistered(S(2), kCanary);
  for (size_t i = 0; i < VersionRegistry::kMaxHistory; ++i) {
    ASSERT_THAT(r.Quarantine(kCanary, "op", "a"), IsOk());
    ASSERT_THAT(r.Unquarantine(kCanary, "op", absl::StrCat("b", i)), IsOk());
  }
  std::vector<VersionDecision> h = r.History();
  ASSERT_EQ(h.size(), VersionRegistry::kMaxHistory);
  EXPECT_EQ(h.back().reason, absl::StrCat("b", VersionRegistry::kMaxHistory - 1));
}

TEST_F(VersionRegistryTest, RestoresPersistedQuarantinesButNeverTheMastersOwn) {
  VersionRegistry before = Make();
  before.NodeRegistered(S(2), kCanary);
  ASSERT_THAT(before.Quarantine(kCanary, "alice", "bad canary"), IsOkAndHolds(true));
  const std::vector<VersionDecision> persisted = before.Quarantined();
  ASSERT_EQ(persisted.size(), 1u);
  EXPECT_EQ(persisted[0].by, "alice");
  EXPECT_EQ(persisted[0].at, clock_.Now());

  // A new primary: no node registered yet, the persisted list is restored
  // as it was (who, why, since when), the history says so.
  clock_.Advance(absl::Minutes(5));
  VersionRegistry after = Make();
  const uint64_t generation = after.generation();
  std::vector<VersionDecision> with_self = persisted;
  with_self.push_back({clock_.Now(), kMaster, VersionDecision::Action::kQuarantine, "bob", "x"});
  EXPECT_THAT(after.Restore(with_self), ElementsAre(kCanary));
  EXPECT_GT(after.generation(), generation);
  EXPECT_TRUE(after.IsQuarantined(kCanary));
  EXPECT_FALSE(after.IsQuarantined(kMaster)) << "the primary's own version is never quarantined";
  const std::optional<VersionStatus> canary = Find(after.List(), kCanary);
  ASSERT_TRUE(canary.has_value());
  EXPECT_EQ(canary->by, "alice");
  EXPECT_EQ(canary->reason, "bad canary");
  EXPECT_EQ(canary->since, persisted[0].at);
  const std::vector<VersionDecision> history = after.History();
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0].reason, "restored: bad canary");
  EXPECT_EQ(history[1].action, VersionDecision::Action::kRefused);
  EXPECT_EQ(after.Quarantined().size(), 1u);
  // Restoring again changes nothing; a later lift is not undone by it
  // when the persisted list no longer has it.
  EXPECT_THAT(after.Restore(persisted), ::testing::IsEmpty());
  after.NodeRegistered(S(2), kCanary);
  ASSERT_THAT(after.Unquarantine(kCanary, "alice", "fixed"), IsOkAndHolds(true));
  EXPECT_THAT(after.Restore(after.Quarantined()), ::testing::IsEmpty());
  EXPECT_FALSE(after.IsQuarantined(kCanary));
}

}  // namespace
}  // namespace cellar::master
