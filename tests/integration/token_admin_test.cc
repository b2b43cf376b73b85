// Cluster tokens end to end (docs/security.md, "Cluster tokens"): a real
// master, two storages and an admin in process, each with its OWN
// Authenticator (as separate processes have), sharing only the tokens file
// and the cluster secret. A token created through Admin.CreateToken must
// work on every one of them without a restart, a revoked one must be
// refused by every one, the table must survive a master restart, and
// hostile requests must get the right codes.

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/auth_tokens.h"
#include "services/common/channel.h"
#include "services/common/logging.h"
#include "services/common/status_matchers.h"
#include "tests/integration/cluster_helpers.h"
#include "tools/local/local_cluster.h"

namespace cellar {
namespace {

using ::testing::HasSubstr;

constexpr char kSecret[] = "token-admin-test-cluster-secret-0123";
// How long a node may take to learn a table change (storages follow it
// with their heartbeats, every 200 ms here; the admin polls every second).
constexpr absl::Duration kBound = absl::Seconds(10);

class TokenAdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    common::SetMinLogSeverity(common::LogSeverity::kWarning);
    const std::string dir = absl::StrCat(
        ::testing::TempDir(), "/token_admin_test.", getpid(), ".",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    auto admin = common::MakeToken(common::Role::kAdmin, "file admin");
    auto readonly = common::MakeToken(common::Role::kReadonly, "file readonly");
    ASSERT_THAT(admin, common::IsOk());
    ASSERT_THAT(readonly, common::IsOk());
    admin_token_ = admin->token;
    readonly_token_ = readonly->token;
    file_readonly_id_ = common::ParseToken(readonly->token)->id;
    const std::string tokens_file = dir + ".tokens";
    std::ofstream(tokens_file) << admin->line << readonly->line;
    audit_file_ = dir + ".audit";

    tools::LocalClusterOptions options;
    options.data_dir = dir;
    options.storages = 2;
    options.replicas = 1;
    options.partitions = 2;
    const std::string audit = audit_file_;
    options.make_auth = [tokens_file, audit] {
      auto setup = testing_support::TestAuthSetup(tokens_file, kSecret);
      EXPECT_THAT(setup, common::IsOk());
      setup->audit_log_file = audit;
      return *std::move(setup);
    };
    options.storage_options = [](int, storage::StorageServerOptions* o) {
      o->heartbeat_interval = absl::Milliseconds(200);
    };
    auto cluster = tools::LocalCluster::Start(options);
    ASSERT_THAT(cluster, common::IsOk());
    cluster_ = *std::move(cluster);
  }

  void TearDown() override { cluster_.reset(); }

  std::unique_ptr<cellar::v1::Admin::Stub> Admin(const std::string& bearer) {
    return cellar::v1::Admin::NewStub(common::MakeChannel(cluster_->admin_address(), bearer));
  }

  grpc::Status Create(const std::string& bearer, const std::string& name,
                      cellar::v1::TokenRole role, cellar::v1::CreateTokenResponse* out) {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    cellar::v1::AdminCreateTokenRequest request;
    request.set_name(name);
    request.set_role(role);
    return Admin(bearer)->CreateToken(&context, request, out);
  }

  grpc::Status Revoke(const std::string& bearer, const std::string& id) {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    cellar::v1::AdminRevokeTokenRequest request;
    request.set_id(id);
    cellar::v1::RevokeTokenResponse response;
    return Admin(bearer)->RevokeToken(&context, request, &response);
  }

  cellar::v1::ListTokensResponse List() {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    cellar::v1::ListTokensResponse response;
    grpc::Status s =
        Admin(admin_token_)->ListTokens(&context, cellar::v1::AdminListTokensRequest(), &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  // A readonly rpc on each kind of process, as `bearer`: the master's
  // GetClusterInfo, storage i's GetNodeStatus, the admin's ListNodes.
  grpc::Status OnMaster(const std::string& bearer) {
    auto stub = cellar::v1::Master::NewStub(
        common::MakeChannel(cluster_->master_address(), bearer));
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    cellar::v1::GetClusterInfoResponse response;
    return stub->GetClusterInfo(&context, cellar::v1::GetClusterInfoRequest(), &response);
  }
  grpc::Status OnStorage(int i, const std::string& bearer) {
    auto stub = cellar::v1::Storage::NewStub(
        common::MakeChannel(cluster_->storage_address(i), bearer));
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    cellar::v1::GetNodeStatusResponse response;
    return stub->GetNodeStatus(&context, cellar::v1::GetNodeStatusRequest(), &response);
  }
  grpc::Status OnAdmin(const std::string& bearer) {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    cellar::v1::ListNodesResponse response;
    return Admin(bearer)->ListNodes(&context, cellar::v1::ListNodesRequest(), &response);
  }

  // Waits (bounded) until `bearer` gets `code` from the master, every
  // storage and the admin; fails the test naming the ones that did not.
  void ExpectEverywhere(const std::string& bearer, grpc::StatusCode code) {
    const absl::Time end = absl::Now() + kBound;
    while (true) {
      std::string wrong;
      auto check = [&](const std::string& where, const grpc::Status& s) {
        if (s.error_code() != code) {
          absl::StrAppend(&wrong, " ", where, ": ", s.error_code(), " ", s.error_message(), ";");
        }
      };
      check("master", OnMaster(bearer));
      for (int i = 0; i < cluster_->num_storages(); ++i) {
        check(absl::StrCat("storage ", i), OnStorage(i, bearer));
      }
      check("admin", OnAdmin(bearer));
      if (wrong.empty()) return;
      if (absl::Now() > end) {
        ADD_FAILURE() << "expected code " << code << " everywhere within "
                      << absl::FormatDuration(kBound) << "; got" << wrong;
        return;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  }

  std::unique_ptr<tools::LocalCluster> cluster_;
  std::string admin_token_;
  std::string readonly_token_;
  std::string file_readonly_id_;
  std::string audit_file_;
};

TEST_F(TokenAdminTest, ACreatedTokenWorksEverywhereAndARevokedOneIsRefusedEverywhere) {
  cellar::v1::CreateTokenResponse created;
  ASSERT_TRUE(Create(admin_token_, "dashboards", cellar::v1::TOKEN_ROLE_READONLY, &created).ok());
  ASSERT_THAT(common::ParseToken(created.token()), common::IsOk());
  EXPECT_EQ(created.info().name(), "dashboards");
  EXPECT_EQ(created.info().source(), cellar::v1::TOKEN_SOURCE_CLUSTER);
  EXPECT_FALSE(created.info().revoked());
  ExpectEverywhere(created.token(), grpc::StatusCode::OK);

  // Listed with the file's tokens; never with a secret.
  const cellar::v1::ListTokensResponse listed = List();
  bool found_cluster = false, found_file = false;
  for (const cellar::v1::TokenInfo& info : listed.tokens()) {
    found_cluster |= info.id() == created.info().id() &&
                     info.source() == cellar::v1::TOKEN_SOURCE_CLUSTER &&
                     info.role() == cellar::v1::TOKEN_ROLE_READONLY;
    found_file |= info.id() == file_readonly_id_ && info.source() == cellar::v1::TOKEN_SOURCE_FILE;
    EXPECT_EQ(info.DebugString().find(common::ParseToken(created.token())->secret),
              std::string::npos);
  }
  EXPECT_TRUE(found_cluster) << listed.DebugString();
  EXPECT_TRUE(found_file) << listed.DebugString();
  EXPECT_GT(listed.version(), 0u);

  ASSERT_TRUE(Revoke(admin_token_, created.info().id()).ok());
  ExpectEverywhere(created.token(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(OnMaster(created.token()).error_message(), HasSubstr("revoked"));
  // Idempotent; listed as revoked.
  EXPECT_TRUE(Revoke(admin_token_, created.info().id()).ok());
  const cellar::v1::ListTokensResponse after = List();
  for (const cellar::v1::TokenInfo& info : after.tokens()) {
    if (info.id() == created.info().id()) {
      EXPECT_TRUE(info.revoked());
    }
  }

  // Every call is audited on the admin, and the secret is in no line.
  std::ifstream in(audit_file_);
  std::stringstream audit;
  audit << in.rdbuf();
  EXPECT_THAT(audit.str(), HasSubstr("/cellar.v1.Admin/CreateToken"));
  EXPECT_THAT(audit.str(), HasSubstr("/cellar.v1.Admin/RevokeToken"));
  EXPECT_THAT(audit.str(), HasSubstr("/cellar.v1.Admin/ListTokens"));
  EXPECT_EQ(audit.str().find(common::ParseToken(created.token())->secret), std::string::npos);
}

TEST_F(TokenAdminTest, AnAdminTokenCreatedThroughTheApiCanAdministerTokens) {
  cellar::v1::CreateTokenResponse ops;
  ASSERT_TRUE(Create(admin_token_, "ops", cellar::v1::TOKEN_ROLE_ADMIN, &ops).ok());
  ExpectEverywhere(ops.token(), grpc::StatusCode::OK);
  cellar::v1::CreateTokenResponse app;
  ASSERT_TRUE(Create(ops.token(), "app", cellar::v1::TOKEN_ROLE_CLIENT, &app).ok());
  // A client token may not read the admin's node list.
  EXPECT_EQ(OnAdmin(app.token()).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Revoke(ops.token(), app.info().id()).ok());
}

// A reader cluster token (created through the API, not in the file): on
// every storage it loads but may not store, on the master it may not begin;
// it is listed with its role.
TEST_F(TokenAdminTest, ACreatedReaderTokenLoadsButNeverWritesOnEveryNode) {
  cellar::v1::CreateTokenResponse reports;
  ASSERT_TRUE(Create(admin_token_, "reports", cellar::v1::TOKEN_ROLE_READER, &reports).ok());
  EXPECT_EQ(reports.info().role(), cellar::v1::TOKEN_ROLE_READER);
  bool listed = false;
  const cellar::v1::ListTokensResponse tokens = List();
  for (const cellar::v1::TokenInfo& info : tokens.tokens()) {
    listed |= info.id() == reports.info().id() && info.role() == cellar::v1::TOKEN_ROLE_READER;
  }
  EXPECT_TRUE(listed);
  for (int i = 0; i < cluster_->num_storages(); ++i) {
    auto storage = cellar::v1::Storage::NewStub(
        common::MakeChannel(cluster_->storage_address(i), reports.token()));
    // Bounded: the storage learns the table with its heartbeats.
    grpc::Status load;
    for (const absl::Time end = absl::Now() + kBound; absl::Now() < end;) {
      grpc::ClientContext context;
      common::SetDeadline(&context, absl::Seconds(5));
      cellar::v1::LoadRequest request;
      request.set_oid(1);
      cellar::v1::LoadResponse response;
      load = storage->Load(&context, request, &response);
      if (load.error_code() != grpc::StatusCode::UNAUTHENTICATED) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    // Object 1 was never stored: NOT_FOUND (past the role check).
    EXPECT_NE(load.error_code(), grpc::StatusCode::UNAUTHENTICATED) << "storage " << i;
    EXPECT_NE(load.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << "storage " << i << ": " << load.error_message();
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    cellar::v1::StoreResponse stored;
    grpc::Status store = storage->Store(&context, cellar::v1::StoreRequest(), &stored);
    EXPECT_EQ(store.error_code(), grpc::StatusCode::PERMISSION_DENIED) << "storage " << i;
    EXPECT_THAT(store.error_message(), HasSubstr("needs role client"));
  }
  auto master = cellar::v1::Master::NewStub(
      common::MakeChannel(cluster_->master_address(), reports.token()));
  grpc::ClientContext context;
  common::SetDeadline(&context, absl::Seconds(5));
  cellar::v1::BeginResponse begun;
  grpc::Status begin = master->Begin(&context, cellar::v1::BeginRequest(), &begun);
  EXPECT_EQ(begin.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(begin.error_message(), HasSubstr("the caller has role reader"));
}

TEST_F(TokenAdminTest, HostileRequestsGetTheRightCodes) {
  cellar::v1::CreateTokenResponse out;
  EXPECT_EQ(Create(admin_token_, "x", cellar::v1::TOKEN_ROLE_UNSPECIFIED, &out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Create(admin_token_, "x", cellar::v1::TOKEN_ROLE_NODE, &out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Create(admin_token_, "x", static_cast<cellar::v1::TokenRole>(99), &out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Create(admin_token_, "", cellar::v1::TOKEN_ROLE_CLIENT, &out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Create(admin_token_, std::string(100000, 'n'), cellar::v1::TOKEN_ROLE_CLIENT, &out)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Create(admin_token_, "two\nlines", cellar::v1::TOKEN_ROLE_CLIENT, &out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // A readonly token cannot create (nor list or revoke).
  grpc::Status refused = Create(readonly_token_, "x", cellar::v1::TOKEN_ROLE_CLIENT, &out);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Revoke(readonly_token_, file_readonly_id_).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Revoke(admin_token_, "0badc0de").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Revoke(admin_token_, "").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Revoke(admin_token_, "../../x").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status file = Revoke(admin_token_, file_readonly_id_);
  EXPECT_EQ(file.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(file.error_message(), HasSubstr("tokens file"));
  // The master checks the same without the admin's help.
  auto master = cellar::v1::Master::NewStub(
      common::MakeChannel(cluster_->master_address(), admin_token_));
  for (cellar::v1::TokenRole role : {cellar::v1::TOKEN_ROLE_UNSPECIFIED,
                                     cellar::v1::TOKEN_ROLE_NODE}) {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    cellar::v1::CreateTokenRequest request;
    request.set_name("direct");
    request.set_role(role);
    cellar::v1::CreateTokenResponse response;
    EXPECT_EQ(master->CreateToken(&context, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  // Nothing was created.
  const cellar::v1::ListTokensResponse listed = List();
  for (const cellar::v1::TokenInfo& info : listed.tokens()) {
    EXPECT_EQ(info.source(), cellar::v1::TOKEN_SOURCE_FILE) << info.DebugString();
  }
  // The table with hashes is for nodes only.
  grpc::ClientContext context;
  common::SetDeadline(&context, absl::Seconds(5));
  cellar::v1::GetTokenTableResponse table;
  EXPECT_EQ(master->GetTokenTable(&context, cellar::v1::GetTokenTableRequest(), &table)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(TokenAdminTest, TheTableSurvivesAMasterRestart) {
  cellar::v1::CreateTokenResponse kept, revoked;
  ASSERT_TRUE(Create(admin_token_, "kept", cellar::v1::TOKEN_ROLE_READONLY, &kept).ok());
  ASSERT_TRUE(Create(admin_token_, "revoked", cellar::v1::TOKEN_ROLE_READONLY, &revoked).ok());
  ASSERT_TRUE(Revoke(admin_token_, revoked.info().id()).ok());
  ExpectEverywhere(kept.token(), grpc::StatusCode::OK);

  // A new master process: its Authenticator knows no cluster token until
  // it recovers the table from the storages.
  ASSERT_THAT(cluster_->RestartMaster(), common::IsOk());
  ExpectEverywhere(kept.token(), grpc::StatusCode::OK);
  ExpectEverywhere(revoked.token(), grpc::StatusCode::UNAUTHENTICATED);
  int cluster_tokens = 0;
  const cellar::v1::ListTokensResponse listed = List();
  for (const cellar::v1::TokenInfo& info : listed.tokens()) {
    if (info.source() != cellar::v1::TOKEN_SOURCE_CLUSTER) continue;
    ++cluster_tokens;
    EXPECT_EQ(info.revoked(), info.id() == revoked.info().id()) << info.DebugString();
  }
  EXPECT_EQ(cluster_tokens, 2);

  // Changes go on from the recovered version.
  ASSERT_TRUE(Revoke(admin_token_, kept.info().id()).ok());
  ExpectEverywhere(kept.token(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(TokenAdminTest, AStorageRestartedWhileATokenWasCreatedCatchesUp) {
  cluster_->StopStorage(1);
  cellar::v1::CreateTokenResponse created;
  ASSERT_TRUE(Create(admin_token_, "late", cellar::v1::TOKEN_ROLE_READONLY, &created).ok());
  ASSERT_THAT(cluster_->RestartStorage(1), common::IsOk());
  ExpectEverywhere(created.token(), grpc::StatusCode::OK);
}

}  // namespace
}  // namespace cellar
