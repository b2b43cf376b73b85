#include "tools/cluster/checker/nemesis.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/common/status_matchers.h"

namespace cellar::tools::checker {
namespace {

using common::IsOk;
using common::StatusIs;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(NemesisTest, ParsesFaultLists) {
  auto all = ParseFaults("rolling,kill,pause,pg-restart");
  ASSERT_THAT(all, IsOk());
  EXPECT_THAT(*all, ElementsAre(Fault::kRolling, Fault::kKill, Fault::kPause, Fault::kPgRestart));
  auto none = ParseFaults("none");
  ASSERT_THAT(none, IsOk());
  EXPECT_THAT(*none, IsEmpty());
  EXPECT_THAT(ParseFaults("rolling,reboot"), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace cellar::tools::checker
