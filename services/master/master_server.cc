#include "services/master/master_server.h"

#include <atomic>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/common/build_info.h"
#include "services/common/collector.h"
#include "services/common/ids.h"
#include "services/master/flag_seeder.h"
#include "services/common/logging.h"
#include "services/master/event_hub.h"
#include "services/master/grpc_storage_caller.h"
#include "services/master/master_service.h"

namespace cellar::master {
namespace {

constexpr char kMasterService[] = "cellar.v1.Master";

// The primary's feature flags: how many, and each one's age (flags are
// meant to be removed: docs/rollouts.md, alert CellarFeatureFlagStale).
void AddFeatureFlagMetrics(common::MetricsBuilder& m, const cellar::v1::FeatureFlagTable& table,
                           absl::Time now) {
  m.Gauge("cellar_feature_flags", "Feature flags in the cluster's table.", {},
          table.flags_size());
  for (const cellar::v1::FeatureFlag& flag : table.flags()) {
    m.Gauge("cellar_feature_flag_age_days", "Days since the feature flag was created.",
            {{"flag", flag.name()}},
            absl::ToDoubleHours(now - absl::FromUnixMillis(flag.created_unix_ms())) / 24);
  }
}

// Master.ReportUnreachable: what became of the reports, and the probes' time.
void AddLockBatchMetrics(common::MetricsBuilder& m, const GrpcStorageCaller::BatchStats& stats) {
  const std::pair<const char*, std::pair<uint64_t, uint64_t>> kinds[] = {
      {"lock", {stats.lock_calls, stats.locks}}, {"unlock", {stats.unlock_calls, stats.unlocks}}};
  for (const auto& [kind, counts] : kinds) {
    m.Counter("cellar_master_storage_lock_calls_total",
              "Lock or unlock calls the primary sent to storages (one per batch, or per "
              "single rpc).",
              {{"kind", kind}}, static_cast<double>(counts.first));
    m.Counter("cellar_master_storage_lock_items_total",
              "Locks or unlocks those calls carried (items / calls = mean batch size).",
              {{"kind", kind}}, static_cast<double>(counts.second));
  }
  m.Counter("cellar_master_storage_lock_batches_total",
            "Lock calls that carried more than one lock (Storage.LockTransactions).", {},
            static_cast<double>(stats.lock_batches));
}

void AddUnreachableMetrics(common::MetricsBuilder& m, const UnreachableStats& stats) {
  const std::pair<const char*, uint64_t> outcomes[] = {{"probed_down", stats.probed_down},
                                                       {"probed_up", stats.probed_up},
                                                       {"coalesced", stats.coalesced},
                                                       {"ignored", stats.ignored}};
  for (const auto& [outcome, n] : outcomes) {
    m.Counter("cellar_master_unreachable_reports_total",
              "Reports of unreachable storages (Master.ReportUnreachable) by what became of "
              "them.",
              {{"outcome", outcome}}, static_cast<double>(n));
  }
  m.Counter("cellar_master_unreachable_probe_seconds_total",
            "Time spent probing storages reported unreachable.", {},
            absl::ToDoubleSeconds(stats.probe_time));
}

// The version registry (docs/rollouts.md): connected nodes per version,
// track and role, and which versions are quarantined (alert
// CellarVersionQuarantined). The samples' own version/track labels name
// the nodes' version, not this master's.
void AddVersionMetrics(common::MetricsBuilder& m, const ClusterManager::Versions& versions) {
  static const std::pair<common::NodeKind, const char*> kRoles[] = {
      {common::NodeKind::kStorage, "storage"},
      {common::NodeKind::kClient, "client"},
      {common::NodeKind::kAdmin, "admin"}};
  for (const VersionStatus& v : versions.versions) {
    for (const auto& [kind, role] : kRoles) {
      auto it = v.nodes.find(kind);
      m.Gauge("cellar_version_nodes",
              "Connected nodes registered with this version and track, by role.",
              {{"version", v.key.version}, {"track", v.key.track}, {"role", role}},
              it == v.nodes.end() ? 0 : it->second);
    }
    m.Gauge("cellar_version_quarantined",
            "1 while this version and track is quarantined (no new cells; reads prefer "
            "other replicas).",
            {{"version", v.key.version}, {"track", v.key.track}}, v.quarantined ? 1 : 0);
  }
}

// The canary analysis (docs/rollouts.md, "Canary analysis"): each canary
// version's verdict (alert CellarCanaryRollback) and its last interval's
// error ratio.
void AddCanaryMetrics(common::MetricsBuilder& m, const std::vector<CanaryStatus>& canaries) {
  for (const CanaryStatus& c : canaries) {
    const common::MetricLabels labels = {{"version", c.key.version}, {"track", c.key.track}};
    m.Gauge("cellar_canary_verdict",
            "The canary analysis's verdict for this version: 0 hold, 1 promote, 2 rollback.",
            labels, VerdictValue(c.verdict));
    for (auto it = c.intervals.rbegin(); it != c.intervals.rend(); ++it) {
      if (it->outcome == CanaryInterval::Outcome::kNoData) continue;
      m.Gauge("cellar_canary_error_ratio",
              "Load and store errors / calls of this canary version over its last analysis "
              "interval with data.",
              labels, it->error_ratio);
      break;
    }
  }
}

void AddClusterMetrics(common::MetricsBuilder& m, ClusterManager* cluster,
                       TransactionCoordinator* coordinator) {
  const cellar::v1::GetClusterInfoResponse info = cluster->Info();
  for (int s = cellar::v1::CLUSTER_RECOVERING; s <= cellar::v1::CLUSTER_STOPPING_BACKUP; ++s) {
    m.Gauge("cellar_cluster_state", "1 for the cluster's current state.",
            {{"state", cellar::v1::ClusterState_Name(static_cast<cellar::v1::ClusterState>(s))}},
            info.cluster_state() == s ? 1 : 0);
  }
  m.Gauge("cellar_cluster_operational",
          "1 when every partition has a readable cell on a running storage.", {},
          info.operational() ? 1 : 0);
  m.Gauge("cellar_cluster_ptid", "Partition table version.", {},
          static_cast<double>(info.partition_table().ptid()));
  m.Gauge("cellar_cluster_last_tid_seconds",
          "Time of the last committed transaction (Unix seconds).", {},
          info.last_tid() == 0
              ? 0
              : absl::ToDoubleSeconds(common::TimeFromTid(info.last_tid()) - absl::UnixEpoch()));
  m.Gauge("cellar_cluster_last_oid", "Highest OID allocated.", {},
          static_cast<double>(info.last_oid()));
  std::map<std::pair<std::string, std::string>, int> nodes;
  for (const auto& node : info.nodes()) {
    ++nodes[{cellar::v1::NodeRole_Name(node.role()), cellar::v1::NodeState_Name(node.state())}];
  }
  for (const auto& [key, n] : nodes) {
    m.Gauge("cellar_nodes", "Nodes known to the master by role and state.",
            {{"role", key.first}, {"node_state", key.second}}, n);
  }
  std::map<std::string, int> cells;
  for (const auto& row : info.partition_table().rows()) {
    for (const auto& cell : row.cells()) ++cells[cellar::v1::CellState_Name(cell.state())];
  }
  for (const auto& [state, n] : cells) {
    m.Gauge("cellar_cells", "Cells of the partition table by state.", {{"cell_state", state}},
            n);
  }
  const CoordinatorStats stats = coordinator->stats();
  m.Counter("cellar_master_transactions_begun_total", "Transactions begun.", {},
            static_cast<double>(stats.begun));
  m.Counter("cellar_master_commits_total", "Transactions committed.", {},
            static_cast<double>(stats.committed));
  m.Counter("cellar_master_aborts_total", "Transactions aborted.", {},
            static_cast<double>(stats.aborted));
  m.Counter("cellar_master_lock_failures_total", "Finishes where no storage could lock.", {},
            static_cast<double>(stats.lock_failures));
  m.Gauge("cellar_master_transactions_active", "Transactions begun, not finished.", {},
          stats.active);
  m.Gauge("cellar_master_clock_lag_seconds",
          "How far the wall clock is behind the last TID (clock went backwards).", {},
          absl::ToDoubleSeconds(coordinator->ClockLag()));
}

}  // namespace

// The domain objects of one term as primary. Members are destroyed in
// reverse order: the service first, the hub last.
struct MasterServer::Term {
  uint64_t epoch = 0;
  std::unique_ptr<EventHub> hub;
  std::unique_ptr<ClusterManager> cluster;
  std::unique_ptr<GrpcStorageCaller> caller;
  std::unique_ptr<TransactionCoordinator> coordinator;
  // Operator actions: replica checks and truncate.
  std::unique_ptr<ReplicaChecker> checker;
  std::unique_ptr<Truncator> truncator;
  // Master.ReportUnreachable's probes (uses the cluster and the caller).
  std::unique_ptr<UnreachableProber> prober;
  std::unique_ptr<PackCoordinator> pack;
  // Fed by the service's heartbeats; quarantines through the cluster.
  std::unique_ptr<CanaryAnalysis> canary;
  std::unique_ptr<MasterService> service;
  // Creates the initial feature flags (null without any); stopped first.
  std::unique_ptr<FlagSeeder> flag_seeder;
};

// What the metrics collector reads; it may outlive the server.
struct MasterServer::Shared {
  absl::Mutex mu;
  bool primary ABSL_GUARDED_BY(mu) = false;
  uint64_t epoch ABSL_GUARDED_BY(mu) = 0;
  // Set while primary; cleared before the term is destroyed.
  Term* term ABSL_GUARDED_BY(mu) = nullptr;
  // Set once at Start.
  std::shared_ptr<CallHolder> holder;
};

absl::StatusOr<std::unique_ptr<MasterServer>> MasterServer::Start(
    MasterServerOptions options, const common::Clock* clock,
    std::shared_ptr<prometheus::Registry> registry) {
  const uint64_t epoch = options.cluster.epoch;
  return Start(std::move(options), clock, std::move(registry),
               [epoch](const std::string& address) -> absl::StatusOr<std::unique_ptr<Election>> {
                 return std::make_unique<SingleMasterElection>(epoch, address);
               });
}

absl::StatusOr<std::unique_ptr<MasterServer>> MasterServer::Start(
    MasterServerOptions options, const common::Clock* clock,
    std::shared_ptr<prometheus::Registry> registry, const ElectionFactory& make_election) {
  auto server = std::unique_ptr<MasterServer>(new MasterServer);
  MasterServer* s = server.get();
  s->options_ = options;
  s->options_.cluster.version = options.version;
  s->options_.cluster.track = options.track;
  absl::StatusOr<common::ChannelSecurity> node_channel =
      common::MakeChannelSecurity(options.auth.node_bearer, options.auth.tls_client);
  if (!node_channel.ok()) return node_channel.status();
  s->node_channel_ = *std::move(node_channel);
  s->clock_ = clock;
  s->registry_ = registry;
  s->shared_ = std::make_shared<Shared>();
  s->holder_ = std::make_shared<CallHolder>(options.hold);
  s->shared_->holder = s->holder_;
  s->gate_ = std::make_unique<PrimaryGate>(
      [s] {
        Election* e = s->election_view_.load();
        return e != nullptr && e->IsPrimary();
      },
      [s] {
        Election* e = s->election_view_.load();
        return e != nullptr ? e->PrimaryAddress() : std::string();
      },
      s->holder_.get());

  common::GrpcServerOptions grpc_options;
  grpc_options.address = options.listen_address;
  grpc_options.services = {s->gate_.get()};
  grpc_options.metrics_registry = registry;
  grpc_options.metrics_labels = {{"version", options.version}, {"track", options.track}};
  grpc_options.authenticator = options.auth.authenticator;
  grpc_options.audit_log_file = options.auth.audit_log_file;
  grpc_options.insecure = options.auth.insecure;
  grpc_options.tls = options.auth.tls_server;
  absl::StatusOr<std::unique_ptr<common::GrpcServer>> grpc =
      common::GrpcServer::Start(std::move(grpc_options));
  if (!grpc.ok()) return grpc.status();
  s->grpc_ = *std::move(grpc);
  s->grpc_->SetServing(kMasterService, false);  // until this master is the primary
  const std::string& listen = options.listen_address;
  s->address_ = options.advertise_address.empty()
                    ? absl::StrCat(listen.substr(0, listen.rfind(':')), ":", s->grpc_->port())
                    : options.advertise_address;

  std::weak_ptr<Shared> weak = s->shared_;
  s->collector_ = std::make_shared<common::CallbackCollector>(
      common::MetricLabels{{"version", options.version}, {"track", options.track}},
      [weak, clock](common::MetricsBuilder& m) {
        m.Gauge("cellar_node_up", "1 while the process serves.", {{"role", "master"}}, 1);
        common::AddBuildInfo(m, common::kDefaultBuildId, "master");
        std::shared_ptr<Shared> shared = weak.lock();
        if (shared == nullptr) return;
        absl::MutexLock l(&shared->mu);
        const CallHolderStats held = shared->holder->stats();
        m.Gauge("cellar_master_held_calls",
                "Calls held now, waiting for the cluster to run or for a primary.", {},
                held.held_now);
        m.Counter("cellar_master_held_calls_total", "Calls held instead of refused.", {},
                  static_cast<double>(held.held));
        m.Counter("cellar_master_held_calls_expired_total",
                  "Held calls answered unserved (their deadline or --max_hold came first).", {},
                  static_cast<double>(held.expired));
        m.Counter("cellar_master_held_calls_refused_total",
                  "Calls refused at once because --max_held_calls were held already.", {},
                  static_cast<double>(held.over_bound));
        m.Gauge("cellar_master_primary", "1 while this master is the primary, 0 as a standby.",
                {}, shared->primary ? 1 : 0);
        // The cluster may have raised a provisional epoch (ClusterManager::epoch()).
        if (shared->term != nullptr) shared->epoch = shared->term->cluster->epoch();
        m.Gauge("cellar_master_epoch", "Epoch of this master's current or last term.", {},
                static_cast<double>(shared->epoch));
        if (shared->primary && shared->term != nullptr) {
          AddClusterMetrics(m, shared->term->cluster.get(), shared->term->coordinator.get());
          AddFeatureFlagMetrics(m, shared->term->cluster->FeatureFlags(), clock->Now());
          AddVersionMetrics(m, shared->term->cluster->ListVersions());
          AddCanaryMetrics(m, shared->term->canary->Analysis());
          AddUnreachableMetrics(m, shared->term->prober->stats());
          AddLockBatchMetrics(m, shared->term->caller->batch_stats());
        }
      });

  absl::StatusOr<std::unique_ptr<Election>> election = make_election(s->address_);
  if (!election.ok()) return election.status();
  s->election_ = *std::move(election);
  s->election_->SetLostCallback([s] { s->OnLost(); });
  s->election_view_.store(s->election_.get());

  // One attempt now: a single master, or the first of several, serves
  // when Start returns.
  absl::StatusOr<uint64_t> won = s->election_->Campaign(absl::ZeroDuration());
  if (won.ok()) {
    s->BecomePrimary(*won);
  } else {
    CELLAR_LOG(INFO) << "master " << s->address_ << " is a standby: " << won.status().message();
  }
  s->runner_ = std::thread([s] { s->Run(); });
  return server;
}

MasterServer::~MasterServer() {
  Shutdown();
  // The election's threads may call OnLost(): stop them first.
  election_view_.store(nullptr);
  election_.reset();
  {
    absl::MutexLock l(&shared_->mu);
    shared_->term = nullptr;
    shared_->primary = false;
  }
  absl::MutexLock l(&mu_);
  term_.reset();
}

void MasterServer::BecomePrimary(uint64_t epoch) {
  auto term = std::make_unique<Term>();
  term->epoch = epoch;
  ClusterOptions cluster_options = options_.cluster;
  cluster_options.epoch = epoch;
  cluster_options.epoch_is_durable = election_->EpochIsDurable();
  term->hub = std::make_unique<EventHub>();
  term->cluster = std::make_unique<ClusterManager>(cluster_options, clock_, term->hub.get());
  term->caller = std::make_unique<GrpcStorageCaller>(options_.storage_rpc_timeout,
                                                     node_channel_);
  term->cluster->set_storage_caller(term->caller.get());
  term->coordinator = std::make_unique<TransactionCoordinator>(
      clock_, term->cluster.get(), term->caller.get(), term->hub.get());
  TransactionCoordinator* coordinator = term->coordinator.get();
  term->cluster->set_on_client_gone(
      [coordinator](uint32_t node_id) { coordinator->AbortClientTransactions(node_id); });
  EventHub* hub = term->hub.get();
  auto first_verification = std::make_shared<std::atomic<bool>>(true);
  term->cluster->set_on_verify([coordinator, hub, first_verification](
                                   const std::vector<uint64_t>& in_doubt,
                                   const std::vector<StorageTarget>& storages,
                                   uint64_t last_tid) {
    coordinator->Recover(in_doubt, storages, last_tid);
    // Clients that registered while this new primary was RECOVERING got a
    // snapshot at tid 0 (nothing was known yet): move them to the recovered
    // last tid, as an invalidation of no object, so that they read every
    // commit acknowledged by an earlier primary. Only the term's first
    // verification: no transaction of this term exists yet, so no
    // invalidation can be pending below that tid.
    if (last_tid != 0 && first_verification->exchange(false)) {
      hub->PublishInvalidation(hub->last_tid(), {});
    }
  });
  term->cluster->set_on_in_doubt(
      [coordinator](const std::vector<uint64_t>& in_doubt, const StorageTarget& storage) {
        coordinator->ResolveInBackground(in_doubt, {storage});
      });
  term->service = std::make_unique<MasterService>(term->cluster.get(), term->coordinator.get(),
                                                  term->hub.get(), term->caller.get(),
                                                  options_.auth.authenticator.get());
  // This master accepts the cluster tokens as soon as its table changes.
  term->cluster->set_token_listener(
      [auth = options_.auth.authenticator](const cellar::v1::ClusterTokenTable& table) {
        if (auth != nullptr) auth->cluster_tokens()->Replace(table);
      });
  term->service->SetCallHolder(holder_.get());
  term->service->SetWatchLimits(options_.max_watch_streams,
                                options_.max_watch_streams_per_caller);
  ClusterManager* cluster = term->cluster.get();
  term->checker = std::make_unique<ReplicaChecker>([cluster] { return cluster->Info(); },
                                                   term->caller.get(), clock_);
  term->truncator = std::make_unique<Truncator>(cluster, coordinator, term->caller.get());
  term->service->SetCheckAndTruncate(term->checker.get(), term->truncator.get());
  term->prober = std::make_unique<UnreachableProber>(cluster, term->caller.get(), clock_,
                                                     options_.unreachable);
  term->service->SetUnreachableProber(term->prober.get());
  term->canary = std::make_unique<CanaryAnalysis>(
      clock_, options_.canary,
      [cluster](const VersionKey& key, const std::string& reason) {
        return cluster->QuarantineVersion(key, "canary-analysis", reason).status();
      },
      [cluster](const VersionKey& key) { return cluster->IsVersionQuarantined(key); });
  term->service->SetCanaryAnalysis(term->canary.get());
  ReplicaChecker* checker = term->checker.get();
  term->pack = std::make_unique<PackCoordinator>(
      [cluster] { return cluster->Info(); }, term->caller.get(), [checker]() -> absl::Status {
        absl::StatusOr<cellar::v1::GetCheckStatusResponse> check = checker->Status(0);
        if (check.ok() && check->running()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "replica check ", check->check_id(), " is running: pack once it is done"));
        }
        return absl::OkStatus();
      });
  PackCoordinator* pack = term->pack.get();
  checker->set_start_precondition([pack] { return pack->CheckIdle(); });
  term->service->SetPack(pack);
  if (!options_.initial_feature_flags.empty()) {
    term->flag_seeder = std::make_unique<FlagSeeder>(
        [cluster] { return cluster->Info().cluster_state() == cellar::v1::CLUSTER_RUNNING; },
        [cluster, initial = options_.initial_feature_flags] {
          return cluster->SeedFeatureFlags(initial);
        });
  }
  {
    absl::MutexLock l(&mu_);
    if (lost_ || shutting_down_ || term_ != nullptr) return;
    term_ = std::move(term);
    absl::MutexLock sl(&shared_->mu);
    shared_->primary = true;
    shared_->epoch = epoch;
    shared_->term = term_.get();
    gate_->Open(term_->service.get());
  }
  grpc_->SetServing(kMasterService, true);
  CELLAR_LOG(INFO) << "master " << address_ << " is the primary of cluster \""
                   << options_.cluster.cluster_name << "\" with epoch " << epoch;
}

void MasterServer::Run() {
  bool primary;
  {
    absl::MutexLock l(&mu_);
    primary = term_ != nullptr;
  }
  if (!primary) {
    absl::StatusOr<uint64_t> won = election_->Campaign(absl::InfiniteDuration());
    if (!won.ok()) return;  // shutting down
    BecomePrimary(*won);
  }
  absl::Status why;
  {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(
        +[](MasterServer* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
          return s->lost_ || s->shutting_down_;
        },
        this));
    if (!lost_) return;
    why = lost_status_;
  }
  grpc_->SetServing(kMasterService, false);
  if (options_.on_lost) options_.on_lost(why);
}

void MasterServer::OnLost() {
  // Stop acting first: refuse new calls and cancel those in progress.
  // Storage calls already under way carry this term's epoch: storages that
  // registered with a newer primary refuse them (STALE_EPOCH).
  gate_->Close("lost the primary lease");
  absl::MutexLock l(&mu_);
  if (lost_ || shutting_down_) return;
  lost_ = true;
  lost_status_ = absl::FailedPreconditionError(absl::StrCat(
      "master ", address_, " lost its term (epoch ", election_->epoch(),
      "): the lease was not renewed in time or was taken over"));
  CELLAR_LOG(ERROR) << lost_status_.message();
  absl::MutexLock sl(&shared_->mu);
  shared_->primary = false;
}

bool MasterServer::is_primary() const {
  {
    absl::MutexLock l(&mu_);
    if (term_ == nullptr || lost_ || shutting_down_) return false;
  }
  return election_->IsPrimary();
}

uint64_t MasterServer::epoch() const {
  absl::MutexLock l(&mu_);
  // The cluster's: a provisional epoch may have been raised above it.
  return term_ != nullptr ? term_->cluster->epoch() : 0;
}

absl::Status MasterServer::AwaitPrimary(absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return term_ != nullptr || lost_ || shutting_down_;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&done), timeout)) {
    return absl::DeadlineExceededError(absl::StrCat(
        "master ", address_, " not primary after ", absl::FormatDuration(timeout)));
  }
  if (lost_) return lost_status_;
  if (shutting_down_) return absl::FailedPreconditionError("master shut down");
  return absl::OkStatus();
}

absl::Status MasterServer::lost_status() const {
  absl::MutexLock l(&mu_);
  return lost_status_;
}

ClusterManager* MasterServer::cluster() {
  absl::MutexLock l(&mu_);
  return term_ != nullptr ? term_->cluster.get() : nullptr;
}

TransactionCoordinator* MasterServer::coordinator() {
  absl::MutexLock l(&mu_);
  return term_ != nullptr ? term_->coordinator.get() : nullptr;
}

void MasterServer::Shutdown() {
  {
    absl::MutexLock l(&mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
    absl::MutexLock sl(&shared_->mu);
    shared_->primary = false;
  }
  // Stop acting, then hand the lease over. Streams closed by the shutdown
  // must not mark the storages' cells OUT_OF_DATE.
  if (ClusterManager* manager = cluster(); manager != nullptr) manager->BeginShutdown();
  gate_->Close("shutting down");
  if (grpc_) grpc_->Shutdown(absl::Milliseconds(500));
  if (election_) election_->Resign();
  if (runner_.joinable()) runner_.join();
}

}  // namespace cellar::master
