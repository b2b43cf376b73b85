// Limits a caller cannot exceed, end to end on a real master with auth: a
// Watch stream holds a server thread for a node's whole session, so the
// master bounds them per caller (token) and in all, and refuses more with
// RESOURCE_EXHAUSTED before they hold anything (the probe that opened 500
// streams got 560 server threads).

#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/common/auth_tokens.h"
#include "services/common/authenticator.h"
#include "services/common/channel.h"
#include "services/common/logging.h"
#include "services/common/status_matchers.h"
#include "tests/integration/cluster_helpers.h"
#include "tools/local/local_cluster.h"

namespace cellar {
namespace {

using ::testing::HasSubstr;

constexpr char kSecret[] = "limits-test-cluster-secret-0123456789";
constexpr size_t kPerCaller = 3;

class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    common::SetMinLogSeverity(common::LogSeverity::kWarning);
    const std::string dir = absl::StrCat(::testing::TempDir(), "/limits_test.", getpid());
    std::string file;
    for (std::string* token : {&greedy_, &other_}) {
      auto made = common::MakeToken(common::Role::kClient, "limits test client");
      ASSERT_THAT(made, common::IsOk());
      *token = made->token;
      file += made->line;
    }
    std::ofstream(dir + ".tokens") << file;
    auto auth = testing_support::TestAuthSetup(dir + ".tokens", kSecret);
    ASSERT_THAT(auth, common::IsOk());
    tools::LocalClusterOptions options;
    options.data_dir = dir;
    options.storages = 1;
    options.replicas = 0;
    options.partitions = 2;
    options.auth = *std::move(auth);
    options.master_options = [](master::MasterServerOptions* m) {
      m->max_watch_streams_per_caller = kPerCaller;
    };
    auto cluster = tools::LocalCluster::Start(options);
    ASSERT_THAT(cluster, common::IsOk());
    cluster_ = *std::move(cluster);
  }

  // A registered client's open Watch stream (its first event read).
  struct Stream {
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientReader<cellar::v1::ClusterEvent>> reader;
  };

  grpc::Status OpenWatch(const std::string& token, Stream* stream) {
    auto stub = cellar::v1::Master::NewStub(
        common::MakeChannel(cluster_->master_address(), token));
    cellar::v1::RegisterNodeRequest reg;
    reg.set_cluster_name(tools::LocalClusterOptions().cluster_name);
    reg.set_protocol_version(cellar::v1::PROTOCOL_VERSION_1);
    reg.set_role(cellar::v1::NODE_ROLE_CLIENT);
    cellar::v1::RegisterNodeResponse registered;
    {
      grpc::ClientContext context;
      common::SetDeadline(&context, absl::Seconds(5));
      grpc::Status s = stub->RegisterNode(&context, reg, &registered);
      if (!s.ok()) return s;
    }
    stream->context = std::make_unique<grpc::ClientContext>();
    common::SetDeadline(stream->context.get(), absl::Seconds(30));
    cellar::v1::WatchRequest request;
    request.set_node_id(registered.node_id());
    stream->reader = stub->Watch(stream->context.get(), request);
    cellar::v1::ClusterEvent event;
    if (stream->reader->Read(&event)) return grpc::Status::OK;
    return stream->reader->Finish();
  }

  std::unique_ptr<tools::LocalCluster> cluster_;
  std::string greedy_;
  std::string other_;
};

TEST_F(LimitsTest, WatchStreamsAreBoundedPerCallerAndFreedWhenTheyEnd) {
  std::vector<Stream> held(kPerCaller);
  for (Stream& stream : held) ASSERT_TRUE(OpenWatch(greedy_, &stream).ok());

  Stream refused;
  grpc::Status s = OpenWatch(greedy_, &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(),
              HasSubstr("too many Watch streams for these credentials: 3 open, at most 3"));

  // Another caller is not starved by the first.
  Stream others;
  EXPECT_TRUE(OpenWatch(other_, &others).ok());

  // An ended stream gives its slot back (the handler notices the
  // cancellation within its poll interval; bounded wait).
  held.back().context->TryCancel();
  held.back().reader->Finish();
  held.pop_back();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  Stream again;
  while (!(s = OpenWatch(greedy_, &again)).ok() && absl::Now() < deadline) {
    ASSERT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(s.ok()) << "the slot of an ended stream was not freed within 10 s: "
                      << s.error_message();
  for (Stream* stream : {&again, &others}) stream->context->TryCancel();
  for (Stream& stream : held) stream.context->TryCancel();
}

}  // namespace
}  // namespace cellar
