#ifndef CELLAR_SERVICES_MASTER_FLAG_REGISTRY_H_
#define CELLAR_SERVICES_MASTER_FLAG_REGISTRY_H_

// The primary master's feature flag table (docs/rollouts.md, "Feature
// flags"): sets and deletes flags, each change persisted (by the caller's
// `Persist`, on the storages) before it is adopted, and adopts the tables
// the storages report at registration, so the flags survive master
// restarts and failovers. No gRPC types.
//
// Versions: every change gets the next version. A reported table with a
// higher version replaces this one whole (deletions included); one with
// the same version but other flags (two primaries that each persisted a
// change on a different storage) loses to this one, whose version is then
// raised so that every node, the reporter included, adopts it.
//
// Thread-safe: changes (Set, Delete, SeedAbsent) are serialized; merges
// are not blocked by a change's persistence.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "protos/cellar/v1/common.pb.h"
#include "protos/cellar/v1/master.pb.h"
#include "services/common/clock.h"

namespace cellar::master {

class FlagRegistry {
 public:
  // Persists a table (all of it) durably before it is adopted. Its error
  // is returned to the caller of Set / Delete / SeedAbsent as is.
  using Persist = std::function<absl::Status(const cellar::v1::FeatureFlagTable&)>;

  // `clock` (not owned) stamps creations and updates.
  explicit FlagRegistry(const common::Clock* clock) : clock_(clock) {}

  // Adopts a table a storage reported (rule above). True if this table
  // changed (content or version). INVALID_ARGUMENT for a malformed table
  // (nothing adopted).
  absl::StatusOr<bool> MergeReported(const cellar::v1::FeatureFlagTable& reported);

  struct SetResult {
    cellar::v1::FeatureFlag flag;  // as stored
    bool created = false;
    uint64_t version = 0;  // of the table after the call
  };
  // Creates or updates a flag (Master.SetFeatureFlag's contract): creation
  // needs a value, a description and an owner; an update keeps the stored
  // description/owner when the request's are empty and refuses a type
  // change (FAILED_PRECONDITION). An unchanged flag is answered as is,
  // nothing persisted. INVALID_ARGUMENT for bad input; FAILED_PRECONDITION
  // when the table is full; the persist error as is.
  absl::StatusOr<SetResult> Set(const cellar::v1::SetFeatureFlagRequest& request,
                                const Persist& persist);

  // Deletes flag `name`; answers it as it was and the new version.
  // INVALID_ARGUMENT for a bad name, NOT_FOUND for an unknown one; the
  // persist error as is.
  absl::StatusOr<cellar::v1::DeleteFeatureFlagResponse> Delete(absl::string_view name,
                                                               const Persist& persist);

  // Creates those of `initial` whose name is not in the table (one
  // persisted change; none if all exist). Existing flags are never
  // touched, so an operator's change survives a restart with the same
  // initial flags. Each must pass ValidateFeatureFlag (times ignored).
  absl::Status SeedAbsent(const std::vector<cellar::v1::FeatureFlag>& initial,
                          const Persist& persist);

  // Replaces the table's quarantined versions (FeatureFlagTable.quarantines,
  // docs/rollouts.md) with `quarantines`, persisted like a flag change;
  // nothing is persisted when they are already the table's. INVALID_ARGUMENT
  // for a list the table cannot hold; the persist error as is.
  absl::Status SetQuarantines(const std::vector<cellar::v1::VersionDecisionRecord>& quarantines,
                              const Persist& persist);

  // The current table.
  cellar::v1::FeatureFlagTable Table() const;

 private:
  // Persists `next` (version = current + 1) then adopts it.
  absl::Status Commit(cellar::v1::FeatureFlagTable* next, const Persist& persist)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(change_mu_);

  const common::Clock* const clock_;
  absl::Mutex change_mu_;  // one change at a time (held while persisting)
  mutable absl::Mutex mu_;
  cellar::v1::FeatureFlagTable table_ ABSL_GUARDED_BY(mu_);
};

// Parses initial flags given as JSON (the master's --initial_feature_flags,
// filled from the Helm value `featureFlags`): a FeatureFlagTable in proto
// JSON, e.g. {"flags":[{"name":"a.b","boolValue":true,"owner":"ops",
// "description":"..."}]}. Empty text = none. INVALID_ARGUMENT for bad JSON,
// an invalid flag or a repeated name.
absl::StatusOr<std::vector<cellar::v1::FeatureFlag>> ParseInitialFeatureFlags(
    absl::string_view json);

}  // namespace cellar::master

#endif  // CELLAR_SERVICES_MASTER_FLAG_REGISTRY_H_
