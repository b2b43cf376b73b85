// A multi-process cluster (tools/cluster) started with TLS and mTLS: every
// process serves TLS with the harness's throwaway node certificate,
// verifies client certificates against the cluster CA, and dials the
// others over TLS presenting its certificate (docs/security.md, "TLS and
// mTLS"). What a cluster must do over TLS (register, replicate, commit,
// read, restart) works; what a stranger tries is refused.

#include <fcntl.h>
#include <stdio.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/clock.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/logging.h"
#include "services/common/status_matchers.h"
#include "services/common/tls_config.h"
#include "services/common/tls_files.h"
#include "tests/fault/fault_support.h"

namespace cellar::fault {
namespace {

using common::IsOk;

// A certificate of another CA (with the node identity: it must not help).
common::CertificateFiles StrangerCertificate(const std::string& dir) {
  auto ca = common::MakeCertificateAuthority(dir, "other-ca");
  EXPECT_THAT(ca, IsOk());
  auto cert = common::IssueCertificate(
      *ca, dir, "stranger",
      {"IP:127.0.0.1", absl::StrCat("URI:", common::kNodeIdentityUri)});
  EXPECT_THAT(cert, IsOk());
  return cert.ok() ? *cert : common::CertificateFiles{};
}

// Master.GetClusterInfo at `address` over a channel of its own.
grpc::Status ClusterInfo(const std::string& address, const common::ChannelSecurity& security) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto master = v1::Master::NewStub(common::MakeChannelWithArgs(address, args, security));
  grpc::ClientContext context;
  common::SetDeadline(&context, absl::Seconds(5));
  v1::GetClusterInfoResponse info;
  return master->GetClusterInfo(&context, {}, &info);
}

common::ChannelSecurity Security(const std::string& bearer,
                                 std::optional<common::TlsClientConfig> tls) {
  auto security = common::MakeChannelSecurity(bearer, tls);
  EXPECT_THAT(security, IsOk());
  return security.ok() ? *security : common::ChannelSecurity{};
}

// Two storages, 4 partitions, TLS; `auth` adds the cluster secret and
// tokens; `flag` (if not empty) is given to every process.
tools::ClusterTopology TlsTopology(bool auth, const std::string& flag = "") {
  common::SetMinLogSeverity(common::LogSeverity::kError);
  tools::ClusterTopology topology = DefaultTopology();
  topology.storages = 2;
  topology.partitions = 4;
  topology.auth = auth;
  topology.tls = true;
  if (!flag.empty()) {
    for (auto* flags : {&topology.master_flags, &topology.storage_flags, &topology.admin_flags}) {
      flags->push_back(flag);
    }
  }
  return topology;
}

// TLS with tokens and the cluster secret; client certificates optional.
TEST(TlsClusterTest, CommitsReadsAndReplicatesOverTlsAndRefusesStrangers) {
  tools::ClusterTopology topology = TlsTopology(/*auth=*/true);
  topology.replicas = 2;
  auto cluster = StartCluster("sqlite", topology);
  ASSERT_THAT(cluster, IsOk());
  tools::ProcessCluster& c = **cluster;
  ASSERT_TRUE(c.client_tls().has_value());

  // RUNNING (Up waited): storage -> master over TLS. A commit goes client
  // -> master -> storages (lock/unlock over TLS), client -> storages.
  auto client = Connect(c);
  ASSERT_THAT(client, IsOk());
  CommitLedger ledger;
  ASSERT_THAT(CommitFresh(**client, ledger, 10), IsOk()) << ledger.FailureSummary();
  {
    Reader reader(client->get(), &ledger);
    reader.Start();
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (reader.reads() < 20 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(50));
    reader.Stop();
    EXPECT_GE(reader.reads(), 20u);
    EXPECT_EQ(reader.failures(), 0u);
  }

  const std::string master = c.master_addresses().front();
  const std::string token = c.client_token();
  common::TlsClientConfig ca_only = *c.client_tls();
  ca_only.cert_file.clear();
  ca_only.key_file.clear();
  EXPECT_TRUE(ClusterInfo(master, Security(token, ca_only)).ok()) << "token, no certificate";
  // Plaintext: refused (the handshake fails).
  EXPECT_EQ(ClusterInfo(master, Security(token, std::nullopt)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // A client trusting another CA refuses the cluster's certificate.
  const common::CertificateFiles stranger = StrangerCertificate(c.dir());
  common::TlsClientConfig other_ca;
  other_ca.ca_file = c.dir() + "/other-ca.pem";
  EXPECT_EQ(ClusterInfo(master, Security(token, other_ca)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // A client certificate of another CA is refused, token or not.
  common::TlsClientConfig with_stranger = ca_only;
  with_stranger.cert_file = stranger.cert_file;
  with_stranger.key_file = stranger.key_file;
  EXPECT_EQ(ClusterInfo(master, Security(token, with_stranger)).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  // The admin (admin -> master over TLS) answers an admin token.
  v1::ListNodesResponse nodes;
  grpc::Status listed = AdminListNodes(
      c.address("A1"), Security(ReadTokenFile(c.dir() + "/admin.token"), ca_only), &nodes);
  EXPECT_TRUE(listed.ok()) << listed.error_message();
  EXPECT_GE(nodes.nodes_size(), 3);

  // A storage that missed commits catches up from its peer (storage ->
  // storage replication over TLS), with its TLS flags on restart.
  ASSERT_THAT(c.Kill("S1", SIGKILL), IsOk());
  ASSERT_THAT(CommitFresh(**client, ledger, 5), IsOk()) << ledger.FailureSummary();
  ASSERT_THAT(c.Restart("S1"), IsOk());
  ASSERT_THAT(WaitForAllCellsUpToDate(c, absl::Seconds(60)), IsOk());
  ASSERT_THAT(CommitFresh(**client, ledger, 5), IsOk()) << ledger.FailureSummary();
}

// mTLS without a cluster secret or tokens: the node certificate is the
// only node proof, and client certificates are required.
TEST(TlsClusterTest, NodeCertificatesAloneRunTheClusterAndClientCertificatesAreRequired) {
  // Up waits for RUNNING: the storages registered as nodes by certificate.
  auto cluster =
      StartCluster("sqlite", TlsTopology(/*auth=*/false, "--tls_require_client_cert"));
  ASSERT_THAT(cluster, IsOk());
  tools::ProcessCluster& c = **cluster;
  ASSERT_TRUE(c.client_token().empty());
  const std::string master = c.master_addresses().front();

  common::TlsClientConfig node = *c.client_tls();
  node.cert_file = c.dir() + "/tls/node.pem";
  node.key_file = c.dir() + "/tls/node.key";
  EXPECT_TRUE(ClusterInfo(master, Security("", node)).ok());
  // A certificate of the cluster CA without the node identity: no role.
  EXPECT_EQ(ClusterInfo(master, Security("", c.client_tls())).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // No certificate: refused in the handshake.
  common::TlsClientConfig ca_only = node;
  ca_only.cert_file.clear();
  ca_only.key_file.clear();
  EXPECT_EQ(ClusterInfo(master, Security("", ca_only)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // Another CA's certificate, node identity and all: refused.
  const common::CertificateFiles stranger = StrangerCertificate(c.dir());
  common::TlsClientConfig with_stranger = ca_only;
  with_stranger.cert_file = stranger.cert_file;
  with_stranger.key_file = stranger.key_file;
  EXPECT_EQ(ClusterInfo(master, Security("", with_stranger)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // And on a storage's port too.
  EXPECT_EQ(ClusterInfo(c.address("S1"), Security("", with_stranger)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

// Makes <cluster_dir>/tls hold `files` (name -> source path), in one
// step: a new directory swapped with the old one (renameat2 exchange), so
// that no process reads a new key with an old certificate.
absl::Status SwapTlsDir(const std::string& cluster_dir,
                        const std::map<std::string, std::string>& files) {
  const std::string next = cluster_dir + "/tls.next";
  std::error_code error;
  std::filesystem::remove_all(next, error);
  std::filesystem::create_directories(next, error);
  for (const auto& [name, source] : files) {
    if (!std::filesystem::copy_file(source, next + "/" + name, error)) {
      return absl::InternalError(absl::StrCat("copy ", source, ": ", error.message()));
    }
  }
  if (renameat2(AT_FDCWD, next.c_str(), AT_FDCWD, (cluster_dir + "/tls").c_str(),
                RENAME_EXCHANGE) != 0) {
    return absl::InternalError(absl::StrCat("renameat2: ", strerror(errno)));
  }
  return absl::OkStatus();
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::stringstream contents;
  contents << std::ifstream(path).rdbuf();
  return contents.str();
}

// The CA change of docs/security.md ("Rotation"), on a live cluster and
// without restarts: a bundle of both CAs everywhere, then certificates of
// the new CA. New connections get the new certificates; old connections
// keep working; a restarted storage joins with its new certificate.
TEST(TlsClusterTest, ACaChangeIsPickedUpWithoutRestarts) {
  auto cluster = StartCluster("sqlite", TlsTopology(/*auth=*/true, "--tls_reload_interval=1s"));
  ASSERT_THAT(cluster, IsOk());
  tools::ProcessCluster& c = **cluster;
  auto client = Connect(c);
  ASSERT_THAT(client, IsOk());
  CommitLedger ledger;
  ASSERT_THAT(CommitFresh(**client, ledger, 5), IsOk()) << ledger.FailureSummary();

  const std::string tls = c.dir() + "/tls";
  const std::string next = c.dir() + "/ca2";
  std::filesystem::create_directories(next);
  auto ca2 = common::MakeCertificateAuthority(next, "ca");
  ASSERT_THAT(ca2, IsOk());
  auto node2 = common::IssueCertificate(
      *ca2, next, "node",
      {"IP:127.0.0.1", "DNS:localhost", absl::StrCat("URI:", common::kNodeIdentityUri)});
  ASSERT_THAT(node2, IsOk());
  auto client2 = common::IssueCertificate(*ca2, next, "client", {"DNS:cellar-client"});
  ASSERT_THAT(client2, IsOk());
  const std::string old_ca = next + "/old-ca.pem";
  std::ofstream(old_ca) << ReadFileOrEmpty(tls + "/ca.pem");
  const std::string bundle = next + "/bundle.pem";
  std::ofstream(bundle) << ReadFileOrEmpty(old_ca) << ReadFileOrEmpty(ca2->cert_file);

  // 1: every process trusts both CAs; 2: certificates of the new CA.
  ASSERT_THAT(SwapTlsDir(c.dir(), {{"ca.pem", bundle},
                                   {"node.pem", tls + "/node.pem"},
                                   {"node.key", tls + "/node.key"},
                                   {"client.pem", tls + "/client.pem"},
                                   {"client.key", tls + "/client.key"}}),
              IsOk());
  absl::SleepFor(absl::Seconds(3));  // > the reload interval (1 s)
  ASSERT_THAT(SwapTlsDir(c.dir(), {{"ca.pem", bundle},
                                   {"node.pem", node2->cert_file},
                                   {"node.key", node2->key_file},
                                   {"client.pem", client2->cert_file},
                                   {"client.key", client2->key_file}}),
              IsOk());

  const std::string master = c.master_addresses().front();
  common::TlsClientConfig new_only;
  new_only.ca_file = ca2->cert_file;
  const common::ChannelSecurity trusts_new = Security(c.client_token(), new_only);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!ClusterInfo(master, trusts_new).ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_TRUE(ClusterInfo(master, trusts_new).ok()) << "the master serves the new certificate";
  common::TlsClientConfig old_only;
  old_only.ca_file = old_ca;
  EXPECT_EQ(ClusterInfo(master, Security(c.client_token(), old_only)).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  // Established connections keep working; a restarted storage registers
  // and is dialled with the new certificates.
  ASSERT_THAT(CommitFresh(**client, ledger, 5), IsOk()) << ledger.FailureSummary();
  ASSERT_THAT(c.Restart("S1"), IsOk());
  ASSERT_THAT(c.WaitForClusterState(v1::CLUSTER_RUNNING, absl::Seconds(60)), IsOk());
  auto fresh = Connect(c);
  ASSERT_THAT(fresh, IsOk());
  ASSERT_THAT(CommitFresh(**fresh, ledger, 10), IsOk()) << ledger.FailureSummary();
}

}  // namespace
}  // namespace cellar::fault
