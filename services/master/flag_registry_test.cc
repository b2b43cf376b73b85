#include "services/master/flag_registry.h"

#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/common/fake_clock.h"
#include "services/common/feature_flags.h"
#include "services/common/status_matchers.h"

namespace cellar::master {
namespace {

using common::IsOk;
using common::StatusIs;
using ::testing::HasSubstr;
namespace v1 = ::cellar::v1;

v1::SetFeatureFlagRequest BoolFlag(const std::string& name, bool value,
                                   const std::string& description = "",
                                   const std::string& owner = "") {
  v1::SetFeatureFlagRequest r;
  r.set_name(name);
  r.set_bool_value(value);
  r.set_description(description);
  r.set_owner(owner);
  return r;
}

class FlagRegistryTest : public ::testing::Test {
 protected:
  FlagRegistry::Persist Saver() {
    return [this](const v1::FeatureFlagTable& t) {
      if (!persist_error_.ok()) return persist_error_;
      persisted_.push_back(t);
      return absl::OkStatus();
    };
  }
  common::FakeClock clock_;
  std::vector<v1::FeatureFlagTable> persisted_;
  absl::Status persist_error_ = absl::OkStatus();
  FlagRegistry registry_{&clock_};
};

TEST_F(FlagRegistryTest, CreationNeedsAValueADescriptionAndAnOwner) {
  v1::SetFeatureFlagRequest no_value;
  no_value.set_name("a.b");
  no_value.set_description("d");
  no_value.set_owner("o");
  EXPECT_THAT(registry_.Set(no_value, Saver()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("value")));
  EXPECT_THAT(registry_.Set(BoolFlag("a.b", true, "", "ops"), Saver()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("description")));
  EXPECT_THAT(registry_.Set(BoolFlag("a.b", true, "d", ""), Saver()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("owner")));
  EXPECT_THAT(registry_.Set(BoolFlag("A.B", true, "d", "o"), Saver()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  EXPECT_THAT(registry_.Set(BoolFlag("", true, "d", "o"), Saver()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  EXPECT_THAT(registry_.Set(BoolFlag(std::string(65, 'a'), true, "d", "o"), Saver()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  EXPECT_THAT(registry_.Set(BoolFlag("a.b", true, "two\nlines", "o"), Saver()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("description")));
  EXPECT_TRUE(persisted_.empty());
  EXPECT_EQ(registry_.Table().version(), 0u);
}

TEST_F(FlagRegistryTest, AnUpdateKeepsDescriptionOwnerAndCreationTime) {
  auto created = registry_.Set(BoolFlag("read.fast", false, "faster reads", "team-a"), Saver());
  ASSERT_THAT(created, IsOk());
  EXPECT_TRUE(created->created);
  EXPECT_EQ(created->version, 1u);
  const int64_t born = created->flag.created_unix_ms();
  EXPECT_EQ(born, absl::ToUnixMillis(clock_.Now()));
  clock_.Advance(absl::Hours(1));

  auto updated = registry_.Set(BoolFlag("read.fast", true), Saver());
  ASSERT_THAT(updated, IsOk());
  EXPECT_FALSE(updated->created);
  EXPECT_TRUE(updated->flag.bool_value());
  EXPECT_EQ(updated->flag.description(), "faster reads");
  EXPECT_EQ(updated->flag.owner(), "team-a");
  EXPECT_EQ(updated->flag.created_unix_ms(), born);
  EXPECT_EQ(updated->flag.updated_unix_ms(), absl::ToUnixMillis(clock_.Now()));
  EXPECT_EQ(updated->version, 2u);
  ASSERT_EQ(persisted_.size(), 2u);

  // The same value again: nothing persisted, same version.
  auto again = registry_.Set(BoolFlag("read.fast", true), Saver());
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->version, 2u);
  EXPECT_EQ(persisted_.size(), 2u);

  v1::SetFeatureFlagRequest as_string;
  as_string.set_name("read.fast");
  as_string.set_string_value("yes");
  EXPECT_THAT(registry_.Set(as_string, Saver()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("type")));
}

TEST_F(FlagRegistryTest, NothingIsAdoptedWhenPersistingFails) {
  persist_error_ = absl::UnavailableError("no storage");
  EXPECT_THAT(registry_.Set(BoolFlag("a", true, "d", "o"), Saver()),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(registry_.Table().flags_size(), 0);
  EXPECT_EQ(registry_.Table().version(), 0u);
}

TEST_F(FlagRegistryTest, DeleteNeedsAKnownName) {
  ASSERT_THAT(registry_.Set(BoolFlag("a", true, "d", "o"), Saver()), IsOk());
  EXPECT_THAT(registry_.Delete("", Saver()), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(registry_.Delete("b", Saver()), StatusIs(absl::StatusCode::kNotFound));
  auto deleted = registry_.Delete("a", Saver());
  ASSERT_THAT(deleted, IsOk());
  EXPECT_EQ(deleted->flag().name(), "a");
  EXPECT_EQ(deleted->version(), 2u);
  EXPECT_EQ(registry_.Table().flags_size(), 0);
}

TEST_F(FlagRegistryTest, TheHighestReportedVersionWinsAndATieKeepsOurs) {
  ASSERT_THAT(registry_.Set(BoolFlag("ours", true, "d", "o"), Saver()), IsOk());
  v1::FeatureFlagTable older;
  older.set_version(1);
  auto* f = older.add_flags();
  f->set_name("theirs");
  f->set_bool_value(true);
  f->set_description("d");
  f->set_owner("o");
  auto tie = registry_.MergeReported(older);
  ASSERT_THAT(tie, IsOk());
  EXPECT_TRUE(*tie);
  EXPECT_EQ(registry_.Table().version(), 2u) << "raised above the divergent reporter";
  EXPECT_EQ(registry_.Table().flags(0).name(), "ours");

  v1::FeatureFlagTable newer = older;
  newer.set_version(7);
  ASSERT_THAT(registry_.MergeReported(newer), IsOk());
  EXPECT_EQ(registry_.Table().version(), 7u);
  EXPECT_EQ(registry_.Table().flags(0).name(), "theirs");

  auto same = registry_.MergeReported(newer);
  ASSERT_THAT(same, IsOk());
  EXPECT_FALSE(*same);

  v1::FeatureFlagTable bad = newer;
  bad.set_version(9);
  bad.mutable_flags(0)->set_name("BAD");
  EXPECT_THAT(registry_.MergeReported(bad), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(registry_.Table().version(), 7u);
}

TEST_F(FlagRegistryTest, SeedingCreatesOnlyAbsentFlags) {
  ASSERT_THAT(registry_.Set(BoolFlag("kept", false, "operator's", "ops"), Saver()), IsOk());
  auto initial = ParseInitialFeatureFlags(
      R"({"flags":[{"name":"kept","boolValue":true,"owner":"helm","description":"x"},)"
      R"({"name":"mode","stringValue":"b","owner":"helm","description":"y"}]})");
  ASSERT_THAT(initial, IsOk());
  ASSERT_THAT(registry_.SeedAbsent(*initial, Saver()), IsOk());
  const v1::FeatureFlagTable table = registry_.Table();
  ASSERT_EQ(table.flags_size(), 2);
  EXPECT_EQ(table.flags(0).name(), "kept");
  EXPECT_FALSE(table.flags(0).bool_value()) << "an operator's change survives";
  EXPECT_EQ(table.flags(0).owner(), "ops");
  EXPECT_EQ(table.flags(1).string_value(), "b");
  const size_t persists = persisted_.size();
  ASSERT_THAT(registry_.SeedAbsent(*initial, Saver()), IsOk());
  EXPECT_EQ(persisted_.size(), persists) << "nothing new to create";
}

TEST(ParseInitialFeatureFlagsTest, RefusesBadInput) {
  EXPECT_THAT(ParseInitialFeatureFlags(""), IsOk());
  EXPECT_THAT(ParseInitialFeatureFlags("{"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseInitialFeatureFlags(R"({"flags":[{"name":"a","owner":"o","description":"d"}]})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("value")));
  EXPECT_THAT(
      ParseInitialFeatureFlags(
          R"({"flags":[{"name":"a","boolValue":true,"owner":"o","description":"d"},)"
          R"({"name":"a","boolValue":true,"owner":"o","description":"d"}]})"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
}

}  // namespace
}  // namespace cellar::master
