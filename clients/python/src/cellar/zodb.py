"""cellar.zodb: a ZODB storage on a cellar cluster.

    from cellar.zodb import CellarStorage, DB
    storage = CellarStorage("127.0.0.1:7100", cluster_name="cellar")
    db = ZODB.DB(storage)            # or: db = DB("127.0.0.1:7100")

CellarStorage implements IStorage and IMultiCommitStorage (``store``
buffers, ``tpc_vote`` runs the whole first phase — Begin, Store and vote
on every writable cell — and returns the oids whose conflicts it
resolved, ``tpc_finish`` returns the tid). It has no MVCC of its own: ZODB
wraps it in its MVCCAdapter, which reads through ``loadBefore``.

* Conflicts found by the storages' Store are resolved with ZODB's
  ``tryToResolveConflict`` (the transaction is then started again with
  the resolved data and the current serial as its base); unresolvable
  ones raise ``ZODB.POSException.ConflictError`` with both serials.
* Invalidations of other clients' commits (and of this client's other
  storages') reach ``DB.invalidate`` in tid order, on the client's watch
  thread; after a reconnection ``DB.invalidateCache`` is called. This
  storage's own commits do not: as FileStorage and ZEO, it calls
  ``tpc_finish``'s ``func(tid)`` (ZODB invalidates the DB's other
  connections with it, not the committing one) at the point of the
  invalidation stream where the tid arrives, before ``lastTransaction()``
  moves to it (``Transaction.finish(on_tid)``). When that point was
  passed before the tid was known (a lost Finish answer resolved later)
  the tid was delivered to ``DB.invalidate`` as anyone's and ``func`` is
  called by ``tpc_finish``: the committing connection loads its objects
  again, nothing is stale.
* ``checkCurrentSerialInTransaction`` is checked by the storages in the
  vote (``Transaction.check_current``): the object's lock is held until
  the transaction ends, so nobody commits it in between. A storage
  restart between vote and finish forgets that lock (docs/zodb.md).
* Transaction metadata (user, description, extension bytes) is stored
  with the transaction record as given.
* ``__len__`` and ``getSize`` are the cluster's object count and data
  bytes (``Client.size``: the storages keep them per partition).
* A deleted object (a deletion record) raises POSKeyError (the storages
  answer NOT_FOUND, reason OBJECT_DELETED).
* Restore (IStorageRestoreable, for ``zodbconvert`` and
  ``copyTransactionsFrom``): ``tpc_begin(txn, tid)`` commits with the
  source's tid (BeginRequest.tid: above the cluster's last tid, at most
  10 minutes ahead of the master's clock), ``restore`` writes a revision
  without a conflict check of the caller's (docs/zodb.md, "Migrating").
* Iteration (IStorageIteration, for ``zodbconvert`` and
  ``copyTransactionsFrom`` out of cellar, backups): ``iterator(start,
  stop)`` lists the committed transactions in tid order up to the
  snapshot it was called at (Storage.ScanTransactions, one readable cell
  per partition, merged by tid); each transaction's records are loaded
  with Storage.LoadMany when it is reached (docs/zodb.md).
* Pack (``pack(t, referencesf)``): the cluster's background pack
  (Master.Pack) at the tid of time ``t``, waited for like FileStorage's;
  it removes the revisions older than the one current at that tid. There
  is no garbage collection of unreachable objects (``referencesf`` is not
  used). Master.Pack needs role admin: ``pack_token_file``.
* A local cache of loaded revisions (``local_cache_size`` bytes, 0 disables;
  cellar.cache.RevisionCache) answers ``loadBefore`` coherently with the
  invalidation stream; ``cache_stats()``.
* Not supported yet: undo, blobs.
"""
import logging
import threading
import time
from pickle import dumps
from typing import Dict, List, Optional, Sequence, Union

import grpc
import transaction.interfaces
import zope.interface
from persistent.TimeStamp import TimeStamp
from ZODB import POSException
from ZODB.BaseStorage import DataRecord, TransactionRecord
from ZODB.ConflictResolution import ConflictResolvingStorage
from ZODB.interfaces import (IMultiCommitStorage, IStorage, IStorageIteration,
                             IStorageRestoreable)
from ZODB.utils import p64, u64

import cellar
from cellar import errors
from cellar.cache import RevisionCache, check_size

log = logging.getLogger("cellar.zodb")

__all__ = ["CellarStorage", "DB", "StorageUnavailable", "OutcomeUnknown"]

# Most prefetched revisions kept waiting for their load.
_PREFETCH_KEEP = 10000
# Most restored objects whose latest serial restore() remembers (a miss
# asks the storages: Client.history).
_RESTORED_KEEP = 100000
# Default size of the local cache of loaded revisions (ZEO's default).
DEFAULT_LOCAL_CACHE_SIZE = 20 << 20
# Default longest wait of pack() for the cluster's pack, in seconds.
DEFAULT_PACK_TIMEOUT = 3600.0


class StorageUnavailable(POSException.StorageError, transaction.interfaces.TransientError):
    """The cluster could not be reached or is not ready; nothing was
    committed: the transaction may be retried."""


class OutcomeUnknown(POSException.StorageError):
    """tpc_finish could not learn whether the transaction committed
    (cellar.OutcomeUnknownError): it may have. Do not retry blindly."""


def _zodb_error(e: cellar.CellarError) -> Exception:
    if isinstance(e, cellar.ConflictError):
        return POSException.ConflictError(
            str(e), oid=p64(e.oid), serials=(p64(e.current_serial), p64(e.base_serial)))
    if isinstance(e, cellar.AbortedError):
        return POSException.ConflictError(str(e))
    if isinstance(e, cellar.OutcomeUnknownError):
        return OutcomeUnknown(str(e))
    if isinstance(e, cellar.UnavailableError) or e.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return StorageUnavailable(str(e))
    return POSException.StorageError(str(e))


class _TxnState:
    __slots__ = ("txn", "read_current", "restored")

    def __init__(self, txn: "cellar.Transaction"):
        self.txn = txn
        self.read_current: Dict[int, int] = {}
        # restore(): oid -> the revision the restored one replaces.
        self.restored: Dict[int, int] = {}


@zope.interface.implementer(IStorage, IMultiCommitStorage, IStorageRestoreable,
                            IStorageIteration)
class CellarStorage(ConflictResolvingStorage):
    """A ZODB storage on a cellar cluster.

    ``masters``, ``cluster_name``, ``token``, ``token_file``, ``tls_*``
    and the timeouts are cellar.Client's. ``client`` uses an existing
    client instead (the storage then does not close it). ``name`` is the
    storage name (default "cellar:<cluster>@<masters>"). ``read_only``
    refuses writes with ReadOnlyError. ``local_cache_size``: bytes of the local
    cache of loaded revisions (0 disables it). ``pack_timeout``: the
    longest ``pack`` waits for the cluster's pack, in seconds;
    ``pack_token``/``pack_token_file`` (cellar.Client's): an admin token
    for it.
    """

    def __init__(self, masters: Union[str, Sequence[str]] = "127.0.0.1:7100",
                 cluster_name: str = "cellar", *, name: Optional[str] = None,
                 read_only: bool = False, client: Optional[cellar.Client] = None,
                 local_cache_size: int = DEFAULT_LOCAL_CACHE_SIZE,
                 pack_timeout: float = DEFAULT_PACK_TIMEOUT, **client_options):
        check_size(local_cache_size, "local_cache_size")
        if not pack_timeout > 0:
            raise ValueError("pack_timeout must be a number of seconds > 0, got %r"
                             % (pack_timeout,))
        self._pack_timeout = pack_timeout
        if client is None:
            try:
                client = cellar.Client(masters, cluster_name, **client_options)
            except cellar.CellarError as e:
                raise _zodb_error(e) from e
            self._own_client = True
        else:
            self._own_client = False
        self._client = client
        self._name = name or "cellar:%s@%s" % (client.cluster_name, ",".join(client.masters))
        self._read_only = read_only
        self._lock = threading.Lock()
        # prefetch(): (oid, before tid) -> LoadResult, each used by one
        # loadBefore; the oldest dropped past _PREFETCH_KEEP.
        self._prefetched: Dict[tuple, "cellar.LoadResult"] = {}
        self._prefetch_lock = threading.Lock()
        self._transactions: Dict[object, _TxnState] = {}
        self._db = None
        # Own tids whose func(tid) ran on the watch thread: the invalidation
        # listener, next on that thread, skips them (watch thread only).
        self._own_tids: set = set()
        # restore(): oid -> the latest serial this storage restored (so a
        # migration asks the storages only about objects it did not write).
        self._restored_serials: Dict[int, int] = {}
        self._cache = RevisionCache(client, local_cache_size)
        self._closed = False

    # ------------------------------------------------------------------
    # Identity and state.

    @property
    def client(self) -> cellar.Client:
        return self._client

    def getName(self) -> str:
        return self._name

    def sortKey(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return "<CellarStorage %s>" % self._name

    def isReadOnly(self) -> bool:
        return self._read_only

    def supportsUndo(self) -> bool:
        return False

    def lastTransaction(self) -> bytes:
        return p64(self._client.settled_snapshot())

    def _size(self) -> "cellar.ClusterSize":
        try:
            return self._client.size()
        except cellar.CellarError as e:
            # Informational only (and len() is also truthiness): not an error.
            log.warning("cellar: size of the cluster unknown: %s", e)
            return cellar.ClusterSize(0, 0, 0, 0, 0)

    def __len__(self) -> int:
        """Objects in the cluster (oids whose latest revision is not a
        deletion), each partition counted once."""
        return self._size().objects

    def getSize(self) -> int:
        """Bytes of object data stored (every revision kept)."""
        return self._size().bytes

    def registerDB(self, db) -> None:
        super().registerDB(db)  # conflict resolution's record transforms
        self._db = db

        own = self._own_tids

        def invalidate(tid, oids):
            if tid in own:  # tpc_finish's func(tid) did it
                own.discard(tid)
                return
            db.invalidate(p64(tid), [p64(oid) for oid in oids])
        self._client.add_invalidation_listener(invalidate)
        self._client.add_reset_listener(db.invalidateCache)

    def sync(self, force: bool = True) -> None:
        """Catch up with the master's last tid (ZODB calls it at the start
        of each transaction)."""
        if not force:
            return
        try:
            self._client.sync()
        except cellar.CellarError as e:
            log.warning("cellar: sync failed: %s", e)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._prefetch_lock:
            self._prefetched.clear()
        self._cache.close()
        if self._own_client:
            self._client.close()

    # ------------------------------------------------------------------
    # Reads.

    def new_oid(self) -> bytes:
        if self._read_only:
            raise POSException.ReadOnlyError()
        try:
            return p64(self._client.new_oid())
        except cellar.CellarError as e:
            raise _zodb_error(e) from e

    def loadBefore(self, oid: bytes, tid: bytes):
        """(data, serial, next serial or None), None when the object has no
        revision before ``tid``; POSKeyError when it has none at all."""
        if u64(tid) == 0:
            # Nothing is before tid 0 (the server refuses before_tid 0):
            # only whether the object exists matters.
            try:
                if self._client.history(u64(oid), 1):
                    return None
            except cellar.NotFoundError:
                pass
            except cellar.CellarError as e:
                raise _zodb_error(e) from e
            raise POSException.POSKeyError(oid)
        hit = self._cache.lookup(u64(oid), u64(tid))
        if hit is not None:
            data, serial, end = hit
            return data, p64(serial), p64(end) if end else None
        with self._prefetch_lock:
            r = self._prefetched.pop((u64(oid), u64(tid)), None)
        try:
            if r is None:
                view = self._cache.view()
                r = self._client.load_before(u64(oid), u64(tid))
                self._cache.store(u64(tid), r, view)
        except cellar.NotFoundError as e:
            if e.reason == errors.NO_EARLIER_REVISION:
                return None
            raise POSException.POSKeyError(oid) from None
        except cellar.CellarError as e:
            raise _zodb_error(e) from e
        if not r.data:  # a deletion record from a storage older than OBJECT_DELETED
            raise POSException.POSKeyError(oid)
        return r.data, p64(r.serial), p64(r.next_serial) if r.next_serial else None

    def load(self, oid: bytes, version: str = ""):
        """The revision current at this client's snapshot (what
        ``lastTransaction()`` says: the cache can answer it)."""
        r = self.loadBefore(oid, p64(min(self._client.settled_snapshot() + 1, cellar.MAX_TID)))
        if r is None:
            raise POSException.POSKeyError(oid)
        return r[:2]

    def loadSerial(self, oid: bytes, serial: bytes) -> bytes:
        try:
            r = self._client.load_serial(u64(oid), u64(serial))
        except cellar.NotFoundError:
            raise POSException.POSKeyError(oid) from None
        except cellar.CellarError as e:
            raise _zodb_error(e) from e
        return r.data

    def prefetch(self, oids, tid) -> None:
        """Loads ``oids`` as of ``tid`` (ZODB's MVCC start) with one
        Storage.LoadMany call per storage; the next ``loadBefore(oid, tid)``
        of each is answered from what was fetched (from the local cache
        when it is on, else once). Only a hint: errors are left for the
        loads to meet. A revision before a tid the client has seen is
        final, so what is kept cannot go stale."""
        before = u64(tid)
        wanted = [u64(oid) for oid in oids]
        if not wanted or before == 0 or before > self._client.snapshot + 1:
            return
        wanted = [oid for oid in wanted if self._cache.lookup(oid, before, count=False) is None]
        if not wanted:
            return
        view = self._cache.view()
        try:
            results = self._client.load_many(wanted, before)
        except cellar.CellarError:
            return
        with self._prefetch_lock:
            for oid, r in zip(wanted, results):
                if isinstance(r, cellar.LoadResult) and not self._cache.store(before, r, view):
                    self._prefetched[(oid, before)] = r
            while len(self._prefetched) > _PREFETCH_KEEP:
                del self._prefetched[next(iter(self._prefetched))]

    def history(self, oid: bytes, size: int = 1):
        try:
            entries = self._client.history(u64(oid), max(1, min(size, 1000)))
        except cellar.NotFoundError:
            raise POSException.POSKeyError(oid) from None
        except cellar.CellarError as e:
            raise _zodb_error(e) from e
        if not entries:
            raise POSException.POSKeyError(oid)
        out = []
        for entry in entries[:size]:
            tid = p64(entry.serial)
            d = {"tid": tid, "serial": tid, "time": TimeStamp(tid).timeTime(),
                 "size": entry.size, "version": "", "user_name": b"", "description": b""}
            try:
                record = self._client.get_transaction(entry.serial)
            except cellar.CellarError as e:
                log.warning("cellar: transaction record %s: %s", cellar.tid_hex(entry.serial), e)
                record = None
            if record is not None:
                d["user_name"] = record.user
                d["description"] = record.description
            out.append(d)
        return out

    # ------------------------------------------------------------------
    # Two-phase commit.

    def _state(self, txn) -> _TxnState:
        with self._lock:
            state = self._transactions.get(txn)
        if state is None:
            raise POSException.StorageTransactionError(self, txn)
        return state

    def tpc_begin(self, txn, tid=None, status=" ") -> None:
        """Starts a commit. With ``tid`` (restore), the transaction commits
        with that tid (see the module documentation); ``status`` (FileStorage's
        packed/undone flag) is not kept."""
        if self._read_only:
            raise POSException.ReadOnlyError()
        ext = getattr(txn, "extension_bytes", None)
        if ext is None:
            extension = getattr(txn, "extension", None) or getattr(txn, "_extension", None)
            ext = dumps(extension, 3) if extension else b""

        def as_bytes(value):
            if isinstance(value, str):
                return value.encode("utf-8")
            return bytes(value or b"")
        try:
            c_txn = self._client.transaction(as_bytes(getattr(txn, "user", b"")),
                                             as_bytes(getattr(txn, "description", b"")), ext,
                                             tid=u64(tid) if tid is not None else 0)
        except cellar.CellarError as e:
            raise _zodb_error(e) from e
        with self._lock:
            if txn in self._transactions:
                raise POSException.StorageTransactionError(
                    "tpc_begin called twice for the same transaction")
            self._transactions[txn] = _TxnState(c_txn)

    def store(self, oid: bytes, serial: bytes, data: bytes, version: str, txn) -> None:
        if self._read_only:
            raise POSException.ReadOnlyError()
        if version:
            raise POSException.Unsupported("versions are not supported")
        state = self._state(txn)
        state.txn.store(u64(oid), u64(serial) if serial else 0, data)

    def restore(self, oid: bytes, serial: bytes, data: Optional[bytes], version: str,
                prev_txn: Optional[bytes], txn) -> None:
        """Writes revision ``serial`` of ``oid`` in a transaction begun with
        ``tpc_begin(txn, serial)``: ``data`` as is, or with ``data`` None a
        back-pointer to the data of revision ``prev_txn`` (an undo), or
        without ``prev_txn`` a deletion record (the object's creation
        undone). With ``data``, ``prev_txn`` is not kept (the bytes are
        stored again). ``serial`` is not used: as in FileStorage, the
        revision gets its transaction's tid. The revision replaces the object's latest one,
        whatever it is: restore checks no serial of the caller's."""
        if self._read_only:
            raise POSException.ReadOnlyError()
        if version:
            raise POSException.Unsupported("versions are not supported")
        state = self._state(txn)
        if not state.txn.restore_tid:
            raise POSException.StorageTransactionError(
                "restore needs a transaction begun with tpc_begin(txn, tid)")
        o = u64(oid)
        base = state.restored.get(o)
        if base is None:
            base = state.restored[o] = self._latest_serial(o)
        if data is None:
            state.txn.store_pointer(o, base, u64(prev_txn) if prev_txn else 0)
        else:
            state.txn.store(o, base, data)

    def _latest_serial(self, oid: int) -> int:
        """The serial of the latest revision of ``oid`` (a deletion record
        too), 0 if it has none: what a restored revision is written over."""
        with self._lock:
            serial = self._restored_serials.get(oid)
        if serial is not None:
            return serial
        try:
            entries = self._client.history(oid, 1)
        except cellar.NotFoundError:
            return 0
        except cellar.CellarError as e:
            raise _zodb_error(e) from e
        return entries[0].serial if entries else 0

    def copyTransactionsFrom(self, other, verbose=0) -> None:
        """Copies every transaction of storage ``other`` (its
        ``iterator()``) with its tid (``zodbconvert``): ZODB's own copy,
        through tpc_begin(txn, tid) and restore."""
        from ZODB.BaseStorage import copy
        copy(other, self, verbose)

    def iterator(self, start: Optional[bytes] = None, stop: Optional[bytes] = None):
        """The committed transactions with ``start <= tid <= stop`` (both
        optional) in tid order, as of now: commits after this call are not
        listed. Each is a ZODB TransactionRecord (tid, status "p" below a
        pack tid else " ", user, description, extension) whose iteration
        gives its DataRecords (oid, tid, data: None for a deletion,
        data_txn: an undo record's source revision), loaded with
        Storage.LoadMany when the transaction is reached. A revision a pack
        removed is left out of a packed transaction."""
        first = u64(start) if start is not None else 0
        last = min(u64(stop) if stop is not None else cellar.MAX_TID, self._client.snapshot)
        return self._iterate(first, last)

    def _iterate(self, first: int, last: int):
        records = self._client.iter_transactions(first, last)
        while True:
            try:
                t = next(records)
            except StopIteration:
                return
            except cellar.CellarError as e:
                raise _zodb_error(e) from e
            yield _TransactionRecord(p64(t.tid), "p" if t.packed else " ", t.user,
                                     t.description, t.extension, self._data_records(t))

    def _data_records(self, t: "cellar.TransactionRecord") -> List[DataRecord]:
        """The object records transaction ``t`` wrote, in its order."""
        oids = list(dict.fromkeys(t.oids))
        if not oids:
            return []
        try:
            results = self._client.load_many(oids, t.tid + 1)
        except cellar.CellarError as e:
            raise _zodb_error(e) from e
        tid = p64(t.tid)
        out = []
        for oid, r in zip(oids, results):
            if isinstance(r, cellar.LoadResult) and r.serial == t.tid:
                out.append(DataRecord(p64(oid), tid, r.data,
                                      p64(r.data_serial) if r.data_serial else None))
            elif isinstance(r, cellar.NotFoundError) and r.reason == errors.OBJECT_DELETED:
                out.append(DataRecord(p64(oid), tid, None, None))
            elif t.packed and (isinstance(r, (cellar.LoadResult, cellar.NotFoundError))):
                continue  # removed by the pack
            elif isinstance(r, cellar.CellarError):
                raise _zodb_error(r)
            else:
                raise POSException.POSKeyError(
                    "transaction %s wrote oid 0x%x but its revision is %s"
                    % (cellar.tid_hex(t.tid), oid, cellar.tid_hex(r.serial)))
        return out

    def checkCurrentSerialInTransaction(self, oid: bytes, serial: bytes, txn) -> None:
        """Checked by the storages in the vote, under the object's lock held
        until the transaction ends (ReadConflictError if it moved)."""
        state = self._state(txn)
        state.read_current[u64(oid)] = u64(serial)
        try:
            state.txn.check_current(u64(oid), u64(serial))
        except cellar.CellarError as e:
            raise _zodb_error(e) from e

    def tpc_vote(self, txn) -> List[bytes]:
        state = self._state(txn)

        def resolve(oid, current, base, data):
            return self.tryToResolveConflict(p64(oid), p64(current), p64(base), data)
        try:
            resolved = state.txn.vote(resolve)
        except cellar.ConflictError as e:
            if e.oid in state.read_current and e.oid not in state.txn._objects:
                # A read-current check failed (the storages' check_current).
                raise POSException.ReadConflictError(
                    oid=p64(e.oid), serials=(p64(e.current_serial), p64(e.base_serial))) from e
            raise _zodb_error(e) from e
        except cellar.CellarError as e:
            raise _zodb_error(e) from e
        return [p64(oid) for oid in resolved]

    def tpc_finish(self, txn, func=lambda tid: None) -> bytes:
        """Commits; ``func(tid)`` is called once, before this returns, at
        the tid's place in the invalidation stream when possible (see the
        module documentation), and replaces the DB invalidation of our own
        commit."""
        state = self._state(txn)
        failed = []

        def on_tid(tid, ordered):
            try:
                if func is not None:
                    func(p64(tid))
            except BaseException as e:
                failed.append(e)  # raised by tpc_finish; the DB gets the tid as anyone's
                return
            if ordered and self._db is not None:
                self._own_tids.add(tid)
        try:
            try:
                tid = state.txn.finish(on_tid)
            except cellar.CommitNotVisibleError as e:
                # Committed: never report it as failed.
                log.warning("cellar: %s", e)
                tid = e.tid
            except cellar.CellarError as e:
                raise _zodb_error(e) from e
            if state.restored:
                with self._lock:
                    if len(self._restored_serials) + len(state.restored) > _RESTORED_KEEP:
                        self._restored_serials.clear()
                    for oid in state.restored:
                        self._restored_serials[oid] = tid
            if failed:
                raise failed[0]
            return p64(tid)
        finally:
            with self._lock:
                self._transactions.pop(txn, None)

    def tpc_abort(self, txn) -> None:
        with self._lock:
            state = self._transactions.pop(txn, None)
        if state is not None:
            state.txn.abort()

    def tpc_transaction(self):
        return None

    def pack(self, t, referencesf, gc=None):
        """Packs the cluster at time ``t`` (seconds since the epoch, as
        FileStorage): removes every object revision older than the one
        current at the last tid before ``t`` (docs/lifecycle.md), and
        returns once every storage is done (Client.pack; at most
        ``pack_timeout`` seconds, then StorageError with the progress). A
        ``t`` after the last commit packs at the last commit; one before
        the first commit packs nothing. Reads at a snapshot older than the
        pack tid may then meet POSKeyError (REVISION_PACKED).

        **No garbage collection**: the cluster does not remove objects
        unreachable from the root (their current revision stays), so
        ``referencesf`` is not used and ``gc`` is ignored (a warning when
        it asks for garbage collection).

        Master.Pack needs role admin: with authentication on, give the
        storage an admin token as ``pack_token_file`` (ZConfig
        ``pack-token-file``); without it the error names the role."""
        if self._read_only:
            raise POSException.ReadOnlyError()
        if gc:
            log.warning("cellar: pack(gc=True): the cluster has no garbage collection; only old"
                        " revisions are removed")
        stop = u64(TimeStamp(*time.gmtime(t)[:5] + (t % 60,)).raw())
        try:
            last = self._client.cluster_info().last_tid
            pack_tid = min(stop - 1, last)
            if pack_tid <= 0:
                return  # nothing committed before t
            self._client.pack(pack_tid, timeout=self._pack_timeout)
        except cellar.CellarError as e:
            raise _zodb_error(e) from e
        self._cache.forget_before(pack_tid)

    # ------------------------------------------------------------------
    # Local cache (cellar.cache.RevisionCache).

    def cache_stats(self) -> Dict[str, int]:
        """The local cache's counters: limit and bytes (its size and use),
        entries, current (entries with no known end), hits, misses,
        evictions (for the size bound), resets (dropped on a reconnection
        or a new snapshot from the master)."""
        return self._cache.stats()

    @property
    def cache_hits(self) -> int:
        return self._cache.hits

    @property
    def cache_misses(self) -> int:
        return self._cache.misses

    @property
    def cache_evictions(self) -> int:
        return self._cache.evictions


class _TransactionRecord(TransactionRecord):
    """One transaction of CellarStorage.iterator(); iterating it gives its
    DataRecords (as often as wanted)."""

    def __init__(self, tid, status, user, description, extension, records):
        TransactionRecord.__init__(self, tid, status, user, description, extension)
        self._records = records

    def __iter__(self):
        return iter(self._records)


def DB(masters: Union[str, Sequence[str]] = "127.0.0.1:7100", cluster_name: str = "cellar",
       **options):
    """A ZODB.DB on a new CellarStorage, for scripts::

        db = cellar.zodb.DB("m1:7100,m2:7100", "prod", token_file="client.token",
                            cache_size=50000, database_name="main")

    ``options`` holds CellarStorage's keywords (``read_only``, ``name``,
    ``token_file``, ``tls_ca_file``, the timeouts, ...) and ZODB.DB's
    (``pool_size``, ``cache_size``, ``database_name``, ``databases``, ...);
    any other raises TypeError before connecting. ``db.close()`` closes the
    storage too."""
    import ZODB
    db_keywords = _keywords(ZODB.DB.__init__)
    storage_keywords = (_keywords(CellarStorage.__init__) | _keywords(cellar.Client.__init__)) - {
        "version", "track"}
    unknown = sorted(set(options) - db_keywords - storage_keywords)
    if unknown:
        raise TypeError("cellar.zodb.DB: unknown option(s) %s; CellarStorage takes %s, "
                        "ZODB.DB takes %s" % (", ".join(unknown), ", ".join(sorted(storage_keywords)),
                                              ", ".join(sorted(db_keywords))))
    storage = CellarStorage(masters, cluster_name,
                            **{k: v for k, v in options.items() if k in storage_keywords})
    try:
        return ZODB.DB(storage, **{k: v for k, v in options.items() if k in db_keywords})
    except BaseException:
        storage.close()
        raise


def _keywords(function) -> set:
    """The named parameters of ``function`` past its first two (self and
    the storage or masters), without ``*args``/``**kwargs``."""
    import inspect
    parameters = list(inspect.signature(function).parameters.values())[2:]
    return {p.name for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
