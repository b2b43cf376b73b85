import pytest

import cellar
from cellar_cluster import LocalCluster


@pytest.fixture(scope="session")
def cluster():
    """One cluster for the whole run; `fresh_cluster` empties it."""
    c = LocalCluster()
    try:
        client = cellar.Client(c.master, c.cluster_name)
        try:
            with client.transaction(description=b"baseline") as t:
                pass
            c.set_baseline(t.tid)
        finally:
            client.close()
        yield c
    finally:
        c.stop()


@pytest.fixture
def fresh_cluster(cluster):
    """The session cluster truncated back to its baseline (no objects)."""
    cluster.truncate()
    return cluster


@pytest.fixture
def client(fresh_cluster):
    c = cellar.Client(fresh_cluster.master, fresh_cluster.cluster_name)
    yield c
    c.close()
