#include "services/common/auth_policy.h"

#include "absl/strings/match.h"

namespace cellar::common {
namespace {

constexpr RoleSet kClient = Roles(Role::kClient);
// The read half of the data path: client implies it (HasRole), so a set
// naming kReader admits client tokens too.
constexpr RoleSet kReader = Roles(Role::kReader);
constexpr RoleSet kReadonly = Roles(Role::kReadonly);
constexpr RoleSet kAdmin = Roles(Role::kAdmin);
constexpr RoleSet kNode = Roles(Role::kNode);

}  // namespace

const absl::flat_hash_map<std::string, RoleSet>& MethodRoles() {
  // The admin process calls masters and storages with the cluster secret
  // (node), so operator rpcs of Master/Storage allow node as well as admin
  // tokens used directly. Data-path rpcs that a node also makes (the admin
  // reads history, storages read the cluster info) allow both. A read-only
  // client (reader) registers, watches and loads; everything that writes
  // or holds a transaction (AllocateOids, Begin, Store, Vote, Finish,
  // Abort, GetTransactionStatus) needs client. A restore (Begin with a
  // tid: zodbconvert) needs client too: the master bounds the tid (above
  // its last one, at most 10 minutes ahead of its clock) and the oids, so
  // it can do nothing to the allocators a client could not (security.md).
  static const auto* const kTable = new absl::flat_hash_map<std::string, RoleSet>{
      // ---- cellar.v1.Master
      // A storage or admin registration additionally needs node: checked by
      // the handler (RequireNodeRole), the role is in the request.
      {"/cellar.v1.Master/RegisterNode", kReader | kNode},
      {"/cellar.v1.Master/Watch", kReader | kNode},
      {"/cellar.v1.Master/AllocateOids", kClient},
      {"/cellar.v1.Master/Begin", kClient},
      {"/cellar.v1.Master/Finish", kClient},
      {"/cellar.v1.Master/Abort", kClient},
      {"/cellar.v1.Master/GetTransactionStatus", kClient},
      {"/cellar.v1.Master/GetClusterInfo", kReader | kReadonly | kNode},
      {"/cellar.v1.Master/StartCluster", kAdmin | kNode},
      {"/cellar.v1.Master/Heartbeat", kNode},
      {"/cellar.v1.Master/ReportReplication", kNode},
      // A client (or storage) that could not reach a storage; the master
      // probes it itself before acting (the report is never taken as is).
      {"/cellar.v1.Master/ReportUnreachable", kReader | kNode},
      {"/cellar.v1.Master/SetClusterState", kAdmin | kNode},
      {"/cellar.v1.Master/ChangePartitionTable", kAdmin | kNode},
      {"/cellar.v1.Master/KillNode", kAdmin | kNode},
      {"/cellar.v1.Master/CheckReplicas", kAdmin | kNode},
      {"/cellar.v1.Master/GetCheckStatus", kReadonly | kNode},
      {"/cellar.v1.Master/RepairCell", kAdmin | kNode},
      {"/cellar.v1.Master/Truncate", kAdmin | kNode},
      {"/cellar.v1.Master/Pack", kAdmin | kNode},
      {"/cellar.v1.Master/GetPackStatus", kReadonly | kNode},
      {"/cellar.v1.Master/CreateToken", kAdmin | kNode},
      {"/cellar.v1.Master/ListTokens", kAdmin | kNode},
      {"/cellar.v1.Master/RevokeToken", kAdmin | kNode},
      // The table with hashes: for the nodes that follow it only.
      {"/cellar.v1.Master/GetTokenTable", kNode},
      {"/cellar.v1.Master/SetFeatureFlag", kAdmin | kNode},
      {"/cellar.v1.Master/ListFeatureFlags", kReadonly | kNode},
      {"/cellar.v1.Master/DeleteFeatureFlag", kAdmin | kNode},
      {"/cellar.v1.Master/ListVersions", kReadonly | kNode},
      {"/cellar.v1.Master/QuarantineVersion", kAdmin | kNode},
      {"/cellar.v1.Master/UnquarantineVersion", kAdmin | kNode},
      {"/cellar.v1.Master/GetCanaryAnalysis", kReadonly | kNode},
      // ---- cellar.v1.Storage
      {"/cellar.v1.Storage/Store", kClient},
      {"/cellar.v1.Storage/Vote", kClient},
      // With an epoch (the master's abort) the handler requires node.
      {"/cellar.v1.Storage/AbortTransaction", kClient | kNode},
      {"/cellar.v1.Storage/LockTransaction", kNode},
      {"/cellar.v1.Storage/UnlockTransaction", kNode},
      {"/cellar.v1.Storage/LockTransactions", kNode},
      {"/cellar.v1.Storage/UnlockTransactions", kNode},
      {"/cellar.v1.Storage/Load", kReader | kNode},
      {"/cellar.v1.Storage/LoadMany", kReader | kNode},
      {"/cellar.v1.Storage/History", kReader | kNode},
      {"/cellar.v1.Storage/LastTransactions", kReader | kNode},
      {"/cellar.v1.Storage/GetTransaction", kReader | kNode},
      {"/cellar.v1.Storage/ScanTransactions", kReader | kNode},
      // Sizes, no data: also for monitoring with a readonly token.
      {"/cellar.v1.Storage/GetPartitionStats", kReader | kReadonly | kNode},
      {"/cellar.v1.Storage/GetNodeStatus", kReadonly | kNode},
      {"/cellar.v1.Storage/Replicate", kNode},
      {"/cellar.v1.Storage/GetTransactionOutcome", kNode},
      {"/cellar.v1.Storage/CheckCell", kNode},
      {"/cellar.v1.Storage/TruncateData", kNode},
      {"/cellar.v1.Storage/Pack", kNode},
      {"/cellar.v1.Storage/Shutdown", kAdmin | kNode},
      {"/cellar.v1.Storage/SaveMasterState", kNode},
      {"/cellar.v1.Storage/SaveTokenTable", kNode},
      {"/cellar.v1.Storage/SaveFeatureFlags", kNode},
      // ---- cellar.v1.Admin (operators; never node: no process calls it)
      {"/cellar.v1.Admin/GetClusterStatus", kReadonly},
      {"/cellar.v1.Admin/ListNodes", kReadonly},
      {"/cellar.v1.Admin/GetNode", kReadonly},
      {"/cellar.v1.Admin/GetPartitionTable", kReadonly},
      {"/cellar.v1.Admin/StartCluster", kAdmin},
      {"/cellar.v1.Admin/LastTransactions", kReadonly},
      {"/cellar.v1.Admin/ObjectHistory", kReadonly},
      {"/cellar.v1.Admin/ListClusters", kReadonly},
      {"/cellar.v1.Admin/ListAlerts", kReadonly},
      {"/cellar.v1.Admin/AcknowledgeAlert", kAdmin},
      {"/cellar.v1.Admin/DeleteAlert", kAdmin},
      {"/cellar.v1.Admin/SetClusterState", kAdmin},
      {"/cellar.v1.Admin/TweakPartitionTable", kAdmin},
      {"/cellar.v1.Admin/AddStorages", kAdmin},
      {"/cellar.v1.Admin/DropStorage", kAdmin},
      {"/cellar.v1.Admin/SetReplicas", kAdmin},
      {"/cellar.v1.Admin/KillNode", kAdmin},
      {"/cellar.v1.Admin/CheckReplicas", kAdmin},
      {"/cellar.v1.Admin/GetCheckStatus", kReadonly},
      {"/cellar.v1.Admin/RepairCell", kAdmin},
      {"/cellar.v1.Admin/Truncate", kAdmin},
      {"/cellar.v1.Admin/Pack", kAdmin},
      {"/cellar.v1.Admin/GetPackStatus", kReadonly},
      {"/cellar.v1.Admin/StopNode", kAdmin},
      // Admin only, ListTokens included: who holds which token is for
      // operators who may change it (and every call is audited).
      {"/cellar.v1.Admin/CreateToken", kAdmin},
      {"/cellar.v1.Admin/ListTokens", kAdmin},
      {"/cellar.v1.Admin/RevokeToken", kAdmin},
      {"/cellar.v1.Admin/SetFeatureFlag", kAdmin},
      {"/cellar.v1.Admin/ListFeatureFlags", kReadonly},
      {"/cellar.v1.Admin/DeleteFeatureFlag", kAdmin},
      {"/cellar.v1.Admin/ListVersions", kReadonly},
      {"/cellar.v1.Admin/QuarantineVersion", kAdmin},
      {"/cellar.v1.Admin/UnquarantineVersion", kAdmin},
      {"/cellar.v1.Admin/GetCanaryAnalysis", kReadonly},
  };
  return *kTable;
}

bool HasRole(Role role, RoleSet allowed) {
  RoleSet held = Roles(role);
  if (role == Role::kAdmin) held |= kReadonly;
  if (role == Role::kClient) held |= kReader;
  return (held & allowed) != 0;
}

bool IsHealthMethod(absl::string_view full_method) {
  return absl::StartsWith(full_method, "/grpc.health.v1.Health/");
}

bool IsReflectionMethod(absl::string_view full_method) {
  return absl::StartsWith(full_method, "/grpc.reflection.");
}

bool ReleasesCallerState(absl::string_view full_method) {
  return full_method == "/cellar.v1.Master/Abort" ||
         full_method == "/cellar.v1.Storage/AbortTransaction";
}

}  // namespace cellar::common
