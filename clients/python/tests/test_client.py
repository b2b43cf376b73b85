"""cellar.Client against a real cluster (tests/cellar_cluster.py)."""
import threading
import time

import grpc
import pytest

import cellar
from cellar import errors
from cellar._pb import common_pb2, master_pb2, storage_pb2_grpc


def test_connect_wrong_cluster_name_is_refused(fresh_cluster):
    start = time.monotonic()
    with pytest.raises(cellar.CellarError) as info:
        cellar.Client(fresh_cluster.master, "not-" + fresh_cluster.cluster_name,
                      connect_timeout=10)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert time.monotonic() - start < 5


def test_connect_no_master_times_out():
    start = time.monotonic()
    with pytest.raises(cellar.UnavailableError):
        cellar.Client("127.0.0.1:1", connect_timeout=1, rpc_timeout=0.5)
    assert time.monotonic() - start < 5


def test_tls_ca_file_unreadable():
    with pytest.raises(cellar.CellarError) as info:
        cellar.Client("127.0.0.1:1", tls_ca_file="/nonexistent/ca.pem")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "tls_ca_file" in str(info.value)


def test_failover_list_skips_a_dead_master(fresh_cluster):
    c = cellar.Client(["127.0.0.1:1", fresh_cluster.master], connect_timeout=20,
                      rpc_timeout=1)
    try:
        assert c.connected and c.num_partitions == 12
    finally:
        c.close()


def test_token_is_sent_and_accepted_without_auth(fresh_cluster, tmp_path):
    token = tmp_path / "client.token"
    token.write_text("cellar_test_token\n")
    c = cellar.Client(fresh_cluster.master, token_file=str(token))
    try:
        assert c._metadata == (("authorization", "Bearer cellar_test_token"),)
        oid = c.new_oid()
        with c.transaction() as t:
            t.store(oid, 0, b"x")
        assert c.load(oid).data == b"x"
    finally:
        c.close()


def test_new_oids_are_unique(client):
    oids = [client.new_oid() for _ in range(250)]
    assert len(set(oids)) == 250
    assert 0 not in oids


def test_store_load_history(client):
    oid = client.new_oid()
    with client.transaction() as t1:
        t1.store(oid, 0, b"one")
    assert client.snapshot >= t1.tid
    r = client.load(oid)
    assert (r.oid, r.serial, r.next_serial, r.data) == (oid, t1.tid, 0, b"one")
    with client.transaction() as t2:
        t2.store(oid, t1.tid, b"two")
    assert t2.tid > t1.tid
    assert client.load(oid).data == b"two"
    before = client.load_before(oid, t2.tid)
    assert (before.serial, before.next_serial, before.data) == (t1.tid, t2.tid, b"one")
    assert client.load_serial(oid, t1.tid).data == b"one"
    assert client.load_serial(oid, t2.tid).data == b"two"
    with pytest.raises(cellar.NotFoundError) as info:
        client.load_before(oid, t1.tid)
    assert info.value.reason == errors.NO_EARLIER_REVISION
    with pytest.raises(cellar.NotFoundError) as info:
        client.load_serial(oid, t1.tid + 1)
    assert info.value.reason == errors.NO_SUCH_REVISION
    h = client.history(oid)
    assert [e.serial for e in h] == [t2.tid, t1.tid]
    assert [e.size for e in h] == [3, 3]
    assert [e.serial for e in client.history(oid, limit=1)] == [t2.tid]


def test_load_many_answers_what_load_answers(client):
    oids = [client.new_oid() for _ in range(30)]
    with client.transaction() as t1:
        for i, oid in enumerate(oids):
            t1.store(oid, 0, b"v1-%d" % i)
    with client.transaction() as t2:
        for i, oid in enumerate(oids[::2]):
            t2.store(oid, t1.tid, b"v2-%d" % (2 * i))
    missing = client.new_oid()
    asked = oids + [missing, oids[3]]
    many = client.load_many(asked)
    assert len(many) == len(asked)
    for oid, r in zip(asked[:-2], many):
        assert r == client.load(oid)
    assert isinstance(many[-2], cellar.NotFoundError)
    assert many[-2].reason == errors.NO_SUCH_OBJECT
    assert many[-1] == client.load(oids[3])
    before = client.load_many(oids, t2.tid)
    assert [r.data for r in before] == [b"v1-%d" % i for i in range(30)]
    assert [r.next_serial for r in before[::2]] == [t2.tid] * 15
    assert client.load_many([]) == []
    with pytest.raises(cellar.CellarError) as info:
        client.load_many(oids, 0)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_missing_object(client):
    with pytest.raises(cellar.NotFoundError) as info:
        client.load(client.new_oid())
    assert info.value.reason == errors.NO_SUCH_OBJECT


def test_repeated_store_keeps_the_last(client):
    oid = client.new_oid()
    with client.transaction() as t:
        t.store(oid, 0, b"first")
        t.store(oid, 0, b"second")
    assert client.load(oid).data == b"second"
    assert len(client.history(oid)) == 1


def test_root_oid_zero_is_valid(client):
    with client.transaction() as t:
        t.store(0, 0, b"root")
    assert client.load(0).data == b"root"


def test_metadata_round_trips(client):
    oid = client.new_oid()
    ext = bytes(range(256))
    with client.transaction(user=b"alice \xff", description=b"d\x00e", extension=ext) as t:
        t.store(oid, 0, b"x" * 1000)
    last = client.last_transactions(5)
    assert last[0].tid == t.tid
    assert (last[0].user, last[0].description, last[0].extension) == (b"alice \xff", b"d\x00e",
                                                                      ext)
    assert last[0].oids == (oid,)
    assert last[0].size == 1000
    assert [r.tid for r in client.last_transactions(1)] == [t.tid]


def test_empty_transaction_gets_a_tid(client):
    before = client.snapshot
    with client.transaction(description=b"empty") as t:
        pass
    assert t.tid > before
    assert client.last_transactions(1)[0].description == b"empty"


def test_conflict_carries_the_current_serial(client):
    oid = client.new_oid()
    with client.transaction() as t1:
        t1.store(oid, 0, b"a")
    with client.transaction() as t2:
        t2.store(oid, t1.tid, b"b")
    with pytest.raises(cellar.ConflictError) as info:
        with client.transaction() as t3:
            t3.store(oid, t1.tid, b"c")
    e = info.value
    assert (e.oid, e.current_serial, e.base_serial) == (oid, t2.tid, t1.tid)
    assert e.code == grpc.StatusCode.ABORTED and e.reason == errors.CONFLICT
    assert e.retryable
    assert t3.finished and t3.tid is None
    assert client.load(oid).data == b"b"
    # Retrying with the current serial works.
    with client.transaction() as t4:
        t4.store(oid, e.current_serial, b"c")
    assert client.load(oid).data == b"c"


def test_conflict_resolution_in_vote(client):
    oid, other = client.new_oid(), client.new_oid()
    with client.transaction() as t1:
        t1.store(oid, 0, b"1")
    with client.transaction() as t2:
        t2.store(oid, t1.tid, b"2")
    calls = []

    def resolver(o, current, base, data):
        calls.append((o, current, base, data))
        return client.load_serial(o, current).data + b"+" + data

    t3 = client.transaction()
    t3.store(oid, t1.tid, b"3")
    t3.store(other, 0, b"other")
    assert t3.vote(resolver) == [oid]
    tid = t3.finish()
    assert calls == [(oid, t2.tid, t1.tid, b"3")]
    assert client.load(oid) == cellar.LoadResult(oid, tid, 0, b"2+3")
    assert client.load(other).data == b"other"


def test_unresolvable_conflict_is_raised(client):
    oid = client.new_oid()
    with client.transaction() as t1:
        t1.store(oid, 0, b"1")

    def resolver(*args):
        raise ValueError("cannot resolve")

    t = client.transaction()
    t.store(oid, 0, b"x")
    with pytest.raises(ValueError):
        t.vote(resolver)
    assert t.finished


def test_abort_after_vote_releases_the_locks(client):
    oid = client.new_oid()
    t = client.transaction()
    t.store(oid, 0, b"never")
    t.vote()
    t.abort()
    with pytest.raises(cellar.NotFoundError):
        client.load(oid)
    with client.transaction() as t2:  # the lock is free again
        t2.store(oid, 0, b"now")
    assert client.load(oid).data == b"now"


def test_exception_in_with_aborts(client):
    oid = client.new_oid()
    with pytest.raises(RuntimeError):
        with client.transaction() as t:
            t.store(oid, 0, b"x")
            raise RuntimeError("boom")
    assert t.finished and t.tid is None
    with pytest.raises(cellar.NotFoundError):
        client.load(oid)


def test_too_large_fails_before_contacting_anyone(client):
    t = client.transaction()
    t.store(client.new_oid(), 0, b"\0" * (cellar.MAX_OBJECT_BYTES + 1))
    with pytest.raises(cellar.CellarError) as info:
        t.commit()
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.reason == errors.TOO_LARGE


def test_large_object_round_trips(client):
    oid = client.new_oid()
    data = bytes(range(256)) * (8 << 12)  # 8 MiB
    with client.transaction() as t:
        t.store(oid, 0, data)
    assert client.load(oid).data == data


def test_many_objects_in_one_transaction(client):
    oids = [client.new_oid() for _ in range(2000)]
    with client.transaction() as t:
        for oid in oids:
            t.store(oid, 0, b"%d" % oid)
    for oid in oids[::97]:
        assert client.load(oid).data == b"%d" % oid


def test_invalidations_reach_other_clients(fresh_cluster, client):
    other = cellar.Client(fresh_cluster.master, fresh_cluster.cluster_name)
    try:
        seen = []
        done = threading.Event()

        def listener(tid, oids):
            seen.append((tid, sorted(oids)))
            done.set()
        other.add_invalidation_listener(listener)
        a, b = client.new_oid(), client.new_oid()
        with client.transaction() as t:
            t.store(a, 0, b"a")
            t.store(b, 0, b"b")
        assert done.wait(10)
        assert seen[0] == (t.tid, sorted([a, b]))
        deadline = time.monotonic() + 10
        while other.snapshot < t.tid and time.monotonic() < deadline:
            time.sleep(0.01)
        assert other.load(a).data == b"a"
        other.sync()
        assert other.snapshot >= t.tid
    finally:
        other.close()


def test_finish_on_tid_runs_once_before_the_listeners_see_the_tid(fresh_cluster, client):
    # finish(on_tid): the committer's hook runs on the watch thread just
    # before the invalidation listeners get its tid and the snapshot moves
    # to it; the listeners still get it (each decides whose it is).
    events = []
    client.add_invalidation_listener(
        lambda tid, oids: events.append(("listener", tid, client.snapshot)))
    oid = client.new_oid()
    serial = 0
    for i in range(5):
        t = client.transaction()
        t.store(oid, serial, b"v%d" % i)
        t.vote()
        calls = []
        tid = t.finish(lambda tid, ordered: calls.append((tid, ordered, client.snapshot)))
        serial = tid
        assert len(calls) == 1 and calls[0][:2] == (tid, True), calls
        assert calls[0][2] < tid  # before the snapshot moved
        assert client.snapshot >= tid
        assert events[-1] == ("listener", tid, calls[0][2])
    assert client.load(oid).data == b"v4"


def test_concurrent_writers_conflict_and_retry(fresh_cluster, client):
    counter = client.new_oid()
    with client.transaction() as t:
        t.store(counter, 0, b"0")
    clients = [cellar.Client(fresh_cluster.master) for _ in range(3)]
    errors_seen = []

    def work(c):
        for _ in range(10):
            while True:
                r = c.load(counter)
                try:
                    with c.transaction() as tx:
                        tx.store(counter, r.serial, b"%d" % (int(r.data) + 1))
                    break
                except cellar.AbortedError:
                    continue
                except Exception as e:  # pragma: no cover
                    errors_seen.append(e)
                    return
    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    for c in clients:
        c.close()
    assert not errors_seen
    client.sync()
    assert client.load(counter).data == b"30"


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code, details=""):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return ()


class _FakeMaster:
    """A master whose Finish answer was lost, then that cannot tell."""

    def __init__(self, status=None, abort_error=None):
        self.status = status
        self.abort_error = abort_error
        self.calls = []
        self.status_requests = []

    def GetTransactionStatus(self, request, timeout=None, metadata=None):
        self.calls.append("GetTransactionStatus")
        self.status_requests.append(request)
        if isinstance(self.status, Exception):
            raise self.status
        return self.status

    def Abort(self, request, timeout=None, metadata=None):
        self.calls.append("Abort")
        if self.abort_error is not None:
            raise self.abort_error
        return master_pb2.AbortResponse()


def test_lost_finish_that_committed_returns_its_tid(client):
    master = _FakeMaster(master_pb2.GetTransactionStatusResponse(
        outcome=master_pb2.TRANSACTION_COMMITTED, tid=1234))
    finish_error = cellar.UnavailableError("socket closed", grpc.StatusCode.UNAVAILABLE)
    assert client._resolve_finish_failure(master, 1, client.session_count, 99, [1],
                                          finish_error) == 1234
    # Asked as the session's client node (a master with auth requires it).
    assert [(r.ttid, r.node_id) for r in master.status_requests] == [(99, 1)]


def test_lost_finish_the_primary_aborts_is_a_failure(client):
    master = _FakeMaster(master_pb2.GetTransactionStatusResponse(
        outcome=master_pb2.TRANSACTION_ACTIVE))
    finish_error = cellar.UnavailableError("deadline", grpc.StatusCode.DEADLINE_EXCEEDED)
    with pytest.raises(cellar.CellarError) as info:
        client._resolve_finish_failure(master, 1, client.session_count, 99, [1], finish_error)
    assert info.value is finish_error
    assert not isinstance(info.value, cellar.OutcomeUnknownError)
    assert master.calls == ["GetTransactionStatus", "Abort"]


def test_lost_finish_nobody_can_tell_is_outcome_unknown(client):
    client.rpc_timeout = 0.5
    gone = _FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused")
    master = _FakeMaster(gone, abort_error=gone)
    finish_error = cellar.UnavailableError("socket closed", grpc.StatusCode.UNAVAILABLE)
    start = time.monotonic()
    with pytest.raises(cellar.OutcomeUnknownError) as info:
        client._resolve_finish_failure(master, 1, client.session_count, 99, [1], finish_error)
    assert time.monotonic() - start < 5
    e = info.value
    assert e.reason == errors.OUTCOME_UNKNOWN and e.ttid == 99 and not e.retryable


def test_lost_finish_refused_abort_then_committed(client):
    master = _FakeMaster(master_pb2.GetTransactionStatusResponse(
        outcome=master_pb2.TRANSACTION_ACTIVE),
        abort_error=_FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "has a final tid"))
    answers = [master_pb2.GetTransactionStatusResponse(outcome=master_pb2.TRANSACTION_ACTIVE),
               master_pb2.GetTransactionStatusResponse(outcome=master_pb2.TRANSACTION_ACTIVE),
               master_pb2.GetTransactionStatusResponse(
                   outcome=master_pb2.TRANSACTION_COMMITTED, tid=777)]

    def status(request, timeout=None, metadata=None):
        master.calls.append("GetTransactionStatus")
        return answers.pop(0)
    master.GetTransactionStatus = status
    finish_error = cellar.UnavailableError("socket closed", grpc.StatusCode.UNAVAILABLE)
    assert client._resolve_finish_failure(master, 1, client.session_count, 99, [1],
                                          finish_error) == 777


def test_transaction_record_by_tid(client):
    oid = client.new_oid()
    ext = bytes(range(256))
    with client.transaction(user=b"bob \xff", description=b"by tid", extension=ext) as t:
        t.store(oid, 0, b"y" * 10)
    with client.transaction(user=b"carol") as later:
        later.store(oid, t.tid, b"z")
    record = client.get_transaction(t.tid)
    assert (record.tid, record.user, record.description, record.extension) == (
        t.tid, b"bob \xff", b"by tid", ext)
    assert record.oids == (oid,)
    assert record.size == 10
    assert client.get_transaction(later.tid).user == b"carol"
    # Same partition as t.tid, nothing committed with it.
    with pytest.raises(cellar.NotFoundError) as info:
        client.get_transaction(t.tid + client.num_partitions)
    assert info.value.reason == errors.NO_SUCH_TRANSACTION
    for bad in (0, cellar.MAX_TID + 1):
        with pytest.raises(cellar.CellarError) as info:
            client.get_transaction(bad)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_iter_transactions_lists_every_transaction_once_in_tid_order(client):
    oid = client.new_oid()
    serial = 0
    tids = []
    for i in range(30):
        with client.transaction(user=b"u%d" % i) as t:
            t.store(oid, serial, b"v%d" % i)
        serial = t.tid
        tids.append(t.tid)
    everything = [r.tid for r in reversed(client.last_transactions(1000))]
    assert everything[-30:] == tids
    # Pages of 2 records per storage: the merge across the 3 storages
    # (each partition read from one of its 2 readable cells) keeps tid
    # order and lists each transaction once.
    listed = list(client.iter_transactions(page=2))
    assert [r.tid for r in listed] == everything
    assert [r.user for r in listed[-30:]] == [b"u%d" % i for i in range(30)]
    assert all(r.oids == (oid,) and not r.packed for r in listed[-30:])
    # Both ends included; a stop past the snapshot stops at the snapshot.
    assert [r.tid for r in client.iter_transactions(tids[3], tids[7], page=3)] == tids[3:8]
    assert [r.tid for r in client.iter_transactions(tids[-1], cellar.MAX_TID)] == tids[-1:]
    assert list(client.iter_transactions(tids[7], tids[3])) == []


def test_iter_transactions_reads_a_failed_storages_partitions_elsewhere(client, monkeypatch):
    with client.transaction() as t:
        t.store(client.new_oid(), 0, b"x")
    want = [r.tid for r in client.iter_transactions()]
    storages = client._running_storages()
    real = client._storage_stub
    # One storage fails every call: its partitions are read from the other
    # replicas (every partition has two readable cells).
    monkeypatch.setattr(client, "_storage_stub",
                        lambda n: None if n == storages[0] else real(n))
    assert [r.tid for r in client.iter_transactions(page=1)] == want
    # No storage answers: unavailable, not a short listing.
    monkeypatch.setattr(client, "_storage_stub", lambda n: None)
    with pytest.raises(cellar.UnavailableError):
        list(client.iter_transactions())


def test_size_counts_each_partition_once(client):
    assert client.size() == cellar.ClusterSize(0, 0, 0, client.num_partitions,
                                               client.num_partitions)
    oids = [client.new_oid() for _ in range(20)]
    with client.transaction() as t:
        for i, oid in enumerate(oids):
            t.store(oid, 0, b"s" * (i + 1))
    # 3 storages, 1 replica: every partition has two readable cells.
    assert client.size() == cellar.ClusterSize(20, 20, 210, client.num_partitions,
                                               client.num_partitions)
    with client.transaction() as t2:
        t2.store(oids[0], t.tid, b"")  # a deletion
        t2.store(oids[1], t.tid, b"new")
    assert client.size() == cellar.ClusterSize(19, 22, 213, client.num_partitions,
                                               client.num_partitions)


def test_a_deleted_object_is_not_found(client):
    oid, other = client.new_oid(), client.new_oid()
    with client.transaction() as t1:
        t1.store(oid, 0, b"alive")
        t1.store(other, 0, b"other")
    with client.transaction() as t2:
        t2.store(oid, t1.tid, b"")  # empty data, no data_serial: a deletion
    with pytest.raises(cellar.NotFoundError) as info:
        client.load(oid)
    assert info.value.reason == errors.OBJECT_DELETED
    assert "deleted by transaction" in info.value.message
    with pytest.raises(cellar.NotFoundError) as info:
        client.load_serial(oid, t2.tid)
    assert info.value.reason == errors.OBJECT_DELETED
    many = client.load_many([oid, other])
    assert isinstance(many[0], cellar.NotFoundError)
    assert many[0].reason == errors.OBJECT_DELETED
    assert many[1].data == b"other"
    assert client.load_before(oid, t2.tid).data == b"alive"
    assert [e.deleted for e in client.history(oid)] == [True, False]



def test_reads_try_replicas_of_a_quarantined_version_last(fresh_cluster):
    c = cellar.Client(fresh_cluster.master, rpc_timeout=2)
    try:
        oid = c.new_oid()
        with c.transaction() as t:
            t.store(oid, 0, b"payload")
        nodes = c._read_nodes(oid)
        assert len(nodes) == 2
        quarantined = nodes[0]
        with c._cond:
            c._nodes[quarantined].quarantined = True  # as a Watch node event sets it
        other = [n for n in nodes if n != quarantined][0]
        for _ in range(4):
            assert c._read_nodes(oid) == [other, quarantined]
        # The only reachable replica left: still read.
        with c._cond:
            c._nodes[other].state = common_pb2.NODE_DOWN
        assert c._read_nodes(oid) == [quarantined]
        assert c.load(oid).data == b"payload"
    finally:
        c.close()


def test_an_unreachable_replica_is_reported_once_and_the_master_keeps_it_if_it_answers(
        fresh_cluster):
    c = cellar.Client(fresh_cluster.master, rpc_timeout=2, report_unreachable_interval=3600)
    try:
        oid = c.new_oid()
        with c.transaction() as t:
            t.store(oid, 0, b"payload")
        nodes = c._read_nodes(oid)
        assert len(nodes) == 2
        victim = nodes[0]
        # This client alone cannot reach `victim` (a dead address: the
        # transport answers UNAVAILABLE); the master can.
        dead = c._make_channel("127.0.0.1:1")
        c._channels.append(dead)
        with c._cond:
            c._storage_stubs[c._nodes[victim].address] = storage_pb2_grpc.StorageStub(dead)
        for _ in range(6):
            assert c.load(oid).data == b"payload"  # the other replica answers
        assert c.unreachable_reports == 1  # rate-limited: one per storage
        deadline = time.monotonic() + 10
        while c._reports_done < 1:
            assert time.monotonic() < deadline, "the report never completed"
            time.sleep(0.05)
        assert c.unreachable_reports_failed == 0
        # The master probed it and it answered: it stays up.
        until = time.monotonic() + 2
        while time.monotonic() < until:
            states = {n.node_id: n.state for n in c.cluster_info().nodes}
            assert states[victim] == common_pb2.NODE_RUNNING
            time.sleep(0.2)
    finally:
        c.close()
