#include "tools/cellarctl/commands.h"

#include <cstdlib>
#include <fstream>
#include <array>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>

#include "absl/synchronization/mutex.h"
#include "client/testing/fake_cluster.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "services/common/auth_tokens.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/status_matchers.h"

namespace cellar::cellarctl {
namespace {

using ::cellar::client::testing::FakeCluster;
using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

struct Result {
  int code;
  std::string out;
  std::string err;
};

google::protobuf::Struct ParseJson(const std::string& text) {
  google::protobuf::Struct json;
  auto status = google::protobuf::util::JsonStringToMessage(text, &json);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << text;
  return json;
}

const google::protobuf::Value& Field(const google::protobuf::Struct& s,
                                     const std::string& key) {
  static const google::protobuf::Value* const kMissing =
      new google::protobuf::Value();
  auto it = s.fields().find(key);
  EXPECT_NE(it, s.fields().end()) << "missing key " << key;
  return it == s.fields().end() ? *kMissing : it->second;
}

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = FakeCluster::Start();
    ASSERT_THAT(cluster, IsOk());
    cluster_ = *std::move(cluster);
  }

  // Runs cellarctl with `args` against the fake cluster.
  Result Cellarctl(std::vector<std::string> args, const std::string& stdin_data = "") {
    args.insert(args.begin(), {"--master", cluster_->master_address(),
                               "--timeout=5s"});
    return RunRaw(args, stdin_data);
  }

  Result RunRaw(const std::vector<std::string>& args,
                const std::string& stdin_data = "") {
    absl::StatusOr<CommandLine> command_line = ParseCommandLine(args);
    if (!command_line.ok()) return {-1, "", std::string(command_line.status().message())};
    std::istringstream in(stdin_data);
    std::ostringstream out;
    std::ostringstream err;
    const int code = cellarctl::Run(*command_line, Io{in, out, err});
    return {code, out.str(), err.str()};
  }

  std::unique_ptr<FakeCluster> cluster_;
};

TEST(ParseCommandLineTest, GlobalFlagsAnywhere) {
  auto parsed = ParseCommandLine({"get", "0x1", "--json", "--at", "5",
                                  "--master=a:1,b:2", "--cluster", "c",
                                  "--timeout", "250ms"});
  ASSERT_THAT(parsed, IsOk());
  EXPECT_EQ(parsed->command, "get");
  EXPECT_THAT(parsed->args, ElementsAre("0x1", "--at", "5"));
  EXPECT_THAT(parsed->global.masters, ElementsAre("a:1", "b:2"));
  EXPECT_EQ(parsed->global.cluster, "c");
  EXPECT_TRUE(parsed->global.json);
  EXPECT_EQ(parsed->global.timeout, absl::Milliseconds(250));

  auto seconds = ParseCommandLine({"--timeout=2", "status"});
  ASSERT_THAT(seconds, IsOk());
  EXPECT_EQ(seconds->global.timeout, absl::Seconds(2));
  EXPECT_THAT(ParseCommandLine({"--timeout=soon", "status"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseCommandLine({"status", "--master"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // After "--", nothing is a flag: data may start with dashes.
  auto dashes = ParseCommandLine({"put", "1", "--", "--json"});
  ASSERT_THAT(dashes, IsOk());
  EXPECT_FALSE(dashes->global.json);
  EXPECT_THAT(dashes->args, ElementsAre("1", "--", "--json"));
}

TEST_F(CommandsTest, HelpAndUsageErrors) {
  Result help = RunRaw({"help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_THAT(help.out, HasSubstr("examples:"));
  EXPECT_EQ(RunRaw({"--help"}).out, help.out);
  Result none = RunRaw({});
  EXPECT_EQ(none.code, kExitUsage);
  EXPECT_THAT(none.err, HasSubstr("usage:"));
  Result unknown = Cellarctl({"frobnicate"});
  EXPECT_EQ(unknown.code, kExitUsage);
  EXPECT_THAT(unknown.err, StartsWith("error: INVALID_ARGUMENT: unknown command"));
  EXPECT_EQ(Cellarctl({"get", "zz"}).code, kExitUsage);
  EXPECT_EQ(Cellarctl({"get"}).code, kExitUsage);
  EXPECT_EQ(Cellarctl({"history", "1", "--limit", "0"}).code, kExitUsage);
  EXPECT_EQ(Cellarctl({"get", "1", "--bogus"}).code, kExitUsage);
}

TEST_F(CommandsTest, StatusText) {
  Result r = Cellarctl({"status"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("cluster     cellar\n"));
  EXPECT_THAT(r.out, HasSubstr("state       RUNNING (operational)\n"));
  EXPECT_THAT(r.out, HasSubstr("last tid    0x"));
  EXPECT_THAT(r.out, HasSubstr("partitions  4 (replicas 1, ptid 1)"));
  EXPECT_THAT(r.out, HasSubstr("NODE  ROLE     ADDRESS"));
  EXPECT_THAT(r.out, HasSubstr("S1    storage  " + cluster_->storage(1).address()));
  EXPECT_THAT(r.out, HasSubstr("S2    storage  " + cluster_->storage(2).address()));
  EXPECT_THAT(r.out, HasSubstr("ptid 1, 4 partitions, 1 replicas"));
  EXPECT_THAT(r.out, HasSubstr("   0 |    U    U"));
}

TEST_F(CommandsTest, StatusJsonParses) {
  cluster_->master().SetCellState(3, 2, ::cellar::v1::CELL_OUT_OF_DATE);
  Result r = Cellarctl({"status", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  google::protobuf::Struct json = ParseJson(r.out);
  EXPECT_EQ(Field(json, "cluster_name").string_value(), "cellar");
  EXPECT_EQ(Field(json, "cluster_state").string_value(), "RUNNING");
  EXPECT_TRUE(Field(json, "operational").bool_value());
  EXPECT_EQ(Field(json, "num_partitions").number_value(), 4);
  EXPECT_EQ(Field(json, "ptid").number_value(), 2);
  EXPECT_THAT(Field(json, "last_tid").string_value(), StartsWith("0x"));
  const auto& nodes = Field(json, "nodes").list_value();
  ASSERT_EQ(nodes.values_size(), 2);
  EXPECT_EQ(Field(nodes.values(0).struct_value(), "id").string_value(), "S1");
  EXPECT_EQ(Field(nodes.values(0).struct_value(), "address").string_value(),
            cluster_->storage(1).address());
  const auto& rows = Field(json, "partition_table").list_value();
  ASSERT_EQ(rows.values_size(), 4);
  const auto& cells = Field(rows.values(3).struct_value(), "cells").list_value();
  bool saw_out_of_date = false;
  for (const auto& cell : cells.values()) {
    if (Field(cell.struct_value(), "state").string_value() == "OUT_OF_DATE") {
      saw_out_of_date = true;
    }
  }
  EXPECT_TRUE(saw_out_of_date);
}

// 4 partitions, 1 replica: every partition on S1 and S2 (the fake's table).
::cellar::v1::GetPartitionStatsResponse Stats(std::vector<std::array<uint64_t, 4>> cells) {
  ::cellar::v1::GetPartitionStatsResponse out;
  for (const auto& [partition, objects, revisions, bytes] : cells) {
    ::cellar::v1::PartitionStats* p = out.add_partitions();
    p->set_partition(static_cast<uint32_t>(partition));
    p->set_readable(true);
    p->set_objects(objects);
    p->set_revisions(revisions);
    p->set_bytes(bytes);
  }
  return out;
}

TEST_F(CommandsTest, StatusShowsTheSizesOfEachStorageAndTheClusterOnce) {
  auto all = Stats({{0, 1, 2, 1024}, {1, 2, 3, 2048}, {2, 3, 4, 1 << 20}, {3, 4, 5, 512}});
  cluster_->storage(1).SetPartitionStats(all);
  all.mutable_partitions(3)->set_readable(false);  // S2's copy of 3 is being filled
  cluster_->storage(2).SetPartitionStats(all);
  Result r = Cellarctl({"status"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("data        10 objects, 14 revisions, 1.0 MiB\n"));
  EXPECT_THAT(r.out, HasSubstr("STORAGE  OBJECTS  REVISIONS  SIZE     CELLS"));
  EXPECT_THAT(r.out, HasSubstr("S1       10       14         1.0 MiB  4 readable"));
  EXPECT_THAT(r.out, HasSubstr("S2       6        9          1.0 MiB  3 readable"));

  Result json = Cellarctl({"status", "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  const google::protobuf::Struct parsed = ParseJson(json.out);
  const auto& data = Field(parsed, "data").struct_value();
  EXPECT_EQ(Field(data, "objects").number_value(), 10);
  EXPECT_EQ(Field(data, "revisions").number_value(), 14);
  EXPECT_EQ(Field(data, "bytes").number_value(), 1024 + 2048 + (1 << 20) + 512);
  EXPECT_EQ(Field(data, "partitions_counted").number_value(), 4);
  const auto& storages = Field(data, "storages").list_value();
  ASSERT_EQ(storages.values_size(), 2);
  EXPECT_EQ(Field(storages.values(1).struct_value(), "id").string_value(), "S2");
  EXPECT_EQ(Field(storages.values(1).struct_value(), "objects").number_value(), 6);
}

TEST_F(CommandsTest, StatusWithoutSizesSaysSoAndStillAnswers) {
  // S1 answers with partitions 0 and 1 only; S2 does not answer.
  cluster_->storage(1).SetPartitionStats(Stats({{0, 1, 1, 10}, {1, 1, 1, 10}}));
  Result r = Cellarctl({"status"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("data        unknown (2 of 4 partitions"));
  EXPECT_THAT(r.out, HasSubstr("S2       ?        ?          ?     no answer: "));
  Result json = Cellarctl({"status", "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  const google::protobuf::Struct parsed = ParseJson(json.out);
  const auto& data = Field(parsed, "data").struct_value();
  EXPECT_FALSE(data.fields().contains("objects")) << "no partial total";
  EXPECT_EQ(Field(data, "partitions_counted").number_value(), 2);
  const auto& s2 = Field(data, "storages").list_value().values(1).struct_value();
  EXPECT_FALSE(s2.fields().contains("objects"));
  EXPECT_THAT(Field(s2, "error").string_value(), HasSubstr("UNIMPLEMENTED"));
}

TEST_F(CommandsTest, PutGetHistoryRoundTrip) {
  Result put = Cellarctl({"put", "new", "hello"});
  ASSERT_EQ(put.code, 0) << put.err;
  EXPECT_THAT(put.out, StartsWith("oid 0x1\ntid 0x"));
  const std::string first_tid = put.out.substr(put.out.find("tid ") + 4, 18);

  Result put2 = Cellarctl({"put", "0x1", "world"});  // reads the serial first
  ASSERT_EQ(put2.code, 0) << put2.err;

  Result get = Cellarctl({"get", "1"});
  ASSERT_EQ(get.code, 0) << get.err;
  EXPECT_EQ(get.out, "world\n");
  EXPECT_THAT(get.err, HasSubstr("serial 0x"));
  EXPECT_THAT(get.err, HasSubstr("next_serial none"));

  Result old = Cellarctl({"get", "0x1", "--at", first_tid, "--raw"});
  ASSERT_EQ(old.code, 0) << old.err;
  EXPECT_EQ(old.out, "hello");

  Result history = Cellarctl({"history", "0x1"});
  ASSERT_EQ(history.code, 0) << history.err;
  EXPECT_THAT(history.out, HasSubstr("oid 0x1: 2 revision(s)"));
  EXPECT_THAT(history.out, HasSubstr(first_tid));

  Result history_json = Cellarctl({"--json", "history", "0x1", "--limit=1"});
  ASSERT_EQ(history_json.code, 0) << history_json.err;
  google::protobuf::Struct json = ParseJson(history_json.out);
  EXPECT_EQ(Field(json, "revisions").list_value().values_size(), 1);
}

TEST_F(CommandsTest, PutFromStdinAndFile) {
  Result from_stdin = Cellarctl({"put", "0", "-"}, std::string("a\0b", 3));
  ASSERT_EQ(from_stdin.code, 0) << from_stdin.err;
  Result get = Cellarctl({"get", "0", "--json"});
  ASSERT_EQ(get.code, 0) << get.err;
  google::protobuf::Struct json = ParseJson(get.out);
  EXPECT_EQ(Field(json, "data_base64").string_value(), "YQBi");
  EXPECT_EQ(Field(json, "size").number_value(), 3);
  EXPECT_TRUE(Field(json, "next_serial").has_null_value());

  const std::string path =
      std::string(std::getenv("TEST_TMPDIR")) + "/object.bin";
  {
    std::ofstream file(path, std::ios::binary);
    file << "from a file";
  }
  Result from_file = Cellarctl({"put", "7", "@" + path, "--json"});
  ASSERT_EQ(from_file.code, 0) << from_file.err;
  google::protobuf::Struct put_json = ParseJson(from_file.out);
  EXPECT_EQ(Field(put_json, "oid").string_value(), "0x7");
  EXPECT_EQ(Field(put_json, "size").number_value(), 11);
  EXPECT_EQ(Cellarctl({"get", "7", "--raw"}).out, "from a file");
  EXPECT_EQ(Cellarctl({"put", "7", "@/nonexistent/file"}).code, kExitUsage);
}

TEST_F(CommandsTest, LastTransactions) {
  ASSERT_EQ(Cellarctl({"put", "1", "a"}).code, 0);
  ASSERT_EQ(Cellarctl({"put", "2", "b"}).code, 0);
  ASSERT_EQ(Cellarctl({"put", "3", "c"}).code, 0);
  Result text = Cellarctl({"last-transactions", "--limit", "2"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_THAT(text.out, StartsWith("TID "));
  EXPECT_THAT(text.out, HasSubstr("cellarctl put 0x3"));
  EXPECT_THAT(text.out, ::testing::Not(HasSubstr("cellarctl put 0x1")));
  Result json_text = Cellarctl({"last-transactions", "--json"});
  ASSERT_EQ(json_text.code, 0) << json_text.err;
  google::protobuf::Struct json = ParseJson(json_text.out);
  const auto& txns = Field(json, "transactions").list_value();
  ASSERT_EQ(txns.values_size(), 3);
  EXPECT_EQ(Field(txns.values(0).struct_value(), "description").string_value(),
            "cellarctl put 0x3");
  EXPECT_EQ(Field(txns.values(0).struct_value(), "oids")
                .list_value()
                .values(0)
                .string_value(),
            "0x3");
}

TEST_F(CommandsTest, ErrorsHaveCodesAndExitStatus) {
  Result missing = Cellarctl({"get", "0x999"});
  EXPECT_EQ(missing.code, kExitNotFound);
  EXPECT_THAT(missing.err, StartsWith("error: NOT_FOUND: "));
  EXPECT_THAT(missing.err, HasSubstr("[reason: NO_SUCH_OBJECT]"));

  Result missing_json = Cellarctl({"get", "0x999", "--json"});
  EXPECT_EQ(missing_json.code, kExitNotFound);
  google::protobuf::Struct json = ParseJson(missing_json.out);
  const auto& error = Field(json, "error").struct_value();
  EXPECT_EQ(Field(error, "code").string_value(), "NOT_FOUND");
  EXPECT_EQ(Field(error, "reason").string_value(), "NO_SUCH_OBJECT");

  Result wrong_cluster = Cellarctl({"--cluster=prod", "status"});
  EXPECT_EQ(wrong_cluster.code, kExitFailedPrecondition);
  EXPECT_THAT(wrong_cluster.err, HasSubstr("WRONG_CLUSTER"));
  EXPECT_EQ(Cellarctl({"--cluster=prod", "put", "1", "x"}).code,
            kExitFailedPrecondition);

  cluster_->master().SetClusterState(::cellar::v1::CLUSTER_RECOVERING);
  Result not_running = Cellarctl({"put", "1", "x"});
  EXPECT_EQ(not_running.code, kExitFailedPrecondition);
  EXPECT_THAT(not_running.err, HasSubstr("CLUSTER_NOT_RUNNING"));
  cluster_->master().SetClusterState(::cellar::v1::CLUSTER_RUNNING);

  cluster_->storage(1).SetCorruptLoads(true);
  cluster_->storage(2).SetCorruptLoads(true);
  ASSERT_EQ(Cellarctl({"put", "4", "x"}).code, 0);
  EXPECT_EQ(Cellarctl({"get", "4"}).code, kExitDataLoss);

  const std::string address = cluster_->master_address();
  cluster_->master().Shutdown();
  Result down = RunRaw({"--master", address, "--timeout=300ms", "status"});
  EXPECT_EQ(down.code, kExitUnavailable);
  EXPECT_THAT(down.err, StartsWith("error: UNAVAILABLE: "));
  EXPECT_EQ(RunRaw({"--master", address, "--timeout=300ms", "get", "1"}).code,
            kExitUnavailable);
}

// ---- Operator actions against a canned cellar.v1.Admin --------------------

// Records each request; answers canned values, or `error` when set.
class FakeAdmin final : public ::cellar::v1::Admin::Service {
 public:
  FakeAdmin() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~FakeAdmin() override { server_->Shutdown(); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  void SetError(const absl::Status& status) {
    absl::MutexLock l(&mu_);
    error_ = status;
  }
  void SetChange(const ::cellar::v1::PartitionTableChangeResponse& r) {
    absl::MutexLock l(&mu_);
    change_ = r;
  }
  // GetCheckStatus answers these in turn (the last one repeatedly).
  void SetCheckStatuses(std::vector<::cellar::v1::AdminGetCheckStatusResponse> statuses) {
    absl::MutexLock l(&mu_);
    statuses_ = std::move(statuses);
  }
  // The last request (of any rpc) and its rpc name.
  std::string last() const {
    absl::MutexLock l(&mu_);
    return last_;
  }
  template <typename T>
  T request() const {
    absl::MutexLock l(&mu_);
    T out;
    if (request_ && request_->GetDescriptor() == T::descriptor()) out.CopyFrom(*request_);
    return out;
  }
  int calls() const {
    absl::MutexLock l(&mu_);
    return calls_;
  }

  grpc::Status SetClusterState(grpc::ServerContext*,
                               const ::cellar::v1::AdminSetClusterStateRequest* req,
                               ::cellar::v1::AdminSetClusterStateResponse* resp) override {
    resp->set_cluster_state(req->state());
    return Record("SetClusterState", *req);
  }
  grpc::Status TweakPartitionTable(grpc::ServerContext*,
                                   const ::cellar::v1::TweakPartitionTableRequest* req,
                                   ::cellar::v1::PartitionTableChangeResponse* resp) override {
    return Change("TweakPartitionTable", *req, req->dry_run(), resp);
  }
  grpc::Status AddStorages(grpc::ServerContext*, const ::cellar::v1::AddStoragesRequest* req,
                           ::cellar::v1::PartitionTableChangeResponse* resp) override {
    return Change("AddStorages", *req, req->dry_run(), resp);
  }
  grpc::Status DropStorage(grpc::ServerContext*, const ::cellar::v1::DropStorageRequest* req,
                           ::cellar::v1::PartitionTableChangeResponse* resp) override {
    return Change("DropStorage", *req, req->dry_run(), resp);
  }
  grpc::Status SetReplicas(grpc::ServerContext*, const ::cellar::v1::SetReplicasRequest* req,
                           ::cellar::v1::PartitionTableChangeResponse* resp) override {
    return Change("SetReplicas", *req, req->dry_run(), resp);
  }
  grpc::Status KillNode(grpc::ServerContext*, const ::cellar::v1::AdminKillNodeRequest* req,
                        ::cellar::v1::AdminKillNodeResponse* resp) override {
    resp->set_name(req->name().empty() ? common::NodeName(req->node_id()) : req->name());
    resp->mutable_node()->set_state(::cellar::v1::NODE_DOWN);
    resp->set_stopped(req->stop());
    return Record("KillNode", *req);
  }
  grpc::Status CheckReplicas(grpc::ServerContext*,
                             const ::cellar::v1::AdminCheckReplicasRequest* req,
                             ::cellar::v1::AdminCheckReplicasResponse* resp) override {
    resp->set_check_id(7);
    return Record("CheckReplicas", *req);
  }
  grpc::Status GetCheckStatus(grpc::ServerContext*,
                              const ::cellar::v1::AdminGetCheckStatusRequest* req,
                              ::cellar::v1::AdminGetCheckStatusResponse* resp) override {
    {
      absl::MutexLock l(&mu_);
      if (!statuses_.empty()) {
        *resp = statuses_.front();
        if (statuses_.size() > 1) statuses_.erase(statuses_.begin());
      }
    }
    return Record("GetCheckStatus", *req);
  }
  grpc::Status RepairCell(grpc::ServerContext*, const ::cellar::v1::AdminRepairCellRequest* req,
                          ::cellar::v1::AdminRepairCellResponse* resp) override {
    resp->set_ptid(5);
    return Record("RepairCell", *req);
  }
  grpc::Status Truncate(grpc::ServerContext*, const ::cellar::v1::AdminTruncateRequest* req,
                        ::cellar::v1::AdminTruncateResponse* resp) override {
    resp->set_last_tid(req->tid());
    resp->set_last_tid_time(common::TidTime(req->tid()));
    resp->set_cluster_state(::cellar::v1::CLUSTER_RUNNING);
    return Record("Truncate", *req);
  }
  // Pack answers "in progress" on S1; GetPackStatus then answers done.
  grpc::Status Pack(grpc::ServerContext*, const ::cellar::v1::AdminPackRequest* req,
                    ::cellar::v1::AdminPackResponse* resp) override {
    ::cellar::v1::StoragePackProgress* s1 = resp->mutable_status()->add_storages();
    resp->mutable_status()->set_pack_tid(req->pack_tid());
    s1->set_node_id(1);
    s1->set_pack_tid(req->pack_tid());
    s1->add_pending_partitions(2);
    s1->add_done_partitions(0);
    resp->set_pack_tid_time(common::TidTime(req->pack_tid()));
    return Record("Pack", *req);
  }
  grpc::Status GetPackStatus(grpc::ServerContext*,
                             const ::cellar::v1::AdminGetPackStatusRequest* req,
                             ::cellar::v1::AdminGetPackStatusResponse* resp) override {
    const uint64_t tid = 0x040d2da025932acc;
    resp->mutable_status()->set_pack_tid(tid);
    resp->mutable_status()->set_done(true);
    ::cellar::v1::StoragePackProgress* s1 = resp->mutable_status()->add_storages();
    s1->set_node_id(1);
    s1->set_pack_tid(tid);
    s1->add_done_partitions(0);
    s1->add_done_partitions(2);
    s1->set_rows_removed(40);
    s1->set_bytes_removed(4096);
    resp->set_pack_tid_time(common::TidTime(tid));
    return Record("GetPackStatus", *req);
  }
  grpc::Status StopNode(grpc::ServerContext*, const ::cellar::v1::StopNodeRequest* req,
                        ::cellar::v1::StopNodeResponse* resp) override {
    resp->set_name(req->name());
    resp->set_address("127.0.0.1:7201");
    resp->set_stopped(true);
    return Record("StopNode", *req);
  }
  grpc::Status CreateToken(grpc::ServerContext*, const ::cellar::v1::AdminCreateTokenRequest* req,
                           ::cellar::v1::CreateTokenResponse* resp) override {
    resp->set_token("cellar_0000beef_" + std::string(64, 'a'));
    resp->mutable_info()->set_id("0000beef");
    resp->mutable_info()->set_name(req->name());
    resp->mutable_info()->set_role(req->role());
    return Record("CreateToken", *req);
  }
  grpc::Status ListTokens(grpc::ServerContext*, const ::cellar::v1::AdminListTokensRequest* req,
                          ::cellar::v1::ListTokensResponse* resp) override {
    ::cellar::v1::TokenInfo* file = resp->add_tokens();
    file->set_id("0000aaaa");
    file->set_name("ops on-call");
    file->set_role(::cellar::v1::TOKEN_ROLE_ADMIN);
    file->set_source(::cellar::v1::TOKEN_SOURCE_FILE);
    ::cellar::v1::TokenInfo* made = resp->add_tokens();
    made->set_id("0000beef");
    made->set_name("billing");
    made->set_role(::cellar::v1::TOKEN_ROLE_CLIENT);
    made->set_source(::cellar::v1::TOKEN_SOURCE_CLUSTER);
    made->set_revoked(true);
    made->mutable_created_time()->set_seconds(1800000000);
    resp->set_version(3);
    return Record("ListTokens", *req);
  }
  grpc::Status RevokeToken(grpc::ServerContext*, const ::cellar::v1::AdminRevokeTokenRequest* req,
                           ::cellar::v1::RevokeTokenResponse* resp) override {
    resp->mutable_info()->set_id(req->id());
    resp->mutable_info()->set_name("billing");
    resp->mutable_info()->set_revoked(true);
    return Record("RevokeToken", *req);
  }
  grpc::Status ListVersions(grpc::ServerContext*, const ::cellar::v1::AdminListVersionsRequest* req,
                            ::cellar::v1::ListVersionsResponse* resp) override {
    ::cellar::v1::VersionInfo* v = resp->add_versions();
    v->set_version("0.2.0");
    v->set_track("canary");
    v->set_storages(1);
    v->add_node_ids(4);
    v->set_restarts(3);
    v->set_quarantined(true);
    v->set_reason("a node restarted 3 times");
    v->set_quarantined_by("auto");
    v->set_quarantined_unix_ms(1800000000000);
    ::cellar::v1::VersionDecisionRecord* d = resp->add_history();
    d->set_unix_ms(1800000000000);
    d->set_version("0.2.0");
    d->set_track("canary");
    d->set_action("quarantine");
    d->set_by("auto");
    d->set_reason("a node restarted 3 times");
    resp->set_quarantine_restarts(3);
    return Record("ListVersions", *req);
  }
  grpc::Status QuarantineVersion(grpc::ServerContext*,
                                 const ::cellar::v1::AdminQuarantineVersionRequest* req,
                                 ::cellar::v1::QuarantineVersionResponse* resp) override {
    resp->set_changed(true);
    resp->mutable_version()->set_version(req->version());
    resp->mutable_version()->set_track(req->track());
    resp->mutable_version()->set_quarantined(true);
    return Record("QuarantineVersion", *req);
  }
  grpc::Status UnquarantineVersion(grpc::ServerContext*,
                                   const ::cellar::v1::AdminQuarantineVersionRequest* req,
                                   ::cellar::v1::QuarantineVersionResponse* resp) override {
    resp->mutable_version()->set_version(req->version());
    resp->mutable_version()->set_track(req->track());
    return Record("UnquarantineVersion", *req);
  }
  grpc::Status GetCanaryAnalysis(grpc::ServerContext*,
                                 const ::cellar::v1::AdminGetCanaryAnalysisRequest* req,
                                 ::cellar::v1::GetCanaryAnalysisResponse* resp) override {
    ::cellar::v1::CanaryVersionAnalysis* c = resp->add_canaries();
    c->set_version("0.2.0");
    c->set_track("canary");
    c->set_verdict("rollback");
    c->set_reason("error ratio 0.3000 above 0.01 (30 errors in 100 calls)");
    c->set_quarantined(true);
    ::cellar::v1::CanaryIntervalResult* r = c->add_intervals();
    r->set_end_unix_ms(1800000000000);
    r->set_outcome("fail");
    r->set_loads(100);
    r->set_load_errors(30);
    r->set_error_ratio(0.3);
    r->set_load_p99_ms(2);
    r->set_stable_load_p99_ms(1);
    resp->set_interval_ms(60000);
    resp->set_max_error_ratio(0.01);
    resp->set_max_latency_ratio(2);
    resp->set_min_requests(100);
    resp->set_promote_after(5);
    return Record("GetCanaryAnalysis", *req);
  }

 private:
  grpc::Status Record(const std::string& name, const google::protobuf::Message& req) {
    absl::MutexLock l(&mu_);
    ++calls_;
    last_ = name;
    request_.reset(req.New());
    request_->CopyFrom(req);
    return common::ToGrpcStatus(error_);
  }
  grpc::Status Change(const std::string& name, const google::protobuf::Message& req,
                      bool dry_run, ::cellar::v1::PartitionTableChangeResponse* resp) {
    {
      absl::MutexLock l(&mu_);
      *resp = change_;
    }
    resp->set_dry_run(dry_run);
    return Record(name, req);
  }

  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  mutable absl::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  ::cellar::v1::PartitionTableChangeResponse change_ ABSL_GUARDED_BY(mu_);
  std::vector<::cellar::v1::AdminGetCheckStatusResponse> statuses_ ABSL_GUARDED_BY(mu_);
  std::string last_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<google::protobuf::Message> request_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

class ActionsTest : public CommandsTest {
 protected:
  Result Ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"--admin", admin_.address(), "--timeout=5s"});
    return RunRaw(args);
  }
  FakeAdmin admin_;
};

TEST(ParseCommandLineTest, AdminAndClusterFlags) {
  auto parsed = ParseCommandLine({"tweak", "--admin=10.0.0.1:7300", "--dry-run"});
  ASSERT_THAT(parsed, IsOk());
  EXPECT_EQ(parsed->global.admin, "10.0.0.1:7300");
  EXPECT_FALSE(parsed->global.cluster_given);
  EXPECT_THAT(parsed->args, ElementsAre("--dry-run"));
  auto named = ParseCommandLine({"--cluster", "prod", "tweak"});
  ASSERT_THAT(named, IsOk());
  EXPECT_TRUE(named->global.cluster_given);
  EXPECT_THAT(ParseCommandLine({"tweak", "--admin="}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ParseCommandLineTest, TokenFileIsRead) {
  const std::string path = ::testing::TempDir() + "/cellarctl_token";
  std::ofstream(path) << "cellar_0123abcd_secret\n";
  auto parsed = ParseCommandLine({"status", "--token-file", path});
  ASSERT_THAT(parsed, IsOk());
  EXPECT_EQ(parsed->global.token, "cellar_0123abcd_secret");
  EXPECT_THAT(ParseCommandLine({"status", "--token-file=/nonexistent/token"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ParseCommandLineTest, TlsFlagsAndTheirEnvironmentVariables) {
  auto plain = ParseCommandLine({"status"});
  ASSERT_THAT(plain, IsOk());
  EXPECT_FALSE(TlsConfigOf(plain->global).has_value());

  auto parsed = ParseCommandLine({"status", "--tls-ca=/etc/ca.pem", "--tls-cert", "/etc/c.pem",
                                  "--tls-server-name=cellar.internal"});
  ASSERT_THAT(parsed, IsOk());
  setenv("CELLAR_TLS_CA", "/env/ca.pem", 1);
  setenv("CELLAR_TLS_KEY", "/env/c.key", 1);
  FillFromEnvironment(parsed->global);  // flags win, the key comes from the environment
  unsetenv("CELLAR_TLS_CA");
  unsetenv("CELLAR_TLS_KEY");
  auto tls = TlsConfigOf(parsed->global);
  ASSERT_TRUE(tls.has_value());
  EXPECT_EQ(tls->ca_file, "/etc/ca.pem");
  EXPECT_EQ(tls->cert_file, "/etc/c.pem");
  EXPECT_EQ(tls->key_file, "/env/c.key");
  EXPECT_EQ(tls->server_name, "cellar.internal");
  EXPECT_THAT(ParseCommandLine({"status", "--tls-ca"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(StatusCommandTest, AnUnreadableTlsFileIsAUsageErrorNamingTheFlag) {
  auto parsed = ParseCommandLine({"status", "--tls-ca=/nonexistent/ca.pem"});
  ASSERT_THAT(parsed, IsOk());
  std::istringstream in;
  std::ostringstream out, err;
  EXPECT_EQ(cellarctl::Run(*parsed, Io{in, out, err}), kExitUsage);
  EXPECT_THAT(err.str(), ::testing::HasSubstr("--tls-ca: cannot read '/nonexistent/ca.pem'"));
}

// The chart's exec probe with TLS: exit 0 on SERVING only.
TEST(HealthCommandTest, ServingNotServingUnknownAndUnreachable) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  // A sync server needs one service of its own beside the health service.
  ::cellar::v1::Admin::Service unimplemented;
  builder.RegisterService(&unimplemented);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  server->GetHealthCheckService()->SetServingStatus("cellar.v1.Storage.Ready", false);
  const std::string address = "127.0.0.1:" + std::to_string(port);
  auto run = [](std::vector<std::string> args, std::string* out = nullptr) {
    auto parsed = ParseCommandLine(args);
    EXPECT_THAT(parsed, IsOk());
    std::istringstream in;
    std::ostringstream o, err;
    const int code = cellarctl::Run(*parsed, Io{in, o, err});
    if (out != nullptr) *out = o.str() + err.str();
    return code;
  };
  std::string out;
  EXPECT_EQ(run({"health", address, "--timeout=5s"}, &out), kExitOk);
  EXPECT_THAT(out, HasSubstr(": SERVING"));
  EXPECT_EQ(run({"health", address, "--service", "cellar.v1.Storage.Ready"}, &out), kExitUnavailable);
  EXPECT_THAT(out, HasSubstr("NOT_SERVING"));
  EXPECT_EQ(run({"health", address, "--service=no.such.Service"}), kExitNotFound);
  EXPECT_EQ(run({"--json", "health", address}, &out), kExitOk);
  EXPECT_EQ(Field(ParseJson(out), "status").string_value(), "SERVING");
  EXPECT_EQ(run({"health"}), kExitUsage);
  server->Shutdown();
  EXPECT_EQ(run({"health", address, "--timeout=500ms"}), kExitUnavailable);
}

TEST(TokenCommandTest, NewPrintsTheTokenOnceAndAppendsItsHashedLine) {
  const std::string file = ::testing::TempDir() + "/cellarctl_tokens";
  std::ofstream(file) << "# tokens\n";
  auto parsed = ParseCommandLine(
      {"token", "new", "--role", "readonly", "--name", "grafana", "--file", file});
  ASSERT_THAT(parsed, IsOk());
  std::istringstream in;
  std::ostringstream out;
  std::ostringstream err;
  ASSERT_EQ(cellarctl::Run(*parsed, Io{in, out, err}), kExitOk) << err.str();
  const std::string token = out.str().substr(0, out.str().size() - 1);
  auto split = common::ParseToken(token);
  ASSERT_THAT(split, IsOk());
  std::stringstream contents;
  contents << std::ifstream(file).rdbuf();
  auto table = common::ParseTokensFile(contents.str());
  ASSERT_THAT(table, IsOk());
  ASSERT_EQ(table->size(), 1u);
  EXPECT_EQ(table->at(split->id).role, common::Role::kReadonly);
  EXPECT_EQ(table->at(split->id).secret_sha256, common::Sha256Hex(split->secret));
  EXPECT_THAT(contents.str(), Not(HasSubstr(split->secret)));

  parsed = ParseCommandLine({"token", "new", "--role", "node", "--name", "x"});
  ASSERT_THAT(parsed, IsOk());
  EXPECT_EQ(cellarctl::Run(*parsed, Io{in, out, err}), kExitUsage);
}

TEST_F(ActionsTest, PartitionTableChangesSendNamesIdsAndDryRun) {
  ::cellar::v1::PartitionTableChangeResponse plan;
  plan.set_plan("partition 1: S4 OUT_OF_DATE\npartition 5: S4 OUT_OF_DATE\n");
  for (uint32_t p : {1u, 5u}) {
    auto* line = plan.add_listing();
    line->set_partition(p);
    line->set_node("S4");
    line->set_state(::cellar::v1::CELL_OUT_OF_DATE);
  }
  plan.add_warnings("partition 1: replicas S1 and S4 share zone z1");
  plan.set_ptid_before(3);
  plan.set_ptid(3);
  plan.set_num_replicas(1);
  admin_.SetChange(plan);

  Result add = Ctl({"add", "S4", "s5", "6", "--dry-run"});
  ASSERT_EQ(add.code, 0) << add.err;
  EXPECT_EQ(admin_.last(), "AddStorages");
  auto req = admin_.request<::cellar::v1::AddStoragesRequest>();
  EXPECT_THAT(req.names(), ElementsAre("S4", "S5"));
  EXPECT_THAT(req.node_ids(), ElementsAre(6u));
  EXPECT_TRUE(req.dry_run());
  EXPECT_EQ(req.cluster(), "") << "no --cluster: the admin's default";
  EXPECT_THAT(add.out, HasSubstr("PARTITION  NODE  NEW STATE\n1          S4    OUT_OF_DATE\n"));
  EXPECT_THAT(add.out, HasSubstr("  partition 5: S4 OUT_OF_DATE\n"));
  EXPECT_THAT(add.out, HasSubstr("dry run: nothing changed (ptid 3, replicas 1)"));
  EXPECT_THAT(add.out, HasSubstr("warning: partition 1: replicas S1 and S4 share zone z1"));

  Result json = Ctl({"--json", "--cluster=prod", "drop", "S3"});
  ASSERT_EQ(json.code, 0) << json.err;
  auto drop = admin_.request<::cellar::v1::DropStorageRequest>();
  EXPECT_EQ(drop.name(), "S3");
  EXPECT_FALSE(drop.dry_run());
  EXPECT_EQ(drop.cluster(), "prod");
  google::protobuf::Struct parsed = ParseJson(json.out);
  EXPECT_FALSE(Field(parsed, "dry_run").bool_value());
  EXPECT_EQ(Field(parsed, "ptid").number_value(), 3);
  const auto& changes = Field(parsed, "changes").list_value();
  ASSERT_EQ(changes.values_size(), 2);
  EXPECT_EQ(Field(changes.values(1).struct_value(), "partition").number_value(), 5);
  EXPECT_EQ(Field(changes.values(1).struct_value(), "node").string_value(), "S4");
  EXPECT_EQ(Field(changes.values(1).struct_value(), "state").string_value(), "OUT_OF_DATE");

  ASSERT_EQ(Ctl({"set-replicas", "2", "--dry-run"}).code, 0);
  EXPECT_EQ(admin_.request<::cellar::v1::SetReplicasRequest>().replicas(), 2u);
  ASSERT_EQ(Ctl({"tweak"}).code, 0);
  EXPECT_EQ(admin_.last(), "TweakPartitionTable");

  // Usage errors never reach the admin.
  const int calls = admin_.calls();
  EXPECT_EQ(Ctl({"add"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"add", "0"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"drop"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"set-replicas", "65"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"tweak", "--dry-run=yes"}).code, kExitUsage);
  EXPECT_EQ(admin_.calls(), calls);

  // An empty plan.
  admin_.SetChange(::cellar::v1::PartitionTableChangeResponse());
  Result empty = Ctl({"tweak", "--dry-run"});
  ASSERT_EQ(empty.code, 0) << empty.err;
  EXPECT_THAT(empty.out, HasSubstr("nothing to change"));

  // A change of R alone (no cell moves) is still applied.
  ::cellar::v1::PartitionTableChangeResponse replicas_only;
  replicas_only.set_applied(true);
  replicas_only.set_ptid_before(39);
  replicas_only.set_ptid(40);
  replicas_only.set_num_replicas(1);
  admin_.SetChange(replicas_only);
  Result lowered = Ctl({"set-replicas", "1"});
  ASSERT_EQ(lowered.code, 0) << lowered.err;
  EXPECT_THAT(lowered.out, HasSubstr("applied: ptid 39 -> 40, replicas 1"));
  EXPECT_THAT(lowered.out, Not(HasSubstr("nothing to change")));
}

TEST_F(ActionsTest, RefusalsKeepTheirCodeAndExitStatus) {
  admin_.SetError(common::ErrorWithReason(absl::StatusCode::kFailedPrecondition,
                                          "CLUSTER_NOT_RUNNING",
                                          "would drop the last readable cell of partition 7"));
  Result r = Ctl({"drop", "S3"});
  EXPECT_EQ(r.code, kExitFailedPrecondition);
  EXPECT_EQ(r.err,
            "error: FAILED_PRECONDITION: would drop the last readable cell of partition 7 "
            "[reason: CLUSTER_NOT_RUNNING]\n");
  Result json = Ctl({"--json", "kill", "S2"});
  EXPECT_EQ(json.code, kExitFailedPrecondition);
  EXPECT_EQ(Field(Field(ParseJson(json.out), "error").struct_value(), "code").string_value(),
            "FAILED_PRECONDITION");
  admin_.SetError(absl::NotFoundError("the master knows no node S9"));
  EXPECT_EQ(Ctl({"stop-node", "S9"}).code, kExitNotFound);

  // No admin there: UNAVAILABLE, naming the address and the flag.
  Result down = RunRaw({"--admin", "127.0.0.1:1", "--timeout=300ms", "tweak"});
  EXPECT_EQ(down.code, kExitUnavailable);
  EXPECT_THAT(down.err, HasSubstr("admin 127.0.0.1:1 (see --admin)"));
}

TEST_F(ActionsTest, TruncateNeedsYesAndTakesHexOrDecimal) {
  Result refused = Ctl({"truncate", "0x040d2da025932acc"});
  EXPECT_EQ(refused.code, kExitUsage);
  EXPECT_THAT(refused.err, HasSubstr("add --yes to confirm"));
  EXPECT_THAT(refused.err, HasSubstr("0x040d2da025932acc (2026-11-22T03:12:08."));
  EXPECT_EQ(admin_.calls(), 0);
  EXPECT_EQ(Ctl({"truncate", "0", "--yes"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"truncate", "zz", "--yes"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"truncate", "0xffffffffffffffff", "--yes"}).code, kExitUsage);
  EXPECT_EQ(admin_.calls(), 0);

  Result hex = Ctl({"truncate", "0x040d2da025932acc", "--yes"});
  ASSERT_EQ(hex.code, 0) << hex.err;
  EXPECT_EQ(admin_.request<::cellar::v1::AdminTruncateRequest>().tid(), 0x040d2da025932accu);
  EXPECT_EQ(hex.out,
            "truncated: last tid 0x040d2da025932acc (2026-11-22T03:12:08.806611Z)\n"
            "cluster state: RUNNING\n");
  ASSERT_EQ(Ctl({"truncate", "291939716697369292", "--yes"}).code, 0);
  EXPECT_EQ(admin_.request<::cellar::v1::AdminTruncateRequest>().tid(), 291939716697369292u);
  Result json = Ctl({"--json", "truncate", "291939716697369292", "--yes"});
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_EQ(Field(ParseJson(json.out), "last_tid").string_value(), "0x040d2da025932acc");
}

TEST_F(ActionsTest, PackRefusesZeroAndWaitsWithAProgressLine) {
  EXPECT_EQ(Ctl({"pack", "0"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"pack"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"pack", "zz"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"pack", "--days", "x"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"pack", "--days", "-1"}).code, kExitUsage);
  EXPECT_EQ(admin_.calls(), 0);

  Result started = Ctl({"pack", "0x040d2da025932acc"});
  ASSERT_EQ(started.code, 0) << started.err;
  EXPECT_EQ(admin_.request<::cellar::v1::AdminPackRequest>().pack_tid(), 0x040d2da025932accu);
  EXPECT_THAT(started.out, HasSubstr("pack tid 0x040d2da025932acc (2026-11-22T03:12:08."));
  EXPECT_THAT(started.out, HasSubstr("): in progress\n"));
  EXPECT_THAT(started.out, HasSubstr("  S1: 1 cell(s) packed, 1 to go,"));

  Result waited = Ctl({"pack", "291939716697369292", "--wait"});
  ASSERT_EQ(waited.code, 0) << waited.err;
  EXPECT_EQ(admin_.last(), "GetPackStatus");
  EXPECT_THAT(waited.err, HasSubstr("pack 0x040d2da025932acc (2026-11-22T03:12:08."));
  EXPECT_THAT(waited.err, HasSubstr(": 1 cell(s) to go, 0 revisions removed\n"));
  EXPECT_THAT(waited.out, HasSubstr("): done\n"));
  EXPECT_THAT(waited.out, HasSubstr(
      "  S1: 2 cell(s) packed, 0 to go, 40 revisions / 4096 bytes removed since it started\n"));

  Result json = Ctl({"--json", "pack-status"});
  ASSERT_EQ(json.code, 0) << json.err;
  google::protobuf::Struct status = ParseJson(json.out);
  EXPECT_EQ(Field(status, "pack_tid").string_value(), "0x040d2da025932acc");
  EXPECT_TRUE(Field(status, "done").bool_value());
  EXPECT_EQ(Field(status, "storages").list_value().values_size(), 1);
}

TEST_F(ActionsTest, CheckWaitPollsShowsProgressAndFailsOnMismatches) {
  ::cellar::v1::AdminGetCheckStatusResponse running;
  running.set_check_id(7);
  running.set_running(true);
  running.set_partitions_done(1);
  running.set_partitions_total(2);
  ::cellar::v1::AdminGetCheckStatusResponse done = running;
  done.set_running(false);
  done.set_partitions_done(2);
  done.set_transactions_checked(240);
  auto* m = done.add_mismatches();
  m->set_partition(2);
  m->set_node("S3");
  m->set_reference_node("S2");
  m->set_min_tid("0x0000000000000010");
  m->set_max_tid("0x0000000000000020");
  m->set_detail("transactions: 120 vs 121");
  admin_.SetCheckStatuses({running, done});

  Result r = Ctl({"check", "--partitions", "1,2", "--min-tid", "0x10", "--max-tid", "300",
                  "--data", "--wait"});
  EXPECT_EQ(r.code, kExitDataLoss) << r.err;
  auto req = admin_.request<::cellar::v1::AdminGetCheckStatusRequest>();
  EXPECT_EQ(req.check_id(), 7u);
  EXPECT_THAT(r.err, HasSubstr("check 7: 1/2 partitions, 0 transactions, 0 mismatch(es)\n"));
  EXPECT_THAT(r.err, HasSubstr("check 7: 2/2 partitions, 240 transactions, 1 mismatch(es), done\n"));
  EXPECT_THAT(r.err, HasSubstr("error: DATA_LOSS: check 7 found 1 cell(s)"));
  EXPECT_THAT(r.out, HasSubstr("mismatches  1\n"));
  EXPECT_THAT(r.out, HasSubstr("2          S3    S2         0x0000000000000010..0x0000000000000020  "
                               "transactions: 120 vs 121"));

  // The request the check started with.
  admin_.SetCheckStatuses({done});
  ASSERT_EQ(Ctl({"check", "--partitions", "1,2", "--min-tid", "0x10", "--data"}).code, 0);
  auto start = admin_.request<::cellar::v1::AdminCheckReplicasRequest>();
  EXPECT_THAT(start.partitions(), ElementsAre(1u, 2u));
  EXPECT_EQ(start.min_tid(), 0x10u);
  EXPECT_EQ(start.max_tid(), 0u);
  EXPECT_TRUE(start.with_data());

  // --json --wait: one document (the report), still exit 7.
  Result json = Ctl({"--json", "check", "--wait"});
  EXPECT_EQ(json.code, kExitDataLoss);
  google::protobuf::Struct report = ParseJson(json.out);
  EXPECT_EQ(Field(report, "mismatches").list_value().values_size(), 1);

  // A clean check exits 0.
  done.clear_mismatches();
  admin_.SetCheckStatuses({done});
  Result clean = Ctl({"check", "--wait"});
  EXPECT_EQ(clean.code, 0) << clean.err;
  EXPECT_THAT(clean.out, HasSubstr("mismatches  none\n"));
  Result status = Ctl({"check-status"});
  EXPECT_EQ(status.code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("check       7 (done)\n"));

  EXPECT_EQ(Ctl({"check", "--partitions", "x"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"check", "--min-tid", "5", "--max-tid", "4"}).code, kExitUsage);
}

TEST_F(ActionsTest, StateKillRepairStopNode) {
  Result state = Ctl({"set-state", "stopping"});
  ASSERT_EQ(state.code, 0) << state.err;
  EXPECT_EQ(admin_.request<::cellar::v1::AdminSetClusterStateRequest>().state(),
            ::cellar::v1::CLUSTER_STOPPING);
  EXPECT_EQ(state.out, "cluster state: STOPPING\n");
  EXPECT_EQ(Ctl({"set-state", "VERIFYING"}).code, kExitUsage);

  Result kill = Ctl({"kill", "S2", "--stop"});
  ASSERT_EQ(kill.code, 0) << kill.err;
  auto kill_req = admin_.request<::cellar::v1::AdminKillNodeRequest>();
  EXPECT_EQ(kill_req.name(), "S2");
  EXPECT_TRUE(kill_req.stop());
  EXPECT_EQ(kill.out, "S2 killed: now DOWN\nstopped: the node acknowledged and stops\n");
  ASSERT_EQ(Ctl({"kill", "0x2"}).code, 0);
  EXPECT_EQ(admin_.request<::cellar::v1::AdminKillNodeRequest>().node_id(), 2u);

  Result repair = Ctl({"repair", "3", "S2", "--from", "S1"});
  ASSERT_EQ(repair.code, 0) << repair.err;
  auto repair_req = admin_.request<::cellar::v1::AdminRepairCellRequest>();
  EXPECT_EQ(repair_req.partition(), 3u);
  EXPECT_EQ(repair_req.name(), "S2");
  EXPECT_EQ(repair_req.source_name(), "S1");
  EXPECT_THAT(repair.out, HasSubstr("ptid 5"));
  EXPECT_EQ(Ctl({"repair", "3", "S2"}).code, kExitUsage) << "--from is required";

  Result stop = Ctl({"stop-node", "S2", "--reason", "disk swap"});
  ASSERT_EQ(stop.code, 0) << stop.err;
  EXPECT_EQ(admin_.request<::cellar::v1::StopNodeRequest>().reason(), "disk swap");
  EXPECT_EQ(stop.out, "S2 (127.0.0.1:7201) acknowledged: it flushes its logs and stops\n");
}

TEST_F(ActionsTest, TokenCreateListRevokeThroughTheAdmin) {
  Result created = Ctl({"token", "create", "--role", "client", "--name", "billing"});
  ASSERT_EQ(created.code, 0) << created.err;
  auto create_req = admin_.request<::cellar::v1::AdminCreateTokenRequest>();
  EXPECT_EQ(create_req.role(), ::cellar::v1::TOKEN_ROLE_CLIENT);
  EXPECT_EQ(create_req.name(), "billing");
  // The secret alone on stdout (for `> file`), the rest on stderr.
  EXPECT_EQ(created.out, "cellar_0000beef_" + std::string(64, 'a') + "\n");
  EXPECT_THAT(created.err, HasSubstr("token 0000beef (client, \"billing\")"));
  // A role must be given and be a real one: never a default.
  EXPECT_EQ(Ctl({"token", "create", "--name", "x"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"token", "create", "--role", "unspecified", "--name", "x"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"token", "create", "--role", "wizard", "--name", "x"}).code, kExitUsage);

  Result listed = Ctl({"token", "list"});
  ASSERT_EQ(listed.code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("0000aaaa  admin     file     valid"));
  EXPECT_THAT(listed.out, HasSubstr("0000beef  client    cluster  revoked  2027-01-15T08:00:00.000Z  billing"));
  Result json = Ctl({"--json", "token", "list"});
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"version\":3"));
  EXPECT_THAT(json.out, HasSubstr("\"source\":\"file\""));

  Result revoked = Ctl({"token", "revoke", "0000beef"});
  ASSERT_EQ(revoked.code, 0) << revoked.err;
  EXPECT_EQ(admin_.request<::cellar::v1::AdminRevokeTokenRequest>().id(), "0000beef");
  EXPECT_THAT(revoked.out, HasSubstr("revoked"));
  EXPECT_EQ(Ctl({"token", "revoke"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"token", "frobnicate"}).code, kExitUsage);
}

TEST_F(ActionsTest, VersionsListQuarantineUnquarantine) {
  Result listed = Ctl({"versions", "list"});
  ASSERT_EQ(listed.code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("0.2.0"));
  EXPECT_THAT(listed.out, HasSubstr("yes          a node restarted 3 times (auto)"));
  EXPECT_THAT(listed.out, HasSubstr("quarantine 0.2.0/canary by auto"));
  Result json = Ctl({"--json", "versions", "list"});
  ASSERT_EQ(json.code, 0) << json.err;
  const auto doc = ParseJson(json.out);
  EXPECT_EQ(Field(doc, "quarantine_restarts").number_value(), 3);
  EXPECT_THAT(json.out, HasSubstr("\"nodes\":[\"S4\"]"));
  EXPECT_THAT(json.out, HasSubstr("\"by\":\"auto\""));

  Result q = Ctl({"versions", "quarantine", "0.2.0", "--track", "canary", "--reason", "bad"});
  ASSERT_EQ(q.code, 0) << q.err;
  auto req = admin_.request<::cellar::v1::AdminQuarantineVersionRequest>();
  EXPECT_EQ(admin_.last(), "QuarantineVersion");
  EXPECT_EQ(req.version(), "0.2.0");
  EXPECT_EQ(req.track(), "canary");
  EXPECT_EQ(req.reason(), "bad");
  EXPECT_THAT(q.out, HasSubstr("version 0.2.0/canary quarantined"));
  Result u = Ctl({"--json", "versions", "unquarantine", "0.2.0", "--track", "canary",
                  "--reason", "fixed"});
  ASSERT_EQ(u.code, 0) << u.err;
  EXPECT_EQ(admin_.last(), "UnquarantineVersion");
  EXPECT_THAT(u.out, HasSubstr("\"changed\":false"));
  // Track and reason are never defaulted.
  const int calls = admin_.calls();
  EXPECT_EQ(Ctl({"versions", "quarantine", "0.2.0", "--reason", "x"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"versions", "quarantine", "0.2.0", "--track", "canary"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"versions", "quarantine"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"versions"}).code, kExitUsage);
  EXPECT_EQ(admin_.calls(), calls);
}

TEST_F(ActionsTest, CanaryStatus) {
  Result shown = Ctl({"canary", "status"});
  ASSERT_EQ(shown.code, 0) << shown.err;
  EXPECT_EQ(admin_.last(), "GetCanaryAnalysis");
  EXPECT_THAT(shown.out, HasSubstr("interval 1m, error ratio <= 0.01"));
  EXPECT_THAT(shown.out, HasSubstr("0.2.0             canary   rollback"));
  EXPECT_THAT(shown.out, HasSubstr("fail     calls 100  error ratio 0.3000"));
  Result json = Ctl({"--json", "canary", "status"});
  ASSERT_EQ(json.code, 0) << json.err;
  const auto doc = ParseJson(json.out);
  EXPECT_EQ(Field(doc, "promote_after").number_value(), 5);
  EXPECT_THAT(json.out, HasSubstr("\"verdict\":\"rollback\""));
  EXPECT_THAT(json.out, HasSubstr("\"error_ratio\":0.3"));
  EXPECT_THAT(json.out, HasSubstr("\"load_errors\":30"));
  const int calls = admin_.calls();
  EXPECT_EQ(Ctl({"canary"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"canary", "promote"}).code, kExitUsage);
  EXPECT_EQ(Ctl({"canary", "status", "extra"}).code, kExitUsage);
  EXPECT_EQ(admin_.calls(), calls);
}

TEST_F(CommandsTest, PartitionTablePerRow) {
  cluster_->master().SetCellState(3, 2, ::cellar::v1::CELL_OUT_OF_DATE);
  Result r = Cellarctl({"pt"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("ptid 2, 4 partitions, 1 replicas\npartition 0: "));
  EXPECT_THAT(r.out, HasSubstr("S2 O"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("partition 1: S[12] U, S[12] U\n"));
  Result json = Cellarctl({"pt", "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_EQ(Field(ParseJson(json.out), "rows").list_value().values_size(), 4);
  EXPECT_EQ(Cellarctl({"pt", "extra"}).code, kExitUsage);
}

TEST(ExitCodeTest, Classes) {
  EXPECT_EQ(ExitCodeFor(absl::OkStatus()), 0);
  EXPECT_EQ(ExitCodeFor(absl::AbortedError("c")), kExitConflict);
  EXPECT_EQ(ExitCodeFor(absl::DeadlineExceededError("d")), kExitUnavailable);
  EXPECT_EQ(ExitCodeFor(absl::ResourceExhaustedError("r")),
            kExitResourceExhausted);
  EXPECT_EQ(ExitCodeFor(absl::InternalError("i")), kExitError);
}

}  // namespace
}  // namespace cellar::cellarctl
