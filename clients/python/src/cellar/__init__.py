"""cellar: the Python client of a cellar cluster, and a ZODB storage on it.

    import cellar
    client = cellar.Client("127.0.0.1:7100", cluster_name="cellar")
    with client.transaction() as t:
        t.store(client.new_oid(), 0, b"hello")

``cellar.zodb.CellarStorage`` is the ZODB storage (needs ZODB installed).
"""
from cellar.errors import (AbortedError, CellarError, CommitNotVisibleError, ConflictError,
                           NotFoundError, OutcomeUnknownError, UnavailableError)
from cellar.client import (MAX_OBJECT_BYTES, MAX_TID, Client, ClusterSize, HistoryEntry,
                           LoadResult, PackStatus, SnapshotView, Transaction, TransactionRecord,
                           tid_hex)

__version__ = "0.1.0"

__all__ = ["Client", "Transaction", "LoadResult", "HistoryEntry", "TransactionRecord",
           "ClusterSize", "PackStatus", "SnapshotView", "tid_hex",
           "CellarError", "AbortedError", "ConflictError", "UnavailableError",
           "OutcomeUnknownError", "NotFoundError", "CommitNotVisibleError", "MAX_TID",
           "MAX_OBJECT_BYTES"]
