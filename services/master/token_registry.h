#ifndef CELLAR_SERVICES_MASTER_TOKEN_REGISTRY_H_
#define CELLAR_SERVICES_MASTER_TOKEN_REGISTRY_H_

// The primary master's cluster token table (docs/security.md, "Cluster
// tokens"): creates and revokes tokens, each change persisted (by the
// caller's `Persist`, on the storages) before it is adopted, and merges the
// tables the storages report at registration, so the table survives master
// restarts and failovers. No gRPC types.
//
// Versions: every change the registry makes gets a version above the
// current one; a merge that changes the table, or leaves a reporter with
// different tokens at an equal or higher version, gets one above both. So
// a node whose tokens differ from the master's always holds a lower
// version, and followers adopt a table only when its version is higher.
//
// Thread-safe: changes (Create, Revoke) are serialized, merges are not
// blocked by a change's persistence.

#include <cstdint>
#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "protos/cellar/v1/common.pb.h"
#include "services/common/clock.h"

namespace cellar::master {

class TokenRegistry {
 public:
  // Persists a table (all of it) durably before it is adopted. An error is
  // returned to the caller of Create / Revoke as is (nothing adopted).
  using Persist = std::function<absl::Status(const cellar::v1::ClusterTokenTable&)>;
  // Called after every change of the table, with the new table, outside
  // the registry's lock (in order). May be empty.
  using OnChange = std::function<void(const cellar::v1::ClusterTokenTable&)>;

  // `clock` (not owned) stamps creations and revocations.
  TokenRegistry(const common::Clock* clock, OnChange on_change);

  // Merges a table a storage reported (union, revoked wins). A malformed
  // table is refused with INVALID_ARGUMENT (nothing merged).
  absl::Status MergeReported(const cellar::v1::ClusterTokenTable& reported);

  struct Created {
    std::string token;  // "cellar_<id>_<secret>": shown once
    cellar::v1::ClusterToken entry;
  };
  // A new token of `role` named `name`, persisted then adopted.
  // INVALID_ARGUMENT for an unset or NODE role or a bad name (empty, over
  // kMaxTokenNameBytes, not printable); `id_taken(id)` true makes it pick
  // another id (ids of the tokens file); the persist error as is.
  absl::StatusOr<Created> Create(absl::string_view name, cellar::v1::TokenRole role,
                                 const std::function<bool(absl::string_view)>& id_taken,
                                 const Persist& persist);

  // Revokes token `id`, persisted then adopted; the token as it is now.
  // Idempotent (a revoked token is answered as is, nothing persisted).
  // INVALID_ARGUMENT for a malformed id, NOT_FOUND for an unknown one; the
  // persist error as is.
  absl::StatusOr<cellar::v1::ClusterToken> Revoke(absl::string_view id, const Persist& persist);

  // The current table.
  cellar::v1::ClusterTokenTable Table() const;

 private:
  // Merges `table` into table_ with the version rule above; calls
  // on_change_ if it changed. Takes mu_.
  void Adopt(const cellar::v1::ClusterTokenTable& table);

  const common::Clock* const clock_;
  const OnChange on_change_;
  absl::Mutex change_mu_;  // one Create / Revoke at a time (held while persisting)
  absl::Mutex notify_mu_;  // on_change_ calls in order
  mutable absl::Mutex mu_;
  cellar::v1::ClusterTokenTable table_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_TOKEN_REGISTRY_H_
