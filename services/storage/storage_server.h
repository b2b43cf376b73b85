#ifndef CELLAR_SERVICES_STORAGE_STORAGE_SERVER_H_
#define CELLAR_SERVICES_STORAGE_STORAGE_SERVER_H_

// Lifecycle handle of a storage node: the StorageNode (domain), the
// cellar.v1.Storage adapter and the gRPC harness (health, reflection,
// metrics interceptor), wired together.
//
//   CELLAR_ASSIGN_OR_RETURN(auto storage,
//       StorageServer::Start(options, std::move(backend), clock, registry));
//   CELLAR_RETURN_IF_ERROR(storage->WaitUntilServing(absl::Seconds(10)));
//   ... storage->address() ...
//   storage->Shutdown();
//
// Health (grpc.health.v1): service "cellar.v1.Storage" is SERVING only once
// the node is registered, holds a partition table and the cluster is
// RUNNING; NOT_SERVING otherwise.
//
// Thread-safe.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/clock.h"
#include "services/common/authenticator.h"
#include "services/common/grpc_server.h"
#include "services/storage/backend/storage_backend.h"
#include "services/storage/storage_metrics.h"
#include "services/storage/storage_node.h"
#include "services/storage/storage_service.h"

namespace cellar::storage {

struct StorageServerOptions {
  // gRPC listen address; port 0 picks a free port. Default "127.0.0.1:0".
  std::string listen_address = "127.0.0.1:0";
  // What others dial; "" = 127.0.0.1:<bound port>. Default "".
  std::string advertise_address;
  // Master addresses, host:port (required; the first that accepts the
  // registration, i.e. the primary, is used).
  std::vector<std::string> master_addresses;
  // Must equal the master's cluster name. Default "cellar".
  std::string cluster_name = "cellar";
  // Identity reported at registration and as metric labels.
  // Defaults "0.1.0", "dev", "stable", "" (label: failure domain
  // "zone/host/device").
  std::string version = "0.1.0", build_id = "dev", track = "stable", label;
  // Largest object accepted, bytes. Default 16 MiB.
  size_t max_object_bytes = 16 << 20;
  // Longest a store waits for an OID lock. Default 10 s.
  absl::Duration lock_wait_timeout = absl::Seconds(10);
  // A transaction that stored but has not voted, with no store for this
  // long, is aborted by the node (its object locks released). Default 60 s.
  absl::Duration unvoted_timeout = absl::Seconds(60);
  // A vote still unsettled this long is reported to the master in each
  // heartbeat, which resolves it. Default 30 s.
  absl::Duration report_votes_after = absl::Seconds(30);
  // StorageNodeOptions::fault_load_error_ratio (fault injection; 0..1,
  // default 0).
  double fault_load_error_ratio = 0;
  // Group-commit writer threads (PostgreSQL: more). Default 1.
  int writer_threads = 1;
  // Deadline of unary calls to the master. Default 5 s.
  absl::Duration master_rpc_timeout = absl::Seconds(5);
  // Master.Heartbeat period (below the master's heartbeat timeout, 10 s by
  // default). Default 2 s.
  absl::Duration heartbeat_interval = absl::Seconds(2);
  // How often the stats gauges (counts, per-cell sizes) are refreshed.
  // Default 15 s.
  absl::Duration stats_interval = absl::Seconds(15);
  // Replication of OUT_OF_DATE cells: chunk sizes, the minimum speed kept
  // under client traffic (busy_bytes_per_second), test hooks.
  ReplicatorOptions replication;
  // The background pack: oids per chunk and the pause after each chunk
  // (its rate limit). Defaults 500, 50 ms.
  PackerOptions pack;
  // Deadline of one replication stream from a source. Default 10 min.
  absl::Duration replication_fetch_timeout = absl::Minutes(10);
  // What Storage.Shutdown (an operator's stop) does once the reason is
  // logged and stdout/stderr are flushed. Null (default): stop this
  // server only, from a background thread, the way Shutdown() does (the
  // process keeps running: `cellar local`, tests). cellar-storage sets it
  // to end the process the SIGTERM way. Must not block.
  std::function<void(const std::string& reason)> on_shutdown_rpc;
  // Authentication of the gRPC port, and the node bearer sent to masters
  // and replication sources (docs/security.md). Default: off (loopback
  // listeners only).
  common::AuthSetup auth;
};

class StorageServer {
 public:
  // Starts serving at once; registers with the master in the background
  // (retrying). INVALID_ARGUMENT without master addresses or backend,
  // UNAVAILABLE if it cannot listen, or the backend's error reading the
  // persisted state. `clock` must outlive the server; `registry` may be
  // null (no metrics).
  static absl::StatusOr<std::unique_ptr<StorageServer>> Start(
      StorageServerOptions options, std::unique_ptr<StorageBackend> backend,
      common::Clock* clock, std::shared_ptr<prometheus::Registry> registry);

  ~StorageServer();  // Shutdown()

  StorageServer(const StorageServer&) = delete;
  StorageServer& operator=(const StorageServer&) = delete;

  // The bound gRPC port.
  int port() const;
  // The advertised address.
  std::string address() const;
  // 0 until registered (or the id persisted in the database).
  uint32_t node_id() const;

  // Blocks until registered, holding a partition table and the cluster is
  // RUNNING, or `timeout` passes (DEADLINE_EXCEEDED saying what is missing).
  absl::Status WaitUntilServing(absl::Duration timeout);

  // Stops the master loop, the gRPC server, the writers; closes the
  // backend (SQLite: closing checkpoints the WAL). Idempotent.
  void Shutdown();

  // Storage.Shutdown's hook: logs `reason`, flushes stdout/stderr, then
  // options.on_shutdown_rpc, or (default) Shutdown() from a background
  // thread started here (joined by the destructor). Returns at once.
  absl::Status RequestShutdown(const std::string& reason);

  // The domain object (for tests and the local launcher).
  StorageNode& node() { return *node_; }

 private:
  StorageServer() = default;

  StorageServerOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<StorageMetrics> metrics_;
  std::unique_ptr<StorageNode> node_;
  std::unique_ptr<StorageService> service_;
  std::unique_ptr<common::GrpcServer> grpc_;
  std::string address_;
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  // The background stop of RequestShutdown (not joinable until then).
  absl::Mutex stop_mu_;
  std::thread stop_thread_ ABSL_GUARDED_BY(stop_mu_);
};

}  // namespace cellar::storage

#endif  // CELLAR_SERVICES_STORAGE_STORAGE_SERVER_H_
