"""cellar.Client: the Python client of a cellar cluster.

It follows the C++ client (client/client.h) and the protocol in
protos/cellar/v1:

* Session: the constructor registers a client node at the first master
  that answers (``Master.RegisterNode``), opens ``Master.Watch`` on a
  background thread and returns once the first ClusterSnapshot arrived.
  The stream carries the partition table, the nodes, the cluster state
  and the invalidations of every commit, in tid order. When it breaks the
  client registers again (the masters are tried in order) and calls the
  reset listeners (invalidations may have been lost).
* Snapshot: the last tid whose invalidation was applied; it never
  decreases. ``load`` reads at it.
* Reads go to a readable cell (UP_TO_DATE, FEEDING) of partition(oid) on
  a reachable storage, rotating over replicas; a checksum mismatch,
  UNAVAILABLE or DEADLINE_EXCEEDED moves on to the next replica. Storages
  of a quarantined version (``NodeInfo.quarantined``, docs/rollouts.md)
  come after every other replica.
* A storage that does not answer (DEADLINE_EXCEEDED, or UNAVAILABLE from
  the transport) is reported to the master (``Master.ReportUnreachable``),
  asynchronously and at most once per ``report_unreachable_interval``
  seconds per storage; the master probes it and takes it DOWN at once if
  it does not answer either (docs/operations.md, "Unreachable storages").
* Commits: ``Master.Begin`` (ttid + token), ``Storage.Store`` with
  ``vote`` on every writable cell of each object's partition and the
  transaction record on every writable cell of partition(ttid),
  ``Master.Finish`` with the voters per partition and the conflict checks
  the stores reported, then a wait until the snapshot includes the tid
  (read-your-writes). A Finish without an answer is resolved with the
  primary (``GetTransactionStatus`` / ``Abort``); when it cannot tell,
  ``OutcomeUnknownError`` is raised. ``finish(on_tid)`` hands the
  committer its tid at the tid's place in the invalidation stream (the
  master publishes it before answering Finish: the watch thread waits for
  the answer), which is how ZODB's storage tells its own commits apart.

Thread-safe: any number of threads may load and commit at once. A
Transaction is used by one thread.

    client = cellar.Client("127.0.0.1:7100", cluster_name="cellar")
    oid = client.new_oid()
    with client.transaction(description=b"hello") as t:
        t.store(oid, 0, b"bytes")
    client.load(oid).data  # b"bytes"; t.tid is its serial
"""
import hashlib
import itertools
import logging
import random
import threading
import time
from typing import (Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import grpc

from cellar import errors
from cellar.errors import (AbortedError, CellarError, CommitNotVisibleError, ConflictError,
                           OutcomeUnknownError, UnavailableError)
from cellar._pb import common_pb2, master_pb2, master_pb2_grpc, storage_pb2, storage_pb2_grpc

log = logging.getLogger("cellar")

__all__ = ["Client", "Transaction", "LoadResult", "HistoryEntry", "TransactionRecord",
           "PackStatus", "SnapshotView", "MAX_TID", "MAX_OBJECT_BYTES"]

MAX_TID = (1 << 63) - 1
# Storage.LoadMany's limit per call.
_MAX_LOAD_MANY_OIDS = 1000
# Records one Storage.ScanTransactions call reads (1..1000).
_SCAN_PAGE = 1000
_STATUS_CODES = {c.value[0]: c for c in grpc.StatusCode}
# Largest object the storages accept by default (--max_object_bytes).
MAX_OBJECT_BYTES = 16 << 20
VERSION = "0.1.0"

_OID_BATCH = 100
_MAX_OBJECTS_PER_STORE = 10000
_MAX_BYTES_PER_STORE = 32 << 20
_MAX_MESSAGE_BYTES = 64 << 20

_READABLE = (common_pb2.CELL_UP_TO_DATE, common_pb2.CELL_FEEDING)
_WRITABLE = (common_pb2.CELL_UP_TO_DATE, common_pb2.CELL_OUT_OF_DATE, common_pb2.CELL_FEEDING)
# A Finish that ended with one of these may have committed.
_TRANSPORT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
              grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN)
_FATAL_REGISTRATION = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT,
                       grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


class LoadResult(NamedTuple):
    """One revision of an object."""
    oid: int
    # The revision's tid.
    serial: int
    # Tid of the next revision; 0 if this one is current (as far as the
    # answering storage knew).
    next_serial: int
    data: bytes
    # An undo record's source revision (``data`` is already its data); 0:
    # the revision has data of its own.
    data_serial: int = 0


class HistoryEntry(NamedTuple):
    """One revision in an object's history (newest first)."""
    serial: int
    size: int
    deleted: bool
    # Undo records: the serial whose data the revision re-uses (0: none).
    data_serial: int


class TransactionRecord(NamedTuple):
    """A committed transaction's record (Storage.LastTransactions)."""
    tid: int
    user: bytes
    description: bytes
    extension: bytes
    oids: Tuple[int, ...]
    size: int
    # Below a pack tid: some of its object revisions may be gone.
    packed: bool = False


class ClusterSize(NamedTuple):
    """The cluster's size (Client.size): each partition counted once."""
    # Oids whose latest revision is not a deletion.
    objects: int
    # Committed object revisions, deletions included.
    revisions: int
    # Bytes of object data of those revisions.
    bytes: int
    # Partitions counted, of num_partitions (fewer: no storage with a
    # readable cell of some partition answered; the counts are then low).
    partitions: int
    num_partitions: int


class PackStatus(NamedTuple):
    """The cluster's pack (Master.GetPackStatus), summed over the storages."""
    # The highest pack tid requested (0: none since the master started).
    pack_tid: int
    # Every connected storage holding cells packed its readable cells at
    # pack_tid.
    done: bool
    # Readable cells still to pack, and packed, over all storages.
    pending_cells: int
    done_cells: int
    # Since each storage started: object revisions removed, bytes reclaimed.
    rows_removed: int
    bytes_removed: int
    # "S<id>: <error>" for each storage that reported one.
    errors: Tuple[str, ...]

    @classmethod
    def from_proto(cls, status) -> "PackStatus":
        return cls(status.pack_tid, status.done,
                   sum(len(p.pending_partitions) for p in status.storages),
                   sum(len(p.done_partitions) for p in status.storages),
                   sum(p.rows_removed for p in status.storages),
                   sum(p.bytes_removed for p in status.storages),
                   tuple("%s: %s" % (_node_name(p.node_id), p.error)
                         for p in status.storages if p.error))


class SnapshotView(NamedTuple):
    """Client.snapshot_view(): what a cache of loaded revisions needs to
    know to stay coherent with the invalidation stream."""
    # The last tid whose invalidations were delivered to the listeners.
    snapshot: int
    # Changes each time the stream is replaced (twice per reset: when the
    # reset listeners are about to run, and when the new snapshot is
    # taken). Invalidations of one generation reach the listeners without
    # a gap.
    generation: int
    # False between the two changes of a reset: invalidations were lost
    # and the snapshot does not say what is known.
    settled: bool


def tid_hex(tid: int) -> str:
    return "0x%016x" % tid


def _node_name(node_id: int) -> str:
    return "S%d" % node_id


def _checksum(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()


class _Table:
    """An immutable partition table."""

    __slots__ = ("ptid", "num_partitions", "num_replicas", "rows")

    def __init__(self, ptid: int = 0, num_partitions: int = 0, num_replicas: int = 0,
                 rows: Sequence[Dict[int, int]] = ()):
        self.ptid = ptid
        self.num_partitions = num_partitions
        self.num_replicas = num_replicas
        self.rows = tuple(rows)  # partition -> {node_id: CellState}

    @classmethod
    def from_proto(cls, pt) -> "_Table":
        rows = [dict() for _ in range(pt.num_partitions)]
        for row in pt.rows:
            if row.partition >= pt.num_partitions:
                raise ValueError("partition %d out of range" % row.partition)
            rows[row.partition] = {cell.node_id: cell.state for cell in row.cells}
        return cls(pt.ptid, pt.num_partitions, pt.num_replicas, rows)

    def apply(self, delta) -> "_Table":
        rows = [dict(r) for r in self.rows]
        for change in delta.changes:
            if change.partition >= len(rows):
                raise ValueError("partition %d out of range" % change.partition)
            if change.state == common_pb2.CELL_DISCARDED:
                rows[change.partition].pop(change.node_id, None)
            else:
                rows[change.partition][change.node_id] = change.state
        return _Table(delta.ptid, self.num_partitions, self.num_replicas, rows)

    def partition_of(self, id_: int) -> int:
        return id_ % self.num_partitions if self.num_partitions else 0

    def readable(self, partition: int) -> List[int]:
        return sorted(n for n, s in self.rows[partition].items() if s in _READABLE)

    def writable(self, partition: int) -> List[int]:
        return sorted(n for n, s in self.rows[partition].items() if s in _WRITABLE)


class Client:
    """A connection to a cellar cluster (see the module documentation).

    ``masters``: "host:port" or a list of them (or one comma-separated
    string), tried in order. ``token``: a bearer token of role ``client``
    when the cluster runs with authentication (``token_file`` reads it
    from a file). ``tls_ca_file`` turns TLS on (the CA bundle the servers'
    certificates must chain to); ``tls_cert_file``/``tls_key_file`` are
    presented when the cluster asks for client certificates;
    ``tls_server_name`` replaces the dialled host in the name check.
    Timeouts are in seconds.

    Raises CellarError (FAILED_PRECONDITION for a wrong cluster name or
    protocol, UNAVAILABLE when no master gave a snapshot in time).
    """

    def __init__(self, masters: Union[str, Sequence[str]] = "127.0.0.1:7100",
                 cluster_name: str = "cellar", *, token: Optional[str] = None,
                 token_file: Optional[str] = None, tls_ca_file: Optional[str] = None,
                 tls_cert_file: Optional[str] = None, tls_key_file: Optional[str] = None,
                 tls_server_name: Optional[str] = None, rpc_timeout: float = 10.0,
                 connect_timeout: float = 10.0, commit_wait_timeout: float = 5.0,
                 max_reconnect_backoff: float = 0.5, version: str = VERSION,
                 track: str = "stable", report_unreachable: bool = True,
                 report_unreachable_interval: float = 1.0, pack_token: Optional[str] = None,
                 pack_token_file: Optional[str] = None):
        if isinstance(masters, str):
            masters = [m.strip() for m in masters.split(",") if m.strip()]
        self.masters = list(masters)
        if not self.masters:
            raise CellarError("no master address given", grpc.StatusCode.INVALID_ARGUMENT)
        self.cluster_name = cluster_name
        self.rpc_timeout = rpc_timeout
        self.connect_timeout = connect_timeout
        self.commit_wait_timeout = commit_wait_timeout
        self.max_reconnect_backoff = max_reconnect_backoff
        self.version = version
        self.track = track
        self.report_unreachable = report_unreachable
        self.report_unreachable_interval = report_unreachable_interval
        # Master.ReportUnreachable: storage id -> time of its last report,
        # and the reports sent / failed (best effort: only counted).
        self._report_lock = threading.Lock()
        self._last_report: Dict[int, float] = {}
        self.unreachable_reports = 0
        self.unreachable_reports_failed = 0
        self._reports_done = 0
        if token_file:
            with open(token_file) as f:
                token = f.read().strip()
        self._metadata = (("authorization", "Bearer " + token),) if token else None
        # pack(): Master.Pack needs role admin, which a client token has not.
        if pack_token_file:
            try:
                with open(pack_token_file) as f:
                    pack_token = f.read().strip()
            except OSError as e:
                raise CellarError("pack_token_file: cannot read '%s': %s" % (pack_token_file, e),
                                  grpc.StatusCode.INVALID_ARGUMENT)
            if not pack_token:
                raise CellarError("pack_token_file '%s' is empty" % pack_token_file,
                                  grpc.StatusCode.INVALID_ARGUMENT)
        self._pack_metadata = ((("authorization", "Bearer " + pack_token),) if pack_token
                               else self._metadata)
        self._has_pack_token = bool(pack_token)
        self._credentials = None
        self._channel_options = [("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                                 ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES)]
        if tls_ca_file or tls_cert_file or tls_key_file:
            def read(path, field):
                if not path:
                    return None
                try:
                    with open(path, "rb") as f:
                        return f.read()
                except OSError as e:
                    raise CellarError("%s: cannot read '%s': %s" % (field, path, e),
                                      grpc.StatusCode.INVALID_ARGUMENT)
            if bool(tls_cert_file) != bool(tls_key_file):
                raise CellarError("tls_cert_file and tls_key_file go together",
                                  grpc.StatusCode.INVALID_ARGUMENT)
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=read(tls_ca_file, "tls_ca_file"),
                private_key=read(tls_key_file, "tls_key_file"),
                certificate_chain=read(tls_cert_file, "tls_cert_file"))
            if tls_server_name:
                self._channel_options.append(("grpc.ssl_target_name_override", tls_server_name))
        self._channels: List[grpc.Channel] = []
        self._master_stubs = []
        for address in self.masters:
            channel = self._make_channel(address)
            self._channels.append(channel)
            self._master_stubs.append(master_pb2_grpc.MasterStub(channel))
        self._storage_stubs: Dict[str, storage_pb2_grpc.StorageStub] = {}

        self._cond = threading.Condition(threading.RLock())
        # Everything below is guarded by _cond.
        self._master = None
        self._node_id = 0
        self._snapshot = 0
        # snapshot_view(): see SnapshotView.
        self._generation = 0
        self._settled = True
        self._master_last_tid = 0
        self._epoch = 0
        self._sessions = 0
        self._connected = False
        self._closing = False
        self._fatal_error: Optional[CellarError] = None
        self._last_connect_error: Optional[CellarError] = None
        self._watch_call = None
        self._table = _Table()
        self._nodes: Dict[int, common_pb2.NodeInfo] = {}
        self._cluster_state = common_pb2.CLUSTER_STATE_UNSPECIFIED
        self._invalidation_listeners: List[Callable[[int, List[int]], None]] = []
        self._reset_listeners: List[Callable[[], None]] = []
        # Transaction.finish(on_tid): the ttids whose Finish is in flight,
        # and the hooks of committed tids whose invalidation has not been
        # handled yet (see _own_commit_hook).
        self._finishing: set = set()
        self._tid_hooks: Dict[int, "_TidHook"] = {}
        # The own tid the watch thread is delivering (its hook, then the
        # listeners), until the snapshot moved to it; 0 otherwise.
        self._own_delivery = 0
        self._round_robin = itertools.count(random.randrange(1 << 16))

        self._oid_lock = threading.Lock()
        self._next_oid = 0
        self._oids_left = 0
        self._oid_epoch = 0

        self._thread = threading.Thread(target=self._watch_loop, name="cellar-watch",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + connect_timeout
        with self._cond:
            while not self._connected and self._fatal_error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            connected, error = self._connected, self._fatal_error
            if not connected and error is None:
                error = UnavailableError(
                    "no master of cluster '%s' answered with a snapshot within %gs (tried %s)%s"
                    % (cluster_name, connect_timeout, ", ".join(self.masters),
                       ": %s" % self._last_connect_error if self._last_connect_error else ""),
                    grpc.StatusCode.UNAVAILABLE)
        if not connected:
            self.close()
            raise error

    # ------------------------------------------------------------------
    # Plumbing.

    def _make_channel(self, address: str) -> grpc.Channel:
        if self._credentials is not None:
            return grpc.secure_channel(address, self._credentials, self._channel_options)
        return grpc.insecure_channel(address, self._channel_options)

    def _call(self, method, request, context: str, timeout: Optional[float] = None,
              metadata=None):
        try:
            return method(request, timeout=timeout or self.rpc_timeout,
                          metadata=metadata or self._metadata)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e, context) from None

    def _report_unreachable(self, node_id: int, error: CellarError) -> None:
        """A call to storage ``node_id`` failed with ``error``: if that says
        the storage did not answer, tells the master without waiting."""
        if not self.report_unreachable:
            return
        if error.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            reason = master_pb2.UNREACHABLE_DEADLINE_EXCEEDED
        elif error.code == grpc.StatusCode.UNAVAILABLE and not error.reason:
            # An UNAVAILABLE with a reason (NOT_READABLE...) came from a
            # storage that is up.
            reason = master_pb2.UNREACHABLE_UNAVAILABLE
        else:
            return
        with self._cond:
            if not self._connected or self._closing or self._master is None:
                return
            stub, reporter = self._master, self._node_id
        now = time.monotonic()
        with self._report_lock:
            last = self._last_report.get(node_id)
            if last is not None and now - last < self.report_unreachable_interval:
                return
            self._last_report[node_id] = now
            self.unreachable_reports += 1
        request = master_pb2.ReportUnreachableRequest(node_id=node_id, reason=reason,
                                                      reporter_node_id=reporter)
        try:
            future = stub.ReportUnreachable.future(
                request, timeout=min(self.rpc_timeout, 5.0), metadata=self._metadata)
        except Exception:  # a closed channel: best effort
            self._report_done(None)
            return
        future.add_done_callback(self._report_done)

    def _report_done(self, future) -> None:
        failed = future is None or future.code() != grpc.StatusCode.OK
        with self._report_lock:
            self._reports_done += 1
            if failed:
                self.unreachable_reports_failed += 1

    def _storage_stub(self, node_id: int):
        with self._cond:
            node = self._nodes.get(node_id)
            if node is None or not node.address:
                return None
            stub = self._storage_stubs.get(node.address)
            if stub is None:
                channel = self._make_channel(node.address)
                self._channels.append(channel)
                stub = storage_pb2_grpc.StorageStub(channel)
                self._storage_stubs[node.address] = stub
            return stub

    def _reachable(self, node_id: int) -> bool:
        node = self._nodes.get(node_id)
        return (node is not None and bool(node.address)
                and node.state not in (common_pb2.NODE_DOWN, common_pb2.NODE_UNKNOWN))

    def _read_nodes(self, oid: int) -> List[int]:
        with self._cond:
            table = self._table
            if table.num_partitions == 0:
                return []
            nodes = [n for n in table.readable(table.partition_of(oid)) if self._reachable(n)]
            # Nodes of a quarantined version are tried last (docs/rollouts.md).
            quarantined = [n for n in nodes if self._nodes[n].quarantined]
            nodes = [n for n in nodes if not self._nodes[n].quarantined]
        groups = []
        for group in (nodes, quarantined):
            if len(group) > 1:
                start = next(self._round_robin) % len(group)
                group = group[start:] + group[:start]
            groups.extend(group)
        return groups

    # ------------------------------------------------------------------
    # Session and the Watch stream (background thread).

    def _establish_session(self):
        last_error: CellarError = UnavailableError("no master address")
        fatal = None
        for index, stub in enumerate(self._master_stubs):
            address = self.masters[index]
            request = master_pb2.RegisterNodeRequest(
                cluster_name=self.cluster_name,
                protocol_version=common_pb2.PROTOCOL_VERSION_1,
                role=common_pb2.NODE_ROLE_CLIENT, version=self.version, build_id="python",
                track=self.track)
            with self._cond:
                if self._closing:
                    return None
            try:
                response = self._call(stub.RegisterNode, request, "master %s" % address,
                                      min(self.rpc_timeout, self.connect_timeout))
            except CellarError as e:
                last_error = e
                if e.code in _FATAL_REGISTRATION and fatal is None:
                    fatal = e
                continue
            call = stub.Watch(master_pb2.WatchRequest(node_id=response.node_id),
                              metadata=self._metadata)
            with self._cond:
                if self._closing:
                    call.cancel()
                    return None
                self._watch_call = call
            try:
                first = next(call)
            except grpc.RpcError as e:
                last_error = errors.from_rpc_error(e, "master %s Watch" % address)
                continue
            except StopIteration:
                last_error = UnavailableError("master %s Watch ended at once" % address,
                                              grpc.StatusCode.UNAVAILABLE)
                continue
            if not first.HasField("snapshot"):
                call.cancel()
                last_error = UnavailableError("master %s: Watch did not start with a snapshot"
                                              % address, grpc.StatusCode.UNAVAILABLE)
                continue
            self._install_session(stub, response, first.snapshot)
            return call, index
        raise fatal if fatal is not None else last_error

    def _call_reset_listeners(self) -> None:
        with self._cond:
            listeners = list(self._reset_listeners)
            # Until _take_snapshot: the snapshot says nothing (SnapshotView).
            self._generation += 1
            self._settled = False
        for listener in listeners:
            try:
                listener()
            except Exception:
                log.exception("cellar: reset listener failed")

    def _install_session(self, stub, response, snapshot) -> None:
        with self._cond:
            reconnection = self._sessions > 0
        if reconnection:
            # Before the new snapshot is visible (see add_reset_listener).
            self._call_reset_listeners()
        with self._cond:
            self._reset_view(snapshot)
            self._master = stub
            self._node_id = response.node_id
            self._epoch = snapshot.epoch or response.epoch
            self._take_snapshot(snapshot)
            self._sessions += 1
            self._connected = True
            self._cond.notify_all()

    def _reset_view(self, snapshot) -> None:
        try:
            self._table = _Table.from_proto(snapshot.partition_table)
        except ValueError as e:
            log.warning("cellar: bad partition table in the master's snapshot: %s", e)
        self._nodes = {n.node_id: n for n in snapshot.nodes}
        self._cluster_state = snapshot.cluster_state

    def _take_snapshot(self, snapshot) -> None:
        self._generation += 1
        self._settled = True
        self._master_last_tid = snapshot.last_tid
        if snapshot.last_tid < self._snapshot:
            log.info("cellar: the master reports last tid %s, behind this client's snapshot %s:"
                     " keeping the snapshot", tid_hex(snapshot.last_tid),
                     tid_hex(self._snapshot))
        self._snapshot = max(self._snapshot, snapshot.last_tid)
        # Commits the snapshot already covers get no invalidation of their
        # own: their finish runs the hook itself.
        for tid in [t for t in self._tid_hooks if t <= self._snapshot]:
            del self._tid_hooks[tid]

    def _watch_loop(self) -> None:
        backoff = 0.05
        while True:
            with self._cond:
                if self._closing:
                    break
            try:
                session = self._establish_session()
            except CellarError as e:
                with self._cond:
                    self._last_connect_error = e
                    if self._closing:
                        break
                    if self._sessions == 0 and e.code in _FATAL_REGISTRATION:
                        self._fatal_error = e
                        self._cond.notify_all()
                        break
                    if self._sessions > 0:
                        log.warning("cellar: reconnecting to the master: %s", e)
                    self._cond.wait(backoff)
                    backoff = min(backoff * 2, self.max_reconnect_backoff)
                continue
            if session is None:
                break
            backoff = 0.05
            call, _ = session
            end = None
            try:
                for event in call:
                    self._handle_event(event)
            except grpc.RpcError as e:
                end = e
            except Exception:
                log.exception("cellar: error handling a cluster event")
                call.cancel()
            with self._cond:
                self._watch_call = None
                self._connected = False
                closing = self._closing
                self._cond.notify_all()
            if not closing:
                log.warning("cellar: master Watch stream ended (%s): registering again",
                            end.code() if end is not None else "OK")
        with self._cond:
            self._connected = False
            self._cond.notify_all()

    def _handle_event(self, event) -> None:
        kind = event.WhichOneof("event")
        if kind == "invalidation":
            tid = event.invalidation.tid
            oids = list(event.invalidation.oids)
            with self._cond:
                hook = self._own_commit_hook(tid)
                if hook is not None:
                    self._own_delivery = tid
                listeners = list(self._invalidation_listeners)
            # The hook and the listeners first: whoever sees the new
            # snapshot must find the invalidation delivered (ZODB polls
            # lastTransaction()).
            if hook is not None:
                try:
                    hook.function(tid, True)
                except Exception:
                    log.exception("cellar: on_tid hook of tid %s failed", tid_hex(tid))
                finally:
                    with self._cond:
                        hook.state = _TidHook.DONE
                        self._cond.notify_all()
            for listener in listeners:
                try:
                    listener(tid, oids)
                except Exception:
                    log.exception("cellar: invalidation listener failed")
            with self._cond:
                self._snapshot = max(self._snapshot, tid)
                self._master_last_tid = max(self._master_last_tid, tid)
                self._own_delivery = 0
                self._cond.notify_all()
            return
        if kind == "snapshot" and self.session_count > 0:
            self._call_reset_listeners()
        refresh = False
        with self._cond:
            if kind == "snapshot":
                self._reset_view(event.snapshot)
                if event.snapshot.epoch:
                    self._epoch = event.snapshot.epoch
                self._take_snapshot(event.snapshot)
            elif kind == "partition_table_delta":
                delta = event.partition_table_delta
                if delta.ptid <= self._table.ptid:
                    pass
                elif delta.ptid != self._table.ptid + 1:
                    refresh = True
                else:
                    try:
                        self._table = self._table.apply(delta)
                    except ValueError:
                        refresh = True
            elif kind == "partition_table":
                try:
                    self._table = _Table.from_proto(event.partition_table)
                except ValueError:
                    refresh = True
            elif kind == "node":
                self._nodes[event.node.node_id] = event.node
            elif kind == "cluster_state":
                self._cluster_state = event.cluster_state
            self._cond.notify_all()
        if refresh:
            self._refresh_table()

    def _own_commit_hook(self, tid: int) -> Optional["_TidHook"]:
        """(Under _cond, on the watch thread, for the invalidation of
        ``tid``.) The on_tid hook of this client's own commit ``tid``
        (Transaction.finish), marked running; None for anyone else's.

        The event may be read before the Finish answer that tells its tid:
        while Finishes with a hook that were in flight when it arrived are
        still waiting for their answer, this waits for them (each is bounded
        by rpc_timeout; a Finish sent after the event was read commits a
        later tid). Past rpc_timeout + 1 s it gives up: the tid is then
        delivered as anyone's, which is only slower for the committer."""
        if tid <= self._snapshot:
            return None  # a repeat (a recovered commit, a new primary): nobody's own
        hook = self._tid_hooks.get(tid)
        in_flight = set(self._finishing)
        if hook is None and in_flight:
            deadline = time.monotonic() + self.rpc_timeout + 1
            while (tid not in self._tid_hooks and not self._closing
                   and not in_flight.isdisjoint(self._finishing)):
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("cellar: the invalidation of tid %s waited %gs for this client's"
                                " Finish answers: delivered as another client's",
                                tid_hex(tid), self.rpc_timeout + 1)
                    break
                self._cond.wait(left)
            hook = self._tid_hooks.get(tid)
        if hook is None:
            return None
        del self._tid_hooks[tid]
        hook.state = _TidHook.RUNNING
        return hook

    def _expect_own_tid(self, ttid: int, tid: int,
                        function: Callable[[int, bool], None]) -> Optional["_TidHook"]:
        """The Finish of ``ttid`` ended (``tid`` 0: failed). If ``tid``'s
        invalidation is still to come, the watch thread will run
        ``function`` for it (returns the hook)."""
        with self._cond:
            self._finishing.discard(ttid)
            hook = None
            if tid > self._snapshot and not self._closing:
                hook = self._tid_hooks[tid] = _TidHook(function)
            self._cond.notify_all()
            return hook

    def _settle_own_tid(self, tid: int, hook: Optional["_TidHook"]) -> bool:
        """After the wait for ``tid``: True if the watch thread did not
        take ``hook`` (the caller runs its function itself), False once it
        ran there."""
        with self._cond:
            if hook is None or hook.state == _TidHook.PENDING:
                if hook is not None and self._tid_hooks.get(tid) is hook:
                    del self._tid_hooks[tid]
                return True
            while hook.state == _TidHook.RUNNING:
                self._cond.wait()
            return False

    def _refresh_table(self) -> None:
        try:
            info = self.cluster_info()
        except CellarError as e:
            log.warning("cellar: could not fetch the partition table: %s", e)
            return
        with self._cond:
            try:
                self._table = _Table.from_proto(info.partition_table)
            except ValueError as e:
                log.warning("cellar: bad partition table from GetClusterInfo: %s", e)
            self._nodes = {n.node_id: n for n in info.nodes}
            self._cluster_state = info.cluster_state
            self._cond.notify_all()

    # ------------------------------------------------------------------
    # State.

    @property
    def snapshot(self) -> int:
        """The last tid whose invalidations were applied."""
        with self._cond:
            return self._snapshot

    def snapshot_view(self) -> SnapshotView:
        """The snapshot with its generation, read together (SnapshotView):
        a cache of loaded revisions reads it before a load and again when
        it stores the answer."""
        with self._cond:
            return SnapshotView(self._snapshot, self._generation, self._settled)

    def settled_snapshot(self) -> int:
        """The snapshot, after this client's own commit whose on_tid hook
        is running on the watch thread (and then its listeners) got there:
        as FileStorage's lastTransaction() waits for its commit lock, so a
        reader that already loads the commit's data sees its tid (ZODB's
        test_tid_ordering_w_commit). At most rpc_timeout; the watch thread
        itself does not wait."""
        with self._cond:
            if self._own_delivery and threading.current_thread() is not self._thread:
                deadline = time.monotonic() + self.rpc_timeout
                while self._own_delivery and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        log.warning("cellar: the delivery of this client's tid %s is still"
                                    " running after %gs", tid_hex(self._own_delivery),
                                    self.rpc_timeout)
                        break
                    self._cond.wait(left)
            return self._snapshot

    @property
    def node_id(self) -> int:
        """This session's client node id (changes on reconnection)."""
        with self._cond:
            return self._node_id

    @property
    def cluster_state(self) -> int:
        """The cluster state (cellar.v1.ClusterState) as last pushed."""
        with self._cond:
            return self._cluster_state

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    @property
    def session_count(self) -> int:
        with self._cond:
            return self._sessions

    @property
    def num_partitions(self) -> int:
        with self._cond:
            return self._table.num_partitions

    def partition_of(self, id_: int) -> int:
        """partition(id) = id % P (an oid's, or a ttid's)."""
        with self._cond:
            return self._table.partition_of(id_)

    def add_invalidation_listener(self, listener: Callable[[int, List[int]], None]) -> None:
        """``listener(tid, oids)`` is called on the watch thread for each
        committed transaction (this client's own included), in tid order,
        just before the snapshot moves to ``tid`` (so that a reader who
        sees the new snapshot finds the invalidation delivered). It must
        not block for long nor wait for the snapshot."""
        with self._cond:
            self._invalidation_listeners.append(listener)

    def remove_invalidation_listener(self, listener) -> None:
        with self._cond:
            if listener in self._invalidation_listeners:
                self._invalidation_listeners.remove(listener)

    def add_reset_listener(self, listener: Callable[[], None]) -> None:
        """``listener()`` is called when a new session replaces a broken
        one (or the master sends a new snapshot), before its snapshot is
        taken: invalidations may have been lost, drop every cached
        object."""
        with self._cond:
            self._reset_listeners.append(listener)

    def remove_reset_listener(self, listener) -> None:
        with self._cond:
            if listener in self._reset_listeners:
                self._reset_listeners.remove(listener)

    def await_session(self, min_sessions: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closing and not (self._connected and self._sessions >= min_sessions):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return not self._closing

    def _wait_for_snapshot(self, tid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._snapshot < tid and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._snapshot >= tid

    def _await_connected(self) -> None:
        """Waits (at most rpc_timeout) for a session with a master: across a
        master restart or failover, master calls see latency, not an error."""
        deadline = time.monotonic() + self.rpc_timeout
        with self._cond:
            while True:
                if self._closing:
                    raise CellarError("client closed", grpc.StatusCode.CANCELLED)
                if self._connected and self._master is not None:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise UnavailableError(
                        "not connected to the master (reconnecting for %gs)" % self.rpc_timeout,
                        grpc.StatusCode.UNAVAILABLE)
                self._cond.wait(left)

    def _await_master_caught_up(self, tid: int) -> None:
        deadline = time.monotonic() + self.rpc_timeout
        with self._cond:
            while True:
                if self._closing:
                    raise CellarError("client closed", grpc.StatusCode.CANCELLED)
                if (self._master_last_tid >= tid
                        or self._cluster_state == common_pb2.CLUSTER_RUNNING):
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise UnavailableError(
                        "the master's last tid %s is still behind this client's snapshot %s and"
                        " the cluster is not RUNNING: retry later"
                        % (tid_hex(self._master_last_tid), tid_hex(tid)),
                        grpc.StatusCode.UNAVAILABLE)
                self._cond.wait(left)

    def _current_master(self):
        with self._cond:
            if self._closing:
                raise CellarError("client closed", grpc.StatusCode.CANCELLED)
            if self._master is None:
                raise UnavailableError("not connected", grpc.StatusCode.UNAVAILABLE)
            return self._master

    def close(self) -> None:
        """Closes the Watch stream (the master then treats the client as
        gone) and the channels. Idempotent."""
        with self._cond:
            self._closing = True
            call = self._watch_call
            self._cond.notify_all()
        if call is not None:
            call.cancel()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5)
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------
    # Master calls.

    def new_oid(self) -> int:
        """A new OID, from batches allocated by the master. A batch
        allocated under an earlier master epoch is dropped unused."""
        with self._oid_lock:
            if not self._oids_left:
                # A new batch needs a master: across a restart or failover, wait.
                self._await_connected()
            with self._cond:
                epoch = self._epoch
            if self._oids_left and self._oid_epoch != epoch:
                self._oids_left = 0
            if not self._oids_left:
                response = self._call(self._current_master().AllocateOids,
                                      master_pb2.AllocateOidsRequest(count=_OID_BATCH),
                                      "AllocateOids")
                if not response.count:
                    raise CellarError("AllocateOids returned no OID", grpc.StatusCode.INTERNAL)
                self._next_oid, self._oids_left, self._oid_epoch = (
                    response.first_oid, response.count, epoch)
            self._oids_left -= 1
            self._next_oid += 1
            return self._next_oid - 1

    def cluster_info(self) -> master_pb2.GetClusterInfoResponse:
        """Master.GetClusterInfo."""
        return self._call(self._current_master().GetClusterInfo,
                          master_pb2.GetClusterInfoRequest(), "GetClusterInfo")

    def sync(self) -> None:
        """Waits until the snapshot reaches the master's last tid (asked
        now). CellarError DEADLINE_EXCEEDED after rpc_timeout."""
        last_tid = self.cluster_info().last_tid
        if not self._wait_for_snapshot(last_tid, self.rpc_timeout):
            raise CellarError("snapshot %s did not reach the master's %s within %gs"
                              % (tid_hex(self.snapshot), tid_hex(last_tid), self.rpc_timeout),
                              grpc.StatusCode.DEADLINE_EXCEEDED)

    def pack_status(self) -> PackStatus:
        """Master.GetPackStatus (role readonly: the ``pack_token`` if one
        was given, else the client's token, which has no such role: see
        ``pack``)."""
        self._await_connected()
        return PackStatus.from_proto(self._pack_call("GetPackStatus",
                                                     master_pb2.GetPackStatusRequest()).status)

    def pack(self, pack_tid: int, timeout: float = 3600.0,
             max_poll_interval: float = 1.0) -> PackStatus:
        """Packs the cluster at ``pack_tid`` (Master.Pack, docs/lifecycle.md:
        every object revision older than the one current at ``pack_tid`` is
        removed; no garbage collection of unreachable objects) and waits
        until every storage holding cells is done (polling
        Master.GetPackStatus, at most ``timeout`` seconds). Asks again if
        the master forgot the request (a new primary whose storages had not
        been asked). A lower ``pack_tid`` than one already requested
        changes nothing and returns once that one is done.

        Master.Pack needs role admin: with authentication on, give an admin
        token as ``pack_token``/``pack_token_file`` (only these calls use
        it); otherwise PERMISSION_DENIED says so. FAILED_PRECONDITION when
        the master refuses (beyond the last committed tid, a replica check
        running, cluster not RUNNING); DEADLINE_EXCEEDED after ``timeout``
        with the progress and the storages' errors."""
        if pack_tid <= 0 or pack_tid > MAX_TID:
            raise CellarError("pack_tid must be in 1..%s" % tid_hex(MAX_TID),
                              grpc.StatusCode.INVALID_ARGUMENT)
        if not timeout > 0:
            raise CellarError("timeout must be > 0", grpc.StatusCode.INVALID_ARGUMENT)
        deadline = time.monotonic() + timeout
        request = master_pb2.PackRequest(pack_tid=pack_tid)
        pause = 0.02
        status: Optional[PackStatus] = None
        while True:
            try:
                self._await_connected()
                if status is None or status.pack_tid < pack_tid:
                    status = PackStatus.from_proto(self._pack_call("Pack", request).status)
                else:
                    status = self.pack_status()
            except CellarError as e:
                # A master restart or failover: ask the next primary.
                if e.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)\
                        or time.monotonic() + pause > deadline:
                    raise
                log.warning("cellar: pack at %s: %s: asking again", tid_hex(pack_tid), e)
                status = None
            if status is not None and status.done and status.pack_tid >= pack_tid:
                return status
            if time.monotonic() + pause > deadline:
                raise CellarError(
                    "pack at %s not done within %gs: %s" % (
                        tid_hex(pack_tid), timeout,
                        "no answer from the master" if status is None else
                        "pack tid %s, %d cell(s) packed, %d to go%s" % (
                            tid_hex(status.pack_tid), status.done_cells, status.pending_cells,
                            "; errors: " + "; ".join(status.errors) if status.errors else "")),
                    grpc.StatusCode.DEADLINE_EXCEEDED)
            time.sleep(pause)
            pause = min(pause * 2, max_poll_interval)

    def _pack_call(self, method: str, request):
        try:
            return self._call(getattr(self._current_master(), method), request, method,
                              metadata=self._pack_metadata)
        except CellarError as e:
            if e.code == grpc.StatusCode.PERMISSION_DENIED:
                raise CellarError(
                    "Master.%s needs a token of role %s, which %s has not (%s): give an admin"
                    " token as pack_token_file (ZConfig pack-token-file; docs/zodb.md)"
                    % (method, "admin" if method == "Pack" else "readonly or admin",
                       "the pack_token" if self._has_pack_token else "this client's token",
                       e.message), grpc.StatusCode.PERMISSION_DENIED) from None
            raise

    # ------------------------------------------------------------------
    # Reads.

    def load(self, oid: int) -> LoadResult:
        """The revision of ``oid`` visible at the current snapshot.
        NotFoundError (reason NO_SUCH_OBJECT) if it has none."""
        return self.load_before(oid, min(self.snapshot + 1, MAX_TID))

    def load_before(self, oid: int, before_tid: int) -> LoadResult:
        """The newest revision with serial < before_tid (ZODB loadBefore).
        NotFoundError with reason NO_SUCH_OBJECT or NO_EARLIER_REVISION."""
        if before_tid <= 0:
            raise CellarError("before_tid must be positive", grpc.StatusCode.INVALID_ARGUMENT)
        self._await_master_caught_up(min(before_tid - 1, self.snapshot))
        return self._load(oid, storage_pb2.LoadRequest(oid=oid, before_tid=before_tid))

    def load_serial(self, oid: int, serial: int) -> LoadResult:
        """Exactly the revision ``serial`` (ZODB loadSerial)."""
        return self._load(oid, storage_pb2.LoadRequest(oid=oid, serial=serial))

    def _load(self, oid: int, request) -> LoadResult:
        nodes = self._read_nodes(oid)
        last_error: Optional[CellarError] = None
        only_checksum = True
        for node_id in nodes:
            stub = self._storage_stub(node_id)
            if stub is None:
                continue
            try:
                response = self._call(stub.Load, request, _node_name(node_id))
            except CellarError as e:
                if e.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                self._report_unreachable(node_id, e)
                only_checksum = False
                last_error = e
                continue
            if _checksum(response.data) != response.checksum:
                log.warning("cellar: checksum mismatch loading oid 0x%x serial %s from %s:"
                            " trying another replica", oid, tid_hex(response.serial),
                            _node_name(node_id))
                last_error = CellarError("checksum mismatch for oid 0x%x on %s"
                                         % (oid, _node_name(node_id)),
                                         grpc.StatusCode.DATA_LOSS, errors.CHECKSUM_MISMATCH)
                continue
            return LoadResult(oid, response.serial, response.next_serial, response.data,
                              response.data_serial)
        if last_error is None:
            raise UnavailableError("no readable cell for oid 0x%x" % oid,
                                   grpc.StatusCode.UNAVAILABLE, errors.NOT_READABLE)
        if not only_checksum and last_error.code == grpc.StatusCode.DATA_LOSS:
            raise UnavailableError("no replica of oid 0x%x answered correctly (last: %s)"
                                   % (oid, last_error.message), grpc.StatusCode.UNAVAILABLE)
        raise last_error

    def load_many(self, oids: Sequence[int],
                  before_tid: Optional[int] = None) -> List[Union[LoadResult, CellarError]]:
        """Many objects in one Storage.LoadMany call per storage (ZODB
        prefetch, cold reads). Element i is what ``load_before(oids[i],
        before_tid)`` returns, or the CellarError it would raise (for
        example NotFoundError). ``before_tid`` defaults to the current
        snapshot + 1 (what ``load`` reads). An object a storage could not
        serve, and every object of a storage without LoadMany (an older
        version), is loaded alone, trying the other replicas."""
        if before_tid is None:
            before_tid = min(self.snapshot + 1, MAX_TID)
        if before_tid <= 0:
            raise CellarError("before_tid must be positive", grpc.StatusCode.INVALID_ARGUMENT)
        results: List[Union[LoadResult, CellarError, None]] = [None] * len(oids)
        if not oids:
            return []
        self._await_master_caught_up(min(before_tid - 1, self.snapshot))
        by_node: Dict[int, List[int]] = {}
        fallback: List[int] = []
        for i, oid in enumerate(oids):
            nodes = self._read_nodes(oid)
            if nodes:
                by_node.setdefault(nodes[0], []).append(i)
            else:
                fallback.append(i)
        for node_id, indexes in by_node.items():
            fallback.extend(self._load_many_from(node_id, oids, indexes, before_tid, results))
        for i in fallback:
            try:
                results[i] = self._load(oids[i], storage_pb2.LoadRequest(
                    oid=oids[i], before_tid=before_tid))
            except CellarError as e:
                results[i] = e
        return results  # type: ignore[return-value]

    def _load_many_from(self, node_id: int, oids: Sequence[int], indexes: List[int],
                        before_tid: int, results: list) -> List[int]:
        """One storage's share of load_many; returns the indexes to load alone."""
        stub = self._storage_stub(node_id)
        fallback: List[int] = []
        done = 0
        while stub is not None and done < len(indexes):
            batch = indexes[done:done + _MAX_LOAD_MANY_OIDS]
            request = storage_pb2.LoadManyRequest(oids=[oids[i] for i in batch],
                                                  before_tid=before_tid)
            try:
                response = self._call(stub.LoadMany, request, _node_name(node_id))
            except CellarError as e:
                self._report_unreachable(node_id, e)
                break  # UNIMPLEMENTED (older storage), unreachable, ...
            answered = len(response.results)
            if answered == 0 or answered > len(batch):
                break
            for i, r in zip(batch, response.results):
                if r.code != 0:
                    e = errors.make_error(_STATUS_CODES.get(r.code, grpc.StatusCode.UNKNOWN),
                                          r.message, r.reason)
                    if e.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        fallback.append(i)
                    else:
                        results[i] = e
                    continue
                rev = r.revision
                if rev.oid != oids[i] or _checksum(rev.data) != rev.checksum:
                    log.warning("cellar: checksum or oid mismatch in LoadMany of oid 0x%x from %s:"
                                " trying another replica", oids[i], _node_name(node_id))
                    fallback.append(i)
                    continue
                results[i] = LoadResult(oids[i], rev.serial, rev.next_serial, rev.data,
                                        rev.data_serial)
            done += answered
        fallback.extend(indexes[done:])
        return fallback

    def _read_replicas(self, id_: int, what: str, method: str, request):
        """Calls Storage.<method> on the storages with a readable cell of
        partition(id_) in turn, until one answers or fails with an error
        another replica would not change."""
        last_error: CellarError = UnavailableError(
            "no readable cell for %s" % what, grpc.StatusCode.UNAVAILABLE, errors.NOT_READABLE)
        for node_id in self._read_nodes(id_):
            stub = self._storage_stub(node_id)
            if stub is None:
                continue
            try:
                return self._call(getattr(stub, method), request, _node_name(node_id))
            except CellarError as e:
                if e.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                self._report_unreachable(node_id, e)
                last_error = e
        raise last_error

    def history(self, oid: int, limit: int = 100) -> List[HistoryEntry]:
        """Revisions of ``oid``, newest first (at most ``limit``, 1..1000)."""
        response = self._read_replicas(oid, "oid 0x%x" % oid, "History",
                                       storage_pb2.HistoryRequest(oid=oid, limit=limit))
        return [HistoryEntry(r.serial, r.size_bytes, r.deleted, r.data_serial)
                for r in response.revisions]

    def get_transaction(self, tid: int) -> TransactionRecord:
        """The committed transaction ``tid`` (user, description, extension,
        the oids it wrote), from a readable cell of partition(tid) (a
        transaction's record lives there). NotFoundError (reason
        NO_SUCH_TRANSACTION) if no transaction has that tid."""
        if tid <= 0 or tid > MAX_TID:
            raise CellarError("tid must be in 1..%s" % tid_hex(MAX_TID),
                              grpc.StatusCode.INVALID_ARGUMENT)
        t = self._read_replicas(tid, "transaction %s" % tid_hex(tid), "GetTransaction",
                                storage_pb2.GetTransactionRequest(tid=tid)).transaction
        return TransactionRecord(t.tid, t.user, t.description, t.extension,
                                 tuple(t.oids), t.size_bytes)

    def _running_storages(self) -> List[int]:
        with self._cond:
            return sorted(n.node_id for n in self._nodes.values()
                          if n.role == common_pb2.NODE_ROLE_STORAGE
                          and n.state == common_pb2.NODE_RUNNING and n.address)

    def size(self) -> ClusterSize:
        """Objects, revisions and bytes of the cluster: every running
        storage's Storage.GetPartitionStats, each partition counted once
        from a readable cell. UnavailableError only if no storage answered."""
        counted = set()
        objects = revisions = size = 0
        answered = False
        last_error: Optional[CellarError] = None
        for node_id in self._running_storages():
            stub = self._storage_stub(node_id)
            if stub is None:
                continue
            try:
                response = self._call(stub.GetPartitionStats,
                                      storage_pb2.GetPartitionStatsRequest(), _node_name(node_id))
            except CellarError as e:
                last_error = e
                continue
            answered = True
            for p in response.partitions:
                if p.readable and p.partition not in counted:
                    counted.add(p.partition)
                    objects += p.objects
                    revisions += p.revisions
                    size += p.bytes
        if not answered:
            raise last_error or UnavailableError("no running storage node",
                                                 grpc.StatusCode.UNAVAILABLE)
        return ClusterSize(objects, revisions, size, len(counted), self.num_partitions)

    def last_transactions(self, limit: int = 10,
                          before_tid: Optional[int] = None) -> List[TransactionRecord]:
        """The last ``limit`` (1..1000) committed transactions cluster-wide,
        newest first, up to this client's snapshot (or below
        ``before_tid``): every running storage is asked, answers are
        merged by tid. UnavailableError only if no storage answered."""
        nodes = self._running_storages()
        snapshot = self.snapshot
        if not nodes:
            raise UnavailableError("no running storage node", grpc.StatusCode.UNAVAILABLE)
        bound = snapshot + 1 if snapshot and snapshot < MAX_TID else 0
        if before_tid:
            bound = min(bound, before_tid) if bound else before_tid
        request = storage_pb2.LastTransactionsRequest(limit=limit, before_tid=bound)
        merged = {}
        answered = 0
        last_error = None
        for node_id in nodes:
            stub = self._storage_stub(node_id)
            if stub is None:
                continue
            try:
                response = self._call(stub.LastTransactions, request, _node_name(node_id))
            except CellarError as e:
                log.warning("cellar: LastTransactions on %s: %s", _node_name(node_id), e)
                last_error = e
                continue
            answered += 1
            for t in response.transactions:
                merged.setdefault(t.tid, t)
        if not answered:
            raise last_error or UnavailableError("no storage answered",
                                                 grpc.StatusCode.UNAVAILABLE)
        out = []
        for tid in sorted(merged, reverse=True)[:limit or 10]:
            t = merged[tid]
            out.append(TransactionRecord(t.tid, t.user, t.description, t.extension,
                                         tuple(t.oids), t.size_bytes))
        return out

    def iter_transactions(self, start: int = 0, stop: Optional[int] = None,
                          page: int = _SCAN_PAGE) -> Iterator[TransactionRecord]:
        """Every committed transaction with ``start <= tid <= stop`` (``stop``
        at most this client's snapshot, its default), in tid order, once
        each: ZODB's iterator. Each partition is read from one readable
        cell (Storage.ScanTransactions, ``page`` records a call); the
        storages' answers are merged by tid. A storage that fails with
        UNAVAILABLE (NOT_READABLE after a table change, unreachable...)
        has its partitions read again from another replica, from where
        it stopped. UnavailableError when some partition has no readable
        cell left."""
        self._await_connected()
        last = self.snapshot if stop is None else min(stop, self.snapshot)
        start = max(start, 0)
        if last <= 0 or start > last:
            return
        self._await_master_caught_up(last)
        with self._cond:
            table = self._table
        cursors = self._plan_scan(range(table.num_partitions), start, set())
        # Every record with a tid <= a cursor's `listed` is in its buffer
        # (or was yielded); the smallest of them is how far the merge may go.
        while True:
            pending = [c for c in cursors if c.listed < last]
            bound = min([c.listed for c in pending], default=last)
            ready = sorted((t for c in cursors for t in c.buffer if t.tid <= bound),
                           key=lambda t: t.tid)
            for c in cursors:
                c.buffer = [t for t in c.buffer if t.tid > bound]
            for t in ready:
                yield TransactionRecord(t.tid, t.user, t.description, t.extension,
                                        tuple(t.oids), t.size_bytes, t.packed)
            if not pending:
                return
            cursor = min(pending, key=lambda c: c.listed)
            request = storage_pb2.ScanTransactionsRequest(
                partitions=cursor.partitions, min_tid=cursor.listed + 1, max_tid=last,
                limit=page)
            stub = self._storage_stub(cursor.node_id)
            try:
                if stub is None:
                    raise UnavailableError("%s has no address" % _node_name(cursor.node_id),
                                           grpc.StatusCode.UNAVAILABLE)
                response = self._call(stub.ScanTransactions, request,
                                      _node_name(cursor.node_id))
            except CellarError as e:
                if e.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                self._report_unreachable(cursor.node_id, e)
                log.warning("cellar: ScanTransactions on %s: %s: reading its partitions from"
                            " another replica", _node_name(cursor.node_id), e)
                cursors.remove(cursor)
                cursor.failed.add(cursor.node_id)
                cursors.extend(self._plan_scan(cursor.partitions, cursor.listed + 1,
                                               cursor.failed, cursor.buffer))
                continue
            cursor.buffer.extend(t for t in response.transactions
                                 if cursor.listed < t.tid <= last)
            cursor.listed = response.next_min_tid - 1 if response.next_min_tid else last

    def _plan_scan(self, partitions: Iterable[int], start: int, failed: set,
                   buffer: Sequence = ()) -> List["_ScanCursor"]:
        """One cursor per storage, reading ``partitions`` from ``start``,
        each partition from a readable cell of a storage not in ``failed``."""
        by_node: Dict[int, List[int]] = {}
        with self._cond:
            table = self._table
            for p in partitions:
                nodes = [n for n in table.readable(p) if self._reachable(n) and n not in failed]
                if not nodes:
                    raise UnavailableError(
                        "no readable cell of partition %d to list its transactions" % p,
                        grpc.StatusCode.UNAVAILABLE, errors.NOT_READABLE)
                by_node.setdefault(nodes[next(self._round_robin) % len(nodes)], []).append(p)
        cursors = [_ScanCursor(n, ps, start - 1, set(failed)) for n, ps in by_node.items()]
        if cursors:
            cursors[0].buffer = list(buffer)
        return cursors

    # ------------------------------------------------------------------
    # Commits.

    def transaction(self, user: bytes = b"", description: bytes = b"",
                    extension: bytes = b"", tid: int = 0) -> "Transaction":
        """A new transaction. As a context manager it commits on a normal
        exit and aborts on an exception:

            with client.transaction() as t:
                t.store(oid, serial_read, b"data")
            t.tid  # the committed tid

        ``tid`` (restore, e.g. zodbconvert): commit with this tid instead of
        one the master picks (BeginRequest.tid). It must be above every tid
        the cluster handed out and at most 10 minutes ahead of the master's
        clock, else the vote raises (FAILED_PRECONDITION /
        INVALID_ARGUMENT); lock contention is not retried (the tid cannot
        be begun twice)."""
        if tid < 0 or tid > MAX_TID:
            raise CellarError("tid must be in 0..%s" % tid_hex(MAX_TID),
                              grpc.StatusCode.INVALID_ARGUMENT)
        return Transaction(self, user, description, extension, tid)

    def _abort_on_master(self, master, node_id: int, ttid: int, storages: Iterable[int]) -> None:
        """Master.Abort; raises its error."""
        self._call(master.Abort, master_pb2.AbortRequest(node_id=node_id, ttid=ttid,
                                                         storage_node_ids=sorted(storages)),
                   "Abort")

    def _ask_outcome(self, master, node_id: int, ttid: int, timeout: float):
        """Master.GetTransactionStatus of ``ttid`` as client node ``node_id``."""
        return self._call(master.GetTransactionStatus,
                          master_pb2.GetTransactionStatusRequest(ttid=ttid, node_id=node_id),
                          "GetTransactionStatus", max(timeout, 0.001))

    def _resolve_finish_failure(self, master, node_id: int, session: int, ttid: int,
                                involved: Iterable[int], finish_error: CellarError) -> int:
        """Finish failed: the final tid if the transaction committed; the
        Finish error if the primary says it did not; OutcomeUnknownError
        otherwise (the C++ client's ResolveFinishFailure)."""
        committed = master_pb2.TRANSACTION_COMMITTED
        aborted_outcome = master_pb2.TRANSACTION_ABORTED
        no_answer = finish_error.code in _TRANSPORT
        if no_answer:
            try:
                outcome = self._ask_outcome(master, node_id, ttid, self.rpc_timeout)
                if outcome.outcome == committed:
                    return outcome.tid
                if outcome.outcome == aborted_outcome:
                    raise finish_error
            except CellarError as e:
                if e is finish_error:
                    raise
        lost_master = False
        try:
            self._abort_on_master(master, node_id, ttid, involved)
            raise finish_error  # the abort settled it: not committed
        except CellarError as e:
            if e is finish_error:
                raise
            aborted = e
        lost_master = aborted.code in _TRANSPORT
        if aborted.code == grpc.StatusCode.FAILED_PRECONDITION:
            # A final tid was picked: the commit is under way, ask until it
            # settles (bounded).
            deadline = time.monotonic() + self.rpc_timeout
            pause = 0.02
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    outcome = self._ask_outcome(master, node_id, ttid, left)
                except CellarError as e:
                    lost_master = e.code in _TRANSPORT
                    break
                if outcome.outcome == committed:
                    return outcome.tid
                if outcome.outcome == aborted_outcome:
                    raise finish_error
                time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
                pause = min(pause * 2, 0.5)
        elif not no_answer:
            raise finish_error  # the master refused Finish: its verdict stands
        if lost_master:
            tid = self._committed_tid_after_reconnect(session, ttid)
            if tid:
                return tid
        raise OutcomeUnknownError(
            "the outcome of transaction %s is unknown: Finish failed (%s) and the primary could"
            " not tell whether it committed; it may have: read its objects before retrying"
            % (tid_hex(ttid), finish_error.message), ttid)

    def _committed_tid_after_reconnect(self, session: int, ttid: int) -> int:
        deadline = time.monotonic() + self.rpc_timeout
        if not self.await_session(session + 1, self.rpc_timeout):
            return 0
        with self._cond:
            while (not self._closing and self._connected
                   and self._cluster_state != common_pb2.CLUSTER_RUNNING):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            master, node_id = self._master, self._node_id
        left = deadline - time.monotonic()
        if master is None or left <= 0:
            return 0
        try:
            outcome = self._ask_outcome(master, node_id, ttid, left)
        except CellarError:
            return 0
        if outcome.outcome == master_pb2.TRANSACTION_COMMITTED:
            log.info("cellar: ttid %s whose Finish answer was lost committed as %s",
                     tid_hex(ttid), tid_hex(outcome.tid))
            return outcome.tid
        return 0


class _ScanCursor:
    """One storage's share of Client.iter_transactions."""

    __slots__ = ("node_id", "partitions", "listed", "failed", "buffer")

    def __init__(self, node_id: int, partitions: List[int], listed: int, failed: set):
        self.node_id = node_id
        self.partitions = partitions
        # Every record of `partitions` with a tid <= listed was read.
        self.listed = listed
        # Storages that failed to list these partitions.
        self.failed = failed
        self.buffer: list = []


class _TidHook:
    """Transaction.finish's on_tid for a committed tid whose invalidation
    has not been handled yet; state moves PENDING -> RUNNING -> DONE on the
    watch thread (or stays PENDING and finish runs it)."""
    PENDING, RUNNING, DONE = range(3)
    __slots__ = ("function", "state")

    def __init__(self, function: Callable[[int, bool], None]):
        self.function = function
        self.state = _TidHook.PENDING


class _Staged:
    __slots__ = ("oid", "base_serial", "data", "check_only", "data_serial")

    def __init__(self, oid: int, base_serial: int, data: bytes, check_only: bool = False,
                 data_serial: int = 0):
        self.oid, self.base_serial, self.data = oid, base_serial, data
        self.check_only = check_only
        self.data_serial = data_serial


# resolver(oid, current_serial, base_serial, data) -> resolved data, or
# raise to give up (the ConflictError is then raised to the caller).
Resolver = Callable[[int, int, int, bytes], bytes]


class Transaction:
    """A transaction: ``store`` buffers objects in memory, ``commit`` (or
    ``vote`` then ``finish``, the two phases ZODB needs) runs the commit.

    Rules (the C++ client's): storing the same oid twice keeps the last
    call; oid 0 is valid (the ZODB root); base_serial 0 means a new
    object; an object over MAX_OBJECT_BYTES fails the commit with
    TOO_LARGE before contacting anyone; an empty transaction commits a
    transaction record and gets a tid; after commit or abort the
    transaction is finished. Not thread-safe.
    """

    def __init__(self, client: Client, user: bytes = b"", description: bytes = b"",
                 extension: bytes = b"", restore_tid: int = 0):
        self._client = client
        # Client.transaction's ``tid``: 0 = the master picks the tid.
        self.restore_tid = restore_tid
        self.user = user
        self.description = description
        self.extension = extension
        self._objects: Dict[int, _Staged] = {}
        # check_current(): oid -> the serial read (not stored).
        self._checks: Dict[int, int] = {}
        # The final tid once committed.
        self.tid: Optional[int] = None
        self.finished = False
        self._voted = None  # the state of a voted commit
        # Oids whose data a resolver replaced (ZODB's tpc_vote answer).
        self.resolved: List[int] = []

    def store(self, oid: int, base_serial: int, data: bytes) -> None:
        """Buffers ``data`` as the new revision of ``oid``, written over
        the revision ``base_serial`` the application read (0: new)."""
        if self.finished or self._voted is not None:
            raise CellarError("transaction already voted, committed or aborted",
                              grpc.StatusCode.FAILED_PRECONDITION)
        self._objects[oid] = _Staged(oid, base_serial, bytes(data))

    def store_pointer(self, oid: int, base_serial: int, data_serial: int) -> None:
        """Buffers a revision of ``oid`` without data of its own: with
        ``data_serial`` > 0 it re-uses the data of that earlier revision
        (an undo's back-pointer); with 0 it is a deletion record (the
        object's creation undone: loads answer OBJECT_DELETED)."""
        if self.finished or self._voted is not None:
            raise CellarError("transaction already voted, committed or aborted",
                              grpc.StatusCode.FAILED_PRECONDITION)
        if data_serial < 0 or data_serial > MAX_TID:
            raise CellarError("data_serial must be in 0..%s" % tid_hex(MAX_TID),
                              grpc.StatusCode.INVALID_ARGUMENT)
        self._objects[oid] = _Staged(oid, base_serial, b"", data_serial=data_serial)

    def check_current(self, oid: int, serial: int) -> None:
        """Read-current check (ZODB checkCurrentSerialInTransaction): the
        vote fails with a ConflictError (current serial) unless ``serial``
        is still the latest revision of ``oid``, and no other transaction
        can commit ``oid`` until this one ends. Nothing is stored; an
        object also stored in this transaction is checked by its store."""
        if self.finished or self._voted is not None:
            raise CellarError("transaction already voted, committed or aborted",
                              grpc.StatusCode.FAILED_PRECONDITION)
        if serial <= 0:
            raise CellarError("check_current needs the serial that was read",
                              grpc.StatusCode.INVALID_ARGUMENT)
        self._checks[oid] = serial

    def __len__(self) -> int:
        return len(self._objects)

    def commit(self, resolver: Optional[Resolver] = None) -> int:
        """Votes and finishes; returns the final tid once this client's
        snapshot includes it. Raises AbortedError (ConflictError with the
        current serial, lock contention: retry the whole transaction),
        UnavailableError (not committed; retry), OutcomeUnknownError
        (Finish's outcome unknown: it may have committed),
        CommitNotVisibleError (committed as ``tid``, invalidation late)."""
        self.vote(resolver)
        return self.finish()

    def vote(self, resolver: Optional[Resolver] = None,
             max_lock_retries: int = 50) -> List[int]:
        """Phase one: Begin, then Store + vote on every writable cell.
        With ``resolver``, a conflict on an object is resolved (its data
        replaced, its base serial moved to the current serial) and the
        transaction is started again; lock contention (a younger
        transaction meeting an older one's lock) is retried after a short
        pause. Returns the oids whose data a resolver replaced."""
        if self.finished or self._voted is not None:
            raise CellarError("transaction already voted, committed or aborted",
                              grpc.StatusCode.FAILED_PRECONDITION)
        for obj in self._objects.values():
            if len(obj.data) > MAX_OBJECT_BYTES:
                self.finished = True
                raise CellarError("object 0x%x is %d bytes, over the %d-byte limit"
                                  % (obj.oid, len(obj.data), MAX_OBJECT_BYTES),
                                  grpc.StatusCode.RESOURCE_EXHAUSTED, errors.TOO_LARGE)
        if self.restore_tid:
            max_lock_retries = 0  # a restore's tid cannot be begun again
        lock_retries = 0
        resolutions = 0
        pause = 0.005
        while True:
            try:
                self._voted = self._store_and_vote()
                return list(self.resolved)
            except ConflictError as e:
                obj = self._objects.get(e.oid)
                if resolver is None or obj is None or resolutions > 10 * len(self._objects) + 10:
                    self.finished = True
                    raise
                try:
                    obj.data = bytes(resolver(e.oid, e.current_serial, obj.base_serial, obj.data))
                except Exception:
                    self.finished = True
                    raise
                obj.base_serial = e.current_serial
                resolutions += 1
                if e.oid not in self.resolved:
                    self.resolved.append(e.oid)
            except AbortedError as e:
                if e.reason != errors.LOCK_CONTENTION or lock_retries >= max_lock_retries:
                    self.finished = True
                    raise
                lock_retries += 1
                time.sleep(pause * (0.5 + random.random()))
                pause = min(pause * 2, 0.2)
            except BaseException:
                self.finished = True
                raise

    def _store_and_vote(self):
        client = self._client
        # Across a master restart or failover: wait for the next session.
        client._await_connected()
        client._await_master_caught_up(client.snapshot)
        with client._cond:
            if client._closing:
                raise CellarError("client closed", grpc.StatusCode.CANCELLED)
            if not client._connected or client._master is None:
                raise UnavailableError("not connected to the master (reconnecting)",
                                       grpc.StatusCode.UNAVAILABLE)
            master, node_id, session = client._master, client._node_id, client._sessions
            table = client._table
        begin = client._call(master.Begin,
                             master_pb2.BeginRequest(node_id=node_id, tid=self.restore_tid),
                             "Begin")
        ttid, token = begin.ttid, begin.ttid_token
        # Plan: every writable cell of each object's partition; the record
        # on every writable cell of partition(ttid).
        stored = list(self._objects.values())
        objects = stored + [_Staged(oid, serial, b"", check_only=True)
                            for oid, serial in sorted(self._checks.items())
                            if oid not in self._objects]
        plan: Dict[int, List[int]] = {}  # node -> indexes into objects
        record_nodes: List[int] = []
        partitions = set()
        plan_error = None
        if table.num_partitions == 0:
            plan_error = UnavailableError("no partition table yet", grpc.StatusCode.UNAVAILABLE)
        else:
            for i, obj in enumerate(objects):
                p = table.partition_of(obj.oid)
                partitions.add(p)
                writable = table.writable(p)
                if not writable and plan_error is None:
                    plan_error = UnavailableError("partition %d has no writable cell" % p,
                                                  grpc.StatusCode.UNAVAILABLE)
                for n in writable:
                    plan.setdefault(n, []).append(i)
            ttid_partition = table.partition_of(ttid)
            partitions.add(ttid_partition)
            record_nodes = table.writable(ttid_partition)
            if not record_nodes and plan_error is None:
                plan_error = UnavailableError("partition %d has no writable cell" % ttid_partition,
                                              grpc.StatusCode.UNAVAILABLE)
            for n in record_nodes:
                plan.setdefault(n, [])
        involved = sorted(plan)
        if plan_error is not None:
            self._quiet_abort(master, node_id, ttid, involved)
            raise plan_error
        metadata = common_pb2.TransactionMetadata(
            user=self.user, description=self.description, extension=self.extension,
            oids=[o.oid for o in stored], size_bytes=sum(len(o.data) for o in stored))
        checksums = [b"" if o.check_only else _checksum(o.data) for o in objects]

        # Store + vote on every involved storage: in parallel across
        # storages, batches of one storage in order (the last votes).
        batches: Dict[int, List[storage_pb2.StoreRequest]] = {}
        for n in involved:
            node_batches = []
            current = None
            size = 0
            for i in plan[n]:
                obj = objects[i]
                if current is None or (len(current.objects) and (
                        len(current.objects) >= _MAX_OBJECTS_PER_STORE
                        or size + len(obj.data) > _MAX_BYTES_PER_STORE)):
                    current = storage_pb2.StoreRequest(ttid=ttid, ttid_token=token,
                                                       client_node_id=node_id)
                    node_batches.append(current)
                    size = 0
                current.objects.add(oid=obj.oid, base_serial=obj.base_serial, data=obj.data,
                                    checksum=checksums[i], check_only=obj.check_only,
                                    data_serial=obj.data_serial)
                size += len(obj.data)
            if not node_batches:
                node_batches.append(storage_pb2.StoreRequest(ttid=ttid, ttid_token=token,
                                                             client_node_id=node_id))
            node_batches[-1].vote = True
            if n in record_nodes:
                node_batches[-1].metadata.CopyFrom(metadata)
            batches[n] = node_batches
        responses: Dict[int, list] = {n: [] for n in involved}
        results: Dict[int, Optional[CellarError]] = {}
        active = []
        for n in involved:
            if client._storage_stub(n) is None:
                results[n] = UnavailableError("%s has no known address" % _node_name(n),
                                              grpc.StatusCode.UNAVAILABLE)
            else:
                active.append(n)
        while active:
            futures = {}
            for n in active:
                stub = client._storage_stub(n)
                futures[n] = stub.Store.future(batches[n][len(responses[n])],
                                               timeout=client.rpc_timeout,
                                               metadata=client._metadata)
            active = []
            for n, future in futures.items():
                try:
                    responses[n].append(future.result())
                except grpc.RpcError as e:
                    results[n] = errors.from_rpc_error(e, "Store on %s" % _node_name(n))
                    continue
                if len(responses[n]) < len(batches[n]):
                    active.append(n)
                else:
                    results[n] = None

        # Decide: a refusal aborts; unreachable or slow nodes are tolerated
        # when every touched partition kept a voter.
        voted = {n for n, r in results.items() if r is None}
        failure = None
        unavailable = None
        for n in involved:
            r = results.get(n)
            if r is None:
                continue
            if r.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                unavailable = r
                self._report_unreachable(n, r)
            elif failure is None or (r.code == grpc.StatusCode.ABORTED
                                     and failure.code != grpc.StatusCode.ABORTED):
                failure = r
        if failure is None and unavailable is not None:
            for p in sorted(partitions):
                if not voted.intersection(table.writable(p)):
                    failure = UnavailableError("no cell of partition %d voted (%s)"
                                               % (p, unavailable.message),
                                               grpc.StatusCode.UNAVAILABLE)
                    break
            if failure is None:
                log.warning("cellar: committing ttid %s without some replicas: %s",
                            tid_hex(ttid), unavailable)
        if failure is None:
            with client._cond:
                if client._sessions != session or not client._connected:
                    failure = UnavailableError("connection to the master lost during the commit",
                                               grpc.StatusCode.UNAVAILABLE)
        if failure is not None and failure.reason == errors.BAD_TTID_TOKEN:
            failure = AbortedError(failure.message + " (begun under an earlier master term:"
                                   " retry the transaction)", grpc.StatusCode.ABORTED,
                                   errors.BAD_TTID_TOKEN)
        if failure is not None:
            self._quiet_abort(master, node_id, ttid, involved)
            raise failure

        # The Finish request, ready for phase two.
        request = master_pb2.FinishRequest(node_id=node_id, ttid=ttid,
                                           voted_node_ids=sorted(voted),
                                           oids=[o.oid for o in stored],
                                           partitions=sorted(partitions), ptid=table.ptid)
        voters: Dict[int, set] = {}
        for n in voted:
            for i in plan[n]:
                voters.setdefault(table.partition_of(objects[i].oid), set()).add(n)
            if n in record_nodes:
                voters.setdefault(table.partition_of(ttid), set()).add(n)
        for p in sorted(voters):
            request.partition_voters.add(partition=p, node_ids=sorted(voters[p]))
        for n in sorted(voted):
            checked: Dict[int, int] = {}
            unchecked = set()
            for batch, response in zip(batches[n], responses[n]):
                said = set(response.checked_partitions)
                for obj in batch.objects:
                    p = table.partition_of(obj.oid)
                    if p not in said:
                        unchecked.add(p)
                    else:
                        checked[p] = min(checked.get(p, response.checked_ptid),
                                         response.checked_ptid)
            for p in sorted(checked):
                if p not in unchecked:
                    request.conflict_checks.add(partition=p, node_id=n, ptid=checked[p])
        return {"master": master, "node_id": node_id, "session": session, "ttid": ttid,
                "involved": involved, "finish": request}

    def _quiet_abort(self, master, node_id, ttid, involved) -> None:
        try:
            self._client._abort_on_master(master, node_id, ttid, involved)
        except CellarError as e:
            log.warning("cellar: Abort of ttid %s failed: %s", tid_hex(ttid), e)

    @property
    def ttid(self) -> Optional[int]:
        """The temporary tid of a voted transaction."""
        return self._voted["ttid"] if self._voted else None

    def finish(self, on_tid: Optional[Callable[[int, bool], None]] = None) -> int:
        """Phase two: Master.Finish; returns the final tid once this
        client's snapshot includes it (see commit for the errors).

        ``on_tid(tid, ordered)``, once the transaction committed, is called
        exactly once, before finish returns or raises CommitNotVisibleError:
        with ``ordered`` True on the watch thread, just before the
        invalidation listeners get ``tid`` and the snapshot moves to it (its
        exceptions are logged there); with ``ordered`` False by finish
        itself when that was not possible (the invalidation was handled
        before the tid was known, e.g. a lost Finish answer resolved later,
        or it did not arrive in time), the listeners then see ``tid`` as
        any other. ZODB's storage uses it to tell its own commits apart.
        It must not block for long nor wait for the snapshot."""
        if self.finished or self._voted is None:
            raise CellarError("transaction not voted, or already finished",
                              grpc.StatusCode.FAILED_PRECONDITION)
        self.finished = True
        v = self._voted
        client = self._client
        hook = None
        if on_tid is not None:
            with client._cond:
                client._finishing.add(v["ttid"])
        error = None
        tid = 0
        try:
            tid = client._call(v["master"].Finish, v["finish"], "Finish").tid
        except CellarError as e:
            error = e
        finally:
            if on_tid is not None:
                hook = client._expect_own_tid(v["ttid"], tid, on_tid)
        if error is not None:
            tid = client._resolve_finish_failure(v["master"], v["node_id"], v["session"],
                                                 v["ttid"], v["involved"], error)
            if on_tid is not None:
                hook = client._expect_own_tid(v["ttid"], tid, on_tid)
        self.tid = tid
        visible = client._wait_for_snapshot(tid, client.commit_wait_timeout)
        if on_tid is not None and client._settle_own_tid(tid, hook):
            on_tid(tid, False)
        if not visible:
            raise CommitNotVisibleError(
                "transaction committed as tid %s but its invalidation did not reach this client"
                " within %gs" % (tid_hex(tid), client.commit_wait_timeout), tid)
        return tid

    def abort(self) -> None:
        """Drops the buffered objects; a voted transaction is aborted on
        the cluster (Master.Abort)."""
        if self.finished:
            return
        self.finished = True
        v, self._voted = self._voted, None
        self._objects.clear()
        if v is not None:
            self._quiet_abort(v["master"], v["node_id"], v["ttid"], v["involved"])

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self.finished:
            self.commit()
