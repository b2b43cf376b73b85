#ifndef CELLAR_TOOLS_PGSERVER_THROWAWAY_POSTGRES_H_
#define CELLAR_TOOLS_PGSERVER_THROWAWAY_POSTGRES_H_

// A real, private PostgreSQL server for tests and local runs (Debian's
// PostgreSQL 15 binaries; never a mock).
//
//   CELLAR_ASSIGN_OR_RETURN(auto pg, ThrowawayPostgres::Start({}));
//   CELLAR_ASSIGN_OR_RETURN(std::string db, pg->CreateDatabase("t1"));
//   ... PQconnectdb(db.c_str()) ...
//   // ~ThrowawayPostgres: `pg_ctl stop -m immediate`, directory removed.
//
// Start() runs initdb (fsync stays ON: durability is measured), writes the
// server settings into postgresql.conf and starts the server with pg_ctl,
// listening on a unix socket in its directory (and, if asked, on a
// loopback TCP port). When this process is root, initdb and pg_ctl run as
// `Options::os_user` through `runuser -u <user> --` (PostgreSQL refuses to
// run as root); otherwise they run as the current user.
//
// Every wait is bounded by Options::timeout and fails with
// DEADLINE_EXCEEDED and the tail of the server's log.
//
// Thread-safety: const methods may be called from any thread;
// CreateDatabase() may be called concurrently; Stop()/Detach() and the
// destructor must not race with other calls.
//
// If the owning process dies without running the destructor (SIGKILL,
// abort), the server keeps running: `pgserver --dir D stop` or
// `tools/pg stop D` stops it.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace cellar::tools {

class ThrowawayPostgres {
 public:
  struct Options {
    // Directory for the cluster: data/ (PGDATA), the unix socket and logs.
    // Default "": a fresh /tmp/cellar-pg-XXXXXX, deleted by the destructor.
    // Non-empty: created if absent, reused if it already holds a cluster,
    // never deleted. Unix socket paths are limited to ~100 bytes: keep it
    // short (Bazel's TEST_TMPDIR is usually too long).
    std::string dir;
    // Where initdb, pg_ctl and postgres live.
    // Default: Debian's "/usr/lib/postgresql/15/bin".
    std::string bin_dir = "/usr/lib/postgresql/15/bin";
    // Also listen on 127.0.0.1 (default false: unix socket only).
    bool listen_tcp = false;
    // The port: the TCP port when listen_tcp, otherwise only the number in
    // the socket file's name. Default 0: a free loopback port when
    // listen_tcp, 5432 otherwise (the socket directory is private anyway).
    int port = 0;
    // max_connections of the server (default 200).
    int max_connections = 200;
    // fsync of the server (default true; turn off only for benchmarks that
    // don't measure durability).
    bool fsync = true;
    // The OS user that runs initdb/pg_ctl when this process is root
    // (default "postgres"). Ignored when not root.
    std::string os_user = "postgres";
    // Bound on initdb, on server start and on stop (default 60 s).
    absl::Duration timeout = absl::Seconds(60);
    // Extra postgresql.conf lines, e.g. "log_statement = 'all'"
    // (default none).
    std::vector<std::string> extra_config;
  };

  // Creates (or reuses, see Options::dir) a cluster and starts the server;
  // returns once it accepts connections. INVALID_ARGUMENT for bad options,
  // FAILED_PRECONDITION if a binary is missing, DEADLINE_EXCEEDED if the
  // server does not come up in time, INTERNAL if a command fails (the
  // message carries its output).
  static absl::StatusOr<std::unique_ptr<ThrowawayPostgres>> Start(
      Options options);

  // Stops the server (immediate mode) and removes a temporary directory,
  // unless Detach() was called.
  ~ThrowawayPostgres();

  ThrowawayPostgres(const ThrowawayPostgres&) = delete;
  ThrowawayPostgres& operator=(const ThrowawayPostgres&) = delete;

  // libpq connection string to the "postgres" database over the unix
  // socket, e.g. "host=/tmp/cellar-pg-Ab12Cd port=5432 user=postgres
  // dbname=postgres".
  const std::string& conninfo() const { return conninfo_; }
  // The same over TCP ("host=127.0.0.1 port=N ..."), "" unless listen_tcp.
  const std::string& tcp_conninfo() const { return tcp_conninfo_; }
  // The cluster directory and the port.
  const std::string& dir() const { return dir_; }
  int port() const { return port_; }

  // Creates database `name` (letters, digits, '_'; dropped first if it
  // exists) and returns a connection string for it.
  absl::StatusOr<std::string> CreateDatabase(absl::string_view name) const;

  // Stops the server now (immediate mode); idempotent. The directory is
  // kept until destruction.
  absl::Status Stop();

  // Leaves the server running and the directory in place on destruction
  // (used by the `pgserver start` CLI).
  void Detach() { detached_ = true; }

 private:
  ThrowawayPostgres(Options options, std::string dir, bool temporary_dir,
                    int port);

  Options options_;
  std::string dir_;
  bool temporary_dir_;
  int port_;
  std::string conninfo_;
  std::string tcp_conninfo_;
  bool running_ = false;
  bool detached_ = false;
};

// Stops the server of the cluster in `dir` (pg_ctl stop; `mode` is
// "immediate", "fast" or "smart"). OK if no server is running there.
absl::Status StopPostgresAt(absl::string_view dir, absl::string_view mode,
                            const ThrowawayPostgres::Options& options);

// Creates database `name` on the server reached by `admin_conninfo`
// (dropping an existing one of that name first) and returns a connection
// string for it. `name`: 1-63 letters, digits or '_' (INVALID_ARGUMENT
// otherwise); UNAVAILABLE if the server can't be reached.
absl::StatusOr<std::string> CreatePostgresDatabase(
    absl::string_view admin_conninfo, absl::string_view name);

// Drops database `name` (same rules), terminating its sessions. OK if it
// doesn't exist.
absl::Status DropPostgresDatabase(absl::string_view admin_conninfo,
                                  absl::string_view name);

// `conninfo` (key=value string or postgresql:// URI) with its database
// replaced by `dbname`, as a key=value string. INVALID_ARGUMENT if
// `conninfo` doesn't parse.
absl::StatusOr<std::string> ConninfoWithDatabase(absl::string_view conninfo,
                                                 absl::string_view dbname);

}  // namespace cellar::tools

#endif  // CELLAR_TOOLS_PGSERVER_THROWAWAY_POSTGRES_H_
