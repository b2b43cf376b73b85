// cellar-storage: a storage node of a cellar cluster.
// Flags -> StorageServerOptions -> Start -> wait for SIGINT/SIGTERM.

#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "services/common/auth_flags.h"
#include "services/common/clock.h"
#include "services/common/logging.h"
#include "services/common/metrics_endpoint.h"
#include "services/common/signals.h"
#include "services/storage/backend/backend_uri.h"
#include "services/storage/storage_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7200", "gRPC listen address (host:port)");
ABSL_FLAG(std::string, advertise, "",
          "Address other nodes and clients dial (default: 127.0.0.1:<bound port>)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9200",
          "Prometheus /metrics address; empty disables it");
ABSL_FLAG(std::string, master, "127.0.0.1:7100",
          "Master address(es), comma-separated; the primary is found among them");
ABSL_FLAG(std::string, cluster_name, "cellar", "Cluster name (must match the master's)");
ABSL_FLAG(std::string, backend, "sqlite://./cellar-storage-0.db",
          "Database: sqlite:///abs/path.db, sqlite://relative.db, postgresql://... or a "
          "libpq string such as \"host=/run/postgresql dbname=cellar\"");
ABSL_FLAG(std::string, label, "", "Failure domain zone/host/device (replica placement)");
ABSL_FLAG(std::string, track, "stable", "Deployment track: stable, canary or shadow");
ABSL_FLAG(std::string, build_id, "dev", "Build identifier reported to the master");
ABSL_FLAG(uint64_t, max_object_bytes, 16 << 20, "Largest object accepted, bytes");
ABSL_FLAG(int, writer_threads, 1,
          "Group-commit writer threads (1 for SQLite; a few for PostgreSQL)");
ABSL_FLAG(absl::Duration, lock_wait_timeout, absl::Seconds(10),
          "Longest a store waits for an object lock");
ABSL_FLAG(absl::Duration, unvoted_timeout, absl::Seconds(60),
          "A transaction that stored objects but has not voted, idle this long, is "
          "aborted by this node (its object locks released); must be > 0");
ABSL_FLAG(absl::Duration, report_votes_after, absl::Seconds(30),
          "A vote neither locked nor aborted this long is reported to the master in "
          "each heartbeat, which resolves it; must be > 0");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(2),
          "How often to tell the master this node is alive (the master's heartbeat timeout, "
          "10 s by default, must be well above it)");
ABSL_FLAG(uint64_t, replication_bytes_per_second, 8 << 20,
          "Replication speed kept while clients are active (the minimum speed: replication "
          "yields to client traffic down to this rate); 0 = no limit");
ABSL_FLAG(uint64_t, replication_idle_bytes_per_second, 0,
          "Replication speed without client traffic; 0 = no limit");
ABSL_FLAG(uint32_t, replication_chunk_records, 1000,
          "Records per replication chunk (1..10000): memory per chunk and resume granularity");
ABSL_FLAG(uint32_t, pack_chunk_items, 500,
          "Oids (or transaction records) per pack chunk, one short database transaction "
          "each (1..100000)");
ABSL_FLAG(absl::Duration, pack_pause, absl::Milliseconds(50),
          "Pause after each pack chunk: the pack's rate limit (docs/lifecycle.md)");
ABSL_FLAG(double, fault_load_error_ratio, 0,
          "Fault injection for tests and demonstrations of a bad canary: this share (0..1) of "
          "object loads fails with UNAVAILABLE FAULT_INJECTED; 0 = never (docs/rollouts.md)");
ABSL_FLAG(uint64_t, replication_chunk_bytes, 4 << 20,
          "Bytes per replication chunk (at most 32 MiB)");

int main(int argc, char** argv) {
  cellar::common::BlockTerminationSignals();
  absl::SetProgramUsageMessage("cellar-storage: storage node of a cellar cluster");
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil checks every Mutex operation for lock-order cycles:
  // 12 % of a commit's instructions (docs/performance.md). Tests keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  cellar::storage::StorageServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.advertise_address = absl::GetFlag(FLAGS_advertise);
  options.master_addresses =
      absl::StrSplit(absl::GetFlag(FLAGS_master), ',', absl::SkipWhitespace());
  options.cluster_name = absl::GetFlag(FLAGS_cluster_name);
  options.label = absl::GetFlag(FLAGS_label);
  options.track = absl::GetFlag(FLAGS_track);
  options.auth = cellar::common::AuthSetupFromFlagsOrExit("cellar-storage");
  options.build_id = absl::GetFlag(FLAGS_build_id);
  options.max_object_bytes = absl::GetFlag(FLAGS_max_object_bytes);
  options.writer_threads = absl::GetFlag(FLAGS_writer_threads);
  options.lock_wait_timeout = absl::GetFlag(FLAGS_lock_wait_timeout);
  options.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  options.unvoted_timeout = absl::GetFlag(FLAGS_unvoted_timeout);
  options.report_votes_after = absl::GetFlag(FLAGS_report_votes_after);
  options.replication.busy_bytes_per_second = absl::GetFlag(FLAGS_replication_bytes_per_second);
  options.replication.idle_bytes_per_second =
      absl::GetFlag(FLAGS_replication_idle_bytes_per_second);
  options.replication.chunk_records = absl::GetFlag(FLAGS_replication_chunk_records);
  options.replication.chunk_bytes = absl::GetFlag(FLAGS_replication_chunk_bytes);
  options.pack.chunk_items = absl::GetFlag(FLAGS_pack_chunk_items);
  options.pack.pause = absl::GetFlag(FLAGS_pack_pause);
  if (options.pack.chunk_items < 1 || options.pack.chunk_items > 100000 ||
      options.pack.pause < absl::ZeroDuration()) {
    std::cerr << "cellar-storage: --pack_chunk_items must be 1..100000 and --pack_pause >= 0\n";
    return 2;
  }
  options.fault_load_error_ratio = absl::GetFlag(FLAGS_fault_load_error_ratio);
  if (!(options.fault_load_error_ratio >= 0 && options.fault_load_error_ratio <= 1)) {
    std::cerr << "cellar-storage: --fault_load_error_ratio must be within 0..1, got "
              << options.fault_load_error_ratio << "\n";
    return 2;
  }
  if (options.fault_load_error_ratio > 0) {
    CELLAR_LOG(WARNING) << "FAULT INJECTION ON: --fault_load_error_ratio="
                        << options.fault_load_error_ratio << ": that share of loads fails with "
                        << "UNAVAILABLE on purpose. Never run this in production.";
  }
  if (options.report_votes_after <= absl::ZeroDuration()) {
    std::cerr << "cellar-storage: --report_votes_after must be > 0\n";
    return 2;
  }
  if (options.unvoted_timeout <= absl::ZeroDuration()) {
    std::cerr << "cellar-storage: --unvoted_timeout must be > 0\n";
    return 2;
  }
  if (options.heartbeat_interval <= absl::ZeroDuration() ||
      options.replication.chunk_records < 1 || options.replication.chunk_records > 10000 ||
      options.replication.chunk_bytes < 1 || options.replication.chunk_bytes > (32u << 20)) {
    std::cerr << "cellar-storage: --heartbeat_interval must be > 0, "
                 "--replication_chunk_records in 1..10000 and --replication_chunk_bytes in "
                 "1..33554432\n";
    return 2;
  }
  if (options.master_addresses.empty()) {
    std::cerr << "cellar-storage: --master: at least one master address is required\n";
    return 2;
  }
  if (options.writer_threads < 1 || options.max_object_bytes == 0 ||
      options.max_object_bytes > (size_t{1} << 30)) {
    std::cerr << "cellar-storage: --writer_threads must be >= 1 and --max_object_bytes "
                 "in 1..1073741824\n";
    return 2;
  }

  auto backend = cellar::storage::OpenBackendFromUri(absl::GetFlag(FLAGS_backend));
  if (!backend.ok()) {
    std::cerr << "cellar-storage: --backend: " << backend.status() << "\n";
    return 1;
  }
  auto registry = std::make_shared<prometheus::Registry>();
  // Metrics first: a port in use fails before the node joins the cluster.
  std::unique_ptr<cellar::common::MetricsEndpoint> metrics;
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    auto endpoint = cellar::common::MetricsEndpoint::Start(
        cellar::common::MetricsOptionsFor(absl::GetFlag(FLAGS_metrics_listen), options.auth),
        registry);
    if (!endpoint.ok()) {
      std::cerr << "cellar-storage: --metrics_listen: " << endpoint.status() << "\n";
      return 1;
    }
    metrics = *std::move(endpoint);
  }
  // Storage.Shutdown (operator stop): the same clean path as SIGTERM.
  options.on_shutdown_rpc = [](const std::string& reason) {
    CELLAR_LOG(INFO) << "Storage.Shutdown: " << reason << ": stopping like on SIGTERM";
    kill(getpid(), SIGTERM);
  };
  auto storage = cellar::storage::StorageServer::Start(
      options, *std::move(backend), cellar::common::RealClock::Get(), registry);
  if (!storage.ok()) {
    std::cerr << "cellar-storage: " << storage.status() << "\n";
    return 1;
  }
  std::cout << "cellar-storage: serving on " << (*storage)->address();
  if (metrics) {
    std::cout << " (metrics on port " << metrics->port() << ")";
  } else {
    std::cout << " (metrics disabled)";
  }
  std::cout << std::endl;

  const int sig = cellar::common::WaitForTerminationSignal();
  CELLAR_LOG(INFO) << "signal " << sig << ": shutting down";
  (*storage)->Shutdown();  // the database is closed
  cellar::common::ExitAfterShutdown(0);
}
