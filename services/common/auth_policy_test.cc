#include "services/common/auth_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"

namespace cellar::common {
namespace {

// Every service of every file of protos/cellar/v1 (a new service in these
// files is walked too).
std::vector<const google::protobuf::ServiceDescriptor*> CellarServices() {
  std::vector<const google::protobuf::ServiceDescriptor*> services;
  for (const auto* file : {cellar::v1::RegisterNodeRequest::descriptor()->file(),
                           cellar::v1::StoreRequest::descriptor()->file(),
                           cellar::v1::GetClusterStatusRequest::descriptor()->file()}) {
    for (int i = 0; i < file->service_count(); ++i) services.push_back(file->service(i));
    for (int i = 0; i < file->dependency_count(); ++i) {
      EXPECT_EQ(file->dependency(i)->service_count(), 0) << file->dependency(i)->name();
    }
  }
  return services;
}

TEST(AuthPolicyTest, EveryRpcOfEveryServiceHasAnEntry) {
  std::set<std::string> seen;
  for (const auto* service : CellarServices()) {
    for (int i = 0; i < service->method_count(); ++i) {
      const std::string path =
          absl::StrCat("/", service->full_name(), "/", service->method(i)->name());
      seen.insert(path);
      auto it = MethodRoles().find(path);
      ASSERT_NE(it, MethodRoles().end()) << path << " is missing from MethodRoles()";
      EXPECT_NE(it->second, 0) << path << " allows no role";
    }
  }
  EXPECT_EQ(CellarServices().size(), 3u);
  // And nothing stale: every entry names an existing rpc.
  for (const auto& [path, roles] : MethodRoles()) {
    EXPECT_TRUE(seen.count(path) > 0) << path << " is not an rpc of the protos";
  }
}

TEST(AuthPolicyTest, AdminImpliesReadonlyButNothingElse) {
  EXPECT_TRUE(HasRole(Role::kAdmin, Roles(Role::kReadonly)));
  EXPECT_FALSE(HasRole(Role::kReadonly, Roles(Role::kAdmin)));
  EXPECT_FALSE(HasRole(Role::kAdmin, Roles(Role::kClient)));
  EXPECT_FALSE(HasRole(Role::kNode, Roles(Role::kAdmin)));
  EXPECT_FALSE(HasRole(Role::kClient, Roles(Role::kNode)));
}

TEST(AuthPolicyTest, ClientImpliesReaderButNothingElse) {
  EXPECT_TRUE(HasRole(Role::kClient, Roles(Role::kReader)));
  EXPECT_FALSE(HasRole(Role::kReader, Roles(Role::kClient)));
  EXPECT_FALSE(HasRole(Role::kReader, Roles(Role::kReadonly)));
  EXPECT_FALSE(HasRole(Role::kReadonly, Roles(Role::kReader)));
  EXPECT_FALSE(HasRole(Role::kAdmin, Roles(Role::kReader)));
  EXPECT_FALSE(HasRole(Role::kReader, Roles(Role::kNode)));
}

// Every rpc the table allows a role (its implied role included).
std::set<std::string> CallableBy(Role role) {
  std::set<std::string> callable;
  for (const auto& [path, roles] : MethodRoles()) {
    if (HasRole(role, roles)) callable.insert(path);
  }
  return callable;
}

// The read half of the data path, exactly: a read-only client registers,
// watches, loads and reports unreachable storages, and nothing that begins,
// writes or ends a transaction (nor any operator rpc).
TEST(AuthPolicyTest, ReaderMayReadObjectsButNeverWrite) {
  EXPECT_THAT(CallableBy(Role::kReader),
              ::testing::UnorderedElementsAre(
                  "/cellar.v1.Master/RegisterNode", "/cellar.v1.Master/Watch",
                  "/cellar.v1.Master/GetClusterInfo", "/cellar.v1.Master/ReportUnreachable",
                  "/cellar.v1.Storage/Load", "/cellar.v1.Storage/LoadMany",
                  "/cellar.v1.Storage/History", "/cellar.v1.Storage/LastTransactions",
                  "/cellar.v1.Storage/GetTransaction", "/cellar.v1.Storage/ScanTransactions",
                  "/cellar.v1.Storage/GetPartitionStats"));
  // The client may do all of that, and commit.
  const std::set<std::string> client = CallableBy(Role::kClient);
  for (const std::string& path : CallableBy(Role::kReader)) {
    EXPECT_TRUE(client.count(path) > 0) << path;
  }
  for (const char* path :
       {"/cellar.v1.Master/AllocateOids", "/cellar.v1.Master/Begin", "/cellar.v1.Master/Finish",
        "/cellar.v1.Master/Abort", "/cellar.v1.Master/GetTransactionStatus",
        "/cellar.v1.Storage/Store", "/cellar.v1.Storage/Vote",
        "/cellar.v1.Storage/AbortTransaction"}) {
    EXPECT_TRUE(client.count(path) > 0) << path;
    EXPECT_FALSE(HasRole(Role::kReader, MethodRoles().at(path))) << path;
  }
}

// Dashboards and operators (readonly, admin) see sizes and the cluster,
// never object data nor a client session.
TEST(AuthPolicyTest, ReadonlyAndAdminReadNoObjectData) {
  for (const char* path :
       {"/cellar.v1.Master/RegisterNode", "/cellar.v1.Master/Watch", "/cellar.v1.Storage/Load",
        "/cellar.v1.Storage/LoadMany", "/cellar.v1.Storage/History",
        "/cellar.v1.Storage/LastTransactions", "/cellar.v1.Storage/GetTransaction",
        "/cellar.v1.Storage/ScanTransactions"}) {
    EXPECT_FALSE(HasRole(Role::kReadonly, MethodRoles().at(path))) << path;
    EXPECT_FALSE(HasRole(Role::kAdmin, MethodRoles().at(path))) << path;
  }
}

TEST(AuthPolicyTest, NodeOnlyRpcsAreNotOpenToTokens) {
  for (const char* path :
       {"/cellar.v1.Master/Heartbeat", "/cellar.v1.Master/ReportReplication",
        "/cellar.v1.Storage/LockTransaction", "/cellar.v1.Storage/UnlockTransaction",
        "/cellar.v1.Storage/LockTransactions", "/cellar.v1.Storage/UnlockTransactions",
        "/cellar.v1.Storage/TruncateData", "/cellar.v1.Storage/Replicate",
        "/cellar.v1.Storage/SaveMasterState", "/cellar.v1.Storage/CheckCell",
        "/cellar.v1.Storage/GetTransactionOutcome", "/cellar.v1.Storage/SaveTokenTable",
        "/cellar.v1.Master/GetTokenTable"}) {
    EXPECT_EQ(MethodRoles().at(path), Roles(Role::kNode)) << path;
  }
}

TEST(AuthPolicyTest, UnreachableReportsComeFromClientsReadersAndNodesOnly) {
  const RoleSet roles = MethodRoles().at("/cellar.v1.Master/ReportUnreachable");
  EXPECT_TRUE(HasRole(Role::kClient, roles));
  EXPECT_TRUE(HasRole(Role::kReader, roles));  // a read-only client reports too
  EXPECT_TRUE(HasRole(Role::kNode, roles));
  EXPECT_FALSE(HasRole(Role::kReadonly, roles));  // it makes the master act
  EXPECT_FALSE(HasRole(Role::kAdmin, roles));     // operators have KillNode
}

TEST(AuthPolicyTest, OpenPaths) {
  EXPECT_TRUE(IsHealthMethod("/grpc.health.v1.Health/Check"));
  EXPECT_FALSE(IsHealthMethod("/grpc.health.v1.HealthX/Check"));
  EXPECT_TRUE(IsReflectionMethod("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"));
}

}  // namespace
}  // namespace cellar::common
