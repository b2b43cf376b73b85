"""ZODB's own storage test classes against CellarStorage.

Every test gets a fresh `cellar local` cluster (tests/cellar_cluster.py;
about half a second to start and stop), so lastTransaction() starts at
z64 and fixed oids are free (and tpc_begin(txn, tid) may restore tids
1, 2, 3: RevisionStorage.testLoadBeforeConsecutiveTids). The undo
classes are the acceptance tests of the data-lifecycle issue: expected
failures here. Pack passes but for the two tests that need garbage
collection of unreachable objects; iteration passes but for the test that
needs undo. The storage's local cache is on (its default) throughout.
"""
import os
import unittest

import pytest
from ZODB.tests import (BasicStorage, ConflictResolution, HistoryStorage, IteratorStorage,
                        MTStorage, PackableStorage, PersistentStorage, ReadOnlyStorage,
                        RevisionStorage, StorageTestBase, Synchronization,
                        TransactionalUndoStorage, racetest)

from cellar.zodb import CellarStorage
from cellar_cluster import LocalCluster


class CellarStorageTestBase(StorageTestBase.StorageTestBase):

    def setUp(self):
        StorageTestBase.StorageTestBase.setUp(self)
        self._cluster = LocalCluster()
        self.open()

    def open(self, read_only=False):
        self._storage = CellarStorage(self._cluster.master, self._cluster.cluster_name,
                                      read_only=read_only)

    def _new_storage_client(self):
        # Another client of the same cluster (racetest's external
        # invalidation tests).
        return CellarStorage(self._cluster.master, self._cluster.cluster_name)

    def tearDown(self):
        try:
            StorageTestBase.StorageTestBase.tearDown(self)
        finally:
            self._cluster.stop()


class BasicTests(CellarStorageTestBase, BasicStorage.BasicStorage):

    def test_race_external_invalidate_vs_disconnect(self):
        # 64 threads x 12 database opens: correct, but about 165 s on 2
        # shared cores, over racetest's own 120 s wait. Run with
        # CELLAR_ZODB_LONG=1 (the wait is then 900 s).
        if not os.environ.get("CELLAR_ZODB_LONG"):
            self.skipTest("long (~165 s on 2 cores): set CELLAR_ZODB_LONG=1")
        wait = racetest.TestWorkGroup.wait
        racetest.TestWorkGroup.wait = lambda group, timeout: wait(group, 900)
        try:
            BasicStorage.BasicStorage.test_race_external_invalidate_vs_disconnect(self)
        finally:
            racetest.TestWorkGroup.wait = wait


class RevisionTests(CellarStorageTestBase, RevisionStorage.RevisionStorage):

    @unittest.expectedFailure
    def testLoadBeforeUndo(self):  # undo (the data-lifecycle issue)
        RevisionStorage.RevisionStorage.testLoadBeforeUndo(self)


class HistoryTests(CellarStorageTestBase, HistoryStorage.HistoryStorage):
    pass


class SynchronizationTests(CellarStorageTestBase, Synchronization.SynchronizedStorage):
    pass


class ConflictResolutionTests(CellarStorageTestBase,
                              ConflictResolution.ConflictResolvingStorage):
    pass


class PersistentTests(CellarStorageTestBase, PersistentStorage.PersistentStorage):
    pass


class MTTests(CellarStorageTestBase, MTStorage.MTStorage):
    pass


class ReadOnlyTests(CellarStorageTestBase, ReadOnlyStorage.ReadOnlyStorage):

    @unittest.expectedFailure
    def testWriteMethods(self):  # calls undo(), which is not there (data-lifecycle issue)
        ReadOnlyStorage.ReadOnlyStorage.testWriteMethods(self)


# --- Expected failures: the data-lifecycle issue (undo, garbage collection).

_LIFECYCLE = pytest.mark.xfail(reason="undo: not in the client yet "
                                      "(the data-lifecycle issue)", strict=False)


_NO_GC = pytest.mark.xfail(
    reason="needs garbage collection of objects unreachable from the root, which the"
           " cluster's pack does not do (docs/lifecycle.md)", strict=True)


class PackTests(CellarStorageTestBase, PackableStorage.PackableStorageWithOptionalGC):
    # pack() waits for the cluster's background pack (Master.Pack); old
    # revisions go, unreachable objects stay.

    @_NO_GC
    def testPackAllRevisions(self):
        PackableStorage.PackableStorage.testPackAllRevisions(self)

    @_NO_GC
    def testPackWithMultiDatabaseReferences(self):
        PackableStorage.PackableStorage.testPackWithMultiDatabaseReferences(self)


@_LIFECYCLE
class UndoTests(CellarStorageTestBase, TransactionalUndoStorage.TransactionalUndoStorage):
    pass


class IteratorTests(CellarStorageTestBase, IteratorStorage.IteratorStorage,
                    IteratorStorage.ExtendedIteratorStorage):
    # tpc_begin stores the transaction's extension_bytes as they are, and
    # the iterator gives them back: TransactionMetaData (de)serializes.
    use_extension_bytes = True

    @pytest.mark.xfail(reason="calls undoInfo() and undo(): CellarStorage has no undo "
                              "(the data-lifecycle issue)", strict=True)
    def testUndoZombie(self):
        IteratorStorage.IteratorStorage.testUndoZombie(self)


@_LIFECYCLE
class ConflictResolutionUndoTests(CellarStorageTestBase,
                                  ConflictResolution.ConflictResolvingTransUndoStorage):
    pass
