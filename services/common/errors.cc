#include "services/common/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "protos/cellar/v1/common.pb.h"
#include "services/common/ids.h"
#include "third_party/googleapis/google/rpc/error_details.pb.h"

namespace cellar::common {

absl::Status ErrorWithReason(absl::StatusCode code, absl::string_view reason,
                             absl::string_view message) {
  absl::Status status(code, message);
  google::rpc::ErrorInfo info;
  info.set_reason(std::string(reason));
  info.set_domain(std::string(kErrorDomain));
  status.SetPayload(kErrorInfoTypeUrl, absl::Cord(info.SerializeAsString()));
  return status;
}

absl::Status ConflictError(uint64_t oid, uint64_t current_serial,
                           uint64_t base_serial) {
  absl::Status status(
      absl::StatusCode::kAborted,
      absl::StrCat("conflict on oid ", FormatOid(oid), ": current serial is ",
                   TidHex(current_serial), ", transaction read ",
                   TidHex(base_serial)));
  google::rpc::ErrorInfo info;
  info.set_reason(std::string(kReasonConflict));
  info.set_domain(std::string(kErrorDomain));
  (*info.mutable_metadata())["oid"] = FormatOid(oid);
  (*info.mutable_metadata())["current_serial"] = TidHex(current_serial);
  status.SetPayload(kErrorInfoTypeUrl, absl::Cord(info.SerializeAsString()));
  cellar::v1::ConflictDetail detail;
  detail.set_oid(oid);
  detail.set_current_serial(current_serial);
  detail.set_base_serial(base_serial);
  status.SetPayload(kConflictDetailTypeUrl,
                    absl::Cord(detail.SerializeAsString()));
  return status;
}

std::string ErrorReason(const absl::Status& status) {
  auto payload = status.GetPayload(kErrorInfoTypeUrl);
  if (!payload) return "";
  google::rpc::ErrorInfo info;
  if (!info.ParseFromString(std::string(*payload))) return "";
  return info.reason();
}

std::optional<ConflictInfo> GetConflict(const absl::Status& status) {
  auto payload = status.GetPayload(kConflictDetailTypeUrl);
  if (!payload) return std::nullopt;
  cellar::v1::ConflictDetail detail;
  if (!detail.ParseFromString(std::string(*payload))) return std::nullopt;
  return ConflictInfo{detail.oid(), detail.current_serial(),
                      detail.base_serial()};
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  absl::Status out(status.code(), absl::StrCat(context, ": ", status.message()));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    out.SetPayload(url, payload);
  });
  return out;
}

}  // namespace cellar::common
