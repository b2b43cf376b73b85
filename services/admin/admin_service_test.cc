// cellar.v1.Admin over real gRPC, in process on port 0: an AdminServer
// whose clusters are canned masters (FakeMaster), with the monitor driven
// by hand and a fake clock. Checks answers and the status codes of every
// refusal.

#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "grpc/health/v1/health.grpc.pb.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "services/admin/admin_server.h"
#include "services/admin/testing/fake_master.h"
#include "services/admin/testing/fake_storage.h"
#include "services/common/channel.h"
#include "services/common/errors.h"
#include "services/common/fake_clock.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"

namespace cellar::admin {
namespace {

using ::cellar::admin::testing::FakeMaster;
using ::cellar::admin::testing::FakeStorage;
using ::cellar::admin::testing::HealthyClusterInfo;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;
using grpc::StatusCode;

uint32_t S(int i) { return common::MakeNodeId(common::NodeKind::kStorage, i); }

class AdminServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto prod = FakeMaster::Start();
    ASSERT_TRUE(prod.ok()) << prod.status();
    prod_ = *std::move(prod);
    auto staging = FakeMaster::Start();
    ASSERT_TRUE(staging.ok()) << staging.status();
    staging_ = *std::move(staging);
    // Registered 100 s before "now".
    const int64_t registered = absl::ToUnixMillis(clock_.Now() - absl::Seconds(100));
    auto info = HealthyClusterInfo(3, 4, 1, registered);
    for (auto& n : *info.mutable_nodes()) {
      if (n.node_id() == S(3)) n.set_state(cellar::v1::NODE_DOWN);
    }
    prod_->SetClusterInfo(info);
    auto staging_info = HealthyClusterInfo(1, 2, 0, registered);
    staging_info.set_cluster_name("staging");
    staging_->SetClusterInfo(staging_info);

    AdminServerOptions options;
    options.admin.clusters = {{"prod", {"127.0.0.1:1", prod_->address()}},
                              {"staging", {staging_->address()}},
                              {"offline", {"127.0.0.1:1"}}};
    options.admin.monitor.period = absl::ZeroDuration();
    auto server = AdminServer::Start(options, nullptr, &clock_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = cellar::v1::Admin::NewStub(common::MakeChannel(server_->address()));
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  template <typename Req, typename Resp>
  grpc::Status Call(grpc::Status (cellar::v1::Admin::Stub::*method)(grpc::ClientContext*,
                                                                    const Req&, Resp*),
                    const Req& request, Resp* response) {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    return (stub_.get()->*method)(&context, request, response);
  }

  common::FakeClock clock_;
  std::unique_ptr<FakeMaster> prod_;
  std::unique_ptr<FakeMaster> staging_;
  std::unique_ptr<AdminServer> server_;
  std::unique_ptr<cellar::v1::Admin::Stub> stub_;
};

TEST_F(AdminServiceTest, HealthSaysServing) {
  auto health = grpc::health::v1::Health::NewStub(common::MakeChannel(server_->address()));
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("cellar.v1.Admin");
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&context, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(AdminServiceTest, ClusterStatusOfTheDefaultAndOfANamedCluster) {
  cellar::v1::GetClusterStatusRequest req;
  cellar::v1::GetClusterStatusResponse resp;
  // The default cluster's first master is down: the second answers.
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::GetClusterStatus, req, &resp).ok());
  EXPECT_EQ(resp.cluster(), "prod");
  EXPECT_EQ(resp.cluster_name(), "cellar");
  EXPECT_EQ(resp.cluster_state(), cellar::v1::CLUSTER_RUNNING);
  EXPECT_EQ(resp.storages_total(), 3u);
  EXPECT_EQ(resp.storages_running(), 2u);
  EXPECT_EQ(resp.num_partitions(), 4u);
  EXPECT_TRUE(resp.operational());

  req.set_cluster("staging");
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::GetClusterStatus, req, &resp).ok());
  EXPECT_EQ(resp.cluster(), "staging");
  EXPECT_EQ(resp.cluster_name(), "staging");
}

TEST_F(AdminServiceTest, ClusterStatusShowsTheSizesOfEveryStorageAndTheClusterOnce) {
  auto s1 = FakeStorage::Start();
  auto s2 = FakeStorage::Start();
  auto s3 = FakeStorage::Start();
  ASSERT_TRUE(s1.ok() && s2.ok() && s3.ok());
  auto cell = [](uint32_t partition, bool readable, uint64_t objects, uint64_t bytes) {
    cellar::v1::PartitionStats p;
    p.set_partition(partition);
    p.set_readable(readable);
    p.set_objects(objects);
    p.set_revisions(objects * 2);
    p.set_bytes(bytes);
    return p;
  };
  // 2 partitions, both on S1 and S2; S2's copy of partition 1 is still
  // being filled.
  cellar::v1::GetPartitionStatsResponse r1, r2;
  *r1.add_partitions() = cell(0, true, 3, 300);
  *r1.add_partitions() = cell(1, true, 4, 400);
  *r2.add_partitions() = cell(0, true, 3, 300);
  *r2.add_partitions() = cell(1, false, 1, 100);
  (*s1)->SetPartitionStats(r1, absl::OkStatus());
  (*s2)->SetPartitionStats(r2, absl::OkStatus());
  (*s3)->SetPartitionStats({}, absl::UnavailableError("disk on fire"));
  auto info = HealthyClusterInfo(3, 2, 1);
  for (auto& n : *info.mutable_nodes()) {
    if (n.node_id() == S(1)) n.set_address((*s1)->address());
    if (n.node_id() == S(2)) n.set_address((*s2)->address());
    if (n.node_id() == S(3)) n.set_address((*s3)->address());
  }
  prod_->SetClusterInfo(info);

  cellar::v1::GetClusterStatusRequest req;
  cellar::v1::GetClusterStatusResponse resp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::GetClusterStatus, req, &resp).ok());
  ASSERT_EQ(resp.storage_sizes_size(), 3);
  const cellar::v1::StorageNodeSize& n1 = resp.storage_sizes(0);
  EXPECT_EQ(n1.name(), "S1");
  EXPECT_EQ(n1.objects(), 7u);
  EXPECT_EQ(n1.revisions(), 14u);
  EXPECT_EQ(n1.bytes(), 700u);
  EXPECT_EQ(n1.readable_cells(), 2u);
  EXPECT_EQ(resp.storage_sizes(1).objects(), 3u) << "a cell being filled is not counted";
  const cellar::v1::StorageNodeSize& n3 = resp.storage_sizes(2);
  EXPECT_EQ(n3.name(), "S3");
  EXPECT_FALSE(n3.has_objects());
  EXPECT_FALSE(n3.has_bytes());
  EXPECT_THAT(n3.error(), HasSubstr("disk on fire"));
  EXPECT_EQ(resp.size_partitions_counted(), 2u);
  EXPECT_EQ(resp.total_objects(), 7u) << "each partition once";
  EXPECT_EQ(resp.total_revisions(), 14u);
  EXPECT_EQ(resp.total_bytes(), 700u);

  // S1 gone silent: partition 1 has no readable cell that answered, so no
  // total (a partial sum would look like data loss); the status still answers.
  (*s1)->Shutdown();
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::GetClusterStatus, req, &resp).ok());
  EXPECT_FALSE(resp.storage_sizes(0).has_objects());
  EXPECT_FALSE(resp.storage_sizes(0).error().empty());
  EXPECT_EQ(resp.size_partitions_counted(), 1u);
  EXPECT_FALSE(resp.has_total_objects());
  EXPECT_EQ(resp.cluster_state(), cellar::v1::CLUSTER_RUNNING);
}

TEST_F(AdminServiceTest, UnknownClusterIsNotFoundEverywhere) {
  cellar::v1::GetClusterStatusRequest status_req;
  status_req.set_cluster("nope");
  cellar::v1::GetClusterStatusResponse status_resp;
  grpc::Status s = Call(&cellar::v1::Admin::Stub::GetClusterStatus, status_req, &status_resp);
  EXPECT_EQ(s.error_code(), StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("configured: prod, staging, offline"));

  cellar::v1::ListNodesRequest nodes_req;
  nodes_req.set_cluster("nope");
  cellar::v1::ListNodesResponse nodes_resp;
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::ListNodes, nodes_req, &nodes_resp).error_code(),
            StatusCode::NOT_FOUND);
  cellar::v1::GetPartitionTableRequest pt_req;
  pt_req.set_cluster("nope");
  cellar::v1::GetPartitionTableResponse pt_resp;
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::GetPartitionTable, pt_req, &pt_resp).error_code(),
            StatusCode::NOT_FOUND);
  cellar::v1::AdminStartClusterRequest start_req;
  start_req.set_cluster("nope");
  cellar::v1::AdminStartClusterResponse start_resp;
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::StartCluster, start_req, &start_resp).error_code(),
            StatusCode::NOT_FOUND);
  cellar::v1::ListAlertsRequest alerts_req;
  alerts_req.set_cluster("nope");
  cellar::v1::ListAlertsResponse alerts_resp;
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::ListAlerts, alerts_req, &alerts_resp).error_code(),
            StatusCode::NOT_FOUND);
}

TEST_F(AdminServiceTest, MasterDownIsUnavailable) {
  cellar::v1::GetClusterStatusRequest req;
  req.set_cluster("offline");
  cellar::v1::GetClusterStatusResponse resp;
  grpc::Status s = Call(&cellar::v1::Admin::Stub::GetClusterStatus, req, &resp);
  EXPECT_EQ(s.error_code(), StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("cluster \"offline\": no master answered"));
  EXPECT_THAT(s.error_message(), HasSubstr("127.0.0.1:1"));

  // A master that answers with an error counts as not answering.
  prod_->SetClusterInfoError(absl::UnavailableError("shutting down"));
  cellar::v1::ListNodesRequest nodes_req;
  cellar::v1::ListNodesResponse nodes_resp;
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::ListNodes, nodes_req, &nodes_resp).error_code(),
            StatusCode::UNAVAILABLE);

  cellar::v1::AdminStartClusterRequest start_req;
  start_req.set_cluster("offline");
  cellar::v1::AdminStartClusterResponse start_resp;
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::StartCluster, start_req, &start_resp).error_code(),
            StatusCode::UNAVAILABLE);
}

TEST_F(AdminServiceTest, ListNodesWithUptime) {
  clock_.Advance(absl::Seconds(20));
  cellar::v1::ListNodesRequest req;
  cellar::v1::ListNodesResponse resp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::ListNodes, req, &resp).ok());
  EXPECT_EQ(resp.nodes_size(), 4);
  EXPECT_THAT(resp.uptime_seconds(),
              UnorderedElementsAre(Pair("M1", 120), Pair("S1", 120), Pair("S2", 120)))
      << "S3 is DOWN: no uptime";
}

TEST_F(AdminServiceTest, GetNodeByNameOrId) {
  cellar::v1::GetNodeRequest req;
  cellar::v1::GetNodeResponse resp;
  req.set_name("S2");
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::GetNode, req, &resp).ok());
  EXPECT_EQ(resp.node().node_id(), S(2));
  EXPECT_EQ(resp.name(), "S2");
  EXPECT_EQ(resp.uptime_seconds(), 100);
  EXPECT_EQ(resp.registered_time().seconds(),
            absl::ToUnixSeconds(clock_.Now() - absl::Seconds(100)));

  req.Clear();
  req.set_node_id(S(3));
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::GetNode, req, &resp).ok());
  EXPECT_EQ(resp.name(), "S3");
  EXPECT_EQ(resp.node().state(), cellar::v1::NODE_DOWN);
  EXPECT_EQ(resp.uptime_seconds(), 0);

  req.Clear();
  req.set_name("s1");  // case-insensitive role letter
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::GetNode, req, &resp).ok());
  EXPECT_EQ(resp.name(), "S1");
}

TEST_F(AdminServiceTest, GetNodeRefusals) {
  cellar::v1::GetNodeResponse resp;
  cellar::v1::GetNodeRequest req;
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::GetNode, req, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT)
      << "neither id nor name";
  req.set_name("S1");
  req.set_node_id(S(1));
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::GetNode, req, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT)
      << "both";
  for (const char* bad : {"X1", "S", "S0", "Sx", "S-1", "S99999999"}) {
    req.Clear();
    req.set_name(bad);
    grpc::Status s = Call(&cellar::v1::Admin::Stub::GetNode, req, &resp);
    EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_THAT(s.error_message(), HasSubstr("is not a node name")) << bad;
  }
  req.Clear();
  req.set_name("S9");
  grpc::Status s = Call(&cellar::v1::Admin::Stub::GetNode, req, &resp);
  EXPECT_EQ(s.error_code(), StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("S9"));
}

TEST_F(AdminServiceTest, StartClusterPassesTheMastersRefusalWithItsDetails) {
  prod_->SetStartResult(cellar::v1::CLUSTER_RUNNING,
                        common::ErrorWithReason(absl::StatusCode::kFailedPrecondition,
                                                "CLUSTER_NOT_RUNNING",
                                                "the cluster is RUNNING, not RECOVERING"));
  cellar::v1::AdminStartClusterRequest req;
  cellar::v1::AdminStartClusterResponse resp;
  grpc::Status s = Call(&cellar::v1::Admin::Stub::StartCluster, req, &resp);
  EXPECT_EQ(s.error_code(), StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("not RECOVERING"));
  EXPECT_EQ(common::ErrorReason(common::FromGrpcStatus(s)), "CLUSTER_NOT_RUNNING");

  prod_->SetStartResult(cellar::v1::CLUSTER_VERIFYING, absl::OkStatus());
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::StartCluster, req, &resp).ok());
  EXPECT_EQ(resp.cluster_state(), cellar::v1::CLUSTER_VERIFYING);
  EXPECT_EQ(prod_->start_calls(), 2);
}

TEST_F(AdminServiceTest, LimitsAreValidated) {
  cellar::v1::AdminLastTransactionsRequest txn_req;
  txn_req.set_limit(1001);
  cellar::v1::AdminLastTransactionsResponse txn_resp;
  grpc::Status s = Call(&cellar::v1::Admin::Stub::LastTransactions, txn_req, &txn_resp);
  EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("limit"));
  cellar::v1::ObjectHistoryRequest hist_req;
  hist_req.set_limit(5000);
  cellar::v1::ObjectHistoryResponse hist_resp;
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::ObjectHistory, hist_req, &hist_resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

TEST_F(AdminServiceTest, LastTransactionsMergesStoragesAndListsThemForPeople) {
  auto s1 = FakeStorage::Start();
  auto s2 = FakeStorage::Start();
  ASSERT_TRUE(s1.ok() && s2.ok());
  const uint64_t t8 = common::TidFromTime(clock_.Now() - absl::Seconds(3));
  const uint64_t t9 = t8 + 1, t10 = t8 + 2;
  auto txn = [](uint64_t tid, std::string user, std::string description) {
    cellar::v1::TransactionInfo t;
    t.set_tid(tid);
    t.set_ttid(tid - 1);
    t.set_user(std::move(user));
    t.set_description(std::move(description));
    t.add_oids(1);
    t.add_oids(2);
    t.set_size_bytes(42);
    return t;
  };
  const uint64_t t11 = t8 + 3;  // committed on S1, not yet published by the master
  cellar::v1::LastTransactionsResponse r1, r2;
  *r1.add_transactions() = txn(t11, "carol", "not yet");
  *r1.add_transactions() = txn(t10, "alice", "ten");
  *r1.add_transactions() = txn(t8, "bob", std::string("bad \xff byte"));
  *r2.add_transactions() = txn(t10, "alice", "ten");
  *r2.add_transactions() = txn(t9, "", "nine");
  (*s1)->SetTransactions(r1);
  (*s2)->SetTransactions(r2);
  auto info = HealthyClusterInfo();
  for (auto& n : *info.mutable_nodes()) {
    if (n.node_id() == S(1)) n.set_address((*s1)->address());
    if (n.node_id() == S(2)) n.set_address((*s2)->address());
    if (n.node_id() == S(3)) n.set_state(cellar::v1::NODE_DOWN);
  }
  info.set_last_tid(t10);
  prod_->SetClusterInfo(info);

  cellar::v1::AdminLastTransactionsRequest req;
  req.set_limit(3);
  cellar::v1::AdminLastTransactionsResponse resp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::LastTransactions, req, &resp).ok());
  ASSERT_EQ(resp.transactions_size(), 3);
  EXPECT_EQ(resp.transactions(0).tid(), t10);
  EXPECT_EQ(resp.transactions(1).tid(), t9);
  EXPECT_EQ(resp.transactions(2).tid(), t8);
  ASSERT_EQ(resp.listing_size(), 3);
  EXPECT_EQ(resp.listing(0).tid(), common::TidHex(t10));
  EXPECT_EQ(resp.listing(0).time(), common::TidTime(t10));
  EXPECT_EQ(resp.listing(0).user(), "alice");
  EXPECT_EQ(resp.listing(0).description(), "ten");
  EXPECT_EQ(resp.listing(0).size_bytes(), 42u);
  EXPECT_EQ(resp.listing(0).objects(), 2u);
  EXPECT_EQ(resp.listing(2).description(), "bad \\xff byte");

  // History of oid 5 (partition 1: cells on S3, down, and S1).
  cellar::v1::HistoryResponse history;
  history.set_oid(5);
  history.add_revisions()->set_serial(t11);  // not published: left out
  history.add_revisions()->set_serial(t10);
  (*s1)->SetHistory(history, absl::OkStatus());
  cellar::v1::ObjectHistoryRequest hreq;
  hreq.set_oid(5);
  cellar::v1::ObjectHistoryResponse hresp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::ObjectHistory, hreq, &hresp).ok());
  EXPECT_EQ(hresp.oid(), 5u);
  ASSERT_EQ(hresp.revisions_size(), 1);
  EXPECT_EQ(hresp.revisions(0).serial(), t10);
  // An unknown object is NOT_FOUND with the storage's reason.
  (*s1)->SetHistory({}, common::ErrorWithReason(absl::StatusCode::kNotFound, "NO_SUCH_OBJECT",
                                                "oid 0x5 has no revision"));
  grpc::Status s = Call(&cellar::v1::Admin::Stub::ObjectHistory, hreq, &hresp);
  EXPECT_EQ(s.error_code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(common::ErrorReason(common::FromGrpcStatus(s)), "NO_SUCH_OBJECT");
  // No readable cell on a running storage: UNAVAILABLE.
  for (auto& n : *info.mutable_nodes()) {
    if (n.node_id() == S(1)) n.set_state(cellar::v1::NODE_DOWN);
  }
  prod_->SetClusterInfo(info);
  s = Call(&cellar::v1::Admin::Stub::ObjectHistory, hreq, &hresp);
  EXPECT_EQ(s.error_code(), StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("partition 1"));
}

TEST_F(AdminServiceTest, ListClustersShowsEveryClusterEvenUnreachable) {
  server_->monitor().Poll();
  cellar::v1::ListClustersRequest req;
  cellar::v1::ListClustersResponse resp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::ListClusters, req, &resp).ok());
  ASSERT_EQ(resp.clusters_size(), 3);
  const auto& prod = resp.clusters(0);
  EXPECT_EQ(prod.name(), "prod");
  EXPECT_TRUE(prod.is_default());
  EXPECT_TRUE(prod.reachable());
  EXPECT_EQ(prod.cluster_state(), cellar::v1::CLUSTER_RUNNING);
  EXPECT_EQ(prod.storages_running(), 2u);
  EXPECT_EQ(prod.storages_total(), 3u);
  EXPECT_EQ(prod.active_alerts(), 1u);  // node-down S3
  EXPECT_EQ(prod.critical_alerts(), 0u);
  EXPECT_EQ(prod.master_addresses_size(), 2);
  EXPECT_FALSE(resp.clusters(1).is_default());
  EXPECT_TRUE(resp.clusters(1).reachable());
  EXPECT_EQ(resp.clusters(1).active_alerts(), 0u);
  const auto& offline = resp.clusters(2);
  EXPECT_FALSE(offline.reachable());
  EXPECT_THAT(offline.error(), HasSubstr("no master answered"));
  EXPECT_EQ(offline.active_alerts(), 1u);
  EXPECT_EQ(offline.critical_alerts(), 1u);
}

TEST_F(AdminServiceTest, ListAcknowledgeDeleteAlerts) {
  server_->monitor().Poll();
  cellar::v1::ListAlertsRequest req;
  cellar::v1::ListAlertsResponse resp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::ListAlerts, req, &resp).ok());
  ASSERT_EQ(resp.alerts_size(), 2);
  EXPECT_EQ(resp.alerts(0).id(), "offline/cluster-unreachable/");
  EXPECT_EQ(resp.alerts(0).severity(), cellar::v1::ALERT_CRITICAL);
  const cellar::v1::Alert& down = resp.alerts(1);
  EXPECT_EQ(down.id(), "prod/node-down/S3");
  EXPECT_EQ(down.cluster(), "prod");
  EXPECT_EQ(down.kind(), "node-down");
  EXPECT_EQ(down.subject(), "S3");
  EXPECT_EQ(down.severity(), cellar::v1::ALERT_WARNING);
  EXPECT_THAT(down.summary(), HasSubstr("storage S3"));
  EXPECT_FALSE(down.help().empty());
  EXPECT_EQ(down.help_uri(), "docs/alerts/node-down.md");
  EXPECT_EQ(down.first_seen().seconds(), absl::ToUnixSeconds(clock_.Now()));
  EXPECT_EQ(down.count(), 1);
  EXPECT_TRUE(down.active());
  EXPECT_FALSE(down.acknowledged());

  req.set_cluster("prod");
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::ListAlerts, req, &resp).ok());
  ASSERT_EQ(resp.alerts_size(), 1);
  req.Clear();
  req.set_min_severity(cellar::v1::ALERT_CRITICAL);
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::ListAlerts, req, &resp).ok());
  ASSERT_EQ(resp.alerts_size(), 1);
  EXPECT_EQ(resp.alerts(0).kind(), "cluster-unreachable");
  req.Clear();
  req.set_kind("node-down");
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::ListAlerts, req, &resp).ok());
  ASSERT_EQ(resp.alerts_size(), 1);

  clock_.Advance(absl::Seconds(3));
  cellar::v1::AcknowledgeAlertRequest ack;
  ack.set_id("prod/node-down/S3");
  ack.set_by("alice");
  cellar::v1::AcknowledgeAlertResponse ack_resp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::AcknowledgeAlert, ack, &ack_resp).ok());
  EXPECT_TRUE(ack_resp.alert().acknowledged());
  EXPECT_EQ(ack_resp.alert().acknowledged_by(), "alice");
  EXPECT_EQ(ack_resp.alert().acknowledged_time().seconds(), absl::ToUnixSeconds(clock_.Now()));

  req.Clear();
  req.set_acknowledged(false);
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::ListAlerts, req, &resp).ok());
  ASSERT_EQ(resp.alerts_size(), 1);
  EXPECT_EQ(resp.alerts(0).id(), "offline/cluster-unreachable/");
  req.set_acknowledged(true);
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::ListAlerts, req, &resp).ok());
  ASSERT_EQ(resp.alerts_size(), 1);
  EXPECT_EQ(resp.alerts(0).id(), "prod/node-down/S3");

  cellar::v1::DeleteAlertRequest del;
  del.set_id("prod/node-down/S3");
  cellar::v1::DeleteAlertResponse del_resp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::DeleteAlert, del, &del_resp).ok());
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::DeleteAlert, del, &del_resp).error_code(),
            StatusCode::NOT_FOUND);
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::AcknowledgeAlert, ack, &ack_resp).error_code(),
            StatusCode::NOT_FOUND);
  // Still down: the next poll raises it afresh.
  server_->monitor().Poll();
  req.Clear();
  req.set_kind("node-down");
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::ListAlerts, req, &resp).ok());
  ASSERT_EQ(resp.alerts_size(), 1);
  EXPECT_FALSE(resp.alerts(0).acknowledged());
  EXPECT_EQ(resp.alerts(0).count(), 1);

  // S3 back: the alert resolves; include_resolved shows it.
  auto healthy = HealthyClusterInfo();
  prod_->SetClusterInfo(healthy);
  server_->monitor().Poll();
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::ListAlerts, req, &resp).ok());
  EXPECT_THAT(resp.alerts(), IsEmpty());
  req.set_include_resolved(true);
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::ListAlerts, req, &resp).ok());
  ASSERT_EQ(resp.alerts_size(), 1);
  EXPECT_FALSE(resp.alerts(0).active());
  EXPECT_EQ(resp.alerts(0).resolved_time().seconds(), absl::ToUnixSeconds(clock_.Now()));
}

TEST_F(AdminServiceTest, AlertRequestsAreValidated) {
  cellar::v1::ListAlertsRequest req;
  cellar::v1::ListAlertsResponse resp;
  req.set_min_severity(static_cast<cellar::v1::AlertSeverity>(9));
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::ListAlerts, req, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  req.Clear();
  req.set_kind("disk-full");
  grpc::Status s = Call(&cellar::v1::Admin::Stub::ListAlerts, req, &resp);
  EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("disk-almost-full"));

  cellar::v1::AcknowledgeAlertRequest ack;
  cellar::v1::AcknowledgeAlertResponse ack_resp;
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::AcknowledgeAlert, ack, &ack_resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  ack.set_id("prod/node-down/S3");
  ack.set_by(std::string(201, 'x'));
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::AcknowledgeAlert, ack, &ack_resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  ack.set_by("");
  ack.set_id("prod/no-such/alert");
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::AcknowledgeAlert, ack, &ack_resp).error_code(),
            StatusCode::NOT_FOUND);
  cellar::v1::DeleteAlertRequest del;
  cellar::v1::DeleteAlertResponse del_resp;
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::DeleteAlert, del, &del_resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
}

// ---- Operator actions -------------------------------------------------------

TEST_F(AdminServiceTest, PartitionTableChangesResolveNamesAndPassThePlanOn) {
  cellar::v1::ChangePartitionTableResponse plan;
  plan.set_plan("partition 1: S4 OUT_OF_DATE (replaces S1)\n");
  auto* change = plan.add_changes();
  change->set_partition(1);
  change->set_node_id(S(4));
  change->set_state(cellar::v1::CELL_OUT_OF_DATE);
  plan.add_warnings("partition 1: replicas S1 and S4 share zone z1");
  plan.set_ptid_before(3);
  plan.set_ptid(3);
  plan.set_num_replicas(1);
  prod_->SetChangeResponse(plan);

  cellar::v1::AddStoragesRequest add;
  add.add_names("S4");
  add.add_names("s5");
  add.add_node_ids(S(4));  // the same storage twice: asked once
  add.set_dry_run(true);
  cellar::v1::PartitionTableChangeResponse resp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::AddStorages, add, &resp).ok());
  EXPECT_EQ(prod_->last_action(), "ChangePartitionTable");
  auto sent = prod_->last_request<cellar::v1::ChangePartitionTableRequest>();
  EXPECT_EQ(sent.operation(), cellar::v1::PT_ADD);
  EXPECT_THAT(sent.node_ids(), ::testing::ElementsAre(S(4), S(5)));
  EXPECT_TRUE(sent.dry_run());
  EXPECT_TRUE(resp.dry_run());
  EXPECT_FALSE(resp.applied());
  EXPECT_EQ(resp.plan(), plan.plan());
  ASSERT_EQ(resp.listing_size(), 1);
  EXPECT_EQ(resp.listing(0).node(), "S4");
  EXPECT_EQ(resp.listing(0).partition(), 1u);
  EXPECT_EQ(resp.listing(0).state(), cellar::v1::CELL_OUT_OF_DATE);
  ASSERT_EQ(resp.changes_size(), 1);
  EXPECT_EQ(resp.warnings_size(), 1);
  EXPECT_EQ(resp.ptid_before(), 3u);
  EXPECT_EQ(resp.num_replicas(), 1u);

  cellar::v1::TweakPartitionTableRequest tweak;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::TweakPartitionTable, tweak, &resp).ok());
  sent = prod_->last_request<cellar::v1::ChangePartitionTableRequest>();
  EXPECT_EQ(sent.operation(), cellar::v1::PT_TWEAK);
  EXPECT_FALSE(sent.dry_run());
  EXPECT_FALSE(resp.dry_run());

  cellar::v1::DropStorageRequest drop;
  drop.set_name("S3");
  drop.set_dry_run(true);
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::DropStorage, drop, &resp).ok());
  sent = prod_->last_request<cellar::v1::ChangePartitionTableRequest>();
  EXPECT_EQ(sent.operation(), cellar::v1::PT_DROP);
  EXPECT_THAT(sent.node_ids(), ::testing::ElementsAre(S(3)));

  cellar::v1::SetReplicasRequest replicas;
  replicas.set_replicas(2);
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::SetReplicas, replicas, &resp).ok());
  sent = prod_->last_request<cellar::v1::ChangePartitionTableRequest>();
  EXPECT_EQ(sent.operation(), cellar::v1::PT_SET_REPLICAS);
  EXPECT_EQ(sent.replicas(), 2u);

  // The named cluster's master is asked, not the default's.
  cellar::v1::TweakPartitionTableRequest staging;
  staging.set_cluster("staging");
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::TweakPartitionTable, staging, &resp).ok());
  EXPECT_EQ(staging_->last_action(), "ChangePartitionTable");
}

TEST_F(AdminServiceTest, ActionRequestsAreValidatedBeforeTheMasterIsAsked) {
  cellar::v1::PartitionTableChangeResponse resp;
  cellar::v1::AddStoragesRequest add;
  grpc::Status s = Call(&cellar::v1::Admin::Stub::AddStorages, add, &resp);
  EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT);
  add.add_names("M1");
  s = Call(&cellar::v1::Admin::Stub::AddStorages, add, &resp);
  EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("M1 (id 16777217) is not a storage node"));
  cellar::v1::DropStorageRequest drop;
  drop.set_name("S3");
  drop.set_node_id(S(3));
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::DropStorage, drop, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT)
      << "both id and name";
  drop.Clear();
  drop.set_name("Sx");
  s = Call(&cellar::v1::Admin::Stub::DropStorage, drop, &resp);
  EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("is not a node name"));
  cellar::v1::SetReplicasRequest replicas;
  replicas.set_replicas(65);
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::SetReplicas, replicas, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  // An empty request is not "R = 0" (that would drop every copy but one).
  replicas.Clear();
  replicas.set_dry_run(false);
  s = Call(&cellar::v1::Admin::Stub::SetReplicas, replicas, &resp);
  EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("replicas: required"));
  cellar::v1::AdminSetClusterStateRequest state;
  state.set_state(cellar::v1::CLUSTER_VERIFYING);
  cellar::v1::AdminSetClusterStateResponse state_resp;
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::SetClusterState, state, &state_resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  cellar::v1::AdminKillNodeRequest kill;
  cellar::v1::AdminKillNodeResponse kill_resp;
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::KillNode, kill, &kill_resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  cellar::v1::AdminTruncateRequest truncate;
  cellar::v1::AdminTruncateResponse truncate_resp;
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::Truncate, truncate, &truncate_resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  cellar::v1::AdminRepairCellRequest repair;
  repair.set_name("S2");
  repair.set_source_node_id(S(2));
  cellar::v1::AdminRepairCellResponse repair_resp;
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::RepairCell, repair, &repair_resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  cellar::v1::AdminCheckReplicasRequest check;
  check.set_min_tid(10);
  check.set_max_tid(5);
  cellar::v1::AdminCheckReplicasResponse check_resp;
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::CheckReplicas, check, &check_resp).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(prod_->last_action(), "") << "nothing reached the master";
  cellar::v1::TweakPartitionTableRequest tweak;
  tweak.set_cluster("nope");
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::TweakPartitionTable, tweak, &resp).error_code(),
            StatusCode::NOT_FOUND);
  tweak.set_cluster("offline");
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::TweakPartitionTable, tweak, &resp).error_code(),
            StatusCode::UNAVAILABLE);
}

TEST_F(AdminServiceTest, TheMastersRefusalsArePassedOnWithTheirDetails) {
  prod_->SetActionError(common::ErrorWithReason(
      absl::StatusCode::kFailedPrecondition, "CLUSTER_NOT_RUNNING",
      "would drop the last readable cell of partition 7"));
  auto expect_refused = [](const grpc::Status& s, const char* what) {
    EXPECT_EQ(s.error_code(), StatusCode::FAILED_PRECONDITION) << what;
    EXPECT_EQ(s.error_message(), "would drop the last readable cell of partition 7") << what;
    EXPECT_EQ(common::ErrorReason(common::FromGrpcStatus(s)), "CLUSTER_NOT_RUNNING") << what;
  };
  cellar::v1::PartitionTableChangeResponse resp;
  cellar::v1::DropStorageRequest drop;
  drop.set_name("S3");
  expect_refused(Call(&cellar::v1::Admin::Stub::DropStorage, drop, &resp), "drop");
  cellar::v1::AdminSetClusterStateRequest state;
  state.set_state(cellar::v1::CLUSTER_RUNNING);
  cellar::v1::AdminSetClusterStateResponse state_resp;
  expect_refused(Call(&cellar::v1::Admin::Stub::SetClusterState, state, &state_resp), "state");
  cellar::v1::AdminKillNodeRequest kill;
  kill.set_name("S2");
  cellar::v1::AdminKillNodeResponse kill_resp;
  expect_refused(Call(&cellar::v1::Admin::Stub::KillNode, kill, &kill_resp), "kill");
  cellar::v1::AdminCheckReplicasRequest check;
  cellar::v1::AdminCheckReplicasResponse check_resp;
  expect_refused(Call(&cellar::v1::Admin::Stub::CheckReplicas, check, &check_resp), "check");
  cellar::v1::AdminGetCheckStatusRequest status;
  cellar::v1::AdminGetCheckStatusResponse status_resp;
  expect_refused(Call(&cellar::v1::Admin::Stub::GetCheckStatus, status, &status_resp),
                 "check status");
  cellar::v1::AdminRepairCellRequest repair;
  repair.set_partition(1);
  repair.set_name("S2");
  repair.set_source_name("S1");
  cellar::v1::AdminRepairCellResponse repair_resp;
  expect_refused(Call(&cellar::v1::Admin::Stub::RepairCell, repair, &repair_resp), "repair");
  cellar::v1::AdminTruncateRequest truncate;
  truncate.set_tid(0x1234);
  cellar::v1::AdminTruncateResponse truncate_resp;
  expect_refused(Call(&cellar::v1::Admin::Stub::Truncate, truncate, &truncate_resp),
                 "truncate");

  // A master without the rpc says so.
  prod_->SetActionError(absl::UnimplementedError(""));
  grpc::Status s = Call(&cellar::v1::Admin::Stub::Truncate, truncate, &truncate_resp);
  EXPECT_EQ(s.error_code(), StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(s.error_message(), HasSubstr("does not implement Master.Truncate"));
}

TEST_F(AdminServiceTest, StateKillRepairTruncateForward) {
  cellar::v1::AdminSetClusterStateRequest state;
  state.set_state(cellar::v1::CLUSTER_STOPPING);
  cellar::v1::AdminSetClusterStateResponse state_resp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::SetClusterState, state, &state_resp).ok());
  EXPECT_EQ(prod_->last_request<cellar::v1::SetClusterStateRequest>().state(),
            cellar::v1::CLUSTER_STOPPING);
  EXPECT_EQ(state_resp.cluster_state(), cellar::v1::CLUSTER_STOPPING);

  cellar::v1::AdminKillNodeRequest kill;
  kill.set_name("s2");
  kill.set_stop(true);
  cellar::v1::AdminKillNodeResponse kill_resp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::KillNode, kill, &kill_resp).ok());
  auto sent_kill = prod_->last_request<cellar::v1::KillNodeRequest>();
  EXPECT_EQ(sent_kill.node_id(), S(2));
  EXPECT_TRUE(sent_kill.stop());
  EXPECT_EQ(kill_resp.name(), "S2");
  EXPECT_EQ(kill_resp.node().state(), cellar::v1::NODE_DOWN);
  EXPECT_TRUE(kill_resp.stopped());

  cellar::v1::AdminRepairCellRequest repair;
  repair.set_partition(3);
  repair.set_name("S2");
  repair.set_source_node_id(S(1));
  cellar::v1::AdminRepairCellResponse repair_resp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::RepairCell, repair, &repair_resp).ok());
  auto sent_repair = prod_->last_request<cellar::v1::RepairCellRequest>();
  EXPECT_EQ(sent_repair.partition(), 3u);
  EXPECT_EQ(sent_repair.node_id(), S(2));
  EXPECT_EQ(sent_repair.source_node_id(), S(1));
  EXPECT_EQ(repair_resp.ptid(), 5u);

  const uint64_t tid = common::TidFromTime(clock_.Now() - absl::Seconds(60));
  cellar::v1::AdminTruncateRequest truncate;
  truncate.set_tid(tid);
  cellar::v1::AdminTruncateResponse truncate_resp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::Truncate, truncate, &truncate_resp).ok());
  EXPECT_EQ(prod_->last_request<cellar::v1::TruncateRequest>().tid(), tid);
  EXPECT_EQ(truncate_resp.last_tid(), tid);
  EXPECT_EQ(truncate_resp.last_tid_time(), common::TidTime(tid));
  EXPECT_EQ(truncate_resp.cluster_state(), cellar::v1::CLUSTER_RUNNING);
}

TEST_F(AdminServiceTest, CheckReplicasAndItsStatusForPeople) {
  cellar::v1::AdminCheckReplicasRequest check;
  check.add_partitions(1);
  check.add_partitions(2);
  check.set_min_tid(100);
  check.set_with_data(true);
  cellar::v1::AdminCheckReplicasResponse check_resp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::CheckReplicas, check, &check_resp).ok());
  EXPECT_EQ(check_resp.check_id(), 7u);
  auto sent = prod_->last_request<cellar::v1::CheckReplicasRequest>();
  EXPECT_THAT(sent.partitions(), ::testing::ElementsAre(1u, 2u));
  EXPECT_EQ(sent.min_tid(), 100u);
  EXPECT_EQ(sent.max_tid(), 0u);
  EXPECT_TRUE(sent.with_data());

  const uint64_t max_tid = common::TidFromTime(clock_.Now());
  cellar::v1::GetCheckStatusResponse master_status;
  master_status.set_check_id(7);
  master_status.set_partitions_done(2);
  master_status.set_partitions_total(2);
  master_status.set_transactions_checked(120);
  master_status.set_max_tid(max_tid);
  master_status.set_started_unix_ms(1795317128410);
  master_status.set_finished_unix_ms(1795317129000);
  auto* m = master_status.add_mismatches();
  m->set_partition(2);
  m->set_node_id(S(3));
  m->set_reference_node_id(S(2));
  m->set_min_tid(0x10);
  m->set_max_tid(0x20);
  m->set_detail("transactions: 120 vs 121");
  master_status.add_skipped_partitions(1);
  prod_->SetCheckStatus(master_status);
  cellar::v1::AdminGetCheckStatusRequest req;
  req.set_check_id(7);
  cellar::v1::AdminGetCheckStatusResponse resp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::GetCheckStatus, req, &resp).ok());
  EXPECT_EQ(prod_->last_request<cellar::v1::GetCheckStatusRequest>().check_id(), 7u);
  EXPECT_EQ(resp.check_id(), 7u);
  EXPECT_FALSE(resp.running());
  EXPECT_EQ(resp.partitions_done(), 2u);
  EXPECT_EQ(resp.transactions_checked(), 120u);
  EXPECT_EQ(resp.min_tid_time(), "");
  EXPECT_EQ(resp.max_tid_time(), common::TidTime(max_tid));
  ASSERT_EQ(resp.mismatches_size(), 1);
  EXPECT_EQ(resp.mismatches(0).node(), "S3");
  EXPECT_EQ(resp.mismatches(0).reference_node(), "S2");
  EXPECT_EQ(resp.mismatches(0).min_tid(), common::TidHex(0x10));
  EXPECT_EQ(resp.mismatches(0).detail(), "transactions: 120 vs 121");
  EXPECT_THAT(resp.skipped_partitions(), ::testing::ElementsAre(1u));
  EXPECT_EQ(resp.started_time().seconds(), 1795317128);
  EXPECT_EQ(resp.started_time().nanos(), 410000000);
  EXPECT_EQ(resp.finished_time().seconds(), 1795317129);
}

TEST_F(AdminServiceTest, StopNodeCallsTheStoragesShutdownAtItsAddress) {
  auto s2 = FakeStorage::Start();
  ASSERT_TRUE(s2.ok());
  auto info = HealthyClusterInfo();
  for (auto& n : *info.mutable_nodes()) {
    if (n.node_id() == S(2)) n.set_address((*s2)->address());
    if (n.node_id() == S(3)) n.set_state(cellar::v1::NODE_DOWN);
  }
  prod_->SetClusterInfo(info);

  cellar::v1::StopNodeRequest req;
  req.set_name("S2");
  req.set_reason("maintenance");
  cellar::v1::StopNodeResponse resp;
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::StopNode, req, &resp).ok());
  EXPECT_EQ(resp.name(), "S2");
  EXPECT_EQ(resp.address(), (*s2)->address());
  EXPECT_TRUE(resp.stopped());
  EXPECT_THAT((*s2)->shutdown_reasons(), ::testing::ElementsAre("maintenance"));
  EXPECT_THAT((*s2)->shutdown_node_ids(), ::testing::ElementsAre(S(2)));  // which node

  // By id, with the default reason.
  req.Clear();
  req.set_node_id(S(2));
  ASSERT_TRUE(Call(&cellar::v1::Admin::Stub::StopNode, req, &resp).ok());
  ASSERT_EQ((*s2)->shutdown_reasons().size(), 2u);
  EXPECT_THAT((*s2)->shutdown_reasons()[1], HasSubstr("admin StopNode"));

  // The storage's refusal, with its code.
  (*s2)->SetShutdownResult(absl::FailedPreconditionError("in `cellar local` nodes stop with the process"));
  grpc::Status s = Call(&cellar::v1::Admin::Stub::StopNode, req, &resp);
  EXPECT_EQ(s.error_code(), StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("storage S2 at "));
  EXPECT_THAT(s.error_message(), HasSubstr("nodes stop with the process"));

  req.Clear();
  req.set_name("S3");  // DOWN: no address to call
  s = Call(&cellar::v1::Admin::Stub::StopNode, req, &resp);
  EXPECT_EQ(s.error_code(), StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("S3 is NODE_DOWN"));
  req.set_name("S9");
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::StopNode, req, &resp).error_code(),
            StatusCode::NOT_FOUND);
  req.set_name("M1");
  EXPECT_EQ(Call(&cellar::v1::Admin::Stub::StopNode, req, &resp).error_code(),
            StatusCode::INVALID_ARGUMENT);

  // An unreachable storage: UNAVAILABLE naming it.
  const std::string address = (*s2)->address();
  (*s2)->Shutdown();
  req.set_name("S2");
  s = Call(&cellar::v1::Admin::Stub::StopNode, req, &resp);
  EXPECT_EQ(s.error_code(), StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr(address));
}

TEST(AdminServerTest, RefusesABadClusterList) {
  AdminServerOptions options;
  EXPECT_EQ(AdminServer::Start(options, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.admin.clusters = {{"a", {"127.0.0.1:1"}}, {"a", {"127.0.0.1:2"}}};
  EXPECT_EQ(AdminServer::Start(options, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.admin.clusters = {{"a/b", {"127.0.0.1:1"}}};
  EXPECT_EQ(AdminServer::Start(options, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.admin.clusters = {{"a", {}}};
  EXPECT_EQ(AdminServer::Start(options, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseClusterListTest, Parses) {
  auto list = ParseClusterList("prod=10.0.0.1:7100;10.0.0.2:7100, staging=127.0.0.1:7100");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "prod");
  EXPECT_THAT((*list)[0].master_addresses,
              ::testing::ElementsAre("10.0.0.1:7100", "10.0.0.2:7100"));
  EXPECT_EQ((*list)[1].name, "staging");
  EXPECT_EQ(ParseClusterList("prod").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseClusterList("").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace cellar::admin
