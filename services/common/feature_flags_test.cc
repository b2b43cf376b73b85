#include "services/common/feature_flags.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "services/common/status_matchers.h"

namespace cellar::common {
namespace {

using ::testing::HasSubstr;
namespace v1 = ::cellar::v1;

v1::FeatureFlag Flag(const std::string& name, bool value) {
  v1::FeatureFlag f;
  f.set_name(name);
  f.set_bool_value(value);
  f.set_description("what it does");
  f.set_owner("team");
  return f;
}

TEST(FeatureFlagsTest, NamesAreValidated) {
  EXPECT_THAT(ValidateFlagName("storage.verify_checksum-on_load2"), IsOk());
  EXPECT_THAT(ValidateFlagName(std::string(64, 'x')), IsOk());
  for (const std::string& bad : {std::string(), std::string(65, 'x'), std::string("Upper"),
                                std::string("sp ace"), std::string("slash/"),
                                std::string("nul\0x", 5)}) {
    EXPECT_THAT(ValidateFlagName(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
}

TEST(FeatureFlagsTest, TablesAreValidated) {
  v1::FeatureFlagTable table;
  table.set_version(1);
  *table.add_flags() = Flag("a", true);
  *table.add_flags() = Flag("b", false);
  EXPECT_THAT(ValidateFeatureFlagTable(table), IsOk());
  v1::FeatureFlagTable unsorted = table;
  unsorted.mutable_flags()->SwapElements(0, 1);
  EXPECT_THAT(ValidateFeatureFlagTable(unsorted),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sorted")));
  v1::FeatureFlagTable no_value = table;
  no_value.mutable_flags(0)->clear_bool_value();
  EXPECT_THAT(ValidateFeatureFlagTable(no_value),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no value")));
  v1::FeatureFlagTable long_string = table;
  long_string.mutable_flags(0)->set_string_value(std::string(kMaxFlagStringValueBytes + 1, 'v'));
  EXPECT_THAT(ValidateFeatureFlagTable(long_string),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("string_value")));
  EXPECT_THAT(DecodeFeatureFlagTable(EncodeFeatureFlagTable(table)), IsOk());
  EXPECT_THAT(DecodeFeatureFlagTable("!!"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(FeatureFlagsTest, PersistedQuarantinesAreValidated) {
  v1::FeatureFlagTable table;
  table.set_version(1);
  v1::VersionDecisionRecord* q = table.add_quarantines();
  q->set_version("0.2.0");
  q->set_track("canary");
  q->set_action("quarantine");
  q->set_by("auto");
  q->set_reason("crash loop");
  EXPECT_THAT(ValidateFeatureFlagTable(table), IsOk());
  v1::FeatureFlagTable twice = table;
  *twice.add_quarantines() = *q;
  EXPECT_THAT(ValidateFeatureFlagTable(twice),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("listed twice")));
  v1::FeatureFlagTable no_track = table;
  no_track.mutable_quarantines(0)->clear_track();
  EXPECT_THAT(ValidateFeatureFlagTable(no_track), StatusIs(absl::StatusCode::kInvalidArgument));
  v1::FeatureFlagTable many = table;
  for (size_t i = 0; i < kMaxPersistedQuarantines; ++i) {
    v1::VersionDecisionRecord* more = many.add_quarantines();
    *more = *q;
    more->set_version(absl::StrCat("9.", i));
  }
  EXPECT_THAT(ValidateFeatureFlagTable(many),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most")));
  // A table differing only in its quarantines is another table.
  v1::FeatureFlagTable none = table;
  none.clear_quarantines();
  EXPECT_FALSE(SameFlags(table, none));
}

TEST(FeatureFlagsTest, TheReaderAdoptsOnlyNewerValidTablesAndFallsBackToDefaults) {
  FeatureFlags flags;
  EXPECT_TRUE(flags.GetBool("a", true));
  EXPECT_EQ(flags.GetString("a", "dflt"), "dflt");
  v1::FeatureFlagTable table;
  table.set_version(2);
  *table.add_flags() = Flag("a", false);
  v1::FeatureFlag s = Flag("s", false);
  s.set_string_value("value");
  *table.add_flags() = s;
  ASSERT_TRUE(flags.Adopt(table));
  EXPECT_FALSE(flags.GetBool("a", true));
  EXPECT_TRUE(flags.GetBool("s", true)) << "wrong type: the default";
  EXPECT_EQ(flags.GetString("s", ""), "value");

  v1::FeatureFlagTable older = table;
  older.set_version(1);
  older.mutable_flags(0)->set_bool_value(true);
  EXPECT_FALSE(flags.Adopt(older));
  EXPECT_FALSE(flags.GetBool("a", true));
  v1::FeatureFlagTable invalid = table;
  invalid.set_version(3);
  invalid.mutable_flags(0)->set_name("");
  EXPECT_FALSE(flags.Adopt(invalid));
  EXPECT_EQ(flags.version(), 2u);
}

}  // namespace
}  // namespace cellar::common
