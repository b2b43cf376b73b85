#include "services/common/authenticator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "services/common/fake_clock.h"
#include "services/common/status_matchers.h"

namespace cellar::common {
namespace {

using ::testing::HasSubstr;

constexpr char kSecret[] = "cluster-secret-0123456789abcdef";

class AuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = absl::StrCat(::testing::TempDir(), "/tokens.", getpid(), ".",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    client_ = *MakeToken(Role::kClient, "app");
    admin_ = *MakeToken(Role::kAdmin, "ops");
    Write(client_.line + admin_.line);
    AuthenticatorOptions options;
    options.tokens_file = path_;
    options.cluster_secret = kSecret;
    options.reload_interval = absl::ZeroDuration();  // the test reloads
    auto auth = Authenticator::Create(options);
    ASSERT_THAT(auth, IsOk());
    auth_ = *std::move(auth);
  }

  void Write(const std::string& contents) {
    // A new file each time: a new inode changes the stamp even within the
    // mtime's resolution.
    const std::string tmp = path_ + ".tmp";
    std::ofstream(tmp) << contents;
    ASSERT_EQ(std::rename(tmp.c_str(), path_.c_str()), 0);
  }

  static std::string Bearer(const std::string& token) { return "Bearer " + token; }

  std::string path_;
  NewToken client_;
  NewToken admin_;
  std::unique_ptr<Authenticator> auth_;
};

TEST_F(AuthenticatorTest, RolesFromTokensAndTheClusterSecret) {
  auto role = auth_->Authorize("/cellar.v1.Master/Begin", Bearer(client_.token));
  ASSERT_THAT(role, IsOk());
  EXPECT_EQ(*role, Role::kClient);
  role = auth_->Authorize("/cellar.v1.Master/Heartbeat", Bearer(NodeBearer(kSecret)));
  ASSERT_THAT(role, IsOk());
  EXPECT_EQ(*role, Role::kNode);
  // The scheme is case-insensitive (RFC 6750).
  EXPECT_THAT(auth_->Authorize("/cellar.v1.Admin/ListNodes", "bearer " + admin_.token),
              IsOk());
}

TEST_F(AuthenticatorTest, MissingOrUnknownCredentialsAreUnauthenticated) {
  for (const std::string& header :
       {std::string(), std::string("Basic abc"), Bearer("garbage"),
        Bearer(NodeBearer("another-cluster-secret-000")),
        // A well-formed token with a wrong secret.
        Bearer(client_.token.substr(0, client_.token.size() - 1) +
               (client_.token.back() == '0' ? "1" : "0"))}) {
    EXPECT_THAT(auth_->Authorize("/cellar.v1.Master/Begin", header),
                StatusIs(absl::StatusCode::kUnauthenticated))
        << header;
  }
}

TEST_F(AuthenticatorTest, WrongRoleIsPermissionDeniedNamingTheRoles) {
  auto refused = auth_->Authorize("/cellar.v1.Storage/TruncateData", Bearer(admin_.token));
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("needs role node; the caller has role admin"));
  refused = auth_->Authorize("/cellar.v1.Admin/ListNodes", Bearer(client_.token));
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("needs role readonly"));
  EXPECT_THAT(auth_->Authorize("/other.Service/Method", Bearer(admin_.token)),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(AuthenticatorTest, HealthIsOpenReflectionNeedsACaller) {
  auto open = auth_->Authorize("/grpc.health.v1.Health/Check", "");
  ASSERT_THAT(open, IsOk());
  EXPECT_FALSE(open->has_value());
  const char* reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
  EXPECT_THAT(auth_->Authorize(reflection, ""), StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(auth_->Authorize(reflection, Bearer(client_.token)), IsOk());
}

TEST(AuthenticatorReflectionTest, OpenWithTheReflectionFlag) {
  AuthenticatorOptions options;
  options.cluster_secret = kSecret;
  options.open_reflection = true;
  auto auth = Authenticator::Create(options);
  ASSERT_THAT(auth, IsOk());
  EXPECT_THAT((*auth)->Authorize(
                  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", ""),
              IsOk());
  EXPECT_THAT((*auth)->Authorize("/cellar.v1.Master/Begin", ""),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(AuthenticatorTest, RemovingALineRevokesTheTokenAtTheNextReload) {
  Write(admin_.line);
  ASSERT_THAT(auth_->ReloadIfChanged(), IsOk());
  EXPECT_EQ(auth_->token_count(), 1u);
  EXPECT_THAT(auth_->Authorize("/cellar.v1.Master/Begin", Bearer(client_.token)),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(auth_->Authorize("/cellar.v1.Admin/ListNodes", Bearer(admin_.token)), IsOk());
}

TEST_F(AuthenticatorTest, ABadFileKeepsTheLastGoodTable) {
  Write("this is not a tokens file\n");
  EXPECT_THAT(auth_->ReloadIfChanged(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(auth_->token_count(), 2u);
  EXPECT_THAT(auth_->Authorize("/cellar.v1.Master/Begin", Bearer(client_.token)), IsOk());
  // Unchanged bad file: not re-read, not re-reported.
  EXPECT_THAT(auth_->ReloadIfChanged(), IsOk());
}

// A verified node certificate (the server says so) is node when no bearer
// is sent, and only with node_certificates.
TEST(AuthenticatorNodeCertificateTest, NodeWithoutABearerOnlyWhenEnabled) {
  AuthenticatorOptions options;
  options.node_certificates = true;
  auto auth = Authenticator::Create(options);
  ASSERT_THAT(auth, IsOk());
  EXPECT_THAT((*auth)->Authorize("/cellar.v1.Master/Heartbeat", "", /*node_certificate=*/true),
              IsOk());
  EXPECT_THAT((*auth)->Authorize("/cellar.v1.Master/Heartbeat", ""),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT((*auth)->Authorize("/cellar.v1.Master/Begin", "", true),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // A bearer decides when sent.
  EXPECT_THAT((*auth)->Authorize("/cellar.v1.Master/Heartbeat", "Bearer nope", true),
              StatusIs(absl::StatusCode::kUnauthenticated));

  AuthenticatorOptions off;
  off.cluster_secret = kSecret;
  auto without = Authenticator::Create(off);
  ASSERT_THAT(without, IsOk());
  EXPECT_THAT((*without)->Authorize("/cellar.v1.Master/Heartbeat", "", true),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(AuthenticatorCreateTest, RefusesNothingToCheckAndABadFileAtStart) {
  EXPECT_THAT(Authenticator::Create({}), StatusIs(absl::StatusCode::kInvalidArgument));
  AuthenticatorOptions options;
  options.tokens_file = "/nonexistent/tokens";
  EXPECT_THAT(Authenticator::Create(options), StatusIs(absl::StatusCode::kNotFound));
}


TEST_F(AuthenticatorTest, RateLimitsEachTokenButNeverTheNodes) {
  FakeClock clock;
  AuthenticatorOptions options;
  options.tokens_file = path_;
  options.cluster_secret = kSecret;
  options.reload_interval = absl::ZeroDuration();
  options.rate_limit_per_second = 5;
  options.rate_limit_burst = 2;
  options.clock = &clock;
  auto limited = Authenticator::Create(options);
  ASSERT_THAT(limited, IsOk());
  const std::string begin = "/cellar.v1.Master/Begin";
  EXPECT_THAT((*limited)->Authorize(begin, Bearer(client_.token)), IsOk());
  EXPECT_THAT((*limited)->Authorize(begin, Bearer(client_.token)), IsOk());
  auto refused = (*limited)->Authorize(begin, Bearer(client_.token));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("retry after 200 ms"));
  // Over its limit, a client can still abort what it began (else its
  // transactions and locks stay behind for everyone to wait on).
  for (int i = 0; i < 10; ++i) {
    ASSERT_THAT((*limited)->Authorize("/cellar.v1.Master/Abort", Bearer(client_.token)), IsOk());
    ASSERT_THAT((*limited)->Authorize("/cellar.v1.Storage/AbortTransaction",
                                      Bearer(client_.token)),
                IsOk());
  }
  EXPECT_EQ((*limited)->Authorize(begin, Bearer(client_.token)).status().code(),
            absl::StatusCode::kResourceExhausted)
      << "aborts take nothing from the budget, and give nothing back";
  // Another token has its own budget; the cluster's own calls are never
  // limited; health needs no credentials and is not counted.
  EXPECT_THAT((*limited)->Authorize("/cellar.v1.Admin/ListNodes", Bearer(admin_.token)),
              IsOk());
  for (int i = 0; i < 100; ++i) {
    ASSERT_THAT((*limited)->Authorize("/cellar.v1.Master/Heartbeat",
                                      Bearer(NodeBearer(kSecret))),
                IsOk());
    ASSERT_THAT((*limited)->Authorize("/grpc.health.v1.Health/Check", ""), IsOk());
  }
  clock.Advance(absl::Milliseconds(200));
  EXPECT_THAT((*limited)->Authorize(begin, Bearer(client_.token)), IsOk());
  // Without a limit (the default), nothing is refused for rate.
  for (int i = 0; i < 100; ++i) {
    ASSERT_THAT(auth_->Authorize(begin, Bearer(client_.token)), IsOk());
  }
}

TEST_F(AuthenticatorTest, ByteLimitsRefuseATokenInDebtButNeverTheNodes) {
  FakeClock clock;
  AuthenticatorOptions options;
  options.tokens_file = path_;
  options.cluster_secret = kSecret;
  options.reload_interval = absl::ZeroDuration();
  options.byte_limit_per_second = 1000;
  options.clock = &clock;
  auto limited = Authenticator::Create(options);
  ASSERT_THAT(limited, IsOk());
  ASSERT_TRUE((*limited)->limits_bytes());
  EXPECT_FALSE(auth_->limits_bytes());
  const std::string store = "/cellar.v1.Storage/Store";
  EXPECT_THAT((*limited)->Authorize(store, Bearer(client_.token)), IsOk());
  (*limited)->ChargeBytes(Bearer(client_.token), false, 2500);  // burst 2000: -500
  auto refused = (*limited)->Authorize(store, Bearer(client_.token));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("1000 bytes/s (burst 2000) per caller; retry after 500 ms"));
  // Aborts still go through (they release what the caller holds); other
  // tokens and the cluster's own traffic are not limited.
  EXPECT_THAT((*limited)->Authorize("/cellar.v1.Storage/AbortTransaction",
                                    Bearer(client_.token)),
              IsOk());
  EXPECT_THAT((*limited)->Authorize("/cellar.v1.Admin/ListNodes", Bearer(admin_.token)),
              IsOk());
  for (int i = 0; i < 10; ++i) {
    (*limited)->ChargeBytes(Bearer(NodeBearer(kSecret)), false, 1'000'000);
    ASSERT_THAT((*limited)->Authorize("/cellar.v1.Storage/LockTransaction",
                                      Bearer(NodeBearer(kSecret))),
                IsOk());
  }
  (*limited)->ChargeBytes("Bearer not-a-token", false, 1'000'000);  // nobody to charge
  clock.Advance(absl::Milliseconds(501));
  EXPECT_THAT((*limited)->Authorize(store, Bearer(client_.token)), IsOk());
}

}  // namespace
}  // namespace cellar::common
