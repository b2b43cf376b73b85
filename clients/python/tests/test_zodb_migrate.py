"""Migrating an existing ZODB database into cellar and out again
(docs/zodb.md, "Migrating"): copyTransactionsFrom (zodbconvert's copy)
from a FileStorage of a few hundred transactions — plain revisions,
undos (back-pointers) and the undo of an object's creation (a deletion) —
into a fresh cluster keeps every revision byte for byte with its tid,
and copying out of cellar (its iterator) into a new FileStorage gives the
same transactions back; restores below the last tid or far in the future
are refused and change nothing."""
import time

import grpc
import pytest
import transaction
import ZODB
from persistent.mapping import PersistentMapping
from ZODB.FileStorage import FileStorage
from ZODB.POSException import POSKeyError
from ZODB.utils import p64, u64

import cellar
from cellar.zodb import CellarStorage
from cellar_cluster import LocalCluster

TRANSACTIONS = 300


def make_source(path):
    """A FileStorage with TRANSACTIONS + a few transactions: objects
    created and changed, one undo (back-pointers) and the undo of an
    object's creation (a deletion record, data None)."""
    db = ZODB.DB(FileStorage(str(path)))
    conn = db.open()
    root = conn.root()
    for i in range(TRANSACTIONS):
        key = "k%d" % (i % 40)
        if key not in root:
            root[key] = PersistentMapping()
        root[key]["n"] = i
        root[key]["blob"] = b"x" * (i % 7) * 100
        transaction.get().note("step %d" % i)
        transaction.get().setUser("migrator")
        transaction.commit()
    # Undo the last change of k5 (a back-pointer to its previous data).
    last = db.storage.undoLog(0, 1)[0]
    db.undo(last["id"])
    transaction.commit()
    # An object created in its own transaction, then that creation undone.
    root["doomed"] = PersistentMapping({"x": 1})
    transaction.commit()
    created = db.storage.undoLog(0, 1)[0]
    db.undo(created["id"])
    transaction.commit()
    conn.close()
    db.close()
    return FileStorage(str(path), read_only=True)


def records(storage):
    """[(tid, user, description, [(oid, data, data_txn)])] of every
    transaction of ``storage``, in order."""
    out = []
    it = storage.iterator()
    try:
        for t in it:
            out.append((t.tid, t.user, t.description,
                        [(r.oid, r.data, r.data_txn) for r in t]))
    finally:
        if hasattr(it, "close"):
            it.close()
    return out


@pytest.fixture
def empty_cluster():
    c = LocalCluster()
    yield c
    c.stop()


def test_copy_from_filestorage_keeps_every_revision_and_tid(tmp_path, empty_cluster):
    source = make_source(tmp_path / "source.fs")
    want = records(source)
    assert len(want) > TRANSACTIONS
    assert any(data is None for _, _, _, recs in want for _, data, _ in recs), \
        "the source has no undone creation"
    assert any(txn is not None for _, _, _, recs in want for _, _, txn in recs), \
        "the source has no back-pointer"

    dest = CellarStorage(empty_cluster.master, empty_cluster.cluster_name)
    try:
        start = time.monotonic()
        dest.copyTransactionsFrom(source)
        elapsed = time.monotonic() - start
        print("restored %d transactions in %.2fs" % (len(want), elapsed))
        assert dest.lastTransaction() == source.lastTransaction()

        client = dest.client
        for tid, user, description, recs in want:
            record = client.get_transaction(u64(tid))
            assert record.user == user and record.description == description
            for oid, data, _ in recs:
                if data is None:
                    with pytest.raises(POSKeyError):
                        dest.loadSerial(oid, tid)
                    continue
                assert dest.loadSerial(oid, tid) == data, (u64(oid), u64(tid))
                assert dest.loadBefore(oid, p64(u64(tid) + 1))[:2] == (data, tid)
        # The latest revision of every object, as in the source.
        for oid in {oid for _, _, _, recs in want for oid, _, _ in recs}:
            try:
                expected = source.load(oid)
            except POSKeyError:
                with pytest.raises(POSKeyError):
                    dest.load(oid)
                continue
            assert dest.load(oid) == expected

        # The migrated database works: a new commit gets a later tid and a
        # new object an oid the source never used.
        db = ZODB.DB(dest)
        try:
            conn = db.open()
            root = conn.root()
            assert root["k5"]["n"] == source_root_value(source, "k5")
            root["after"] = PersistentMapping({"ok": True})
            transaction.commit()
            assert u64(root["after"]._p_oid) > max(u64(o) for _, _, _, r in want for o, _, _ in r)
            assert dest.lastTransaction() > source.lastTransaction()
            conn.close()
        finally:
            db.close()
    finally:
        dest.close()
        source.close()


def revisions(storage):
    """[(tid, status, user, description, extension, [(oid, tid, data)])] of
    every transaction of ``storage``, in order: what a copy must keep
    (data_txn is not: a restore with data stores the bytes again)."""
    out = []
    it = storage.iterator()
    try:
        for t in it:
            out.append((t.tid, t.status, t.user, t.description, t.extension_bytes,
                        [(r.oid, r.tid, r.data) for r in t]))
    finally:
        if hasattr(it, "close"):
            it.close()
    return out


def test_round_trip_filestorage_cellar_filestorage(tmp_path, empty_cluster):
    """FileStorage -> cellar (restore) -> a new FileStorage (copied from
    cellar's iterator, zodbconvert's way out) keeps every transaction, tid,
    metadata and object revision byte for byte; so does cellar's own
    iterator, and a range of it."""
    source = make_source(tmp_path / "source.fs")
    want = revisions(source)
    middle = CellarStorage(empty_cluster.master, empty_cluster.cluster_name)
    out = FileStorage(str(tmp_path / "out.fs"))
    try:
        middle.copyTransactionsFrom(source)
        got = revisions(middle)
        assert len(got) == len(want)
        assert got == want
        start = time.monotonic()
        out.copyTransactionsFrom(middle)
        print("copied %d transactions out of cellar in %.2fs"
              % (len(want), time.monotonic() - start))
        assert revisions(out) == want
        assert out.lastTransaction() == source.lastTransaction()
        # A range, both ends included.
        tids = [t[0] for t in want]
        ranged = list(middle.iterator(tids[10], tids[20]))
        assert [t.tid for t in ranged] == tids[10:21]
        # An incremental backup (docs/zodb.md): what came after the copy's
        # last tid, by hand.
        db = ZODB.DB(middle)
        try:
            conn = db.open()
            conn.root()["k5"]["n"] = "after the backup"
            transaction.commit()
            conn.close()
        finally:
            db.close()
        middle = CellarStorage(empty_cluster.master, empty_cluster.cluster_name,
                               read_only=True)
        for txn in middle.iterator(p64(u64(out.lastTransaction()) + 1)):
            out.tpc_begin(txn, txn.tid, txn.status)
            for r in txn:
                out.restore(r.oid, r.tid, r.data, "", r.data_txn, txn)
            out.tpc_vote(txn)
            out.tpc_finish(txn)
        assert len(revisions(out)) == len(want) + 1
        assert revisions(out) == revisions(middle)
        # The copy opens as a database with the same state.
        out.close()
        assert source_root_value(FileStorage(str(tmp_path / "out.fs"), read_only=True),
                                 "k5") == "after the backup"
    finally:
        out.close()
        middle.close()
        source.close()


def source_root_value(source, key):
    db = ZODB.DB(source)
    try:
        conn = db.open()
        return conn.root()[key]["n"]
    finally:
        db.close()


def test_restore_refuses_old_and_far_future_tids(empty_cluster):
    client = cellar.Client(empty_cluster.master, empty_cluster.cluster_name)
    try:
        oid = client.new_oid()
        with client.transaction() as t:
            t.store(oid, 0, b"v1")
        last = t.tid
        for tid, code in ((last, grpc.StatusCode.FAILED_PRECONDITION),
                          (last - 1, grpc.StatusCode.FAILED_PRECONDITION),
                          (last + (60 << 32), grpc.StatusCode.INVALID_ARGUMENT),
                          (cellar.MAX_TID, grpc.StatusCode.INVALID_ARGUMENT)):
            r = client.transaction(tid=tid)
            r.store(oid, last, b"forged")
            with pytest.raises(cellar.CellarError) as e:
                r.commit()
            assert e.value.code == code, (cellar.tid_hex(tid), e.value)
        # Nothing changed: the data, the last tid, the next tid.
        assert client.load(oid).data == b"v1"
        assert client.load(oid).serial == last
        assert client.last_transactions(1)[0].tid == last
        with client.transaction() as t2:
            t2.store(oid, last, b"v2")
        assert last < t2.tid < last + (60 << 32)
        # A restore just above the last tid commits with that tid.
        r = client.transaction(tid=t2.tid + 1)
        r.store(oid, t2.tid, b"v3")
        assert r.commit() == t2.tid + 1
        assert client.load(oid) == client.load_serial(oid, t2.tid + 1)
    finally:
        client.close()
