#include "tools/cellarctl/commands.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "client/testing/fake_cluster.h"
#include "services/common/status_matchers.h"

namespace cellar::cellarctl {
namespace {

using ::cellar::client::testing::FakeCluster;
using ::cellar::common::IsOk;
using ::cellar::common::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
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
