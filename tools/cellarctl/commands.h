#ifndef CELLAR_TOOLS_CELLARCTL_COMMANDS_H_
#define CELLAR_TOOLS_CELLARCTL_COMMANDS_H_

// cellarctl: the operator's and developer's command line for a cellar
// cluster. The commands live here, writing to caller-given streams, so
// tests run them in-process; main.cc only parses and dispatches.
//
//   status                        cluster state, nodes, partition table
//   put OID|new DATA|@FILE|-      commit a new revision (reads the serial)
//   get OID [--at TID] [--raw]    print a revision's data
//   history OID [--limit N]       revisions, newest first
//   last-transactions [--limit N] the last transactions, newest first
//   pt                            the partition table, one line per partition
//   health HOST:PORT [--service S] grpc.health.v1 Check of one process
//
// Operator actions, through the admin node's API (--admin, cellar.v1.Admin):
//   set-state STOPPING|RUNNING, tweak [--dry-run], add S4 [S5..] [--dry-run],
//   drop S3 [--dry-run], set-replicas N [--dry-run], kill S2 [--stop],
//   check [--partitions 1,2] [--min-tid T] [--max-tid T] [--data] [--wait],
//   check-status [--id N], repair P S2 --from S1, truncate TID --yes,
//   stop-node S2 [--reason TEXT]
//
// Tokens (docs/security.md): token new (a tokens-file line, no call);
//   token create --role R --name N, token list, token revoke ID (cluster
//   tokens, through the admin node's API)
//
// Errors print "error: <GRPC_CODE>: <message> [reason: R]" on stderr (and,
// with --json, {"error": {...}} on stdout) and map to exit codes by class
// (ExitCode below).
//
// Thread-compatible: each call is independent.

#include <istream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/common/tls_config.h"

namespace cellar::cellarctl {

// Flags every command takes (anywhere on the command line).
struct GlobalOptions {
  // --master: master addresses, tried in order. Default 127.0.0.1:7100.
  std::vector<std::string> masters = {"127.0.0.1:7100"};
  // --cluster: cluster name. Default "cellar".
  std::string cluster = "cellar";
  // --json: one JSON document on stdout instead of text. Default off.
  bool json = false;
  // --timeout: deadline of each call and of connecting. Default 10 s.
  absl::Duration timeout = absl::Seconds(10);
  // --admin: the admin node (operator actions). Default 127.0.0.1:7300.
  std::string admin = "127.0.0.1:7300";
  // --cluster was given: operator actions name that cluster to the admin
  // (otherwise they ask for the admin's default cluster). Default false.
  bool cluster_given = false;
  // check --wait: time between two GetCheckStatus polls. Default 1 s.
  absl::Duration poll_interval = absl::Seconds(1);
  // Bearer token sent on every call (docs/security.md): the contents of
  // --token-file, else $CELLAR_TOKEN (set by main). Default "": none.
  std::string token;
  // TLS (docs/security.md, "TLS and mTLS"), each from its flag, else its
  // environment variable (set by main): --tls-ca / CELLAR_TLS_CA (the CA
  // of the servers; TLS is on when any of the four is set),
  // --tls-cert / CELLAR_TLS_CERT and --tls-key / CELLAR_TLS_KEY (client
  // certificate), --tls-server-name / CELLAR_TLS_SERVER_NAME. Default "".
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
};

// The TLS settings of `global`; nullopt (plaintext) when none is set.
std::optional<common::TlsClientConfig> TlsConfigOf(const GlobalOptions& global);

// Fills the settings a flag left empty from the environment: CELLAR_TOKEN,
// CELLAR_TLS_CA, CELLAR_TLS_CERT, CELLAR_TLS_KEY, CELLAR_TLS_SERVER_NAME.
void FillFromEnvironment(GlobalOptions& global);

// Exit codes, by error class.
enum ExitCode : int {
  kExitOk = 0,
  // INTERNAL, UNKNOWN and anything not listed below.
  kExitError = 1,
  // Bad command line, or INVALID_ARGUMENT.
  kExitUsage = 2,
  // NOT_FOUND: no such object / revision.
  kExitNotFound = 3,
  // ABORTED: conflict; retry.
  kExitConflict = 4,
  // UNAVAILABLE / DEADLINE_EXCEEDED: retry later.
  kExitUnavailable = 5,
  // FAILED_PRECONDITION: wrong cluster, cluster not running.
  kExitFailedPrecondition = 6,
  // DATA_LOSS: checksum mismatch on every replica.
  kExitDataLoss = 7,
  // RESOURCE_EXHAUSTED: object too large, rate limits.
  kExitResourceExhausted = 8,
};

int ExitCodeFor(const absl::Status& status);

// A parsed command line.
struct CommandLine {
  GlobalOptions global;
  // "" when none was given.
  std::string command;
  // Arguments after the command (command flags included).
  std::vector<std::string> args;
  bool help = false;
};

// Parses argv (without the program name). Global flags may appear
// anywhere: --master=A,B | --master A,B, --cluster, --json, --timeout=5s
// (or seconds), --token-file=PATH (read here), --tls-ca, --tls-cert,
// --tls-key, --tls-server-name (paths, read when used), --help/-h. "--" ends flag
// parsing. INVALID_ARGUMENT on a bad global flag value or an unreadable
// token file.
absl::StatusOr<CommandLine> ParseCommandLine(
    const std::vector<std::string>& argv);

// Usage text with examples.
std::string Usage();

// Where a command reads and writes.
struct Io {
  std::istream& in;
  std::ostream& out;
  std::ostream& err;
};

// Runs a parsed command line: prints results, or usage, or the error;
// returns the exit code.
int Run(const CommandLine& command_line, Io io);

// The commands (results on io.out; extra information on io.err).
absl::Status RunStatus(const GlobalOptions& global, Io io);
absl::Status RunPut(const GlobalOptions& global,
                    const std::vector<std::string>& args, Io io);
absl::Status RunGet(const GlobalOptions& global,
                    const std::vector<std::string>& args, Io io);
absl::Status RunHistory(const GlobalOptions& global,
                        const std::vector<std::string>& args, Io io);
absl::Status RunLastTransactions(const GlobalOptions& global,
                                 const std::vector<std::string>& args, Io io);
// The partition table per row ("partition 3: S1 U, S2 O").
absl::Status RunPartitionTable(const GlobalOptions& global,
                               const std::vector<std::string>& args, Io io);

// health HOST:PORT [--service NAME]: grpc.health.v1.Health/Check of one
// process (open without credentials; the TLS settings apply, so it is the
// chart's probe when the gRPC ports serve TLS, which the kubelet's native
// gRPC probe cannot speak). OK when SERVING; UNAVAILABLE when NOT_SERVING
// or unreachable; NOT_FOUND for a service the process does not know.
absl::Status RunHealth(const GlobalOptions& global,
                       const std::vector<std::string>& args, Io io);

// Operator actions (cellar.v1.Admin at global.admin). Node arguments are
// names ("S2") or ids (2, 0x2).
absl::Status RunSetState(const GlobalOptions& global,
                         const std::vector<std::string>& args, Io io);
// tweak, add, drop, set-replicas: `command` says which.
absl::Status RunPartitionChange(const std::string& command, const GlobalOptions& global,
                                const std::vector<std::string>& args, Io io);
absl::Status RunKill(const GlobalOptions& global,
                     const std::vector<std::string>& args, Io io);
// With --wait, polls until the check ends (progress on io.err) and
// returns DATA_LOSS if it found mismatches, UNAVAILABLE if it stopped early.
absl::Status RunCheck(const GlobalOptions& global,
                      const std::vector<std::string>& args, Io io);
absl::Status RunCheckStatus(const GlobalOptions& global,
                            const std::vector<std::string>& args, Io io);
// token new --role R --name N [--file F]: makes a token, prints it once on
// io.out and appends its hashed line to F (or prints the line on io.err).
// No cluster call.
absl::Status RunToken(const std::vector<std::string>& args, Io io);
absl::Status RunRepair(const GlobalOptions& global,
                       const std::vector<std::string>& args, Io io);
// Refuses (INVALID_ARGUMENT) without --yes.
absl::Status RunTruncate(const GlobalOptions& global,
                         const std::vector<std::string>& args, Io io);
absl::Status RunStopNode(const GlobalOptions& global,
                         const std::vector<std::string>& args, Io io);

}  // namespace cellar::cellarctl

#endif  // CELLAR_TOOLS_CELLARCTL_COMMANDS_H_
