// PrimaryGate over real gRPC: standby refusals for every rpc of the
// service descriptor, forwarding while primary, and Close() ending calls
// in progress (Watch streams).

#include "services/master/primary_gate.h"

#include <google/protobuf/descriptor.h>
#include <grpcpp/generic/generic_stub.h>

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/channel.h"
#include "services/common/grpc_server.h"
#include "services/master/call_holder.h"

namespace cellar::master {
namespace {

using ::testing::HasSubstr;

// A stand-in for MasterService: answers GetClusterInfo, streams Watch
// events until cancelled.
class FakeMaster final : public cellar::v1::Master::Service {
 public:
  grpc::Status GetClusterInfo(grpc::ServerContext*, const cellar::v1::GetClusterInfoRequest*,
                              cellar::v1::GetClusterInfoResponse* response) override {
    response->set_epoch(42);
    return grpc::Status::OK;
  }
  grpc::Status Watch(grpc::ServerContext* context, const cellar::v1::WatchRequest*,
                     grpc::ServerWriter<cellar::v1::ClusterEvent>* writer) override {
    cellar::v1::ClusterEvent event;
    event.mutable_snapshot()->set_epoch(42);
    if (!writer->Write(event)) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "gone");
    ++watching;
    while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(10));
    --watching;
    return grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled");
  }
  std::atomic<int> watching{0};
};

class PrimaryGateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    gate_ = std::make_unique<PrimaryGate>([this] { return primary_.load(); },
                                          [this] {
                                            absl::MutexLock l(&mu_);
                                            return primary_address_;
                                          },
                                          holder());
    common::GrpcServerOptions options;
    options.services = {gate_.get()};
    auto server = common::GrpcServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = common::MakeChannel(absl::StrCat("127.0.0.1:", server_->port()));
    stub_ = cellar::v1::Master::NewStub(channel_);
  }
  void TearDown() override {
    gate_->Close("test over");
    server_->Shutdown(absl::Milliseconds(100));
  }

  // The gate's holder: none (refuse at once) unless a test fixture says.
  virtual CallHolder* holder() { return nullptr; }

  grpc::Status CallInfo(cellar::v1::GetClusterInfoResponse* response,
                        absl::Duration timeout = absl::Seconds(5)) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    cellar::v1::GetClusterInfoRequest request;
    return stub_->GetClusterInfo(&context, request, response);
  }

  std::atomic<bool> primary_{false};
  absl::Mutex mu_;
  std::string primary_address_ ABSL_GUARDED_BY(mu_);
  FakeMaster fake_;
  std::unique_ptr<PrimaryGate> gate_;
  std::unique_ptr<common::GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<cellar::v1::Master::Stub> stub_;
};

// Every rpc of cellar.v1.Master goes through the gate: a standby answers
// UNAVAILABLE "not the primary", never UNIMPLEMENTED. A new rpc added to
// master.proto fails here until PrimaryGate forwards it.
TEST_F(PrimaryGateTest, EveryMasterRpcIsGated) {
  {
    absl::MutexLock l(&mu_);
    primary_address_ = "10.1.2.3:7100";
  }
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName("cellar.v1.Master");
  ASSERT_NE(service, nullptr);
  ASSERT_GT(service->method_count(), 0);
  grpc::GenericStub generic(channel_);
  for (int i = 0; i < service->method_count(); ++i) {
    const std::string method = absl::StrCat("/cellar.v1.Master/", service->method(i)->name());
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    grpc::Slice empty("");  // an empty message: every field at its default
    grpc::ByteBuffer request(&empty, 1), response;
    std::promise<grpc::Status> done;
    generic.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                      [&done](grpc::Status s) { done.set_value(s); });
    const grpc::Status status = done.get_future().get();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << method << " answered " << status.error_code() << " " << status.error_message()
        << ": PrimaryGate must forward every cellar.v1.Master rpc";
    EXPECT_THAT(status.error_message(), HasSubstr("not the primary (primary is 10.1.2.3:7100)"))
        << method;
  }
}

TEST_F(PrimaryGateTest, StandbyWithoutKnownPrimarySaysSo) {
  cellar::v1::GetClusterInfoResponse response;
  const grpc::Status s = CallInfo(&response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("election in progress"));
}

TEST_F(PrimaryGateTest, ForwardsOnlyWhileOpenAndPrimary) {
  gate_->Open(&fake_);
  cellar::v1::GetClusterInfoResponse response;
  // Open, but the election says no (lease ran out): refused.
  EXPECT_EQ(CallInfo(&response).error_code(), grpc::StatusCode::UNAVAILABLE);
  primary_ = true;
  ASSERT_TRUE(CallInfo(&response).ok());
  EXPECT_EQ(response.epoch(), 42u);
  primary_ = false;
  EXPECT_EQ(CallInfo(&response).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(PrimaryGateTest, CloseEndsWatchStreamsAndRefusesForGood) {
  primary_ = true;
  gate_->Open(&fake_);
  grpc::ClientContext context;
  cellar::v1::WatchRequest request;
  request.set_node_id(7);
  auto reader = stub_->Watch(&context, request);
  cellar::v1::ClusterEvent event;
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.snapshot().epoch(), 42u);
  EXPECT_EQ(gate_->calls_in_progress(), 1);

  const absl::Time start = absl::Now();
  gate_->Close("lost the primary lease");
  EXPECT_FALSE(reader->Read(&event));
  const grpc::Status end = reader->Finish();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::CANCELLED) << end.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));

  // Closed for good, even if opened again or still "primary".
  gate_->Open(&fake_);
  cellar::v1::GetClusterInfoResponse response;
  const grpc::Status s = CallInfo(&response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("lost the primary lease"));
  for (int i = 0; i < 200 && fake_.watching.load() != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(fake_.watching.load(), 0);
  EXPECT_EQ(gate_->calls_in_progress(), 0);
}

// Delayed acceptance: a standby that knows no primary holds calls.
class HoldingPrimaryGateTest : public PrimaryGateTest {
 protected:
  CallHolder* holder() override { return &holder_; }
  // Waits (bounded) until `n` calls are held.
  bool AwaitHeld(int n) {
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (holder_.stats().held_now != n) {
      if (absl::Now() > give_up) return false;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return true;
  }
  CallHolder holder_;
};

TEST_F(HoldingPrimaryGateTest, HeldWhileNoPrimaryIsKnownThenForwarded) {
  std::future<grpc::Status> call = std::async(std::launch::async, [this] {
    cellar::v1::GetClusterInfoResponse response;
    grpc::Status s = CallInfo(&response, absl::Seconds(20));
    if (s.ok() && response.epoch() != 42) return grpc::Status(grpc::StatusCode::INTERNAL, "?");
    return s;
  });
  ASSERT_TRUE(AwaitHeld(1)) << "the call was not held while no master is primary";
  // This master wins the election.
  primary_ = true;
  gate_->Open(&fake_);
  ASSERT_EQ(call.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  const grpc::Status s = call.get();
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(holder_.stats().held_now, 0);
}

TEST_F(HoldingPrimaryGateTest, HeldCallRefusedOnceAnotherMasterWins) {
  std::future<grpc::Status> call = std::async(std::launch::async, [this] {
    cellar::v1::GetClusterInfoResponse response;
    return CallInfo(&response, absl::Seconds(20));
  });
  ASSERT_TRUE(AwaitHeld(1));
  {
    absl::MutexLock l(&mu_);
    primary_address_ = "10.1.2.3:7100";
  }
  ASSERT_EQ(call.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  const grpc::Status s = call.get();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("not the primary (primary is 10.1.2.3:7100)"));
}

TEST_F(HoldingPrimaryGateTest, HoldEndsAtTheDeadlineAndKnownPrimaryIsNotHeld) {
  cellar::v1::GetClusterInfoResponse response;
  grpc::Status s = CallInfo(&response, absl::Milliseconds(400));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(s.error_message(), HasSubstr("election in progress"));
  EXPECT_THAT(s.error_message(), HasSubstr("until this call's deadline"));
  // A standby that knows the primary sends the caller there at once.
  {
    absl::MutexLock l(&mu_);
    primary_address_ = "10.1.2.3:7100";
  }
  const absl::Time start = absl::Now();
  s = CallInfo(&response, absl::Seconds(20));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(HoldingPrimaryGateTest, CloseReleasesHeldCalls) {
  std::future<grpc::Status> call = std::async(std::launch::async, [this] {
    cellar::v1::GetClusterInfoResponse response;
    return CallInfo(&response, absl::Seconds(20));
  });
  ASSERT_TRUE(AwaitHeld(1));
  const absl::Time start = absl::Now();
  gate_->Close("shutting down");
  const grpc::Status s = call.get();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("shutting down"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

}  // namespace
}  // namespace cellar::master
