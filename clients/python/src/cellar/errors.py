"""The error model of the cellar client, mirroring the C++ client.

Every error the servers return carries a gRPC status code and, for the
cases a caller acts on, a reason (google.rpc.ErrorInfo, domain
"cellar.v1", the names of cellar.v1.ErrorReason) and for conflicts a
cellar.v1.ConflictDetail. ``from_rpc_error`` turns a grpc.RpcError into
the most specific class below.

    CellarError                    every error of this package
    +-- AbortedError               ABORTED: retry the whole transaction
    |   +-- ConflictError          reason CONFLICT: oid, current_serial
    +-- UnavailableError           UNAVAILABLE: retry later
    |   +-- OutcomeUnknownError    reason OUTCOME_UNKNOWN: Finish's outcome
    |                              is not known; it may have committed
    +-- NotFoundError              NOT_FOUND (NO_SUCH_OBJECT, OBJECT_DELETED,
                                   NO_SUCH_TRANSACTION, ...)
    +-- CommitNotVisibleError      committed (tid) but the invalidation did
                                   not arrive in time
"""
from typing import Optional

import grpc

DOMAIN = "cellar.v1"
_ERROR_INFO_URL = "type.googleapis.com/google.rpc.ErrorInfo"
_CONFLICT_URL = "type.googleapis.com/cellar.v1.ConflictDetail"

# Reasons (cellar.v1.ErrorReason names).
CONFLICT = "CONFLICT"
LOCK_CONTENTION = "LOCK_CONTENTION"
NO_SUCH_OBJECT = "NO_SUCH_OBJECT"
NO_EARLIER_REVISION = "NO_EARLIER_REVISION"
NO_SUCH_REVISION = "NO_SUCH_REVISION"
NOT_READABLE = "NOT_READABLE"
CHECKSUM_MISMATCH = "CHECKSUM_MISMATCH"
WRONG_CLUSTER = "WRONG_CLUSTER"
PROTOCOL_MISMATCH = "PROTOCOL_MISMATCH"
CLUSTER_NOT_RUNNING = "CLUSTER_NOT_RUNNING"
UNKNOWN_TRANSACTION = "UNKNOWN_TRANSACTION"
TOO_LARGE = "TOO_LARGE"
OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
BAD_TTID_TOKEN = "BAD_TTID_TOKEN"
NOT_CHECKED = "NOT_CHECKED"
IN_DOUBT = "IN_DOUBT"
OBJECT_DELETED = "OBJECT_DELETED"
NO_SUCH_TRANSACTION = "NO_SUCH_TRANSACTION"
REVISION_PACKED = "REVISION_PACKED"


class CellarError(Exception):
    """An error of a cellar call: a gRPC status code, a message and, when
    the server gave one, a reason."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
                 reason: str = ""):
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason

    @property
    def retryable(self) -> bool:
        """True when retrying (the whole transaction, for a commit) may
        succeed: ABORTED and UNAVAILABLE, except an unknown outcome."""
        return self.code in (grpc.StatusCode.ABORTED, grpc.StatusCode.UNAVAILABLE,
                             grpc.StatusCode.DEADLINE_EXCEEDED) \
            and self.reason != OUTCOME_UNKNOWN

    def __str__(self) -> str:
        name = self.code.name if isinstance(self.code, grpc.StatusCode) else str(self.code)
        reason = " [%s]" % self.reason if self.reason else ""
        return "%s%s: %s" % (name, reason, self.message)

    def annotate(self, context: str) -> "CellarError":
        self.message = "%s: %s" % (context, self.message)
        self.args = (self.message,)
        return self


class AbortedError(CellarError):
    """ABORTED (conflict, lock contention, a stale ttid token, a racing
    table change): nothing was committed; retry the whole transaction."""


class ConflictError(AbortedError):
    """ABORTED, reason CONFLICT: ``oid`` is no longer at ``base_serial``;
    its latest committed serial is ``current_serial``."""

    def __init__(self, message: str, oid: int, current_serial: int, base_serial: int,
                 code: grpc.StatusCode = grpc.StatusCode.ABORTED):
        super().__init__(message, code, CONFLICT)
        self.oid = oid
        self.current_serial = current_serial
        self.base_serial = base_serial


class UnavailableError(CellarError):
    """UNAVAILABLE: a node could not be reached, the cluster is not ready,
    not enough replicas voted. Nothing was committed; retry later."""


class OutcomeUnknownError(UnavailableError):
    """Finish was sent and its outcome is not known (no answer, a master
    failover) and the primary could not tell. The transaction may have
    committed: never report it as failed nor retry it blindly; read its
    objects to find out."""

    def __init__(self, message: str, ttid: int = 0):
        super().__init__(message, grpc.StatusCode.UNAVAILABLE, OUTCOME_UNKNOWN)
        self.ttid = ttid

    @property
    def retryable(self) -> bool:
        return False


class NotFoundError(CellarError):
    """NOT_FOUND: reason NO_SUCH_OBJECT (no revision at all),
    NO_EARLIER_REVISION or NO_SUCH_REVISION."""


class CommitNotVisibleError(CellarError):
    """The transaction committed as ``tid`` but its invalidation did not
    reach this client in time (DEADLINE_EXCEEDED)."""

    def __init__(self, message: str, tid: int):
        super().__init__(message, grpc.StatusCode.DEADLINE_EXCEEDED)
        self.tid = tid


def _details(error: grpc.RpcError):
    """(reason, ConflictDetail or None) from the status details trailer."""
    reason, conflict = "", None
    try:
        trailers = error.trailing_metadata() or ()
    except Exception:  # not a call error
        return reason, conflict
    for key, value in trailers:
        if key != "grpc-status-details-bin":
            continue
        from google.rpc import error_details_pb2, status_pb2
        from cellar._pb import common_pb2
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:
            continue
        for any_ in status.details:
            if any_.type_url == _ERROR_INFO_URL:
                info = error_details_pb2.ErrorInfo()
                info.ParseFromString(any_.value)
                if not info.domain or info.domain == DOMAIN:
                    reason = info.reason
            elif any_.type_url == _CONFLICT_URL:
                conflict = common_pb2.ConflictDetail()
                conflict.ParseFromString(any_.value)
    return reason, conflict


def make_error(code: grpc.StatusCode, message: str, reason: str = "",
               conflict=None) -> CellarError:
    """The most specific CellarError for a status."""
    if code == grpc.StatusCode.ABORTED:
        if reason == CONFLICT and conflict is not None:
            return ConflictError(message, conflict.oid, conflict.current_serial,
                                 conflict.base_serial)
        return AbortedError(message, code, reason)
    if code == grpc.StatusCode.UNAVAILABLE:
        if reason == OUTCOME_UNKNOWN:
            return OutcomeUnknownError(message)
        return UnavailableError(message, code, reason)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(message, code, reason)
    return CellarError(message, code, reason)


def from_rpc_error(error: grpc.RpcError, context: Optional[str] = None) -> CellarError:
    """Converts a grpc.RpcError (a failed call) into a CellarError."""
    try:
        code = error.code()
        message = error.details() or ""
    except Exception:
        code, message = grpc.StatusCode.UNKNOWN, str(error)
    reason, conflict = _details(error)
    result = make_error(code, message, reason, conflict)
    if context:
        result.annotate(context)
    return result
