#include "services/common/grpc_server.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "services/common/auth_tokens.h"
#include "services/common/authenticator.h"
#include "services/common/channel.h"
#include "services/common/raw_call.h"

namespace cellar::common {
namespace {

std::string Scrape(prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

TEST(GrpcServerTest, ServesHealthAndCountsCallsEvenWhenTheCallerDropsTheRegistry) {
  auto registry = std::make_shared<prometheus::Registry>();
  std::weak_ptr<prometheus::Registry> weak = registry;
  GrpcServerOptions options;
  options.metrics_registry = registry;
  options.metrics_labels = {{"version", "test"}};
  auto server = GrpcServer::Start(std::move(options));
  ASSERT_TRUE(server.ok()) << server.status();
  registry.reset();  // the server keeps it alive
  ASSERT_FALSE(weak.expired());
  (*server)->SetServing("cellar.v1.Test", false);

  auto stub = grpc::health::v1::Health::NewStub(
      MakeChannel(absl::StrCat("127.0.0.1:", (*server)->port())));
  for (const std::string& service : {"", "cellar.v1.Test", "unknown.Service"}) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(5));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = stub->Check(&ctx, req, &resp);
    if (service == "unknown.Service") {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    } else {
      ASSERT_TRUE(s.ok()) << s.error_message();
      EXPECT_EQ(resp.status(), service.empty()
                                   ? grpc::health::v1::HealthCheckResponse::SERVING
                                   : grpc::health::v1::HealthCheckResponse::NOT_SERVING);
    }
  }
  const std::string text = Scrape(*weak.lock());
  EXPECT_NE(text.find("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Check\","
                      "grpc_service=\"grpc.health.v1.Health\",grpc_type=\"unary\","
                      "version=\"test\"} 2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("grpc_code=\"NOT_FOUND\""), std::string::npos) << text;
  EXPECT_NE(text.find("grpc_server_handling_seconds_bucket"), std::string::npos);
  EXPECT_NE(text.find("le=\"5e-05\""), std::string::npos) << "50 us bucket missing";
  (*server)->Shutdown();
}

TEST(GrpcServerTest, RefusesAnAddressInUse) {
  auto first = GrpcServer::Start(GrpcServerOptions{});
  ASSERT_TRUE(first.ok());
  GrpcServerOptions options;
  options.address = absl::StrCat("127.0.0.1:", (*first)->port());
  auto second = GrpcServer::Start(std::move(options));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST(GrpcServerTest, RefusesANonLoopbackAddressWithoutAuthUnlessInsecure) {
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:7100"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:7100"));
  EXPECT_TRUE(IsLoopbackAddress("localhost:7100"));
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0:7100"));
  EXPECT_FALSE(IsLoopbackAddress("[::]:7100"));
  EXPECT_FALSE(IsLoopbackAddress("10.1.2.3:7100"));

  GrpcServerOptions options;
  options.address = "0.0.0.0:0";
  auto refused = GrpcServer::Start(options);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("--insecure"), absl::string_view::npos);

  auto registry = std::make_shared<prometheus::Registry>();
  options.metrics_registry = registry;
  options.insecure = true;
  auto server = GrpcServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_NE(Scrape(*registry).find("cellar_insecure_mode 1"), std::string::npos)
      << Scrape(*registry);
}

// The refusal happens before any handler, even for a method the server
// does not serve, and is counted.
TEST(GrpcServerTest, WithAuthRefusesCallsBeforeTheHandlerAndCountsThem) {
  AuthenticatorOptions auth_options;
  auth_options.cluster_secret = "grpc-server-test-secret";
  auto authenticator = Authenticator::Create(auth_options);
  ASSERT_TRUE(authenticator.ok()) << authenticator.status();
  auto registry = std::make_shared<prometheus::Registry>();
  GrpcServerOptions options;
  options.address = "0.0.0.0:0";  // fine with auth
  options.metrics_registry = registry;
  options.authenticator = *std::move(authenticator);
  auto server = GrpcServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = absl::StrCat("127.0.0.1:", (*server)->port());

  auto check = [&](const std::string& bearer) {
    auto stub = grpc::health::v1::Health::NewStub(MakeChannel(address, bearer));
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(5));
    grpc::health::v1::HealthCheckResponse resp;
    return stub->Check(&ctx, {}, &resp);
  };
  EXPECT_TRUE(check("").ok()) << "health is open";

  // Health's stub on another path: a method of a cellar service.
  auto call = [&](const std::string& bearer, const char* path) {
    return RawUnaryCall(MakeChannel(address, bearer).get(), path);
  };
  EXPECT_EQ(call("", "/cellar.v1.Master/Begin").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status denied = call(NodeBearer("grpc-server-test-secret"), "/cellar.v1.Master/Begin");
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(denied.error_message(),
            "/cellar.v1.Master/Begin needs role client; the caller has role node");
  // Allowed: reaches the server, which has no such service.
  EXPECT_EQ(call(NodeBearer("grpc-server-test-secret"), "/cellar.v1.Master/Heartbeat")
                .error_code(),
            grpc::StatusCode::UNIMPLEMENTED);

  const std::string text = Scrape(*registry);
  EXPECT_NE(text.find("cellar_auth_refused_total{reason=\"unauthenticated\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("cellar_auth_refused_total{reason=\"permission_denied\"} 1"),
            std::string::npos)
      << text;
}

// Answers every Store with OK (the harness needs a cellar method that
// takes a sizeable request).
class AcceptingStorage final : public cellar::v1::Storage::Service {
  grpc::Status Store(grpc::ServerContext*, const cellar::v1::StoreRequest*,
                     cellar::v1::StoreResponse*) override {
    return grpc::Status::OK;
  }
};

TEST(GrpcServerTest, AByteLimitRefusesTheNextCallOfATokenThatSentTooMuch) {
  const std::string tokens_file =
      absl::StrCat(::testing::TempDir(), "/grpc_server_test.bytes.tokens");
  auto heavy = MakeToken(Role::kClient, "heavy");
  auto calm = MakeToken(Role::kClient, "calm");
  ASSERT_TRUE(heavy.ok() && calm.ok());
  std::ofstream(tokens_file) << heavy->line << calm->line;
  AuthenticatorOptions auth_options;
  auth_options.tokens_file = tokens_file;
  auth_options.reload_interval = absl::ZeroDuration();
  auth_options.byte_limit_per_second = 100;  // burst 200 bytes
  auto authenticator = Authenticator::Create(auth_options);
  ASSERT_TRUE(authenticator.ok()) << authenticator.status();
  AcceptingStorage storage;
  GrpcServerOptions options;
  options.address = "127.0.0.1:0";
  options.authenticator = *std::move(authenticator);
  options.services = {&storage};
  auto server = GrpcServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = absl::StrCat("127.0.0.1:", (*server)->port());

  auto store = [&](const std::string& token, size_t bytes) {
    auto stub = cellar::v1::Storage::NewStub(MakeChannel(address, token));
    grpc::ClientContext ctx;
    SetDeadline(&ctx, absl::Seconds(5));
    cellar::v1::StoreRequest req;
    req.add_objects()->set_data(std::string(bytes, 'x'));
    cellar::v1::StoreResponse resp;
    return stub->Store(&ctx, req, &resp);
  };
  EXPECT_TRUE(store(heavy->token, 10).ok());
  // 10 KB: far over the 200-byte bucket. This call itself passes (its size
  // is known only once it is read); the debt refuses the next ones.
  EXPECT_TRUE(store(heavy->token, 10000).ok());
  grpc::Status refused = store(heavy->token, 10);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.error_message().find("bytes/s"), std::string::npos)
      << refused.error_message();
  EXPECT_TRUE(store(calm->token, 10).ok()) << "another token keeps its own budget";
}

}  // namespace
}  // namespace cellar::common
