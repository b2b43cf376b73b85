#include "tools/cluster/process_cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <utility>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "protos/cellar/v1/master.grpc.pb.h"
#include "services/common/auth_tokens.h"
#include "services/common/channel.h"
#include "services/common/status_macros.h"
#include "tools/credentials/throwaway_credentials.h"
#include "tools/pgserver/throwaway_postgres.h"

namespace cellar::tools {
namespace {

using cluster::ClusterFile;
using cluster::NodeProcess;

constexpr char kMaster[] = "master";
constexpr char kStorage[] = "storage";
constexpr char kAdmin[] = "admin";
constexpr absl::Duration kPoll = absl::Milliseconds(50);
// Unix socket paths are limited to 108 bytes; PostgreSQL appends
// "/.s.PGSQL.5432" to its socket directory.
constexpr size_t kMaxPgDirLength = 80;

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

bool IsExecutable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

absl::Status MakeDirs(const std::string& path) {
  std::string partial;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    partial += std::string(part) + "/";
    if (part.empty()) continue;
    if (mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(absl::StrCat("mkdir ", partial, ": ", strerror(errno)));
    }
  }
  return absl::OkStatus();
}

std::string Loopback(int port) { return absl::StrCat("127.0.0.1:", port); }

std::string HealthService(const std::string& role) {
  if (role == kMaster) return "cellar.v1.Master";
  if (role == kStorage) return "cellar.v1.Storage";
  return "cellar.v1.Admin";
}

std::string ExitText(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("was killed by signal ", WTERMSIG(status));
  return absl::StrCat("ended (wait status ", status, ")");
}

// Process state letter from /proc/<pid>/stat ('R', 'S', 'T', 'Z', ...), or
// 0 if there is no such process.
char ProcState(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 >= text.size()) return 0;
  return text[paren + 2];
}

// argv[0] of a live process, "" if unknown.
std::string ProcArgv0(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/cmdline"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text.substr(0, text.find('\0'));
}

// Ends the process with the given signal?
bool Terminates(int signal) {
  switch (signal) {
    case SIGKILL:
    case SIGTERM:
    case SIGINT:
    case SIGQUIT:
    case SIGHUP:
    case SIGABRT:
      return true;
    default:
      return false;
  }
}

// The kernel's ephemeral port range.
std::pair<int, int> EphemeralRange() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 32768, high = 60999;
  if (!(in >> low >> high)) return {32768, 60999};
  return {low, high};
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("rename ", tmp, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

// A fresh channel with its own subchannel: polls of a process that is
// (re)starting must not wait out the reconnect backoff of an earlier,
// refused connection attempt (shared subchannels keep it for seconds).
std::shared_ptr<grpc::Channel> FreshChannel(const std::string& address,
                                            const common::ChannelSecurity& security) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(64 << 20);
  return common::MakeChannelWithArgs(address, args, security);
}

// grpc.health.v1 status of `service` at `address` ("" if no answer).
std::string CheckHealth(const common::ChannelSecurity& security, const std::string& address,
                        const std::string& service, absl::Duration timeout) {
  auto stub = grpc::health::v1::Health::NewStub(FreshChannel(address, security));
  grpc::ClientContext context;
  common::SetDeadline(&context, timeout);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  if (!stub->Check(&context, request, &response).ok()) return "";
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
}

}  // namespace

absl::StatusOr<int> ParseSignal(const std::string& text) {
  const std::string upper = absl::AsciiStrToUpper(text);
  int number;
  if (absl::SimpleAtoi(upper, &number) && number > 0 && number < 65) return number;
  absl::string_view view = upper;
  absl::ConsumePrefix(&view, "SIG");
  const std::string s(view);
  static const std::map<std::string, int> kSignals = {
      {"KILL", SIGKILL}, {"TERM", SIGTERM}, {"STOP", SIGSTOP}, {"CONT", SIGCONT},
      {"INT", SIGINT},   {"HUP", SIGHUP},   {"QUIT", SIGQUIT}, {"ABRT", SIGABRT},
      {"USR1", SIGUSR1}, {"USR2", SIGUSR2}};
  auto it = kSignals.find(s);
  if (it == kSignals.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown signal \"", text, "\": use KILL, TERM, STOP, CONT, INT, HUP, QUIT or a number"));
  }
  return it->second;
}

absl::StatusOr<ClusterBinaries> FindClusterBinaries(const std::string& argv0) {
  auto in_dir = [](const std::string& dir, bool bazel_layout) {
    ClusterBinaries b;
    if (bazel_layout) {
      b.master = dir + "/services/master/cellar-master";
      b.storage = dir + "/services/storage/cellar-storage";
      b.admin = dir + "/services/admin/cellar-admin";
    } else {
      b.master = dir + "/cellar-master";
      b.storage = dir + "/cellar-storage";
      b.admin = dir + "/cellar-admin";
    }
    return b;
  };
  auto ok = [](const ClusterBinaries& b) {
    return IsExecutable(b.master) && IsExecutable(b.storage) && IsExecutable(b.admin);
  };
  std::vector<std::string> tried;
  if (const char* dir = getenv("CELLAR_BIN_DIR"); dir != nullptr && *dir != '\0') {
    ClusterBinaries b = in_dir(dir, false);
    if (ok(b)) return b;
    tried.push_back(absl::StrCat("$CELLAR_BIN_DIR=", dir));
  }
  std::vector<std::string> runfiles;
  if (const char* d = getenv("RUNFILES_DIR"); d != nullptr && *d != '\0') runfiles.push_back(d);
  if (const char* d = getenv("TEST_SRCDIR"); d != nullptr && *d != '\0') runfiles.push_back(d);
  if (!argv0.empty()) runfiles.push_back(argv0 + ".runfiles");
  if (!argv0.empty()) {
    char resolved[PATH_MAX];
    if (realpath("/proc/self/exe", resolved) != nullptr) {
      runfiles.push_back(std::string(resolved) + ".runfiles");
    }
  }
  for (const std::string& r : runfiles) {
    ClusterBinaries b = in_dir(r + "/cellar", true);
    if (ok(b)) return b;
    tried.push_back(r + "/cellar");
  }
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof(cwd)) != nullptr) {
    std::string dir = cwd;
    while (!dir.empty()) {
      ClusterBinaries b = in_dir(dir + "/bazel-bin", true);
      if (ok(b)) return b;
      const size_t slash = dir.rfind('/');
      if (slash == std::string::npos) break;
      dir = dir.substr(0, slash);
    }
    tried.push_back(absl::StrCat("bazel-bin/ in ", cwd, " and its parents"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "cellar-master, cellar-storage and cellar-admin not found (tried ",
      absl::StrJoin(tried, ", "),
      "); build them (bazel build //services/...) or set CELLAR_BIN_DIR"));
}

// ---------------------------------------------------------------------------

ProcessCluster::ProcessCluster(ProcessClusterOptions options) : options_(std::move(options)) {}

ProcessCluster::~ProcessCluster() {
  if (options_.stop_on_destruction && !down_) {
    absl::Status s = Down();
    if (!s.ok() && options_.on_progress) options_.on_progress(absl::StrCat("down: ", s.ToString()));
    // A server of ours in a /tmp directory of its own: nothing else will
    // ever find it again.
    if (file_.postgres().temporary_dir() && !file_.postgres().dir().empty()) {
      std::error_code ec;
      std::filesystem::remove_all(file_.postgres().dir(), ec);
    }
  }
  if (lock_fd_ >= 0) close(lock_fd_);
}

absl::Status ProcessCluster::Lock() {
  const std::string path = options_.dir + "/cluster.lock";
  lock_fd_ = open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) {
    return absl::InternalError(absl::StrCat("open ", path, ": ", strerror(errno)));
  }
  const absl::Time deadline = absl::Now() + options_.ready_timeout;
  while (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (absl::Now() > deadline) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, " is locked by another process using this cluster (a test or cellar-cluster)"));
    }
    absl::SleepFor(kPoll);
  }
  return absl::OkStatus();
}

absl::Status ProcessCluster::Save() const {
  std::string json;
  google::protobuf::util::JsonPrintOptions print;
  print.add_whitespace = true;
  print.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(file_, &json, print).ok()) {
    return absl::InternalError("cannot serialize cluster.json");
  }
  return WriteFileAtomically(file_.dir() + "/cluster.json", json);
}

absl::StatusOr<std::unique_ptr<ProcessCluster>> ProcessCluster::Attach(
    ProcessClusterOptions options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("dir: required");
  char resolved[PATH_MAX];
  if (realpath(options.dir.c_str(), resolved) == nullptr) {
    return absl::NotFoundError(absl::StrCat("no cluster directory ", options.dir));
  }
  options.dir = resolved;
  std::unique_ptr<ProcessCluster> c(new ProcessCluster(std::move(options)));
  CELLAR_ASSIGN_OR_RETURN(std::string json, ReadFile(c->options_.dir + "/cluster.json"));
  google::protobuf::util::JsonParseOptions parse;
  parse.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(json, &c->file_, parse).ok()) {
    return absl::DataLossError(
        absl::StrCat(c->options_.dir, "/cluster.json does not parse"));
  }
  CELLAR_RETURN_IF_ERROR(c->Lock());
  c->file_.set_dir(c->options_.dir);
  for (NodeProcess& node : *c->file_.mutable_nodes()) {
    c->used_ports_.push_back(node.port());
    c->used_ports_.push_back(node.metrics_port());
    c->ProcessState(node);
  }
  if (!c->options_.stop_on_destruction) c->down_ = true;
  CELLAR_RETURN_IF_ERROR(c->LoadAuthFiles());
  CELLAR_RETURN_IF_ERROR(c->Save());
  return c;
}

absl::StatusOr<std::unique_ptr<ProcessCluster>> ProcessCluster::Up(
    ProcessClusterOptions options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("dir: required");
  const ClusterTopology& t = options.topology;
  if (t.masters < 1 || t.masters > 3) {
    return absl::InvalidArgumentError("masters: must be 1, 2 or 3");
  }
  if (t.storages < 1) return absl::InvalidArgumentError("storages: must be at least 1");
  if (t.partitions < 1) return absl::InvalidArgumentError("partitions: must be at least 1");
  CELLAR_RETURN_IF_ERROR(MakeDirs(options.dir));
  char resolved[PATH_MAX];
  if (realpath(options.dir.c_str(), resolved) == nullptr) {
    return absl::InternalError(absl::StrCat("realpath ", options.dir, ": ", strerror(errno)));
  }
  options.dir = resolved;

  if (FileExists(options.dir + "/cluster.json")) {
    // The same cluster again, on its data.
    const bool stop_on_destruction = options.stop_on_destruction;
    options.stop_on_destruction = false;
    CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<ProcessCluster> c, Attach(std::move(options)));
    for (const NodeProcess& node : c->file_.nodes()) {
      if (node.pid() != 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the cluster in ", c->dir(), " is already up (", node.name(), " is pid ",
            node.pid(), "); use `down` first"));
      }
    }
    c->options_.stop_on_destruction = stop_on_destruction;
    c->down_ = false;
    if (c->options_.on_progress) {
      c->options_.on_progress(
          absl::StrCat("starting the existing cluster in ", c->dir(), " again on its data"));
    }
    absl::Status s = c->StartPostgresIfNeeded();
    if (s.ok()) s = c->StartAll();
    if (!s.ok()) {
      c->Down().IgnoreError();
      return s;
    }
    return c;
  }

  std::unique_ptr<ProcessCluster> c(new ProcessCluster(std::move(options)));
  const ClusterTopology& topology = c->options_.topology;
  CELLAR_RETURN_IF_ERROR(c->Lock());
  if (c->options_.binaries.has_value()) {
    c->binaries_ = *c->options_.binaries;
  } else {
    CELLAR_ASSIGN_OR_RETURN(c->binaries_, FindClusterBinaries());
  }
  c->file_.set_format(1);
  c->file_.set_dir(c->options_.dir);
  c->file_.set_cluster_name(topology.cluster_name);
  c->file_.set_partitions(topology.partitions);
  c->file_.set_replicas(topology.replicas);
  absl::Status s = topology.auth ? c->CreateAuthFiles() : absl::OkStatus();
  if (s.ok() && topology.tls) s = c->CreateTlsFiles();
  if (s.ok()) s = c->LoadAuthFiles();
  if (s.ok()) s = c->StartPostgresIfNeeded();
  if (s.ok()) s = c->CreateNodes();
  if (s.ok()) s = c->Save();
  // Masters, storages one by one (so that Sk registers as node Sk), admin.
  for (int i = 0; s.ok() && i < c->file_.nodes_size(); ++i) {
    NodeProcess& node = *c->file_.mutable_nodes(i);
    if (node.role() == kStorage && topology.masters > 1 && !c->PrimaryMaster().ok()) {
      s = c->WaitForPrimary(c->options_.ready_timeout).status();
      if (!s.ok()) break;
    }
    s = c->StartNode(node, /*first_start=*/true, /*wait_ready=*/node.role() != kStorage);
  }
  const int autostart = topology.autostart < 0 ? topology.storages : topology.autostart;
  if (s.ok() && autostart > 0) s = c->WaitUntilRunning();
  if (!s.ok()) {
    c->Down().IgnoreError();
    return s;
  }
  return c;
}

absl::Status ProcessCluster::CreateAuthFiles() {
  return WriteThrowawayAuth(options_.dir, "tools/cluster");
}

absl::Status ProcessCluster::CreateTlsFiles() { return WriteThrowawayTls(options_.dir); }

absl::Status ProcessCluster::LoadAuthFiles() {
  const std::string tls_dir = options_.dir + "/tls";
  if (access((tls_dir + "/ca.pem").c_str(), F_OK) == 0) {
    common::TlsClientConfig tls;
    // Rotation tests replace the files: see them within a second.
    tls.reload_interval = absl::Seconds(1);
    tls.ca_file = tls_dir + "/ca.pem";
    tls.cert_file = tls_dir + "/node.pem";
    tls.key_file = tls_dir + "/node.key";
    node_tls_ = tls;
    tls.cert_file = tls_dir + "/client.pem";
    tls.key_file = tls_dir + "/client.key";
    client_tls_ = tls;
  }
  const std::string secret_file = options_.dir + "/cluster-secret";
  if (access(secret_file.c_str(), F_OK) == 0) {
    CELLAR_ASSIGN_OR_RETURN(std::string secret, common::ReadClusterSecret(secret_file));
    node_bearer_ = common::NodeBearer(secret);
    absl::StatusOr<std::string> token = ReadFile(options_.dir + "/client.token");
    if (token.ok()) client_token_ = std::string(absl::StripAsciiWhitespace(*token));
  }
  CELLAR_ASSIGN_OR_RETURN(node_channel_, common::MakeChannelSecurity(node_bearer_, node_tls_));
  return absl::OkStatus();
}

absl::Status ProcessCluster::StartPostgresIfNeeded() {
  const ClusterTopology& t = options_.topology;
  const bool creating = file_.nodes_size() == 0;
  if (creating) {
    const bool election = t.election_pg.value_or(t.masters > 1);
    bool needs_pg = election || t.postgres;
    if (!needs_pg) return absl::OkStatus();
    if (!options_.postgres_conninfo.empty()) {
      file_.mutable_postgres()->set_conninfo(options_.postgres_conninfo);
    } else {
      ThrowawayPostgres::Options pg;
      const std::string wanted = options_.dir + "/pg";
      pg.dir = wanted.size() <= kMaxPgDirLength ? wanted : "";
      if (options_.on_progress) {
        options_.on_progress(absl::StrCat("starting PostgreSQL in ",
                                          pg.dir.empty() ? "a /tmp directory" : pg.dir));
      }
      CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<ThrowawayPostgres> server,
                              ThrowawayPostgres::Start(pg));
      server->Detach();
      file_.mutable_postgres()->set_conninfo(server->conninfo());
      file_.mutable_postgres()->set_dir(server->dir());
      file_.mutable_postgres()->set_temporary_dir(pg.dir.empty());
    }
    if (election) {
      static int counter = 0;
      std::string prefix = options_.database_prefix.empty()
                               ? absl::StrCat("cluster_", getpid(), "_", counter++)
                               : options_.database_prefix;
      options_.database_prefix = prefix;
      const std::string name = prefix + "_election";
      CELLAR_ASSIGN_OR_RETURN(std::string conninfo,
                              CreatePostgresDatabase(file_.postgres().conninfo(), name));
      (void)conninfo;
      file_.mutable_postgres()->set_election_database(name);
    }
    return absl::OkStatus();
  }
  // Starting an existing cluster again: its own server, if it had one.
  if (!file_.has_postgres() || file_.postgres().dir().empty()) return absl::OkStatus();
  ThrowawayPostgres::Options pg;
  pg.dir = file_.postgres().dir();
  if (options_.on_progress) options_.on_progress("starting PostgreSQL in " + pg.dir);
  CELLAR_ASSIGN_OR_RETURN(std::unique_ptr<ThrowawayPostgres> server,
                          ThrowawayPostgres::Start(pg));
  server->Detach();
  return absl::OkStatus();
}

absl::Status ProcessCluster::CreateNodes() {
  const ClusterTopology& t = options_.topology;
  static int counter = 0;
  if (options_.database_prefix.empty()) {
    options_.database_prefix = absl::StrCat("cluster_", getpid(), "_", counter++);
  }
  std::vector<std::string> masters;
  for (int i = 1; i <= t.masters; ++i) {
    NodeProcess* node = file_.add_nodes();
    node->set_name(absl::StrCat("M", i));
    node->set_role(kMaster);
  }
  for (int k = 1; k <= t.storages; ++k) {
    NodeProcess* node = file_.add_nodes();
    node->set_name(absl::StrCat("S", k));
    node->set_role(kStorage);
    if (k <= static_cast<int>(t.labels.size())) node->set_label(t.labels[k - 1]);
    if (k <= static_cast<int>(t.storage_backends.size()) &&
        !t.storage_backends[k - 1].empty()) {
      node->set_backend(t.storage_backends[k - 1]);
    } else if (t.postgres) {
      const std::string name = absl::StrCat(options_.database_prefix, "_s", k);
      CELLAR_ASSIGN_OR_RETURN(std::string conninfo,
                              CreatePostgresDatabase(file_.postgres().conninfo(), name));
      node->set_backend(conninfo);
      node->set_database(name);
    } else {
      node->set_backend(absl::StrCat("sqlite://", options_.dir, "/", node->name(), ".db"));
    }
  }
  if (t.admin) {
    NodeProcess* node = file_.add_nodes();
    node->set_name("A1");
    node->set_role(kAdmin);
  }
  for (NodeProcess& node : *file_.mutable_nodes()) {
    node.set_port(PickPort());
    node.set_metrics_port(PickPort());
    node.set_log(absl::StrCat(options_.dir, "/", node.name(), ".log"));
  }
  for (NodeProcess& node : *file_.mutable_nodes()) {
    std::vector<std::string> argv = BuildArgv(node);
    node.mutable_argv()->Assign(argv.begin(), argv.end());
  }
  return absl::OkStatus();
}

std::vector<std::string> ProcessCluster::BuildArgv(const NodeProcess& node) const {
  const ClusterTopology& t = options_.topology;
  const std::string masters = absl::StrJoin(master_addresses(), ",");
  std::vector<std::string> argv;
  const std::string listen = Loopback(node.port());
  const std::string metrics = Loopback(node.metrics_port());
  if (node.role() == kMaster) {
    const int autostart = t.autostart < 0 ? t.storages : t.autostart;
    argv = {binaries_.master,
            "--listen=" + listen,
            "--metrics_listen=" + metrics,
            "--cluster_name=" + t.cluster_name,
            absl::StrCat("--partitions=", t.partitions),
            absl::StrCat("--replicas=", t.replicas),
            absl::StrCat("--autostart=", autostart)};
    if (!file_.postgres().election_database().empty()) {
      absl::StatusOr<std::string> conninfo = ConninfoWithDatabase(
          file_.postgres().conninfo(), file_.postgres().election_database());
      if (conninfo.ok()) argv.push_back("--election_pg=" + *conninfo);
    }
    argv.insert(argv.end(), t.master_flags.begin(), t.master_flags.end());
  } else if (node.role() == kStorage) {
    argv = {binaries_.storage,
            "--listen=" + listen,
            "--advertise=" + listen,
            "--metrics_listen=" + metrics,
            "--master=" + masters,
            "--cluster_name=" + t.cluster_name,
            "--backend=" + node.backend()};
    if (!node.label().empty()) argv.push_back("--label=" + node.label());
    argv.insert(argv.end(), t.storage_flags.begin(), t.storage_flags.end());
  } else {
    argv = {binaries_.admin, "--listen=" + listen, "--metrics_listen=" + metrics,
            "--master=" + masters};
    argv.insert(argv.end(), t.admin_flags.begin(), t.admin_flags.end());
  }
  if (!node_bearer_.empty()) {
    argv.push_back("--cluster_secret_file=" + options_.dir + "/cluster-secret");
    argv.push_back("--auth_tokens_file=" + options_.dir + "/tokens");
  }
  if (node_tls_.has_value()) {
    argv.push_back("--tls_cert_file=" + node_tls_->cert_file);
    argv.push_back("--tls_key_file=" + node_tls_->key_file);
    argv.push_back("--tls_ca_file=" + node_tls_->ca_file);
    argv.push_back("--tls_client_ca_file=" + node_tls_->ca_file);
  }
  return argv;
}

int ProcessCluster::PickPort() {
  // Below the ephemeral range if it leaves room, else above it.
  auto [low, high] = EphemeralRange();
  int from = 20000, to = low - 1;
  if (to - from < 2000) {
    from = high + 1;
    to = 65535;
  }
  if (to - from < 2000) {
    from = 1024;
    to = 65535;
  }
  static std::mt19937 rng(static_cast<uint32_t>(getpid()) ^
                          static_cast<uint32_t>(absl::ToUnixNanos(absl::Now())));
  std::uniform_int_distribution<int> dist(from, to);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = dist(rng);
    if (std::find(used_ports_.begin(), used_ports_.end(), port) != used_ports_.end()) continue;
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool free = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    if (free) {
      used_ports_.push_back(port);
      return port;
    }
  }
  return 0;  // the node then fails to start with a clear error
}

NodeProcess* ProcessCluster::Find(const std::string& name) {
  for (NodeProcess& node : *file_.mutable_nodes()) {
    if (absl::EqualsIgnoreCase(node.name(), name)) return &node;
  }
  return nullptr;
}

const NodeProcess* ProcessCluster::Find(const std::string& name) const {
  for (const NodeProcess& node : file_.nodes()) {
    if (absl::EqualsIgnoreCase(node.name(), name)) return &node;
  }
  return nullptr;
}

absl::Status ProcessCluster::Spawn(NodeProcess& node) {
  std::vector<std::string> args(node.argv().begin(), node.argv().end());
  if (args.empty() || !IsExecutable(args[0])) {
    return absl::FailedPreconditionError(absl::StrCat(
        node.name(), ": binary ", args.empty() ? "(none)" : args[0], " is not executable"));
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int log = open(node.log().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) {
    return absl::InternalError(absl::StrCat("open ", node.log(), ": ", strerror(errno)));
  }
  const std::string header = absl::StrCat("==== ", absl::FormatTime(absl::Now()),
                                          " cellar-cluster starts ", node.name(), ": ",
                                          absl::StrJoin(args, " "), "\n");
  if (write(log, header.data(), header.size()) < 0) {
    // Not fatal: the process still logs.
  }
  const int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const std::string workdir = options_.dir;
  const pid_t parent = getpid();
  const bool die_with_parent = options_.die_with_parent;
  const pid_t pid = fork();
  if (pid < 0) {
    close(log);
    if (devnull >= 0) close(devnull);
    return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  }
  if (pid == 0) {
    // Child: async-signal-safe calls only, then exec.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);
    }
    setsid();
    if (die_with_parent) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(126);
    }
    if (devnull >= 0) dup2(devnull, 0);
    dup2(log, 1);
    dup2(log, 2);
    close_range(3, ~0U, 0);
    if (chdir(workdir.c_str()) != 0) {
      // Stay where we are; paths are absolute.
    }
    execv(argv[0], argv.data());
    const char msg[] = "cellar-cluster: exec failed\n";
    if (write(2, msg, sizeof(msg) - 1) < 0) _exit(127);
    _exit(127);
  }
  close(log);
  if (devnull >= 0) close(devnull);
  node.set_pid(pid);
  node.set_started_unix_ms(absl::ToUnixMillis(absl::Now()));
  return Save();
}

NodeProbe::Process ProcessCluster::ProcessState(NodeProcess& node, int* exit_status) {
  if (node.pid() == 0) {
    return node.started_unix_ms() == 0 ? NodeProbe::Process::kNotStarted
                                       : NodeProbe::Process::kDead;
  }
  const pid_t pid = node.pid();
  int status = 0;
  const pid_t r = waitpid(pid, &status, WNOHANG);
  bool dead = false;
  if (r == pid) {
    dead = true;
    if (exit_status != nullptr) *exit_status = status;
  } else if (r < 0) {
    // Not our child (started by another cellar-cluster invocation).
    const char state = ProcState(pid);
    dead = state == 0 || state == 'Z' || state == 'X' ||
           ProcArgv0(pid) != (node.argv().empty() ? "" : node.argv(0));
    if (exit_status != nullptr) *exit_status = -1;
  }
  if (dead) {
    node.set_pid(0);
    Save().IgnoreError();
    return NodeProbe::Process::kDead;
  }
  return ProcState(pid) == 'T' ? NodeProbe::Process::kStopped : NodeProbe::Process::kRunning;
}

std::string ProcessCluster::LogTail(const std::string& name, int lines) const {
  const NodeProcess* node = Find(name);
  if (node == nullptr) return "";
  absl::StatusOr<std::string> text = ReadFile(node->log());
  if (!text.ok()) return "";
  std::vector<absl::string_view> all = absl::StrSplit(*text, '\n', absl::SkipEmpty());
  const size_t from = all.size() > static_cast<size_t>(lines) ? all.size() - lines : 0;
  return absl::StrJoin(all.begin() + from, all.end(), "\n");
}

absl::Status ProcessCluster::DiedError(const NodeProcess& node, int exit_status) const {
  return absl::UnavailableError(absl::StrCat(
      node.name(), " ", exit_status >= 0 ? ExitText(exit_status) : std::string("is gone"),
      " before it was ready; last lines of ", node.log(), ":\n", LogTail(node.name())));
}

absl::Status ProcessCluster::WaitProcessUp(NodeProcess& node, absl::Time deadline) {
  const std::string address = Loopback(node.port());
  while (true) {
    int status = -1;
    if (ProcessState(node, &status) == NodeProbe::Process::kDead) {
      return DiedError(node, status);
    }
    if (CheckHealth(node_channel_, address, "", absl::Milliseconds(500)) == "SERVING") {
      return absl::OkStatus();
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          node.name(), " (pid ", node.pid(), ") does not answer grpc.health.v1 on ", address,
          " after ", absl::FormatDuration(options_.ready_timeout), "; last lines of ",
          node.log(), ":\n", LogTail(node.name())));
    }
    absl::SleepFor(kPoll);
  }
}

absl::Status ProcessCluster::WaitServiceReady(NodeProcess& node, absl::Time deadline) {
  if (node.role() == kMaster && master_addresses().size() > 1) {
    return absl::OkStatus();  // a standby never serves cellar.v1.Master
  }
  const std::string address = Loopback(node.port());
  const std::string service = HealthService(node.role());
  std::string last;
  while (true) {
    int status = -1;
    if (ProcessState(node, &status) == NodeProbe::Process::kDead) {
      return DiedError(node, status);
    }
    last = CheckHealth(node_channel_, address, service, absl::Milliseconds(500));
    if (last == "SERVING") return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          node.name(), ": health of ", service, " on ", address, " is ",
          last.empty() ? "no answer" : last, " after ",
          absl::FormatDuration(options_.ready_timeout), "; last lines of ", node.log(), ":\n",
          LogTail(node.name())));
    }
    absl::SleepFor(kPoll);
  }
}

absl::Status ProcessCluster::WaitRegistered(NodeProcess& node, absl::Time deadline) {
  const std::string address = Loopback(node.port());
  absl::Status last = absl::UnavailableError("no answer yet");
  while (true) {
    int status = -1;
    if (ProcessState(node, &status) == NodeProbe::Process::kDead) {
      return DiedError(node, status);
    }
    absl::StatusOr<::cellar::v1::GetClusterInfoResponse> info = ClusterInfo();
    if (info.ok()) {
      for (const ::cellar::v1::NodeInfo& n : info->nodes()) {
        if (n.role() == ::cellar::v1::NODE_ROLE_STORAGE && n.address() == address &&
            n.state() != ::cellar::v1::NODE_DOWN) {
          node.set_node_id(n.node_id());
          return Save();
        }
      }
      last = absl::NotFoundError("the master does not list it yet");
    } else {
      last = info.status();
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          node.name(), " at ", address, " did not register with the master within ",
          absl::FormatDuration(options_.ready_timeout), " (", last.ToString(),
          "); last lines of ", node.log(), ":\n", LogTail(node.name())));
    }
    absl::SleepFor(kPoll);
  }
}

absl::Status ProcessCluster::StartNode(NodeProcess& node, bool first_start, bool wait_ready) {
  for (int attempt = 0;; ++attempt) {
    if (options_.on_progress) {
      options_.on_progress(absl::StrCat("starting ", node.name(), " (", node.role(), ") on ",
                                        Loopback(node.port()), ", log ", node.log()));
    }
    CELLAR_RETURN_IF_ERROR(Spawn(node));
    const absl::Time deadline = absl::Now() + options_.ready_timeout;
    absl::Status s = WaitProcessUp(node, deadline);
    if (!s.ok() && first_start && attempt < 3 && node.pid() == 0 &&
        absl::StrContains(s.message(), "cannot listen")) {
      // Lost a port race: new ports (the others don't know them yet
      // unless this is a master, whose address they are given).
      node.set_port(PickPort());
      node.set_metrics_port(PickPort());
      for (NodeProcess& n : *file_.mutable_nodes()) {
        if (n.pid() == 0 && n.started_unix_ms() == 0) {
          std::vector<std::string> argv = BuildArgv(n);
          n.mutable_argv()->Assign(argv.begin(), argv.end());
        }
      }
      std::vector<std::string> argv = BuildArgv(node);
      node.mutable_argv()->Assign(argv.begin(), argv.end());
      continue;
    }
    CELLAR_RETURN_IF_ERROR(s);
    if (node.role() == kStorage) {
      if (first_start || wait_ready) CELLAR_RETURN_IF_ERROR(WaitRegistered(node, deadline));
    }
    if (wait_ready) CELLAR_RETURN_IF_ERROR(WaitServiceReady(node, deadline));
    return Save();
  }
}

absl::Status ProcessCluster::Start(const std::string& name, bool wait_ready) {
  NodeProcess* node = Find(name);
  if (node == nullptr) return absl::NotFoundError(absl::StrCat("no node named ", name));
  const NodeProbe::Process state = ProcessState(*node);
  if (state == NodeProbe::Process::kRunning || state == NodeProbe::Process::kStopped) {
    return absl::FailedPreconditionError(
        absl::StrCat(node->name(), " is already running (pid ", node->pid(), ")"));
  }
  down_ = false;
  return StartNode(*node, /*first_start=*/false, wait_ready);
}

absl::StatusOr<std::string> ProcessCluster::AddStorage(const std::string& label) {
  const NodeProcess* model = nullptr;
  int count = 0;
  int last_storage_index = -1;
  for (int i = 0; i < file_.nodes_size(); ++i) {
    if (file_.nodes(i).role() != kStorage) continue;
    if (model == nullptr) model = &file_.nodes(i);
    ++count;
    last_storage_index = i;
  }
  if (model == nullptr) {
    return absl::FailedPreconditionError("the cluster has no storage to model a new one on");
  }
  const std::string name = absl::StrCat("S", count + 1);
  if (Find(name) != nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("a node named ", name, " exists already"));
  }
  NodeProcess node;
  node.set_name(name);
  node.set_role(kStorage);
  node.set_label(label);
  node.set_port(PickPort());
  node.set_metrics_port(PickPort());
  node.set_log(absl::StrCat(file_.dir(), "/", name, ".log"));
  if (!model->database().empty()) {
    // Same server and naming as the others: <prefix>_s<k>.
    std::string database = model->database();
    const size_t cut = database.rfind("_s");
    database = absl::StrCat(cut == std::string::npos ? database : database.substr(0, cut), "_s",
                            count + 1);
    CELLAR_ASSIGN_OR_RETURN(std::string conninfo,
                            CreatePostgresDatabase(file_.postgres().conninfo(), database));
    node.set_backend(conninfo);
    node.set_database(database);
  } else {
    node.set_backend(absl::StrCat("sqlite://", file_.dir(), "/", name, ".db"));
  }
  // The model's command line with this node's own listen addresses, data
  // and label (flags given at `up` are kept).
  std::vector<std::string> argv;
  for (const std::string& arg : model->argv()) {
    if (absl::StartsWith(arg, "--listen=") || absl::StartsWith(arg, "--advertise=") ||
        absl::StartsWith(arg, "--metrics_listen=") || absl::StartsWith(arg, "--backend=") ||
        absl::StartsWith(arg, "--label=")) {
      continue;
    }
    argv.push_back(arg);
  }
  argv.push_back("--listen=" + Loopback(node.port()));
  argv.push_back("--advertise=" + Loopback(node.port()));
  argv.push_back("--metrics_listen=" + Loopback(node.metrics_port()));
  argv.push_back("--backend=" + node.backend());
  if (!label.empty()) argv.push_back("--label=" + label);
  node.mutable_argv()->Assign(argv.begin(), argv.end());
  // Keep the file's order: masters, storages, admin.
  *file_.add_nodes() = std::move(node);
  for (int i = file_.nodes_size() - 1; i > last_storage_index + 1; --i) {
    file_.mutable_nodes()->SwapElements(i, i - 1);
  }
  NodeProcess* added = Find(name);
  CELLAR_RETURN_IF_ERROR(Save());
  CELLAR_RETURN_IF_ERROR(StartNode(*added, /*first_start=*/false, /*wait_ready=*/false));
  // StartNode waits for registration only on a first start or when ready
  // is asked; a new storage is never "ready" (it holds no cells).
  CELLAR_RETURN_IF_ERROR(WaitRegistered(*added, absl::Now() + options_.ready_timeout));
  CELLAR_RETURN_IF_ERROR(Save());
  return name;
}

absl::Status ProcessCluster::Restart(const std::string& name, bool wait_ready) {
  NodeProcess* node = Find(name);
  if (node == nullptr) return absl::NotFoundError(absl::StrCat("no node named ", name));
  const NodeProbe::Process state = ProcessState(*node);
  if (state == NodeProbe::Process::kRunning || state == NodeProbe::Process::kStopped) {
    CELLAR_RETURN_IF_ERROR(SignalAndWait({node}, SIGTERM));
  }
  return Start(name, wait_ready);
}

absl::Status ProcessCluster::SignalAndWait(std::vector<NodeProcess*> nodes, int signal) {
  std::vector<NodeProcess*> sent;
  for (NodeProcess* node : nodes) {
    const NodeProbe::Process state = ProcessState(*node);
    if (state != NodeProbe::Process::kRunning && state != NodeProbe::Process::kStopped) continue;
    if (options_.on_progress) {
      options_.on_progress(absl::StrCat("sending SIG", sigabbrev_np(signal), " to ",
                                        node->name(), " (pid ", node->pid(), ")"));
    }
    if (kill(-node->pid(), signal) != 0 && kill(node->pid(), signal) != 0) {
      return absl::InternalError(
          absl::StrCat("kill ", node->name(), " (pid ", node->pid(), "): ", strerror(errno)));
    }
    // A stopped process acts on SIGTERM only once continued.
    if (state == NodeProbe::Process::kStopped && signal != SIGKILL && Terminates(signal)) {
      kill(-node->pid(), SIGCONT);
    }
    sent.push_back(node);
  }
  if (signal != SIGSTOP && signal != SIGCONT && !Terminates(signal)) return Save();

  auto done = [&](NodeProcess* node) {
    const NodeProbe::Process state = ProcessState(*node);
    if (signal == SIGSTOP) return state != NodeProbe::Process::kRunning;
    if (signal == SIGCONT) return state != NodeProbe::Process::kStopped;
    return state == NodeProbe::Process::kDead;
  };
  auto wait_all = [&](absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      bool all = true;
      for (NodeProcess* node : sent) all = done(node) && all;
      if (all || absl::Now() > deadline) return all;
      absl::SleepFor(absl::Milliseconds(20));
    }
  };
  const absl::Duration timeout =
      signal == SIGKILL || signal == SIGSTOP || signal == SIGCONT ? absl::Seconds(10)
                                                                  : options_.stop_timeout;
  absl::Status result;
  if (!wait_all(timeout)) {
    std::vector<std::string> late;
    for (NodeProcess* node : sent) {
      if (!done(node)) late.push_back(node->name());
    }
    result = absl::DeadlineExceededError(absl::StrCat(
        absl::StrJoin(late, ", "), " did not act on SIG", sigabbrev_np(signal), " within ",
        absl::FormatDuration(timeout)));
    if (Terminates(signal)) {
      for (NodeProcess* node : sent) {
        if (!done(node)) kill(-node->pid(), SIGKILL);
      }
      wait_all(absl::Seconds(10));
      result = absl::DeadlineExceededError(absl::StrCat(result.message(), "; sent SIGKILL"));
    }
  }
  CELLAR_RETURN_IF_ERROR(Save());
  return result;
}

absl::Status ProcessCluster::Kill(const std::string& name, int signal) {
  NodeProcess* node = Find(name);
  if (node == nullptr) return absl::NotFoundError(absl::StrCat("no node named ", name));
  const NodeProbe::Process state = ProcessState(*node);
  if (state != NodeProbe::Process::kRunning && state != NodeProbe::Process::kStopped) {
    return absl::FailedPreconditionError(absl::StrCat(node->name(), " is not running"));
  }
  return SignalAndWait({node}, signal);
}

absl::Status ProcessCluster::Wipe(const std::string& name) {
  NodeProcess* node = Find(name);
  if (node == nullptr) return absl::NotFoundError(absl::StrCat("no node named ", name));
  if (node->role() != kStorage) {
    return absl::InvalidArgumentError(absl::StrCat(name, " is not a storage node"));
  }
  const NodeProbe::Process state = ProcessState(*node);
  if (state == NodeProbe::Process::kRunning || state == NodeProbe::Process::kStopped) {
    return absl::FailedPreconditionError(
        absl::StrCat(node->name(), " is running: stop it before wiping its data"));
  }
  if (options_.on_progress) options_.on_progress("wiping the data of " + node->name());
  absl::string_view backend = node->backend();
  if (absl::ConsumePrefix(&backend, "sqlite://")) {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      const std::string path = absl::StrCat(backend, suffix);
      if (unlink(path.c_str()) != 0 && errno != ENOENT) {
        return absl::InternalError(absl::StrCat("unlink ", path, ": ", strerror(errno)));
      }
    }
  } else if (!node->database().empty()) {
    CELLAR_RETURN_IF_ERROR(DropPostgresDatabase(file_.postgres().conninfo(), node->database()));
    CELLAR_ASSIGN_OR_RETURN(std::string conninfo,
                            CreatePostgresDatabase(file_.postgres().conninfo(), node->database()));
    (void)conninfo;
  } else {
    return absl::FailedPreconditionError(absl::StrCat(
        node->name(), "'s backend was given by the user (", node->backend(),
        "): wipe it yourself"));
  }
  node->set_node_id(0);
  return Save();
}

absl::Status ProcessCluster::StopAll(int signal) {
  // Masters first: a master that watched the storages go one by one would
  // mark their cells OUT_OF_DATE, and the next start would have to catch
  // them up. Then the rest together.
  std::vector<NodeProcess*> masters, others;
  for (NodeProcess& node : *file_.mutable_nodes()) {
    (node.role() == kMaster ? masters : others).push_back(&node);
  }
  absl::Status s = SignalAndWait(masters, signal);
  absl::Status rest = SignalAndWait(others, signal);
  return s.ok() ? rest : s;
}

absl::Status ProcessCluster::StartAll() {
  down_ = false;
  for (const char* role : {kMaster, kStorage, kAdmin}) {
    for (NodeProcess& node : *file_.mutable_nodes()) {
      if (node.role() != role) continue;
      const NodeProbe::Process state = ProcessState(node);
      if (state == NodeProbe::Process::kRunning || state == NodeProbe::Process::kStopped) {
        continue;
      }
      CELLAR_RETURN_IF_ERROR(StartNode(node, /*first_start=*/false, /*wait_ready=*/false));
    }
  }
  return WaitUntilRunning();
}

absl::Status ProcessCluster::Down() {
  absl::Status s = StopAll(SIGTERM);
  if (file_.has_postgres() && !file_.postgres().dir().empty()) {
    if (options_.on_progress) options_.on_progress("stopping PostgreSQL in " + file_.postgres().dir());
    absl::Status pg = StopPostgresAt(file_.postgres().dir(), "fast", {});
    if (s.ok()) s = pg;
  }
  down_ = true;
  return s;
}

absl::StatusOr<::cellar::v1::GetClusterInfoResponse> ProcessCluster::ClusterInfo() const {
  absl::Status last = absl::UnavailableError("no master");
  for (const std::string& address : master_addresses()) {
    auto stub = ::cellar::v1::Master::NewStub(FreshChannel(address, node_channel_));
    grpc::ClientContext context;
    common::SetDeadline(&context, absl::Seconds(2));
    ::cellar::v1::GetClusterInfoRequest request;
    ::cellar::v1::GetClusterInfoResponse response;
    grpc::Status s = stub->GetClusterInfo(&context, request, &response);
    if (s.ok()) return response;
    last = absl::UnavailableError(
        absl::StrCat("master ", address, ": ", s.error_code(), " ", s.error_message()));
  }
  return last;
}

absl::Status ProcessCluster::WaitForClusterState(::cellar::v1::ClusterState state,
                                                 absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string last;
  while (true) {
    absl::StatusOr<::cellar::v1::GetClusterInfoResponse> info = ClusterInfo();
    if (!info.ok()) {
      last = info.status().ToString();
    } else if (info->cluster_state() != state) {
      last = absl::StrCat("cluster is ", ::cellar::v1::ClusterState_Name(info->cluster_state()));
    } else if (state != ::cellar::v1::CLUSTER_RUNNING) {
      return absl::OkStatus();
    } else {
      std::vector<std::string> not_serving;
      for (NodeProcess& node : *file_.mutable_nodes()) {
        if (node.role() != kStorage || ProcessState(node) != NodeProbe::Process::kRunning) {
          continue;
        }
        if (CheckHealth(node_channel_, Loopback(node.port()), HealthService(kStorage),
                        absl::Milliseconds(500)) != "SERVING") {
          not_serving.push_back(node.name());
        }
      }
      if (not_serving.empty()) return absl::OkStatus();
      last = absl::StrCat("cluster is RUNNING but ", absl::StrJoin(not_serving, ", "),
                          " not serving yet");
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "cluster not ", ::cellar::v1::ClusterState_Name(state), " within ",
          absl::FormatDuration(timeout), ": ", last, " (logs in ", dir(), ")"));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

absl::Status ProcessCluster::WaitForNodeState(const std::string& name,
                                              ::cellar::v1::NodeState state,
                                              absl::Duration timeout) {
  const NodeProcess* node = Find(name);
  if (node == nullptr) return absl::NotFoundError(absl::StrCat("no node named ", name));
  const std::string address = Loopback(node->port());
  const absl::Time deadline = absl::Now() + timeout;
  std::string last;
  while (true) {
    absl::StatusOr<::cellar::v1::GetClusterInfoResponse> info = ClusterInfo();
    if (!info.ok()) {
      last = info.status().ToString();
    } else {
      last = "not listed";
      for (const ::cellar::v1::NodeInfo& n : info->nodes()) {
        if (n.address() != address) continue;
        if (n.state() == state) return absl::OkStatus();
        last = ::cellar::v1::NodeState_Name(n.state());
      }
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the master does not list ", name, " as ", ::cellar::v1::NodeState_Name(state),
          " within ", absl::FormatDuration(timeout), " (last: ", last, ")"));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

absl::StatusOr<std::string> ProcessCluster::PrimaryMaster() const {
  for (const NodeProcess& node : file_.nodes()) {
    if (node.role() == kMaster && node.pid() != 0 &&
        CheckHealth(node_channel_, Loopback(node.port()), HealthService(kMaster),
                    absl::Milliseconds(500)) == "SERVING") {
      return node.name();
    }
  }
  return absl::NotFoundError("no master serves cellar.v1.Master (no primary)");
}

absl::StatusOr<std::string> ProcessCluster::WaitForPrimary(absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<std::string> primary = PrimaryMaster();
    if (primary.ok() || absl::Now() > deadline) {
      if (!primary.ok()) {
        return absl::DeadlineExceededError(absl::StrCat(
            "no primary master within ", absl::FormatDuration(timeout), " (logs in ", dir(),
            ")"));
      }
      return primary;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

NodeProbe ProcessCluster::Probe(const std::string& name) {
  NodeProbe probe;
  NodeProcess* node = Find(name);
  if (node == nullptr) return probe;
  probe.process = ProcessState(*node);
  if (probe.process == NodeProbe::Process::kRunning) {
    probe.health = CheckHealth(node_channel_, Loopback(node->port()),
                               HealthService(node->role()), absl::Milliseconds(500));
  }
  return probe;
}

std::vector<std::string> ProcessCluster::master_addresses() const {
  std::vector<std::string> out;
  for (const NodeProcess& node : file_.nodes()) {
    if (node.role() == kMaster) out.push_back(Loopback(node.port()));
  }
  return out;
}

std::vector<std::string> ProcessCluster::storage_names() const {
  std::vector<std::string> out;
  for (const NodeProcess& node : file_.nodes()) {
    if (node.role() == kStorage) out.push_back(node.name());
  }
  return out;
}

std::vector<std::string> ProcessCluster::node_names() const {
  std::vector<std::string> out;
  for (const NodeProcess& node : file_.nodes()) out.push_back(node.name());
  return out;
}

std::string ProcessCluster::address(const std::string& name) const {
  const NodeProcess* node = Find(name);
  return node == nullptr ? "" : Loopback(node->port());
}

uint32_t ProcessCluster::node_id(const std::string& name) const {
  const NodeProcess* node = Find(name);
  return node == nullptr ? 0 : node->node_id();
}

pid_t ProcessCluster::pid(const std::string& name) const {
  const NodeProcess* node = Find(name);
  return node == nullptr ? 0 : node->pid();
}

std::string ProcessCluster::log_path(const std::string& name) const {
  const NodeProcess* node = Find(name);
  return node == nullptr ? "" : node->log();
}

std::string ProcessCluster::StorageNameOf(uint32_t node_id) const {
  for (const NodeProcess& node : file_.nodes()) {
    if (node.role() == kStorage && node.node_id() == node_id) return node.name();
  }
  return "";
}

}  // namespace cellar::tools
