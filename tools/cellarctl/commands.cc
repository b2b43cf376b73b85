#include "tools/cellarctl/commands.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/client.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/common/channel.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/partition_table.h"
#include "services/common/status_macros.h"

namespace cellar::cellarctl {
namespace {

using ::cellar::client::Client;
using ::cellar::client::ClientOptions;
using ::cellar::client::LoadResult;

// ---------------------------------------------------------------------------
// Small JSON writer (no dependency; output is one compact document).

bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int extra;
    if (c < 0x80) {
      extra = 0;
    } else if ((c & 0xE0) == 0xC0 && c >= 0xC2) {
      extra = 1;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
    } else if ((c & 0xF8) == 0xF0 && c <= 0xF4) {
      extra = 3;
    } else {
      return false;
    }
    if (i + extra >= s.size() && extra > 0) return false;
    for (int k = 1; k <= extra; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += extra + 1;
  }
  return true;
}

// A JSON string literal. Bytes that are not valid UTF-8 are read as
// Latin-1 (lossy but valid JSON); use base64 where exactness matters.
std::string JsonString(absl::string_view s) {
  const bool utf8 = IsValidUtf8(s);
  std::string out = "\"";
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f || (!utf8 && c >= 0x80)) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += ch;
        }
    }
  }
  out += "\"";
  return out;
}

// Builds {"k": v, ...} in insertion order.
class JsonObject {
 public:
  JsonObject& Str(absl::string_view key, absl::string_view value) {
    return Raw(key, JsonString(value));
  }
  JsonObject& Num(absl::string_view key, uint64_t value) {
    return Raw(key, absl::StrCat(value));
  }
  JsonObject& Bool(absl::string_view key, bool value) {
    return Raw(key, value ? "true" : "false");
  }
  JsonObject& Null(absl::string_view key) { return Raw(key, "null"); }
  JsonObject& Raw(absl::string_view key, absl::string_view json) {
    fields_.push_back(absl::StrCat(JsonString(key), ":", json));
    return *this;
  }
  std::string Build() const {
    return absl::StrCat("{", absl::StrJoin(fields_, ","), "}");
  }

 private:
  std::vector<std::string> fields_;
};

std::string JsonArray(const std::vector<std::string>& items) {
  return absl::StrCat("[", absl::StrJoin(items, ","), "]");
}

// ---------------------------------------------------------------------------
// Text helpers.

void PrintTable(const std::vector<std::vector<std::string>>& rows,
                std::ostream& out) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      absl::StrAppend(&line, row[i]);
      if (i + 1 < row.size()) {
        line.append(widths[i] - row[i].size() + 2, ' ');
      }
    }
    out << absl::StripTrailingAsciiWhitespace(line) << "\n";
  }
}

// Printable for a terminal table cell: control characters escaped.
std::string Printable(absl::string_view s, size_t max = 40) {
  std::string out = absl::CHexEscape(s);
  if (out.size() > max) out = absl::StrCat(out.substr(0, max - 3), "...");
  return out;
}

std::string EnumSuffix(const std::string& name, absl::string_view prefix) {
  return std::string(absl::StripPrefix(name, prefix));
}

std::string ClusterStateName(::cellar::v1::ClusterState state) {
  return EnumSuffix(::cellar::v1::ClusterState_Name(state), "CLUSTER_");
}

std::string NodeStateName(::cellar::v1::NodeState state) {
  return EnumSuffix(::cellar::v1::NodeState_Name(state), "NODE_");
}

std::string CellStateName(::cellar::v1::CellState state) {
  return EnumSuffix(::cellar::v1::CellState_Name(state), "CELL_");
}

char RoleLetter(::cellar::v1::NodeRole role) {
  switch (role) {
    case ::cellar::v1::NODE_ROLE_MASTER:
      return 'M';
    case ::cellar::v1::NODE_ROLE_STORAGE:
      return 'S';
    case ::cellar::v1::NODE_ROLE_ADMIN:
      return 'A';
    case ::cellar::v1::NODE_ROLE_CLIENT:
      return 'C';
    default:
      return '?';
  }
}

std::string RoleName(::cellar::v1::NodeRole role) {
  return absl::AsciiStrToLower(
      EnumSuffix(::cellar::v1::NodeRole_Name(role), "NODE_ROLE_"));
}

// "none" / "0x..." for a next serial.
std::string TidOrNone(uint64_t tid) {
  return tid == 0 ? "none" : common::FormatTid(tid);
}

std::string TidJson(uint64_t tid) {
  return tid == 0 ? "null" : JsonString(common::TidHex(tid));
}

// ---------------------------------------------------------------------------
// Command arguments.

struct CommandArgs {
  std::vector<std::string> positional;
  std::map<std::string, std::string> values;
  std::map<std::string, bool> flags;
};

absl::StatusOr<CommandArgs> ParseCommandArgs(
    const std::vector<std::string>& args,
    const std::vector<std::string>& value_flags,
    const std::vector<std::string>& bool_flags) {
  CommandArgs out;
  bool only_positional = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (only_positional || arg == "-" || !absl::StartsWith(arg, "--")) {
      out.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      only_positional = true;
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (std::find(bool_flags.begin(), bool_flags.end(), name) !=
        bool_flags.end()) {
      if (has_value) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " takes no value"));
      }
      out.flags[name] = true;
    } else if (std::find(value_flags.begin(), value_flags.end(), name) !=
               value_flags.end()) {
      if (!has_value) {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError(
              absl::StrCat("--", name, " needs a value"));
        }
        value = args[++i];
      }
      out.values[name] = value;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name));
    }
  }
  return out;
}

absl::StatusOr<uint64_t> ParseId(absl::string_view what,
                                 absl::string_view text) {
  uint64_t value;
  if (!common::ParseUint64(text, &value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad ", what, " '", text, "' (decimal, or hex with a 0x prefix)"));
  }
  return value;
}

absl::StatusOr<uint32_t> ParseLimit(const CommandArgs& args,
                                    uint32_t default_limit) {
  auto it = args.values.find("limit");
  if (it == args.values.end()) return default_limit;
  uint32_t limit;
  if (!absl::SimpleAtoi(it->second, &limit) || limit == 0 || limit > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad --limit '", it->second, "' (1..1000)"));
  }
  return limit;
}

absl::Status ExpectPositional(const CommandArgs& args, size_t count,
                              absl::string_view usage) {
  if (args.positional.size() != count) {
    return absl::InvalidArgumentError(absl::StrCat("usage: cellarctl ", usage));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Client>> ConnectClient(
    const GlobalOptions& global) {
  ClientOptions options;
  options.master_addresses = global.masters;
  options.cluster_name = global.cluster;
  options.rpc_timeout = global.timeout;
  options.connect_timeout = global.timeout;
  options.commit_wait_timeout = global.timeout;
  options.cache_bytes = 1 << 20;
  return Client::Connect(std::move(options));
}

// Master.GetClusterInfo on the first master that answers (no
// registration: status works on a cluster that refuses clients).
absl::StatusOr<::cellar::v1::GetClusterInfoResponse> FetchClusterInfo(
    const GlobalOptions& global) {
  absl::Status last_error = absl::InvalidArgumentError("no --master given");
  for (const std::string& address : global.masters) {
    auto stub = ::cellar::v1::Master::NewStub(common::MakeChannel(address));
    grpc::ClientContext context;
    common::SetDeadline(&context, global.timeout);
    ::cellar::v1::GetClusterInfoResponse response;
    absl::Status status = common::FromGrpcStatus(stub->GetClusterInfo(
        &context, ::cellar::v1::GetClusterInfoRequest(), &response));
    if (status.ok()) {
      if (!global.cluster.empty() && response.cluster_name() != global.cluster) {
        return common::ErrorWithReason(
            absl::StatusCode::kFailedPrecondition, common::kReasonWrongCluster,
            absl::StrCat("master ", address, " serves cluster '",
                         response.cluster_name(), "', not '", global.cluster,
                         "' (see --cluster)"));
      }
      return response;
    }
    last_error = common::Annotate(status, absl::StrCat("master ", address));
  }
  return last_error;
}

absl::StatusOr<std::string> ReadData(absl::string_view spec, std::istream& in) {
  if (spec == "-") {
    return std::string(std::istreambuf_iterator<char>(in),
                       std::istreambuf_iterator<char>());
  }
  if (absl::StartsWith(spec, "@")) {
    const std::string path(spec.substr(1));
    std::ifstream file(path, std::ios::binary);
    if (!file) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read file '", path, "'"));
    }
    return std::string(std::istreambuf_iterator<char>(file),
                       std::istreambuf_iterator<char>());
  }
  return std::string(spec);
}

void PrintError(const absl::Status& status, const GlobalOptions& global,
                Io io) {
  const std::string reason = common::ErrorReason(status);
  const std::string code = absl::StatusCodeToString(status.code());
  io.err << "error: " << code << ": " << status.message();
  if (!reason.empty()) io.err << " [reason: " << reason << "]";
  io.err << "\n";
  if (global.json) {
    JsonObject error;
    error.Str("code", code).Str("message", status.message());
    if (!reason.empty()) error.Str("reason", reason);
    if (std::optional<common::ConflictInfo> conflict =
            common::GetConflict(status)) {
      error.Str("oid", common::FormatOid(conflict->oid))
          .Str("current_serial", common::TidHex(conflict->current_serial));
    }
    io.out << JsonObject().Raw("error", error.Build()).Build() << "\n";
  }
}

}  // namespace

// ---------------------------------------------------------------------------

int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kInvalidArgument:
      return kExitUsage;
    case absl::StatusCode::kNotFound:
      return kExitNotFound;
    case absl::StatusCode::kAborted:
      return kExitConflict;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return kExitUnavailable;
    case absl::StatusCode::kFailedPrecondition:
      return kExitFailedPrecondition;
    case absl::StatusCode::kDataLoss:
      return kExitDataLoss;
    case absl::StatusCode::kResourceExhausted:
      return kExitResourceExhausted;
    default:
      return kExitError;
  }
}

absl::StatusOr<CommandLine> ParseCommandLine(
    const std::vector<std::string>& argv) {
  CommandLine out;
  bool flags_done = false;
  auto positional = [&out](const std::string& arg) {
    if (out.command.empty()) {
      out.command = arg;
    } else {
      out.args.push_back(arg);
    }
  };
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (flags_done) {
      positional(arg);
      continue;
    }
    if (arg == "--") {
      // The command's own parser sees "--" too (to stop at it as well).
      flags_done = true;
      if (!out.command.empty()) out.args.push_back(arg);
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      out.help = true;
      continue;
    }
    if (!absl::StartsWith(arg, "--")) {
      positional(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto take_value = [&]() -> absl::StatusOr<std::string> {
      if (has_value) return value;
      if (i + 1 >= argv.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " needs a value"));
      }
      return argv[++i];
    };
    if (name == "master") {
      CELLAR_ASSIGN_OR_RETURN(std::string list, take_value());
      out.global.masters =
          absl::StrSplit(list, ',', absl::SkipWhitespace());
      if (out.global.masters.empty()) {
        return absl::InvalidArgumentError("--master needs an address");
      }
    } else if (name == "cluster") {
      CELLAR_ASSIGN_OR_RETURN(out.global.cluster, take_value());
    } else if (name == "json") {
      if (has_value) return absl::InvalidArgumentError("--json takes no value");
      out.global.json = true;
    } else if (name == "timeout") {
      CELLAR_ASSIGN_OR_RETURN(std::string text, take_value());
      absl::Duration timeout;
      double seconds;
      if (absl::ParseDuration(text, &timeout) && timeout > absl::ZeroDuration()) {
        out.global.timeout = timeout;
      } else if (absl::SimpleAtod(text, &seconds) && seconds > 0) {
        out.global.timeout = absl::Seconds(seconds);
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("bad --timeout '", text, "' (e.g. 5s, 500ms, 2)"));
      }
    } else {
      // A command flag (--at, --limit, --raw): the command parses it.
      positional(arg);
    }
  }
  return out;
}

std::string Usage() {
  return R"(cellarctl: command line for a cellar cluster

usage: cellarctl [global flags] COMMAND [args]

commands:
  status                          cluster name and state, last ids, nodes,
                                  partition table (Master.GetClusterInfo)
  put OID|new DATA|@FILE|-        commit DATA as the new revision of OID
                                  ("new" allocates an OID; @FILE reads a file,
                                  - reads stdin); prints the oid and the tid
  get OID [--at TID] [--raw]      print the object's data on stdout (serials
                                  on stderr); --at: the revision visible at
                                  TID; --raw: the bytes exactly, no newline
  history OID [--limit N]         the object's revisions, newest first
  last-transactions [--limit N]   the last N transactions (default 10)
  help                            this text

global flags (anywhere on the line):
  --master=HOST:PORT[,...]  master addresses, tried in order (127.0.0.1:7100)
  --cluster=NAME            cluster name (cellar)
  --json                    one JSON document on stdout
  --timeout=DURATION        per-call deadline, e.g. 5s, 500ms (10s)

OIDs and TIDs: decimal (31) or hex with a 0x prefix (0x1f).

exit codes: 0 ok, 1 other error, 2 usage / INVALID_ARGUMENT, 3 NOT_FOUND,
  4 ABORTED (conflict: retry), 5 UNAVAILABLE / DEADLINE_EXCEEDED (retry
  later), 6 FAILED_PRECONDITION (wrong cluster, not running), 7 DATA_LOSS,
  8 RESOURCE_EXHAUSTED. Errors print "error: CODE: message [reason: R]".

examples:
  cellarctl status
  cellarctl --master=10.0.0.5:7100 --json status
  cellarctl put new 'hello'
  cellarctl put 0x1f @object.bin
  echo hi | cellarctl put 0 -
  cellarctl get 0x1f
  cellarctl get 0x1f --at 0x03f58e0000000005 --raw > old.bin
  cellarctl history 0x1f --limit 5
  cellarctl last-transactions --limit 20 --json
)";
}

absl::Status RunStatus(const GlobalOptions& global, Io io) {
  CELLAR_ASSIGN_OR_RETURN(::cellar::v1::GetClusterInfoResponse info,
                          FetchClusterInfo(global));
  const auto& pt = info.partition_table();
  std::vector<::cellar::v1::NodeInfo> nodes(info.nodes().begin(),
                                            info.nodes().end());
  std::sort(nodes.begin(), nodes.end(), [](const auto& a, const auto& b) {
    return std::make_pair(RoleLetter(a.role()), a.node_id()) <
           std::make_pair(RoleLetter(b.role()), b.node_id());
  });
  if (global.json) {
    std::vector<std::string> node_items;
    for (const auto& node : nodes) {
      node_items.push_back(
          JsonObject()
              .Str("id", common::NodeName(RoleLetter(node.role()), node.node_id()))
              .Num("node_id", node.node_id())
              .Str("role", RoleName(node.role()))
              .Str("address", node.address())
              .Str("state", NodeStateName(node.state()))
              .Str("version", node.version())
              .Str("build_id", node.build_id())
              .Str("track", node.track())
              .Str("label", node.label())
              .Build());
    }
    std::vector<std::string> rows;
    for (const auto& row : pt.rows()) {
      std::vector<std::string> cells;
      for (const auto& cell : row.cells()) {
        cells.push_back(JsonObject()
                            .Str("node", common::NodeName('S', cell.node_id()))
                            .Str("state", CellStateName(cell.state()))
                            .Build());
      }
      rows.push_back(JsonObject()
                         .Num("partition", row.partition())
                         .Raw("cells", JsonArray(cells))
                         .Build());
    }
    io.out << JsonObject()
                  .Str("cluster_name", info.cluster_name())
                  .Str("cluster_state", ClusterStateName(info.cluster_state()))
                  .Bool("operational", info.operational())
                  .Num("ptid", pt.ptid())
                  .Num("num_partitions", pt.num_partitions())
                  .Num("num_replicas", pt.num_replicas())
                  .Raw("last_tid", TidJson(info.last_tid()))
                  .Str("last_tid_time",
                       info.last_tid() == 0 ? "" : common::TidTime(info.last_tid()))
                  .Str("last_oid", common::FormatOid(info.last_oid()))
                  .Num("epoch", info.epoch())
                  .Str("master", common::NodeName('M', info.master_node_id()))
                  .Raw("nodes", JsonArray(node_items))
                  .Raw("partition_table", JsonArray(rows))
                  .Build()
           << "\n";
    return absl::OkStatus();
  }
  io.out << "cluster     " << info.cluster_name() << "\n"
         << "state       " << ClusterStateName(info.cluster_state())
         << (info.operational() ? " (operational)" : " (NOT operational)")
         << "\n"
         << "last tid    "
         << (info.last_tid() == 0 ? std::string("none")
                                  : common::FormatTid(info.last_tid()))
         << "\n"
         << "last oid    " << common::FormatOid(info.last_oid()) << "\n"
         << "partitions  " << pt.num_partitions() << " (replicas "
         << pt.num_replicas() << ", ptid " << pt.ptid() << ")\n"
         << "master      " << common::NodeName('M', info.master_node_id())
         << " (epoch " << info.epoch() << ")\n\n";
  std::vector<std::vector<std::string>> table = {
      {"NODE", "ROLE", "ADDRESS", "STATE", "VERSION", "TRACK", "LABEL"}};
  for (const auto& node : nodes) {
    table.push_back({common::NodeName(RoleLetter(node.role()), node.node_id()),
                     RoleName(node.role()),
                     node.address().empty() ? "-" : node.address(),
                     NodeStateName(node.state()),
                     node.version().empty() ? "-" : node.version(),
                     node.track().empty() ? "-" : node.track(),
                     node.label().empty() ? "-" : node.label()});
  }
  PrintTable(table, io.out);
  io.out << "\npartition table: ";
  absl::StatusOr<common::PartitionTable> parsed =
      common::PartitionTable::FromProto(pt);
  if (!parsed.ok()) {
    io.out << "malformed (" << parsed.status().message() << ")\n";
  } else if (parsed->empty()) {
    io.out << "none yet\n";
  } else {
    io.out << parsed->ToGrid();
    io.out << "(U up to date, O out of date, F feeding, C corrupted, . none)\n";
  }
  return absl::OkStatus();
}

absl::Status RunPut(const GlobalOptions& global,
                    const std::vector<std::string>& raw_args, Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args, ParseCommandArgs(raw_args, {}, {}));
  CELLAR_RETURN_IF_ERROR(
      ExpectPositional(args, 2, "put OID|new DATA|@FILE|-"));
  const bool new_oid = args.positional[0] == "new";
  uint64_t oid = 0;
  if (!new_oid) {
    CELLAR_ASSIGN_OR_RETURN(oid, ParseId("OID", args.positional[0]));
  }
  CELLAR_ASSIGN_OR_RETURN(std::string data,
                          ReadData(args.positional[1], io.in));
  CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, ConnectClient(global));
  if (new_oid) {
    CELLAR_ASSIGN_OR_RETURN(oid, client->NewOid());
  }
  uint64_t base_serial = 0;
  absl::StatusOr<LoadResult> current = client->Load(oid);
  if (current.ok()) {
    base_serial = current->serial;
  } else if (current.status().code() != absl::StatusCode::kNotFound) {
    return common::Annotate(current.status(), "reading the current serial");
  }
  const size_t size = data.size();
  auto txn = client->NewTransaction();
  txn->Store(oid, base_serial, std::move(data));
  const char* user = std::getenv("USER");
  txn->SetUser(user != nullptr ? user : "");
  txn->SetDescription(absl::StrCat("cellarctl put ", common::FormatOid(oid)));
  CELLAR_ASSIGN_OR_RETURN(uint64_t tid, txn->Commit());
  client->Close();
  if (global.json) {
    io.out << JsonObject()
                  .Str("oid", common::FormatOid(oid))
                  .Str("tid", common::TidHex(tid))
                  .Str("tid_time", common::TidTime(tid))
                  .Raw("base_serial", TidJson(base_serial))
                  .Num("size", size)
                  .Build()
           << "\n";
  } else {
    io.out << "oid " << common::FormatOid(oid) << "\n"
           << "tid " << common::FormatTid(tid) << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunGet(const GlobalOptions& global,
                    const std::vector<std::string>& raw_args, Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args,
                          ParseCommandArgs(raw_args, {"at"}, {"raw"}));
  CELLAR_RETURN_IF_ERROR(
      ExpectPositional(args, 1, "get OID [--at TID] [--raw]"));
  CELLAR_ASSIGN_OR_RETURN(uint64_t oid, ParseId("OID", args.positional[0]));
  uint64_t at = 0;
  const bool has_at = args.values.count("at") > 0;
  if (has_at) {
    CELLAR_ASSIGN_OR_RETURN(at, ParseId("TID", args.values["at"]));
    if (at >= common::kMaxTid) {
      return absl::InvalidArgumentError("--at TID is past the largest TID");
    }
  }
  CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, ConnectClient(global));
  absl::StatusOr<LoadResult> loaded =
      has_at ? client->LoadBefore(oid, at + 1) : client->Load(oid);
  client->Close();
  if (!loaded.ok()) return loaded.status();
  if (global.json) {
    JsonObject json;
    json.Str("oid", common::FormatOid(oid))
        .Str("serial", common::TidHex(loaded->serial))
        .Str("serial_time", common::TidTime(loaded->serial))
        .Raw("next_serial", TidJson(loaded->next_serial))
        .Num("size", loaded->data.size());
    if (IsValidUtf8(loaded->data)) json.Str("data", loaded->data);
    json.Str("data_base64", absl::Base64Escape(loaded->data));
    io.out << json.Build() << "\n";
    return absl::OkStatus();
  }
  io.out << loaded->data;
  if (!args.flags["raw"] && !loaded->data.empty() &&
      loaded->data.back() != '\n') {
    io.out << "\n";
  }
  io.err << "oid " << common::FormatOid(oid) << " serial "
         << common::FormatTid(loaded->serial) << " next_serial "
         << TidOrNone(loaded->next_serial) << " size " << loaded->data.size()
         << "\n";
  return absl::OkStatus();
}

absl::Status RunHistory(const GlobalOptions& global,
                        const std::vector<std::string>& raw_args, Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args,
                          ParseCommandArgs(raw_args, {"limit"}, {}));
  CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 1, "history OID [--limit N]"));
  CELLAR_ASSIGN_OR_RETURN(uint64_t oid, ParseId("OID", args.positional[0]));
  CELLAR_ASSIGN_OR_RETURN(uint32_t limit, ParseLimit(args, 100));
  CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, ConnectClient(global));
  CELLAR_ASSIGN_OR_RETURN(std::vector<::cellar::v1::Revision> revisions,
                          client->History(oid, limit));
  client->Close();
  if (global.json) {
    std::vector<std::string> items;
    for (const auto& revision : revisions) {
      items.push_back(JsonObject()
                          .Str("serial", common::TidHex(revision.serial()))
                          .Str("time", common::TidTime(revision.serial()))
                          .Num("size", revision.size_bytes())
                          .Bool("deleted", revision.deleted())
                          .Raw("data_serial", TidJson(revision.data_serial()))
                          .Build());
    }
    io.out << JsonObject()
                  .Str("oid", common::FormatOid(oid))
                  .Raw("revisions", JsonArray(items))
                  .Build()
           << "\n";
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> table = {
      {"SERIAL", "TIME (UTC)", "SIZE", "NOTE"}};
  for (const auto& revision : revisions) {
    std::string note;
    if (revision.deleted()) note = "deleted";
    if (revision.data_serial() != 0) {
      note = absl::StrCat("undo: data of ", common::TidHex(revision.data_serial()));
    }
    table.push_back({common::TidHex(revision.serial()),
                     common::TidTime(revision.serial()),
                     absl::StrCat(revision.size_bytes()), note});
  }
  io.out << "oid " << common::FormatOid(oid) << ": " << revisions.size()
         << " revision(s)\n";
  PrintTable(table, io.out);
  return absl::OkStatus();
}

absl::Status RunLastTransactions(const GlobalOptions& global,
                                 const std::vector<std::string>& raw_args,
                                 Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args,
                          ParseCommandArgs(raw_args, {"limit"}, {}));
  CELLAR_RETURN_IF_ERROR(
      ExpectPositional(args, 0, "last-transactions [--limit N]"));
  CELLAR_ASSIGN_OR_RETURN(uint32_t limit, ParseLimit(args, 10));
  CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<Client> client, ConnectClient(global));
  CELLAR_ASSIGN_OR_RETURN(std::vector<::cellar::v1::TransactionInfo> txns,
                          client->LastTransactions(limit));
  client->Close();
  if (global.json) {
    std::vector<std::string> items;
    for (const auto& txn : txns) {
      std::vector<std::string> oids;
      for (uint64_t oid : txn.oids()) {
        oids.push_back(JsonString(common::FormatOid(oid)));
      }
      items.push_back(JsonObject()
                          .Str("tid", common::TidHex(txn.tid()))
                          .Str("time", common::TidTime(txn.tid()))
                          .Str("ttid", common::TidHex(txn.ttid()))
                          .Str("user", txn.user())
                          .Str("description", txn.description())
                          .Str("extension_base64",
                               absl::Base64Escape(txn.extension()))
                          .Raw("oids", JsonArray(oids))
                          .Num("size", txn.size_bytes())
                          .Bool("packed", txn.packed())
                          .Build());
    }
    io.out << JsonObject().Raw("transactions", JsonArray(items)).Build()
           << "\n";
    return absl::OkStatus();
  }
  std::vector<std::vector<std::string>> table = {
      {"TID", "TIME (UTC)", "USER", "DESCRIPTION", "OIDS", "SIZE"}};
  for (const auto& txn : txns) {
    table.push_back({common::TidHex(txn.tid()), common::TidTime(txn.tid()),
                     txn.user().empty() ? "-" : Printable(txn.user(), 20),
                     txn.description().empty() ? "-"
                                               : Printable(txn.description()),
                     absl::StrCat(txn.oids_size()),
                     absl::StrCat(txn.size_bytes())});
  }
  PrintTable(table, io.out);
  return absl::OkStatus();
}

int Run(const CommandLine& command_line, Io io) {
  const std::string& command = command_line.command;
  if (command_line.help || command == "help") {
    io.out << Usage();
    return kExitOk;
  }
  if (command.empty()) {
    io.err << Usage();
    return kExitUsage;
  }
  const GlobalOptions& global = command_line.global;
  const std::vector<std::string>& args = command_line.args;
  absl::Status status;
  if (command == "status") {
    status = args.empty() ? RunStatus(global, io)
                          : absl::InvalidArgumentError("usage: cellarctl status");
  } else if (command == "put") {
    status = RunPut(global, args, io);
  } else if (command == "get") {
    status = RunGet(global, args, io);
  } else if (command == "history") {
    status = RunHistory(global, args, io);
  } else if (command == "last-transactions") {
    status = RunLastTransactions(global, args, io);
  } else {
    status = absl::InvalidArgumentError(absl::StrCat(
        "unknown command '", command, "' (cellarctl help lists them)"));
  }
  if (status.ok()) return kExitOk;
  PrintError(status, global, io);
  return ExitCodeFor(status);
}

}  // namespace cellar::cellarctl
