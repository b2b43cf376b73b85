// A multi-process cluster (tools/cluster) started with auth on: every
// process gets the cluster secret and the tokens file from the cluster
// directory; the storages register and replicate with the node credential,
// the harness's client commits with its client token, a caller without
// credentials is refused, and a restarted storage comes back (its command
// line keeps the auth flags).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/logging.h"
#include "services/common/status_matchers.h"
#include "tests/fault/fault_support.h"

namespace cellar::fault {
namespace {

using common::IsOk;

TEST(AuthClusterTest, ProcessesAuthenticateEachOtherAndRefuseStrangers) {
  common::SetMinLogSeverity(common::LogSeverity::kError);
  tools::ClusterTopology topology = DefaultTopology();
  topology.storages = 2;
  topology.partitions = 4;
  topology.auth = true;
  auto cluster = StartCluster("sqlite", topology);
  ASSERT_THAT(cluster, IsOk());
  tools::ProcessCluster& c = **cluster;
  ASSERT_FALSE(c.client_token().empty());

  // Registered, RUNNING (Up waited), so storage -> master worked; a commit
  // goes client -> master -> storages (lock/unlock with the node bearer).
  auto client = Connect(c);
  ASSERT_THAT(client, IsOk());
  CommitLedger ledger;
  ASSERT_THAT(CommitFresh(**client, ledger, 5), IsOk()) << ledger.FailureSummary();

  auto master = v1::Master::NewStub(common::MakeChannel(c.master_addresses().front()));
  grpc::ClientContext context;
  common::SetDeadline(&context, absl::Seconds(5));
  v1::GetClusterInfoResponse info;
  EXPECT_EQ(master->GetClusterInfo(&context, {}, &info).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  // The admin (admin -> master with the node bearer) answers an admin token.
  common::ChannelSecurity admin_token;
  admin_token.bearer_token = ReadTokenFile(c.dir() + "/admin.token");
  v1::ListNodesResponse nodes;
  grpc::Status listed = AdminListNodes(c.address("A1"), admin_token, &nodes);
  EXPECT_TRUE(listed.ok()) << listed.error_message();
  EXPECT_GE(nodes.nodes_size(), 3);

  ASSERT_THAT(c.Restart("S1"), IsOk());
  ASSERT_THAT(c.WaitForClusterState(v1::CLUSTER_RUNNING, absl::Seconds(60)), IsOk());
  ASSERT_THAT(CommitFresh(**client, ledger, 5), IsOk()) << ledger.FailureSummary();
}

}  // namespace
}  // namespace cellar::fault
