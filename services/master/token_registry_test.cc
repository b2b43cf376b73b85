#include "services/master/token_registry.h"

#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/common/auth_tokens.h"
#include "services/common/cluster_tokens.h"
#include "services/common/fake_clock.h"
#include "services/common/status_matchers.h"

namespace cellar::master {
namespace {

using common::IsOk;
using common::StatusIs;
using ::testing::HasSubstr;

class TokenRegistryTest : public ::testing::Test {
 protected:
  TokenRegistry::Persist Saver() {
    return [this](const cellar::v1::ClusterTokenTable& t) {
      if (!persist_error_.ok()) return persist_error_;
      persisted_.push_back(t);
      return absl::OkStatus();
    };
  }
  common::FakeClock clock_;
  std::vector<cellar::v1::ClusterTokenTable> changes_;
  std::vector<cellar::v1::ClusterTokenTable> persisted_;
  absl::Status persist_error_ = absl::OkStatus();
  TokenRegistry registry_{&clock_, [this](const cellar::v1::ClusterTokenTable& t) {
                            changes_.push_back(t);
                          }};
};

TEST_F(TokenRegistryTest, CreatePersistsBeforeAdoptingAndRevokeIsIdempotent) {
  auto created = registry_.Create("billing", cellar::v1::TOKEN_ROLE_CLIENT, nullptr, Saver());
  ASSERT_THAT(created, IsOk());
  auto parsed = common::ParseToken(created->token);
  ASSERT_THAT(parsed, IsOk());
  EXPECT_EQ(parsed->id, created->entry.id());
  EXPECT_EQ(created->entry.secret_sha256(), common::Sha256Hex(parsed->secret));
  ASSERT_EQ(persisted_.size(), 1u);
  EXPECT_EQ(persisted_[0].version(), 1u);
  EXPECT_EQ(registry_.Table().version(), 1u);
  ASSERT_EQ(changes_.size(), 1u);

  auto revoked = registry_.Revoke(created->entry.id(), Saver());
  ASSERT_THAT(revoked, IsOk());
  EXPECT_TRUE(revoked->revoked());
  EXPECT_EQ(registry_.Table().version(), 2u);
  ASSERT_THAT(registry_.Revoke(created->entry.id(), Saver()), IsOk());
  EXPECT_EQ(persisted_.size(), 2u);  // nothing more to persist
  EXPECT_THAT(registry_.Revoke("0badc0de", Saver()), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(registry_.Revoke("nope", Saver()), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(TokenRegistryTest, HostileCreationsChangeNothing) {
  EXPECT_THAT(registry_.Create("x", cellar::v1::TOKEN_ROLE_UNSPECIFIED, nullptr, Saver()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("role")));
  EXPECT_THAT(registry_.Create("x", cellar::v1::TOKEN_ROLE_NODE, nullptr, Saver()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("role")));
  EXPECT_THAT(registry_.Create("", cellar::v1::TOKEN_ROLE_ADMIN, nullptr, Saver()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  EXPECT_THAT(registry_.Create(std::string(10000, 'n'), cellar::v1::TOKEN_ROLE_ADMIN, nullptr,
                               Saver()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  persist_error_ = absl::UnavailableError("no storage answered");
  EXPECT_THAT(registry_.Create("ok", cellar::v1::TOKEN_ROLE_ADMIN, nullptr, Saver()),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(registry_.Table().tokens_size(), 0);
  EXPECT_TRUE(changes_.empty());
}

TEST_F(TokenRegistryTest, ReportedTablesMergeAndOutrankEveryReporterThatDiffers) {
  auto a = registry_.Create("a", cellar::v1::TOKEN_ROLE_CLIENT, nullptr, Saver());
  ASSERT_THAT(a, IsOk());
  const cellar::v1::ClusterTokenTable v1 = registry_.Table();
  // A storage that holds the same table: nothing changes.
  ASSERT_THAT(registry_.MergeReported(v1), IsOk());
  EXPECT_EQ(registry_.Table().version(), 1u);
  // A fresh master (another registry) learns the table from a storage,
  // at the storage's version.
  TokenRegistry fresh(&clock_, nullptr);
  ASSERT_THAT(fresh.MergeReported(v1), IsOk());
  EXPECT_EQ(fresh.Table().version(), 1u);
  EXPECT_TRUE(common::SameTokens(fresh.Table(), v1));
  // A storage with an older table revoked elsewhere, same version but
  // other tokens: the merge outranks both.
  cellar::v1::ClusterTokenTable other = v1;
  other.mutable_tokens(0)->set_revoked(true);
  ASSERT_THAT(registry_.MergeReported(other), IsOk());
  EXPECT_EQ(registry_.Table().version(), 2u);
  EXPECT_TRUE(registry_.Table().tokens(0).revoked());
  // A malformed report is refused.
  cellar::v1::ClusterTokenTable bad = v1;
  bad.mutable_tokens(0)->set_role(cellar::v1::TOKEN_ROLE_NODE);
  EXPECT_THAT(registry_.MergeReported(bad), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace cellar::master
