// cellar-master: a master of a cellar cluster (primary or standby).
// Flags -> MasterServerOptions (+ election) -> Start -> wait for SIGINT/SIGTERM
// or for the loss of the primary term.
//
// Exit codes: 0 after SIGINT/SIGTERM, 1 start failure, 2 bad flags,
// 3 this master lost its term as primary (it stopped serving before its
// lease could expire; restart it and it comes back as a standby).

#include <algorithm>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/auth_flags.h"
#include "services/common/clock.h"
#include "services/common/logging.h"
#include "services/common/metrics_endpoint.h"
#include "services/common/signals.h"
#include "services/master/election.h"
#include "services/master/flag_registry.h"
#include "services/master/canary_analysis.h"
#include "services/master/k8s_lease.h"
#include "services/master/master_server.h"
#include "services/master/pg_lease.h"
#include "services/master/version_registry.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7100", "gRPC listen address (host:port)");
ABSL_FLAG(std::string, advertise, "",
          "Address storages and clients dial for this master (stored in the election lease "
          "so standbys can name the primary); empty: the listen address, with the host name "
          "for a wildcard host");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9100",
          "Prometheus /metrics address; empty disables it");
ABSL_FLAG(std::string, cluster_name, "cellar", "Cluster name every node must present");
ABSL_FLAG(uint32_t, partitions, 12, "Partitions of a NEW cluster (kept from storage after)");
ABSL_FLAG(uint32_t, replicas, 1, "Replicas of a NEW cluster (copies = replicas + 1)");
ABSL_FLAG(uint32_t, autostart, 0,
          "Start a new cluster once this many storages joined (0: wait for an operator's "
          "StartCluster)");
ABSL_FLAG(std::string, track, "stable", "Deployment track: stable, canary or shadow");
ABSL_FLAG(std::string, initial_feature_flags, "",
          "Feature flags created when absent once the cluster runs (never overwriting an "
          "operator's change), as FeatureFlagTable JSON: "
          "{\"flags\":[{\"name\":\"a.b\",\"boolValue\":true,\"owner\":\"ops\","
          "\"description\":\"...\"}]} (docs/rollouts.md)");
ABSL_FLAG(absl::Duration, heartbeat_timeout, absl::Seconds(10),
          "A storage silent (no Heartbeat) for longer is treated as gone: DOWN, its cells "
          "OUT_OF_DATE (storages send one every --heartbeat_interval, 2 s); 0 disables");
ABSL_FLAG(uint32_t, version_quarantine_restarts, 3,
          "Quarantine a (version, track) once one of its nodes registered again this many "
          "times within --version_quarantine_window (a crash loop); 0 = never "
          "(docs/rollouts.md)");
ABSL_FLAG(uint32_t, version_quarantine_downs, 5,
          "Quarantine a (version, track) once this many of its storages were taken down "
          "(missed heartbeats, failed probes or locks) within --version_quarantine_window; "
          "0 = never");
ABSL_FLAG(absl::Duration, version_quarantine_window, absl::Minutes(10),
          "Sliding window of the version quarantine signals; must be positive");
ABSL_FLAG(absl::Duration, canary_analysis_interval, absl::Minutes(1),
          "Canary analysis: each canary version is compared with stable over intervals this "
          "long; must be positive (docs/rollouts.md, \"Canary analysis\")");
ABSL_FLAG(double, canary_max_error_ratio, 0.01,
          "Canary analysis: highest (load + store errors) / calls of an interval that passes "
          "(0..1)");
ABSL_FLAG(double, canary_max_latency_ratio, 2,
          "Canary analysis: highest canary p99 load or store latency / stable's that passes "
          "(>= 1; a p99 of at most 5 ms always passes)");
ABSL_FLAG(uint64_t, canary_min_requests, 100,
          "Canary analysis: fewer loads + stores of a canary version in an interval is no "
          "data (neither passes nor fails); >= 1");
ABSL_FLAG(uint32_t, canary_promote_after, 5,
          "Canary analysis: passing intervals in a row before the verdict is promote; >= 1");
ABSL_FLAG(absl::Duration, unreachable_probe_interval, absl::Seconds(1),
          "A storage reported unreachable by a client (Master.ReportUnreachable) is probed "
          "by the master at most once per this interval (reports in between are coalesced); "
          "0 = only one probe in flight at a time");
ABSL_FLAG(absl::Duration, unreachable_probe_timeout, absl::Seconds(2),
          "Deadline of the master's probe of a storage reported unreachable: one that does "
          "not answer within it is treated as gone at once, as after --heartbeat_timeout");
ABSL_FLAG(uint32_t, max_watch_streams, 1024,
          "Concurrent Watch streams (one per node session, each holding a server thread); "
          "more are refused with RESOURCE_EXHAUSTED");
ABSL_FLAG(uint32_t, max_watch_streams_per_caller, 256,
          "Concurrent Watch streams per token (or for the cluster secret)");
ABSL_FLAG(absl::Duration, max_hold, absl::Seconds(10),
          "Longest a call is held, instead of refused, while the cluster is RECOVERING or "
          "VERIFYING (Begin, AllocateOids) or while no master is primary (every rpc); each "
          "hold also ends at the caller's deadline; 0 refuses at once");
ABSL_FLAG(uint32_t, max_held_calls, 128,
          "Calls held at once (each holds a server thread); more are refused at once");
ABSL_FLAG(std::string, election_pg, "",
          "libpq connection string of a PostgreSQL database shared by every master of the "
          "cluster: masters elect a primary with a lease row there (table "
          "cellar_master_lease). Empty (and no --election_k8s): a single master, always primary");
ABSL_FLAG(std::string, election_k8s, "",
          "Elect the primary with a Kubernetes Lease (coordination.k8s.io/v1) named "
          "<cluster_name>-master: the namespace of the Lease, or \"in-cluster\" for the pod's "
          "own namespace (service-account namespace file). The service account needs get, "
          "create and update on leases. Empty: no Kubernetes election. Not with --election_pg");
ABSL_FLAG(std::string, election_k8s_api, "",
          "Kubernetes API server URL for --election_k8s; empty: in cluster, "
          "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT");
ABSL_FLAG(std::string, election_k8s_token_file, "",
          "Bearer token file for --election_k8s (re-read on every call); empty: the pod's "
          "service-account token");
ABSL_FLAG(std::string, election_k8s_ca_file, "",
          "CA bundle of the API server for --election_k8s; empty: the pod's service-account "
          "ca.crt");
ABSL_FLAG(absl::Duration, election_lease, absl::Seconds(10),
          "Primary lease length (with --election_pg or --election_k8s). A dead primary is "
          "replaced at most lease + lease/3 (PostgreSQL) or lease + 2 * lease/5 "
          "(Kubernetes) after its last renewal");
ABSL_FLAG(absl::Duration, election_step_down_margin, absl::ZeroDuration(),
          "The primary stops serving this long before its lease may expire (covers clock-rate "
          "drift and stopping time); 0: lease/5 with --election_pg, lease/3 with --election_k8s "
          "(client-go's renew deadline of 2/3 of the lease)");

namespace {

// host:port with a wildcard host replaced by this machine's host name.
std::string AdvertisedAddress(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  const std::string host = listen.substr(0, colon);
  if (host != "0.0.0.0" && host != "[::]" && host != "::" && !host.empty()) return listen;
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return listen;
  return absl::StrCat(name, listen.substr(colon));
}

// Checks the options of a lease election now (with its defaults filled
// in, e.g. the in-cluster namespace read once), so that bad flags exit 2
// before anything starts; returns the factory of one election per term,
// each a new incarnation (holder) with the master's address.
template <typename LeaseElection, typename LeaseOptions>
absl::StatusOr<cellar::master::MasterServer::ElectionFactory> LeaseElectionFactory(
    LeaseOptions lease) {
  auto check = LeaseElection::Create(lease);
  if (!check.ok()) return check.status();
  lease = (*check)->options();
  lease.holder.clear();
  check->reset();
  return [lease](const std::string& address) mutable
             -> absl::StatusOr<std::unique_ptr<cellar::master::Election>> {
    lease.address = address;
    auto election = LeaseElection::Create(lease);
    if (!election.ok()) return election.status();
    return std::unique_ptr<cellar::master::Election>(*std::move(election));
  };
}

}  // namespace

int main(int argc, char** argv) {
  cellar::common::BlockTerminationSignals();
  absl::SetProgramUsageMessage(
      "cellar-master: a master of a cellar cluster (primary, or standby with --election_pg or "
      "--election_k8s)");
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil checks every Mutex operation for lock-order cycles:
  // 12 % of a commit's instructions (docs/performance.md). Tests keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  cellar::master::MasterServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.advertise_address = absl::GetFlag(FLAGS_advertise).empty()
                                  ? AdvertisedAddress(options.listen_address)
                                  : absl::GetFlag(FLAGS_advertise);
  options.cluster.cluster_name = absl::GetFlag(FLAGS_cluster_name);
  options.cluster.num_partitions = absl::GetFlag(FLAGS_partitions);
  options.cluster.num_replicas = absl::GetFlag(FLAGS_replicas);
  options.cluster.autostart = absl::GetFlag(FLAGS_autostart);
  options.cluster.heartbeat_timeout = absl::GetFlag(FLAGS_heartbeat_timeout);
  options.cluster.quarantine.restarts = absl::GetFlag(FLAGS_version_quarantine_restarts);
  options.cluster.quarantine.downs = absl::GetFlag(FLAGS_version_quarantine_downs);
  options.cluster.quarantine.window = absl::GetFlag(FLAGS_version_quarantine_window);
  if (absl::Status s = cellar::master::VersionRegistry::ValidateThresholds(
          options.cluster.quarantine);
      !s.ok()) {
    std::cerr << "cellar-master: --version_quarantine_window: " << s.message() << "\n";
    return 2;
  }
  options.canary.interval = absl::GetFlag(FLAGS_canary_analysis_interval);
  options.canary.max_error_ratio = absl::GetFlag(FLAGS_canary_max_error_ratio);
  options.canary.max_latency_ratio = absl::GetFlag(FLAGS_canary_max_latency_ratio);
  options.canary.min_requests = absl::GetFlag(FLAGS_canary_min_requests);
  options.canary.promote_after = absl::GetFlag(FLAGS_canary_promote_after);
  if (absl::Status s = cellar::master::CanaryAnalysis::ValidateThresholds(options.canary);
      !s.ok()) {
    std::cerr << "cellar-master: --canary_*: " << s.message() << "\n";
    return 2;
  }
  options.unreachable.interval = absl::GetFlag(FLAGS_unreachable_probe_interval);
  options.unreachable.timeout = absl::GetFlag(FLAGS_unreachable_probe_timeout);
  if (options.unreachable.interval < absl::ZeroDuration() ||
      options.unreachable.timeout <= absl::ZeroDuration()) {
    std::cerr << "cellar-master: --unreachable_probe_interval must not be negative and "
                 "--unreachable_probe_timeout must be positive\n";
    return 2;
  }
  // Single master: a provisional epoch. The clock may be behind after a
  // restart, so the cluster raises it above the highest epoch any storage
  // persisted (ClusterOptions::epoch_is_durable) before the first fenced
  // call. With an election the lease's (durable) epoch is used instead.
  options.cluster.epoch = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  options.track = absl::GetFlag(FLAGS_track);
  options.max_watch_streams = absl::GetFlag(FLAGS_max_watch_streams);
  options.max_watch_streams_per_caller = absl::GetFlag(FLAGS_max_watch_streams_per_caller);
  options.hold.max_hold = absl::GetFlag(FLAGS_max_hold);
  options.hold.max_held = static_cast<int>(
      std::min<uint32_t>(absl::GetFlag(FLAGS_max_held_calls), 1u << 20));
  if (options.hold.max_hold < absl::ZeroDuration()) {
    std::cerr << "cellar-master: --max_hold must not be negative\n";
    return 2;
  }
  options.auth = cellar::common::AuthSetupFromFlagsOrExit("cellar-master");
  // Losing the term: wake main (SIGTERM to the process), which exits 3.
  options.on_lost = [](const absl::Status&) { ::kill(::getpid(), SIGTERM); };
  if (options.max_watch_streams == 0 || options.max_watch_streams_per_caller == 0) {
    std::cerr << "cellar-master: --max_watch_streams and --max_watch_streams_per_caller "
                 "must be at least 1 (0 would refuse every node)\n";
    return 2;
  }
  {
    auto initial = cellar::master::ParseInitialFeatureFlags(
        absl::GetFlag(FLAGS_initial_feature_flags));
    if (!initial.ok()) {
      std::cerr << "cellar-master: --initial_feature_flags: " << initial.status().message()
                << "\n";
      return 2;
    }
    options.initial_feature_flags = *std::move(initial);
  }
  if (options.cluster.num_partitions == 0) {
    std::cerr << "cellar-master: --partitions must be at least 1\n";
    return 2;
  }

  cellar::master::MasterServer::ElectionFactory make_election;
  const std::string election_pg = absl::GetFlag(FLAGS_election_pg);
  const std::string election_k8s = absl::GetFlag(FLAGS_election_k8s);
  if (!election_pg.empty() && !election_k8s.empty()) {
    std::cerr << "cellar-master: --election_pg and --election_k8s are two different elections; "
                 "give one (every master of a cluster must use the same)\n";
    return 2;
  }
  if (election_k8s.empty() && (!absl::GetFlag(FLAGS_election_k8s_api).empty() ||
                               !absl::GetFlag(FLAGS_election_k8s_token_file).empty() ||
                               !absl::GetFlag(FLAGS_election_k8s_ca_file).empty())) {
    std::cerr << "cellar-master: --election_k8s_api, --election_k8s_token_file and "
                 "--election_k8s_ca_file need --election_k8s=<namespace>|in-cluster\n";
    return 2;
  }
  if (!election_k8s.empty()) {
    cellar::master::KubernetesLeaseOptions lease;
    if (election_k8s != "in-cluster") lease.ns = election_k8s;
    lease.api_server = absl::GetFlag(FLAGS_election_k8s_api);
    if (!absl::GetFlag(FLAGS_election_k8s_token_file).empty()) {
      lease.token_file = absl::GetFlag(FLAGS_election_k8s_token_file);
    }
    if (!absl::GetFlag(FLAGS_election_k8s_ca_file).empty()) {
      lease.ca_file = absl::GetFlag(FLAGS_election_k8s_ca_file);
    }
    lease.cluster = options.cluster.cluster_name;
    lease.lease = absl::GetFlag(FLAGS_election_lease);
    if (absl::GetFlag(FLAGS_election_step_down_margin) != absl::ZeroDuration()) {
      lease.renew_deadline = lease.lease - absl::GetFlag(FLAGS_election_step_down_margin);
    }
    lease.address = options.advertise_address;
    auto factory = LeaseElectionFactory<cellar::master::KubernetesLeaseElection>(lease);
    if (!factory.ok()) {
      std::cerr << "cellar-master: " << factory.status().message() << "\n";
      return 2;
    }
    make_election = *std::move(factory);
  } else if (election_pg.empty()) {
    const uint64_t epoch = options.cluster.epoch;
    make_election = [epoch](const std::string& address)
        -> absl::StatusOr<std::unique_ptr<cellar::master::Election>> {
      return std::make_unique<cellar::master::SingleMasterElection>(epoch, address);
    };
  } else {
    cellar::master::PostgresLeaseOptions lease;
    lease.conninfo = election_pg;
    lease.cluster = options.cluster.cluster_name;
    lease.lease = absl::GetFlag(FLAGS_election_lease);
    lease.step_down_margin = absl::GetFlag(FLAGS_election_step_down_margin);
    lease.address = options.advertise_address;
    auto factory = LeaseElectionFactory<cellar::master::PostgresLeaseElection>(lease);
    if (!factory.ok()) {
      std::cerr << "cellar-master: " << factory.status().message() << "\n";
      return 2;
    }
    make_election = *std::move(factory);
  }

  auto registry = std::make_shared<prometheus::Registry>();
  auto master = cellar::master::MasterServer::Start(
      options, cellar::common::RealClock::Get(), registry, make_election);
  if (!master.ok()) {
    std::cerr << "cellar-master: " << master.status() << "\n";
    return 1;
  }
  std::unique_ptr<cellar::common::MetricsEndpoint> metrics;
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    auto endpoint =
        cellar::common::MetricsEndpoint::Start(
            cellar::common::MetricsOptionsFor(absl::GetFlag(FLAGS_metrics_listen), options.auth),
            registry);
    if (!endpoint.ok()) {
      std::cerr << "cellar-master: " << endpoint.status() << "\n";
      return 1;
    }
    metrics = *std::move(endpoint);
    metrics->Add((*master)->collector());
  }
  std::cout << "cellar-master: "
            << ((*master)->is_primary() ? "primary" : "standby (campaigning)")
            << " of cluster \"" << options.cluster.cluster_name << "\" on "
            << (*master)->address();
  if (!election_pg.empty()) {
    std::cout << ", elected by a " << absl::FormatDuration(absl::GetFlag(FLAGS_election_lease))
              << " lease in PostgreSQL";
  }
  if (!election_k8s.empty()) {
    std::cout << ", elected by a " << absl::FormatDuration(absl::GetFlag(FLAGS_election_lease))
              << " Kubernetes Lease";
  }
  if (metrics) std::cout << " (metrics on port " << metrics->port() << ")";
  std::cout << std::endl;

  const int sig = cellar::common::WaitForTerminationSignal();
  const absl::Status lost = (*master)->lost_status();
  if (!lost.ok()) {
    // Not serving any more; exit without waiting for calls in progress.
    // The supervisor (Kubernetes) restarts the process as a standby.
    std::cerr << "cellar-master: " << lost.message() << "; exiting (3) to restart as a standby"
              << std::endl;
    std::_Exit(3);
  }
  CELLAR_LOG(INFO) << "signal " << sig << ": shutting down";
  (*master)->Shutdown();
  cellar::common::ExitAfterShutdown(0);
}
