// The flags of the three mains: a bad TLS or auth setting is an error
// naming the flag (exit 2), found before anything listens.

#include "services/common/auth_flags.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/str_cat.h"
#include "services/common/metrics_endpoint.h"
#include "services/common/status_matchers.h"
#include "services/common/tls_files.h"

ABSL_DECLARE_FLAG(std::string, tls_cert_file);
ABSL_DECLARE_FLAG(std::string, tls_key_file);
ABSL_DECLARE_FLAG(std::string, tls_client_ca_file);
ABSL_DECLARE_FLAG(bool, tls_require_client_cert);
ABSL_DECLARE_FLAG(std::string, tls_ca_file);
ABSL_DECLARE_FLAG(std::string, tls_server_name);
ABSL_DECLARE_FLAG(bool, metrics_auth);
ABSL_DECLARE_FLAG(double, rate_limit);
ABSL_DECLARE_FLAG(double, rate_limit_bytes);

namespace cellar::common {
namespace {

using ::testing::HasSubstr;

class AuthFlagsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = ::testing::TempDir() + "/auth_flags_test";
    ASSERT_EQ(std::system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()), 0);
    auto ca = MakeCertificateAuthority(dir, "ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    auto node = IssueCertificate(*ca, dir, "node", {"IP:127.0.0.1"});
    ASSERT_TRUE(node.ok()) << node.status();
    auto other = IssueCertificate(*ca, dir, "other", {"IP:127.0.0.1"});
    ASSERT_TRUE(other.ok()) << other.status();
    ca_ = new CertificateFiles(*ca);
    node_ = new CertificateFiles(*node);
    other_ = new CertificateFiles(*other);
  }

  // A complete mTLS setting; tests break one flag.
  void SetValidFlags() {
    absl::SetFlag(&FLAGS_tls_cert_file, node_->cert_file);
    absl::SetFlag(&FLAGS_tls_key_file, node_->key_file);
    absl::SetFlag(&FLAGS_tls_client_ca_file, ca_->cert_file);
    absl::SetFlag(&FLAGS_tls_ca_file, ca_->cert_file);
  }

  absl::FlagSaver saver_;  // each test starts from the defaults
  static CertificateFiles* ca_;
  static CertificateFiles* node_;
  static CertificateFiles* other_;
};

CertificateFiles* AuthFlagsTest::ca_ = nullptr;
CertificateFiles* AuthFlagsTest::node_ = nullptr;
CertificateFiles* AuthFlagsTest::other_ = nullptr;

TEST_F(AuthFlagsTest, NoFlagsIsPlaintextWithoutAuth) {
  auto setup = AuthSetupFromFlags();
  ASSERT_THAT(setup, IsOk());
  EXPECT_EQ(setup->authenticator, nullptr);
  EXPECT_FALSE(setup->tls_server.has_value());
  EXPECT_FALSE(setup->tls_client.has_value());
}

TEST_F(AuthFlagsTest, MutualTlsServesDialsAndTurnsAuthOn) {
  SetValidFlags();
  absl::SetFlag(&FLAGS_tls_require_client_cert, true);
  absl::SetFlag(&FLAGS_tls_server_name, "cellar.internal");
  auto setup = AuthSetupFromFlags();
  ASSERT_THAT(setup, IsOk());
  ASSERT_TRUE(setup->tls_server.has_value());
  EXPECT_EQ(setup->tls_server->cert_file, node_->cert_file);
  EXPECT_EQ(setup->tls_server->client_ca_file, ca_->cert_file);
  EXPECT_TRUE(setup->tls_server->require_client_cert);
  ASSERT_TRUE(setup->tls_client.has_value());
  EXPECT_EQ(setup->tls_client->ca_file, ca_->cert_file);
  EXPECT_EQ(setup->tls_client->key_file, node_->key_file) << "presented when dialling";
  EXPECT_EQ(setup->tls_client->server_name, "cellar.internal");
  // Node certificates make the node role: auth is on.
  ASSERT_NE(setup->authenticator, nullptr);
  EXPECT_EQ(setup->authenticator->Identify("", /*node_certificate=*/true).value_or(Role::kClient),
            Role::kNode);
}

TEST_F(AuthFlagsTest, AMissingKeyNamesTheFlag) {
  SetValidFlags();
  absl::SetFlag(&FLAGS_tls_key_file, "");
  EXPECT_THAT(AuthSetupFromFlags(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--tls_key_file")));
  SetValidFlags();
  absl::SetFlag(&FLAGS_tls_cert_file, "");
  EXPECT_THAT(AuthSetupFromFlags(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--tls_cert_file")));
}

TEST_F(AuthFlagsTest, AnUnreadableFileNamesTheFlagAndThePath) {
  for (auto* flag : {&FLAGS_tls_cert_file, &FLAGS_tls_key_file, &FLAGS_tls_client_ca_file,
                     &FLAGS_tls_ca_file}) {
    SetValidFlags();
    absl::SetFlag(flag, "/nonexistent/tls.pem");
    auto setup = AuthSetupFromFlags();
    EXPECT_THAT(setup, StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr(absl::StrCat("--", absl::GetFlagReflectionHandle(*flag)
                                                                 .Name(),
                                                       ": cannot read '/nonexistent/tls.pem'"))));
  }
}

TEST_F(AuthFlagsTest, ContentsAreChecked) {
  SetValidFlags();
  absl::SetFlag(&FLAGS_tls_cert_file, node_->key_file);
  EXPECT_THAT(AuthSetupFromFlags(), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("--tls_cert_file: '" + node_->key_file +
                                                       "' holds no PEM certificate")));
  SetValidFlags();
  absl::SetFlag(&FLAGS_tls_key_file, node_->cert_file);
  EXPECT_THAT(AuthSetupFromFlags(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("holds no PEM private key")));
  SetValidFlags();
  absl::SetFlag(&FLAGS_tls_key_file, other_->key_file);
  EXPECT_THAT(AuthSetupFromFlags(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--tls_key_file: '" + other_->key_file +
                                 "' is not the key of the certificate in --tls_cert_file")));
}

TEST_F(AuthFlagsTest, FlagsThatNeedAnother) {
  SetValidFlags();
  absl::SetFlag(&FLAGS_tls_ca_file, "");
  EXPECT_THAT(AuthSetupFromFlags(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--tls_ca_file: required")));
  SetValidFlags();
  absl::SetFlag(&FLAGS_tls_client_ca_file, "");
  absl::SetFlag(&FLAGS_tls_require_client_cert, true);
  EXPECT_THAT(AuthSetupFromFlags(), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("--tls_client_ca_file: required")));
  absl::SetFlag(&FLAGS_tls_cert_file, "");
  absl::SetFlag(&FLAGS_tls_key_file, "");
  absl::SetFlag(&FLAGS_tls_ca_file, "");
  absl::SetFlag(&FLAGS_tls_require_client_cert, false);
  absl::SetFlag(&FLAGS_tls_server_name, "x");
  EXPECT_THAT(AuthSetupFromFlags(), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("--tls_server_name: needs --tls_ca_file")));
}

TEST_F(AuthFlagsTest, MetricsAuthNeedsAuthenticationOn) {
  absl::SetFlag(&FLAGS_metrics_auth, true);
  EXPECT_THAT(AuthSetupFromFlags(), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("--metrics_auth: needs authentication")));
  SetValidFlags();  // a client CA: auth on
  auto setup = AuthSetupFromFlags();
  ASSERT_THAT(setup, IsOk());
  EXPECT_TRUE(setup->metrics_auth);
  EXPECT_NE(MetricsOptionsFor("127.0.0.1:0", *setup).authenticator, nullptr);
  absl::SetFlag(&FLAGS_metrics_auth, false);
  setup = AuthSetupFromFlags();
  ASSERT_THAT(setup, IsOk());
  EXPECT_EQ(MetricsOptionsFor("127.0.0.1:0", *setup).authenticator, nullptr);
}

TEST_F(AuthFlagsTest, RateLimitsNeedAuthenticationAndAPositiveValue) {
  // Limits are per token: without authentication they would silently
  // limit nothing.
  absl::SetFlag(&FLAGS_rate_limit_bytes, 1e6);
  EXPECT_THAT(AuthSetupFromFlags(), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("need authentication on")));
  absl::SetFlag(&FLAGS_rate_limit_bytes, 0);
  absl::SetFlag(&FLAGS_rate_limit, 10);
  EXPECT_THAT(AuthSetupFromFlags(), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("need authentication on")));
  SetValidFlags();
  absl::SetFlag(&FLAGS_rate_limit_bytes, -1);
  EXPECT_THAT(AuthSetupFromFlags(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--rate_limit_bytes")));
  absl::SetFlag(&FLAGS_rate_limit_bytes, 1e6);
  auto setup = AuthSetupFromFlags();
  ASSERT_THAT(setup, IsOk());
  EXPECT_TRUE(setup->authenticator->limits_bytes());
}

TEST_F(AuthFlagsTest, AMainExitsWithStatus2AndTheMessage) {
  SetValidFlags();
  absl::SetFlag(&FLAGS_tls_key_file, "");
  EXPECT_EXIT(AuthSetupFromFlagsOrExit("cellar-test"), ::testing::ExitedWithCode(2),
              "cellar-test: --tls_key_file: required with --tls_cert_file");
}

}  // namespace
}  // namespace cellar::common
