#include "services/common/feature_flags.h"

#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "services/common/json.h"

namespace cellar::common {

absl::Status ValidateFlagName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxFlagNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "name: 1..", kMaxFlagNameBytes, " characters of [a-z0-9_.-], got ", name.size()));
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                    c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(
          "name: only lower-case letters, digits, '_', '.' and '-' are allowed");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateFlagText(absl::string_view field, absl::string_view text, size_t max_bytes) {
  if (text.empty() || text.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": required, 1..", max_bytes, " bytes, got ", text.size()));
  }
  if (!IsValidUtf8(text)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": not valid UTF-8"));
  }
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": one printable line (no control characters)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateFeatureFlag(const cellar::v1::FeatureFlag& flag) {
  if (absl::Status s = ValidateFlagName(flag.name()); !s.ok()) return s;
  switch (flag.value_case()) {
    case cellar::v1::FeatureFlag::kBoolValue:
      break;
    case cellar::v1::FeatureFlag::kStringValue:
      if (flag.string_value().size() > kMaxFlagStringValueBytes ||
          !IsValidUtf8(flag.string_value())) {
        return absl::InvalidArgumentError(absl::StrCat(
            "flag ", flag.name(), ": string_value must be UTF-8 of at most ",
            kMaxFlagStringValueBytes, " bytes"));
      }
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("flag ", flag.name(), ": no value (set bool_value or string_value)"));
  }
  if (absl::Status s = ValidateFlagText("description", flag.description(),
                                        kMaxFlagDescriptionBytes);
      !s.ok()) {
    return s;
  }
  return ValidateFlagText("owner", flag.owner(), kMaxFlagOwnerBytes);
}

absl::Status ValidateFeatureFlagTable(const cellar::v1::FeatureFlagTable& table) {
  if (static_cast<size_t>(table.flags_size()) > kMaxFeatureFlags) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature flags: at most ", kMaxFeatureFlags, ", got ", table.flags_size()));
  }
  for (int i = 0; i < table.flags_size(); ++i) {
    if (absl::Status s = ValidateFeatureFlag(table.flags(i)); !s.ok()) return s;
    if (i > 0 && table.flags(i - 1).name() >= table.flags(i).name()) {
      return absl::InvalidArgumentError("feature flags: names must be unique and sorted");
    }
  }
  if (static_cast<size_t>(table.quarantines_size()) > kMaxPersistedQuarantines) {
    return absl::InvalidArgumentError(absl::StrCat("quarantines: at most ",
                                                   kMaxPersistedQuarantines, ", got ",
                                                   table.quarantines_size()));
  }
  absl::flat_hash_set<std::pair<std::string, std::string>> keys;
  for (const cellar::v1::VersionDecisionRecord& q : table.quarantines()) {
    if (q.version().empty() || q.track().empty() ||
        q.version().size() > kMaxQuarantineKeyBytes || q.track().size() > kMaxQuarantineKeyBytes ||
        q.reason().size() > kMaxFlagDescriptionBytes || q.by().size() > kMaxFlagOwnerBytes) {
      return absl::InvalidArgumentError(
          "quarantines: each needs a version and a track (1..256 bytes), a reason of at most "
          "1024 bytes and a `by` of at most 200");
    }
    if (!keys.insert({q.version(), q.track()}).second) {
      return absl::InvalidArgumentError(absl::StrCat("quarantines: ", q.version(), "/",
                                                     q.track(), " is listed twice"));
    }
  }
  return absl::OkStatus();
}

bool SameFlags(const cellar::v1::FeatureFlagTable& a, const cellar::v1::FeatureFlagTable& b) {
  if (a.flags_size() != b.flags_size() || a.quarantines_size() != b.quarantines_size()) {
    return false;
  }
  for (int i = 0; i < a.quarantines_size(); ++i) {
    if (!google::protobuf::util::MessageDifferencer::Equals(a.quarantines(i), b.quarantines(i))) {
      return false;
    }
  }
  for (int i = 0; i < a.flags_size(); ++i) {
    if (!google::protobuf::util::MessageDifferencer::Equals(a.flags(i), b.flags(i))) {
      return false;
    }
  }
  return true;
}

std::string EncodeFeatureFlagTable(const cellar::v1::FeatureFlagTable& table) {
  return absl::Base64Escape(table.SerializeAsString());
}

absl::StatusOr<cellar::v1::FeatureFlagTable> DecodeFeatureFlagTable(absl::string_view encoded) {
  std::string bytes;
  cellar::v1::FeatureFlagTable table;
  if (!absl::Base64Unescape(encoded, &bytes) || !table.ParseFromString(bytes)) {
    return absl::InvalidArgumentError("feature flag table: does not decode");
  }
  if (absl::Status s = ValidateFeatureFlagTable(table); !s.ok()) return s;
  return table;
}

bool FeatureFlags::Adopt(const cellar::v1::FeatureFlagTable& table) {
  if (!ValidateFeatureFlagTable(table).ok()) return false;
  absl::flat_hash_map<std::string, cellar::v1::FeatureFlag> by_name;
  for (const cellar::v1::FeatureFlag& flag : table.flags()) by_name[flag.name()] = flag;
  absl::MutexLock l(&mu_);
  if (table.version() <= table_.version()) return false;
  table_ = table;
  by_name_ = std::move(by_name);
  return true;
}

bool FeatureFlags::GetBool(absl::string_view name, bool default_value) const {
  absl::ReaderMutexLock l(&mu_);
  auto it = by_name_.find(name);
  if (it == by_name_.end() || it->second.value_case() != cellar::v1::FeatureFlag::kBoolValue) {
    return default_value;
  }
  return it->second.bool_value();
}

std::string FeatureFlags::GetString(absl::string_view name,
                                    absl::string_view default_value) const {
  absl::ReaderMutexLock l(&mu_);
  auto it = by_name_.find(name);
  if (it == by_name_.end() ||
      it->second.value_case() != cellar::v1::FeatureFlag::kStringValue) {
    return std::string(default_value);
  }
  return it->second.string_value();
}

uint64_t FeatureFlags::version() const {
  absl::ReaderMutexLock l(&mu_);
  return table_.version();
}

cellar::v1::FeatureFlagTable FeatureFlags::Table() const {
  absl::ReaderMutexLock l(&mu_);
  return table_;
}

}  // namespace cellar::common
