// Validation by definition, end to end: a real master, two storages and an
// admin (in-process, SQLite, auth on). Walks EVERY rpc of every cellar
// service, from the generated service and message descriptors, as a role
// the method table allows, with hostile requests: the empty request; each
// field in turn at its extreme (integer max or min, an enum number no
// version defines, a 2 MiB string, a repeated field with many entries, a
// nested message filled recursively); every field at once; random bytes.
//
// Every answer must carry the right kind of code (never UNKNOWN or
// INTERNAL), a bounded message that does not echo the big input, and an
// INVALID_ARGUMENT must name a field. Afterwards nothing is lost: the
// objects committed before the walk are on every storage, the cluster is
// RUNNING with the same nodes, and a commit and a load succeed.

#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "protos/cellar/v1/storage.grpc.pb.h"
#include "services/common/auth_policy.h"
#include "services/common/channel.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "services/common/raw_call.h"
#include "services/common/status_matchers.h"
#include "tests/integration/cluster_helpers.h"
#include "tools/local/local_cluster.h"

namespace cellar {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::MethodDescriptor;
using ::google::protobuf::Reflection;

constexpr char kSecret[] = "hostile-test-cluster-secret-0123456789";
// The byte every big string is made of; an error message must not echo it
// (kMaxEcho of them in a row would be an echo).
constexpr char kFill = 'Z';
constexpr size_t kMaxEcho = 64;
constexpr size_t kBigString = 2 << 20;    // top-level string and bytes fields
constexpr size_t kNestedString = 1024;    // inside nested messages
constexpr int kManyScalars = 100000;      // repeated scalars at top level
constexpr int kManyMessages = 1000;       // repeated messages at top level
constexpr int kNestedRepeats = 3;         // repeated fields inside nested messages
constexpr int kMaxDepth = 3;              // nested messages filled this deep
constexpr size_t kMaxMessageBytes = 1024;  // an error message's bound
const uint32_t kGarbageSeeds[] = {1, 2, 3};
const size_t kGarbageSizes[] = {16, 512, 64 << 10};

// Requests that must be refused outright (INVALID_ARGUMENT) when empty:
// each would change or stop something, and "unset" must never mean "all"
// or "0" (a proto3 field left unset is 0).
const std::set<std::string>& EmptyMustBeInvalid() {
  static const auto* paths = new std::set<std::string>{
      "/cellar.v1.Master/SetClusterState",   "/cellar.v1.Master/ChangePartitionTable",
      "/cellar.v1.Master/KillNode",          "/cellar.v1.Master/RepairCell",
      "/cellar.v1.Master/Truncate",          "/cellar.v1.Master/CreateToken",
      "/cellar.v1.Master/RevokeToken",       "/cellar.v1.Storage/TruncateData",
      "/cellar.v1.Storage/Shutdown",         "/cellar.v1.Storage/SaveMasterState",
      "/cellar.v1.Storage/SaveTokenTable",   "/cellar.v1.Storage/AbortTransaction",
      "/cellar.v1.Storage/LockTransaction",  "/cellar.v1.Storage/UnlockTransaction",
      "/cellar.v1.Admin/SetClusterState",    "/cellar.v1.Admin/AddStorages",
      "/cellar.v1.Admin/DropStorage",        "/cellar.v1.Admin/SetReplicas",
      "/cellar.v1.Admin/KillNode",           "/cellar.v1.Admin/RepairCell",
      "/cellar.v1.Admin/Truncate",           "/cellar.v1.Admin/StopNode",
      "/cellar.v1.Admin/CreateToken",        "/cellar.v1.Admin/RevokeToken",
      "/cellar.v1.Admin/AcknowledgeAlert",   "/cellar.v1.Admin/DeleteAlert",
      "/cellar.v1.Master/SetFeatureFlag",    "/cellar.v1.Master/DeleteFeatureFlag",
      "/cellar.v1.Storage/SaveFeatureFlags", "/cellar.v1.Admin/SetFeatureFlag",
      "/cellar.v1.Master/ReportUnreachable",
      "/cellar.v1.Admin/DeleteFeatureFlag",  "/cellar.v1.Storage/Pack",
      "/cellar.v1.Master/Pack",              "/cellar.v1.Admin/Pack",
      "/cellar.v1.Master/QuarantineVersion", "/cellar.v1.Master/UnquarantineVersion",
      "/cellar.v1.Admin/QuarantineVersion",  "/cellar.v1.Admin/UnquarantineVersion",
      "/cellar.v1.Storage/LockTransactions", "/cellar.v1.Storage/UnlockTransactions",
  };
  return *paths;
}

std::string PathOf(const MethodDescriptor& method) {
  return absl::StrCat("/", method.service()->full_name(), "/", method.name());
}

// ---- Hostile requests, from the message descriptors ----

// Sets `field` of `message` to its extreme value (appends one entry if
// repeated). Strings are `string_size` bytes of kFill.
void SetExtreme(Message* message, const FieldDescriptor* field, int depth,
                size_t string_size);

// Every field of `message` at its extreme, `depth` levels of nesting left.
void FillAll(Message* message, int depth) {
  const Descriptor* d = message->GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* field = d->field(i);
    const int entries = field->is_repeated() ? kNestedRepeats : 1;
    for (int k = 0; k < entries; ++k) SetExtreme(message, field, depth, kNestedString);
  }
}

void SetExtreme(Message* message, const FieldDescriptor* field, int depth,
                size_t string_size) {
  const Reflection* r = message->GetReflection();
  const bool rep = field->is_repeated();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: {
      const int32_t v = std::numeric_limits<int32_t>::min();
      rep ? r->AddInt32(message, field, v) : r->SetInt32(message, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      const int64_t v = std::numeric_limits<int64_t>::min();
      rep ? r->AddInt64(message, field, v) : r->SetInt64(message, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      const uint32_t v = std::numeric_limits<uint32_t>::max();
      rep ? r->AddUInt32(message, field, v) : r->SetUInt32(message, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      const uint64_t v = std::numeric_limits<uint64_t>::max();
      rep ? r->AddUInt64(message, field, v) : r->SetUInt64(message, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
      rep ? r->AddDouble(message, field, 1e308) : r->SetDouble(message, field, 1e308);
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      rep ? r->AddFloat(message, field, 3e38f) : r->SetFloat(message, field, 3e38f);
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      rep ? r->AddBool(message, field, true) : r->SetBool(message, field, true);
      break;
    case FieldDescriptor::CPPTYPE_ENUM: {
      // A number no version of the enum defines (proto3 keeps it).
      const int v = std::numeric_limits<int32_t>::max();
      rep ? r->AddEnumValue(message, field, v) : r->SetEnumValue(message, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      const std::string v(string_size, kFill);
      rep ? r->AddString(message, field, v) : r->SetString(message, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      Message* sub = rep ? r->AddMessage(message, field) : r->MutableMessage(message, field);
      if (depth > 0) FillAll(sub, depth - 1);
      break;
    }
  }
}

// One field at its extreme; a repeated field with many entries (bounded
// so that the request stays well under the servers' 64 MiB limit).
void SetOneExtreme(Message* message, const FieldDescriptor* field) {
  if (!field->is_repeated()) {
    SetExtreme(message, field, kMaxDepth, kBigString);
    return;
  }
  const bool nested = field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
  const bool text = field->cpp_type() == FieldDescriptor::CPPTYPE_STRING;
  const int entries = nested || text ? kManyMessages : kManyScalars;
  for (int k = 0; k < entries; ++k) {
    SetExtreme(message, field, kMaxDepth - 1, kNestedString);
  }
}

struct HostileRequest {
  std::string what;   // for failure messages
  std::string bytes;  // the serialized request
};

// The fields an rpc's request needs to get past its first check, under
// the hostile ones (which override them): without them every hostile
// field would meet the same first refusal.
std::string BaseRequest(const std::string& path) {
  if (path == "/cellar.v1.Master/RegisterNode") {
    cellar::v1::RegisterNodeRequest request;
    request.set_cluster_name(tools::LocalClusterOptions().cluster_name);
    request.set_protocol_version(cellar::v1::PROTOCOL_VERSION_1);
    request.set_role(cellar::v1::NODE_ROLE_CLIENT);
    return request.SerializeAsString();
  }
  if (path == "/cellar.v1.Storage/ScanTransactions") {
    // A valid page (of partition 0; a storage without a readable cell of
    // it says UNAVAILABLE): then a huge limit, min_tid above max_tid, a
    // partition out of range must each be refused.
    cellar::v1::ScanTransactionsRequest request;
    request.add_partitions(0);
    request.set_max_tid(1);
    return request.SerializeAsString();
  }
  return "";
}

std::vector<HostileRequest> HostileRequests(const MethodDescriptor& method) {
  const Descriptor& type = *method.input_type();
  google::protobuf::DynamicMessageFactory factory;
  const Message* prototype = factory.GetPrototype(&type);
  const std::string base = BaseRequest(PathOf(method));
  std::vector<HostileRequest> out;
  out.push_back({"empty request", ""});
  for (int i = 0; i < type.field_count(); ++i) {
    std::unique_ptr<Message> m(prototype->New());
    m->ParseFromString(base);
    SetOneExtreme(m.get(), type.field(i));
    out.push_back({absl::StrCat("extreme ", type.field(i)->name()), m->SerializeAsString()});
  }
  if (type.field_count() > 1) {
    std::unique_ptr<Message> m(prototype->New());
    m->ParseFromString(base);
    for (int i = 0; i < type.field_count(); ++i) {
      SetExtreme(m.get(), type.field(i), kMaxDepth, kNestedString);
    }
    out.push_back({"every field extreme", m->SerializeAsString()});
  }
  for (size_t k = 0; k < std::size(kGarbageSeeds); ++k) {
    std::mt19937 rng(kGarbageSeeds[k]);
    std::string bytes(kGarbageSizes[k], '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    out.push_back({absl::StrCat("garbage seed ", kGarbageSeeds[k]), std::move(bytes)});
  }
  return out;
}

// The names of every field of `type` and of the messages it holds.
void FieldNames(const Descriptor& type, std::set<std::string>* names,
                std::set<const Descriptor*>* seen) {
  if (!seen->insert(&type).second) return;
  for (int i = 0; i < type.field_count(); ++i) {
    names->insert(type.field(i)->name());
    if (type.field(i)->message_type() != nullptr) {
      FieldNames(*type.field(i)->message_type(), names, seen);
    }
  }
}

// True if `message` names a field of `type` (as a word) or the request.
bool NamesAField(const std::string& message, const Descriptor& type) {
  std::set<std::string> names = {"request"};
  std::set<const Descriptor*> seen;
  FieldNames(type, &names, &seen);
  auto is_word = [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
  };
  for (const std::string& name : names) {
    for (size_t at = message.find(name); at != std::string::npos;
         at = message.find(name, at + 1)) {
      const size_t end = at + name.size();
      if ((at == 0 || !is_word(message[at - 1])) &&
          (end == message.size() || !is_word(message[end]))) {
        return true;
      }
    }
  }
  return false;
}

// `message` with runs of kFill shortened, for failure messages.
std::string Abbreviated(const std::string& message) {
  std::string out;
  for (size_t i = 0; i < message.size() && out.size() < 300;) {
    size_t run = 0;
    while (i + run < message.size() && message[i + run] == kFill) ++run;
    if (run > 8) {
      absl::StrAppend(&out, std::string(8, kFill), "<", run, " in all>");
      i += run;
    } else {
      out += message[i++];
    }
  }
  return out;
}

class HostileRequestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    common::SetMinLogSeverity(common::LogSeverity::kError);
    const std::string dir =
        absl::StrCat(::testing::TempDir(), "/hostile_request_test.", getpid());
    const std::string tokens_file = dir + ".tokens";
    auto tokens = testing_support::WriteRoleTokens(tokens_file, kSecret);
    ASSERT_THAT(tokens, common::IsOk());
    tokens_ = new std::map<common::Role, std::string>(*std::move(tokens));
    auto auth = testing_support::TestAuthSetup(tokens_file, kSecret);
    ASSERT_THAT(auth, common::IsOk());

    tools::LocalClusterOptions options;
    options.data_dir = dir;
    options.storages = 2;
    options.replicas = 1;
    options.partitions = 4;
    options.auth = *std::move(auth);
    auto cluster = tools::LocalCluster::Start(options);
    ASSERT_THAT(cluster, common::IsOk());
    cluster_ = cluster->release();
  }

  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  // The most trusted role the method table allows for `path`: the walk
  // should reach the handler's own checks, past the role table.
  static std::string BearerFor(const std::string& path) {
    const common::RoleSet allowed = common::MethodRoles().at(path);
    for (common::Role role : {common::Role::kNode, common::Role::kAdmin, common::Role::kClient,
                              common::Role::kReadonly}) {
      if (common::HasRole(role, allowed)) return tokens_->at(role);
    }
    ADD_FAILURE() << path << " allows no role";
    return "";
  }

  static std::string AddressOf(const google::protobuf::ServiceDescriptor& service) {
    if (service.name() == "Master") return cluster_->master_address();
    if (service.name() == "Storage") return cluster_->storage_address(0);
    return cluster_->admin_address();
  }

  // Sends `bytes` as the request of `method` (a server stream that sends
  // a message is OK).
  static grpc::Status Call(const MethodDescriptor& method, const std::string& bytes) {
    auto channel =
        common::MakeChannel(AddressOf(*method.service()), BearerFor(PathOf(method)));
    return common::RawBytesCall(channel.get(), method, bytes, absl::Seconds(20));
  }

  static std::vector<const MethodDescriptor*> AllMethods() {
    std::vector<const MethodDescriptor*> methods;
    for (const char* name : {cellar::v1::Master::service_full_name(),
                             cellar::v1::Storage::service_full_name(),
                             cellar::v1::Admin::service_full_name()}) {
      const auto* service =
          google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
      for (int i = 0; i < service->method_count(); ++i) methods.push_back(service->method(i));
    }
    return methods;
  }

  static tools::LocalCluster* cluster_;
  static std::map<common::Role, std::string>* tokens_;
};

tools::LocalCluster* HostileRequestTest::cluster_ = nullptr;
std::map<common::Role, std::string>* HostileRequestTest::tokens_ = nullptr;

// What a storage holds for `oid` (Storage.Load of the newest revision).
absl::StatusOr<std::string> LoadFrom(const std::string& address, const std::string& bearer,
                                     uint64_t oid) {
  auto stub = cellar::v1::Storage::NewStub(common::MakeChannel(address, bearer));
  grpc::ClientContext context;
  common::SetDeadline(&context, absl::Seconds(10));
  cellar::v1::LoadRequest request;
  request.set_oid(oid);
  request.set_before_tid(common::kMaxTid);
  cellar::v1::LoadResponse response;
  grpc::Status s = stub->Load(&context, request, &response);
  if (!s.ok()) return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                                   s.error_message());
  return response.data();
}

// Storage (and admin, master) node ids and their states, clients left out
// (the walk registers some).
std::map<uint32_t, cellar::v1::NodeState> ClusterNodes(cellar::v1::Master::StubInterface& master,
                                                       cellar::v1::ClusterState* state) {
  const cellar::v1::GetClusterInfoResponse info = testing_support::ClusterInfo(master);
  *state = info.cluster_state();
  std::map<uint32_t, cellar::v1::NodeState> nodes;
  for (const cellar::v1::NodeInfo& node : info.nodes()) {
    if (node.role() != cellar::v1::NODE_ROLE_CLIENT) nodes[node.node_id()] = node.state();
  }
  return nodes;
}

TEST_F(HostileRequestTest, EveryRpcRefusesHostileRequestsAndLosesNothing) {
  client::ClientOptions client_options;
  client_options.master_addresses = {cluster_->master_address()};
  client_options.cluster_name = tools::LocalClusterOptions().cluster_name;
  client_options.token = tokens_->at(common::Role::kClient);
  auto client = client::Client::Connect(client_options);
  ASSERT_THAT(client, common::IsOk());

  // Known objects before the walk.
  std::map<uint64_t, std::string> before;
  {
    auto txn = (*client)->NewTransaction();
    for (int i = 0; i < 8; ++i) {
      auto oid = (*client)->NewOid();
      ASSERT_THAT(oid, common::IsOk());
      before[*oid] = absl::StrCat("before the walk ", i);
      txn->Store(*oid, 0, before[*oid]);
    }
    ASSERT_THAT(txn->Commit(), common::IsOk());
  }
  auto master = cellar::v1::Master::NewStub(
      common::MakeChannel(cluster_->master_address(), tokens_->at(common::Role::kAdmin)));
  cellar::v1::ClusterState state_before;
  const auto nodes_before = ClusterNodes(*master, &state_before);
  ASSERT_EQ(state_before, cellar::v1::CLUSTER_RUNNING);

  int rpcs = 0;
  int requests = 0;
  std::map<grpc::StatusCode, int> codes;
  std::vector<std::string> answered;  // requests answered OK
  for (const MethodDescriptor* method : AllMethods()) {
    ++rpcs;
    const std::string path = PathOf(*method);
    for (const HostileRequest& request : HostileRequests(*method)) {
      ++requests;
      const grpc::Status s = Call(*method, request.bytes);
      ++codes[s.error_code()];
      if (s.ok()) answered.push_back(absl::StrCat(method->name(), " (", request.what, ")"));
      const std::string where = absl::StrCat(path, " (", request.what, "): ", s.error_code(),
                                             " ", Abbreviated(s.error_message()));
      EXPECT_NE(s.error_code(), grpc::StatusCode::UNKNOWN) << where;
      EXPECT_NE(s.error_code(), grpc::StatusCode::INTERNAL) << where;
      EXPECT_LE(s.error_message().size(), kMaxMessageBytes) << where;
      EXPECT_FALSE(absl::StrContains(s.error_message(), std::string(kMaxEcho, kFill)))
          << "echoes the input: " << where;
      if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
        EXPECT_TRUE(NamesAField(s.error_message(), *method->input_type()))
            << "names no field: " << where;
      }
      if (request.bytes.empty() && EmptyMustBeInvalid().count(path) > 0) {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
            << "an empty request must be refused: " << where;
      }
    }
  }
  std::cerr << "walked " << rpcs << " rpcs with " << requests << " requests; codes:";
  for (const auto& [code, n] : codes) std::cerr << " " << code << "x" << n;
  std::cerr << "\nanswered OK: " << absl::StrJoin(answered, ", ") << "\n";
  const auto cellar_rpcs = std::count_if(
      common::MethodRoles().begin(), common::MethodRoles().end(),
      [](const auto& entry) { return absl::StartsWith(entry.first, "/cellar.v1."); });
  EXPECT_EQ(rpcs, cellar_rpcs) << "every rpc of the method table is walked";

  // Nothing lost, nothing changed.
  cellar::v1::ClusterState state_after;
  EXPECT_EQ(ClusterNodes(*master, &state_after), nodes_before);
  EXPECT_EQ(state_after, cellar::v1::CLUSTER_RUNNING);
  for (int i = 0; i < cluster_->num_storages(); ++i) {
    for (const auto& [oid, data] : before) {
      absl::StatusOr<std::string> held =
          LoadFrom(cluster_->storage_address(i), tokens_->at(common::Role::kNode), oid);
      ASSERT_THAT(held, common::IsOk()) << "storage " << i << " oid " << oid;
      EXPECT_EQ(*held, data) << "storage " << i << " oid " << oid;
    }
  }
  // A new client: new OIDs from the master, not from a batch taken before.
  auto after = client::Client::Connect(client_options);
  ASSERT_THAT(after, common::IsOk());
  auto txn = (*after)->NewTransaction();
  auto oid = (*after)->NewOid();
  ASSERT_THAT(oid, common::IsOk());
  txn->Store(*oid, 0, "after the walk");
  EXPECT_THAT(txn->Commit(), common::IsOk());
  auto loaded = (*after)->Load(*oid);
  ASSERT_THAT(loaded, common::IsOk());
  EXPECT_EQ(loaded->data, "after the walk");
}

}  // namespace
}  // namespace cellar
