// The metrics port as Prometheus sees it, over real HTTP with libcurl:
// open by default; with an authenticator, basic auth whose password is a
// readonly/admin/node token (401 otherwise).

#include "services/common/metrics_endpoint.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include <prometheus/counter.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/common/auth_tokens.h"
#include "services/common/authenticator.h"
#include "services/common/http_get.h"

namespace cellar::common {
namespace {

constexpr char kSecret[] = "metrics-test-cluster-secret-0123";

using Scrape = HttpAnswer;

Scrape Get(const std::string& url, const std::string& password = "") {
  return HttpGet(url, password);
}

class MetricsEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = std::make_shared<prometheus::Registry>();
    prometheus::BuildCounter().Name("cellar_test_scrapes_total").Help("test")
        .Register(*registry_).Add({}).Increment();
    dir_ = ::testing::TempDir() + "/metrics_endpoint_test";
    ASSERT_EQ(std::system(("rm -rf " + dir_ + " && mkdir -p " + dir_).c_str()), 0);
    client_ = *MakeToken(Role::kClient, "app");
    readonly_ = *MakeToken(Role::kReadonly, "prometheus");
    admin_ = *MakeToken(Role::kAdmin, "ops");
    reader_ = *MakeToken(Role::kReader, "report job");
    std::ofstream(dir_ + "/tokens") << client_.line << readonly_.line << admin_.line
                                    << reader_.line;
    AuthenticatorOptions options;
    options.tokens_file = dir_ + "/tokens";
    options.cluster_secret = kSecret;
    options.reload_interval = absl::ZeroDuration();
    auto auth = Authenticator::Create(options);
    ASSERT_TRUE(auth.ok()) << auth.status();
    auth_ = *std::move(auth);
  }

  std::shared_ptr<prometheus::Registry> registry_;
  std::string dir_;
  NewToken client_, readonly_, admin_, reader_;
  std::shared_ptr<const Authenticator> auth_;
};

TEST_F(MetricsEndpointTest, OpenByDefault) {
  auto endpoint = MetricsEndpoint::Start("127.0.0.1:0", registry_);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  const Scrape scrape = Get(absl::StrCat("http://127.0.0.1:", (*endpoint)->port(), "/metrics"));
  EXPECT_EQ(scrape.status, 200) << scrape.error;
  EXPECT_TRUE(absl::StrContains(scrape.body, "cellar_test_scrapes_total 1")) << scrape.body;
}

TEST_F(MetricsEndpointTest, BasicAuthNeedsAReadonlyAdminOrNodeToken) {
  MetricsEndpointOptions options;
  options.address = "127.0.0.1:0";
  options.authenticator = auth_;
  auto endpoint = MetricsEndpoint::Start(options, registry_);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  const std::string url = absl::StrCat("http://127.0.0.1:", (*endpoint)->port(), "/metrics");
  EXPECT_EQ(Get(url).status, 401) << "no credentials";
  EXPECT_EQ(Get(url, "not-a-token").status, 401);
  EXPECT_EQ(Get(url, client_.token).status, 401) << "the client role may not scrape";
  EXPECT_EQ(Get(url, reader_.token).status, 401) << "the reader role may not scrape";
  for (const std::string& token : {readonly_.token, admin_.token, NodeBearer(kSecret)}) {
    const Scrape scrape = Get(url, token);
    EXPECT_EQ(scrape.status, 200) << scrape.error;
    EXPECT_TRUE(absl::StrContains(scrape.body, "cellar_test_scrapes_total")) << scrape.body;
  }
  EXPECT_FALSE(absl::StrContains(Get(url, client_.token).body, "cellar_test_scrapes_total"));
}

}  // namespace
}  // namespace cellar::common
