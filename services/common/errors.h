#ifndef CELLAR_SERVICES_COMMON_ERRORS_H_
#define CELLAR_SERVICES_COMMON_ERRORS_H_

// cellar's error vocabulary on top of absl::Status. Every error a client
// acts on carries a reason (google.rpc.ErrorInfo, domain "cellar.v1") as an
// absl::Status payload; grpc_status.h turns payloads into
// google.rpc.Status details on the wire and back.
//
// Code choice (semantics.md): INVALID_ARGUMENT bad request; NOT_FOUND
// unknown object/revision/transaction; ABORTED retry the whole transaction;
// UNAVAILABLE retry the call; FAILED_PRECONDITION wrong cluster/node state.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace cellar::common {

// Reason strings (the names of cellar.v1.ErrorReason).
inline constexpr absl::string_view kReasonConflict = "CONFLICT";
inline constexpr absl::string_view kReasonLockContention = "LOCK_CONTENTION";
inline constexpr absl::string_view kReasonNoSuchObject = "NO_SUCH_OBJECT";
inline constexpr absl::string_view kReasonNoEarlierRevision = "NO_EARLIER_REVISION";
inline constexpr absl::string_view kReasonNoSuchRevision = "NO_SUCH_REVISION";
inline constexpr absl::string_view kReasonNotReadable = "NOT_READABLE";
inline constexpr absl::string_view kReasonChecksumMismatch = "CHECKSUM_MISMATCH";
inline constexpr absl::string_view kReasonWrongCluster = "WRONG_CLUSTER";
inline constexpr absl::string_view kReasonProtocolMismatch = "PROTOCOL_MISMATCH";
inline constexpr absl::string_view kReasonClusterNotRunning = "CLUSTER_NOT_RUNNING";
inline constexpr absl::string_view kReasonUnknownTransaction = "UNKNOWN_TRANSACTION";
inline constexpr absl::string_view kReasonStaleEpoch = "STALE_EPOCH";
inline constexpr absl::string_view kReasonTooLarge = "TOO_LARGE";
// Finish: a partition's stores were not conflict-checked by a cell that
// is still known readable (a table change raced the stores): ABORTED,
// retry the transaction.
inline constexpr absl::string_view kReasonNotChecked = "NOT_CHECKED";
// UNAVAILABLE from Commit: the commit outcome is unknown (Finish got no
// answer and the primary could not tell); the transaction may have
// committed. Not a failure to retry blindly: read the objects to find out.
inline constexpr absl::string_view kReasonOutcomeUnknown = "OUTCOME_UNKNOWN";
// PERMISSION_DENIED: a Store/Vote/AbortTransaction whose ttid token
// (BeginResponse.ttid_token) is missing or was not issued by the primary
// of the storage's current master term.
inline constexpr absl::string_view kReasonBadTtidToken = "BAD_TTID_TOKEN";
// UNAVAILABLE from a storage's Load / Replicate: a vote held here across a
// change of master session (in doubt) may be a commit this cell lacks; the
// read is refused until the master resolves it (semantics rule R11).
inline constexpr absl::string_view kReasonInDoubt = "IN_DOUBT";
// ReportReplication: the cell was (re-)created by a partition-table change
// and must be filled from tid 0; the reported progress is from before.
inline constexpr absl::string_view kReasonCellRecreated = "CELL_RECREATED";
// NOT_FOUND from a storage's Load / LoadMany: the revision is a deletion.
inline constexpr absl::string_view kReasonObjectDeleted = "OBJECT_DELETED";
// NOT_FOUND from a storage's GetTransaction: no transaction has that tid.
inline constexpr absl::string_view kReasonNoSuchTransaction = "NO_SUCH_TRANSACTION";
// NOT_FOUND from a storage's Load / LoadMany at or below the tid its cell
// was packed at: the revision asked for may have been removed by pack.
inline constexpr absl::string_view kReasonRevisionPacked = "REVISION_PACKED";
// UNAVAILABLE from a storage's Load / LoadMany run with
// --fault_load_error_ratio: a load failed on purpose (docs/rollouts.md).
inline constexpr absl::string_view kReasonFaultInjected = "FAULT_INJECTED";

// The domain of every cellar ErrorInfo.
inline constexpr absl::string_view kErrorDomain = "cellar.v1";

// Type URLs of the payloads.
inline constexpr absl::string_view kErrorInfoTypeUrl =
    "type.googleapis.com/google.rpc.ErrorInfo";
inline constexpr absl::string_view kConflictDetailTypeUrl =
    "type.googleapis.com/cellar.v1.ConflictDetail";

// `code` + `message` + ErrorInfo{reason}.
absl::Status ErrorWithReason(absl::StatusCode code, absl::string_view reason,
                             absl::string_view message);

// ABORTED, reason CONFLICT, with a ConflictDetail payload.
absl::Status ConflictError(uint64_t oid, uint64_t current_serial,
                           uint64_t base_serial);

// The ErrorInfo reason of `status`, or "" if it has none.
std::string ErrorReason(const absl::Status& status);

// What a CONFLICT error says.
struct ConflictInfo {
  uint64_t oid = 0;
  uint64_t current_serial = 0;
  uint64_t base_serial = 0;
};

// The conflict detail of `status`, if it is a CONFLICT error.
std::optional<ConflictInfo> GetConflict(const absl::Status& status);

// `status` with `context: ` prepended to its message, payloads kept.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace cellar::common

#endif  // CELLAR_SERVICES_COMMON_ERRORS_H_
