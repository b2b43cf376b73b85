"""Configuring CellarStorage the way ZODB applications do: the ZConfig
component (`%import cellar`, `<cellar>`), the zodburi resolver
(`cellar://`) and cellar.zodb.DB(), against a real cluster; bad
configurations fail with clear errors before connecting."""
import os
import xml.etree.ElementTree as ElementTree

import pytest
import transaction
import ZConfig
import ZODB
import ZODB.config
import zodburi
from persistent.mapping import PersistentMapping
from ZODB.POSException import ReadOnlyError

import cellar.config
import cellar.zodb

# Refused at once: nothing listens on port 1 of this machine.
UNREACHABLE = "127.0.0.1:1"


@pytest.fixture
def cluster(fresh_cluster):
    return fresh_cluster


def zconfig(body, database=""):
    return "%%import cellar\n<zodb>\n%s<cellar>\n%s\n</cellar>\n</zodb>\n" % (database, body)


def commit_and_read_back(db, other, key="greeting", value="hello"):
    """Commits root[key] = PersistentMapping(value=value) through db; other
    (another database on the same cluster) reads it back."""
    with db.transaction() as conn:
        conn.root()[key] = PersistentMapping(value=value)
    other_conn = other.open()
    try:
        other_conn.sync()
        assert other_conn.root()[key]["value"] == value
    finally:
        other_conn.close()


def test_zconfig_database_commits_and_reads_back(cluster):
    # The first master refuses (a failover list); a database setting too.
    text = zconfig("master %s\nmaster %s\ncluster-name %s\nname main-storage"
                   % (UNREACHABLE, cluster.master, cluster.cluster_name),
                   database="cache-size 1234\ndatabase-name main\n")
    db = ZODB.config.databaseFromString(text)
    try:
        storage = db.storage
        assert isinstance(storage, cellar.zodb.CellarStorage)
        assert storage.getName() == "main-storage"
        assert storage.client.masters == [UNREACHABLE, cluster.master]
        assert db.database_name == "main" and db.getCacheSize() == 1234
        assert not storage.isReadOnly()
        other = ZODB.config.databaseFromString(zconfig("master %s,%s" % (
            cluster.master, UNREACHABLE)))
        try:
            commit_and_read_back(db, other)
            commit_and_read_back(other, db, value="back")
        finally:
            other.close()
    finally:
        db.close()


def test_zconfig_read_only_and_timeouts(cluster):
    cellar.zodb.DB(cluster.master).close()  # creates the root object
    db = ZODB.config.databaseFromString(zconfig(
        "master %s\nread-only true\nrpc-timeout 7.5\nconnect-timeout 3\n"
        "commit-wait-timeout 2\nmax-reconnect-backoff 0.25" % cluster.master))
    try:
        client = db.storage.client
        assert db.storage.isReadOnly()
        assert (client.rpc_timeout, client.connect_timeout, client.commit_wait_timeout,
                client.max_reconnect_backoff) == (7.5, 3.0, 2.0, 0.25)
        conn = db.open()
        conn.root()["x"] = 1
        with pytest.raises(ReadOnlyError):
            transaction.commit()
        transaction.abort()
        conn.close()
    finally:
        db.close()


def test_local_cache_and_pack_options(cluster, tmp_path):
    admin = tmp_path / "admin.token"
    admin.write_text("cellar_admin_token\n")
    db = ZODB.config.databaseFromString(zconfig(
        "master %s\nlocal-cache-size 3MB\npack-timeout 90\npack-token-file %s"
        % (cluster.master, admin)))
    try:
        assert db.storage.cache_stats()["limit"] == 3 << 20
        assert db.storage._pack_timeout == 90.0
        assert db.storage.client._pack_metadata == (
            ("authorization", "Bearer cellar_admin_token"),)
    finally:
        db.close()
    factory, _ = zodburi.resolve_uri("cellar://%s?local_cache_size=0&pack_timeout=5"
                                     % cluster.master)
    storage = factory()
    try:
        assert storage.cache_stats()["limit"] == 0 and storage._pack_timeout == 5.0
    finally:
        storage.close()
    assert cellar.config.byte_size("512kb") == 512 << 10
    assert cellar.config.byte_size("1G") == 1 << 30 and cellar.config.byte_size("77") == 77


@pytest.mark.parametrize("body, message", [
    ("cluster-name cellar", "not enough values for 'master'"),
    ("master localhost", "bad master address 'localhost'"),
    ("master 127.0.0.1:70000", "bad master address '127.0.0.1:70000'"),
    ("master 127.0.0.1:7100 :7101", "bad master address ':7101'"),
    ("master 127.0.0.1:7100\ntoken-file /nonexistent/cellar.token",
     "/nonexistent/cellar.token is not an existing file"),
    ("master 127.0.0.1:7100\nrpc-timeout 0", "expected a number of seconds > 0"),
    ("master 127.0.0.1:7100\nread-only maybe", "maybe"),
    ("master 127.0.0.1:7100\ntoken abc", "'token' is not a known key name"),
    ("master 127.0.0.1:7100\nlocal-cache-size -1", "expected a size in bytes"),
    ("master 127.0.0.1:7100\nlocal-cache-size lots", "expected a size in bytes"),
    ("master 127.0.0.1:7100\npack-timeout 0", "expected a number of seconds > 0"),
    ("master 127.0.0.1:7100\npack-token-file /nonexistent/admin.token",
     "/nonexistent/admin.token is not an existing file"),
])
def test_zconfig_bad_configuration_is_a_clear_error(body, message):
    with pytest.raises(ZConfig.ConfigurationError) as info:
        ZODB.config.databaseFromString(zconfig(body))
    assert message in str(info.value)


def test_component_declares_every_option():
    path = os.path.join(os.path.dirname(cellar.config.__file__), "component.xml")
    section = ElementTree.parse(path).getroot().find("sectiontype")
    keys = {key.get("name") for key in section.findall("key")}
    assert keys == {name.replace("_", "-") for name in cellar.config.OPTIONS}
    assert [m.get("name") for m in section.findall("multikey")] == ["master"]


def test_zodburi_database_commits_and_reads_back(cluster):
    uri = ("cellar://%s,%s/%s?database_name=uri-db&connection_cache_size=321"
           "&connection_pool_size=3&name=from-uri&read_only=false&rpc_timeout=9"
           % (UNREACHABLE, cluster.master, cluster.cluster_name))
    factory, dbkw = zodburi.resolve_uri(uri)
    assert dbkw["database_name"] == "uri-db" and dbkw["cache_size"] == 321
    db = ZODB.DB(factory(), **dbkw)
    try:
        assert db.storage.getName() == "from-uri"
        assert db.storage.client.masters == [UNREACHABLE, cluster.master]
        assert db.storage.client.rpc_timeout == 9.0
        assert db.getCacheSize() == 321 and db.getPoolSize() == 3
        other = ZODB.DB(zodburi.resolve_uri("cellar://%s" % cluster.master)[0]())
        try:
            commit_and_read_back(db, other)
        finally:
            other.close()
        read_only = ZODB.DB(zodburi.resolve_uri("cellar://%s/%s?read_only=yes" % (
            cluster.master, cluster.cluster_name))[0]())
        try:
            assert read_only.storage.isReadOnly()
        finally:
            read_only.close()
    finally:
        db.close()


@pytest.mark.parametrize("uri, message", [
    ("cellar://127.0.0.1:7100/c?token=abc", "unknown parameter 'token'"),
    ("cellar://127.0.0.1:7100/c?tokenfile=x", "unknown parameter 'tokenfile'"),
    ("cellar://127.0.0.1:7100/c?cache_size=5", "unknown parameter 'cache_size'"),
    ("cellar:///c", "names no master"),
    ("cellar://localhost/c", "bad master address 'localhost'"),
    ("cellar://127.0.0.1:7100,/c", "empty master address"),
    ("cellar://127.0.0.1:7100/a/b", "one segment"),
    ("cellar://127.0.0.1:7100/c?read_only=maybe", "read_only: expected true or false"),
    ("cellar://127.0.0.1:7100/c?rpc_timeout=-1", "rpc_timeout: expected a number"),
    ("cellar://127.0.0.1:7100/c?ca_file=", "ca_file has an empty value"),
    ("cellar://127.0.0.1:7100/c?name=a&name=b", "name given twice"),
    ("cellar://127.0.0.1:7100/c?cluster_name=d", "cluster_name given twice"),
    ("cellar://127.0.0.1:7100/c?name", "bad query"),
    ("cellar://127.0.0.1:7100/c?local_cache_size=20XB", "local_cache_size: expected a size"),
])
def test_zodburi_rejects_bad_uris(uri, message):
    with pytest.raises(ValueError) as info:
        zodburi.resolve_uri(uri)
    assert message in str(info.value)


def test_db_helper_splits_storage_and_database_options(cluster):
    db = cellar.zodb.DB([cluster.master], cluster.cluster_name, name="scripted",
                        rpc_timeout=4, cache_size=77, database_name="script-db")
    try:
        assert db.storage.getName() == "scripted" and db.storage.client.rpc_timeout == 4
        assert db.getCacheSize() == 77 and db.database_name == "script-db"
        other = cellar.zodb.DB(cluster.master, cluster.cluster_name, read_only=True)
        try:
            assert other.storage.isReadOnly()
            commit_and_read_back(db, other)
        finally:
            other.close()
    finally:
        db.close()


def test_db_helper_refuses_unknown_options_before_connecting():
    with pytest.raises(TypeError) as info:
        cellar.zodb.DB(UNREACHABLE, connect_timeout=30, cache_sise=10)
    assert "unknown option(s) cache_sise" in str(info.value)
