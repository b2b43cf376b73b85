#ifndef CELLAR_SERVICES_COMMON_FEATURE_FLAGS_H_
#define CELLAR_SERVICES_COMMON_FEATURE_FLAGS_H_

// Cluster-wide feature flags (docs/rollouts.md, "Feature flags"): the
// validation rules every process applies to a flag table, its encoding in
// a storage's backend config, and `FeatureFlags`, the reader a node keeps
// up to date from the master's Watch stream. No gRPC types.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "protos/cellar/v1/common.pb.h"

namespace cellar::common {

inline constexpr size_t kMaxFeatureFlags = 256;
inline constexpr size_t kMaxFlagNameBytes = 64;
inline constexpr size_t kMaxFlagDescriptionBytes = 1024;
inline constexpr size_t kMaxFlagOwnerBytes = 200;
inline constexpr size_t kMaxFlagStringValueBytes = 1024;
// FeatureFlagTable.quarantines: at most this many, with version and track
// of 1..kMaxQuarantineKeyBytes and a reason of at most
// kMaxFlagDescriptionBytes.
inline constexpr size_t kMaxPersistedQuarantines = 64;
inline constexpr size_t kMaxQuarantineKeyBytes = 256;

// The flag of the storage's verified read path (docs/rollouts.md): when
// true, a storage checks each revision's SHA-1 before serving it.
inline constexpr char kVerifyChecksumOnLoadFlag[] = "storage.verify_checksum_on_load";

// INVALID_ARGUMENT unless `name` is 1..64 characters of [a-z0-9_.-].
absl::Status ValidateFlagName(absl::string_view name);
// INVALID_ARGUMENT unless `text` (field `field`) is one printable line of
// 1..`max_bytes` bytes.
absl::Status ValidateFlagText(absl::string_view field, absl::string_view text, size_t max_bytes);
// INVALID_ARGUMENT for a bad name, no value, a string value over 1024
// bytes or not UTF-8, or a bad description or owner.
absl::Status ValidateFeatureFlag(const cellar::v1::FeatureFlag& flag);
// Every flag valid, names strictly sorted, at most kMaxFeatureFlags; the
// quarantines valid and unique (kMaxPersistedQuarantines at most).
absl::Status ValidateFeatureFlagTable(const cellar::v1::FeatureFlagTable& table);

// Same flags (names, values, descriptions, owners, times) and the same
// quarantines; versions ignored.
bool SameFlags(const cellar::v1::FeatureFlagTable& a, const cellar::v1::FeatureFlagTable& b);

// The backend-config encoding of a table (base64 of the proto), and back
// (INVALID_ARGUMENT if it does not decode or validate).
std::string EncodeFeatureFlagTable(const cellar::v1::FeatureFlagTable& table);
absl::StatusOr<cellar::v1::FeatureFlagTable> DecodeFeatureFlagTable(absl::string_view encoded);

// A node's view of the cluster's flags. Adopts only valid tables of a
// higher version than the one held, so events may arrive in any order.
// Lookups of a flag that is absent, or of another type, answer the
// caller's default. Thread-safe; lookups take a reader lock.
class FeatureFlags {
 public:
  FeatureFlags() = default;
  FeatureFlags(const FeatureFlags&) = delete;
  FeatureFlags& operator=(const FeatureFlags&) = delete;

  // True if `table` was adopted (valid, version above the current one).
  bool Adopt(const cellar::v1::FeatureFlagTable& table);

  bool GetBool(absl::string_view name, bool default_value) const;
  std::string GetString(absl::string_view name, absl::string_view default_value) const;
  uint64_t version() const;
  cellar::v1::FeatureFlagTable Table() const;

 private:
  mutable absl::Mutex mu_;
  cellar::v1::FeatureFlagTable table_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, cellar::v1::FeatureFlag> by_name_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_FEATURE_FLAGS_H_
