#include "services/admin/cluster_clients.h"

#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/admin/testing/fake_master.h"
#include "services/common/status_matchers.h"

namespace cellar::admin {
namespace {

using ::cellar::common::IsOk;

TEST(ClusterClientsTest, AStorageThatRegistersAgainGetsANewChannel) {
  auto master = testing::FakeMaster::Start();
  ASSERT_THAT(master, IsOk());
  cellar::v1::GetClusterInfoResponse info =
      testing::HealthyClusterInfo(/*storages=*/2, /*partitions=*/4, /*replicas=*/1,
                                  /*registered_unix_ms=*/1000);
  (*master)->SetClusterInfo(info);
  auto clients = ClusterClients::Create({{"cellar", {(*master)->address()}}}, absl::Seconds(5));
  ASSERT_THAT(clients, IsOk());
  ASSERT_THAT((*clients)->GetClusterInfo(""), IsOk());
  const std::string s1 = info.nodes(1).address();
  const std::string s2 = info.nodes(2).address();
  std::shared_ptr<cellar::v1::Storage::Stub> first = (*clients)->StorageStub(s1);
  std::shared_ptr<cellar::v1::Storage::Stub> other = (*clients)->StorageStub(s2);
  ASSERT_NE(first, nullptr);
  // The same registration: the same channel.
  ASSERT_THAT((*clients)->GetClusterInfo(""), IsOk());
  EXPECT_EQ((*clients)->StorageStub(s1), first);
  // S1 registered again (restarted): a new channel, a fresh DNS resolution
  // of its name. S2 keeps its own.
  info.mutable_nodes(1)->set_registered_unix_ms(2000);
  (*master)->SetClusterInfo(info);
  ASSERT_THAT((*clients)->GetClusterInfo(""), IsOk());
  std::shared_ptr<cellar::v1::Storage::Stub> second = (*clients)->StorageStub(s1);
  EXPECT_NE(second, first);
  EXPECT_EQ((*clients)->StorageStub(s1), second);
  EXPECT_EQ((*clients)->StorageStub(s2), other);
}

}  // namespace
}  // namespace cellar::admin
