// Feature flags end to end (docs/rollouts.md, "Feature flags"): a real
// master, two storages and an admin in process. A flag set through
// Admin.SetFeatureFlag reaches a connected client over Watch without
// polling, survives a master restart (the new master adopts the table the
// storages persisted), a deletion does too, and initial flags never
// overwrite an operator's change.

#include <unistd.h>

#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <sqlite3.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/feature_flags.h"
#include "services/common/grpc_status.h"
#include "services/common/logging.h"
#include "services/common/status_matchers.h"
#include "services/master/flag_registry.h"
#include "tests/integration/cluster_helpers.h"
#include "tools/local/local_cluster.h"

namespace cellar {
namespace {

using ::testing::HasSubstr;
namespace v1 = ::cellar::v1;

// How long a connected node may take to see a change pushed over Watch.
constexpr absl::Duration kBound = absl::Seconds(10);
constexpr char kFlag[] = "read.new_path";

class FeatureFlagsTest : public ::testing::Test {
 protected:
  void Start(const std::string& initial_json = "") {
    common::SetMinLogSeverity(common::LogSeverity::kWarning);
    tools::LocalClusterOptions options;
    data_dir_ = absl::StrCat(
        ::testing::TempDir(), "/feature_flags_test.", getpid(), ".",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    options.data_dir = data_dir_;
    options.storages = 2;
    options.replicas = 1;
    options.partitions = 2;
    auto initial = master::ParseInitialFeatureFlags(initial_json);
    ASSERT_THAT(initial, common::IsOk());
    options.master_options = [flags = *initial](master::MasterServerOptions* o) {
      o->initial_feature_flags = flags;
    };
    auto cluster = tools::LocalCluster::Start(options);
    ASSERT_THAT(cluster, common::IsOk());
    cluster_ = *std::move(cluster);
    admin_ = v1::Admin::NewStub(common::MakeChannel(cluster_->admin_address()));
  }

  void TearDown() override { cluster_.reset(); }

  absl::Status Set(const v1::AdminSetFeatureFlagRequest& request,
                   v1::SetFeatureFlagResponse* response = nullptr) {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(20));
    v1::SetFeatureFlagResponse local;
    return common::FromGrpcStatus(
        admin_->SetFeatureFlag(&context, request, response ? response : &local));
  }

  absl::Status SetBool(const std::string& name, bool value, const std::string& description = "",
                       const std::string& owner = "") {
    v1::AdminSetFeatureFlagRequest r;
    r.set_name(name);
    r.set_bool_value(value);
    r.set_description(description);
    r.set_owner(owner);
    return Set(r);
  }

  absl::Status Delete(const std::string& name) {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(20));
    v1::AdminDeleteFeatureFlagRequest r;
    r.set_name(name);
    v1::DeleteFeatureFlagResponse response;
    return common::FromGrpcStatus(admin_->DeleteFeatureFlag(&context, r, &response));
  }

  v1::ListFeatureFlagsResponse List() {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(20));
    v1::ListFeatureFlagsResponse response;
    const grpc::Status s =
        admin_->ListFeatureFlags(&context, v1::AdminListFeatureFlagsRequest(), &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  std::string data_dir_;
  std::unique_ptr<tools::LocalCluster> cluster_;
  std::unique_ptr<v1::Admin::Stub> admin_;
};

TEST_F(FeatureFlagsTest, AChangeIsPushedToConnectedNodesWithoutPolling) {
  ASSERT_NO_FATAL_FAILURE(Start());
  std::unique_ptr<client::Client> client =
      testing_support::ConnectClient(cluster_->master_address(), "cellar");
  ASSERT_NE(client, nullptr);
  EXPECT_FALSE(client->feature_flags().GetBool(kFlag, false));

  ASSERT_THAT(SetBool(kFlag, true, "reads take the new path", "team-read"), common::IsOk());
  EXPECT_TRUE(testing_support::WaitFor(
      [&] { return client->feature_flags().GetBool(kFlag, false); }, kBound))
      << "the client never saw the flag turn on";
  ASSERT_THAT(SetBool(kFlag, false), common::IsOk());
  EXPECT_TRUE(testing_support::WaitFor(
      [&] { return !client->feature_flags().GetBool(kFlag, true); }, kBound))
      << "the client never saw the flag turn off";
  ASSERT_THAT(Delete(kFlag), common::IsOk());
  EXPECT_TRUE(testing_support::WaitFor(
      [&] { return client->feature_flags().GetBool(kFlag, true); }, kBound))
      << "the client still holds a deleted flag";
}

// The real flag end to end: storage.verify_checksum_on_load set through
// the admin changes a running storage's read path (no restart).
TEST_F(FeatureFlagsTest, TheVerifyChecksumFlagTakesEffectOnARunningStorage) {
  ASSERT_NO_FATAL_FAILURE(Start());
  std::unique_ptr<client::Client> client =
      testing_support::ConnectClient(cluster_->master_address(), "cellar");
  ASSERT_NE(client, nullptr);
  auto oid = client->NewOid();
  ASSERT_THAT(oid, common::IsOk());
  auto txn = client->NewTransaction();
  txn->Store(*oid, 0, "good bytes");
  auto tid = txn->Commit();
  ASSERT_THAT(tid, common::IsOk());
  // Both storages hold every partition (replicas 1): corrupt storage 0's copy.
  {
    sqlite3* db = nullptr;
    const std::string path = absl::StrCat(data_dir_, "/storage-0.db");
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    const std::string sql = absl::StrCat(
        "UPDATE data SET data = CAST('evil bytes' AS BLOB) "
        "WHERE id = (SELECT data_id FROM obj WHERE oid = ", *oid, ")");
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  auto storage = v1::Storage::NewStub(common::MakeChannel(cluster_->storage_address(0)));
  auto load = [&] {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(20));
    v1::LoadRequest request;
    request.set_oid(*oid);
    request.set_before_tid(*tid + 1);
    v1::LoadResponse response;
    return common::FromGrpcStatus(storage->Load(&context, request, &response));
  };
  EXPECT_THAT(load(), common::IsOk()) << "flag off: the storage serves what it stores";
  ASSERT_THAT(SetBool(common::kVerifyChecksumOnLoadFlag, true, "checksums on load", "ops"),
              common::IsOk());
  // The admin's answer comes after the storages persisted (and applied) it.
  EXPECT_THAT(load(), common::StatusIs(absl::StatusCode::kDataLoss, HasSubstr("checksum")));
}

TEST_F(FeatureFlagsTest, FlagsAndDeletionsSurviveAMasterRestart) {
  ASSERT_NO_FATAL_FAILURE(Start());
  ASSERT_THAT(SetBool(kFlag, true, "reads take the new path", "team-read"), common::IsOk());
  ASSERT_THAT(SetBool("gone.soon", true, "deleted below", "team-read"), common::IsOk());
  ASSERT_THAT(Delete("gone.soon"), common::IsOk());
  const v1::ListFeatureFlagsResponse before = List();
  ASSERT_EQ(before.flags_size(), 1);

  // A new master process knows no flag until the storages report theirs.
  ASSERT_THAT(cluster_->RestartMaster(), common::IsOk());
  const v1::ListFeatureFlagsResponse after = List();
  ASSERT_EQ(after.flags_size(), 1) << after.DebugString();
  EXPECT_EQ(after.flags(0).name(), kFlag);
  EXPECT_TRUE(after.flags(0).bool_value());
  EXPECT_EQ(after.flags(0).owner(), "team-read");
  EXPECT_EQ(after.flags(0).created_unix_ms(), before.flags(0).created_unix_ms());
  EXPECT_EQ(after.version(), before.version());

  // Changes go on from the recovered version.
  v1::SetFeatureFlagResponse changed;
  v1::AdminSetFeatureFlagRequest off;
  off.set_name(kFlag);
  off.set_bool_value(false);
  ASSERT_THAT(Set(off, &changed), common::IsOk());
  EXPECT_EQ(changed.version(), before.version() + 1);
  EXPECT_EQ(changed.flag().description(), "reads take the new path") << "kept on update";
}

TEST_F(FeatureFlagsTest, InitialFlagsAreCreatedOnlyWhenAbsent) {
  const std::string initial = absl::StrCat(
      R"({"flags":[{"name":")", kFlag,
      R"(","boolValue":true,"owner":"helm","description":"from values.yaml"}]})");
  ASSERT_NO_FATAL_FAILURE(Start(initial));
  ASSERT_TRUE(testing_support::WaitFor([&] { return List().flags_size() == 1; }, kBound))
      << "the initial flag was not created";
  // The operator turns it off; a restart with the same initial flags
  // (a `helm upgrade`) must not turn it back on.
  ASSERT_THAT(SetBool(kFlag, false), common::IsOk());
  ASSERT_THAT(cluster_->RestartMaster(), common::IsOk());
  absl::SleepFor(absl::Seconds(1));  // the seeder polls every 200 ms
  const v1::ListFeatureFlagsResponse listed = List();
  ASSERT_EQ(listed.flags_size(), 1);
  EXPECT_FALSE(listed.flags(0).bool_value()) << "an initial flag overwrote the operator's change";
  EXPECT_EQ(listed.flags(0).owner(), "helm");
}

TEST_F(FeatureFlagsTest, HostileRequestsGetTheRightCodes) {
  ASSERT_NO_FATAL_FAILURE(Start());
  EXPECT_THAT(Set(v1::AdminSetFeatureFlagRequest()),
              common::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  v1::AdminSetFeatureFlagRequest no_value;
  no_value.set_name(kFlag);
  EXPECT_THAT(Set(no_value),
              common::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("value")));
  EXPECT_THAT(SetBool(kFlag, true),
              common::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("description")));
  EXPECT_THAT(Delete(""),
              common::StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
  EXPECT_THAT(Delete("no.such.flag"), common::StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(List().flags_size(), 0);
}

}  // namespace
}  // namespace cellar
