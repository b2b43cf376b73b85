"""CellarStorage's local cache of loaded revisions (cellar.cache): served
only while the invalidation stream says it is still right, bounded in
bytes, off with local_cache_size=0, dropped when the stream is replaced."""
import threading
import time

import pytest
from ZODB.utils import p64

import cellar
from cellar.cache import ENTRY_OVERHEAD
from cellar.zodb import CellarStorage


@pytest.fixture
def cluster(fresh_cluster):
    return fresh_cluster


@pytest.fixture
def writer(cluster):
    """Another client of the cluster: its commits reach the storage under
    test as invalidations."""
    c = cellar.Client(cluster.master, cluster.cluster_name)
    yield c
    c.close()


def commit(client, objects, serials=None):
    """Commits {oid: data}; returns the tid."""
    serials = serials or {}
    with client.transaction() as t:
        for oid, data in objects.items():
            t.store(oid, serials.get(oid, 0), data)
    return t.tid


def wait_for(predicate, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("%s: not within %.0f s" % (what, timeout))
        time.sleep(0.005)


def load_now(storage, oid):
    """loadBefore at this storage's snapshot, as ZODB's MVCC adapter reads."""
    return storage.loadBefore(p64(oid), p64(storage.client.snapshot + 1))


def count_loads(client):
    """Counts the client's Storage.Load calls (client._load)."""
    calls = []
    real = client._load

    def counting(oid, request):
        calls.append(oid)
        return real(oid, request)
    client._load = counting
    return calls


class HeldLoad:
    """Runs ``load_now(storage, oid)`` on a thread whose Storage.Load
    answer is held (client._load returns only when released): the
    answer is computed, then overtaken by whatever the test does."""

    def __init__(self, storage, oid):
        self._client = storage.client
        self._real = self._client._load
        self._answered, self._proceed = threading.Event(), threading.Event()
        self.result = []
        self._client._load = self._slow
        self._thread = threading.Thread(
            target=lambda: self.result.append(load_now(storage, oid)))
        self._thread.start()
        assert self._answered.wait(10), "the load did not reach the storage"
        self._client._load = self._real  # the next loads are not held

    def _slow(self, oid, request):
        r = self._real(oid, request)
        self._answered.set()
        self._proceed.wait(10)
        return r

    def release(self):
        self._proceed.set()
        self._thread.join(10)


@pytest.fixture
def storage(cluster):
    s = CellarStorage(cluster.master, cluster.cluster_name)
    yield s
    s.close()


def test_another_clients_commit_ends_the_cached_revision(storage, writer):
    oid = writer.new_oid()
    t1 = commit(writer, {oid: b"v1"})
    storage.sync()
    loads = count_loads(storage.client)
    assert load_now(storage, oid) == (b"v1", p64(t1), None)
    assert load_now(storage, oid) == (b"v1", p64(t1), None)
    assert len(loads) == 1 and storage.cache_hits == 1 and storage.cache_misses == 1

    t2 = commit(writer, {oid: b"v2"}, {oid: t1})
    wait_for(lambda: storage.client.snapshot >= t2, "the storage's client sees t2")
    # Never the cached v1 for a tid after the commit.
    assert storage.loadBefore(p64(oid), p64(t2 + 1)) == (b"v2", p64(t2), None)
    # Before t2, v1 is history with a known end: answered from the cache.
    hits = storage.cache_hits
    assert storage.loadBefore(p64(oid), p64(t2)) == (b"v1", p64(t1), p64(t2))
    assert storage.cache_hits == hits + 1
    assert len(loads) == 2
    stats = storage.cache_stats()
    assert stats["entries"] == 2 and stats["current"] == 1


def test_a_current_entry_is_not_served_past_the_clients_snapshot(cluster, writer):
    # The invalidation of the writer's commit is held back on the storage's
    # watch thread (a listener registered before the cache's): the cached
    # revision must not answer a tid the client has not caught up with.
    client = cellar.Client(cluster.master, cluster.cluster_name)
    held, release = threading.Event(), threading.Event()
    hold = [False]

    def holding(tid, oids):
        if hold[0]:
            held.set()
            release.wait(10)
    client.add_invalidation_listener(holding)
    storage = CellarStorage(client=client)
    try:
        oid = writer.new_oid()
        t1 = commit(writer, {oid: b"v1"})
        storage.sync()
        assert load_now(storage, oid)[0] == b"v1"
        hold[0] = True
        t2 = commit(writer, {oid: b"v2"}, {oid: t1})
        assert held.wait(10), "the invalidation of t2 did not arrive"
        assert client.snapshot < t2
        assert storage.loadBefore(p64(oid), p64(t2 + 1)) == (b"v2", p64(t2), None)
        hold[0] = False
        release.set()
        wait_for(lambda: client.snapshot >= t2, "the client sees t2")
        hits = storage.cache_hits
        assert storage.loadBefore(p64(oid), p64(t2 + 1)) == (b"v2", p64(t2), None)
        assert storage.cache_hits == hits + 1
    finally:
        release.set()
        storage.close()
        client.close()


def test_a_load_overtaken_by_an_invalidation_is_not_cached_as_current(storage, writer):
    # The load's answer (v1) is computed, then held while the writer
    # commits v2 and its invalidation reaches the cache: v1 must not become
    # the current entry (it is kept as history ending at t2).
    oid = writer.new_oid()
    t1 = commit(writer, {oid: b"v1"})
    storage.sync()
    held = HeldLoad(storage, oid)
    try:
        t2 = commit(writer, {oid: b"v2"}, {oid: t1})
        wait_for(lambda: storage.client.snapshot >= t2, "the storage's client sees t2")
    finally:
        held.release()
    assert held.result == [(b"v1", p64(t1), None)]  # a read at the snapshot before t2
    assert load_now(storage, oid) == (b"v2", p64(t2), None)
    hits = storage.cache_hits
    assert storage.loadBefore(p64(oid), p64(t2)) == (b"v1", p64(t1), p64(t2))
    assert storage.cache_hits == hits + 1


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(cluster, writer):
    size = 1000
    storage = CellarStorage(cluster.master, cluster.cluster_name,
                            local_cache_size=5 * (size + ENTRY_OVERHEAD))
    try:
        oids = [writer.new_oid() for _ in range(10)]
        commit(writer, {oid: bytes([i]) * size for i, oid in enumerate(oids)})
        storage.sync()
        for oid in oids:
            load_now(storage, oid)
        stats = storage.cache_stats()
        assert stats["evictions"] == 5 and stats["entries"] == 5
        assert stats["bytes"] <= stats["limit"]
        loads = count_loads(storage.client)
        for i, oid in enumerate(oids[5:]):
            assert load_now(storage, oid)[0] == bytes([5 + i]) * size
        assert loads == []
        assert load_now(storage, oids[0])[0] == bytes([0]) * size  # evicted
        assert loads == [oids[0]] and storage.cache_evictions == 6
    finally:
        storage.close()


def test_local_cache_size_0_disables_the_cache(cluster, writer):
    storage = CellarStorage(cluster.master, cluster.cluster_name, local_cache_size=0)
    try:
        oid = writer.new_oid()
        commit(writer, {oid: b"v1"})
        storage.sync()
        loads = count_loads(storage.client)
        for _ in range(3):
            assert load_now(storage, oid)[0] == b"v1"
        assert len(loads) == 3
        stats = storage.cache_stats()
        assert (stats["limit"], stats["entries"], stats["hits"], stats["misses"]) == (0, 0, 0, 0)
    finally:
        storage.close()
    with pytest.raises(ValueError, match="local_cache_size must be a number of bytes >= 0"):
        CellarStorage(cluster.master, cluster.cluster_name, local_cache_size=-1)


def test_a_new_session_drops_the_cache_and_the_loads_in_flight(storage, writer):
    # The Watch stream breaks: invalidations may have been lost, so
    # nothing cached before, nor any answer read across it, is kept.
    oid, other = writer.new_oid(), writer.new_oid()
    commit(writer, {oid: b"v1", other: b"w1"})
    storage.sync()
    client = storage.client
    load_now(storage, oid)
    assert storage.cache_stats()["entries"] == 1
    held = HeldLoad(storage, other)
    try:
        sessions = client.session_count
        client._watch_call.cancel()
        assert client.await_session(sessions + 1, 10), "no new session"
    finally:
        held.release()
    assert held.result[0][0] == b"w1"
    stats = storage.cache_stats()
    assert stats["resets"] == 1 and stats["entries"] == 0
    load_now(storage, other)
    assert storage.cache_stats()["entries"] == 1  # cached again in the new session
