#include "services/common/auth_tokens.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/common/status_matchers.h"

namespace cellar::common {
namespace {

using ::testing::HasSubstr;

constexpr char kHash[] =
    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";  // "hello"

TEST(AuthTokensTest, Sha256HexIsTheStandardDigest) {
  EXPECT_EQ(Sha256Hex("hello"), kHash);
}

TEST(AuthTokensTest, MadeTokenParsesAndItsLineHoldsTheHashOfTheSecret) {
  absl::StatusOr<NewToken> made = MakeToken(Role::kReadonly, "grafana");
  ASSERT_THAT(made, IsOk());
  absl::StatusOr<ParsedToken> parsed = ParseToken(made->token);
  ASSERT_THAT(parsed, IsOk());
  EXPECT_EQ(parsed->id.size(), 8u);
  EXPECT_EQ(parsed->secret.size(), 64u);
  // The line never holds the secret.
  EXPECT_THAT(made->line, ::testing::Not(HasSubstr(parsed->secret)));
  absl::StatusOr<TokenTable> table = ParseTokensFile(made->line);
  ASSERT_THAT(table, IsOk());
  const TokenEntry& entry = table->at(parsed->id);
  EXPECT_EQ(entry.role, Role::kReadonly);
  EXPECT_EQ(entry.name, "grafana");
  EXPECT_EQ(entry.secret_sha256, Sha256Hex(parsed->secret));
}

TEST(AuthTokensTest, MakeTokenRefusesTheNodeRoleAndBadNames) {
  EXPECT_THAT(MakeToken(Role::kNode, "x"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(MakeToken(Role::kClient, " "), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(MakeToken(Role::kClient, "a\nb"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(AuthTokensTest, ParseTokenRefusesMalformedTokens) {
  const std::string secret(64, 'a');
  EXPECT_THAT(ParseToken("cellar_0123abcd_" + secret), IsOk());
  for (const std::string& bad :
       {std::string("0123abcd_") + secret, "cellar_0123abc_" + secret,
        "cellar_0123ABCD_" + secret, "cellar_0123abcd_" + secret + "a",
        "cellar_0123abcd_" + secret + "_x", std::string("cellar_")}) {
    EXPECT_THAT(ParseToken(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
}

TEST(AuthTokensTest, TokensFileSkipsCommentsAndKeepsNamesWithSpaces) {
  absl::StatusOr<TokenTable> table = ParseTokensFile(absl::StrCat(
      "# id role sha256 name\n\n", "0123abcd client ", kHash, " app server one\n",
      "  ffffffff admin ", kHash, " ops\n", "0000beef reader ", kHash, " reports\n"));
  ASSERT_THAT(table, IsOk());
  ASSERT_EQ(table->size(), 3u);
  EXPECT_EQ(table->at("0000beef").role, Role::kReader);
  EXPECT_EQ(table->at("0123abcd").name, "app server one");
  EXPECT_EQ(table->at("ffffffff").role, Role::kAdmin);
}

TEST(AuthTokensTest, TokensFileErrorsNameTheLineAndField) {
  struct Case {
    std::string contents;
    std::string message;
  };
  const std::vector<Case> cases = {
      {absl::StrCat("0123abcd client ", kHash), "line 1: expected"},
      {absl::StrCat("#\n0123abc client ", kHash, " x"), "line 2: id"},
      {absl::StrCat("0123abcd root ", kHash, " x"), "line 1: role"},
      {absl::StrCat("0123abcd node ", kHash, " x"), "cluster secret"},
      {"0123abcd client 1234 x", "line 1: sha256hex"},
      {absl::StrCat("0123abcd client ", kHash, " x\n0123abcd admin ", kHash, " y"),
       "line 2: id: 0123abcd appears twice"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<TokenTable> table = ParseTokensFile(c.contents);
    EXPECT_THAT(table, StatusIs(absl::StatusCode::kInvalidArgument)) << c.contents;
    EXPECT_THAT(std::string(table.status().message()), HasSubstr(c.message));
  }
}

TEST(AuthTokensTest, NodeBearerIsAStableHmacOfTheSecret) {
  EXPECT_EQ(NodeBearer("secret-one-0123456789"), NodeBearer("secret-one-0123456789"));
  EXPECT_NE(NodeBearer("secret-one-0123456789"), NodeBearer("secret-two-0123456789"));
  EXPECT_EQ(NodeBearer("x").size(), 64u);
}

TEST(AuthTokensTest, ConstantTimeEqualsComparesContentsAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
}

TEST(AuthTokensTest, RoleNames) {
  EXPECT_EQ(RoleSetName(Role::kClient | Role::kNode), "client or node");
  EXPECT_EQ(RoleSetName(0), "no role");
  EXPECT_EQ(RoleSetName(Role::kReader | Role::kReadonly), "reader or readonly");
  ASSERT_THAT(ParseRole("reader"), IsOk());
  EXPECT_EQ(*ParseRole("reader"), Role::kReader);
  EXPECT_EQ(std::string(RoleName(Role::kReader)), "reader");
  EXPECT_THAT(ParseRole("admin"), IsOk());
  EXPECT_THAT(ParseRole("root"), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace cellar::common
