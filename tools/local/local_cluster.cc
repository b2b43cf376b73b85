#include "tools/local/local_cluster.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/storage/backend/backend_uri.h"

namespace cellar::tools {
namespace {

absl::Status MakeDirs(const std::string& path) {
  std::string partial;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!partial.empty() && ::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
        return absl::FailedPreconditionError(
            absl::StrCat("cannot create directory ", partial, ": ", std::strerror(errno)));
      }
    }
    if (i < path.size()) partial.push_back(path[i]);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LocalCluster::ValidateOptions(const LocalClusterOptions& options) {
  if (options.storages < 1) return absl::InvalidArgumentError("storages: must be at least 1");
  if (options.partitions < 1) {
    return absl::InvalidArgumentError("partitions: must be at least 1");
  }
  if (options.canary_storages < 0 || options.canary_storages > kMaxCanaryStorages) {
    return absl::InvalidArgumentError(
        absl::StrCat("canary_storages: must be within 0..", kMaxCanaryStorages, ", got ",
                     options.canary_storages));
  }
  // Written so that NaN is refused too.
  if (!(options.canary_fault_load_error_ratio >= 0 &&
        options.canary_fault_load_error_ratio <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("canary_fault_load_error_ratio: must be within 0..1, got ",
                     options.canary_fault_load_error_ratio));
  }
  if (options.canary_fault_load_error_ratio != 0 && options.canary_storages == 0) {
    return absl::InvalidArgumentError(
        "canary_fault_load_error_ratio: there is no canary storage to give it "
        "(canary_storages is 0)");
  }
  const int total = options.storages + options.canary_storages;
  if (!options.storage_backends.empty() &&
      static_cast<int>(options.storage_backends.size()) != total) {
    return absl::InvalidArgumentError(absl::StrCat(
        "storage_backends: give one URI per storage, the canary storages' last (",
        total, "), got ", options.storage_backends.size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(LocalClusterOptions options,
                                                                  common::Clock* clock) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  auto cluster = std::unique_ptr<LocalCluster>(new LocalCluster);
  cluster->options_ = options;
  cluster->clock_ = clock != nullptr ? clock : common::RealClock::Get();
  if (options.storage_backends.empty()) {
    if (absl::Status s = MakeDirs(options.data_dir); !s.ok()) return s;
  }

  cluster->master_registry_ = std::make_shared<prometheus::Registry>();
  if (absl::Status s = cluster->StartMaster(options.master_listen); !s.ok()) return s;
  if (!options.master_metrics_listen.empty()) {
    auto endpoint =
        common::MetricsEndpoint::Start(
            common::MetricsOptionsFor(options.master_metrics_listen, options.auth),
            cluster->master_registry_);
    if (!endpoint.ok()) return endpoint.status();
    cluster->master_metrics_ = *std::move(endpoint);
    cluster->master_metrics_->Add(cluster->master_->collector());
  }

  for (int i = 0; i < options.storages + options.canary_storages; ++i) {
    cluster->storage_listen_.push_back(
        absl::StrCat(options.storage_host, ":",
                     options.storage_base_port == 0 ? 0 : options.storage_base_port + i));
    cluster->storage_registries_.push_back(std::make_shared<prometheus::Registry>());
    cluster->storage_metrics_.emplace_back();
    cluster->storages_.emplace_back();
    auto storage = cluster->StartStorage(i);
    if (!storage.ok()) return storage.status();
    cluster->storages_[i] = *std::move(storage);
    // Later restarts reuse the port the storage got.
    cluster->storage_listen_[i] =
        absl::StrCat(options.storage_host, ":", cluster->storages_[i]->port());
    if (options.metrics_storage_base_port != 0) {
      auto endpoint = common::MetricsEndpoint::Start(
          common::MetricsOptionsFor(
              absl::StrCat(options.storage_host, ":", options.metrics_storage_base_port + i),
              options.auth),
          cluster->storage_registries_[i]);
      if (!endpoint.ok()) return endpoint.status();
      cluster->storage_metrics_[i] = *std::move(endpoint);
    }
  }

  auto admin_registry = std::make_shared<prometheus::Registry>();
  admin::AdminServerOptions admin_options;
  admin_options.listen_address = options.admin_listen;
  admin_options.admin.master_addresses = {cluster->master_->address()};
  admin_options.admin.cluster_name = options.cluster_name;
  admin_options.auth = cluster->NodeAuth();
  auto admin = admin::AdminServer::Start(admin_options, admin_registry);
  if (!admin.ok()) return admin.status();
  cluster->admin_ = *std::move(admin);
  if (!options.admin_metrics_listen.empty()) {
    auto endpoint = common::MetricsEndpoint::Start(
        common::MetricsOptionsFor(options.admin_metrics_listen, options.auth), admin_registry);
    if (!endpoint.ok()) return endpoint.status();
    cluster->admin_metrics_ = *std::move(endpoint);
    cluster->admin_metrics_->Add(cluster->admin_->collector());
  }

  for (auto& storage : cluster->storages_) {
    if (absl::Status s = storage->WaitUntilServing(options.start_timeout); !s.ok()) {
      return absl::DeadlineExceededError(
          absl::StrCat("cluster did not start: storage at ", storage->address(),
                       " is not serving: ", s.message(),
                       " (is another cluster using the same data directory?)"));
    }
  }
  if (absl::Status s = cluster->AddPendingCanaries(); !s.ok()) return s;
  return cluster;
}

absl::Status LocalCluster::AddPendingCanaries() {
  if (options_.canary_storages == 0) return absl::OkStatus();
  master::ClusterManager* manager = master_->cluster();
  if (manager == nullptr) return absl::InternalError("the master is not the primary");
  absl::flat_hash_set<uint32_t> pending;
  const cellar::v1::GetClusterInfoResponse info = manager->Info();
  for (const cellar::v1::NodeInfo& node : info.nodes()) {
    if (node.state() == cellar::v1::NODE_PENDING) pending.insert(node.node_id());
  }
  std::vector<uint32_t> to_add;
  for (int i = options_.storages; i < num_storages(); ++i) {
    if (pending.contains(storages_[i]->node_id())) to_add.push_back(storages_[i]->node_id());
  }
  if (to_add.empty()) return absl::OkStatus();
  // What `cellarctl add` asks for (Master.ChangePartitionTable PT_ADD).
  absl::StatusOr<master::PtChangeResult> added = manager->ChangePartitionTable(
      cellar::v1::PT_ADD, to_add, /*replicas=*/0, /*dry_run=*/false);
  if (!added.ok()) {
    return absl::Status(added.status().code(),
                        absl::StrCat("adding the canary storages (PT_ADD): ",
                                     added.status().message()));
  }
  added_canaries_ = std::move(to_add);
  return absl::OkStatus();
}

std::string LocalCluster::BackendUri(int i) const {
  if (!options_.storage_backends.empty()) return options_.storage_backends[i];
  if (storage_is_canary(i)) {
    return absl::StrCat("sqlite://", options_.data_dir, "/canary-", i - options_.storages, ".db");
  }
  return absl::StrCat("sqlite://", options_.data_dir, "/storage-", i, ".db");
}

absl::StatusOr<std::unique_ptr<storage::StorageServer>> LocalCluster::StartStorage(int i) {
  auto backend = storage::OpenBackendFromUri(BackendUri(i));
  if (!backend.ok()) return backend.status();
  storage::StorageServerOptions options;
  options.listen_address = storage_listen_[i];
  options.master_addresses = {master_->address()};
  options.cluster_name = options_.cluster_name;
  options.writer_threads = options_.writer_threads;
  options.auth = NodeAuth();
  if (storage_is_canary(i)) {
    options.track = "canary";
    options.fault_load_error_ratio = options_.canary_fault_load_error_ratio;
  }
  if (options_.storage_options) options_.storage_options(i, &options);
  return storage::StorageServer::Start(std::move(options), *std::move(backend), clock_,
                                       storage_registries_[i]);
}

common::AuthSetup LocalCluster::NodeAuth() const {
  return options_.make_auth ? options_.make_auth() : options_.auth;
}

absl::Status LocalCluster::StartMaster(const std::string& listen) {
  master::MasterServerOptions master_options;
  master_options.listen_address = listen;
  master_options.cluster.cluster_name = options_.cluster_name;
  master_options.cluster.num_partitions = options_.partitions;
  master_options.cluster.num_replicas = options_.replicas;
  // Every storage, the canaries included: they register PENDING and the
  // first table is made over the stable ones only, but a new cluster must
  // not start before every stable storage is there (the canaries count
  // among the connected storages).
  master_options.cluster.autostart =
      static_cast<uint32_t>(options_.storages + options_.canary_storages);
  master_options.cluster.epoch = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  master_options.auth = NodeAuth();
  if (options_.master_options) options_.master_options(&master_options);
  auto master = master::MasterServer::Start(master_options, clock_, master_registry_);
  if (!master.ok()) return master.status();
  master_ = *std::move(master);
  return absl::OkStatus();
}

absl::Status LocalCluster::RestartMaster(absl::Duration timeout) {
  const std::string address = master_->address();
  master_->Shutdown();
  master_.reset();
  // A fresh registry: the old master's metric families stay with it.
  master_registry_ = std::make_shared<prometheus::Registry>();
  if (absl::Status s = StartMaster(address); !s.ok()) return s;
  const absl::Time end = absl::Now() + timeout;
  while (master_->cluster() == nullptr ||
         master_->cluster()->Info().cluster_state() != cellar::v1::CLUSTER_RUNNING) {
    if (absl::Now() > end) {
      return absl::DeadlineExceededError("the restarted master is not RUNNING");
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::OkStatus();
}

LocalCluster::~LocalCluster() { Shutdown(); }

std::string LocalCluster::storage_address(int i) const { return storages_[i]->address(); }

uint32_t LocalCluster::storage_node_id(int i) const {
  return storages_[i] ? storages_[i]->node_id() : 0;
}

int LocalCluster::master_metrics_port() const {
  return master_metrics_ ? master_metrics_->port() : 0;
}
int LocalCluster::admin_metrics_port() const {
  return admin_metrics_ ? admin_metrics_->port() : 0;
}
int LocalCluster::storage_metrics_port(int i) const {
  return storage_metrics_[i] ? storage_metrics_[i]->port() : 0;
}

void LocalCluster::StopStorage(int i) {
  if (storages_[i]) {
    storages_[i]->Shutdown();
    storages_[i].reset();
  }
}

absl::Status LocalCluster::RestartStorage(int i, absl::Duration timeout) {
  StopStorage(i);
  auto storage = StartStorage(i);
  if (!storage.ok()) return storage.status();
  storages_[i] = *std::move(storage);
  return storages_[i]->WaitUntilServing(timeout);
}

void LocalCluster::Shutdown() {
  if (admin_) admin_->Shutdown();
  for (auto& storage : storages_) {
    if (storage) storage->Shutdown();
  }
  storages_.clear();
  if (master_) master_->Shutdown();
}

}  // namespace cellar::tools
