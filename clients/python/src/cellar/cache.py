"""cellar.cache: a bounded cache of loaded object revisions, coherent
with the client's invalidation stream (in the spirit of ZEO's client
cache). CellarStorage answers ``loadBefore`` from it (docs/zodb.md, "Local
cache").

Two kinds of entries, each one revision's data:

* **current**: (oid, serial), valid from ``serial`` with no known end.
  It answers ``loadBefore(oid, tid)`` for ``serial < tid <= snapshot + 1``
  only: every invalidation up to the client's snapshot has reached the
  cache (the listeners run before the snapshot moves), so no revision of
  the oid is below such a tid that the cache does not know of. Above it
  (a tid the client has not caught up with) the storages are asked.
* **non-current**: (oid, serial, end): ``end`` is the next revision's tid.
  It answers ``loadBefore(oid, tid)`` for ``serial < tid <= end``, at any
  time: committed history does not change.

An invalidation (tid, oids) turns each oid's current entry with a serial
below tid into a non-current one ending at tid.

A load runs outside the cache, so an invalidation may arrive between the
moment the storage computed the answer and the moment it is stored here.
The caller reads ``view()`` before the load and passes it to ``store``.
An answer with a next serial is history and always kept. An answer
without one ("current as far as the storage knew") is kept as current
only if no invalidation of that oid with a later tid arrived since
``view()`` (a short log of the recent invalidations says); if one did,
it is kept as non-current, ending at the first such tid. It is not kept
at all when the load read below the snapshot of ``view()`` (the storage's
"current" may then predate an invalidation already applied here), when
the log no longer reaches back to that snapshot, or when the stream was
replaced (a reconnection, a new snapshot from the master) since ``view()``.

A replaced stream (the client's reset listeners) drops every entry:
invalidations may have been lost, and a truncation may have rewritten
history. The cache is bounded in bytes (data plus a fixed overhead per
entry); the least recently used entries are evicted first. Size 0
disables it. Thread-safe.
"""
import collections
import threading
from typing import Dict, List, Optional, Tuple

from cellar.client import Client, LoadResult, SnapshotView

__all__ = ["RevisionCache", "check_size"]

# Bytes counted per entry besides its data (keys, bookkeeping).
ENTRY_OVERHEAD = 100
# Most oids kept in the log of recent invalidations (the records of whole
# transactions are dropped oldest first past it).
_LOG_KEEP_OIDS = 100000


def check_size(value, name: str) -> int:
    """``value`` if it is a cache size (an int >= 0), else ValueError
    naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("%s must be a number of bytes >= 0 (0 disables the local cache), got %r"
                         % (name, value))
    return value


class _Entry:
    __slots__ = ("data", "end")

    def __init__(self, data: bytes, end: int):
        self.data = data
        # The next revision's tid; 0: current.
        self.end = end


class RevisionCache:
    """See the module documentation. ``limit`` is the size in bytes (0:
    disabled: ``lookup`` finds nothing, ``store`` keeps nothing, nothing is
    counted)."""

    def __init__(self, client: Client, limit: int):
        self.limit = check_size(limit, "limit")
        self._client = client
        self._lock = threading.Lock()
        # (oid, serial) -> entry, least recently used first.
        self._entries: "collections.OrderedDict[Tuple[int, int], _Entry]" = \
            collections.OrderedDict()
        self._current: Dict[int, int] = {}          # oid -> serial
        self._noncurrent: Dict[int, List[int]] = {}  # oid -> serials
        self._bytes = 0
        # Recent invalidations (tid, oids) of this stream generation, in tid
        # order; every invalidation above _log_floor is in it.
        self._log: "collections.deque[Tuple[int, frozenset]]" = collections.deque()
        self._log_oids = 0
        self._log_floor = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.resets = 0
        if limit:
            client.add_invalidation_listener(self._invalidate)
            client.add_reset_listener(self._reset)

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def close(self) -> None:
        if self.limit:
            self._client.remove_invalidation_listener(self._invalidate)
            self._client.remove_reset_listener(self._reset)
        with self._lock:
            self._drop_all()

    def view(self) -> SnapshotView:
        """To read before a load whose answer goes to ``store``."""
        return self._client.snapshot_view()

    # ------------------------------------------------------------------

    def lookup(self, oid: int, tid: int,
               count: bool = True) -> Optional[Tuple[bytes, int, int]]:
        """(data, serial, end or 0) of the revision of ``oid`` that
        ``loadBefore(oid, tid)`` gives, if the cache can tell; else None.
        ``count`` False: a hint's look (prefetch), not counted as a hit or
        miss nor made recent."""
        if not self.limit:
            return None
        with self._lock:
            view = self._client.snapshot_view()
            serial = self._current.get(oid)
            if serial is not None and serial < tid and view.settled and tid - 1 <= view.snapshot:
                return self._hit(oid, serial, count)
            for serial in self._noncurrent.get(oid, ()):
                if serial < tid <= self._entries[(oid, serial)].end:
                    return self._hit(oid, serial, count)
            if count:
                self.misses += 1
            return None

    def _hit(self, oid: int, serial: int, count: bool) -> Tuple[bytes, int, int]:
        entry = self._entries[(oid, serial)]
        if count:
            self._entries.move_to_end((oid, serial))
            self.hits += 1
        return entry.data, serial, entry.end

    def store(self, tid: int, result: LoadResult, before: SnapshotView) -> bool:
        """Keeps ``result``, the answer to ``loadBefore(result.oid, tid)``
        read with ``before = view()`` taken before the load (see the module
        documentation for what is kept). True if kept."""
        size = len(result.data) + ENTRY_OVERHEAD
        if not self.limit or size > self.limit or not result.data:
            return False
        oid, serial = result.oid, result.serial
        with self._lock:
            now = self._client.snapshot_view()
            if not (before.settled and now.settled and now.generation == before.generation):
                return False
            end = result.next_serial
            if not end:
                if tid - 1 < before.snapshot or before.snapshot < self._log_floor:
                    return False
                for logged_tid, oids in reversed(self._log):
                    if logged_tid <= before.snapshot:
                        break
                    if logged_tid > serial and oid in oids:
                        end = logged_tid  # the earliest such tid wins
            if (oid, serial) in self._entries:
                self._remove(oid, serial)
            if not end:
                older = self._current.get(oid)
                if older is not None:
                    if older > serial:
                        return False  # a newer revision is already known current
                    self._remove(oid, older)
                self._current[oid] = serial
            else:
                self._noncurrent.setdefault(oid, []).append(serial)
            self._entries[(oid, serial)] = _Entry(result.data, end)
            self._bytes += size
            while self._bytes > self.limit:
                (old_oid, old_serial), _ = next(iter(self._entries.items()))
                self._remove(old_oid, old_serial)
                self.evictions += 1
            return (oid, serial) in self._entries

    def forget_before(self, pack_tid: int) -> None:
        """Drops the non-current entries that a pack at ``pack_tid``
        removed on the storages (those ending at or before it)."""
        with self._lock:
            doomed = [(oid, serial) for (oid, serial), entry in self._entries.items()
                      if entry.end and entry.end <= pack_tid]
            for oid, serial in doomed:
                self._remove(oid, serial)

    def stats(self) -> Dict[str, int]:
        with self._lock:
            return {"limit": self.limit, "bytes": self._bytes, "entries": len(self._entries),
                    "current": len(self._current), "hits": self.hits, "misses": self.misses,
                    "evictions": self.evictions, "resets": self.resets}

    # ------------------------------------------------------------------
    # The client's listeners (its watch thread).

    def _invalidate(self, tid: int, oids: List[int]) -> None:
        with self._lock:
            oid_set = frozenset(oids)
            for oid in oid_set:
                serial = self._current.get(oid)
                if serial is not None and serial < tid:
                    del self._current[oid]
                    self._entries[(oid, serial)].end = tid
                    self._noncurrent.setdefault(oid, []).append(serial)
            self._log.append((tid, oid_set))
            self._log_oids += len(oid_set)
            while self._log_oids > _LOG_KEEP_OIDS and len(self._log) > 1:
                dropped_tid, dropped = self._log.popleft()
                self._log_oids -= len(dropped)
                self._log_floor = dropped_tid

    def _reset(self) -> None:
        with self._lock:
            self._drop_all()
            self.resets += 1

    # ------------------------------------------------------------------

    def _drop_all(self) -> None:
        self._entries.clear()
        self._current.clear()
        self._noncurrent.clear()
        self._bytes = 0
        self._log.clear()
        self._log_oids = 0
        self._log_floor = 0

    def _remove(self, oid: int, serial: int) -> None:
        entry = self._entries.pop((oid, serial))
        self._bytes -= len(entry.data) + ENTRY_OVERHEAD
        if entry.end:
            serials = self._noncurrent[oid]
            serials.remove(serial)
            if not serials:
                del self._noncurrent[oid]
        else:
            del self._current[oid]
