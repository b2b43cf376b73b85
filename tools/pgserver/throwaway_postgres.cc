#include "tools/pgserver/throwaway_postgres.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "services/common/status_macros.h"

namespace cellar::tools {
namespace {

constexpr char kRunuser[] = "/usr/sbin/runuser";
constexpr int kDefaultSocketPort = 5432;
// sockaddr_un.sun_path is 108 bytes; "/.s.PGSQL.NNNNN" takes 16 of them.
constexpr size_t kMaxSocketDirLength = 90;

std::string ErrnoMessage(absl::string_view what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

// The last `max_bytes` of a file (for error messages), "" if unreadable.
std::string FileTail(const std::string& path, size_t max_bytes = 2000) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  if (text.size() > max_bytes)
    text = "..." + text.substr(text.size() - max_bytes);
  return text;
}

absl::Status WriteFile(const std::string& path, absl::string_view contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// A libpq conninfo value, quoted when needed.
std::string QuoteConninfoValue(absl::string_view value) {
  bool plain = !value.empty();
  for (char c : value) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) || c == '\'' ||
        c == '\\') {
      plain = false;
    }
  }
  if (plain) return std::string(value);
  std::string quoted = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') quoted.push_back('\\');
    quoted.push_back(c);
  }
  quoted.push_back('\'');
  return quoted;
}

// Runs argv (argv[0] an absolute path) in `cwd` with stdout and stderr
// appended to `log_path`, waits at most `timeout`. The command's output is
// in the error message when it fails.
absl::Status RunCommand(const std::vector<std::string>& argv,
                        const std::string& cwd, const std::string& log_path,
                        absl::Duration timeout) {
  const std::string command = absl::StrJoin(argv, " ");
  int log_fd =
      open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    return absl::InternalError(ErrnoMessage(absl::StrCat("open ", log_path)));
  }
  // Everything the child needs, prepared before fork (only async-signal-safe
  // calls in between fork and exec).
  std::vector<char*> args;
  for (const std::string& arg : argv)
    args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const std::string header = absl::StrCat("$ ", command, "\n");
  (void)!write(log_fd, header.data(), header.size());

  pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return absl::InternalError(ErrnoMessage("fork"));
  }
  if (pid == 0) {
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    closefrom(3);
    // The postgres user may not be able to read this process' cwd.
    if (chdir(cwd.c_str()) != 0) _exit(126);
    execv(args[0], args.data());
    _exit(127);
  }
  close(log_fd);

  const absl::Time deadline = absl::Now() + timeout;
  int wait_status = 0;
  while (true) {
    pid_t done = waitpid(pid, &wait_status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) {
      return absl::InternalError(ErrnoMessage("waitpid"));
    }
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &wait_status, 0);
      return absl::DeadlineExceededError(absl::StrCat(
          "`", command, "` did not finish within ",
          absl::FormatDuration(timeout), "; output:\n", FileTail(log_path)));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) {
    return absl::OkStatus();
  }
  return absl::InternalError(
      absl::StrCat("`", command, "` failed (",
                   WIFEXITED(wait_status)
                       ? absl::StrCat("exit status ", WEXITSTATUS(wait_status))
                       : absl::StrCat("signal ", WTERMSIG(wait_status)),
                   "); output:\n", FileTail(log_path)));
}

// Prefixes `runuser -u <user> --` when running as root.
std::vector<std::string> AsServerUser(const ThrowawayPostgres::Options& options,
                                      std::vector<std::string> argv) {
  if (geteuid() != 0) return argv;
  std::vector<std::string> wrapped = {kRunuser, "-u", options.os_user, "--"};
  wrapped.insert(wrapped.end(), argv.begin(), argv.end());
  return wrapped;
}

std::string Bin(const ThrowawayPostgres::Options& options,
                absl::string_view name) {
  return absl::StrCat(options.bin_dir, "/", name);
}

absl::Status CheckBinaries(const ThrowawayPostgres::Options& options) {
  for (absl::string_view name : {"initdb", "pg_ctl", "postgres"}) {
    const std::string path = Bin(options, name);
    if (access(path.c_str(), X_OK) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(path,
                       " is missing or not executable (install Debian's "
                       "postgresql-15, or set Options::bin_dir)"));
    }
  }
  if (geteuid() == 0 && access(kRunuser, X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(kRunuser, " is missing: needed to run PostgreSQL as ",
                     "a non-root user"));
  }
  return absl::OkStatus();
}

// A loopback TCP port that is free right now.
absl::StatusOr<int> PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(ErrnoMessage("socket"));
  absl::Cleanup close_fd = [fd] { close(fd); };
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::InternalError(ErrnoMessage("bind 127.0.0.1:0"));
  }
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return absl::InternalError(ErrnoMessage("getsockname"));
  }
  return static_cast<int>(ntohs(addr.sin_port));
}

// Hands `path` to the server's OS user when running as root.
absl::Status ChownToServerUser(const ThrowawayPostgres::Options& options,
                               const std::string& path) {
  if (geteuid() != 0) return absl::OkStatus();
  struct passwd* pw = getpwnam(options.os_user.c_str());
  if (pw == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("no OS user '", options.os_user,
                     "' to run PostgreSQL as (this process is root)"));
  }
  if (chown(path.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
    return absl::InternalError(ErrnoMessage(absl::StrCat("chown ", path)));
  }
  return absl::OkStatus();
}

bool IsValidDatabaseName(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') {
      return false;
    }
  }
  return true;
}

// Waits until the server behind `conninfo` accepts connections.
absl::Status WaitForServer(const std::string& conninfo, absl::Time deadline,
                           const std::string& log_path) {
  while (true) {
    if (PQping(conninfo.c_str()) == PQPING_OK) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "PostgreSQL at \"", conninfo,
          "\" does not accept connections; server log:\n", FileTail(log_path)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

}  // namespace

absl::StatusOr<std::string> ConninfoWithDatabase(absl::string_view conninfo,
                                                 absl::string_view dbname) {
  char* error = nullptr;
  PQconninfoOption* parsed =
      PQconninfoParse(std::string(conninfo).c_str(), &error);
  if (parsed == nullptr) {
    std::string message = error != nullptr ? error : "out of memory";
    PQfreemem(error);
    return absl::InvalidArgumentError(
        absl::StrCat("bad PostgreSQL connection string: ", message));
  }
  absl::Cleanup free_parsed = [parsed] { PQconninfoFree(parsed); };
  std::vector<std::string> parts;
  for (PQconninfoOption* option = parsed; option->keyword != nullptr;
       ++option) {
    if (std::strcmp(option->keyword, "dbname") == 0) continue;
    if (option->val == nullptr) continue;
    parts.push_back(
        absl::StrCat(option->keyword, "=", QuoteConninfoValue(option->val)));
  }
  parts.push_back(absl::StrCat("dbname=", QuoteConninfoValue(dbname)));
  return absl::StrJoin(parts, " ");
}

namespace {

// Runs DDL statements about database `name` (DDL takes no parameters:
// `make_sql` gets the validated, quoted identifier).
absl::Status RunDatabaseDdl(
    absl::string_view admin_conninfo, absl::string_view name,
    const std::function<std::vector<std::string>(const std::string&)>&
        make_sql) {
  if (!IsValidDatabaseName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad database name '", name, "': use 1-63 letters, digits or '_'"));
  }
  const std::string admin(admin_conninfo);
  const char* keywords[] = {"connect_timeout", "dbname", nullptr};
  const char* values[] = {"10", admin.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  absl::Cleanup finish = [conn] { PQfinish(conn); };
  if (PQstatus(conn) != CONNECTION_OK) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to PostgreSQL: ", PQerrorMessage(conn)));
  }
  // No "database ... does not exist, skipping" on stderr.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  char* quoted = PQescapeIdentifier(conn, name.data(), name.size());
  if (quoted == nullptr) {
    return absl::InternalError(PQerrorMessage(conn));
  }
  const std::string ident = quoted;
  PQfreemem(quoted);
  for (const std::string& sql : make_sql(ident)) {
    PGresult* result = PQexec(conn, sql.c_str());
    const bool ok = PQresultStatus(result) == PGRES_COMMAND_OK;
    std::string message = PQresultErrorMessage(result);
    PQclear(result);
    if (!ok) {
      return absl::InternalError(absl::StrCat(sql, ": ", message));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> CreatePostgresDatabase(
    absl::string_view admin_conninfo, absl::string_view name) {
  CELLAR_RETURN_IF_ERROR(
      RunDatabaseDdl(admin_conninfo, name, [](const std::string& ident) {
        return std::vector<std::string>{
            absl::StrCat("DROP DATABASE IF EXISTS ", ident, " WITH (FORCE)"),
            absl::StrCat("CREATE DATABASE ", ident)};
      }));
  return ConninfoWithDatabase(admin_conninfo, name);
}

absl::Status DropPostgresDatabase(absl::string_view admin_conninfo,
                                  absl::string_view name) {
  return RunDatabaseDdl(admin_conninfo, name, [](const std::string& ident) {
    return std::vector<std::string>{
        absl::StrCat("DROP DATABASE IF EXISTS ", ident, " WITH (FORCE)")};
  });
}

absl::Status StopPostgresAt(absl::string_view dir, absl::string_view mode,
                            const ThrowawayPostgres::Options& options) {
  const std::string dir_string(dir);
  const std::string data_dir = absl::StrCat(dir, "/data");
  if (access(absl::StrCat(data_dir, "/postmaster.pid").c_str(), F_OK) != 0) {
    return absl::OkStatus();  // not running
  }
  const int seconds =
      std::max<int64_t>(1, absl::ToInt64Seconds(options.timeout));
  return RunCommand(AsServerUser(options, {Bin(options, "pg_ctl"), "stop", "-D",
                                           data_dir, "-m", std::string(mode),
                                           "-w", "-t", absl::StrCat(seconds)}),
                    dir_string, absl::StrCat(dir, "/commands.log"),
                    options.timeout + absl::Seconds(5));
}

ThrowawayPostgres::ThrowawayPostgres(Options options, std::string dir,
                                     bool temporary_dir, int port)
    : options_(std::move(options)),
      dir_(std::move(dir)),
      temporary_dir_(temporary_dir),
      port_(port) {
  conninfo_ = absl::StrCat("host=", QuoteConninfoValue(dir_), " port=", port_,
                           " user=postgres dbname=postgres");
  if (options_.listen_tcp) {
    tcp_conninfo_ = absl::StrCat("host=127.0.0.1 port=", port_,
                                 " user=postgres dbname=postgres");
  }
}

absl::StatusOr<std::unique_ptr<ThrowawayPostgres>> ThrowawayPostgres::Start(
    Options options) {
  if (options.max_connections < 1 || options.port < 0 || options.port > 65535 ||
      options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "ThrowawayPostgres: max_connections, port or timeout out of range");
  }
  CELLAR_RETURN_IF_ERROR(CheckBinaries(options));
  int port = options.port;
  if (port == 0 && !options.listen_tcp) port = kDefaultSocketPort;
  if (port == 0) {
    CELLAR_ASSIGN_OR_RETURN(port, PickFreePort());
  }

  // The directory.
  std::string dir = options.dir;
  const bool temporary_dir = dir.empty();
  if (temporary_dir) {
    char pattern[] = "/tmp/cellar-pg-XXXXXX";
    if (mkdtemp(pattern) == nullptr) {
      return absl::InternalError(ErrnoMessage("mkdtemp /tmp/cellar-pg-XXXXXX"));
    }
    dir = pattern;
  } else {
    std::error_code error;
    std::filesystem::create_directories(dir, error);
    if (error) {
      return absl::InternalError(
          absl::StrCat("cannot create ", dir, ": ", error.message()));
    }
    dir = std::filesystem::absolute(dir).lexically_normal().string();
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  }
  if (dir.size() > kMaxSocketDirLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ThrowawayPostgres: directory path too long for a unix socket (",
        dir.size(), " > ", kMaxSocketDirLength, " bytes): ", dir));
  }
  // From here on the destructor cleans up what exists.
  std::unique_ptr<ThrowawayPostgres> server(
      new ThrowawayPostgres(options, dir, temporary_dir, port));

  chmod(dir.c_str(), 0755);
  CELLAR_RETURN_IF_ERROR(ChownToServerUser(options, dir));
  const std::string data_dir = absl::StrCat(dir, "/data");
  const std::string commands_log = absl::StrCat(dir, "/commands.log");
  const std::string server_log = absl::StrCat(dir, "/postgres.log");
  const absl::Time deadline = absl::Now() + options.timeout;

  if (access(absl::StrCat(data_dir, "/PG_VERSION").c_str(), F_OK) != 0) {
    CELLAR_RETURN_IF_ERROR(RunCommand(
        AsServerUser(options,
                     {Bin(options, "initdb"), "-D", data_dir, "-U", "postgres",
                      "-A", "trust", "-E", "UTF8", "--locale=C"}),
        dir, commands_log, options.timeout));
    // Our settings live in their own file, rewritten at every start.
    std::ofstream conf(absl::StrCat(data_dir, "/postgresql.conf"),
                       std::ios::app);
    conf << "\n# Added by cellar's ThrowawayPostgres.\n"
         << "include_if_exists = 'cellar.conf'\n";
    conf.close();
    if (!conf) {
      return absl::InternalError(
          absl::StrCat("cannot append to ", data_dir, "/postgresql.conf"));
    }
  } else if (access(absl::StrCat(data_dir, "/postmaster.pid").c_str(), F_OK) ==
             0) {
    return absl::FailedPreconditionError(
        absl::StrCat("a PostgreSQL server seems to be running in ", dir,
                     " already (data/postmaster.pid exists): stop it first"));
  }

  std::vector<std::string> settings = {
      absl::StrCat("listen_addresses = '",
                   options.listen_tcp ? "127.0.0.1" : "", "'"),
      absl::StrCat("port = ", port),
      absl::StrCat("unix_socket_directories = '", dir, "'"),
      absl::StrCat("max_connections = ", options.max_connections),
      absl::StrCat("fsync = ", options.fsync ? "on" : "off"),
      "synchronous_commit = on",
      "full_page_writes = on",
      "shared_buffers = '32MB'",
      "logging_collector = off",
  };
  settings.insert(settings.end(), options.extra_config.begin(),
                  options.extra_config.end());
  const std::string cellar_conf = absl::StrCat(data_dir, "/cellar.conf");
  CELLAR_RETURN_IF_ERROR(WriteFile(
      cellar_conf, absl::StrCat(absl::StrJoin(settings, "\n"), "\n")));
  CELLAR_RETURN_IF_ERROR(ChownToServerUser(options, cellar_conf));

  const absl::Duration left = deadline - absl::Now();
  const int seconds = std::max<int64_t>(1, absl::ToInt64Seconds(left));
  server->running_ = true;  // from now on, the destructor stops it
  absl::Status started =
      RunCommand(AsServerUser(options, {Bin(options, "pg_ctl"), "start", "-D",
                                        data_dir, "-l", server_log, "-w", "-t",
                                        absl::StrCat(seconds)}),
                 dir, commands_log, left + absl::Seconds(5));
  if (!started.ok()) {
    return absl::Status(started.code(),
                        absl::StrCat(started.message(), "\nserver log:\n",
                                     FileTail(server_log)));
  }
  CELLAR_RETURN_IF_ERROR(WaitForServer(
      server->conninfo_, deadline + absl::Seconds(5), server_log));
  return server;
}

absl::StatusOr<std::string> ThrowawayPostgres::CreateDatabase(
    absl::string_view name) const {
  return CreatePostgresDatabase(conninfo_, name);
}

absl::Status ThrowawayPostgres::Stop() {
  if (!running_) return absl::OkStatus();
  running_ = false;
  return StopPostgresAt(dir_, "immediate", options_);
}

ThrowawayPostgres::~ThrowawayPostgres() {
  if (detached_) return;
  // Best effort: a destructor has nobody to report to.
  (void)Stop();
  if (temporary_dir_) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

}  // namespace cellar::tools
