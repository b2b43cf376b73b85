#ifndef CELLAR_TOOLS_CLUSTER_PROCESS_CLUSTER_H_
#define CELLAR_TOOLS_CLUSTER_PROCESS_CLUSTER_H_

// A cellar cluster made of real processes on loopback: the cellar-master,
// cellar-storage and cellar-admin binaries, each started with fork+exec in
// a session (and process group) of its own, stdout+stderr appended to
// <dir>/<name>.log. For fault tests (kill -9, SIGSTOP, restarts) and for
// trying topologies by hand (`cellar-cluster`, tools/cluster/run).
//
//   ProcessClusterOptions options;
//   options.dir = "/tmp/c1";
//   options.topology.storages = 3;
//   CELLAR_ASSIGN_OR_RETURN(auto cluster, ProcessCluster::Up(options));
//   ... client at cluster->master_addresses() ...
//   CELLAR_RETURN_IF_ERROR(cluster->Kill("S2", SIGKILL));
//   CELLAR_RETURN_IF_ERROR(cluster->Restart("S2"));
//   // ~ProcessCluster: Down() (when options.stop_on_destruction).
//
// Names: masters M1..M3, storages S1..SN, admin A1. Storages start one at a
// time, each once the previous one registered, so that on a new cluster
// the name Sk is also the node id the master gives (S1 is node S1).
//
// Ports: chosen by the harness on 127.0.0.1 below the kernel's ephemeral
// range (so an outgoing connection can never take the port of a node that
// is down), checked free with a bind, and kept across restarts. If another
// process takes one between the check and the node's own bind, the node
// exits saying "cannot listen" and a first start retries with new ports.
//
// Readiness is grpc.health.v1 with bounded waits: a process is up when
// its overall health ("") is SERVING; a master is ready when
// "cellar.v1.Master" is (with several masters, only the primary's is: a
// master is then ready once up, and Up() waits for a primary), an admin
// when "cellar.v1.Admin" is, a storage when "cellar.v1.Storage" is
// (registered, holding a partition table, and the cluster RUNNING). Every wait fails with DEADLINE_EXCEEDED naming what
// was missing and the tail of the node's log; a process that exits while
// waited for fails with its exit status and log tail.
//
// State: <dir>/cluster.json (tools/cluster/cluster_file.proto as JSON) is
// rewritten after every change, so that Attach() in another process (the
// CLI) can act on the same cluster. An exclusive flock on
// <dir>/cluster.lock is held for the life of the object: one
// ProcessCluster per directory at a time.
//
// Thread-safety: not thread-safe; use one object from one thread (tests
// may run client workloads on other threads meanwhile).

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "protos/cellar/v1/master.pb.h"
#include "services/common/channel.h"
#include "services/common/tls_config.h"
#include "tools/cluster/cluster_file.pb.h"

namespace cellar::tools {

// What to start.
struct ClusterTopology {
  // Masters, 1..3 (default 1). With more than one, every master gets
  // --election_pg (see election_pg) and the others --master list.
  int masters = 1;
  // Storage nodes (default 3).
  int storages = 3;
  // Replicas and partitions of the new cluster (defaults 1 and 12).
  uint32_t replicas = 1;
  uint32_t partitions = 12;
  // --cluster_name (default "cellar").
  std::string cluster_name = "cellar";
  // Storage backends on PostgreSQL databases (default false: SQLite files
  // <dir>/S<k>.db).
  bool postgres = false;
  // Pass --election_pg=<conninfo of a fresh database> to the masters.
  // Default: true when masters > 1.
  std::optional<bool> election_pg;
  // Start an admin node A1 (default true).
  bool admin = true;
  // --label of storage k (index k-1), zone/host/device; missing or "" =
  // no label (default none).
  std::vector<std::string> labels;
  // --autostart of the masters; -1 (default) = the number of storages,
  // 0 = wait for an operator's start (Up() then doesn't wait for RUNNING).
  int autostart = -1;
  // Backend URI of storage k (index k-1) instead of the default one, e.g.
  // a SQLite file on a small tmpfs (default none).
  std::vector<std::string> storage_backends;
  // Extra flags for every master / storage / admin (default none).
  std::vector<std::string> master_flags;
  std::vector<std::string> storage_flags;
  std::vector<std::string> admin_flags;
  // Start with authentication (docs/security.md): Up() writes
  // <dir>/cluster-secret, <dir>/tokens and one token per role in
  // <dir>/{client,readonly,admin}.token (mode 0600), and passes
  // --cluster_secret_file and --auth_tokens_file to every process. The
  // tool's own calls use the cluster secret (default false).
  bool auth = false;
  // Start with TLS and mTLS (docs/security.md "TLS and mTLS"): Up() makes
  // a throwaway CA and certificates with openssl in <dir>/tls: ca.pem,
  // node.{pem,key} (IP:127.0.0.1, DNS:localhost and the node identity;
  // every process uses it) and client.{pem,key} (no node identity), and
  // passes --tls_cert_file, --tls_key_file, --tls_ca_file and
  // --tls_client_ca_file to every process. The tool's own calls present
  // the node certificate; it and client_tls() re-read the files every
  // second (default false).
  bool tls = false;
};

// Where the three binaries are.
struct ClusterBinaries {
  std::string master;
  std::string storage;
  std::string admin;
};

// Finds the binaries: $CELLAR_BIN_DIR/{cellar-master,...} if set; else the
// runfiles tree ($RUNFILES_DIR, $TEST_SRCDIR or <argv0>.runfiles, workspace
// "cellar"); else bazel-bin/ in the current directory or one of its
// parents. FAILED_PRECONDITION listing the places tried.
absl::StatusOr<ClusterBinaries> FindClusterBinaries(const std::string& argv0 = "");

struct ProcessClusterOptions {
  // Cluster directory: logs, SQLite files, cluster.json (required; created
  // if missing).
  std::string dir;
  ClusterTopology topology;
  // Default: FindClusterBinaries().
  std::optional<ClusterBinaries> binaries;
  // An existing PostgreSQL server (libpq string, database "postgres" or
  // any the user may CREATE DATABASE from) for storage and election
  // databases. Default "": start a throwaway server (tools/pgserver) in
  // <dir>/pg (or a short /tmp directory if that path is too long for a
  // unix socket) when something needs PostgreSQL; Down() stops it.
  std::string postgres_conninfo;
  // Prefix of the databases created (letters, digits, '_'; default
  // "cluster_<pid>_<n>"). Databases are "<prefix>_s<k>" and
  // "<prefix>_election"; existing ones of those names are dropped.
  std::string database_prefix;
  // Bound on each readiness wait (default 30 s).
  absl::Duration ready_timeout = absl::Seconds(30);
  // How long a SIGTERM may take before SIGKILL (default 15 s).
  absl::Duration stop_timeout = absl::Seconds(15);
  // Down() in the destructor (default true: tests; the CLI turns it off);
  // a PostgreSQL server the tool started in a /tmp directory is then
  // deleted too.
  bool stop_on_destruction = true;
  // Children get PR_SET_PDEATHSIG(SIGKILL): they die with the thread that
  // started them, e.g. when a test binary is killed by a timeout (default
  // false; tests turn it on and start nodes from one long-lived thread).
  bool die_with_parent = false;
  // Called with a line saying what is being done ("starting S2 on
  // 127.0.0.1:20345, log /d/S2.log"); default none. The CLI prints them.
  std::function<void(const std::string&)> on_progress;
};

// What a node is doing, as seen from outside.
struct NodeProbe {
  enum class Process { kNotStarted, kRunning, kStopped, kDead };
  Process process = Process::kNotStarted;
  // grpc.health.v1 of the role's service; "" if not asked or no answer.
  std::string health;
};

class ProcessCluster {
 public:
  // Creates the directory, starts PostgreSQL if needed, the masters, the
  // storages one by one and the admin, and waits until every process is
  // ready (and, unless autostart is 0, the cluster RUNNING with every
  // storage serving). If <dir>/cluster.json exists and none of its
  // processes runs, the same cluster is started again on its data
  // (topology from the file, `options.topology` ignored);
  // FAILED_PRECONDITION if one still runs. On failure everything started
  // is stopped again.
  static absl::StatusOr<std::unique_ptr<ProcessCluster>> Up(ProcessClusterOptions options);

  // Loads <dir>/cluster.json of a cluster started elsewhere (the CLI).
  // Processes found dead are marked so. The destructor of an attached
  // cluster stops nothing unless options.stop_on_destruction is set.
  // NOT_FOUND without a cluster.json.
  static absl::StatusOr<std::unique_ptr<ProcessCluster>> Attach(ProcessClusterOptions options);

  ~ProcessCluster();
  ProcessCluster(const ProcessCluster&) = delete;
  ProcessCluster& operator=(const ProcessCluster&) = delete;

  // Sends `signal` to the node's process group. SIGKILL/SIGTERM (and any
  // other signal that ends it) wait, bounded, until the process is gone;
  // SIGSTOP until it is stopped; SIGCONT until it runs. NOT_FOUND for an
  // unknown name; FAILED_PRECONDITION if the node isn't running.
  absl::Status Kill(const std::string& name, int signal = SIGKILL);
  absl::Status Stop(const std::string& name) { return Kill(name, SIGSTOP); }
  absl::Status Cont(const std::string& name) { return Kill(name, SIGCONT); }

  // Starts a node that is not running, same command line and ports. With
  // `wait_ready`, waits until it is ready (see the file comment); a
  // storage is ready only once the cluster is RUNNING, so after a full
  // stop start them without waiting and use WaitUntilRunning().
  absl::Status Start(const std::string& name, bool wait_ready = true);
  // SIGTERM (if running, else nothing) then Start.
  absl::Status Restart(const std::string& name, bool wait_ready = true);

  // Adds storage S<N+1> to the cluster: the command line of the first
  // storage with its own ports, its own data (a new SQLite file, or a new
  // database on the cluster's PostgreSQL server) and `label`; starts it and
  // waits until the master registered it. It joins PENDING, holding no
  // cells until an operator adds it (`cellarctl add S<N+1>`). Returns its
  // name. FAILED_PRECONDITION if the cluster has no storage to copy from.
  absl::StatusOr<std::string> AddStorage(const std::string& label = "");

  // Deletes a stopped storage's data (SQLite files, or drop + create of
  // its database): it comes back as a new, empty node.
  absl::Status Wipe(const std::string& name);

  // `signal` (SIGTERM) to the masters, then to every other node, waiting
  // until each group is gone (SIGKILL after stop_timeout); keeps data and
  // PostgreSQL. Masters go first so that they don't watch the storages
  // leave one by one (and mark their cells OUT_OF_DATE).
  absl::Status StopAll(int signal = SIGTERM);
  // Starts every node that isn't running (masters, storages, admin) and
  // waits until the cluster is RUNNING and every storage serves.
  absl::Status StartAll();
  // StopAll, then stops the PostgreSQL server the tool started. Data stays
  // in the directory. Idempotent.
  absl::Status Down();

  // Waits until the primary master reports `state` (and, for RUNNING, the
  // storages that run are serving). DEADLINE_EXCEEDED with the last state.
  absl::Status WaitForClusterState(::cellar::v1::ClusterState state, absl::Duration timeout);
  absl::Status WaitUntilRunning() {
    return WaitForClusterState(::cellar::v1::CLUSTER_RUNNING, options_.ready_timeout);
  }
  // Master.GetClusterInfo from the first master that answers.
  absl::StatusOr<::cellar::v1::GetClusterInfoResponse> ClusterInfo() const;
  // Waits until the master lists storage `name` in `state` (e.g.
  // NODE_DOWN after a SIGSTOP: heartbeat timeout).
  absl::Status WaitForNodeState(const std::string& name, ::cellar::v1::NodeState state,
                                absl::Duration timeout);

  // The master whose "cellar.v1.Master" health is SERVING (the primary;
  // standbys answer NOT_SERVING). NOT_FOUND if none is.
  absl::StatusOr<std::string> PrimaryMaster() const;
  // Polls PrimaryMaster() until one is found (DEADLINE_EXCEEDED).
  absl::StatusOr<std::string> WaitForPrimary(absl::Duration timeout) const;

  // Process and health of a node.
  NodeProbe Probe(const std::string& name);

  // Accessors.
  const std::string& dir() const { return file_.dir(); }
  const std::string& cluster_name() const { return file_.cluster_name(); }
  // "127.0.0.1:<port>" of every master, in order.
  std::vector<std::string> master_addresses() const;
  std::vector<std::string> storage_names() const;
  std::vector<std::string> node_names() const;
  // NOT_FOUND-safe: empty / 0 for an unknown name.
  std::string address(const std::string& name) const;
  uint32_t node_id(const std::string& name) const;
  pid_t pid(const std::string& name) const;
  std::string log_path(const std::string& name) const;
  // The token of role client for clients of this cluster ("" without
  // auth); the admin token is in <dir>/admin.token.
  const std::string& client_token() const { return client_token_; }
  // TLS for clients of this cluster (ca.pem and the client certificate
  // of <dir>/tls); nullopt without TLS.
  const std::optional<common::TlsClientConfig>& client_tls() const { return client_tls_; }
  // How the tool dials the nodes: the node bearer (with auth) and TLS
  // presenting the node certificate (with tls); plaintext otherwise.
  const common::ChannelSecurity& node_channel() const { return node_channel_; }
  // The last `lines` lines of the node's log.
  std::string LogTail(const std::string& name, int lines = 20) const;
  // The storage whose node id (from the master) is `node_id`, or "".
  std::string StorageNameOf(uint32_t node_id) const;
  const cluster::ClusterFile& file() const { return file_; }
  const ProcessClusterOptions& options() const { return options_; }

 private:
  explicit ProcessCluster(ProcessClusterOptions options);

  absl::Status Lock();
  absl::Status Save() const;
  absl::Status StartPostgresIfNeeded();
  absl::Status CreateNodes();
  cluster::NodeProcess* Find(const std::string& name);
  const cluster::NodeProcess* Find(const std::string& name) const;
  std::vector<std::string> BuildArgv(const cluster::NodeProcess& node) const;
  // Spawns the process (no wait).
  absl::Status Spawn(cluster::NodeProcess& node);
  // Spawn + wait for process health (and storage registration); retries
  // with new ports on "cannot listen" when `first_start`.
  absl::Status StartNode(cluster::NodeProcess& node, bool first_start, bool wait_ready);
  absl::Status WaitProcessUp(cluster::NodeProcess& node, absl::Time deadline);
  absl::Status WaitServiceReady(cluster::NodeProcess& node, absl::Time deadline);
  absl::Status WaitRegistered(cluster::NodeProcess& node, absl::Time deadline);
  // Dead-or-alive check; reaps our children; clears pid when dead.
  NodeProbe::Process ProcessState(cluster::NodeProcess& node, int* exit_status = nullptr);
  absl::Status DiedError(const cluster::NodeProcess& node, int exit_status) const;
  absl::Status SignalAndWait(std::vector<cluster::NodeProcess*> nodes, int signal);
  int PickPort();

  // auth: writes the secret, the tokens file and the token files.
  absl::Status CreateAuthFiles();
  // tls: writes the CA and the certificates in <dir>/tls.
  absl::Status CreateTlsFiles();
  // Reads what CreateAuthFiles and CreateTlsFiles wrote, if anything.
  absl::Status LoadAuthFiles();

  ProcessClusterOptions options_;
  ClusterBinaries binaries_;
  cluster::ClusterFile file_;
  int lock_fd_ = -1;
  bool down_ = false;
  std::vector<int> used_ports_;
  // From <dir>/cluster-secret and <dir>/client.token; empty without auth.
  std::string node_bearer_;
  std::string client_token_;
  // From <dir>/tls; nullopt without TLS.
  std::optional<common::TlsClientConfig> node_tls_;
  std::optional<common::TlsClientConfig> client_tls_;
  // The tool's own calls: the node bearer and TLS as a node.
  common::ChannelSecurity node_channel_;
};

// Parses "KILL", "SIGKILL", "9", "TERM", "STOP", "CONT", "INT", "HUP".
absl::StatusOr<int> ParseSignal(const std::string& text);

}  // namespace cellar::tools

#endif  // CELLAR_TOOLS_CLUSTER_PROCESS_CLUSTER_H_
