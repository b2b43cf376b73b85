"""A small real ZODB program on CellarStorage: persistent objects, BTrees,
two databases (two clients) seeing each other's commits, conflict
resolution, concurrent writers with retries, metadata round trips."""
import threading
import time

import BTrees.Length
import grpc
import persistent
import pytest
import transaction
import ZODB
from BTrees.OOBTree import OOBTree
from persistent.mapping import PersistentMapping
from ZODB.POSException import ConflictError
from ZODB.utils import u64

import cellar
import cellar.zodb
from cellar.zodb import CellarStorage


class Item(persistent.Persistent):
    def __init__(self, name, price):
        self.name = name
        self.price = price


@pytest.fixture
def cluster(fresh_cluster):
    return fresh_cluster


def open_db(cluster, **kw):
    return ZODB.DB(CellarStorage(cluster.master, cluster.cluster_name), **kw)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_catalogue_persists_and_is_seen_by_another_db(cluster):
    db1 = open_db(cluster)
    db2 = open_db(cluster)
    try:
        tm1 = transaction.TransactionManager()
        c1 = db1.open(tm1)
        root = c1.root()
        root["catalogue"] = cat = OOBTree()
        root["count"] = BTrees.Length.Length()
        for i in range(500):
            cat["item%04d" % i] = Item("item%04d" % i, i)
            root["count"].change(1)
        t = tm1.get()
        t.note("load the catalogue")
        t.setUser("alice")
        t.setExtendedInfo("source", "test")
        tm1.commit()
        tid = c1._storage.lastTransaction()

        # The committed transaction's metadata, as the storages keep it.
        record = db1.storage.client.last_transactions(1)[0]
        assert record.tid == u64(tid)
        assert record.description == b"load the catalogue"
        assert record.user == b"/ alice"  # transaction's "path user" form
        assert b"source" in record.extension
        assert len(record.oids) > 500

        # Another database (another client) sees it all.
        tm2 = transaction.TransactionManager()
        c2 = db2.open(tm2)
        assert wait_for(lambda: db2.storage.lastTransaction() >= tid)
        tm2.begin()
        cat2 = c2.root()["catalogue"]
        assert len(cat2) == 500
        assert cat2["item0042"].price == 42
        assert c2.root()["count"].value == 500

        # A change by db1 invalidates db2's copy.
        cat["item0042"].price = 4200
        tm1.commit()
        tm2.begin()
        assert cat2["item0042"].price == 4200

        # History with the record's metadata (found by tid).
        h = db1.history(cat["item0042"]._p_oid, size=5)
        assert len(h) == 2
        assert h[1]["description"] == "load the catalogue"  # DB.history decodes
        c1.close()
        c2.close()
    finally:
        db1.close()
        db2.close()
    # Reopened: everything is still there.
    db3 = open_db(cluster)
    try:
        with db3.transaction() as conn:
            assert conn.root()["catalogue"]["item0042"].price == 4200
            assert len(conn.root()["catalogue"]) == 500
    finally:
        db3.close()


def test_conflict_resolution_and_unresolvable_conflicts(cluster):
    db1 = open_db(cluster)
    db2 = open_db(cluster)
    try:
        with db1.transaction() as conn:
            conn.root()["length"] = BTrees.Length.Length()
            conn.root()["map"] = PersistentMapping()
        tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
        c1, c2 = db1.open(tm1), db2.open(tm2)
        assert wait_for(lambda: db2.storage.lastTransaction() >= db1.storage.lastTransaction())
        tm1.begin()
        tm2.begin()
        # Both change the Length: resolved (BTrees.Length._p_resolveConflict).
        c1.root()["length"].change(1)
        c2.root()["length"].change(10)
        tm1.commit()
        tm2.commit()
        with db1.transaction() as conn:
            assert conn.root()["length"].value == 11
        # Both change a PersistentMapping: not resolvable.
        tm1.begin()
        tm2.begin()
        c1.root()["map"]["a"] = 1
        c2.root()["map"]["b"] = 2
        tm1.commit()
        with pytest.raises(ConflictError):
            tm2.commit()
        tm2.abort()
        tm2.begin()
        assert dict(c2.root()["map"]) == {"a": 1}
        c1.close()
        c2.close()
    finally:
        db1.close()
        db2.close()


def test_concurrent_writers_with_retries(cluster):
    db = open_db(cluster)
    try:
        with db.transaction() as conn:
            conn.root()["tree"] = OOBTree()
            conn.root()["total"] = PersistentMapping(value=0)
        failures = []

        def writer(n):
            tm = transaction.TransactionManager()
            conn = db.open(tm)
            try:
                for i in range(15):
                    for attempt in tm.attempts(50):
                        with attempt:
                            root = conn.root()
                            root["tree"]["w%d-%d" % (n, i)] = i
                            root["total"]["value"] += 1
            except Exception as e:  # pragma: no cover
                failures.append(e)
            finally:
                conn.close()
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(180)
        assert not failures
        with db.transaction() as conn:
            assert conn.root()["total"]["value"] == 60
            assert len(conn.root()["tree"]) == 60
    finally:
        db.close()


def test_db_helper_and_historical_connection(cluster):
    db = cellar.zodb.DB(cluster.master, cluster.cluster_name)
    try:
        with db.transaction() as conn:
            conn.root()["x"] = 1
        t1 = db.storage.lastTransaction()
        with db.transaction() as conn:
            conn.root()["x"] = 2
        conn = db.open(at=t1)
        assert conn.root()["x"] == 1
        conn.close()
        assert db.storage.sortKey().startswith("cellar:")
    finally:
        db.close()


@pytest.mark.parametrize("local_cache_size", [0, 1 << 20])
def test_prefetch_loads_many_objects_in_one_call(cluster, local_cache_size):
    db = open_db(cluster)
    try:
        with db.transaction() as conn:
            conn.root()["items"] = [Item("item-%d" % i, i) for i in range(50)]
        # A cold ZODB cache; prefetched revisions wait in the local cache,
        # or without it in a map until their load.
        other = ZODB.DB(CellarStorage(cluster.master, cluster.cluster_name,
                                      local_cache_size=local_cache_size))
        try:
            conn = other.open()
            items = conn.root()["items"]
            storage = other.storage
            single = []
            real_load_before = storage._client.load_before
            storage._client.load_before = lambda *a: single.append(a) or real_load_before(*a)
            entries = storage.cache_stats()["entries"]
            conn.prefetch(items)
            if local_cache_size:
                assert storage.cache_stats()["entries"] == entries + 50
                assert storage._prefetched == {}
            else:
                assert len(storage._prefetched) == 50
            hits = storage.cache_hits
            assert [item.price for item in items] == list(range(50))
            assert single == []  # every object came from the prefetch
            assert storage._prefetched == {}
            assert storage.cache_hits == hits + (50 if local_cache_size else 0)
            conn.close()
        finally:
            other.close()
    finally:
        db.close()


def test_history_len_getsize_and_deleted_objects(cluster):
    from ZODB.POSException import POSKeyError
    from ZODB.utils import p64
    storage = CellarStorage(cluster.master, cluster.cluster_name)
    db = ZODB.DB(storage)
    try:
        assert len(storage) == 1  # the root object ZODB.DB created
        root_size = storage.getSize()
        assert root_size > 0
        tm = transaction.TransactionManager()
        conn = db.open(tm)
        conn.root()["items"] = PersistentMapping({i: Item("i%d" % i, i) for i in range(10)})
        t = tm.get()
        t.setUser("dave")
        t.note("ten items")
        tm.commit()
        assert len(storage) == 12  # root, the mapping, ten items
        assert storage.getSize() > root_size
        root_oid = p64(0)
        h = storage.history(root_oid, 5)
        assert len(h) == 2
        assert h[0]["user_name"] == b"/ dave"
        assert h[0]["description"] == b"ten items"
        assert h[1]["description"] == b"initial database creation"
        # A deleted object (as an undo of its creation leaves it): POSKeyError.
        item_oid = conn.root()["items"][3]._p_oid
        client = storage.client
        serial = client.load(u64(item_oid)).serial
        with client.transaction() as c_txn:
            c_txn.store(u64(item_oid), serial, b"")
        with pytest.raises(POSKeyError):
            storage.load(item_oid)
        with pytest.raises(POSKeyError):
            storage.loadBefore(item_oid, p64(cellar.MAX_TID))
        with pytest.raises(POSKeyError):
            storage.loadSerial(item_oid, p64(c_txn.tid))
        assert storage.loadBefore(item_oid, p64(c_txn.tid))[1] == p64(serial)
        assert len(storage) == 11
        conn.close()
    finally:
        db.close()


def count_loads(client):
    """Counts the client's loads per oid (every path a ZODB load takes)."""
    loads = {}
    for name in ("load", "load_before", "load_serial"):
        real = getattr(client, name)

        def counted(oid, *args, _real=real):
            loads[oid] = loads.get(oid, 0) + 1
            return _real(oid, *args)
        setattr(client, name, counted)
    real_many = client.load_many

    def counted_many(oids, *args):
        for oid in oids:
            loads[oid] = loads.get(oid, 0) + 1
        return real_many(oids, *args)
    client.load_many = counted_many
    return loads


def test_own_commits_do_not_reload_the_committed_object(cluster):
    # As on FileStorage and ZEO: the connection that committed an object
    # keeps it; the storage does not invalidate its own commit in its DB
    # (that cost one load per commit). Another connection of the same DB,
    # a DB on another client, and a DB on another storage sharing this
    # storage's client still see every change.
    db = open_db(cluster)
    other_db = open_db(cluster)
    shared_db = ZODB.DB(CellarStorage(client=db.storage.client))
    try:
        tm = transaction.TransactionManager()
        conn = db.open(tm)
        conn.root()["counter"] = counter = PersistentMapping(n=-1)
        tm.commit()
        oid = u64(counter._p_oid)
        readers = []
        for reader_db in (db, other_db, shared_db):
            reader_tm = transaction.TransactionManager()
            reader = reader_db.open(reader_tm)
            assert wait_for(lambda: reader_db.storage.lastTransaction() >= counter._p_serial)
            reader_tm.begin()
            assert reader.root()["counter"]["n"] == -1  # now in its cache
            readers.append((reader_tm, reader))
        loads = count_loads(db.storage.client)
        for i in range(20):
            tm.begin()
            counter["n"] = i
            tm.commit()
            for reader_tm, reader in readers:
                reader_tm.begin()
                assert reader.root()["counter"]["n"] == i
        tm.begin()
        assert counter["n"] == 19
        # The readers on `db` and on `shared_db` (same client) load the
        # object again after each commit (invalidated); the committing
        # connection never does (it did 21 more loads before the fix).
        assert loads == {oid: 2 * 20}, loads
    finally:
        shared_db.close()
        other_db.close()
        db.close()


def test_own_commit_resolved_after_a_lost_finish_is_invalidated_as_anyones(cluster):
    # The Finish answer is lost and the commit's invalidation is handled
    # before its tid is known: DB.invalidate gets it as another client's
    # (the committing connection loads the object again), and tpc_finish
    # still calls ZODB's func: the other connection sees the change.
    db = open_db(cluster)
    try:
        tm = transaction.TransactionManager()
        conn = db.open(tm)
        conn.root()["counter"] = counter = PersistentMapping(n=0)
        tm.commit()
        reader_tm = transaction.TransactionManager()
        reader = db.open(reader_tm)
        assert reader.root()["counter"]["n"] == 0
        client = db.storage.client
        real_vote = cellar.Transaction._store_and_vote
        real_resolve = client._resolve_finish_failure
        committed = []

        def vote_then_lose_the_answer(txn):
            voted = real_vote(txn)
            master = voted["master"]

            class Master:
                def __getattr__(self, name):
                    return getattr(master, name)

                def Finish(self, request, **kw):
                    committed.append(master.Finish(request, **kw).tid)
                    raise _LostAnswer()
            voted["master"] = Master()
            return voted

        def resolve_once_the_invalidation_passed(*args):
            assert client._wait_for_snapshot(committed[0], 10)
            return real_resolve(*args)
        cellar.Transaction._store_and_vote = vote_then_lose_the_answer
        client._resolve_finish_failure = resolve_once_the_invalidation_passed
        invalidated = []
        real_invalidate = db._mvcc_storage.invalidate
        db._mvcc_storage.invalidate = lambda tid, oids: (invalidated.append(u64(tid)),
                                                         real_invalidate(tid, oids))
        try:
            tm.begin()
            counter["n"] = 1
            tm.commit()
        finally:
            cellar.Transaction._store_and_vote = real_vote
        assert u64(counter._p_serial) == committed[0]
        assert invalidated == committed
        reader_tm.begin()
        assert reader.root()["counter"]["n"] == 1
        tm.begin()
        assert counter["n"] == 1
    finally:
        db.close()


class _LostAnswer(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "the answer was lost (test)"
