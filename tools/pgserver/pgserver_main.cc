// pgserver: a throwaway PostgreSQL server for scripts and local runs.
//
//   pgserver --dir /tmp/pg start   # prints the conninfo, leaves it running
//   pgserver --dir /tmp/pg stop    # stops it (fast mode); keeps the data
//
// The directory keeps data/ between runs; `start` reuses it.

#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/time.h"
#include "tools/pgserver/throwaway_postgres.h"

ABSL_FLAG(std::string, dir, "", "Cluster directory (required; short path)");
ABSL_FLAG(bool, tcp, false, "Also listen on 127.0.0.1");
ABSL_FLAG(int, port, 0,
          "Port (0: a free one with --tcp, else 5432 for the socket name)");
ABSL_FLAG(int, max_connections, 200, "max_connections of the server");
ABSL_FLAG(std::string, bin_dir, "/usr/lib/postgresql/15/bin",
          "Directory of initdb/pg_ctl/postgres");
ABSL_FLAG(int, timeout_seconds, 60, "Bound on start/stop");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "pgserver --dir DIR start|stop: runs a private PostgreSQL server");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string dir = absl::GetFlag(FLAGS_dir);
  if (args.size() != 2 || dir.empty() ||
      (std::string(args[1]) != "start" && std::string(args[1]) != "stop")) {
    std::cerr << "usage: pgserver --dir DIR [--tcp] [--port N] start|stop\n";
    return 2;
  }
  cellar::tools::ThrowawayPostgres::Options options;
  options.dir = dir;
  options.listen_tcp = absl::GetFlag(FLAGS_tcp);
  options.port = absl::GetFlag(FLAGS_port);
  options.max_connections = absl::GetFlag(FLAGS_max_connections);
  options.bin_dir = absl::GetFlag(FLAGS_bin_dir);
  options.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout_seconds));

  if (std::string(args[1]) == "stop") {
    absl::Status stopped = cellar::tools::StopPostgresAt(dir, "fast", options);
    if (!stopped.ok()) {
      std::cerr << "pgserver: " << stopped << "\n";
      return 1;
    }
    std::cerr << "pgserver: stopped the server in " << dir << "\n";
    return 0;
  }
  auto server = cellar::tools::ThrowawayPostgres::Start(options);
  if (!server.ok()) {
    std::cerr << "pgserver: " << server.status() << "\n";
    return 1;
  }
  (*server)->Detach();
  std::cout << (options.listen_tcp ? (*server)->tcp_conninfo()
                                   : (*server)->conninfo())
            << std::endl;
  return 0;
}
