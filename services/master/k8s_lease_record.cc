#include "services/master/k8s_lease_record.h"

#include <algorithm>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace cellar::master {
namespace {

using Json = nlohmann::json;

constexpr char kApiVersion[] = "coordination.k8s.io/v1";

absl::StatusOr<Json> ParseObject(absl::string_view text) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InternalError("kubernetes: the answer is not a JSON object");
  }
  return j;
}

std::string StringAt(const Json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t IntAt(const Json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

uint64_t NowMillis(absl::Time now) {
  return static_cast<uint64_t>(std::max<int64_t>(1, absl::ToUnixMillis(now)));
}

// current.raw with the spec fields every cellar write sets.
absl::StatusOr<Json> Base(const LeaseRecord& current) {
  absl::StatusOr<Json> j = ParseObject(current.raw);
  if (!j.ok()) return j.status();
  if (!(*j)["metadata"].is_object() || (*j)["metadata"]["resourceVersion"].empty()) {
    return absl::InternalError("kubernetes: the Lease read has no metadata.resourceVersion");
  }
  if (!(*j)["spec"].is_object()) (*j)["spec"] = Json::object();
  // Server-maintained bookkeeping: not ours to send back.
  (*j)["metadata"].erase("managedFields");
  return j;
}

}  // namespace

absl::StatusOr<LeaseRecord> ParseLease(absl::string_view json) {
  absl::StatusOr<Json> j = ParseObject(json);
  if (!j.ok()) return j.status();
  if (StringAt(*j, "kind") != "Lease") {
    return absl::InternalError(
        absl::StrCat("kubernetes: expected a Lease, got kind \"", StringAt(*j, "kind"), "\""));
  }
  LeaseRecord r;
  r.raw = std::string(json);
  const Json empty = Json::object();
  const Json& metadata = j->contains("metadata") && (*j)["metadata"].is_object()
                             ? (*j)["metadata"] : empty;
  const Json& spec = j->contains("spec") && (*j)["spec"].is_object() ? (*j)["spec"] : empty;
  r.resource_version = StringAt(metadata, "resourceVersion");
  if (r.resource_version.empty()) {
    return absl::InternalError("kubernetes: the Lease has no metadata.resourceVersion");
  }
  r.holder = StringAt(spec, "holderIdentity");
  r.lease_duration_seconds = IntAt(spec, "leaseDurationSeconds");
  r.transitions = IntAt(spec, "leaseTransitions");
  r.acquire_time = StringAt(spec, "acquireTime");
  r.renew_time = StringAt(spec, "renewTime");
  auto annotations = metadata.find("annotations");
  if (annotations != metadata.end() && annotations->is_object()) {
    auto epoch = annotations->find(kEpochAnnotation);
    if (epoch != annotations->end()) {
      if (!epoch->is_string() || !absl::SimpleAtoi(epoch->get<std::string>(), &r.epoch) ||
          r.epoch == 0) {
        return absl::InternalError(absl::StrCat("kubernetes: the Lease's annotation ",
                                                kEpochAnnotation, " is not a positive integer: ",
                                                epoch->dump()));
      }
    }
    r.address = StringAt(*annotations, kAddressAnnotation);
  }
  return r;
}

std::string FormatMicroTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

int64_t LeaseSeconds(absl::Duration lease) {
  return std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(lease, absl::Seconds(1))));
}

std::string NewLeaseJson(const LeaseClaim& claim) {
  const std::string now = FormatMicroTime(claim.now);
  Json j = {
      {"apiVersion", kApiVersion},
      {"kind", "Lease"},
      {"metadata",
       {{"name", claim.name},
        {"namespace", claim.ns},
        {"annotations",
         {{kEpochAnnotation, absl::StrCat(NowMillis(claim.now))},
          {kAddressAnnotation, claim.address}}}}},
      {"spec",
       {{"holderIdentity", claim.holder},
        {"leaseDurationSeconds", LeaseSeconds(claim.lease)},
        {"acquireTime", now},
        {"renewTime", now},
        {"leaseTransitions", 0}}},
  };
  return j.dump();
}

uint64_t NextEpoch(const LeaseRecord& current, absl::Time now) {
  return current.epoch == 0 ? NowMillis(now) : current.epoch + 1;
}

absl::StatusOr<std::string> TakeoverJson(const LeaseRecord& current, const LeaseClaim& claim) {
  absl::StatusOr<Json> j = Base(current);
  if (!j.ok()) return j.status();
  Json& metadata = (*j)["metadata"];
  if (!metadata["annotations"].is_object()) metadata["annotations"] = Json::object();
  metadata["annotations"][kEpochAnnotation] = absl::StrCat(NextEpoch(current, claim.now));
  metadata["annotations"][kAddressAnnotation] = claim.address;
  Json& spec = (*j)["spec"];
  const std::string now = FormatMicroTime(claim.now);
  spec["holderIdentity"] = claim.holder;
  spec["leaseDurationSeconds"] = LeaseSeconds(claim.lease);
  spec["acquireTime"] = now;
  spec["renewTime"] = now;
  spec["leaseTransitions"] =
      current.transitions + (current.holder == claim.holder ? 0 : 1);
  return j->dump();
}

absl::StatusOr<std::string> RenewJson(const LeaseRecord& current, absl::Time now) {
  absl::StatusOr<Json> j = Base(current);
  if (!j.ok()) return j.status();
  (*j)["spec"]["renewTime"] = FormatMicroTime(now);
  return j->dump();
}

absl::StatusOr<std::string> ReleaseJson(const LeaseRecord& current, absl::Time now) {
  absl::StatusOr<Json> j = Base(current);
  if (!j.ok()) return j.status();
  Json& spec = (*j)["spec"];
  spec["holderIdentity"] = "";
  spec["leaseDurationSeconds"] = 1;
  spec["renewTime"] = FormatMicroTime(now);
  return j->dump();
}

absl::Status ApiError(long http_code, absl::string_view body, absl::string_view what) {
  std::string detail;
  Json j = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_discarded() && j.is_object() && StringAt(j, "kind") == "Status") {
    detail = StringAt(j, "reason");
    const std::string message = StringAt(j, "message");
    if (!message.empty()) detail = absl::StrCat(detail, detail.empty() ? "" : ": ", message);
  } else {
    detail = std::string(body.substr(0, 200));
    std::replace_if(detail.begin(), detail.end(), [](char c) { return c == '\n' || c == '\r'; },
                    ' ');
  }
  const std::string message =
      absl::StrCat("kubernetes: ", what, ": HTTP ", http_code, detail.empty() ? "" : " ", detail);
  switch (http_code) {
    case 401:
      return absl::UnauthenticatedError(
          absl::StrCat(message, " (is the service-account token valid?)"));
    case 403:
      return absl::PermissionDeniedError(absl::StrCat(
          message,
          " (the master's service account needs get, create and update on "
          "leases.coordination.k8s.io in this namespace)"));
    case 404:
      return absl::NotFoundError(message);
    case 409:
      return absl::AbortedError(message);
    case 429:
      return absl::UnavailableError(message);
    default:
      if (http_code >= 500) return absl::UnavailableError(message);
      return absl::FailedPreconditionError(message);
  }
}

}  // namespace cellar::master
