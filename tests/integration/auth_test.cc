// Authentication on every gRPC port, end to end: a real master, storage and
// admin (in-process, real gRPC servers on port 0) with a tokens file and a
// cluster secret. Walks EVERY rpc of every cellar service, from the
// generated service descriptors, with no credentials, with each role the
// table refuses, and with one role it allows.

#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/auth_policy.h"
#include "services/common/auth_tokens.h"
#include "services/common/authenticator.h"
#include "services/common/channel.h"
#include "services/common/logging.h"
#include "services/common/raw_call.h"
#include "services/common/status_matchers.h"
#include "services/storage/backend/backend_uri.h"
#include "tests/integration/cluster_helpers.h"
#include "tools/local/local_cluster.h"

namespace cellar {
namespace {

using ::testing::HasSubstr;

constexpr char kSecret[] = "auth-test-cluster-secret-0123456789";
const common::Role kAllRoles[] = {common::Role::kClient, common::Role::kReader,
                                  common::Role::kReadonly, common::Role::kAdmin,
                                  common::Role::kNode};

class AuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    common::SetMinLogSeverity(common::LogSeverity::kWarning);
    const std::string dir = absl::StrCat(::testing::TempDir(), "/auth_test.", getpid());
    auto other = common::MakeToken(common::Role::kClient, "test another client");
    ASSERT_THAT(other, common::IsOk());
    other_client_token_ = new std::string(other->token);
    tokens_file_ = new std::string(dir + ".tokens");
    auto tokens = testing_support::WriteRoleTokens(*tokens_file_, kSecret, other->line);
    ASSERT_THAT(tokens, common::IsOk());
    tokens_ = new std::map<common::Role, std::string>(*std::move(tokens));

    auto auth = testing_support::TestAuthSetup(*tokens_file_, kSecret);
    ASSERT_THAT(auth, common::IsOk());

    tools::LocalClusterOptions options;
    options.data_dir = dir;
    options.storages = 1;
    options.replicas = 0;
    options.partitions = 2;
    options.auth = *std::move(auth);
    audit_file_ = new std::string(dir + ".audit");
    options.auth.audit_log_file = *audit_file_;
    auto cluster = tools::LocalCluster::Start(options);
    ASSERT_THAT(cluster, common::IsOk());
    cluster_ = cluster->release();
  }

  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  // Calls `path` on `address` with an empty (or minimal) request, as
  // `bearer` ("" = no credentials), and returns the status.
  // (A server stream let through is OK at its first message.)
  static grpc::Status Call(const std::string& address,
                           const google::protobuf::MethodDescriptor& method,
                           const std::string& bearer) {
    auto channel = common::MakeChannel(address, bearer);
    const std::string path =
        absl::StrCat("/", method.service()->full_name(), "/", method.name());
    return common::RawBytesCall(channel.get(), method, MinimalRequest(path),
                                absl::Seconds(10));
  }

  // Empty, except where an empty request would be refused by the handler
  // with PERMISSION_DENIED for a reason other than the role table.
  static std::string MinimalRequest(const std::string& path) {
    if (path != "/cellar.v1.Master/RegisterNode") return "";
    cellar::v1::RegisterNodeRequest request;
    request.set_role(cellar::v1::NODE_ROLE_CLIENT);  // other roles need node
    return request.SerializeAsString();
  }

  static std::string AddressOf(const google::protobuf::ServiceDescriptor& service) {
    if (service.name() == "Master") return cluster_->master_address();
    if (service.name() == "Storage") return cluster_->storage_address(0);
    return cluster_->admin_address();
  }

  static const google::protobuf::ServiceDescriptor* Service(const char* full_name) {
    return google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(full_name);
  }

  static std::vector<const google::protobuf::MethodDescriptor*> AllMethods() {
    std::vector<const google::protobuf::MethodDescriptor*> methods;
    for (const auto* service : {Service(cellar::v1::Master::service_full_name()),
                                Service(cellar::v1::Storage::service_full_name()),
                                Service(cellar::v1::Admin::service_full_name())}) {
      for (int i = 0; i < service->method_count(); ++i) methods.push_back(service->method(i));
    }
    return methods;
  }

  static bool IsAuthRefusal(const grpc::Status& s) {
    return s.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
           s.error_code() == grpc::StatusCode::PERMISSION_DENIED;
  }

  static tools::LocalCluster* cluster_;
  static std::map<common::Role, std::string>* tokens_;
  static std::string* tokens_file_;
  static std::string* other_client_token_;
  static std::string* audit_file_;
};

tools::LocalCluster* AuthTest::cluster_ = nullptr;
std::map<common::Role, std::string>* AuthTest::tokens_ = nullptr;
std::string* AuthTest::tokens_file_ = nullptr;
std::string* AuthTest::other_client_token_ = nullptr;
std::string* AuthTest::audit_file_ = nullptr;

TEST_F(AuthTest, EveryRpcRefusesCallersWithoutCredentials) {
  for (const auto* method : AllMethods()) {
    grpc::Status s = Call(AddressOf(*method->service()), *method, "");
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << method->full_name() << ": " << s.error_message();
  }
  // A token that is not in the file, and another cluster's secret.
  const auto* begin = Service(cellar::v1::Master::service_full_name())->FindMethodByName("Begin");
  EXPECT_EQ(Call(cluster_->master_address(), *begin,
                 "cellar_00000000_" + std::string(64, '0')).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Call(cluster_->master_address(), *begin,
                 common::NodeBearer("another-cluster-secret-xyz")).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AuthTest, EveryRpcRefusesEachRoleTheTableDoesNotAllow) {
  int refused = 0;
  for (const auto* method : AllMethods()) {
    const std::string path =
        absl::StrCat("/", method->service()->full_name(), "/", method->name());
    const common::RoleSet allowed = common::MethodRoles().at(path);
    for (common::Role role : kAllRoles) {
      if (common::HasRole(role, allowed)) continue;
      grpc::Status s = Call(AddressOf(*method->service()), *method, tokens_->at(role));
      EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
          << path << " as " << common::RoleName(role) << ": " << s.error_message();
      EXPECT_THAT(s.error_message(), HasSubstr("needs role")) << path;
      ++refused;
    }
  }
  EXPECT_GT(refused, 50);
}

TEST_F(AuthTest, HealthNeedsNoCredentials) {
  for (const std::string& address : {cluster_->master_address(), cluster_->storage_address(0),
                                     cluster_->admin_address()}) {
    auto stub = grpc::health::v1::Health::NewStub(common::MakeChannel(address));
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status s = stub->Check(&context, request, &response);
    EXPECT_TRUE(s.ok()) << address << ": " << s.error_message();
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING) << address;
  }
}

TEST_F(AuthTest, OnlyTheClusterSecretRegistersAStorage) {
  auto register_as = [](const std::string& bearer) {
    auto stub = cellar::v1::Master::NewStub(
        common::MakeChannel(cluster_->master_address(), bearer));
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    cellar::v1::RegisterNodeRequest request;
    request.set_cluster_name("cellar");
    request.set_protocol_version(cellar::v1::PROTOCOL_VERSION_1);
    request.set_role(cellar::v1::NODE_ROLE_STORAGE);
    request.set_address("127.0.0.1:1");
    cellar::v1::RegisterNodeResponse response;
    return stub->RegisterNode(&context, request, &response);
  };
  EXPECT_EQ(register_as("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(register_as(common::NodeBearer("wrong-cluster-secret-0000")).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  for (common::Role role :
       {common::Role::kClient, common::Role::kReadonly, common::Role::kAdmin}) {
    grpc::Status s = register_as(tokens_->at(role));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << common::RoleName(role);
  }
  grpc::Status s = register_as(tokens_->at(common::Role::kClient));
  EXPECT_THAT(s.error_message(), HasSubstr("RegisterNode as NODE_ROLE_STORAGE needs role node"));

  // A real storage process with the wrong secret never joins.
  auto backend = storage::OpenBackendFromUri(
      absl::StrCat("sqlite://", ::testing::TempDir(), "/auth_test_intruder.", getpid(), ".db"));
  ASSERT_THAT(backend, common::IsOk());
  storage::StorageServerOptions options;
  options.master_addresses = {cluster_->master_address()};
  options.auth.node_bearer = common::NodeBearer("wrong-cluster-secret-0000");
  auto intruder = storage::StorageServer::Start(options, *std::move(backend),
                                                common::RealClock::Get(), nullptr);
  ASSERT_THAT(intruder, common::IsOk());
  EXPECT_THAT((*intruder)->WaitUntilServing(absl::Seconds(2)),
              common::StatusIs(absl::StatusCode::kDeadlineExceeded));
  (*intruder)->Shutdown();
}

TEST_F(AuthTest, OnlyNodesAbortWithAMasterEpoch) {
  auto abort_as = [](const std::string& bearer) {
    auto stub = cellar::v1::Storage::NewStub(
        common::MakeChannel(cluster_->storage_address(0), bearer));
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    cellar::v1::AbortTransactionRequest request;
    request.set_ttid(uint64_t{1} << 40);
    request.set_epoch(1);  // the master's abort needs no ttid token
    cellar::v1::AbortTransactionResponse response;
    return stub->AbortTransaction(&context, request, &response);
  };
  grpc::Status s = abort_as(tokens_->at(common::Role::kClient));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("AbortTransaction with an epoch needs role node"));
  EXPECT_NE(abort_as(tokens_->at(common::Role::kNode)).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

// A client acts only for the node ids it registered itself: another
// client's token cannot begin, finish, abort or watch as that node (a
// probe killed other clients' transactions with their listed ids), nor
// ask about its transactions' outcome.
TEST_F(AuthTest, AClientCannotActAsAnotherClientsNodeId) {
  auto master_as = [](const std::string& bearer) {
    return cellar::v1::Master::NewStub(
        common::MakeChannel(cluster_->master_address(), bearer));
  };
  auto owner = master_as(tokens_->at(common::Role::kClient));
  auto stranger = master_as(*other_client_token_);
  cellar::v1::RegisterNodeRequest reg;
  reg.set_cluster_name(tools::LocalClusterOptions().cluster_name);
  reg.set_protocol_version(cellar::v1::PROTOCOL_VERSION_1);
  reg.set_role(cellar::v1::NODE_ROLE_CLIENT);
  cellar::v1::RegisterNodeResponse registered;
  {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    ASSERT_TRUE(owner->RegisterNode(&context, reg, &registered).ok());
  }
  const uint32_t id = registered.node_id();
  cellar::v1::BeginRequest begin;
  begin.set_node_id(id);
  cellar::v1::BeginResponse begun;
  grpc::Status s;
  {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    s = stranger->Begin(&context, begin, &begun);
  }
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("registered with other credentials"));
  {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    s = owner->Begin(&context, begin, &begun);
  }
  ASSERT_TRUE(s.ok()) << s.error_message();
  cellar::v1::AbortRequest abort;
  abort.set_node_id(id);
  abort.set_ttid(begun.ttid());
  cellar::v1::AbortResponse aborted;
  {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    s = stranger->Abort(&context, abort, &aborted);
  }
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // Nor ask about its transactions: not as that node id, not as a node id
  // of its own, not without one.
  cellar::v1::RegisterNodeResponse own;
  {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    ASSERT_TRUE(stranger->RegisterNode(&context, reg, &own).ok());
  }
  auto ask = [&](cellar::v1::Master::Stub* as, uint32_t node_id) {
    cellar::v1::GetTransactionStatusRequest request;
    request.set_ttid(begun.ttid());
    request.set_node_id(node_id);
    cellar::v1::GetTransactionStatusResponse response;
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    grpc::Status status = as->GetTransactionStatus(&context, request, &response);
    return std::make_pair(status, response.outcome());
  };
  s = ask(stranger.get(), id).first;
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("registered with other credentials"));
  s = ask(stranger.get(), own.node_id()).first;
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("begun by a client node registered with other"));
  s = ask(stranger.get(), 0).first;
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("node_id: required with authentication on"));
  auto answered = ask(owner.get(), id);
  EXPECT_TRUE(answered.first.ok()) << answered.first.error_message();
  EXPECT_EQ(answered.second, cellar::v1::TRANSACTION_ACTIVE);
  // Under another node id of the same credentials (a reconnection).
  cellar::v1::RegisterNodeResponse again;
  {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    ASSERT_TRUE(owner->RegisterNode(&context, reg, &again).ok());
  }
  answered = ask(owner.get(), again.node_id());
  EXPECT_TRUE(answered.first.ok()) << answered.first.error_message();
  {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    cellar::v1::WatchRequest watch;
    watch.set_node_id(id);
    auto reader = stranger->Watch(&context, watch);
    cellar::v1::ClusterEvent event;
    EXPECT_FALSE(reader->Read(&event));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(5));
    s = owner->Abort(&context, abort, &aborted);
  }
  EXPECT_TRUE(s.ok()) << s.error_message();
}

// The reader role, rpc by rpc as named here (not from the table): every
// call that begins, writes or ends a transaction is refused naming client.
TEST_F(AuthTest, AReaderTokenIsRefusedEveryWriteNamingTheClientRole) {
  const std::vector<std::pair<const char*, const char*>> writes = {
      {"cellar.v1.Master", "AllocateOids"}, {"cellar.v1.Master", "Begin"},
      {"cellar.v1.Master", "Finish"},       {"cellar.v1.Master", "Abort"},
      {"cellar.v1.Master", "GetTransactionStatus"}, {"cellar.v1.Storage", "Store"},
      {"cellar.v1.Storage", "Vote"},        {"cellar.v1.Storage", "AbortTransaction"}};
  for (const auto& [service, name] : writes) {
    const auto* method = Service(service)->FindMethodByName(name);
    ASSERT_NE(method, nullptr) << name;
    grpc::Status s = Call(AddressOf(*method->service()), *method,
                          tokens_->at(common::Role::kReader));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << name << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("needs role client"));
    EXPECT_THAT(s.error_message(), HasSubstr("the caller has role reader"));
  }
  // And readonly (dashboards) reads no object data: no client session, no
  // load, naming the reader role.
  for (const auto& [service, name] :
       std::vector<std::pair<const char*, const char*>>{{"cellar.v1.Master", "RegisterNode"},
                                                        {"cellar.v1.Storage", "Load"},
                                                        {"cellar.v1.Storage", "LoadMany"}}) {
    const auto* method = Service(service)->FindMethodByName(name);
    grpc::Status s = Call(AddressOf(*method->service()), *method,
                          tokens_->at(common::Role::kReadonly));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << name;
    EXPECT_THAT(s.error_message(), HasSubstr("needs role reader or node (client includes reader)"));
  }
}

// A read-only application through the C++ client with a reader token: it
// connects (RegisterNode, Watch), loads what a writer committed, gets the
// writer's next commit as an invalidation, and a commit attempt is refused
// by the master with PERMISSION_DENIED naming the client role.
TEST_F(AuthTest, AReaderClientLoadsAndSeesCommitsButCannotCommit) {
  auto connect = [](common::Role role) {
    client::ClientOptions options;
    options.master_addresses = {cluster_->master_address()};
    options.cluster_name = tools::LocalClusterOptions().cluster_name;
    options.token = tokens_->at(role);
    return client::Client::Connect(options);
  };
  auto writer = connect(common::Role::kClient);
  ASSERT_THAT(writer, common::IsOk());
  auto oid = (*writer)->NewOid();
  ASSERT_THAT(oid, common::IsOk());
  auto first = (*writer)->NewTransaction();
  first->Store(*oid, 0, "first");
  auto tid1 = first->Commit();
  ASSERT_THAT(tid1, common::IsOk());

  auto reader = connect(common::Role::kReader);
  ASSERT_THAT(reader, common::IsOk());
  absl::Mutex mu;
  uint64_t invalidated_at = 0;
  (*reader)->SetInvalidationListener([&](uint64_t tid, const std::vector<uint64_t>& oids) {
    absl::MutexLock l(&mu);
    for (uint64_t o : oids) {
      if (o == *oid) invalidated_at = tid;
    }
  });
  ASSERT_THAT((*reader)->Sync(), common::IsOk());
  auto loaded = (*reader)->Load(*oid);
  ASSERT_THAT(loaded, common::IsOk());
  EXPECT_EQ(loaded->data, "first");
  EXPECT_EQ(loaded->serial, *tid1);
  auto history = (*reader)->History(*oid, 10);
  ASSERT_THAT(history, common::IsOk());
  EXPECT_EQ(history->size(), 1u);

  auto second = (*writer)->NewTransaction();
  second->Store(*oid, *tid1, "second");
  auto tid2 = second->Commit();
  ASSERT_THAT(tid2, common::IsOk());
  {
    absl::MutexLock l(&mu);
    const bool seen = mu.AwaitWithTimeout(
        absl::Condition(+[](uint64_t* at) { return *at != 0; }, &invalidated_at),
        absl::Seconds(10));
    ASSERT_TRUE(seen) << "no invalidation of the writer's commit within 10 s";
    EXPECT_EQ(invalidated_at, *tid2);
  }
  loaded = (*reader)->Load(*oid);
  ASSERT_THAT(loaded, common::IsOk());
  EXPECT_EQ(loaded->data, "second");
  auto before = (*reader)->LoadBefore(*oid, *tid2);
  ASSERT_THAT(before, common::IsOk());
  EXPECT_EQ(before->data, "first");

  // Writes: refused by the cluster, nothing stored.
  EXPECT_THAT((*reader)->NewOid(), common::StatusIs(absl::StatusCode::kPermissionDenied,
                                                    HasSubstr("needs role client")));
  auto attempt = (*reader)->NewTransaction();
  attempt->Store(*oid, *tid2, "from the reader");
  EXPECT_THAT(attempt->Commit(), common::StatusIs(absl::StatusCode::kPermissionDenied,
                                                  HasSubstr("needs role client")));
  loaded = (*writer)->Load(*oid);
  ASSERT_THAT(loaded, common::IsOk());
  EXPECT_EQ(loaded->data, "second");

  // A readonly token is no client at all (it reads no object data).
  EXPECT_THAT(connect(common::Role::kReadonly).status(),
              common::StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST_F(AuthTest, OnlyNodesWatchAsAStorage) {
  auto stub = cellar::v1::Master::NewStub(
      common::MakeChannel(cluster_->master_address(), tokens_->at(common::Role::kClient)));
  grpc::ClientContext context;
  common::SetDeadline(&context, absl::Seconds(5));
  cellar::v1::WatchRequest request;
  request.set_node_id(cluster_->storage_node_id(0));
  auto reader = stub->Watch(&context, request);
  cellar::v1::ClusterEvent event;
  EXPECT_FALSE(reader->Read(&event));
  grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("Watch as NODE_ROLE_STORAGE needs role node"));
}

TEST_F(AuthTest, AdminActionsAreAuditedWithWhoWhatAndOutcome) {
  auto admin = common::ParseToken(tokens_->at(common::Role::kAdmin));
  ASSERT_THAT(admin, common::IsOk());
  // An admin action (refused by its handler: replicas is required) and a
  // read, through the admin node; a string field carrying a forged line.
  {
    auto stub = cellar::v1::Admin::NewStub(
        common::MakeChannel(cluster_->admin_address(), tokens_->at(common::Role::kAdmin)));
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    cellar::v1::AcknowledgeAlertRequest request;
    request.set_id("no-such-alert");
    request.set_by("x\n{\"forged\":1}");
    cellar::v1::AcknowledgeAlertResponse response;
    stub->AcknowledgeAlert(&context, request, &response);
  }
  {
    auto stub = cellar::v1::Admin::NewStub(
        common::MakeChannel(cluster_->admin_address(), tokens_->at(common::Role::kAdmin)));
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(10));
    cellar::v1::GetClusterStatusRequest request;
    cellar::v1::GetClusterStatusResponse response;
    ASSERT_TRUE(stub->GetClusterStatus(&context, request, &response).ok());
  }
  std::ifstream in(*audit_file_);
  std::string line;
  int acknowledged = 0;
  while (std::getline(in, line)) {
    EXPECT_EQ(line.find("GetClusterStatus"), std::string::npos) << "reads are not audited";
    EXPECT_EQ(line.find("\"forged\":1}"), std::string::npos) << "unescaped: " << line;
    if (!absl::StrContains(line, "/cellar.v1.Admin/AcknowledgeAlert")) continue;
    if (!absl::StrContains(line, "no-such-alert")) continue;
    ++acknowledged;
    EXPECT_THAT(line, HasSubstr(absl::StrCat("\"principal\":\"token ", admin->id, "\"")));
    EXPECT_THAT(line, HasSubstr("\"role\":\"admin\""));
    EXPECT_THAT(line, HasSubstr("\"code\":\"NOT_FOUND\""));
    EXPECT_THAT(line, HasSubstr("\"time\":\"20"));
    EXPECT_THAT(line, HasSubstr("\"peer\":\"ipv"));
  }
  EXPECT_EQ(acknowledged, 1) << "in " << *audit_file_;
}

// Last: it ends with Storage.Shutdown, which stops the storage.
TEST_F(AuthTest, EveryRpcLetsAnAllowedRoleThrough) {
  // Storage.Shutdown really stops the storage: called last, below.
  const google::protobuf::MethodDescriptor* shutdown =
      Service(cellar::v1::Storage::service_full_name())->FindMethodByName("Shutdown");
  std::vector<const google::protobuf::MethodDescriptor*> methods;
  for (const auto* method : AllMethods()) {
    if (method != shutdown) methods.push_back(method);
  }
  methods.push_back(shutdown);
  for (const auto* method : methods) {
    const std::string path =
        absl::StrCat("/", method->service()->full_name(), "/", method->name());
    const common::RoleSet allowed = common::MethodRoles().at(path);
    for (common::Role role : kAllRoles) {
      if (!common::HasRole(role, allowed)) continue;
      grpc::Status s = Call(AddressOf(*method->service()), *method, tokens_->at(role));
      EXPECT_FALSE(IsAuthRefusal(s)) << path << " as " << common::RoleName(role) << ": "
                                     << s.error_code() << " " << s.error_message();
      if (method == shutdown) break;  // once is enough: the node is gone
    }
  }
}

}  // namespace
}  // namespace cellar
