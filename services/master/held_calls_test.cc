// Delayed acceptance over real gRPC: MasterService (with ClusterManager,
// TransactionCoordinator and storages that answer OK) holds a Begin that
// arrives while the cluster is RECOVERING and serves it once RUNNING; a
// hold ends at the caller's deadline or the master's max_hold with a clear
// error; the number of held calls is bounded; shutdown releases them.

#include <future>
#include <memory>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/clock.h"
#include "services/common/errors.h"
#include "services/common/grpc_server.h"
#include "services/common/grpc_status.h"
#include "services/common/status_matchers.h"
#include "services/master/call_holder.h"
#include "services/master/cluster_manager.h"
#include "services/master/event_hub.h"
#include "services/master/master_service.h"
#include "services/master/ok_storage_caller.h"
#include "services/master/transaction_coordinator.h"

namespace cellar::master {
namespace {

using common::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// How long a test waits for something that should happen at once.
constexpr absl::Duration kPatience = absl::Seconds(10);

class HeldCallsTest : public ::testing::Test {
 protected:
  // A master whose cluster waits in RECOVERING for one storage
  // (autostart 1), served on port 0, holding with `hold`.
  void Serve(CallHolderOptions hold) {
    ClusterOptions options;
    options.cluster_name = "test";
    options.num_partitions = 4;
    options.num_replicas = 0;
    options.autostart = 1;
    cluster_ = std::make_unique<ClusterManager>(options, common::RealClock::Get(), &hub_);
    cluster_->set_storage_caller(&storages_);
    coordinator_ = std::make_unique<TransactionCoordinator>(common::RealClock::Get(),
                                                            cluster_.get(), &storages_, &hub_);
    cluster_->set_on_verify([this](const std::vector<uint64_t>& in_doubt,
                                   const std::vector<StorageTarget>& storages,
                                   uint64_t last_tid) {
      coordinator_->Recover(in_doubt, storages, last_tid);
    });
    holder_ = std::make_unique<CallHolder>(hold);
    service_ = std::make_unique<MasterService>(cluster_.get(), coordinator_.get(), &hub_);
    service_->SetCallHolder(holder_.get());
    common::GrpcServerOptions server_options;
    server_options.services = {service_.get()};
    auto server = common::GrpcServer::Start(server_options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = cellar::v1::Master::NewStub(
        common::MakeChannel(absl::StrCat("127.0.0.1:", server_->port())));
    cellar::v1::RegisterNodeRequest client;
    client.set_cluster_name("test");
    client.set_protocol_version(cellar::v1::PROTOCOL_VERSION_1);
    client.set_role(cellar::v1::NODE_ROLE_CLIENT);
    auto registered = cluster_->RegisterNode(client);
    ASSERT_TRUE(registered.ok()) << registered.status();
    client_id_ = registered->node_id();
    ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RECOVERING);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::Milliseconds(100));
  }

  // The storage autostart waits for: the cluster goes RUNNING.
  void AddStorage() {
    cellar::v1::RegisterNodeRequest storage;
    storage.set_cluster_name("test");
    storage.set_protocol_version(cellar::v1::PROTOCOL_VERSION_1);
    storage.set_role(cellar::v1::NODE_ROLE_STORAGE);
    storage.set_address("127.0.0.1:1");
    auto registered = cluster_->RegisterNode(storage);
    ASSERT_TRUE(registered.ok()) << registered.status();
    ASSERT_EQ(cluster_->Info().cluster_state(), cellar::v1::CLUSTER_RUNNING);
  }

  // Master.Begin with `timeout`, on another thread.
  std::future<absl::StatusOr<uint64_t>> BeginAsync(absl::Duration timeout) {
    return std::async(std::launch::async, [this, timeout]() -> absl::StatusOr<uint64_t> {
      grpc::ClientContext context;
      common::SetDeadline(&context, timeout);
      cellar::v1::BeginRequest request;
      request.set_node_id(client_id_);
      cellar::v1::BeginResponse response;
      absl::Status s = common::FromGrpcStatus(stub_->Begin(&context, request, &response));
      if (!s.ok()) return s;
      return response.ttid();
    });
  }

  // Waits (bounded) until `n` calls are held.
  bool AwaitHeld(int n) {
    const absl::Time give_up = absl::Now() + kPatience;
    while (holder_->stats().held_now != n) {
      if (absl::Now() > give_up) return false;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return true;
  }

  EventHub hub_;
  OkStorageCaller storages_;
  std::unique_ptr<ClusterManager> cluster_;
  std::unique_ptr<TransactionCoordinator> coordinator_;
  std::unique_ptr<CallHolder> holder_;
  std::unique_ptr<MasterService> service_;
  std::unique_ptr<common::GrpcServer> server_;
  std::unique_ptr<cellar::v1::Master::Stub> stub_;
  uint32_t client_id_ = 0;
};

TEST_F(HeldCallsTest, BeginWhileRecoveringIsServedOnceRunning) {
  Serve({});
  std::future<absl::StatusOr<uint64_t>> begin = BeginAsync(absl::Seconds(20));
  ASSERT_TRUE(AwaitHeld(1)) << "Begin was not held while RECOVERING";
  // Still waiting: nothing is served before RUNNING.
  EXPECT_EQ(begin.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  const absl::Time running = absl::Now();
  AddStorage();
  ASSERT_EQ(begin.wait_for(std::chrono::seconds(5)), std::future_status::ready)
      << "the held Begin was not served once RUNNING";
  absl::StatusOr<uint64_t> ttid = begin.get();
  ASSERT_TRUE(ttid.ok()) << ttid.status();
  EXPECT_NE(*ttid, 0u);
  EXPECT_LT(absl::Now() - running, absl::Seconds(2));
  EXPECT_EQ(holder_->stats().held, 1u);
  EXPECT_EQ(holder_->stats().held_now, 0);
  EXPECT_EQ(holder_->stats().expired, 0u);
}

TEST_F(HeldCallsTest, HoldEndsAtTheCallersDeadlineWithAClearError) {
  Serve({});
  const absl::Time start = absl::Now();
  absl::StatusOr<uint64_t> ttid = BeginAsync(absl::Milliseconds(600)).get();
  // The master's answer, just before the caller's own timer would fire.
  EXPECT_THAT(ttid.status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       AllOf(HasSubstr("cluster is CLUSTER_RECOVERING, not RUNNING"),
                             HasSubstr("until this call's deadline"))));
  EXPECT_EQ(common::ErrorReason(ttid.status()), common::kReasonClusterNotRunning);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(400));
  EXPECT_EQ(holder_->stats().expired, 1u);
  EXPECT_EQ(holder_->stats().held_now, 0);
}

TEST_F(HeldCallsTest, HoldEndsAtMaxHoldWithTheOldRefusal) {
  CallHolderOptions hold;
  hold.max_hold = absl::Milliseconds(300);
  Serve(hold);
  absl::StatusOr<uint64_t> ttid = BeginAsync(absl::Seconds(20)).get();
  EXPECT_THAT(ttid.status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("cluster is CLUSTER_RECOVERING, not RUNNING"),
                             HasSubstr("--max_hold"))));
  EXPECT_EQ(common::ErrorReason(ttid.status()), common::kReasonClusterNotRunning);
}

TEST_F(HeldCallsTest, MaxHoldZeroRefusesAtOnceAsBefore) {
  CallHolderOptions hold;
  hold.max_hold = absl::ZeroDuration();
  Serve(hold);
  const absl::Time start = absl::Now();
  absl::StatusOr<uint64_t> ttid = BeginAsync(absl::Seconds(20)).get();
  EXPECT_THAT(ttid.status(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(common::ErrorReason(ttid.status()), common::kReasonClusterNotRunning);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(holder_->stats().held, 0u);
}

TEST_F(HeldCallsTest, CallsBeyondTheBoundAreRefusedAtOnce) {
  CallHolderOptions hold;
  hold.max_held = 2;
  Serve(hold);
  std::future<absl::StatusOr<uint64_t>> first = BeginAsync(absl::Seconds(20));
  std::future<absl::StatusOr<uint64_t>> second = BeginAsync(absl::Seconds(20));
  ASSERT_TRUE(AwaitHeld(2));
  const absl::Time start = absl::Now();
  absl::StatusOr<uint64_t> third = BeginAsync(absl::Seconds(20)).get();
  EXPECT_THAT(third.status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                       HasSubstr("cluster is CLUSTER_RECOVERING, not RUNNING")));
  EXPECT_EQ(common::ErrorReason(third.status()), common::kReasonClusterNotRunning);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(holder_->stats().over_bound, 1u);
  AddStorage();
  EXPECT_TRUE(first.get().ok());
  EXPECT_TRUE(second.get().ok());
}

TEST_F(HeldCallsTest, BeginOfAnUnknownClientIsNotHeld) {
  Serve({});
  client_id_ = 0x7fff;  // not registered
  const absl::Time start = absl::Now();
  absl::StatusOr<uint64_t> ttid = BeginAsync(absl::Seconds(20)).get();
  EXPECT_THAT(ttid.status(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(holder_->stats().held, 0u);
}

TEST_F(HeldCallsTest, ShutdownReleasesHeldCallsPromptly) {
  Serve({});
  std::future<absl::StatusOr<uint64_t>> begin = BeginAsync(absl::Seconds(20));
  ASSERT_TRUE(AwaitHeld(1));
  const absl::Time start = absl::Now();
  cluster_->BeginShutdown();
  absl::StatusOr<uint64_t> ttid = begin.get();
  EXPECT_THAT(ttid.status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST_F(HeldCallsTest, CancelledHeldCallEndsPromptly) {
  Serve({});
  grpc::ClientContext context;
  common::SetDeadline(&context, absl::Seconds(20));
  std::future<grpc::Status> begin = std::async(std::launch::async, [&] {
    cellar::v1::BeginRequest request;
    request.set_node_id(client_id_);
    cellar::v1::BeginResponse response;
    return stub_->Begin(&context, request, &response);
  });
  ASSERT_TRUE(AwaitHeld(1));
  context.TryCancel();
  EXPECT_EQ(begin.get().error_code(), grpc::StatusCode::CANCELLED);
  // The handler noticed and gave its place back.
  EXPECT_TRUE(AwaitHeld(0));
}

}  // namespace
}  // namespace cellar::master
