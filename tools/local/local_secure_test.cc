// `cellar local --secure` as a user meets it: throwaway credentials made
// once (secrets 0600, kept on the next start), then a cluster where every
// port wants TLS and a token, and the metrics a readonly token.

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "services/common/auth_tokens.h"
#include "services/common/channel.h"
#include "services/common/http_get.h"
#include "tools/credentials/throwaway_credentials.h"
#include "tools/local/local_cluster.h"

namespace cellar::tools {
namespace {

namespace v1 = ::cellar::v1;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(text.str()));
}

int Mode(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return -1;
  return st.st_mode & 0777;
}

// The HTTP status of GET /metrics with `password` as basic auth ("" none).
long ScrapeStatus(int port, const std::string& password) {
  return common::HttpGet(absl::StrCat("http://127.0.0.1:", port, "/metrics"), password).status;
}

grpc::Status Status(const std::string& admin, const common::ChannelSecurity& security) {
  auto stub = v1::Admin::NewStub(common::MakeChannel(admin, security));
  grpc::ClientContext context;
  common::SetDeadline(&context, absl::Seconds(10));
  v1::GetClusterStatusRequest request;
  v1::GetClusterStatusResponse response;
  return stub->GetClusterStatus(&context, request, &response);
}

// A directory made before the reader role existed gets a reader token on
// the next start; the tokens already handed out stay valid.
TEST(LocalSecureTest, AMissingRoleTokenIsAddedAndTheOthersKept) {
  const std::string dir = ::testing::TempDir() + "/local_secure_backfill";
  ASSERT_EQ(std::system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()), 0);
  ASSERT_TRUE(WriteThrowawayAuth(dir, "backfill").ok());
  // As an older version wrote it: no reader token, no reader line.
  ASSERT_EQ(std::remove((dir + "/reader.token").c_str()), 0);
  std::string without_reader;
  {
    std::istringstream lines(Slurp(dir + "/tokens"));
    for (std::string line; std::getline(lines, line);) {
      if (line.find(" reader ") == std::string::npos) without_reader += line + "\n";
    }
  }
  std::ofstream(dir + "/tokens") << without_reader;
  const std::string client = Slurp(dir + "/client.token");

  ASSERT_TRUE(AddMissingThrowawayTokens(dir, "backfill").ok());
  EXPECT_EQ(Mode(dir + "/reader.token"), 0600);
  EXPECT_EQ(Slurp(dir + "/client.token"), client);
  absl::StatusOr<common::TokenTable> table = common::ParseTokensFile(Slurp(dir + "/tokens"));
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 4u);
  auto reader = common::ParseToken(Slurp(dir + "/reader.token"));
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE(table->contains(reader->id));
  EXPECT_EQ(table->at(reader->id).role, common::Role::kReader);
  EXPECT_TRUE(table->contains(common::ParseToken(client)->id));
  // Nothing missing: nothing added.
  ASSERT_TRUE(AddMissingThrowawayTokens(dir, "backfill").ok());
  EXPECT_EQ(common::ParseTokensFile(Slurp(dir + "/tokens"))->size(), 4u);
}

TEST(LocalSecureTest, ThrowawayCredentialsThenTlsAndTokensOnEveryPort) {
  const std::string dir = ::testing::TempDir() + "/local_secure_test";
  ASSERT_EQ(std::system(("rm -rf " + dir + " && mkdir -p " + dir + "/secure").c_str()), 0);
  const std::string secure = dir + "/secure";
  EXPECT_FALSE(HasThrowawayAuth(secure));
  ASSERT_TRUE(WriteThrowawayAuth(secure, "local_secure_test").ok());
  ASSERT_TRUE(WriteThrowawayTls(secure).ok());
  ASSERT_TRUE(HasThrowawayAuth(secure));
  ASSERT_TRUE(HasThrowawayTls(secure));
  for (const char* secret : {"/admin.token", "/client.token", "/reader.token", "/readonly.token",
                             "/cluster-secret", "/tokens", "/tls/ca.key", "/tls/node.key"}) {
    EXPECT_EQ(Mode(secure + secret), 0600) << secret;
  }

  absl::StatusOr<common::AuthSetup> auth = ThrowawayAuthSetup(secure);
  ASSERT_TRUE(auth.ok()) << auth.status();
  LocalClusterOptions options;
  options.data_dir = dir;
  options.storages = 1;
  options.replicas = 0;
  options.partitions = 2;
  options.admin_metrics_listen = "127.0.0.1:0";
  options.auth = *std::move(auth);
  options.auth.metrics_auth = true;
  auto cluster = LocalCluster::Start(options);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  const std::string admin = (*cluster)->admin_address();

  common::TlsClientConfig tls;
  tls.ca_file = secure + "/tls/ca.pem";
  auto with_token = common::MakeChannelSecurity(Slurp(secure + "/admin.token"), tls);
  ASSERT_TRUE(with_token.ok()) << with_token.status();
  grpc::Status s = Status(admin, *with_token);
  EXPECT_TRUE(s.ok()) << s.error_message();
  auto no_token = common::MakeChannelSecurity("", tls);
  ASSERT_TRUE(no_token.ok());
  EXPECT_EQ(Status(admin, *no_token).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  auto plaintext = common::MakeChannelSecurity(Slurp(secure + "/admin.token"), std::nullopt);
  ASSERT_TRUE(plaintext.ok());
  EXPECT_EQ(Status(admin, *plaintext).error_code(), grpc::StatusCode::UNAVAILABLE)
      << "a plaintext call to a TLS port must fail";

  const int metrics = (*cluster)->admin_metrics_port();
  ASSERT_NE(metrics, 0);
  EXPECT_EQ(ScrapeStatus(metrics, ""), 401);
  EXPECT_EQ(ScrapeStatus(metrics, Slurp(secure + "/client.token")), 401);
  EXPECT_EQ(ScrapeStatus(metrics, Slurp(secure + "/readonly.token")), 200);
  (*cluster)->Shutdown();
}

}  // namespace
}  // namespace cellar::tools
