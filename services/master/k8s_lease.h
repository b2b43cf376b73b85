#ifndef CELLAR_SERVICES_MASTER_K8S_LEASE_H_
#define CELLAR_SERVICES_MASTER_K8S_LEASE_H_

// KubernetesLeaseElection: master election by a Kubernetes Lease
// (coordination.k8s.io/v1) named "<cluster>-master" in the pods'
// namespace, the way client-go's leader election works
// (docs/failover.md, "Kubernetes Lease"; record format in
// k8s_lease_record.h).
//
// * Acquire: GET the Lease. Absent (404): POST a new one holding it, with
//   epoch = the current time in ms; 409 AlreadyExists = another master won
//   the race. Present: take it over with a PUT carrying the
//   resourceVersion read (409 Conflict = another writer won), holder = me,
//   epoch = previous + 1, leaseTransitions + 1, in that same PUT. Allowed
//   only when the Lease is free (holder "", given back) or when this
//   master has observed NO change of it (resourceVersion) for `lease` on
//   its own monotonic clock (and for the Lease's leaseDurationSeconds if
//   longer). acquireTime/renewTime are never compared with a local clock:
//   no cross-host clock comparison.
// * Renew: the primary GETs the Lease every renew_interval and PUTs it
//   back with a new renewTime (resourceVersion as read). A Lease found with
//   another holder or epoch ends the term at once.
// * The primary counts its term from the START of its last successful
//   write (POST/PUT of acquire, or the GET of a renewal whose PUT
//   succeeded): it stops being primary (IsPrimary() false, then the lost
//   callback, from a watchdog thread that no HTTP call can block) when
//   `renew_deadline` (< lease) has passed since. A standby counts from when
//   it *saw* that write, which is later, and waits a whole `lease`; the
//   difference (lease - renew_deadline) covers clock-rate drift between
//   hosts and the time to stop acting.
// * Resign() gives the Lease back (holder "", renewTime now,
//   leaseDurationSeconds 1, like client-go's ReleaseOnCancel): a standby
//   takes over at its next attempt.
// * Every HTTP call is bounded by http_timeout (connect included). The
//   bearer token is re-read from token_file on every call (projected
//   service-account tokens rotate).
//
// In-cluster defaults (every one overridable): the API server from
// $KUBERNETES_SERVICE_HOST/$KUBERNETES_SERVICE_PORT, token, CA and
// namespace from /var/run/secrets/kubernetes.io/serviceaccount/.
//
// The service account needs get, create and update on
// leases.coordination.k8s.io in the namespace (a Role in docs/failover.md).
//
// Thread-safe. Owns two threads (HTTP worker and deadline watchdog): the
// state machine is LeaseElection's (lease_election.h); this class holds
// the HTTP/JSON calls and the standby's expiry judgement.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/master/k8s_lease_record.h"
#include "services/master/lease_election.h"

namespace cellar::master {

inline constexpr char kServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";

struct KubernetesLeaseOptions {
  // Base URL of the API server ("https://10.0.0.1:443"). Default "": in
  // cluster, https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT.
  std::string api_server;
  // Namespace of the Lease. Default "": read from namespace_file.
  std::string ns;
  // Default: the pod's service-account namespace file.
  std::string namespace_file = std::string(kServiceAccountDir) + "/namespace";
  // Bearer token, re-read on every call. Default: the pod's
  // service-account token. "": no Authorization header.
  std::string token_file = std::string(kServiceAccountDir) + "/token";
  // CA bundle that signed the API server's certificate. Default: the
  // pod's service-account ca.crt. "": the system's CAs.
  std::string ca_file = std::string(kServiceAccountDir) + "/ca.crt";
  // The Lease is "<cluster>-master". Default "cellar".
  std::string cluster = "cellar";
  // This master's address as storages and clients dial it, stored in the
  // Lease (annotation cellar.io/address) so standbys can name the
  // primary. Default "".
  std::string address;
  // Unique identity of this incarnation (spec.holderIdentity). Default "":
  // "<address>/<pid>/<16 random hex digits>".
  std::string holder;
  // Lease length: a standby takes over after observing no change for this
  // long. Default 10 s.
  absl::Duration lease = absl::Seconds(10);
  // The primary steps down when it has not renewed successfully for this
  // long (counted from the start of its last successful renewal). Must be
  // shorter than lease. Default 0 = lease * 2 / 3 (client-go: 10 s of 15).
  absl::Duration renew_deadline = absl::ZeroDuration();
  // How often the primary renews. Default 0 = lease / 5.
  absl::Duration renew_interval = absl::ZeroDuration();
  // How often a standby looks at the Lease. Default 0 = lease / 5.
  absl::Duration retry_interval = absl::ZeroDuration();
  // Bound of every HTTP call (connect included). Default 0 =
  // renew_deadline / 2 (a renewal is two calls).
  absl::Duration http_timeout = absl::ZeroDuration();
};

class KubernetesLeaseElection final : public LeaseElection {
 public:
  // Fills in the defaults (in-cluster API server and namespace).
  // INVALID_ARGUMENT for bad options (no API server outside a pod, no
  // namespace, empty cluster, lease not positive, renew_deadline >= lease,
  // renew_interval >= renew_deadline, ...). Does not call the API server:
  // it may come up later (attempts retry).
  static absl::StatusOr<std::unique_ptr<KubernetesLeaseElection>> Create(
      KubernetesLeaseOptions options);

  // Resign(), then stops the threads.
  ~KubernetesLeaseElection() override;

  // Election, Abandon() and last_error() (of an HTTP call): see
  // LeaseElection.

  // Effective options (defaults filled in) and this incarnation's holder.
  const KubernetesLeaseOptions& options() const { return options_; }
  const std::string& holder() const { return options_.holder; }
  // "<cluster>-master".
  std::string lease_name() const { return options_.cluster + "-master"; }

 private:
  explicit KubernetesLeaseElection(KubernetesLeaseOptions options);

  const KubernetesLeaseOptions options_;
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_K8S_LEASE_H_
