#ifndef CELLAR_SERVICES_MASTER_K8S_LEASE_RECORD_H_
#define CELLAR_SERVICES_MASTER_K8S_LEASE_RECORD_H_

// The Kubernetes Lease object (coordination.k8s.io/v1) as the master
// election reads and writes it (k8s_lease.h): pure JSON <-> record logic,
// no I/O, so that it is unit-tested without an API server.
//
// What cellar keeps in a Lease:
//   metadata.resourceVersion             optimistic concurrency of every write
//   metadata.annotations["cellar.io/epoch"]    the term's epoch (decimal)
//   metadata.annotations["cellar.io/address"]  the holder's address
//   spec.holderIdentity        the incarnation holding the lease ("" = free)
//   spec.leaseDurationSeconds  the lease, in whole seconds (rounded up)
//   spec.acquireTime / spec.renewTime   MicroTime, informative only: no
//                              master compares them with its own clock
//   spec.leaseTransitions      +1 whenever the holder changes
// Writes start from the object as read, so labels, other annotations and
// fields cellar does not know survive.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace cellar::master {

inline constexpr char kEpochAnnotation[] = "cellar.io/epoch";
inline constexpr char kAddressAnnotation[] = "cellar.io/address";

// One Lease object as read from the API server. Copyable value.
struct LeaseRecord {
  std::string resource_version;
  std::string holder;  // "" when released or never held
  int64_t lease_duration_seconds = 0;
  int64_t transitions = 0;
  std::string acquire_time;  // as stored (RFC 3339)
  std::string renew_time;    // as stored (RFC 3339)
  // 0 when the annotation is absent (a Lease cellar did not create).
  uint64_t epoch = 0;
  std::string address;
  // The whole object as read (JSON), the base of the next write.
  std::string raw;
};

// Parses a Lease object. INTERNAL for JSON that is not a Lease, or a
// cellar.io/epoch annotation that is not a positive decimal (never guess
// an epoch: epochs must only grow).
absl::StatusOr<LeaseRecord> ParseLease(absl::string_view json);

// RFC 3339 with microseconds in UTC, as Kubernetes' MicroTime.
std::string FormatMicroTime(absl::Time t);

// The lease length as spec.leaseDurationSeconds: whole seconds, rounded
// up, at least 1.
int64_t LeaseSeconds(absl::Duration lease);

// What a master writes when it takes a term.
struct LeaseClaim {
  std::string name;       // metadata.name (POST only)
  std::string ns;         // metadata.namespace (POST only)
  std::string holder;
  std::string address;
  absl::Duration lease;
  absl::Time now;         // wall clock, for acquireTime/renewTime only
};

// Body of the POST creating a brand-new Lease: epoch = `now` in
// milliseconds (above any single-master epoch of the past), no transition.
std::string NewLeaseJson(const LeaseClaim& claim);

// The epoch of the term that follows `current`: its epoch + 1, or `now`
// in milliseconds for a Lease without the annotation (made by hand).
uint64_t NextEpoch(const LeaseRecord& current, absl::Time now);

// Body of the PUT taking `current` over for a new term: holder, address,
// epoch = NextEpoch, acquireTime = renewTime = now, leaseTransitions + 1
// when the holder changes; carries current's resourceVersion (409 if the
// Lease changed since it was read). INTERNAL if current.raw is unusable.
absl::StatusOr<std::string> TakeoverJson(const LeaseRecord& current, const LeaseClaim& claim);

// Body of the PUT renewing `current` (ours): renewTime = now, the rest as
// is (resourceVersion included).
absl::StatusOr<std::string> RenewJson(const LeaseRecord& current, absl::Time now);

// Body of the PUT giving `current` (ours) back, like client-go's
// ReleaseOnCancel: holderIdentity "", leaseDurationSeconds 1, renewTime =
// now; the epoch annotation stays (the next term continues from it).
absl::StatusOr<std::string> ReleaseJson(const LeaseRecord& current, absl::Time now);

// An error answer of the API server as a status: 401 UNAUTHENTICATED, 403
// PERMISSION_DENIED, 404 NOT_FOUND, 409 ABORTED (Conflict or
// AlreadyExists: another writer won), 429/5xx UNAVAILABLE, other codes
// FAILED_PRECONDITION. The message names `what` (method and path), the
// HTTP code, and the server's reason and message (a Status object) or the
// start of the body.
absl::Status ApiError(long http_code, absl::string_view body, absl::string_view what);

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_K8S_LEASE_RECORD_H_
