#include "tests/integration/cluster_helpers.h"

#include <gtest/gtest.h>

#include "services/common/channel.h"

namespace cellar::testing_support {

std::unique_ptr<client::Client> ConnectClient(const std::string& master_address,
                                              const std::string& cluster_name) {
  client::ClientOptions options;
  options.master_addresses = {master_address};
  options.cluster_name = cluster_name;
  auto c = client::Client::Connect(options);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

::cellar::v1::GetClusterInfoResponse ClusterInfo(::cellar::v1::Master::StubInterface& master) {
  ::cellar::v1::GetClusterInfoResponse info;
  grpc::ClientContext context;
  common::SetDeadline(&context, absl::Seconds(10));
  grpc::Status s = master.GetClusterInfo(&context, ::cellar::v1::GetClusterInfoRequest(), &info);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return info;
}

}  // namespace cellar::testing_support
