// cellar-cluster: start, inspect, hurt and stop a multi-process cellar
// cluster on loopback (tools/cluster/process_cluster.h). State lives in
// <dir>/cluster.json, so each command is a separate invocation:
//
//   cellar-cluster up --dir D --storages 3 --replicas 1 [--postgres] [--masters 1]
//   cellar-cluster status --dir D [--json]
//   cellar-cluster kill --dir D S2 [--signal KILL|TERM|STOP|CONT]
//   cellar-cluster restart --dir D S2
//   cellar-cluster start --dir D S2
//   cellar-cluster wipe --dir D S2
//   cellar-cluster add-storage --dir D [--label z/h/d]
//   cellar-cluster down --dir D [--wipe]
//   cellar-cluster check --workload bank|set --backend sqlite|postgresql
//       [--duration 60s] [--clients 4] [--nemesis rolling,kill,pause,pg-restart|none]
//       [--cycles 1] [--seed 1] [--json FILE] [--dir D]
//
// Exit status: 0 done, 1 failed, 2 bad usage, 3 `check` found violations.

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "services/common/ids.h"
#include "services/common/logging.h"
#include "tools/cluster/checker/check_run.h"
#include "tools/cluster/process_cluster.h"
#include "tools/pgserver/throwaway_postgres.h"

ABSL_FLAG(std::string, dir, "", "Cluster directory (logs, SQLite files, cluster.json)");
ABSL_FLAG(int, storages, 3, "up: storage nodes");
ABSL_FLAG(int, replicas, 1, "up: replicas of the new cluster (copies = replicas + 1)");
ABSL_FLAG(int, partitions, 12, "up: partitions of the new cluster");
ABSL_FLAG(int, masters, 1, "up: masters (1-3; more than one needs --election_pg support)");
ABSL_FLAG(bool, postgres, false,
          "up: storage databases on PostgreSQL (a throwaway server in <dir>/pg unless "
          "--postgres_conninfo)");
ABSL_FLAG(std::string, postgres_conninfo, "",
          "up: use this PostgreSQL server (libpq string) instead of starting one");
ABSL_FLAG(std::string, labels, "",
          "up: comma-separated zone/host/device labels of S1, S2, ... (replica placement)");
ABSL_FLAG(bool, admin, true, "up: start an admin node A1");
ABSL_FLAG(bool, auth, false,
          "up: start with authentication: a cluster secret and a tokens file in --dir, "
          "tokens in <dir>/{client,reader,readonly,admin}.token (docs/security.md)");
ABSL_FLAG(bool, tls, false,
          "up: start with TLS and mTLS: a throwaway CA and certificates in <dir>/tls "
          "(docs/security.md)");
ABSL_FLAG(std::string, cluster_name, "cellar", "up: --cluster_name of every node");
ABSL_FLAG(int, autostart, -1,
          "up: --autostart of the masters (-1: the number of storages; 0: operator start)");
ABSL_FLAG(std::string, master_flags, "", "up: extra flags for every master, space-separated");
ABSL_FLAG(std::string, storage_flags, "", "up: extra flags for every storage, space-separated");
ABSL_FLAG(std::string, signal, "KILL", "kill: KILL, TERM, STOP, CONT, INT, HUP or a number");
ABSL_FLAG(bool, wait, true, "restart/start: wait until the node is ready");
ABSL_FLAG(std::string, label, "", "add-storage: the new storage's zone/host/device label");
ABSL_FLAG(bool, wipe, false, "down: also delete the cluster directory and databases");
ABSL_FLAG(bool, json, false, "status: print JSON");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(30), "Bound on each readiness wait");
ABSL_FLAG(std::string, workload, "bank", "check: bank or set");
ABSL_FLAG(std::string, backend, "sqlite", "check: storage backend, sqlite or postgresql");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(60),
          "check: minimum workload time (it also lasts until the nemesis cycles end)");
ABSL_FLAG(int, clients, 4, "check: concurrent clients");
ABSL_FLAG(std::string, nemesis, "rolling,kill",
          "check: faults of a cycle, comma-separated: rolling, kill, pause, pg-restart; or none");
ABSL_FLAG(int, cycles, 1, "check: nemesis cycles");
ABSL_FLAG(uint64_t, seed, 1, "check: seed of the clients' and the nemesis' random choices");
ABSL_FLAG(std::string, report_json, "",
          "check: also write the report as JSON to this file (spelled --json FILE)");

namespace {

using cellar::tools::NodeProbe;
using cellar::tools::ProcessCluster;
using cellar::tools::ProcessClusterOptions;

constexpr char kUsage[] =
    "cellar-cluster: multi-process cellar clusters on loopback\n"
    "  cellar-cluster up --dir D [--storages 3] [--replicas 1] [--partitions 12]\n"
    "                    [--masters 1] [--postgres] [--labels z/h/d,...] [--admin=false]\n"
    "  cellar-cluster status --dir D [--json]\n"
    "  cellar-cluster kill --dir D NODE [--signal KILL|TERM|STOP|CONT]\n"
    "  cellar-cluster restart --dir D NODE [--wait=false]\n"
    "  cellar-cluster start --dir D NODE [--wait=false]\n"
    "  cellar-cluster wipe --dir D NODE      (a stopped storage: delete its data)\n"
    "  cellar-cluster add-storage --dir D [--label z/h/d]   (joins PENDING; then\n"
    "                    `cellarctl add S<N>` gives it cells)\n"
    "  cellar-cluster down --dir D [--wipe]\n"
    "  cellar-cluster check --workload bank|set --backend sqlite|postgresql [--duration 60s]\n"
    "                    [--clients 4] [--nemesis rolling,kill,pause,pg-restart|none]\n"
    "                    [--cycles 1] [--seed 1] [--json FILE] [--dir D] [--storages 3]\n"
    "                    [--masters 1] [--postgres_conninfo C]   (starts its own cluster;\n"
    "                    exit 3 on a violation)\n"
    "Nodes are M1..M3, S1..SN, A1; logs are D/<node>.log; state is D/cluster.json.";

int Fail(const absl::Status& status) {
  std::cerr << "cellar-cluster: " << status << "\n";
  return 1;
}

ProcessClusterOptions BaseOptions() {
  ProcessClusterOptions options;
  options.dir = absl::GetFlag(FLAGS_dir);
  options.ready_timeout = absl::GetFlag(FLAGS_timeout);
  options.stop_on_destruction = false;
  options.on_progress = [](const std::string& line) {
    std::cerr << "cellar-cluster: " << line << std::endl;
  };
  return options;
}

const char* ProcessName(NodeProbe::Process p) {
  switch (p) {
    case NodeProbe::Process::kNotStarted:
      return "not-started";
    case NodeProbe::Process::kRunning:
      return "running";
    case NodeProbe::Process::kStopped:
      return "stopped";
    case NodeProbe::Process::kDead:
      return "dead";
  }
  return "?";
}

using cellar::tools::checker::JsonString;

// The cellarctl flags for a TLS cluster ("" without TLS).
std::string TlsFlags(const ProcessCluster& cluster) {
  if (!cluster.client_tls().has_value()) return "";
  const auto& tls = *cluster.client_tls();
  return absl::StrCat(" --tls-ca=", tls.ca_file, " --tls-cert=", tls.cert_file,
                      " --tls-key=", tls.key_file);
}

int Status(ProcessCluster& cluster) {
  auto info = cluster.ClusterInfo();
  struct Row {
    std::string name, role, pid, process, health, address, metrics, node, log;
  };
  std::vector<Row> rows;
  for (const auto& node : cluster.file().nodes()) {
    NodeProbe probe = cluster.Probe(node.name());
    Row row;
    row.name = node.name();
    row.role = node.role();
    row.pid = node.pid() == 0 ? "-" : absl::StrCat(node.pid());
    row.process = ProcessName(probe.process);
    row.health = probe.health.empty() ? "-" : probe.health;
    row.address = cluster.address(node.name());
    row.metrics = absl::StrCat(node.metrics_port());
    row.node = "-";
    if (node.role() == "master" && probe.process == NodeProbe::Process::kRunning) {
      row.node = probe.health == "SERVING" ? "primary" : "standby";
    }
    if (info.ok() && node.role() == "storage") {
      for (const auto& n : info->nodes()) {
        if (n.address() == row.address) {
          row.node = absl::StrCat(cellar::common::NodeName(n.node_id()), " ",
                                  cellar::v1::NodeState_Name(n.state()).substr(5));
        }
      }
    }
    row.log = node.log();
    rows.push_back(row);
  }
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << "{\"dir\": " << JsonString(cluster.dir())
              << ", \"cluster_name\": " << JsonString(cluster.cluster_name())
              << ", \"masters\": " << JsonString(absl::StrJoin(cluster.master_addresses(), ","))
              << ", \"cluster_state\": "
              << JsonString(info.ok() ? cellar::v1::ClusterState_Name(info->cluster_state())
                                      : "UNKNOWN")
              << ", \"nodes\": [";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::cout << (i ? ", " : "") << "{\"name\": " << JsonString(r.name)
                << ", \"role\": " << JsonString(r.role) << ", \"pid\": "
                << (r.pid == "-" ? "0" : r.pid) << ", \"process\": " << JsonString(r.process)
                << ", \"health\": " << JsonString(r.health)
                << ", \"address\": " << JsonString(r.address)
                << ", \"metrics_port\": " << r.metrics << ", \"master_view\": "
                << JsonString(r.node) << ", \"log\": " << JsonString(r.log) << "}";
    }
    std::cout << "]}\n";
    return 0;
  }
  std::cout << "cluster \"" << cluster.cluster_name() << "\" in " << cluster.dir() << ": ";
  if (info.ok()) {
    std::cout << cellar::v1::ClusterState_Name(info->cluster_state()).substr(8)
              << (info->operational() ? " (operational)" : " (not operational)") << ", ptid "
              << info->partition_table().ptid() << ", last tid "
              << (info->last_tid() == 0 ? "none" : cellar::common::TidHex(info->last_tid()))
              << "\n";
  } else {
    std::cout << "no master answers (" << info.status().message() << ")\n";
  }
  std::cout << "masters: " << absl::StrJoin(cluster.master_addresses(), ",") << "\n\n";
  std::cout << absl::StrFormat("%-4s %-8s %-8s %-11s %-12s %-16s %-8s %-12s %s\n", "NODE",
                               "ROLE", "PID", "PROCESS", "HEALTH", "ADDRESS", "METRICS",
                               "MASTER-VIEW", "LOG");
  for (const Row& r : rows) {
    std::cout << absl::StrFormat("%-4s %-8s %-8s %-11s %-12s %-16s %-8s %-12s %s\n", r.name,
                                 r.role, r.pid, r.process, r.health, r.address, r.metrics,
                                 r.node, r.log);
  }
  return 0;
}

// `check`: its own cluster (a new directory), the workload and the
// nemesis, the checker; tears the cluster down at the end.
int Check() {
  namespace ck = cellar::tools::checker;
  ck::CheckOptions check;
  const std::string workload = absl::GetFlag(FLAGS_workload);
  if (workload != "bank" && workload != "set") {
    std::cerr << "cellar-cluster: --workload must be bank or set\n";
    return 2;
  }
  check.workload.kind = workload == "bank" ? ck::WorkloadKind::kBank : ck::WorkloadKind::kSet;
  std::string backend = absl::GetFlag(FLAGS_backend);
  if (backend == "postgres") backend = "postgresql";
  if (backend != "sqlite" && backend != "postgresql") {
    std::cerr << "cellar-cluster: --backend must be sqlite or postgresql\n";
    return 2;
  }
  check.backend = backend;
  absl::StatusOr<std::vector<ck::Fault>> faults = ck::ParseFaults(absl::GetFlag(FLAGS_nemesis));
  if (!faults.ok()) {
    std::cerr << "cellar-cluster: " << faults.status().message() << "\n";
    return 2;
  }
  check.nemesis.faults = *faults;
  check.nemesis.cycles = absl::GetFlag(FLAGS_cycles);
  check.nemesis.seed = absl::GetFlag(FLAGS_seed);
  check.workload.seed = absl::GetFlag(FLAGS_seed);
  check.workload.clients = absl::GetFlag(FLAGS_clients);
  check.workload.client.rpc_timeout = absl::Seconds(5);
  check.workload.client.cache_bytes = 0;
  check.workload.client.connect_timeout = absl::Seconds(30);
  check.duration = absl::GetFlag(FLAGS_duration);
  if (check.workload.clients < 1 || check.nemesis.cycles < 0) {
    std::cerr << "cellar-cluster: --clients must be >= 1 and --cycles >= 0\n";
    return 2;
  }
  // The client library's warnings (a commit without some replicas, ...)
  // would drown the progress lines; what matters ends in the report.
  cellar::common::SetMinLogSeverity(cellar::common::LogSeverity::kError);
  check.on_progress = [](const std::string& line) {
    std::cerr << "check: " << line << std::endl;
  };

  ProcessClusterOptions options = BaseOptions();
  if (options.dir.empty()) {
    char tmpl[] = "/tmp/cellar-check-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      return Fail(absl::InternalError(absl::StrCat("mkdtemp: ", strerror(errno))));
    }
    // PostgreSQL (run as its own user) keeps its data in <dir>/pg.
    chmod(tmpl, 0755);
    options.dir = tmpl;
  } else if (std::filesystem::exists(options.dir) &&
             !std::filesystem::is_empty(options.dir)) {
    std::cerr << "cellar-cluster: check needs a new (or empty) --dir; " << options.dir
              << " is not empty\n";
    return 2;
  }
  options.stop_on_destruction = true;
  options.die_with_parent = true;
  auto& t = options.topology;
  t.storages = absl::GetFlag(FLAGS_storages);
  t.replicas = static_cast<uint32_t>(absl::GetFlag(FLAGS_replicas));
  t.partitions = static_cast<uint32_t>(absl::GetFlag(FLAGS_partitions));
  t.masters = absl::GetFlag(FLAGS_masters);
  t.postgres = backend == "postgresql";
  t.cluster_name = "check";
  options.postgres_conninfo = absl::GetFlag(FLAGS_postgres_conninfo);
  std::cerr << "check: starting a cluster in " << options.dir << "\n";
  auto cluster = ProcessCluster::Up(options);
  if (!cluster.ok()) return Fail(cluster.status());
  absl::StatusOr<ck::RunReport> report = ck::RunCheck(**cluster, check);
  std::cerr << "check: stopping the cluster (logs stay in " << options.dir << ")\n";
  absl::Status down = (*cluster)->Down();
  cluster->reset();
  if (!down.ok()) std::cerr << "cellar-cluster: down: " << down << "\n";
  if (!report.ok()) return Fail(report.status());
  std::cout << ck::HumanSummary(*report);
  const std::string json = absl::GetFlag(FLAGS_report_json);
  if (!json.empty()) {
    std::ofstream out(json);
    out << ck::ReportJson(*report);
    if (!out) return Fail(absl::InternalError(absl::StrCat("cannot write ", json)));
  }
  return report->ok() ? 0 : 3;
}

// `check --json FILE` (status has a boolean --json): rewritten to
// --report_json=FILE before the flags are parsed.
std::vector<char*> CheckJsonArgs(int argc, char** argv, std::vector<std::string>& storage) {
  std::vector<char*> out(argv, argv + argc);
  if (std::find_if(out.begin() + 1, out.end(), [](char* a) {
        return std::string(a) == "check";
      }) == out.end()) {
    return out;
  }
  storage.reserve(argc);
  std::vector<char*> rewritten;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--json" || a == "-json") && i + 1 < argc && argv[i + 1][0] != '-') {
      storage.push_back(absl::StrCat("--report_json=", argv[++i]));
      rewritten.push_back(storage.back().data());
    } else if (absl::StartsWith(a, "--json=")) {
      storage.push_back(absl::StrCat("--report_json=", a.substr(7)));
      rewritten.push_back(storage.back().data());
    } else {
      rewritten.push_back(argv[i]);
    }
  }
  return rewritten;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  std::vector<std::string> storage;
  std::vector<char*> args = CheckJsonArgs(argc, argv, storage);
  std::vector<char*> positional = absl::ParseCommandLine(static_cast<int>(args.size()),
                                                         args.data());
  if (positional.size() < 2) {
    std::cerr << kUsage << "\n";
    return 2;
  }
  const std::string command = positional[1];
  const std::string node = positional.size() > 2 ? positional[2] : "";
  if (command == "check") return Check();
  if (absl::GetFlag(FLAGS_dir).empty()) {
    std::cerr << "cellar-cluster: --dir is required\n" << kUsage << "\n";
    return 2;
  }
  const bool needs_node =
      command == "kill" || command == "restart" || command == "start" || command == "wipe";
  if (needs_node && node.empty()) {
    std::cerr << "cellar-cluster: " << command << " needs a node name (M1, S2, A1, ...)\n";
    return 2;
  }

  if (command == "up") {
    ProcessClusterOptions options = BaseOptions();
    auto& t = options.topology;
    t.storages = absl::GetFlag(FLAGS_storages);
    t.replicas = static_cast<uint32_t>(absl::GetFlag(FLAGS_replicas));
    t.partitions = static_cast<uint32_t>(absl::GetFlag(FLAGS_partitions));
    t.masters = absl::GetFlag(FLAGS_masters);
    t.postgres = absl::GetFlag(FLAGS_postgres);
    t.admin = absl::GetFlag(FLAGS_admin);
    t.cluster_name = absl::GetFlag(FLAGS_cluster_name);
    t.autostart = absl::GetFlag(FLAGS_autostart);
    t.auth = absl::GetFlag(FLAGS_auth);
    t.tls = absl::GetFlag(FLAGS_tls);
    if (!absl::GetFlag(FLAGS_labels).empty()) {
      t.labels = absl::StrSplit(absl::GetFlag(FLAGS_labels), ',');
    }
    t.master_flags = absl::StrSplit(absl::GetFlag(FLAGS_master_flags), ' ', absl::SkipEmpty());
    t.storage_flags =
        absl::StrSplit(absl::GetFlag(FLAGS_storage_flags), ' ', absl::SkipEmpty());
    options.postgres_conninfo = absl::GetFlag(FLAGS_postgres_conninfo);
    auto cluster = ProcessCluster::Up(options);
    if (!cluster.ok()) return Fail(cluster.status());
    std::cerr << "cellar-cluster: up; try tools/cellarctl/run --master="
              << absl::StrJoin((*cluster)->master_addresses(), ",")
              << (t.auth ? " --token-file=" + (*cluster)->dir() + "/client.token" : "")
              << TlsFlags(**cluster) << " status\n";
    return Status(**cluster);
  }

  ProcessClusterOptions options = BaseOptions();
  auto cluster = ProcessCluster::Attach(options);
  if (!cluster.ok()) return Fail(cluster.status());
  ProcessCluster& c = **cluster;

  if (command == "status") return Status(c);
  if (command == "kill") {
    auto signal = cellar::tools::ParseSignal(absl::GetFlag(FLAGS_signal));
    if (!signal.ok()) return Fail(signal.status());
    absl::Status s = c.Kill(node, *signal);
    return s.ok() ? 0 : Fail(s);
  }
  if (command == "restart" || command == "start") {
    absl::Status s = command == "restart" ? c.Restart(node, absl::GetFlag(FLAGS_wait))
                                          : c.Start(node, absl::GetFlag(FLAGS_wait));
    if (!s.ok()) return Fail(s);
    std::cerr << "cellar-cluster: " << node << " is up (pid " << c.pid(node) << ")\n";
    return 0;
  }
  if (command == "wipe") {
    absl::Status s = c.Wipe(node);
    return s.ok() ? 0 : Fail(s);
  }
  if (command == "add-storage") {
    absl::StatusOr<std::string> name = c.AddStorage(absl::GetFlag(FLAGS_label));
    if (!name.ok()) return Fail(name.status());
    std::cerr << "cellar-cluster: " << *name << " joined as node "
              << cellar::common::NodeName(c.node_id(*name))
              << " (PENDING: no cells yet); give it cells with: tools/cellarctl/run add "
              << cellar::common::NodeName(c.node_id(*name)) << " --dry-run\n";
    return 0;
  }
  if (command == "down") {
    absl::Status s = c.Down();
    if (!s.ok()) std::cerr << "cellar-cluster: down: " << s << "\n";
    if (absl::GetFlag(FLAGS_wipe)) {
      const auto& pg = c.file().postgres();
      for (const auto& n : c.file().nodes()) {
        if (!n.database().empty() && pg.dir().empty()) {
          // Databases on a server the user gave: drop them there.
          absl::Status d = cellar::tools::DropPostgresDatabase(pg.conninfo(), n.database());
          if (!d.ok()) std::cerr << "cellar-cluster: " << d << "\n";
        }
      }
      if (!pg.election_database().empty() && pg.dir().empty()) {
        cellar::tools::DropPostgresDatabase(pg.conninfo(), pg.election_database()).IgnoreError();
      }
      const std::string dir = c.dir();
      std::error_code ec;
      if (pg.temporary_dir()) {
        std::cerr << "cellar-cluster: removing " << pg.dir() << "\n";
        std::filesystem::remove_all(pg.dir(), ec);
      }
      cluster->reset();
      std::cerr << "cellar-cluster: removing " << dir << "\n";
      std::filesystem::remove_all(dir, ec);
      if (ec) return Fail(absl::InternalError(absl::StrCat("remove ", dir, ": ", ec.message())));
    }
    return s.ok() ? 0 : 1;
  }
  std::cerr << "cellar-cluster: unknown command \"" << command << "\"\n" << kUsage << "\n";
  return 2;
}
