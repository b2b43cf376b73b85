#include "services/common/cluster_tokens.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "services/common/status_matchers.h"

namespace cellar::common {
namespace {

using ::testing::HasSubstr;

cellar::v1::ClusterToken Token(const std::string& id, cellar::v1::TokenRole role,
                               bool revoked = false, int64_t revoked_ms = 0) {
  cellar::v1::ClusterToken t;
  t.set_id(id);
  t.set_name(absl::StrCat("token ", id));
  t.set_role(role);
  t.set_secret_sha256(Sha256Hex(id));
  t.set_created_unix_ms(1000);
  t.set_revoked(revoked);
  t.set_revoked_unix_ms(revoked_ms);
  return t;
}

TEST(ClusterTokensTest, RolesZeroAndNodeAreNeverGranted) {
  EXPECT_THAT(TokenRoleFromProto(cellar::v1::TOKEN_ROLE_UNSPECIFIED),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("required")));
  EXPECT_THAT(TokenRoleFromProto(cellar::v1::TOKEN_ROLE_NODE),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cluster secret")));
  EXPECT_THAT(TokenRoleFromProto(static_cast<cellar::v1::TokenRole>(77)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  for (Role role : {Role::kClient, Role::kReader, Role::kReadonly, Role::kAdmin}) {
    auto back = TokenRoleFromProto(TokenRoleToProto(role));
    ASSERT_THAT(back, IsOk());
    EXPECT_EQ(*back, role);
  }
}

TEST(ClusterTokensTest, NamesAreOnePrintableBoundedLine) {
  EXPECT_THAT(ValidateTokenName("billing app"), IsOk());
  EXPECT_THAT(ValidateTokenName(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateTokenName("   "), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateTokenName("a\nb"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateTokenName("caf\xc3\xa9"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidateTokenName(std::string(kMaxTokenNameBytes, 'x')), IsOk());
  EXPECT_THAT(ValidateTokenName(std::string(kMaxTokenNameBytes + 1, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most")));
}

TEST(ClusterTokensTest, TablesMergeByUnionAndRevocationWins) {
  cellar::v1::ClusterTokenTable a;
  a.set_version(3);
  *a.add_tokens() = Token("0000000a", cellar::v1::TOKEN_ROLE_CLIENT);
  *a.add_tokens() = Token("0000000b", cellar::v1::TOKEN_ROLE_ADMIN, true, 50);
  cellar::v1::ClusterTokenTable b;
  b.set_version(5);
  *b.add_tokens() = Token("0000000a", cellar::v1::TOKEN_ROLE_CLIENT, true, 70);
  *b.add_tokens() = Token("0000000c", cellar::v1::TOKEN_ROLE_READONLY);
  *b.add_tokens() = Token("0000000b", cellar::v1::TOKEN_ROLE_ADMIN);
  for (const auto& merged : {MergeTokenTables(a, b), MergeTokenTables(b, a)}) {
    EXPECT_EQ(merged.version(), 5u);
    ASSERT_EQ(merged.tokens_size(), 3);
    EXPECT_EQ(merged.tokens(0).id(), "0000000a");
    EXPECT_TRUE(merged.tokens(0).revoked());
    EXPECT_EQ(merged.tokens(0).revoked_unix_ms(), 70);
    EXPECT_TRUE(merged.tokens(1).revoked());
    EXPECT_EQ(merged.tokens(1).revoked_unix_ms(), 50);
    EXPECT_FALSE(merged.tokens(2).revoked());
    EXPECT_THAT(ValidateTokenTable(merged), IsOk());
  }
  EXPECT_TRUE(SameTokens(MergeTokenTables(a, b), MergeTokenTables(b, a)));
  EXPECT_FALSE(SameTokens(a, MergeTokenTables(a, b)));
  auto decoded = DecodeTokenTable(EncodeTokenTable(b));
  ASSERT_THAT(decoded, IsOk());
  EXPECT_TRUE(SameTokens(*decoded, b));
  EXPECT_THAT(DecodeTokenTable("not base64 !"), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(ClusterTokensTest, MalformedTablesAreRefused) {
  cellar::v1::ClusterTokenTable t;
  *t.add_tokens() = Token("0000000a", cellar::v1::TOKEN_ROLE_NODE);
  EXPECT_THAT(ValidateTokenTable(t), StatusIs(absl::StatusCode::kInvalidArgument));
  t.mutable_tokens(0)->set_role(cellar::v1::TOKEN_ROLE_CLIENT);
  EXPECT_THAT(ValidateTokenTable(t), IsOk());
  *t.add_tokens() = t.tokens(0);
  EXPECT_THAT(ValidateTokenTable(t),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  t.mutable_tokens()->RemoveLast();
  t.mutable_tokens(0)->set_id("XYZ");
  EXPECT_THAT(ValidateTokenTable(t), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ClusterTokensTest, LookupKnowsValidRevokedAndUnknown) {
  ClusterTokens tokens;
  cellar::v1::ClusterTokenTable t;
  t.set_version(2);
  *t.add_tokens() = Token("0000000a", cellar::v1::TOKEN_ROLE_ADMIN);
  *t.add_tokens() = Token("0000000b", cellar::v1::TOKEN_ROLE_CLIENT, true, 9);
  EXPECT_TRUE(tokens.Replace(t));
  Role role = Role::kClient;
  EXPECT_EQ(tokens.Lookup("0000000a", Sha256Hex("0000000a"), &role),
            ClusterTokens::Match::kValid);
  EXPECT_EQ(role, Role::kAdmin);
  EXPECT_EQ(tokens.Lookup("0000000a", Sha256Hex("other"), &role),
            ClusterTokens::Match::kUnknown);
  EXPECT_EQ(tokens.Lookup("0000000b", Sha256Hex("0000000b"), &role),
            ClusterTokens::Match::kRevoked);
  EXPECT_EQ(tokens.Lookup("0000000c", Sha256Hex("0000000c"), &role),
            ClusterTokens::Match::kUnknown);
  // An older or equal version is not adopted.
  t.set_version(1);
  t.clear_tokens();
  EXPECT_FALSE(tokens.Replace(t));
  EXPECT_EQ(tokens.version(), 2u);
}

}  // namespace
}  // namespace cellar::common
