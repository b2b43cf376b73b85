#include "tools/cellarctl/commands.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <thread>
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
#include "grpc/health/v1/health.grpc.pb.h"
#include "protos/cellar/v1/admin.grpc.pb.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/common/auth_tokens.h"
#include "services/common/channel.h"
#include "services/common/errors.h"
#include "services/common/grpc_status.h"
#include "services/common/ids.h"
#include "services/common/json.h"
#include "services/common/partition_table.h"
#include "services/common/status_macros.h"
#include "services/common/storage_sizes.h"

namespace cellar::cellarctl {
namespace {

using ::cellar::client::Client;
using ::cellar::client::ClientOptions;
using ::cellar::client::LoadResult;
using ::cellar::common::IsValidUtf8;
using ::cellar::common::JsonString;

// ---------------------------------------------------------------------------
// Small JSON writer (no dependency; output is one compact document).

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

// One JSON object per partition: {"partition": P, "cells": [{"node", "state"}]}.
std::vector<std::string> PartitionRowsJson(const ::cellar::v1::PartitionTable& pt) {
  std::vector<std::string> rows;
  for (const auto& row : pt.rows()) {
    std::vector<std::string> cells;
    for (const auto& cell : row.cells()) {
      cells.push_back(JsonObject()
                          .Str("node", common::NodeName('S', cell.node_id()))
                          .Str("state", CellStateName(cell.state()))
                          .Build());
    }
    rows.push_back(
        JsonObject().Num("partition", row.partition()).Raw("cells", JsonArray(cells)).Build());
  }
  return rows;
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
  options.token = global.token;
  options.tls = TlsConfigOf(global);
  return Client::Connect(std::move(options));
}

// The bearer and transport of every call, files named by their flags.
absl::StatusOr<common::ChannelSecurity> SecurityOf(const GlobalOptions& global) {
  common::TlsFileNames names;
  names.ca = "--tls-ca";
  names.cert = "--tls-cert";
  names.key = "--tls-key";
  return common::MakeChannelSecurity(global.token, TlsConfigOf(global), names);
}

// Master.GetClusterInfo on the first master that answers (no
// registration: status works on a cluster that refuses clients).
absl::StatusOr<::cellar::v1::GetClusterInfoResponse> FetchClusterInfo(
    const GlobalOptions& global) {
  absl::Status last_error = absl::InvalidArgumentError("no --master given");
  CELLAR_ASSIGN_OR_RETURN(common::ChannelSecurity security, SecurityOf(global));
  for (const std::string& address : global.masters) {
    auto stub = ::cellar::v1::Master::NewStub(common::MakeChannel(address, security));
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

std::optional<common::TlsClientConfig> TlsConfigOf(const GlobalOptions& global) {
  if (global.tls_ca.empty() && global.tls_cert.empty() && global.tls_key.empty() &&
      global.tls_server_name.empty()) {
    return std::nullopt;
  }
  common::TlsClientConfig tls;
  tls.ca_file = global.tls_ca;
  tls.cert_file = global.tls_cert;
  tls.key_file = global.tls_key;
  tls.server_name = global.tls_server_name;
  return tls;
}

void FillFromEnvironment(GlobalOptions& global) {
  for (auto [value, variable] : {std::pair{&global.token, "CELLAR_TOKEN"},
                                 std::pair{&global.tls_ca, "CELLAR_TLS_CA"},
                                 std::pair{&global.tls_cert, "CELLAR_TLS_CERT"},
                                 std::pair{&global.tls_key, "CELLAR_TLS_KEY"},
                                 std::pair{&global.tls_server_name, "CELLAR_TLS_SERVER_NAME"}}) {
    if (!value->empty()) continue;
    if (const char* set = std::getenv(variable)) *value = set;
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
      out.global.cluster_given = true;
    } else if (name == "admin") {
      CELLAR_ASSIGN_OR_RETURN(out.global.admin, take_value());
      if (out.global.admin.empty()) {
        return absl::InvalidArgumentError("--admin needs an address");
      }
    } else if (name == "token-file") {
      CELLAR_ASSIGN_OR_RETURN(std::string path, take_value());
      std::ifstream in(path);
      std::stringstream contents;
      if (in) contents << in.rdbuf();
      out.global.token = std::string(absl::StripAsciiWhitespace(contents.str()));
      if (!in || out.global.token.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--token-file: cannot read a token from '", path, "'"));
      }
    } else if (name == "tls-ca") {
      CELLAR_ASSIGN_OR_RETURN(out.global.tls_ca, take_value());
    } else if (name == "tls-cert") {
      CELLAR_ASSIGN_OR_RETURN(out.global.tls_cert, take_value());
    } else if (name == "tls-key") {
      CELLAR_ASSIGN_OR_RETURN(out.global.tls_key, take_value());
    } else if (name == "tls-server-name") {
      CELLAR_ASSIGN_OR_RETURN(out.global.tls_server_name, take_value());
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
  status                          cluster name and state, last ids, data
                                  sizes, nodes, partition table
                                  (Master.GetClusterInfo, and
                                  Storage.GetPartitionStats of each storage)
  put OID|new DATA|@FILE|-        commit DATA as the new revision of OID
                                  ("new" allocates an OID; @FILE reads a file,
                                  - reads stdin); prints the oid and the tid
  get OID [--at TID] [--raw]      print the object's data on stdout (serials
                                  on stderr); --at: the revision visible at
                                  TID; --raw: the bytes exactly, no newline
  history OID [--limit N]         the object's revisions, newest first
  last-transactions [--limit N]   the last N transactions (default 10)
  pt                              the partition table, one line per
                                  partition ("partition 3: S1 U, S2 O")
  health HOST:PORT [--service S]  grpc.health.v1 Check of one process (no
                                  token needed; TLS flags apply): exit 0
                                  when SERVING, 5 otherwise (a probe for
                                  Kubernetes with TLS); S "" = the process
  help                            this text

operator actions (through the admin node, --admin; NODE is S2 or an id):
  set-state STOPPING|RUNNING      STOPPING refuses new transactions;
                                  RUNNING starts a RECOVERING cluster
  tweak [--dry-run]               rebalance the partition table
  add NODE [NODE..] [--dry-run]   give PENDING storages cells
  drop NODE [--dry-run]           remove a dead storage for good
  set-replicas N [--dry-run]      change R (copies = R + 1)
  kill NODE [--stop]              treat a node as gone now (--stop: and
                                  ask it to stop cleanly)
  check [--partitions 1,2] [--min-tid T] [--max-tid T] [--data] [--wait]
                                  compare replicas; --wait: poll until done
                                  (progress on stderr), exit 7 on mismatches
  check-status [--id N]           progress and findings of the last check
  repair P NODE --from NODE       copy partition P's cell again from a good one
  truncate TID --yes              delete every transaction after TID
                                  (cluster-wide, for good: --yes required)
  pack TID|--days N [--wait]      remove the revisions older than the one
                                  current at TID (or N days ago), in the
                                  background (docs/lifecycle.md); --wait:
                                  poll until done (progress on stderr)
  pack-status                     the pack's progress on every storage
  stop-node NODE [--reason TEXT]  flush a storage's logs and stop it cleanly

tokens (docs/security.md):
  token new --role R --name N [--file F]
                                  make a token of role client, reader,
                                  readonly or admin; print it once and append
                                  its hashed line to the tokens file F (no
                                  cluster call)
  token create --role R --name N  create a cluster token through the admin
                                  (valid on every node, no restart); print it
                                  once
  token list                      every token the master accepts (file and
                                  cluster), never a secret
  token revoke ID                 revoke a cluster token on every node

feature flags (docs/rollouts.md):
  flags list                      every flag: value, age in days, owner
  flags set NAME --bool true|false | --string S [--description D] [--owner O]
                                  create (description and owner required) or
                                  change a flag; omitted description/owner
                                  keep the stored ones
  flags delete NAME               delete a flag (nodes use their default)

versions and quarantine (docs/rollouts.md):
  versions list                   every version/track: nodes, signals, quarantine, history
  versions quarantine VERSION --track T --reason R
                                  quarantine a version (no new cells; reads prefer others)
  versions unquarantine VERSION --track T --reason R
                                  lift it (its signals are forgotten)
  canary status                   each canary version's verdict (hold, promote,
                                  rollback) and its last analysis intervals

global flags (anywhere on the line):
  --master=HOST:PORT[,...]  master addresses, tried in order (127.0.0.1:7100)
  --cluster=NAME            cluster name (cellar)
  --json                    one JSON document on stdout
  --timeout=DURATION        per-call deadline, e.g. 5s, 500ms (10s)
  --admin=HOST:PORT         admin node for operator actions (127.0.0.1:7300)
  --token-file=PATH         bearer token to send (default: $CELLAR_TOKEN)
  --tls-ca=PATH             TLS: CA of the servers (default: $CELLAR_TLS_CA)
  --tls-cert=PATH           TLS client certificate (default: $CELLAR_TLS_CERT)
  --tls-key=PATH            its key (default: $CELLAR_TLS_KEY)
  --tls-server-name=NAME    name the servers' certificates must carry instead
                            of the dialled host ($CELLAR_TLS_SERVER_NAME)

OIDs and TIDs: decimal (31) or hex with a 0x prefix (0x1f). --cluster
also names the cluster to the admin (without it: the admin's default).

exit codes: 0 ok, 1 other error, 2 usage / INVALID_ARGUMENT, 3 NOT_FOUND,
  4 ABORTED (conflict: retry), 5 UNAVAILABLE / DEADLINE_EXCEEDED (retry
  later), 6 FAILED_PRECONDITION (wrong cluster, not running, refused by
  the master), 7 DATA_LOSS (check: replicas differ),
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
  cellarctl pt
  cellarctl health 127.0.0.1:7200 --service cellar.v1.Storage.Ready
  cellarctl add S4 --dry-run
  cellarctl check --partitions 1,2 --data --wait
  cellarctl truncate 0x040d2da025932acc --yes
  cellarctl pack --days 7 --wait
)";
}

// Storage.GetPartitionStats of every RUNNING storage, at once, each
// bounded by --timeout; one that does not answer has no sizes.
absl::StatusOr<common::ClusterSizes> FetchSizes(
    const GlobalOptions& global, const ::cellar::v1::GetClusterInfoResponse& info) {
  CELLAR_ASSIGN_OR_RETURN(common::ChannelSecurity security, SecurityOf(global));
  return common::FetchClusterSizes(
      info,
      [&security](const std::string& address)
          -> std::shared_ptr<::cellar::v1::Storage::StubInterface> {
        return ::cellar::v1::Storage::NewStub(common::MakeChannel(address, security));
      },
      global.timeout);
}

// "data" of `cellarctl status --json`: the cluster's sizes (only when
// every partition was counted) and each storage's.
std::string SizesJson(const common::ClusterSizes& sizes) {
  std::vector<std::string> nodes;
  for (const common::NodeSizes& n : sizes.nodes) {
    JsonObject node;
    node.Str("id", common::NodeName(n.node_id));
    if (n.status.ok()) {
      node.Num("objects", n.sizes.objects)
          .Num("revisions", n.sizes.revisions)
          .Num("bytes", n.sizes.bytes)
          .Num("readable_cells", n.readable_cells);
    } else {
      node.Str("error", n.status.ToString());
    }
    nodes.push_back(node.Build());
  }
  JsonObject out;
  const bool complete = sizes.num_partitions > 0 && sizes.partitions_counted == sizes.num_partitions;
  if (complete) {
    out.Num("objects", sizes.total.objects)
        .Num("revisions", sizes.total.revisions)
        .Num("bytes", sizes.total.bytes);
  }
  return out.Num("partitions_counted", sizes.partitions_counted)
      .Raw("storages", JsonArray(nodes))
      .Build();
}

absl::Status RunStatus(const GlobalOptions& global, Io io) {
  CELLAR_ASSIGN_OR_RETURN(::cellar::v1::GetClusterInfoResponse info,
                          FetchClusterInfo(global));
  CELLAR_ASSIGN_OR_RETURN(const common::ClusterSizes sizes, FetchSizes(global, info));
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
    const std::vector<std::string> rows = PartitionRowsJson(pt);
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
                  .Raw("data", SizesJson(sizes))
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
         << " (epoch " << info.epoch() << ")\n"
         << "data        ";
  if (sizes.num_partitions > 0 && sizes.partitions_counted == sizes.num_partitions) {
    io.out << sizes.total.objects << " objects, " << sizes.total.revisions << " revisions, "
           << common::HumanBytes(sizes.total.bytes) << "\n\n";
  } else {
    io.out << "unknown (" << sizes.partitions_counted << " of " << sizes.num_partitions
           << " partitions have a readable cell on a storage that answered)\n\n";
  }
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
  if (!sizes.nodes.empty()) {
    std::vector<std::vector<std::string>> size_table = {
        {"STORAGE", "OBJECTS", "REVISIONS", "SIZE", "CELLS"}};
    for (const common::NodeSizes& n : sizes.nodes) {
      if (!n.status.ok()) {
        size_table.push_back({common::NodeName(n.node_id), "?", "?", "?",
                              absl::StrCat("no answer: ", n.status.message())});
        continue;
      }
      size_table.push_back({common::NodeName(n.node_id), absl::StrCat(n.sizes.objects),
                            absl::StrCat(n.sizes.revisions), common::HumanBytes(n.sizes.bytes),
                            absl::StrCat(n.readable_cells, " readable")});
    }
    io.out << "\n";
    PrintTable(size_table, io.out);
  }
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

// ---------------------------------------------------------------------------
// The partition table per row, and the operator actions (cellar.v1.Admin).

namespace {

using AdminStub = ::cellar::v1::Admin::Stub;

// The admin's `cluster` field: the --cluster name only when it was given
// (else the admin's default cluster).
std::string AdminCluster(const GlobalOptions& global) {
  return global.cluster_given ? global.cluster : "";
}

// Calls one Admin rpc with `request.cluster` set; the deadline is the
// larger of --timeout and `min_deadline` (actions that wait for the
// cluster). Refusals come back as the admin passed them on.
template <typename Req, typename Resp>
absl::Status CallAdmin(const GlobalOptions& global,
                       grpc::Status (AdminStub::*method)(grpc::ClientContext*, const Req&,
                                                         Resp*),
                       Req request, Resp* response,
                       absl::Duration min_deadline = absl::ZeroDuration()) {
  request.set_cluster(AdminCluster(global));
  CELLAR_ASSIGN_OR_RETURN(common::ChannelSecurity security, SecurityOf(global));
  auto stub = ::cellar::v1::Admin::NewStub(common::MakeChannel(global.admin, security));
  grpc::ClientContext context;
  common::SetDeadline(&context, std::max(global.timeout, min_deadline));
  absl::Status status =
      common::FromGrpcStatus((stub.get()->*method)(&context, request, response));
  if (status.code() == absl::StatusCode::kUnavailable ||
      status.code() == absl::StatusCode::kDeadlineExceeded) {
    return common::Annotate(status, absl::StrCat("admin ", global.admin, " (see --admin)"));
  }
  return status;
}

// A node argument: a name ("S2", passed on for the admin to check) or an
// id (decimal or 0x hex).
struct NodeArg {
  uint32_t id = 0;
  std::string name;
};

absl::StatusOr<NodeArg> ParseNodeArg(absl::string_view text) {
  NodeArg out;
  if (!text.empty() && absl::ascii_isalpha(static_cast<unsigned char>(text[0]))) {
    out.name = absl::AsciiStrToUpper(text);
    return out;
  }
  uint64_t id;
  if (!common::ParseUint64(text, &id) || id == 0 || id > 0xffffffffu) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad node '", text, "' (a name such as S2, or a node id)"));
  }
  out.id = static_cast<uint32_t>(id);
  return out;
}

template <typename Req>
void SetNode(const NodeArg& node, Req* request) {
  if (node.id != 0) {
    request->set_node_id(node.id);
  } else {
    request->set_name(node.name);
  }
}

std::string TimestampText(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                          absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos()),
                          absl::UTCTimeZone());
}

std::string JsonStrings(const std::vector<std::string>& items) {
  std::vector<std::string> quoted;
  for (const auto& item : items) quoted.push_back(JsonString(item));
  return JsonArray(quoted);
}

absl::Status PrintPartitionChange(const ::cellar::v1::PartitionTableChangeResponse& r,
                                  const GlobalOptions& global, Io io) {
  if (global.json) {
    std::vector<std::string> changes;
    for (const auto& c : r.listing()) {
      changes.push_back(JsonObject()
                            .Num("partition", c.partition())
                            .Str("node", c.node())
                            .Str("state", CellStateName(c.state()))
                            .Build());
    }
    io.out << JsonObject()
                  .Bool("dry_run", r.dry_run())
                  .Bool("applied", r.applied())
                  .Num("ptid_before", r.ptid_before())
                  .Num("ptid", r.ptid())
                  .Num("num_replicas", r.num_replicas())
                  .Str("plan", r.plan())
                  .Raw("changes", JsonArray(changes))
                  .Raw("warnings", JsonStrings({r.warnings().begin(), r.warnings().end()}))
                  .Build()
           << "\n";
    return absl::OkStatus();
  }
  if (!r.listing().empty()) {
    std::vector<std::vector<std::string>> table = {{"PARTITION", "NODE", "NEW STATE"}};
    for (const auto& c : r.listing()) {
      table.push_back({absl::StrCat(c.partition()), c.node(), CellStateName(c.state())});
    }
    PrintTable(table, io.out);
  }
  if (!r.plan().empty()) {
    io.out << "plan:\n";
    for (absl::string_view line : absl::StrSplit(r.plan(), '\n', absl::SkipEmpty())) {
      io.out << "  " << line << "\n";
    }
  }
  if (r.listing().empty() && !r.applied()) {
    io.out << "nothing to change (ptid " << r.ptid() << ", replicas " << r.num_replicas()
           << ")\n";
  } else {
    if (r.applied()) {
      io.out << "applied: ptid " << r.ptid_before() << " -> " << r.ptid() << ", replicas "
             << r.num_replicas() << "\n";
    } else {
      io.out << (r.dry_run() ? "dry run: nothing changed" : "not applied") << " (ptid "
             << r.ptid() << ", replicas " << r.num_replicas() << ")\n";
    }
  }
  for (const auto& w : r.warnings()) io.out << "warning: " << w << "\n";
  return absl::OkStatus();
}

void PrintCheckStatus(const ::cellar::v1::AdminGetCheckStatusResponse& r,
                      const GlobalOptions& global, Io io) {
  if (global.json) {
    std::vector<std::string> mismatches;
    for (const auto& m : r.mismatches()) {
      mismatches.push_back(JsonObject()
                               .Num("partition", m.partition())
                               .Str("node", m.node())
                               .Str("reference_node", m.reference_node())
                               .Str("min_tid", m.min_tid())
                               .Str("max_tid", m.max_tid())
                               .Str("detail", m.detail())
                               .Build());
    }
    std::vector<std::string> skipped;
    for (uint32_t p : r.skipped_partitions()) skipped.push_back(absl::StrCat(p));
    io.out << JsonObject()
                  .Num("check_id", r.check_id())
                  .Bool("running", r.running())
                  .Num("partitions_done", r.partitions_done())
                  .Num("partitions_total", r.partitions_total())
                  .Num("transactions_checked", r.transactions_checked())
                  .Raw("min_tid", TidJson(r.min_tid()))
                  .Str("min_tid_time", r.min_tid_time())
                  .Raw("max_tid", TidJson(r.max_tid()))
                  .Str("max_tid_time", r.max_tid_time())
                  .Raw("mismatches", JsonArray(mismatches))
                  .Raw("skipped_partitions", JsonArray(skipped))
                  .Str("error", r.error())
                  .Str("started", TimestampText(r.started_time()))
                  .Str("finished", TimestampText(r.finished_time()))
                  .Build()
           << "\n";
    return;
  }
  io.out << "check       " << r.check_id() << (r.running() ? " (running)" : " (done)") << "\n"
         << "partitions  " << r.partitions_done() << "/" << r.partitions_total() << " checked";
  if (!r.skipped_partitions().empty()) {
    io.out << ", skipped " << absl::StrJoin(r.skipped_partitions(), ",")
           << " (fewer than two readable cells)";
  }
  io.out << "\n"
         << "tids        " << (r.min_tid() == 0 ? "0" : common::FormatTid(r.min_tid()))
         << " .. " << (r.max_tid() == 0 ? "last" : common::FormatTid(r.max_tid())) << "\n"
         << "checked     " << r.transactions_checked() << " transaction(s)\n";
  if (r.started_time().seconds() != 0) {
    io.out << "started     " << TimestampText(r.started_time()) << "\n";
  }
  if (r.finished_time().seconds() != 0) {
    io.out << "finished    " << TimestampText(r.finished_time()) << "\n";
  }
  if (!r.error().empty()) io.out << "error       " << r.error() << "\n";
  if (r.mismatches().empty()) {
    io.out << "mismatches  none" << (r.running() ? " so far" : "") << "\n";
    return;
  }
  io.out << "mismatches  " << r.mismatches_size() << "\n";
  std::vector<std::vector<std::string>> table = {
      {"PARTITION", "NODE", "REFERENCE", "TIDS", "DETAIL"}};
  for (const auto& m : r.mismatches()) {
    table.push_back({absl::StrCat(m.partition()), m.node(), m.reference_node(),
                     absl::StrCat(m.min_tid(), "..", m.max_tid()), m.detail()});
  }
  PrintTable(table, io.out);
}

absl::StatusOr<uint64_t> ParseTidArg(absl::string_view what, absl::string_view text) {
  CELLAR_ASSIGN_OR_RETURN(uint64_t tid, ParseId(what, text));
  if (tid > common::kMaxTid) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is past the largest TID"));
  }
  return tid;
}

}  // namespace

absl::Status RunPartitionTable(const GlobalOptions& global,
                               const std::vector<std::string>& raw_args, Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args, ParseCommandArgs(raw_args, {}, {}));
  CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 0, "pt"));
  CELLAR_ASSIGN_OR_RETURN(::cellar::v1::GetClusterInfoResponse info, FetchClusterInfo(global));
  const auto& pt = info.partition_table();
  if (global.json) {
    const std::vector<std::string> rows = PartitionRowsJson(pt);
    io.out << JsonObject()
                  .Num("ptid", pt.ptid())
                  .Num("num_partitions", pt.num_partitions())
                  .Num("num_replicas", pt.num_replicas())
                  .Raw("rows", JsonArray(rows))
                  .Build()
           << "\n";
    return absl::OkStatus();
  }
  if (pt.ptid() == 0) {
    io.out << "partition table: none yet\n";
    return absl::OkStatus();
  }
  io.out << "ptid " << pt.ptid() << ", " << pt.num_partitions() << " partitions, "
         << pt.num_replicas() << " replicas\n";
  for (const auto& row : pt.rows()) {
    std::vector<std::string> cells;
    for (const auto& cell : row.cells()) {
      cells.push_back(
          absl::StrCat(common::NodeName('S', cell.node_id()), " ",
                       std::string(1, common::CellStateLetter(cell.state()))));
    }
    io.out << "partition " << row.partition() << ": "
           << (cells.empty() ? std::string("(no cells)") : absl::StrJoin(cells, ", ")) << "\n";
  }
  io.out << "(U up to date, O out of date, F feeding, C corrupted)\n";
  return absl::OkStatus();
}

absl::Status RunSetState(const GlobalOptions& global, const std::vector<std::string>& raw_args,
                         Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args, ParseCommandArgs(raw_args, {}, {}));
  CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 1, "set-state STOPPING|RUNNING"));
  std::string name = absl::AsciiStrToUpper(args.positional[0]);
  if (!absl::StartsWith(name, "CLUSTER_")) name = "CLUSTER_" + name;
  ::cellar::v1::AdminSetClusterStateRequest request;
  if (name == "CLUSTER_STOPPING") {
    request.set_state(::cellar::v1::CLUSTER_STOPPING);
  } else if (name == "CLUSTER_RUNNING") {
    request.set_state(::cellar::v1::CLUSTER_RUNNING);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("bad state '", args.positional[0], "' (STOPPING or RUNNING)"));
  }
  ::cellar::v1::AdminSetClusterStateResponse response;
  CELLAR_RETURN_IF_ERROR(
      CallAdmin(global, &AdminStub::SetClusterState, request, &response, absl::Seconds(35)));
  if (global.json) {
    io.out << JsonObject().Str("cluster_state", ClusterStateName(response.cluster_state())).Build()
           << "\n";
  } else {
    io.out << "cluster state: " << ClusterStateName(response.cluster_state()) << "\n";
  }
  return absl::OkStatus();
}

absl::Status RunPartitionChange(const std::string& command, const GlobalOptions& global,
                                const std::vector<std::string>& raw_args, Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args, ParseCommandArgs(raw_args, {}, {"dry-run"}));
  const bool dry_run = args.flags["dry-run"];
  ::cellar::v1::PartitionTableChangeResponse response;
  const absl::Duration wait = absl::Seconds(35);
  if (command == "tweak") {
    CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 0, "tweak [--dry-run]"));
    ::cellar::v1::TweakPartitionTableRequest request;
    request.set_dry_run(dry_run);
    CELLAR_RETURN_IF_ERROR(
        CallAdmin(global, &AdminStub::TweakPartitionTable, request, &response, wait));
  } else if (command == "add") {
    if (args.positional.empty()) {
      return absl::InvalidArgumentError("usage: cellarctl add S4 [S5 ...] [--dry-run]");
    }
    ::cellar::v1::AddStoragesRequest request;
    request.set_dry_run(dry_run);
    for (const std::string& text : args.positional) {
      CELLAR_ASSIGN_OR_RETURN(NodeArg node, ParseNodeArg(text));
      if (node.id != 0) {
        request.add_node_ids(node.id);
      } else {
        request.add_names(node.name);
      }
    }
    CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::AddStorages, request, &response, wait));
  } else if (command == "drop") {
    CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 1, "drop S3 [--dry-run]"));
    CELLAR_ASSIGN_OR_RETURN(NodeArg node, ParseNodeArg(args.positional[0]));
    ::cellar::v1::DropStorageRequest request;
    SetNode(node, &request);
    request.set_dry_run(dry_run);
    CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::DropStorage, request, &response, wait));
  } else if (command == "set-replicas") {
    CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 1, "set-replicas N [--dry-run]"));
    uint32_t replicas;
    if (!absl::SimpleAtoi(args.positional[0], &replicas) || replicas > 64) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad replica count '", args.positional[0], "' (0..64)"));
    }
    ::cellar::v1::SetReplicasRequest request;
    request.set_replicas(replicas);
    request.set_dry_run(dry_run);
    CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::SetReplicas, request, &response, wait));
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown command '", command, "'"));
  }
  return PrintPartitionChange(response, global, io);
}

absl::Status RunKill(const GlobalOptions& global, const std::vector<std::string>& raw_args,
                     Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args, ParseCommandArgs(raw_args, {}, {"stop"}));
  CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 1, "kill S2 [--stop]"));
  CELLAR_ASSIGN_OR_RETURN(NodeArg node, ParseNodeArg(args.positional[0]));
  ::cellar::v1::AdminKillNodeRequest request;
  SetNode(node, &request);
  request.set_stop(args.flags["stop"]);
  ::cellar::v1::AdminKillNodeResponse response;
  CELLAR_RETURN_IF_ERROR(
      CallAdmin(global, &AdminStub::KillNode, request, &response, absl::Seconds(35)));
  if (global.json) {
    io.out << JsonObject()
                  .Str("node", response.name())
                  .Str("state", NodeStateName(response.node().state()))
                  .Bool("stop_requested", request.stop())
                  .Bool("stopped", response.stopped())
                  .Build()
           << "\n";
    return absl::OkStatus();
  }
  io.out << response.name() << " killed: now " << NodeStateName(response.node().state()) << "\n";
  if (request.stop()) {
    io.out << (response.stopped() ? "stopped: the node acknowledged and stops\n"
                                  : "stopped: no, the node did not acknowledge (unreachable?)\n");
  }
  return absl::OkStatus();
}

absl::Status RunCheckStatus(const GlobalOptions& global,
                            const std::vector<std::string>& raw_args, Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args, ParseCommandArgs(raw_args, {"id"}, {}));
  CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 0, "check-status [--id N]"));
  ::cellar::v1::AdminGetCheckStatusRequest request;
  if (args.values.count("id")) {
    CELLAR_ASSIGN_OR_RETURN(uint64_t id, ParseId("check id", args.values["id"]));
    request.set_check_id(id);
  }
  ::cellar::v1::AdminGetCheckStatusResponse response;
  CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::GetCheckStatus, request, &response));
  PrintCheckStatus(response, global, io);
  return absl::OkStatus();
}

absl::Status RunCheck(const GlobalOptions& global, const std::vector<std::string>& raw_args,
                      Io io) {
  CELLAR_ASSIGN_OR_RETURN(
      CommandArgs args,
      ParseCommandArgs(raw_args, {"partitions", "min-tid", "max-tid"}, {"data", "wait"}));
  CELLAR_RETURN_IF_ERROR(ExpectPositional(
      args, 0, "check [--partitions 1,2] [--min-tid T] [--max-tid T] [--data] [--wait]"));
  ::cellar::v1::AdminCheckReplicasRequest request;
  if (args.values.count("partitions")) {
    for (absl::string_view p :
         absl::StrSplit(args.values["partitions"], ',', absl::SkipWhitespace())) {
      uint32_t partition;
      if (!absl::SimpleAtoi(p, &partition)) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad --partitions '", args.values["partitions"], "' (e.g. 1,2,5)"));
      }
      request.add_partitions(partition);
    }
    if (request.partitions().empty()) {
      return absl::InvalidArgumentError("--partitions needs at least one partition");
    }
  }
  if (args.values.count("min-tid")) {
    CELLAR_ASSIGN_OR_RETURN(uint64_t tid, ParseTidArg("--min-tid", args.values["min-tid"]));
    request.set_min_tid(tid);
  }
  if (args.values.count("max-tid")) {
    CELLAR_ASSIGN_OR_RETURN(uint64_t tid, ParseTidArg("--max-tid", args.values["max-tid"]));
    request.set_max_tid(tid);
  }
  if (request.max_tid() != 0 && request.min_tid() > request.max_tid()) {
    return absl::InvalidArgumentError("--min-tid is above --max-tid");
  }
  request.set_with_data(args.flags["data"]);
  ::cellar::v1::AdminCheckReplicasResponse started;
  CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::CheckReplicas, request, &started));
  if (!args.flags["wait"]) {
    if (global.json) {
      io.out << JsonObject().Num("check_id", started.check_id()).Build() << "\n";
    } else {
      io.out << "check " << started.check_id()
             << " started (cellarctl check-status shows its progress)\n";
    }
    return absl::OkStatus();
  }
  io.err << "check " << started.check_id() << " started\n";
  ::cellar::v1::AdminGetCheckStatusRequest poll;
  poll.set_check_id(started.check_id());
  ::cellar::v1::AdminGetCheckStatusResponse status;
  while (true) {
    CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::GetCheckStatus, poll, &status));
    io.err << "check " << status.check_id() << ": " << status.partitions_done() << "/"
           << status.partitions_total() << " partitions, " << status.transactions_checked()
           << " transactions, " << status.mismatches_size() << " mismatch(es)"
           << (status.running() ? "" : ", done") << "\n";
    if (!status.running()) break;
    absl::SleepFor(global.poll_interval);
  }
  PrintCheckStatus(status, global, io);
  if (!status.mismatches().empty()) {
    return absl::DataLossError(absl::StrCat("check ", status.check_id(), " found ",
                                            status.mismatches_size(),
                                            " cell(s) that differ from their reference"));
  }
  if (!status.error().empty()) {
    return absl::UnavailableError(
        absl::StrCat("check ", status.check_id(), " stopped early: ", status.error()));
  }
  return absl::OkStatus();
}

absl::Status RunRepair(const GlobalOptions& global, const std::vector<std::string>& raw_args,
                       Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args, ParseCommandArgs(raw_args, {"from"}, {}));
  CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 2, "repair PARTITION S2 --from S1"));
  if (!args.values.count("from")) {
    return absl::InvalidArgumentError("usage: cellarctl repair PARTITION S2 --from S1");
  }
  uint32_t partition;
  if (!absl::SimpleAtoi(args.positional[0], &partition)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad partition '", args.positional[0], "'"));
  }
  CELLAR_ASSIGN_OR_RETURN(NodeArg node, ParseNodeArg(args.positional[1]));
  CELLAR_ASSIGN_OR_RETURN(NodeArg source, ParseNodeArg(args.values["from"]));
  ::cellar::v1::AdminRepairCellRequest request;
  request.set_partition(partition);
  SetNode(node, &request);
  if (source.id != 0) {
    request.set_source_node_id(source.id);
  } else {
    request.set_source_name(source.name);
  }
  ::cellar::v1::AdminRepairCellResponse response;
  CELLAR_RETURN_IF_ERROR(
      CallAdmin(global, &AdminStub::RepairCell, request, &response, absl::Seconds(35)));
  if (global.json) {
    io.out << JsonObject().Num("partition", partition).Num("ptid", response.ptid()).Build()
           << "\n";
  } else {
    io.out << "partition " << partition << " on " << args.positional[1]
           << ": OUT_OF_DATE, copying again from " << args.values["from"] << " (ptid "
           << response.ptid() << ")\n";
  }
  return absl::OkStatus();
}

absl::Status RunTruncate(const GlobalOptions& global, const std::vector<std::string>& raw_args,
                         Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args, ParseCommandArgs(raw_args, {}, {"yes"}));
  CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 1, "truncate TID --yes"));
  CELLAR_ASSIGN_OR_RETURN(uint64_t tid, ParseTidArg("TID", args.positional[0]));
  if (tid == 0) return absl::InvalidArgumentError("TID 0 would delete everything: refused");
  if (!args.flags["yes"]) {
    return absl::InvalidArgumentError(absl::StrCat(
        "truncate deletes every transaction after ", common::FormatTid(tid),
        ", cluster-wide, for good: add --yes to confirm"));
  }
  ::cellar::v1::AdminTruncateRequest request;
  request.set_tid(tid);
  ::cellar::v1::AdminTruncateResponse response;
  CELLAR_RETURN_IF_ERROR(
      CallAdmin(global, &AdminStub::Truncate, request, &response, absl::Seconds(125)));
  if (global.json) {
    io.out << JsonObject()
                  .Raw("last_tid", TidJson(response.last_tid()))
                  .Str("last_tid_time", response.last_tid_time())
                  .Str("cluster_state", ClusterStateName(response.cluster_state()))
                  .Build()
           << "\n";
  } else {
    io.out << "truncated: last tid " << TidOrNone(response.last_tid()) << "\n"
           << "cluster state: " << ClusterStateName(response.cluster_state()) << "\n";
  }
  return absl::OkStatus();
}

// One line per storage, or the status as one JSON document.
void PrintPackStatus(const ::cellar::v1::PackStatus& status, const std::string& time,
                     const GlobalOptions& global, Io io) {
  if (global.json) {
    std::vector<std::string> storages;
    for (const ::cellar::v1::StoragePackProgress& p : status.storages()) {
      storages.push_back(JsonObject()
                             .Str("node", common::NodeName(p.node_id()))
                             .Raw("pack_tid", TidJson(p.pack_tid()))
                             .Num("pending_partitions", p.pending_partitions_size())
                             .Num("done_partitions", p.done_partitions_size())
                             .Num("rows_removed", p.rows_removed())
                             .Num("bytes_removed", p.bytes_removed())
                             .Str("error", p.error())
                             .Build());
    }
    io.out << JsonObject()
                  .Raw("pack_tid", TidJson(status.pack_tid()))
                  .Str("pack_tid_time", time)
                  .Bool("done", status.done())
                  .Raw("storages", JsonArray(storages))
                  .Build()
           << "\n";
    return;
  }
  io.out << "pack tid " << TidOrNone(status.pack_tid())
         << (time.empty() ? "" : absl::StrCat(" (", time, ")")) << ": "
         << (status.pack_tid() == 0 ? "never packed" : (status.done() ? "done" : "in progress"))
         << "\n";
  for (const ::cellar::v1::StoragePackProgress& p : status.storages()) {
    io.out << "  " << common::NodeName(p.node_id()) << ": " << p.done_partitions_size()
           << " cell(s) packed, " << p.pending_partitions_size() << " to go, "
           << p.rows_removed() << " revisions / " << p.bytes_removed()
           << " bytes removed since it started"
           << (p.error().empty() ? "" : absl::StrCat(" (", p.error(), ")")) << "\n";
  }
}

absl::Status RunPack(const GlobalOptions& global, const std::vector<std::string>& raw_args,
                     Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args, ParseCommandArgs(raw_args, {"days"}, {"wait"}));
  const bool by_days = args.values.count("days") != 0;
  CELLAR_RETURN_IF_ERROR(ExpectPositional(args, by_days ? 0 : 1, "pack TID|--days N [--wait]"));
  uint64_t tid = 0;
  if (by_days) {
    double days;
    if (!absl::SimpleAtod(args.values["days"], &days) || !(days >= 0) || days > 100000) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad --days '", args.values["days"], "' (e.g. 7 or 0.5)"));
    }
    // N days ago, but not past the last commit (an idle cluster).
    CELLAR_ASSIGN_OR_RETURN(::cellar::v1::GetClusterInfoResponse info, FetchClusterInfo(global));
    tid = std::min<uint64_t>(common::TidFromTime(absl::Now() - absl::Hours(24 * days)),
                             info.last_tid());
    if (tid == 0) return absl::FailedPreconditionError("nothing committed yet: nothing to pack");
  } else {
    CELLAR_ASSIGN_OR_RETURN(tid, ParseTidArg("TID", args.positional[0]));
    if (tid == 0) return absl::InvalidArgumentError("TID 0 packs nothing: refused");
  }
  ::cellar::v1::AdminPackRequest request;
  request.set_pack_tid(tid);
  ::cellar::v1::AdminPackResponse response;
  CELLAR_RETURN_IF_ERROR(
      CallAdmin(global, &AdminStub::Pack, request, &response, absl::Seconds(35)));
  ::cellar::v1::PackStatus status = response.status();
  std::string time = response.pack_tid_time();
  if (args.flags["wait"]) {
    while (!status.done()) {
      uint32_t pending = 0;
      uint64_t rows = 0;
      for (const auto& p : status.storages()) {
        pending += p.pending_partitions_size();
        rows += p.rows_removed();
      }
      io.err << "pack " << common::FormatTid(status.pack_tid()) << ": " << pending
             << " cell(s) to go, " << rows << " revisions removed\n";
      absl::SleepFor(global.poll_interval);
      ::cellar::v1::AdminGetPackStatusResponse polled;
      CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::GetPackStatus,
                                       ::cellar::v1::AdminGetPackStatusRequest(), &polled,
                                       absl::Seconds(35)));
      status = polled.status();
      time = polled.pack_tid_time();
    }
  }
  PrintPackStatus(status, time, global, io);
  return absl::OkStatus();
}

absl::Status RunPackStatus(const GlobalOptions& global, const std::vector<std::string>& raw_args,
                           Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args, ParseCommandArgs(raw_args, {}, {}));
  CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 0, "pack-status"));
  ::cellar::v1::AdminGetPackStatusResponse response;
  CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::GetPackStatus,
                                   ::cellar::v1::AdminGetPackStatusRequest(), &response,
                                   absl::Seconds(35)));
  PrintPackStatus(response.status(), response.pack_tid_time(), global, io);
  return absl::OkStatus();
}

absl::Status RunStopNode(const GlobalOptions& global, const std::vector<std::string>& raw_args,
                         Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args, ParseCommandArgs(raw_args, {"reason"}, {}));
  CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 1, "stop-node S2 [--reason TEXT]"));
  CELLAR_ASSIGN_OR_RETURN(NodeArg node, ParseNodeArg(args.positional[0]));
  ::cellar::v1::StopNodeRequest request;
  SetNode(node, &request);
  const char* user = std::getenv("USER");
  request.set_reason(args.values.count("reason")
                         ? args.values["reason"]
                         : absl::StrCat("cellarctl stop-node (user ",
                                        user != nullptr ? user : "?", ")"));
  ::cellar::v1::StopNodeResponse response;
  CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::StopNode, request, &response));
  if (global.json) {
    io.out << JsonObject()
                  .Str("node", response.name())
                  .Str("address", response.address())
                  .Bool("stopped", response.stopped())
                  .Build()
           << "\n";
  } else {
    io.out << response.name() << " (" << response.address()
           << ") acknowledged: it flushes its logs and stops\n";
  }
  return absl::OkStatus();
}

// "client" -> TOKEN_ROLE_CLIENT (the node role is refused by the master).
absl::StatusOr<::cellar::v1::TokenRole> TokenRoleArg(absl::string_view text) {
  ::cellar::v1::TokenRole role;
  const std::string name = absl::StrCat("TOKEN_ROLE_", absl::AsciiStrToUpper(text));
  if (!::cellar::v1::TokenRole_Parse(name, &role) ||
      role == ::cellar::v1::TOKEN_ROLE_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        absl::StrCat("--role: '", text, "' is not one of client, reader, readonly, admin"));
  }
  return role;
}

std::string TokenRoleText(::cellar::v1::TokenRole role) {
  absl::string_view name = ::cellar::v1::TokenRole_Name(role);
  absl::ConsumePrefix(&name, "TOKEN_ROLE_");
  return absl::AsciiStrToLower(name);
}

std::string TokenInfoJson(const ::cellar::v1::TokenInfo& info) {
  JsonObject o;
  o.Str("id", info.id())
      .Str("name", info.name())
      .Str("role", TokenRoleText(info.role()))
      .Str("source", info.source() == ::cellar::v1::TOKEN_SOURCE_FILE ? "file" : "cluster")
      .Bool("revoked", info.revoked());
  if (info.has_created_time()) o.Str("created", TimestampText(info.created_time()));
  if (info.has_revoked_time()) o.Str("revoked_at", TimestampText(info.revoked_time()));
  return o.Build();
}

// token new: a tokens-file line, no cluster call.
absl::Status RunTokenNew(CommandArgs& args, Io io) {
  if (!args.values.count("role") || !args.values.count("name")) {
    return absl::InvalidArgumentError(
        "usage: cellarctl token new --role client|reader|readonly|admin --name NAME "
        "[--file TOKENS_FILE]");
  }
  CELLAR_ASSIGN_OR_RETURN(common::Role role, common::ParseRole(args.values["role"]));
  CELLAR_ASSIGN_OR_RETURN(common::NewToken token,
                          common::MakeToken(role, args.values["name"]));
  if (args.values.count("file")) {
    // Append only: the servers re-read the file when it changes.
    std::ofstream file(args.values["file"], std::ios::app);
    file << token.line;
    file.flush();
    if (!file) {
      return absl::FailedPreconditionError(
          absl::StrCat("--file: cannot append to '", args.values["file"], "'"));
    }
    io.err << "appended to " << args.values["file"] << ": " << token.line;
  } else {
    io.err << "add this line to the tokens file (--auth_tokens_file):\n" << token.line;
  }
  io.err << "the token is shown once; keep it secret\n";
  io.out << token.token << "\n";
  return absl::OkStatus();
}

absl::Status RunToken(const GlobalOptions& global, const std::vector<std::string>& raw_args,
                      Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args,
                          ParseCommandArgs(raw_args, {"role", "name", "file"}, {}));
  static constexpr absl::string_view kUsage =
      "token new --role R --name N [--file F] | token create --role R --name N | "
      "token list | token revoke ID";
  if (args.positional.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("usage: cellarctl ", kUsage));
  }
  const std::string& verb = args.positional[0];
  if (verb == "new") {
    CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 1, kUsage));
    return RunTokenNew(args, io);
  }
  if (verb == "create") {
    CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 1, kUsage));
    if (!args.values.count("role") || !args.values.count("name")) {
      return absl::InvalidArgumentError(
          "usage: cellarctl token create --role client|reader|readonly|admin --name NAME");
    }
    ::cellar::v1::AdminCreateTokenRequest request;
    CELLAR_ASSIGN_OR_RETURN(::cellar::v1::TokenRole role, TokenRoleArg(args.values["role"]));
    request.set_role(role);
    request.set_name(args.values["name"]);
    ::cellar::v1::CreateTokenResponse response;
    CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::CreateToken, request, &response));
    if (global.json) {
      io.out << JsonObject().Str("token", response.token()).Raw("info", TokenInfoJson(response.info())).Build()
             << "\n";
    } else {
      io.err << "token " << response.info().id() << " (" << TokenRoleText(response.info().role())
             << ", \"" << response.info().name()
             << "\") is valid on every node of the cluster; it is shown once: keep it secret\n";
      io.out << response.token() << "\n";
    }
    return absl::OkStatus();
  }
  if (verb == "list") {
    CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 1, kUsage));
    ::cellar::v1::ListTokensResponse response;
    CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::ListTokens,
                                     ::cellar::v1::AdminListTokensRequest(), &response));
    if (global.json) {
      std::vector<std::string> items;
      for (const auto& info : response.tokens()) items.push_back(TokenInfoJson(info));
      io.out << JsonObject().Num("version", response.version()).Raw("tokens", JsonArray(items)).Build()
             << "\n";
      return absl::OkStatus();
    }
    io.out << absl::StrFormat("%-8s  %-8s  %-7s  %-7s  %-24s  %s\n", "ID", "ROLE", "SOURCE",
                              "STATE", "CREATED", "NAME");
    for (const auto& info : response.tokens()) {
      io.out << absl::StrFormat(
          "%-8s  %-8s  %-7s  %-7s  %-24s  %s\n", info.id(), TokenRoleText(info.role()),
          info.source() == ::cellar::v1::TOKEN_SOURCE_FILE ? "file" : "cluster",
          info.revoked() ? "revoked" : "valid",
          info.has_created_time() ? TimestampText(info.created_time()) : "-", info.name());
    }
    return absl::OkStatus();
  }
  if (verb == "revoke") {
    CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 2, kUsage));
    ::cellar::v1::AdminRevokeTokenRequest request;
    request.set_id(args.positional[1]);
    ::cellar::v1::RevokeTokenResponse response;
    CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::RevokeToken, request, &response));
    if (global.json) {
      io.out << TokenInfoJson(response.info()) << "\n";
    } else {
      io.out << "token " << response.info().id() << " (\"" << response.info().name()
             << "\") revoked: every node refuses it\n";
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("usage: cellarctl ", kUsage));
}

// ---- Feature flags (docs/rollouts.md, "Feature flags").

std::string FlagValueText(const ::cellar::v1::FeatureFlag& flag) {
  if (flag.value_case() == ::cellar::v1::FeatureFlag::kBoolValue) {
    return flag.bool_value() ? "true" : "false";
  }
  return JsonString(flag.string_value());
}

std::string FeatureFlagJson(const ::cellar::v1::FeatureFlag& flag) {
  JsonObject o;
  o.Str("name", flag.name());
  if (flag.value_case() == ::cellar::v1::FeatureFlag::kBoolValue) {
    o.Bool("value", flag.bool_value());
  } else {
    o.Str("value", flag.string_value());
  }
  return o.Str("description", flag.description())
      .Str("owner", flag.owner())
      .Str("created", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                                       absl::FromUnixMillis(flag.created_unix_ms()),
                                       absl::UTCTimeZone()))
      .Build();
}

absl::Status RunFlags(const GlobalOptions& global, const std::vector<std::string>& raw_args,
                      Io io) {
  CELLAR_ASSIGN_OR_RETURN(
      CommandArgs args, ParseCommandArgs(raw_args, {"bool", "string", "description", "owner"}, {}));
  static constexpr absl::string_view kUsage =
      "flags list | flags set NAME (--bool true|false | --string S) [--description D] "
      "[--owner O] | flags delete NAME";
  if (args.positional.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("usage: cellarctl ", kUsage));
  }
  const std::string& verb = args.positional[0];
  if (verb == "list") {
    CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 1, kUsage));
    ::cellar::v1::ListFeatureFlagsResponse response;
    CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::ListFeatureFlags,
                                     ::cellar::v1::AdminListFeatureFlagsRequest(), &response));
    if (global.json) {
      std::vector<std::string> items;
      for (const auto& flag : response.flags()) items.push_back(FeatureFlagJson(flag));
      io.out << JsonObject().Num("version", response.version()).Raw("flags", JsonArray(items)).Build()
             << "\n";
      return absl::OkStatus();
    }
    io.out << absl::StrFormat("%-32s  %-8s  %8s  %-16s  %s\n", "NAME", "VALUE", "AGE_DAYS",
                              "OWNER", "DESCRIPTION");
    for (const auto& flag : response.flags()) {
      const int64_t days =
          (absl::ToUnixMillis(absl::Now()) - flag.created_unix_ms()) / (86400 * 1000);
      io.out << absl::StrFormat("%-32s  %-8s  %8d  %-16s  %s\n", flag.name(),
                                FlagValueText(flag), days, flag.owner(), flag.description());
    }
    return absl::OkStatus();
  }
  if (verb == "set") {
    CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 2, kUsage));
    ::cellar::v1::AdminSetFeatureFlagRequest request;
    request.set_name(args.positional[1]);
    if (args.values.count("bool") == args.values.count("string")) {
      return absl::InvalidArgumentError(
          absl::StrCat("flags set: give exactly one of --bool or --string; usage: cellarctl ",
                       kUsage));
    }
    if (args.values.count("bool")) {
      const std::string& v = args.values["bool"];
      if (v != "true" && v != "false") {
        return absl::InvalidArgumentError("--bool: true or false");
      }
      request.set_bool_value(v == "true");
    } else {
      request.set_string_value(args.values["string"]);
    }
    if (args.values.count("description")) request.set_description(args.values["description"]);
    if (args.values.count("owner")) request.set_owner(args.values["owner"]);
    ::cellar::v1::SetFeatureFlagResponse response;
    CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::SetFeatureFlag, request, &response));
    if (global.json) {
      io.out << JsonObject()
                    .Bool("created", response.created())
                    .Num("version", response.version())
                    .Raw("flag", FeatureFlagJson(response.flag()))
                    .Build()
             << "\n";
    } else {
      io.out << "flag " << response.flag().name() << " = " << FlagValueText(response.flag())
             << (response.created() ? " (created)" : "") << ", table version "
             << response.version() << "\n";
    }
    return absl::OkStatus();
  }
  if (verb == "delete") {
    CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 2, kUsage));
    ::cellar::v1::AdminDeleteFeatureFlagRequest request;
    request.set_name(args.positional[1]);
    ::cellar::v1::DeleteFeatureFlagResponse response;
    CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::DeleteFeatureFlag, request, &response));
    if (global.json) {
      io.out << JsonObject()
                    .Num("version", response.version())
                    .Raw("flag", FeatureFlagJson(response.flag()))
                    .Build()
             << "\n";
    } else {
      io.out << "flag " << response.flag().name() << " deleted, table version "
             << response.version() << "\n";
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("usage: cellarctl ", kUsage));
}

// ---- Version registry and quarantine (docs/rollouts.md).

std::string VersionJson(const ::cellar::v1::VersionInfo& v) {
  std::vector<std::string> ids;
  for (uint32_t id : v.node_ids()) ids.push_back(JsonString(common::NodeName(id)));
  JsonObject o;
  o.Str("version", v.version())
      .Str("track", v.track())
      .Num("storages", v.storages())
      .Num("clients", v.clients())
      .Num("admins", v.admins())
      .Raw("nodes", JsonArray(ids))
      .Num("restarts", v.restarts())
      .Num("worst_node_restarts", v.worst_node_restarts())
      .Num("downs", v.downs())
      .Bool("quarantined", v.quarantined());
  if (v.quarantined()) {
    o.Str("reason", v.reason())
        .Str("by", v.quarantined_by())
        .Str("since", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                                       absl::FromUnixMillis(v.quarantined_unix_ms()),
                                       absl::UTCTimeZone()));
  }
  return o.Build();
}

absl::Status RunVersions(const GlobalOptions& global, const std::vector<std::string>& raw_args,
                         Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args,
                          ParseCommandArgs(raw_args, {"track", "reason"}, {}));
  static constexpr absl::string_view kUsage =
      "versions list | versions quarantine VERSION --track T --reason R | "
      "versions unquarantine VERSION --track T --reason R";
  if (args.positional.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("usage: cellarctl ", kUsage));
  }
  const std::string& verb = args.positional[0];
  if (verb == "list") {
    CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 1, kUsage));
    ::cellar::v1::ListVersionsResponse response;
    CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::ListVersions,
                                     ::cellar::v1::AdminListVersionsRequest(), &response));
    if (global.json) {
      std::vector<std::string> items, history;
      for (const auto& v : response.versions()) items.push_back(VersionJson(v));
      for (const auto& d : response.history()) {
        history.push_back(JsonObject()
                              .Str("time", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                                                            absl::FromUnixMillis(d.unix_ms()),
                                                            absl::UTCTimeZone()))
                              .Str("version", d.version())
                              .Str("track", d.track())
                              .Str("action", d.action())
                              .Str("by", d.by())
                              .Str("reason", d.reason())
                              .Build());
      }
      io.out << JsonObject()
                    .Raw("versions", JsonArray(items))
                    .Raw("history", JsonArray(history))
                    .Num("quarantine_restarts", response.quarantine_restarts())
                    .Num("quarantine_downs", response.quarantine_downs())
                    .Num("quarantine_window_ms", response.quarantine_window_ms())
                    .Build()
             << "\n";
      return absl::OkStatus();
    }
    io.out << absl::StrFormat("%-16s  %-7s  %8s  %7s  %6s  %8s  %5s  %-11s  %s\n", "VERSION",
                              "TRACK", "STORAGES", "CLIENTS", "ADMINS", "RESTARTS", "DOWNS",
                              "QUARANTINED", "REASON");
    for (const auto& v : response.versions()) {
      io.out << absl::StrFormat("%-16s  %-7s  %8d  %7d  %6d  %8d  %5d  %-11s  %s\n",
                                v.version(), v.track(), v.storages(), v.clients(), v.admins(),
                                v.restarts(), v.downs(), v.quarantined() ? "yes" : "no",
                                v.quarantined() ? v.reason() + " (" + v.quarantined_by() + ")"
                                                : "");
    }
    for (const auto& d : response.history()) {
      io.out << absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(d.unix_ms()),
                                 absl::UTCTimeZone())
             << "  " << d.action() << " " << d.version() << "/" << d.track() << " by " << d.by()
             << ": " << d.reason() << "\n";
    }
    return absl::OkStatus();
  }
  if (verb == "quarantine" || verb == "unquarantine") {
    CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 2, kUsage));
    if (!args.values.count("track") || !args.values.count("reason")) {
      return absl::InvalidArgumentError(
          absl::StrCat("versions ", verb, ": --track and --reason are required; usage: cellarctl ",
                       kUsage));
    }
    ::cellar::v1::AdminQuarantineVersionRequest request;
    request.set_version(args.positional[1]);
    request.set_track(args.values["track"]);
    request.set_reason(args.values["reason"]);
    ::cellar::v1::QuarantineVersionResponse response;
    CELLAR_RETURN_IF_ERROR(CallAdmin(
        global,
        verb == "quarantine" ? &AdminStub::QuarantineVersion : &AdminStub::UnquarantineVersion,
        request, &response));
    if (global.json) {
      io.out << JsonObject()
                    .Bool("changed", response.changed())
                    .Raw("version", VersionJson(response.version()))
                    .Build()
             << "\n";
    } else {
      io.out << "version " << request.version() << "/" << request.track() << " "
             << (response.version().quarantined() ? "quarantined" : "not quarantined")
             << (response.changed() ? "" : " (unchanged)") << "\n";
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("usage: cellarctl ", kUsage));
}

// ---- Canary analysis (docs/rollouts.md, "Canary analysis").

std::string CanaryIntervalJson(const ::cellar::v1::CanaryIntervalResult& r) {
  return JsonObject()
      .Str("start", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                                     absl::FromUnixMillis(r.start_unix_ms()),
                                     absl::UTCTimeZone()))
      .Str("end", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(r.end_unix_ms()),
                                   absl::UTCTimeZone()))
      .Str("outcome", r.outcome())
      .Str("reason", r.reason())
      .Num("loads", r.loads())
      .Num("load_errors", r.load_errors())
      .Num("stores", r.stores())
      .Num("store_errors", r.store_errors())
      .Num("checksum_failures", r.checksum_failures())
      .Raw("error_ratio", absl::StrCat(r.error_ratio()))
      .Raw("stable_error_ratio", absl::StrCat(r.stable_error_ratio()))
      .Raw("load_p99_ms", absl::StrCat(r.load_p99_ms()))
      .Raw("stable_load_p99_ms", absl::StrCat(r.stable_load_p99_ms()))
      .Raw("store_p99_ms", absl::StrCat(r.store_p99_ms()))
      .Raw("stable_store_p99_ms", absl::StrCat(r.stable_store_p99_ms()))
      .Build();
}

absl::Status RunCanary(const GlobalOptions& global, const std::vector<std::string>& raw_args,
                       Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs args, ParseCommandArgs(raw_args, {}, {}));
  static constexpr absl::string_view kUsage = "canary status";
  if (args.positional.empty() || args.positional[0] != "status") {
    return absl::InvalidArgumentError(absl::StrCat("usage: cellarctl ", kUsage));
  }
  CELLAR_RETURN_IF_ERROR(ExpectPositional(args, 1, kUsage));
  ::cellar::v1::GetCanaryAnalysisResponse response;
  CELLAR_RETURN_IF_ERROR(CallAdmin(global, &AdminStub::GetCanaryAnalysis,
                                   ::cellar::v1::AdminGetCanaryAnalysisRequest(), &response));
  if (global.json) {
    std::vector<std::string> canaries;
    for (const auto& c : response.canaries()) {
      std::vector<std::string> intervals;
      for (const auto& r : c.intervals()) intervals.push_back(CanaryIntervalJson(r));
      canaries.push_back(JsonObject()
                             .Str("version", c.version())
                             .Str("track", c.track())
                             .Str("verdict", c.verdict())
                             .Str("reason", c.reason())
                             .Num("consecutive_passes", c.consecutive_passes())
                             .Bool("quarantined", c.quarantined())
                             .Raw("intervals", JsonArray(intervals))
                             .Build());
    }
    io.out << JsonObject()
                  .Raw("canaries", JsonArray(canaries))
                  .Num("interval_ms", static_cast<uint64_t>(response.interval_ms()))
                  .Raw("max_error_ratio", absl::StrCat(response.max_error_ratio()))
                  .Raw("max_latency_ratio", absl::StrCat(response.max_latency_ratio()))
                  .Num("min_requests", response.min_requests())
                  .Num("promote_after", response.promote_after())
                  .Build()
           << "\n";
    return absl::OkStatus();
  }
  io.out << absl::StrFormat(
      "thresholds: interval %s, error ratio <= %g, p99 <= %g x stable's, >= %d calls, "
      "promote after %d passing intervals\n",
      absl::FormatDuration(absl::Milliseconds(response.interval_ms())),
      response.max_error_ratio(), response.max_latency_ratio(), response.min_requests(),
      response.promote_after());
  if (response.canaries().empty()) {
    io.out << "no canary version seen (storages run with --track=canary)\n";
    return absl::OkStatus();
  }
  io.out << absl::StrFormat("%-16s  %-7s  %-8s  %6s  %-11s  %s\n", "VERSION", "TRACK", "VERDICT",
                            "PASSES", "QUARANTINED", "REASON");
  for (const auto& c : response.canaries()) {
    io.out << absl::StrFormat("%-16s  %-7s  %-8s  %6d  %-11s  %s\n", c.version(), c.track(),
                              c.verdict(), c.consecutive_passes(),
                              c.quarantined() ? "yes" : "no", c.reason());
    const int shown = std::min(c.intervals_size(), 5);
    for (int i = c.intervals_size() - shown; i < c.intervals_size(); ++i) {
      const auto& r = c.intervals(i);
      io.out << absl::StrFormat(
          "  %s  %-7s  calls %d  error ratio %.4f (stable %.4f)  p99 load %gms (stable %gms)  "
          "p99 store %gms (stable %gms)%s\n",
          absl::FormatTime("%H:%M:%SZ", absl::FromUnixMillis(r.end_unix_ms()),
                           absl::UTCTimeZone()),
          r.outcome(), r.loads() + r.stores(), r.error_ratio(), r.stable_error_ratio(),
          r.load_p99_ms(), r.stable_load_p99_ms(), r.store_p99_ms(), r.stable_store_p99_ms(),
          r.reason().empty() ? "" : "  " + r.reason());
    }
  }
  return absl::OkStatus();
}

absl::Status RunHealth(const GlobalOptions& global,
                       const std::vector<std::string>& args, Io io) {
  CELLAR_ASSIGN_OR_RETURN(CommandArgs parsed, ParseCommandArgs(args, {"service"}, {}));
  CELLAR_RETURN_IF_ERROR(ExpectPositional(parsed, 1, "health HOST:PORT [--service NAME]"));
  const std::string& address = parsed.positional[0];
  const std::string service = parsed.values.count("service") ? parsed.values["service"] : "";
  CELLAR_ASSIGN_OR_RETURN(common::ChannelSecurity security, SecurityOf(global));
  auto stub = ::grpc::health::v1::Health::NewStub(common::MakeChannel(address, security));
  grpc::ClientContext context;
  common::SetDeadline(&context, global.timeout);
  ::grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  ::grpc::health::v1::HealthCheckResponse response;
  const std::string what =
      absl::StrCat(address, " health of '", service, "'");
  absl::Status status = common::FromGrpcStatus(stub->Check(&context, request, &response));
  if (!status.ok()) return common::Annotate(status, what);
  const std::string serving =
      ::grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
  if (global.json) {
    io.out << JsonObject()
                  .Str("address", address)
                  .Str("service", service)
                  .Str("status", serving)
                  .Build()
           << "\n";
  } else {
    io.out << what << ": " << serving << "\n";
  }
  if (response.status() != ::grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::UnavailableError(absl::StrCat(what, " is ", serving));
  }
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
  } else if (command == "pt") {
    status = RunPartitionTable(global, args, io);
  } else if (command == "health") {
    status = RunHealth(global, args, io);
  } else if (command == "set-state") {
    status = RunSetState(global, args, io);
  } else if (command == "tweak" || command == "add" || command == "drop" ||
             command == "set-replicas") {
    status = RunPartitionChange(command, global, args, io);
  } else if (command == "kill") {
    status = RunKill(global, args, io);
  } else if (command == "check") {
    status = RunCheck(global, args, io);
  } else if (command == "check-status") {
    status = RunCheckStatus(global, args, io);
  } else if (command == "repair") {
    status = RunRepair(global, args, io);
  } else if (command == "truncate") {
    status = RunTruncate(global, args, io);
  } else if (command == "pack") {
    status = RunPack(global, args, io);
  } else if (command == "pack-status") {
    status = RunPackStatus(global, args, io);
  } else if (command == "stop-node") {
    status = RunStopNode(global, args, io);
  } else if (command == "token") {
    status = RunToken(global, args, io);
  } else if (command == "flags") {
    status = RunFlags(global, args, io);
  } else if (command == "versions") {
    status = RunVersions(global, args, io);
  } else if (command == "canary") {
    status = RunCanary(global, args, io);
  } else {
    status = absl::InvalidArgumentError(absl::StrCat(
        "unknown command '", command, "' (cellarctl help lists them)"));
  }
  if (status.ok()) return kExitOk;
  if (command == "check" && status.code() == absl::StatusCode::kDataLoss) {
    // The report (with its mismatches) is already the one JSON document.
    GlobalOptions text_only = global;
    text_only.json = false;
    PrintError(status, text_only, io);
    return ExitCodeFor(status);
  }
  PrintError(status, global, io);
  return ExitCodeFor(status);
}

}  // namespace cellar::cellarctl
