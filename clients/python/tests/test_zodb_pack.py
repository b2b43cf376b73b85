"""CellarStorage.pack: the cluster's background pack (Master.Pack), waited
for like FileStorage's pack. ZODB's PackableStorage tests run in
test_zodb_conformance.py; these check what is cellar's own: the pack tid
taken from the time, the wait's bound, the cache after a pack. Each test
has a cluster of its own (a pack tid stays with the storages)."""
import time

import pytest

from ZODB import POSException
from ZODB.Connection import TransactionMetaData
from ZODB.serialize import referencesf
from ZODB.utils import p64, u64

from cellar.zodb import CellarStorage
from cellar_cluster import LocalCluster


@pytest.fixture
def own_cluster():
    c = LocalCluster()
    yield c
    c.stop()


def store(storage, oid, serial, data):
    t = TransactionMetaData()
    storage.tpc_begin(t)
    storage.store(oid, serial, data, "", t)
    storage.tpc_vote(t)
    return storage.tpc_finish(t)


def test_pack_removes_old_revisions_and_the_cached_history(own_cluster):
    storage = CellarStorage(own_cluster.master, own_cluster.cluster_name)
    try:
        oid = storage.new_oid()
        t1 = store(storage, oid, None, b"v1")
        t2 = store(storage, oid, t1, b"v2")
        t3 = store(storage, oid, t2, b"v3")
        # v2 read as history (it ends at t3): now in the local cache.
        assert storage.loadBefore(oid, t3) == (b"v2", t2, t3)
        hits = storage.cache_hits
        assert storage.loadBefore(oid, t3) == (b"v2", t2, t3)
        assert storage.cache_hits == hits + 1

        storage.pack(time.time() + 60, referencesf)  # after the last commit: at t3
        status = storage.client.pack_status()
        assert status.done and status.pack_tid == u64(t3)
        assert status.rows_removed >= 2
        for old in (t1, t2):
            with pytest.raises(POSException.POSKeyError):
                storage.loadSerial(oid, old)
        # The cached v2 is gone with it: the storages now say REVISION_PACKED.
        with pytest.raises(POSException.POSKeyError):
            storage.loadBefore(oid, t3)
        assert storage.load(oid) == (b"v3", t3)
        assert storage.loadSerial(oid, t3) == b"v3"
    finally:
        storage.close()


def test_pack_at_a_time_before_the_commits_removes_nothing(own_cluster):
    storage = CellarStorage(own_cluster.master, own_cluster.cluster_name)
    try:
        oid = storage.new_oid()
        t1 = store(storage, oid, None, b"v1")
        store(storage, oid, t1, b"v2")
        storage.pack(time.time() - 3600, referencesf)
        status = storage.client.pack_status()
        assert status.done and 0 < status.pack_tid < u64(t1)
        assert status.rows_removed == 0
        assert storage.loadSerial(oid, t1) == b"v1"
    finally:
        storage.close()


def test_pack_that_does_not_finish_in_time_is_a_clear_error(own_cluster):
    storage = CellarStorage(own_cluster.master, own_cluster.cluster_name, pack_timeout=0.001)
    try:
        oid = storage.new_oid()
        t1 = store(storage, oid, None, b"v1")
        t2 = store(storage, oid, t1, b"v2")
        with pytest.raises(POSException.StorageError) as info:
            storage.pack(time.time() + 60, referencesf)
        assert "pack at 0x%016x not done within 0.001s" % u64(t2) in str(info.value)
        assert "cell(s) packed" in str(info.value)
        # The cluster goes on; waiting again (longer) sees it done.
        assert storage.client.pack(u64(t2), timeout=60).done
    finally:
        storage.close()


def test_a_read_only_storage_does_not_pack(own_cluster):
    storage = CellarStorage(own_cluster.master, own_cluster.cluster_name, read_only=True)
    try:
        with pytest.raises(POSException.ReadOnlyError):
            storage.pack(time.time(), referencesf)
    finally:
        storage.close()


def test_db_pack_through_zodb(own_cluster):
    # ZODB.DB.pack(days=...) reaches the storage: the application's call.
    import ZODB
    from persistent.mapping import PersistentMapping
    db = ZODB.DB(CellarStorage(own_cluster.master, own_cluster.cluster_name))
    try:
        for i in range(3):
            with db.transaction() as conn:
                conn.root()["m"] = PersistentMapping(i=i)
        last = db.storage.lastTransaction()
        db.pack(time.time() + 60)
        status = db.storage.client.pack_status()
        assert status.done and status.pack_tid == u64(last)
        with db.transaction() as conn:
            assert conn.root()["m"]["i"] == 2
        assert len(db.history(p64(0), 10)) == 1  # the root's older revisions are gone
    finally:
        db.close()
