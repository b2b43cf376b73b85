// Version quarantine end to end (docs/rollouts.md, "Version registry and
// quarantine"): a real master, three storages (two on the stable version,
// one canary) and an admin in process. The canary storage restarted in a
// crash loop gets its version quarantined automatically: ListVersions says
// so, the master's cellar_version_quarantined metric (what the alert
// CellarVersionQuarantined reads) flips to 1, and the node is marked for
// clients. Lifting it through the admin flips the metric back.

#include <unistd.h>

#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/grpc_status.h"
#include "services/common/http_get.h"
#include "services/common/logging.h"
#include "services/common/status_matchers.h"
#include "tests/integration/cluster_helpers.h"
#include "tools/local/local_cluster.h"

namespace cellar {
namespace {

using ::testing::HasSubstr;
namespace v1 = ::cellar::v1;

constexpr int kCanary = 2;  // storage index

class VersionQuarantineClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    common::SetMinLogSeverity(common::LogSeverity::kWarning);
    tools::LocalClusterOptions options;
    options.data_dir = absl::StrCat(::testing::TempDir(), "/version_quarantine_test.", getpid());
    options.storages = 3;
    options.replicas = 1;
    options.partitions = 3;
    options.master_metrics_listen = "127.0.0.1:0";
    options.storage_options = [](int i, storage::StorageServerOptions* o) {
      if (i == kCanary) {
        o->version = "0.2.0";
        o->track = "canary";
      }
    };
    options.master_options = [](master::MasterServerOptions* o) {
      o->cluster.quarantine.restarts = 2;
      o->cluster.quarantine.downs = 0;
    };
    auto cluster = tools::LocalCluster::Start(options);
    ASSERT_THAT(cluster, common::IsOk());
    cluster_ = *std::move(cluster);
    admin_ = v1::Admin::NewStub(common::MakeChannel(cluster_->admin_address()));
  }

  void TearDown() override { cluster_.reset(); }

  // The master's /metrics line of the canary's quarantine ("" if absent).
  std::string QuarantineMetric() {
    const common::HttpAnswer answer = common::HttpGet(
        absl::StrCat("http://127.0.0.1:", cluster_->master_metrics_port(), "/metrics"));
    EXPECT_EQ(answer.status, 200) << answer.error;
    for (absl::string_view line : absl::StrSplit(answer.body, '\n')) {
      if (absl::StartsWith(line, "cellar_version_quarantined{") &&
          absl::StrContains(line, "track=\"canary\"") &&
          absl::StrContains(line, "version=\"0.2.0\"")) {
        return std::string(line);
      }
    }
    return "";
  }

  v1::ListVersionsResponse List() {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(20));
    v1::ListVersionsResponse response;
    const grpc::Status s =
        admin_->ListVersions(&context, v1::AdminListVersionsRequest(), &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  bool CanaryQuarantined() {
    const v1::ListVersionsResponse list = List();
    for (const v1::VersionInfo& v : list.versions()) {
      if (v.version() == "0.2.0" && v.track() == "canary") return v.quarantined();
    }
    return false;
  }

  // Admin.UnquarantineVersion of the canary; it must change something.
  void LiftCanary() {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(20));
    v1::AdminQuarantineVersionRequest request;
    request.set_version("0.2.0");
    request.set_track("canary");
    request.set_reason("fixed in 0.2.1");
    v1::QuarantineVersionResponse response;
    ASSERT_TRUE(admin_->UnquarantineVersion(&context, request, &response).ok());
    EXPECT_TRUE(response.changed());
  }

  std::unique_ptr<tools::LocalCluster> cluster_;
  std::unique_ptr<v1::Admin::Stub> admin_;
};

TEST_F(VersionQuarantineClusterTest, ACrashLoopQuarantinesTheVersionAndFlipsTheAlertMetric) {
  EXPECT_THAT(QuarantineMetric(), ::testing::EndsWith(" 0"));
  EXPECT_FALSE(CanaryQuarantined());
  // A restart of a stable storage counts for the stable version only.
  ASSERT_THAT(cluster_->RestartStorage(0), common::IsOk());
  for (int i = 0; i < 2; ++i) ASSERT_THAT(cluster_->RestartStorage(kCanary), common::IsOk());
  ASSERT_TRUE(testing_support::WaitFor([&] { return CanaryQuarantined(); }, absl::Seconds(10)))
      << "the canary was never quarantined";
  EXPECT_THAT(QuarantineMetric(), ::testing::EndsWith(" 1"));
  const v1::ListVersionsResponse versions = List();
  ASSERT_GT(versions.history_size(), 0);
  EXPECT_EQ(versions.history(versions.history_size() - 1).by(), "auto");
  EXPECT_THAT(versions.history(versions.history_size() - 1).reason(),
              HasSubstr("restarted 2 times"));
  // Clients see the node marked.
  auto master = v1::Master::NewStub(common::MakeChannel(cluster_->master_address()));
  bool marked = false;
  const v1::GetClusterInfoResponse info = testing_support::ClusterInfo(*master);
  for (const v1::NodeInfo& n : info.nodes()) {
    if (n.node_id() == cluster_->storage_node_id(kCanary)) marked = n.quarantined();
  }
  EXPECT_TRUE(marked);

  // Lifted by hand through the admin: the metric flips back.
  ASSERT_NO_FATAL_FAILURE(LiftCanary());
  EXPECT_FALSE(CanaryQuarantined());
  EXPECT_THAT(QuarantineMetric(), ::testing::EndsWith(" 0"));
}

TEST_F(VersionQuarantineClusterTest, QuarantinesSurviveAChangeOfPrimary) {
  // An automatic quarantine (a crash loop)...
  for (int i = 0; i < 2; ++i) ASSERT_THAT(cluster_->RestartStorage(kCanary), common::IsOk());
  ASSERT_TRUE(testing_support::WaitFor([&] { return CanaryQuarantined(); }, absl::Seconds(10)))
      << "the canary was never quarantined";
  // ...is persisted with the feature flags on the storages (the flag
  // table's version rises), then a new primary process takes over.
  auto flags_version = [&] {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(20));
    v1::ListFeatureFlagsResponse response;
    EXPECT_TRUE(
        admin_->ListFeatureFlags(&context, v1::AdminListFeatureFlagsRequest(), &response).ok());
    return response.version();
  };
  ASSERT_TRUE(testing_support::WaitFor([&] { return flags_version() > 0; }, absl::Seconds(10)))
      << "the quarantine was never persisted";
  ASSERT_THAT(cluster_->RestartMaster(), common::IsOk());
  ASSERT_TRUE(testing_support::WaitFor([&] { return CanaryQuarantined(); }, absl::Seconds(10)))
      << "the new primary forgot the quarantine";
  v1::ListVersionsResponse versions = List();
  for (const v1::VersionInfo& v : versions.versions()) {
    if (v.version() != "0.2.0") continue;
    EXPECT_EQ(v.quarantined_by(), "auto");
    EXPECT_THAT(v.reason(), HasSubstr("restarted 2 times"));
  }
  ASSERT_GT(versions.history_size(), 0);
  EXPECT_THAT(versions.history(versions.history_size() - 1).reason(), HasSubstr("restored: "));

  // Lifted by hand, then another new primary: it stays lifted.
  ASSERT_NO_FATAL_FAILURE(LiftCanary());
  ASSERT_THAT(cluster_->RestartMaster(), common::IsOk());
  ASSERT_TRUE(testing_support::WaitFor(
      [&] {
        const v1::ListVersionsResponse now = List();
        for (const v1::VersionInfo& v : now.versions()) {
          if (v.version() == "0.2.0") return true;  // the canary registered again
        }
        return false;
      },
      absl::Seconds(10)));
  EXPECT_FALSE(CanaryQuarantined());
}

}  // namespace
}  // namespace cellar
