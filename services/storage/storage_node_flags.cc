// StorageNode's feature flags (docs/rollouts.md, "Feature flags"): the
// table the master persists here (Storage.SaveFeatureFlags) or pushes over
// Watch, reported at registration, and the storage's flagged read path.

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/checksum.h"
#include "services/common/feature_flags.h"
#include "services/common/logging.h"
#include "services/common/status_macros.h"
#include "services/storage/storage_node.h"

namespace cellar::storage {
namespace {

// The backend config key of the table (base64 proto).
constexpr char kFeatureFlagsKey[] = "feature_flags";

}  // namespace

absl::Status StorageNode::SaveFeatureFlags(uint64_t epoch,
                                           const ::cellar::v1::FeatureFlagTable& table) {
  if (epoch == 0) return absl::InvalidArgumentError("epoch: must not be 0");
  CELLAR_RETURN_IF_ERROR(CheckEpoch(epoch));
  return StoreFeatureFlags(table);
}

absl::Status StorageNode::StoreFeatureFlags(const ::cellar::v1::FeatureFlagTable& table) {
  if (table.version() == 0) return absl::InvalidArgumentError("table.version: must not be 0");
  CELLAR_RETURN_IF_ERROR(common::ValidateFeatureFlagTable(table));
  {
    // One writer at a time, so that the stored version only rises.
    absl::MutexLock l(&flags_mu_);
    CELLAR_ASSIGN_OR_RETURN(::cellar::v1::FeatureFlagTable stored, StoredFeatureFlags());
    if (table.version() > stored.version()) {
      CELLAR_RETURN_IF_ERROR(
          backend_->SetConfig(kFeatureFlagsKey, common::EncodeFeatureFlagTable(table)));
      CELLAR_LOG(INFO) << "feature flags version " << table.version() << " ("
                       << table.flags_size() << " flag(s)) stored";
    }
  }
  feature_flags_.Adopt(table);  // no-op unless newer than the one in force
  return absl::OkStatus();
}

absl::StatusOr<::cellar::v1::FeatureFlagTable> StorageNode::StoredFeatureFlags() {
  CELLAR_ASSIGN_OR_RETURN(std::optional<std::string> value,
                          backend_->GetConfig(kFeatureFlagsKey));
  if (!value.has_value()) return ::cellar::v1::FeatureFlagTable();
  return common::DecodeFeatureFlagTable(*value);
}

void StorageNode::FollowFeatureFlags(const ::cellar::v1::FeatureFlagTable& table) {
  if (table.version() == 0 || table.version() <= feature_flags_.version()) return;
  if (absl::Status s = StoreFeatureFlags(table); !s.ok()) {
    // Applied anyway when valid: the master's table is the one in force.
    feature_flags_.Adopt(table);
    CELLAR_LOG(WARNING) << "feature flags version " << table.version() << " not stored: " << s;
  }
}

void StorageNode::LoadStoredFeatureFlags() {
  absl::StatusOr<::cellar::v1::FeatureFlagTable> stored = StoredFeatureFlags();
  if (!stored.ok()) {
    CELLAR_LOG(WARNING) << "the stored feature flags are not usable: " << stored.status();
    return;
  }
  feature_flags_.Adopt(*stored);
}

absl::StatusOr<LoadedObject> StorageNode::VerifyLoaded(
    absl::StatusOr<LoadedObject> loaded) const {
  if (!loaded.ok() || loaded->checksum.empty() ||
      !feature_flags_.GetBool(common::kVerifyChecksumOnLoadFlag, false) ||
      common::ChecksumMatches(loaded->data, loaded->checksum)) {
    return loaded;
  }
  CELLAR_LOG(ERROR) << "oid " << loaded->oid << " serial " << loaded->serial
                    << ": stored data does not match its checksum (not served)";
  return absl::DataLossError(absl::StrCat(
      "oid ", loaded->oid, " serial ", loaded->serial,
      ": the stored data does not match its checksum (",
      common::kVerifyChecksumOnLoadFlag, " is on); read another replica"));
}

}  // namespace cellar::storage
