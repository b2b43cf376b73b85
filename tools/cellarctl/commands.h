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
//
// Errors print "error: <GRPC_CODE>: <message> [reason: R]" on stderr (and,
// with --json, {"error": {...}} on stdout) and map to exit codes by class
// (ExitCode below).
//
// Thread-compatible: each call is independent.

#include <istream>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

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
};

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
// (or seconds), --help/-h. "--" ends flag parsing. INVALID_ARGUMENT on a
// bad global flag value.
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

}  // namespace cellar::cellarctl

#endif  // CELLAR_TOOLS_CELLARCTL_COMMANDS_H_
