"""Token and TLS against a multi-process cluster started with
`cellar-cluster up --auth --tls` (docs/topologies.md): bearer tokens by
role and mutual TLS, as the C++ client and cellarctl use them. Skipped
when cellar-cluster is not built (clients/python/test builds it)."""
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

import grpc
import pytest

import cellar
from cellar_cluster import REPO

BIN = os.environ.get("CELLAR_CLUSTER_BIN") or str(REPO / "bazel-bin/tools/cluster/cellar-cluster")


def run(*args, timeout=120):
    env = dict(os.environ, RUNFILES_DIR=BIN + ".runfiles")
    return subprocess.run([BIN] + list(args), env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def secure_cluster():
    if not os.access(BIN, os.X_OK):
        pytest.skip("%s is not built (bazel build //tools/cluster:cellar-cluster)" % BIN)
    parent = tempfile.mkdtemp(prefix="cellar-pytest-auth-")
    d = os.path.join(parent, "c")
    try:
        up = run("up", "--dir", d, "--auth", "--tls", "--storages", "2", "--timeout", "60s")
        m = re.search(r"^masters: (\S+)", up.stdout, re.M)
        assert up.returncode == 0 and m, up.stdout + up.stderr
        yield m.group(1), d
    finally:
        if os.path.exists(os.path.join(d, "cluster.json")):
            run("down", "--dir", d, "--wipe", timeout=60)
        shutil.rmtree(parent, ignore_errors=True)


def tls(d, client_cert=True):
    kw = {"tls_ca_file": os.path.join(d, "tls/ca.pem")}
    if client_cert:
        kw.update(tls_cert_file=os.path.join(d, "tls/client.pem"),
                  tls_key_file=os.path.join(d, "tls/client.key"))
    return kw


def test_token_and_mutual_tls(secure_cluster):
    master, d = secure_cluster
    with cellar.Client(master, token_file=os.path.join(d, "client.token"), **tls(d)) as c:
        oid = c.new_oid()
        with c.transaction() as t:
            t.store(oid, 0, b"secure")
        assert c.load(oid).data == b"secure"
    # A token over TLS without a client certificate (optional by default).
    with open(os.path.join(d, "client.token")) as f:
        token = f.read().strip()
    with cellar.Client(master, token=token, **tls(d, client_cert=False)) as c:
        assert c.load(oid).data == b"secure"


@pytest.mark.parametrize("token", [None, "cellar_00000000_not_a_token"])
def test_missing_or_bad_token_is_refused(secure_cluster, token):
    master, d = secure_cluster
    with pytest.raises(cellar.CellarError) as info:
        cellar.Client(master, token=token, connect_timeout=10, **tls(d))
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_readonly_token_cannot_register_a_client(secure_cluster):
    # The readonly role (dashboards) reads no object data: a client session
    # (RegisterNode, Watch) needs role reader or client.
    master, d = secure_cluster
    with pytest.raises(cellar.CellarError) as info:
        cellar.Client(master, token_file=os.path.join(d, "readonly.token"), **tls(d))
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert "needs role reader or node" in str(info.value)


def _wait(predicate, what, timeout=10.0):
    """Polls `predicate` until true; fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("%s: not within %.0f s" % (what, timeout))
        time.sleep(0.05)


def test_read_only_zodb_with_a_reader_token(secure_cluster):
    # A read-only application (a report, a read replica) with the least
    # privilege: a reader token. It reads what a writer committed, sees the
    # writer's next commit (invalidation), and a write is refused by ZODB
    # (ReadOnlyError) before it reaches the cluster.
    import transaction
    import ZODB
    import zodburi
    from persistent.mapping import PersistentMapping
    from ZODB import POSException
    from cellar.zodb import CellarStorage

    master, d = secure_cluster
    writer = ZODB.DB(CellarStorage(master, token_file=os.path.join(d, "client.token"), **tls(d)))
    try:
        with writer.transaction() as conn:
            conn.root()["report"] = PersistentMapping(n=1)
        factory, dbkw = zodburi.resolve_uri(
            "cellar://%s/cellar?read_only=true&token_file=%s&ca_file=%s"
            % (master, os.path.join(d, "reader.token"), os.path.join(d, "tls/ca.pem")))
        for storage in (CellarStorage(master, read_only=True,
                                      token_file=os.path.join(d, "reader.token"), **tls(d)),
                        factory()):
            reader = ZODB.DB(storage, **dbkw)
            try:
                assert reader.storage.isReadOnly()
                tm = transaction.TransactionManager()
                conn = reader.open(transaction_manager=tm)
                report = conn.root()["report"]
                before = report["n"]
                assert before >= 1
                # The writer's next commit reaches the reader's connection.
                with writer.transaction() as wconn:
                    wconn.root()["report"]["n"] = before + 1

                def fresh():
                    tm.begin()
                    return report["n"] == before + 1
                _wait(fresh, "the reader's connection seeing the writer's commit")
                # A write: ZODB refuses it (the storage is read-only), the
                # cluster is never asked.
                report["n"] = -1
                with pytest.raises(POSException.ReadOnlyError):
                    tm.commit()
                tm.abort()
                with pytest.raises(POSException.ReadOnlyError):
                    storage.new_oid()
                conn.close()
            finally:
                reader.close()
        with writer.transaction() as conn:
            assert conn.root()["report"]["n"] == 3
    finally:
        writer.close()


def test_reader_token_commit_is_refused_by_the_cluster(secure_cluster):
    # The low-level client with a reader token: loads work, a commit (or an
    # oid allocation) is refused by the cluster itself.
    master, d = secure_cluster
    with cellar.Client(master, token_file=os.path.join(d, "client.token"), **tls(d)) as w:
        oid = w.new_oid()
        with w.transaction() as t:
            t.store(oid, 0, b"for the reader")
        serial = w.load(oid).serial
    with cellar.Client(master, token_file=os.path.join(d, "reader.token"), **tls(d)) as c:
        c.sync()
        assert c.load(oid).data == b"for the reader"
        assert c.load_many([oid])[0].data == b"for the reader"
        assert [h.serial for h in c.history(oid)] == [serial]
        assert c.get_transaction(serial).tid == serial
        t = c.transaction()
        t.store(oid, serial, b"from the reader")
        with pytest.raises(cellar.CellarError) as info:
            t.commit()
        assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert "needs role client" in str(info.value)
        with pytest.raises(cellar.CellarError) as info:
            c.new_oid()
        assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert c.load(oid).data == b"for the reader"


def test_zconfig_and_zodburi_with_token_and_mutual_tls(secure_cluster):
    # The token and TLS files reach the client from a zope.conf-style
    # configuration and from a cellar:// URI.
    import ZODB
    import ZODB.config
    import zodburi
    from persistent.mapping import PersistentMapping
    from ZODB import POSException

    master, d = secure_cluster
    files = dict(token=os.path.join(d, "client.token"), ca=os.path.join(d, "tls/ca.pem"),
                 cert=os.path.join(d, "tls/client.pem"), key=os.path.join(d, "tls/client.key"))
    db = ZODB.config.databaseFromString(
        "%%import cellar\n<zodb>\n<cellar>\nmaster %s\ntoken-file %s\nca-file %s\n"
        "cert-file %s\nkey-file %s\n</cellar>\n</zodb>\n"
        % (master, files["token"], files["ca"], files["cert"], files["key"]))
    try:
        with db.transaction() as conn:
            conn.root()["secure"] = PersistentMapping(via="zconfig")
    finally:
        db.close()
    factory, dbkw = zodburi.resolve_uri(
        "cellar://%s/cellar?token_file=%s&ca_file=%s&cert_file=%s&key_file=%s"
        % (master, files["token"], files["ca"], files["cert"], files["key"]))
    db = ZODB.DB(factory(), **dbkw)
    try:
        with db.transaction() as conn:
            assert conn.root()["secure"]["via"] == "zconfig"
    finally:
        db.close()
    # Without the token file the same URI is refused.
    factory, _ = zodburi.resolve_uri("cellar://%s/cellar?ca_file=%s&cert_file=%s&key_file=%s"
                                     "&connect_timeout=10" % (master, files["ca"],
                                                              files["cert"], files["key"]))
    with pytest.raises(POSException.StorageError) as info:
        factory()
    assert isinstance(info.value.__cause__, cellar.CellarError)
    assert info.value.__cause__.code == grpc.StatusCode.UNAUTHENTICATED


def test_pack_needs_an_admin_token(secure_cluster):
    # Master.Pack needs role admin: a storage with only its client token
    # gets an error naming the role and the option; with an admin token as
    # pack-token-file (ZConfig) the pack runs and is waited for.
    import ZODB.config
    from ZODB import POSException
    from ZODB.serialize import referencesf
    from cellar.zodb import CellarStorage

    master, d = secure_cluster
    storage = CellarStorage(master, token_file=os.path.join(d, "client.token"), **tls(d))
    try:
        with storage.client.transaction() as t:
            t.store(storage.client.new_oid(), 0, b"to pack")
        with pytest.raises(POSException.StorageError) as info:
            storage.pack(time.time() + 60, referencesf)
        assert info.value.__cause__.code == grpc.StatusCode.PERMISSION_DENIED
        message = str(info.value)
        assert "Master.Pack needs a token of role admin" in message
        assert "pack_token_file (ZConfig pack-token-file" in message
    finally:
        storage.close()
    db = ZODB.config.databaseFromString(
        "%%import cellar\n<zodb>\n<cellar>\nmaster %s\ntoken-file %s\npack-token-file %s\n"
        "ca-file %s\n</cellar>\n</zodb>\n" % (master, os.path.join(d, "client.token"),
                                              os.path.join(d, "admin.token"),
                                              os.path.join(d, "tls/ca.pem")))
    try:
        last = db.storage.lastTransaction()
        db.pack(time.time() + 60)
        status = db.storage.client.pack_status()
        assert status.done and status.pack_tid >= int.from_bytes(last, "big")
    finally:
        db.close()


def test_wrong_ca_fails_to_connect(secure_cluster, tmp_path):
    master, d = secure_cluster
    # Another CA: the node certificate must not verify.
    other = tmp_path / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(tmp_path / "ca.key"), "-out", str(other), "-days", "1", "-subj",
                    "/CN=other"], check=True, capture_output=True, timeout=60)
    with pytest.raises(cellar.UnavailableError):
        cellar.Client(master, token_file=os.path.join(d, "client.token"),
                      tls_ca_file=str(other), connect_timeout=3, rpc_timeout=1)


def test_master_restart_reconnects_and_resets(secure_cluster):
    # Last in this module: the master is killed and started again. The
    # client registers again (a new session), calls its reset listeners
    # and commits afterwards; its snapshot never goes back.
    master, d = secure_cluster
    with cellar.Client(master, token_file=os.path.join(d, "client.token"), rpc_timeout=5,
                       **tls(d)) as c:
        resets = []
        c.add_reset_listener(lambda: resets.append(c.snapshot))
        oid = c.new_oid()
        with c.transaction() as t:
            t.store(oid, 0, b"before")
        snapshot = c.snapshot
        assert run("kill", "--dir", d, "M1", "--signal", "KILL", timeout=60).returncode == 0
        started = run("start", "--dir", d, "M1", "--timeout", "60s", timeout=120)
        assert started.returncode == 0, started.stdout + started.stderr
        assert c.await_session(2, 60), "no new session within 60 s"
        assert resets and c.snapshot >= snapshot
        for _ in range(100):  # the new primary may still be verifying
            try:
                with c.transaction() as t2:
                    t2.store(oid, t.tid, b"after")
                break
            except cellar.CellarError as e:
                if not (e.retryable or e.code == grpc.StatusCode.FAILED_PRECONDITION):
                    raise
                time.sleep(0.2)
        assert c.load(oid).data == b"after"
        assert t2.tid > t.tid


def test_commit_waits_across_a_master_restart(secure_cluster):
    # Also kills the master. A commit asked for while the client has no
    # session (the master is down) waits for the next one, at most
    # rpc_timeout, instead of failing at once with "not connected".
    master, d = secure_cluster
    with cellar.Client(master, token_file=os.path.join(d, "client.token"), rpc_timeout=60,
                       **tls(d)) as c:
        oid = c.new_oid()
        with c.transaction() as t:
            t.store(oid, 0, b"one")
        assert run("kill", "--dir", d, "M1", "--signal", "KILL", timeout=60).returncode == 0
        deadline = time.monotonic() + 30
        while c.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not c.connected, "the client did not notice the master's death within 30 s"
        result = {}

        def commit():
            try:
                with c.transaction() as t2:
                    t2.store(oid, t.tid, b"two")
                result["tid"] = t2.tid
            except Exception as e:  # reported by the assertions below
                result["error"] = e

        thread = threading.Thread(target=commit)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive(), "the commit did not wait for a session: %r" % result
        started = run("start", "--dir", d, "M1", "--timeout", "60s", timeout=120)
        assert started.returncode == 0, started.stdout + started.stderr
        thread.join(90)
        assert not thread.is_alive(), "the commit still waits 90 s after the restart"
        assert result.get("tid", 0) > t.tid, result
        assert c.load(oid).data == b"two"
