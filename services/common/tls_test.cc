// Real TLS between a GrpcServer and channels of this process, with
// certificates made by openssl (tls_files.h): what is verified, what is
// refused, node identity by certificate, rotation without restart.

#include <gtest/gtest.h>
#include <stdio.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/auth_tokens.h"
#include "services/common/authenticator.h"
#include "services/common/channel.h"
#include "services/common/grpc_server.h"
#include "services/common/raw_call.h"
#include "services/common/tls_config.h"
#include "services/common/tls_files.h"

namespace cellar::common {
namespace {

constexpr char kSecret[] = "tls-test-cluster-secret";

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/tls_test");
    ASSERT_EQ(std::system(("rm -rf " + *dir_ + " && mkdir -p " + *dir_).c_str()), 0);
    auto ca = MakeCertificateAuthority(*dir_, "ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    auto other_ca = MakeCertificateAuthority(*dir_, "other-ca");
    ASSERT_TRUE(other_ca.ok()) << other_ca.status();
    const std::string node_uri = absl::StrCat("URI:", kNodeIdentityUri);
    auto node = IssueCertificate(*ca, *dir_, "node", {"IP:127.0.0.1", "DNS:localhost", node_uri});
    ASSERT_TRUE(node.ok()) << node.status();
    auto client = IssueCertificate(*ca, *dir_, "client", {"DNS:billing.example"});
    ASSERT_TRUE(client.ok()) << client.status();
    // A certificate from another CA, carrying the node identity too.
    auto stranger =
        IssueCertificate(*other_ca, *dir_, "stranger", {"IP:127.0.0.1", node_uri});
    ASSERT_TRUE(stranger.ok()) << stranger.status();
    files_ = new Files{*ca, *other_ca, *node, *client, *stranger};
  }

  struct Files {
    CertificateFiles ca, other_ca, node, client, stranger;
  };

  // A TLS server (optionally mTLS) with auth: the cluster secret, node
  // certificates with a client CA.
  void StartServer(bool client_ca, bool require_client_cert,
                   const CertificateFiles& identity, absl::Duration reload = absl::Seconds(60)) {
    AuthenticatorOptions auth;
    auth.cluster_secret = kSecret;
    auth.node_certificates = client_ca;
    auto authenticator = Authenticator::Create(auth);
    ASSERT_TRUE(authenticator.ok()) << authenticator.status();
    GrpcServerOptions options;
    options.authenticator = *std::move(authenticator);
    TlsServerConfig tls;
    tls.cert_file = identity.cert_file;
    tls.key_file = identity.key_file;
    if (client_ca) tls.client_ca_file = files_->ca.cert_file;
    tls.require_client_cert = require_client_cert;
    tls.reload_interval = reload;
    ASSERT_TRUE(CheckTlsServerConfig(tls).ok()) << CheckTlsServerConfig(tls);
    options.tls = tls;
    auto server = GrpcServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    address_ = absl::StrCat("127.0.0.1:", server_->port());
  }

  // A channel with its own connection (no subchannel shared with earlier
  // channels of the test, whatever their credentials).
  static std::shared_ptr<grpc::Channel> Dial(const std::string& address,
                                             const ChannelSecurity& security) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return MakeChannelWithArgs(address, args, security);
  }

  static ChannelSecurity Tls(const CertificateFiles& trust, const CertificateFiles* identity,
                             const std::string& bearer = "",
                             const std::string& server_name = "") {
    TlsClientConfig config;
    config.ca_file = trust.cert_file;
    if (identity != nullptr) {
      config.cert_file = identity->cert_file;
      config.key_file = identity->key_file;
    }
    config.server_name = server_name;
    auto security = MakeChannelSecurity(bearer, config);
    EXPECT_TRUE(security.ok()) << security.status();
    return security.ok() ? *security : ChannelSecurity{};
  }

  // A unary call of `path` (Health's messages): UNIMPLEMENTED means the
  // call passed the transport and the auth check.
  grpc::Status Call(const ChannelSecurity& security, const char* path) {
    return RawUnaryCall(Dial(address_, security).get(), path);
  }

  grpc::Status Health(const ChannelSecurity& security) {
    return Call(security, "/grpc.health.v1.Health/Check");
  }

  static std::string* dir_;
  static Files* files_;
  std::unique_ptr<GrpcServer> server_;
  std::string address_;
};

std::string* TlsTest::dir_ = nullptr;
TlsTest::Files* TlsTest::files_ = nullptr;

TEST_F(TlsTest, ServesTlsAndRefusesPlaintextAndOtherCas) {
  StartServer(/*client_ca=*/false, false, files_->node);
  EXPECT_TRUE(Health(Tls(files_->ca, nullptr)).ok()) << Health(Tls(files_->ca, nullptr)).error_message();
  // Token auth on top of TLS: the cluster secret's bearer is node.
  EXPECT_EQ(Call(Tls(files_->ca, nullptr, NodeBearer(kSecret)), "/cellar.v1.Master/Heartbeat")
                .error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(Call(Tls(files_->ca, nullptr), "/cellar.v1.Master/Heartbeat").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // Plaintext: the handshake fails.
  EXPECT_EQ(Health(ChannelSecurity{}).error_code(), grpc::StatusCode::UNAVAILABLE);
  // A client trusting another CA does not accept the server.
  EXPECT_EQ(Health(Tls(files_->other_ca, nullptr)).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, TheServerNameIsChecked) {
  StartServer(false, false, files_->node);
  // The certificate has IP:127.0.0.1 and DNS:localhost.
  EXPECT_TRUE(Health(Tls(files_->ca, nullptr, "", "localhost")).ok());
  EXPECT_EQ(Health(Tls(files_->ca, nullptr, "", "master.example")).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // The client certificate is a valid certificate of the CA, without
  // those names.
  server_.reset();
  StartServer(false, false, files_->client);
  EXPECT_EQ(Health(Tls(files_->ca, nullptr)).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(Health(Tls(files_->ca, nullptr, "", "billing.example")).ok());
}

TEST_F(TlsTest, OptionalClientCertificatesAreVerifiedAndANodeCertificateIsNode) {
  StartServer(/*client_ca=*/true, /*require_client_cert=*/false, files_->node);
  EXPECT_TRUE(Health(Tls(files_->ca, nullptr)).ok()) << "no certificate: allowed";
  // A certificate of another CA is refused in the handshake, even with
  // the node identity in it.
  EXPECT_EQ(Health(Tls(files_->ca, &files_->stranger)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Call(Tls(files_->ca, &files_->stranger, NodeBearer(kSecret)),
                 "/cellar.v1.Master/Heartbeat")
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // The node certificate is role node without any bearer.
  EXPECT_EQ(Call(Tls(files_->ca, &files_->node), "/cellar.v1.Master/Heartbeat").error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  grpc::Status denied = Call(Tls(files_->ca, &files_->node), "/cellar.v1.Master/Begin");
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(denied.error_message(),
            "/cellar.v1.Master/Begin needs role client; the caller has role node");
  // A certificate of the CA without the node identity is transport only.
  EXPECT_EQ(
      Call(Tls(files_->ca, &files_->client), "/cellar.v1.Master/Heartbeat").error_code(),
      grpc::StatusCode::UNAUTHENTICATED);
  // A bearer decides when sent, certificate or not.
  EXPECT_EQ(Call(Tls(files_->ca, &files_->node, "cellar_00000000_bad"),
                 "/cellar.v1.Master/Heartbeat")
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(TlsTest, RequiredClientCertificates) {
  StartServer(/*client_ca=*/true, /*require_client_cert=*/true, files_->node);
  EXPECT_EQ(Health(Tls(files_->ca, nullptr)).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Health(Tls(files_->ca, &files_->stranger)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(Health(Tls(files_->ca, &files_->client)).ok());
  EXPECT_EQ(Call(Tls(files_->ca, &files_->node), "/cellar.v1.Master/Heartbeat").error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(TlsTest, ARotatedCertificateIsServedWithoutARestart) {
  // The server's files are copies that the test replaces.
  const CertificateFiles served{*dir_ + "/served.pem", *dir_ + "/served.key"};
  auto copy = [](const CertificateFiles& from, const CertificateFiles& to) {
    return std::system(absl::StrCat("cp ", from.cert_file, " ", to.cert_file, ".tmp && cp ",
                                    from.key_file, " ", to.key_file, ".tmp && mv ",
                                    to.key_file, ".tmp ", to.key_file, " && mv ",
                                    to.cert_file, ".tmp ", to.cert_file)
                           .c_str());
  };
  ASSERT_EQ(copy(files_->node, served), 0);
  StartServer(false, false, served, /*reload=*/absl::Seconds(1));
  ASSERT_TRUE(Health(Tls(files_->ca, nullptr)).ok());
  ASSERT_EQ(Health(Tls(files_->other_ca, nullptr)).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  // Now a certificate of the other CA: new connections get it within the
  // reload interval (polled, bounded).
  ASSERT_EQ(copy(files_->stranger, served), 0);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!Health(Tls(files_->other_ca, nullptr)).ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_TRUE(Health(Tls(files_->other_ca, nullptr)).ok());
  EXPECT_EQ(Health(Tls(files_->ca, nullptr)).error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace cellar::common
