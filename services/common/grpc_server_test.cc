#include "services/common/grpc_server.h"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "services/common/channel.h"

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

}  // namespace
}  // namespace cellar::common
