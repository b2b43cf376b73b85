#include "services/master/flag_registry.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "services/common/feature_flags.h"
#include "services/common/logging.h"

namespace cellar::master {
namespace {

using cellar::v1::FeatureFlag;
using cellar::v1::FeatureFlagTable;

FeatureFlag* Find(FeatureFlagTable* table, absl::string_view name) {
  for (FeatureFlag& flag : *table->mutable_flags()) {
    if (flag.name() == name) return &flag;
  }
  return nullptr;
}

void SortByName(FeatureFlagTable* table) {
  std::sort(table->mutable_flags()->begin(), table->mutable_flags()->end(),
            [](const FeatureFlag& a, const FeatureFlag& b) { return a.name() < b.name(); });
}

bool SameValue(const FeatureFlag& a, const cellar::v1::SetFeatureFlagRequest& b) {
  if (b.value_case() == cellar::v1::SetFeatureFlagRequest::kBoolValue) {
    return a.value_case() == FeatureFlag::kBoolValue && a.bool_value() == b.bool_value();
  }
  return a.value_case() == FeatureFlag::kStringValue && a.string_value() == b.string_value();
}

}  // namespace

FeatureFlagTable FlagRegistry::Table() const {
  absl::MutexLock l(&mu_);
  return table_;
}

absl::StatusOr<bool> FlagRegistry::MergeReported(const FeatureFlagTable& reported) {
  if (absl::Status s = common::ValidateFeatureFlagTable(reported); !s.ok()) return s;
  absl::MutexLock l(&mu_);
  const bool same = common::SameFlags(reported, table_);
  if (reported.version() > table_.version()) {
    table_ = reported;
  } else if (reported.version() == table_.version() && !same) {
    // Two primaries each persisted a change somewhere: keep ours, above both.
    table_.set_version(table_.version() + 1);
  } else {
    return false;
  }
  CELLAR_LOG(INFO) << "feature flags: version " << table_.version() << ", "
                   << table_.flags_size() << " flag(s)";
  return true;
}

absl::Status FlagRegistry::Commit(FeatureFlagTable* next, const Persist& persist) {
  SortByName(next);
  next->set_version(Table().version() + 1);
  if (absl::Status s = common::ValidateFeatureFlagTable(*next); !s.ok()) return s;
  if (absl::Status s = persist(*next); !s.ok()) return s;
  absl::MutexLock l(&mu_);
  // A merge may have raised the version meanwhile: stay above it.
  next->set_version(std::max(next->version(), table_.version() + 1));
  table_ = *next;
  return absl::OkStatus();
}

absl::StatusOr<FlagRegistry::SetResult> FlagRegistry::Set(
    const cellar::v1::SetFeatureFlagRequest& request, const Persist& persist) {
  if (absl::Status s = common::ValidateFlagName(request.name()); !s.ok()) return s;
  if (request.value_case() == cellar::v1::SetFeatureFlagRequest::VALUE_NOT_SET) {
    return absl::InvalidArgumentError("value: required (set bool_value or string_value)");
  }
  absl::MutexLock change(&change_mu_);
  FeatureFlagTable next = Table();
  FeatureFlag* flag = Find(&next, request.name());
  SetResult result;
  result.created = flag == nullptr;
  if (flag == nullptr) {
    if (static_cast<size_t>(next.flags_size()) >= common::kMaxFeatureFlags) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the cluster holds ", common::kMaxFeatureFlags,
          " feature flags already: delete flags that are no longer needed"));
    }
    if (request.description().empty() || request.owner().empty()) {
      return absl::InvalidArgumentError(
          "description and owner: required when creating a flag (who to ask, and what it does)");
    }
    flag = next.add_flags();
    flag->set_name(request.name());
    flag->set_created_unix_ms(absl::ToUnixMillis(clock_->Now()));
  } else {
    const bool bool_request =
        request.value_case() == cellar::v1::SetFeatureFlagRequest::kBoolValue;
    if (bool_request != (flag->value_case() == FeatureFlag::kBoolValue)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "flag ", request.name(), " holds a ", bool_request ? "string" : "boolean",
          " value: its type cannot change (delete it, then create it again)"));
    }
    if (SameValue(*flag, request) &&
        (request.description().empty() || request.description() == flag->description()) &&
        (request.owner().empty() || request.owner() == flag->owner())) {
      result.flag = *flag;
      result.version = next.version();
      return result;  // unchanged: nothing to persist
    }
  }
  if (request.value_case() == cellar::v1::SetFeatureFlagRequest::kBoolValue) {
    flag->set_bool_value(request.bool_value());
  } else {
    flag->set_string_value(request.string_value());
  }
  // Empty = keep: an unset field never erases what an operator wrote.
  if (!request.description().empty()) flag->set_description(request.description());
  if (!request.owner().empty()) flag->set_owner(request.owner());
  flag->set_updated_unix_ms(absl::ToUnixMillis(clock_->Now()));
  if (absl::Status s = common::ValidateFeatureFlag(*flag); !s.ok()) return s;
  result.flag = *flag;
  if (absl::Status s = Commit(&next, persist); !s.ok()) return s;
  result.version = next.version();
  CELLAR_LOG(INFO) << "feature flag " << request.name() << (result.created ? " created" : " set")
                   << " (table version " << result.version << ")";
  return result;
}

absl::StatusOr<cellar::v1::DeleteFeatureFlagResponse> FlagRegistry::Delete(
    absl::string_view name, const Persist& persist) {
  if (absl::Status s = common::ValidateFlagName(name); !s.ok()) return s;
  absl::MutexLock change(&change_mu_);
  FeatureFlagTable next = Table();
  cellar::v1::DeleteFeatureFlagResponse response;
  auto* flags = next.mutable_flags();
  auto it = std::find_if(flags->begin(), flags->end(),
                         [name](const FeatureFlag& f) { return f.name() == name; });
  if (it == flags->end()) {
    return absl::NotFoundError(absl::StrCat("feature flag ", name, " does not exist"));
  }
  *response.mutable_flag() = *it;
  flags->erase(it);
  if (absl::Status s = Commit(&next, persist); !s.ok()) return s;
  response.set_version(next.version());
  CELLAR_LOG(INFO) << "feature flag " << name << " deleted (table version "
                   << response.version() << ")";
  return response;
}

absl::Status FlagRegistry::SeedAbsent(const std::vector<FeatureFlag>& initial,
                                      const Persist& persist) {
  absl::MutexLock change(&change_mu_);
  FeatureFlagTable next = Table();
  const int64_t now = absl::ToUnixMillis(clock_->Now());
  std::vector<std::string> added;
  for (FeatureFlag flag : initial) {
    if (absl::Status s = common::ValidateFeatureFlag(flag); !s.ok()) return s;
    if (Find(&next, flag.name()) != nullptr) continue;
    flag.set_created_unix_ms(now);
    flag.set_updated_unix_ms(now);
    added.push_back(flag.name());
    *next.add_flags() = std::move(flag);
  }
  if (added.empty()) return absl::OkStatus();
  if (absl::Status s = Commit(&next, persist); !s.ok()) return s;
  CELLAR_LOG(INFO) << "feature flags: " << added.size()
                   << " initial flag(s) created (table version " << next.version() << ")";
  return absl::OkStatus();
}

absl::Status FlagRegistry::SetQuarantines(
    const std::vector<cellar::v1::VersionDecisionRecord>& quarantines, const Persist& persist) {
  absl::MutexLock change(&change_mu_);
  FeatureFlagTable next = Table();
  next.clear_quarantines();
  for (const cellar::v1::VersionDecisionRecord& q : quarantines) *next.add_quarantines() = q;
  if (common::SameFlags(next, Table())) return absl::OkStatus();
  if (absl::Status s = Commit(&next, persist); !s.ok()) return s;
  CELLAR_LOG(INFO) << "quarantined versions: " << next.quarantines_size()
                   << " persisted (feature flag table version " << next.version() << ")";
  return absl::OkStatus();
}

absl::StatusOr<std::vector<FeatureFlag>> ParseInitialFeatureFlags(absl::string_view json) {
  std::vector<FeatureFlag> flags;
  if (json.empty()) return flags;
  FeatureFlagTable table;
  const auto parsed = google::protobuf::util::JsonStringToMessage(std::string(json), &table);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("initial feature flags: not a FeatureFlagTable in JSON: ",
                     parsed.ToString()));
  }
  absl::flat_hash_set<std::string> names;
  for (FeatureFlag& flag : *table.mutable_flags()) {
    if (absl::Status s = common::ValidateFeatureFlag(flag); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("initial feature flags: ", s.message()));
    }
    if (!names.insert(flag.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("initial feature flags: ", flag.name(), " is given twice"));
    }
    flag.clear_created_unix_ms();
    flag.clear_updated_unix_ms();
    flags.push_back(std::move(flag));
  }
  return flags;
}

}  // namespace cellar::master
