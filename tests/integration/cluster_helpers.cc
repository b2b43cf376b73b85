#include "tests/integration/cluster_helpers.h"

#include <gtest/gtest.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "services/common/channel.h"
#include "services/common/grpc_status.h"

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

absl::StatusOr<::cellar::v1::ChangePartitionTableResponse> ChangePartitionTable(
    ::cellar::v1::Master::StubInterface& master, ::cellar::v1::PartitionTableOperation operation,
    const std::vector<uint32_t>& node_ids, std::optional<uint32_t> replicas, bool dry_run) {
  ::cellar::v1::ChangePartitionTableRequest request;
  request.set_operation(operation);
  for (uint32_t id : node_ids) request.add_node_ids(id);
  if (replicas.has_value()) request.set_replicas(*replicas);
  request.set_dry_run(dry_run);
  ::cellar::v1::ChangePartitionTableResponse response;
  grpc::ClientContext context;
  common::SetDeadline(&context, absl::Seconds(30));
  grpc::Status s = master.ChangePartitionTable(&context, request, &response);
  if (!s.ok()) return common::FromGrpcStatus(s);
  return response;
}

absl::StatusOr<common::AuthSetup> TestAuthSetup(const std::string& tokens_file,
                                                const std::string& cluster_secret) {
  common::AuthenticatorOptions options;
  options.tokens_file = tokens_file;
  options.cluster_secret = cluster_secret;
  options.reload_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<common::Authenticator>> authenticator =
      common::Authenticator::Create(options);
  if (!authenticator.ok()) return authenticator.status();
  common::AuthSetup setup;
  setup.authenticator = *std::move(authenticator);
  setup.node_bearer = common::NodeBearer(cluster_secret);
  return setup;
}

absl::StatusOr<std::map<common::Role, std::string>> WriteRoleTokens(
    const std::string& tokens_file, const std::string& cluster_secret,
    const std::string& extra_lines) {
  std::map<common::Role, std::string> bearers;
  std::string file = "# test tokens\n";
  for (common::Role role :
       {common::Role::kClient, common::Role::kReader, common::Role::kReadonly,
        common::Role::kAdmin}) {
    auto made = common::MakeToken(role, absl::StrCat("test ", common::RoleName(role)));
    if (!made.ok()) return made.status();
    bearers[role] = made->token;
    file += made->line;
  }
  bearers[common::Role::kNode] = common::NodeBearer(cluster_secret);
  std::ofstream(tokens_file) << file << extra_lines;
  return bearers;
}

tools::LocalClusterOptions ReplicatedClusterOptions(const TestBackends& backends, int storages,
                                                    uint32_t partitions,
                                                    const std::string& cluster_name) {
  tools::LocalClusterOptions options;
  options.storages = storages;
  options.replicas = 1;
  options.partitions = partitions;
  options.cluster_name = cluster_name;
  options.storage_backends = backends.uris();
  options.storage_options = [](int, storage::StorageServerOptions* o) {
    o->heartbeat_interval = absl::Milliseconds(500);
    o->replication.retry_delay = absl::Milliseconds(50);
    o->replication.poll_interval = absl::Milliseconds(200);
  };
  return options;
}

}  // namespace cellar::testing_support
