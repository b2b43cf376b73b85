#ifndef CELLAR_SERVICES_MASTER_MASTER_SERVER_H_
#define CELLAR_SERVICES_MASTER_MASTER_SERVER_H_

// Lifecycle handle of a master: the gRPC harness, the election, and the
// domain objects of each term as primary, wired together.
//
//   // One master (SQLite, `cellar local`): primary at once.
//   CELLAR_ASSIGN_OR_RETURN(auto master, MasterServer::Start(options, clock, registry));
//   // Several masters: primary or standby, decided by the election.
//   CELLAR_ASSIGN_OR_RETURN(auto master,
//       MasterServer::Start(options, clock, registry, make_election));
//   ... master->port() ...
//   master->Shutdown();
//
// A master serves gRPC at once. As a STANDBY, grpc.health "cellar.v1.Master"
// is NOT_SERVING and every cellar.v1.Master rpc answers UNAVAILABLE "not the
// primary (primary is <address>)" (PrimaryGate); it campaigns in the
// background. On winning, it builds the domain objects (ClusterManager,
// TransactionCoordinator, ...) with the term's epoch (which the storages
// learn at registration and see on every Lock/Unlock) and serves; the
// cluster goes through RECOVERING as storages register. On losing the term
// (lease not renewed in time) it stops at once: calls in progress are
// cancelled (Watch streams end, so storages and clients re-register with
// the next master), new calls are refused, and `options.on_lost` runs;
// storage calls already under way carry the old epoch, which storages that
// registered with the new primary refuse (STALE_EPOCH). It never becomes primary again: main exits
// the process, which restarts as a standby (docs/failover.md).
//
// Thread-safe.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/registry.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/common/clock.h"
#include "services/common/authenticator.h"
#include "services/common/channel.h"
#include "services/common/grpc_server.h"
#include "services/master/call_holder.h"
#include "services/master/cluster_manager.h"
#include "services/master/election.h"
#include "services/master/master_service.h"
#include "services/master/primary_gate.h"
#include "services/master/transaction_coordinator.h"
#include "services/master/canary_analysis.h"
#include "services/master/unreachable_prober.h"

namespace cellar::master {

struct MasterServerOptions {
  // gRPC listen address; port 0 picks one. Default "127.0.0.1:0".
  std::string listen_address = "127.0.0.1:0";
  // What storages and clients dial, as told to the election (stored in
  // the lease so standbys can name the primary). Default "": the listen
  // host with the bound port.
  std::string advertise_address;
  // Cluster identity and new-cluster shape (see ClusterOptions). The
  // epoch is the election's; `cluster.epoch` is only used by the
  // single-master Start (no election given).
  ClusterOptions cluster;
  // Feature flags created when absent once the cluster runs (FlagSeeder;
  // ParseInitialFeatureFlags). Default: none.
  std::vector<cellar::v1::FeatureFlag> initial_feature_flags;
  // Deadline of master -> storage calls (lock, unlock, abort). Default 10 s.
  absl::Duration storage_rpc_timeout = absl::Seconds(10);
  // Master.ReportUnreachable: how often and how long the master probes a
  // storage reported unreachable (unreachable_prober.h; defaults there:
  // one probe per storage per 1 s, 2 s deadline).
  UnreachableProberOptions unreachable;
  // Bounds on concurrent Watch streams, in all and per caller
  // (MasterService::SetWatchLimits).
  size_t max_watch_streams = MasterService::kDefaultMaxWatchStreams;
  size_t max_watch_streams_per_caller = MasterService::kDefaultMaxWatchStreamsPerCaller;
  // Delayed acceptance: how long and how many calls are held while the
  // cluster is not RUNNING yet or no master is primary (call_holder.h;
  // defaults there: 10 s, 128 calls).
  CallHolderOptions hold;
  // The canary analysis's thresholds (canary_analysis.h; defaults there).
  CanaryThresholds canary;
  // Software version and track, as metric labels.
  std::string version = "0.1.0";
  std::string track = "stable";
  // Called once, on an internal thread, after this master lost its term
  // and stopped serving (not after Shutdown()). Default none. main()
  // exits the process from here (docs/failover.md).
  std::function<void(const absl::Status& why)> on_lost;
  // Authentication of the gRPC port, and the node bearer sent to storages
  // (docs/security.md). Default: off (loopback listeners only).
  common::AuthSetup auth;
};

class MasterServer {
 public:
  // Makes the election once the advertised address is known (the port
  // may be 0 until the server listens).
  using ElectionFactory = std::function<absl::StatusOr<std::unique_ptr<Election>>(
      const std::string& advertised_address)>;

  // A single master: always primary, provisional epoch
  // options.cluster.epoch (raised above the epochs storages report);
  // serving as primary when this returns. `clock` must outlive the
  // server. `registry` (may be null) receives the gRPC server metrics.
  static absl::StatusOr<std::unique_ptr<MasterServer>> Start(
      MasterServerOptions options, const common::Clock* clock,
      std::shared_ptr<prometheus::Registry> registry);

  // A master that may be one of several: serves at once, makes one
  // election attempt before returning (primary if it won), otherwise
  // stays a standby and campaigns in the background. The factory's error
  // is returned as is.
  static absl::StatusOr<std::unique_ptr<MasterServer>> Start(
      MasterServerOptions options, const common::Clock* clock,
      std::shared_ptr<prometheus::Registry> registry, const ElectionFactory& make_election);

  ~MasterServer();

  int port() const { return grpc_->port(); }
  // The advertised address.
  std::string address() const { return address_; }

  // True while this master is the primary (its term is live).
  bool is_primary() const;
  // Epoch of the current term; 0 before the first win.
  uint64_t epoch() const;
  // Waits until this master is the primary. DEADLINE_EXCEEDED after
  // `timeout`; FAILED_PRECONDITION once it lost its term or shut down.
  absl::Status AwaitPrimary(absl::Duration timeout);
  // OK unless the term was lost: then why (FAILED_PRECONDITION).
  absl::Status lost_status() const;

  // Domain metrics (primacy, epoch; cluster state, nodes, commits, clock
  // lag while primary), computed at scrape time: register on a
  // MetricsEndpoint. Safe to keep after the server is gone.
  std::shared_ptr<prometheus::Collectable> collector() const { return collector_; }

  // The current term's domain objects; null while a standby.
  ClusterManager* cluster();
  TransactionCoordinator* coordinator();
  // The election (valid until destruction).
  Election& election() { return *election_; }

  // Stops serving (calls in progress are cancelled; open Watch streams
  // end; clients see UNAVAILABLE), then resigns, handing the lease to a
  // standby at once. Idempotent.
  void Shutdown();

 private:
  struct Term;
  struct Shared;

  MasterServer() = default;

  // Builds the domain objects for a term won with `epoch` and opens the
  // gate. No-op after a loss or Shutdown.
  void BecomePrimary(uint64_t epoch);
  // Background: campaign (if still a standby), then wait for a loss.
  void Run();
  // The election's lost callback (election thread): stop acting now.
  void OnLost();

  MasterServerOptions options_;
  // How the master dials storages: the node bearer, TLS (options_.auth).
  common::ChannelSecurity node_channel_;
  const common::Clock* clock_ = nullptr;
  std::shared_ptr<prometheus::Registry> registry_;
  std::string address_;
  // Shared with the metrics collector, which may outlive the server.
  std::shared_ptr<CallHolder> holder_;
  std::unique_ptr<PrimaryGate> gate_;
  std::unique_ptr<common::GrpcServer> grpc_;
  std::shared_ptr<Shared> shared_;
  std::shared_ptr<prometheus::Collectable> collector_;

  mutable absl::Mutex mu_;
  std::unique_ptr<Term> term_ ABSL_GUARDED_BY(mu_);
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status lost_status_ ABSL_GUARDED_BY(mu_);

  // Declared last: destroyed first (its threads call OnLost()).
  std::unique_ptr<Election> election_;
  // election_.get() once made, for the gate's refusals (gRPC threads run
  // before the election exists).
  std::atomic<Election*> election_view_{nullptr};
  std::thread runner_;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_MASTER_SERVER_H_
