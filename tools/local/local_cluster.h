#ifndef CELLAR_TOOLS_LOCAL_LOCAL_CLUSTER_H_
#define CELLAR_TOOLS_LOCAL_LOCAL_CLUSTER_H_

// A whole cellar cluster in one process: a primary master, N storage nodes
// and an admin node, each a real gRPC server (on fixed ports for `cellar
// local`, on port 0 for tests and benchmarks). Storage data lives in
// SQLite files under a data directory, or in PostgreSQL databases.
//
// Restarting a LocalCluster on the same data directory brings back every
// object: the master recovers the partition table and last ids from the
// storages. Storages can be stopped and restarted one by one (tests).
//
// Thread-safe for the accessors; Start/Stop/Restart from one thread.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/admin/admin_server.h"
#include "services/common/clock.h"
#include "services/common/metrics_endpoint.h"
#include "services/master/master_server.h"
#include "services/storage/storage_server.h"

namespace cellar::tools {

struct LocalClusterOptions {
  // Directory for the SQLite files (storage-<i>.db). Created if missing.
  // Ignored for storages given a backend URI below.
  std::string data_dir = "./cellar-data";
  // Storage backend URI per storage (sqlite://... or postgresql://... /
  // libpq conninfo), the canary storages' last; empty = SQLite files in
  // data_dir.
  std::vector<std::string> storage_backends;
  // Number of (stable) storage nodes. Default 3.
  int storages = 3;
  // Canary storages (docs/rollouts.md, "Canary storages"): this many more
  // storages, started with track "canary" (the registry keys on version
  // and track, so they form their own (version, canary) entry), SQLite
  // files canary-<j>.db, listening after the stable ones (storage index
  // storages + j). Once the cluster runs, the PENDING ones are added
  // (PT_ADD, as `cellarctl add` does): they hold extra cells only and the
  // master's canary analysis compares them with the stable storages.
  // 0..kMaxCanaryStorages. Default 0.
  int canary_storages = 0;
  // fault_load_error_ratio of the canary storages: this share of their
  // object loads fails (a bad canary on purpose). 0..1. Default 0.
  double canary_fault_load_error_ratio = 0;
  // Replicas (copies = replicas + 1) and partitions of a new cluster.
  uint32_t replicas = 1;
  uint32_t partitions = 12;
  std::string cluster_name = "cellar";
  // Listen addresses; port 0 picks free ports (tests). Storage i listens
  // on storage_host:storage_base_port + i (or port 0 if base is 0).
  std::string master_listen = "127.0.0.1:0";
  std::string storage_host = "127.0.0.1";
  int storage_base_port = 0;
  std::string admin_listen = "127.0.0.1:0";
  // Metrics endpoints; empty = none. Storage i: host:metrics_storage_base_port+i.
  std::string master_metrics_listen;
  std::string admin_metrics_listen;
  int metrics_storage_base_port = 0;  // 0 = no storage metrics endpoints
  // Group-commit writer threads per storage (PostgreSQL benefits from more).
  int writer_threads = 1;
  // Wait this long for the cluster to be RUNNING in Start. Default 30 s.
  absl::Duration start_timeout = absl::Seconds(30);
  // Tests: adjusts storage i's options each time it (re)starts (replication
  // chunk sizes, test hooks, heartbeat interval). Default: none.
  std::function<void(int index, storage::StorageServerOptions* options)> storage_options;
  // Tests: adjusts the master's options (e.g. cluster.heartbeat_timeout).
  // Default: none.
  std::function<void(master::MasterServerOptions* options)> master_options;
  // Authentication of every node (the same authenticator and node bearer
  // for all, as if they shared the tokens file and cluster secret).
  // Default: off.
  common::AuthSetup auth;
  // Tests: gives every node (the master and each storage at each start,
  // the admin) its own authentication, as separate processes have (own
  // Authenticator, own cluster token table). Overrides `auth`. Default:
  // none.
  std::function<common::AuthSetup()> make_auth;
};

class LocalCluster {
 public:
  static constexpr int kMaxCanaryStorages = 8;

  // INVALID_ARGUMENT for options Start refuses (fewer than 1 storage or
  // partition, canary_storages outside 0..kMaxCanaryStorages, a canary
  // fault ratio outside 0..1, not one backend URI per storage), saying
  // which and why.
  static absl::Status ValidateOptions(const LocalClusterOptions& options);

  // Starts everything and waits (bounded) until the cluster is RUNNING
  // and every storage serves. `clock` may be null (real clock).
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(LocalClusterOptions options,
                                                             common::Clock* clock = nullptr);
  ~LocalCluster();

  std::string master_address() const { return master_->address(); }
  std::string admin_address() const { return admin_->address(); }
  std::string storage_address(int i) const;
  uint32_t storage_node_id(int i) const;
  // Every storage, the canary ones last (index >= options.storages).
  int num_storages() const { return static_cast<int>(storages_.size()); }
  bool storage_is_canary(int i) const { return i >= options_.storages; }
  // The canary storages Start added (PT_ADD); empty when they were
  // already in the table (a restart) or there are none.
  const std::vector<uint32_t>& added_canaries() const { return added_canaries_; }
  master::MasterServer& master() { return *master_; }

  // Ports of the metrics endpoints (0 if not started).
  int master_metrics_port() const;
  int admin_metrics_port() const;
  int storage_metrics_port(int i) const;

  // Stops storage i (its data stays). Idempotent.
  void StopStorage(int i);
  // Starts storage i again on the same data and address; waits until it
  // serves (bounded).
  absl::Status RestartStorage(int i, absl::Duration timeout = absl::Seconds(30));

  // Stops the master and starts a new one (a new term, with a new
  // Authenticator under make_auth) on the same address; waits until the
  // storages registered again and the cluster is RUNNING (bounded).
  absl::Status RestartMaster(absl::Duration timeout = absl::Seconds(30));

  // Stops every node (storages, admin, master).
  void Shutdown();

 private:
  LocalCluster() = default;
  absl::StatusOr<std::unique_ptr<storage::StorageServer>> StartStorage(int i);
  absl::Status StartMaster(const std::string& listen);
  common::AuthSetup NodeAuth() const;
  std::string BackendUri(int i) const;
  // PT_ADD of the canary storages still PENDING.
  absl::Status AddPendingCanaries();

  LocalClusterOptions options_;
  common::Clock* clock_ = nullptr;
  std::unique_ptr<master::MasterServer> master_;
  std::shared_ptr<prometheus::Registry> master_registry_;
  std::vector<std::unique_ptr<storage::StorageServer>> storages_;
  std::vector<std::string> storage_listen_;
  std::vector<std::shared_ptr<prometheus::Registry>> storage_registries_;
  std::vector<std::unique_ptr<common::MetricsEndpoint>> storage_metrics_;
  std::unique_ptr<admin::AdminServer> admin_;
  std::unique_ptr<common::MetricsEndpoint> master_metrics_;
  std::unique_ptr<common::MetricsEndpoint> admin_metrics_;
  std::vector<uint32_t> added_canaries_;
};

}  // namespace cellar::tools

#endif  // CELLAR_TOOLS_LOCAL_LOCAL_CLUSTER_H_
