#ifndef CELLAR_TESTS_INTEGRATION_CLUSTER_HELPERS_H_
#define CELLAR_TESTS_INTEGRATION_CLUSTER_HELPERS_H_

// Small helpers shared by the in-process cluster tests (testonly).

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/status/statusor.h"
#include "client/client.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/common/auth_tokens.h"
#include "services/common/authenticator.h"
#include "tests/integration/test_backends.h"
#include "tools/local/local_cluster.h"

namespace cellar::testing_support {

// Polls `pred` every 50 ms until it holds (true) or `timeout` passes
// (false).
template <typename Pred>
bool WaitFor(Pred pred, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!pred()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return true;
}

// Options for an in-process cluster of `storages` storages on `backends`
// with one replica (every partition on two storages), whose storages
// heartbeat every 500 ms and retry (50 ms) and poll (200 ms) replication
// quickly: what the tests of replication, checks and packs want. A test
// adds its own storage options by wrapping `storage_options`.
tools::LocalClusterOptions ReplicatedClusterOptions(const TestBackends& backends, int storages,
                                                    uint32_t partitions,
                                                    const std::string& cluster_name);

// A client of the cluster whose master is `master_address`; null (with a
// test failure recorded) if it cannot connect.
std::unique_ptr<client::Client> ConnectClient(const std::string& master_address,
                                              const std::string& cluster_name);

// Authentication for an in-process cluster: the tokens file at
// `tokens_file` (polled by hand: no reload thread) and `cluster_secret`
// as the node credential.
absl::StatusOr<common::AuthSetup> TestAuthSetup(const std::string& tokens_file,
                                                const std::string& cluster_secret);

// Writes a tokens file at `tokens_file` holding one new token per role
// (client, reader, readonly, admin) and then `extra_lines`; returns the bearer of
// each role, the node role's made from `cluster_secret`.
absl::StatusOr<std::map<common::Role, std::string>> WriteRoleTokens(
    const std::string& tokens_file, const std::string& cluster_secret,
    const std::string& extra_lines = "");

// Master.GetClusterInfo (10 s deadline); a failure is recorded as a test
// failure and an empty answer returned.
::cellar::v1::GetClusterInfoResponse ClusterInfo(::cellar::v1::Master::StubInterface& master);

// Master.ChangePartitionTable of `operation` on `node_ids` (30 s deadline),
// its error as a Status.
absl::StatusOr<::cellar::v1::ChangePartitionTableResponse> ChangePartitionTable(
    ::cellar::v1::Master::StubInterface& master, ::cellar::v1::PartitionTableOperation operation,
    const std::vector<uint32_t>& node_ids, std::optional<uint32_t> replicas = std::nullopt,
    bool dry_run = false);

}  // namespace cellar::testing_support

#endif  // CELLAR_TESTS_INTEGRATION_CLUSTER_HELPERS_H_
