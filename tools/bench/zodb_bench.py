#!/usr/bin/env python3
"""ZODB rows of the benchmark: one-object commits/s and cold loads/s as an
application sees them through ZODB.DB, on cellar, FileStorage and ZEO
measured in the same run, with 1 and 4 processes (docs/performance.md,
"ZODB").

    tools/bench/run --mode=zodb                       # builds, sets up the venv, runs this
    tools/bench/run --mode=zodb --seconds=2 --processes=1
    python tools/bench/zodb_bench.py --help           # in a venv with cellar, ZODB and ZEO

commit: a worker changes its own PersistentMapping (one object, no
conflicts) and commits; one operation = one transaction.
load (cold): a worker ghosts one of --objects PersistentMappings written
in the setup (_p_invalidate) and activates it again, so every load
reaches the storage through ZODB's MVCC adapter (loadBefore); ZEO's client
cache and cellar's local cache are turned off (--zeo-cache-bytes and
--cellar-cache-bytes, default 0) so ZEO's loads reach the ZEO server as
cellar's reach a storage node; FileStorage reads its file (the page
cache). With both set (e.g. 20971520), the load rows measure warm client
caches instead (the warm-up loads the objects once).

Workers are separate processes, each with its own ZODB.DB and connection;
FileStorage cannot be opened by two processes, so its N-worker rows run N
threads (one connection each) in one process. cellar runs on a `cellar
local` cluster started here (port 0, --storages, --replicas); ZEO on a
server process started here on a FileStorage in a temporary directory.
Each worker warms up for --warmup seconds, then counts the operations
that start and end in the next --seconds; a worker none of whose
operations fits (one slower than the window) counts its first one that
started in it and stretches its window to that operation's end (at most
max(10 x --seconds, 10 s) more), so a row never reads 0 because of one
slow operation. Columns: ops/s (sum of the workers' ops / their
windows), p50/p99 latency, errors, cpu us per op (the workers' processes
plus the server process: cellar local or the ZEO server; warm-up
included; the JSON also has the server's share, server_cpu_us_per_op),
and each row's ops/s divided by FileStorage's and ZEO's.

Exit status: 0 if everything ran without an error, 2 if any operation
failed, 1 on setup errors.
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
OPS = ("commit", "load")
STORES = ("filestorage", "zeo", "cellar")


def log(message):
    print("[zodb-bench] %s" % message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------
# Storages (in the workers and in the setup).

def open_db(spec):
    import ZODB
    if spec["kind"] == "filestorage":
        from ZODB.FileStorage import FileStorage
        storage = FileStorage(spec["path"])
    elif spec["kind"] == "zeo":
        from ZEO.ClientStorage import ClientStorage
        storage = ClientStorage(tuple(spec["address"]), cache_size=spec["zeo_cache_bytes"],
                                wait_timeout=30)
    else:
        from cellar.zodb import CellarStorage
        storage = CellarStorage(spec["master"], spec["cluster_name"],
                                local_cache_size=spec["cellar_cache_bytes"])
    return ZODB.DB(storage)


def worker_key(index):
    return "bench-worker-%d" % index


def object_value(index, size):
    return {"v": index, "pad": "x" * size}


def setup(spec, workers, objects, object_bytes):
    """Writes the workers' objects and the objects the loads read."""
    import transaction
    from persistent.list import PersistentList
    from persistent.mapping import PersistentMapping
    db = open_db(spec)
    try:
        tm = transaction.TransactionManager()
        conn = db.open(transaction_manager=tm)
        root = conn.root()
        for index in range(workers):
            root[worker_key(index)] = PersistentMapping(n=0)
        root["bench-objects"] = PersistentList(
            PersistentMapping(object_value(i, object_bytes)) for i in range(objects))
        tm.get().note("zodb bench setup")
        tm.commit()
        conn.close()
    finally:
        db.close()


# ----------------------------------------------------------------------
# Worker process: --worker JSON; reads commands ("commit", "load",
# "quit") from stdin and answers each with one JSON line.

class Thread(threading.Thread):
    def __init__(self, db, index, op, warmup, seconds, object_bytes):
        super().__init__(daemon=True)
        self.db, self.index, self.op = db, index, op
        self.warmup, self.seconds, self.object_bytes = warmup, seconds, object_bytes
        self.ops = self.total = self.errors = 0
        self.measured = seconds  # the window's length (longer if stretched)
        self.first_error = ""
        self.latencies = []

    def run(self):
        import transaction
        tm = transaction.TransactionManager()
        conn = self.db.open(transaction_manager=tm)
        try:
            root = conn.root()
            mine = root[worker_key(self.index)]
            objects = list(root["bench-objects"])
            start = time.perf_counter()
            window = (start + self.warmup, start + self.warmup + self.seconds)
            last_start = window[1] + max(10 * self.seconds, 10.0)
            i = self.index * 7919  # workers start at different objects
            while True:
                t0 = time.perf_counter()
                if t0 >= window[1] and (self.ops > 0 or t0 >= last_start):
                    break
                try:
                    if self.op == "commit":
                        mine["n"] = i
                        tm.commit()
                    else:
                        number = i % len(objects)
                        obj = objects[number]
                        obj._p_invalidate()
                        obj._p_activate()
                        if obj["v"] != number or len(obj["pad"]) != self.object_bytes:
                            raise AssertionError("object %d loaded as v=%r" % (number, obj["v"]))
                except Exception as e:  # counted and reported, the run goes on
                    tm.abort()
                    self.errors += 1
                    self.first_error = self.first_error or "%s: %s" % (type(e).__name__, e)
                t1 = time.perf_counter()
                self.total += 1
                if t0 >= window[0] and (t1 <= window[1] or self.ops == 0):
                    self.ops += 1
                    self.latencies.append(t1 - t0)
                    self.measured = max(self.seconds, t1 - window[0])
                i += 1
        finally:
            tm.abort()
            conn.close()


def worker_main(config):
    db = open_db(config["spec"])
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            op = line.strip()
            if op == "quit":
                break
            cpu0 = time.process_time()
            threads = [Thread(db, config["first_index"] + t, op, config["warmup"],
                              config["seconds"], config["object_bytes"])
                       for t in range(config["threads"])]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            print(json.dumps({
                "ops": sum(t.ops for t in threads), "total": sum(t.total for t in threads),
                "ops_per_s": sum(t.ops / t.measured for t in threads),
                "errors": sum(t.errors for t in threads),
                "first_error": next((t.first_error for t in threads if t.first_error), ""),
                "latencies": [x for t in threads for x in t.latencies],
                "cpu": time.process_time() - cpu0}), flush=True)
    finally:
        db.close()


# ----------------------------------------------------------------------
# Servers.

def zeo_server_main(path):
    """--zeo-server PATH: a ZEO server on a FileStorage at PATH; prints
    "address HOST PORT" and stops when stdin closes."""
    import ZEO
    address, stop = ZEO.server(path=path, port=0, threaded=True)
    print("address %s %d" % tuple(address), flush=True)
    sys.stdin.read()
    stop()


def read_line(proc, what, timeout=60.0):
    """A line of proc's stdout within timeout seconds."""
    result = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        raise RuntimeError("%s: no answer within %gs (exit status %s)" % (
            what, timeout, proc.poll()))
    return result[0]


def process_cpu(pid):
    """CPU seconds (user + system) of process pid so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Stores:
    """The storages under test: a FileStorage file, a ZEO server and a
    cellar cluster, all in one temporary directory."""

    def __init__(self):
        self.specs, self.server_pids, self._zeo, self._cluster = {}, {}, None, None

    def start(self, args, tmp):
        if "filestorage" in args.stores:
            self.specs["filestorage"] = {"kind": "filestorage",
                                         "path": os.path.join(tmp, "filestorage", "Data.fs")}
            os.makedirs(os.path.dirname(self.specs["filestorage"]["path"]))
        if "zeo" in args.stores:
            os.makedirs(os.path.join(tmp, "zeo"))
            self._zeo = subprocess.Popen(
                [sys.executable, __file__, "--zeo-server", os.path.join(tmp, "zeo", "Data.fs")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            _, host, port = read_line(self._zeo, "ZEO server").split()
            self.specs["zeo"] = {"kind": "zeo", "address": [host, int(port)],
                                 "zeo_cache_bytes": args.zeo_cache_bytes}
            self.server_pids["zeo"] = self._zeo.pid
            log("ZEO server on %s:%s (FileStorage in %s)" % (host, port, tmp))
        if "cellar" in args.stores:
            sys.path.insert(0, str(REPO / "clients/python/tests"))
            from cellar_cluster import LocalCluster
            self._cluster = LocalCluster(storages=args.storages, replicas=args.replicas,
                                         partitions=args.partitions)
            self.specs["cellar"] = {"kind": "cellar", "master": self._cluster.master,
                                    "cluster_name": self._cluster.cluster_name,
                                    "cellar_cache_bytes": args.cellar_cache_bytes}
            self.server_pids["cellar"] = self._cluster.proc.pid
            log("cellar local on %s: %d storages, %d replica(s), %d partitions (SQLite), local"
                " cache %d bytes" % (self._cluster.master, args.storages, args.replicas,
                                     args.partitions, args.cellar_cache_bytes))

    def close(self):
        if self._zeo is not None:
            self._zeo.stdin.close()
            try:
                self._zeo.wait(30)
            except subprocess.TimeoutExpired:
                self._zeo.kill()
                self._zeo.wait(5)
        if self._cluster is not None:
            self._cluster.stop()


# ----------------------------------------------------------------------
# Measuring.

def measure(args, stores, store, workers):
    """Runs commit and load with `workers` workers on `store`; returns
    one row per op."""
    spec = stores.specs[store]
    threaded = store == "filestorage"  # one process only
    layout = [(0, workers)] if threaded else [(i, 1) for i in range(workers)]
    procs = []
    try:
        for first_index, threads in layout:
            config = {"spec": spec, "first_index": first_index, "threads": threads,
                      "warmup": args.warmup, "seconds": args.seconds,
                      "object_bytes": args.object_bytes}
            procs.append(subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(config)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True))
        for proc in procs:
            answer = read_line(proc, "%s worker" % store).strip()
            if answer != "ready":
                raise RuntimeError("%s worker: %r instead of ready" % (store, answer))
        rows = []
        for op in OPS:
            server = stores.server_pids.get(store)
            server_cpu = process_cpu(server) if server else 0.0
            for proc in procs:
                proc.stdin.write(op + "\n")
                proc.stdin.flush()
            results = [json.loads(read_line(proc, "%s worker (%s)" % (store, op),
                                            timeout=args.warmup + args.seconds + 120))
                       for proc in procs]
            server_cpu = (process_cpu(server) - server_cpu) if server else 0.0
            latencies = sorted(x for r in results for x in r["latencies"])
            ops = sum(r["ops"] for r in results)
            total = sum(r["total"] for r in results)

            def percentile(p):
                return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 \
                    if latencies else 0.0
            rows.append({
                "name": "zodb_%s_p%d" % (op, workers), "store": store, "op": op,
                "workers": workers, "threads_in_one_process": threaded and workers > 1,
                "ops": ops, "ops_per_s": sum(r["ops_per_s"] for r in results), "p50_ms": percentile(0.5),
                "p99_ms": percentile(0.99), "errors": sum(r["errors"] for r in results),
                "first_error": next((r["first_error"] for r in results if r["first_error"]), ""),
                "cpu_us_per_op": (sum(r["cpu"] for r in results) + server_cpu) / total * 1e6
                if total else 0.0,
                "server_cpu_us_per_op": server_cpu / total * 1e6 if total else 0.0})
            row = rows[-1]
            log("%-12s %-6s %d worker(s): %8.1f ops/s, p50 %.2f ms, %d errors%s" % (
                store, op, workers, row["ops_per_s"], row["p50_ms"], row["errors"],
                " (%s)" % row["first_error"] if row["first_error"] else ""))
        for proc in procs:
            proc.stdin.write("quit\n")
            proc.stdin.flush()
        for proc in procs:
            proc.wait(60)
        return rows
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def print_table(rows, stores):
    header = "%-16s %-26s %10s %8s %8s %6s %8s %9s %9s" % (
        "row", "store", "ops/s", "p50 ms", "p99 ms", "errors", "cpu us", "/ FileSt", "/ ZEO")
    print(header)
    print("-" * len(header))
    by_key = {(r["name"], r["store"]): r for r in rows}
    for name in dict.fromkeys(r["name"] for r in rows):
        for store in stores:
            row = by_key.get((name, store))
            if row is None:
                continue
            label = store + (" (%d threads)" % row["workers"] if row["threads_in_one_process"]
                             else "")
            ratios = []
            for base in ("filestorage", "zeo"):
                other = by_key.get((name, base))
                ratios.append("%.2f" % (row["ops_per_s"] / other["ops_per_s"])
                              if other and other["ops_per_s"] and base != store else "-")
            print("%-16s %-26s %10.1f %8.2f %8.2f %6d %8.0f %9s %9s" % (
                name, label, row["ops_per_s"], row["p50_ms"], row["p99_ms"], row["errors"],
                row["cpu_us_per_op"], ratios[0], ratios[1]))


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="ZODB commits/s and cold loads/s on cellar, FileStorage and ZEO "
                    "(docs/performance.md)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per row")
    parser.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per row")
    parser.add_argument("--processes", default="1,4",
                        help="worker counts, comma-separated (default 1,4)")
    parser.add_argument("--stores", default=",".join(STORES),
                        help="comma-separated subset of %s" % ",".join(STORES))
    parser.add_argument("--objects", type=int, default=1000,
                        help="objects the loads cycle through (default 1000)")
    parser.add_argument("--object-bytes", type=int, default=300,
                        help="padding per object (default 300)")
    parser.add_argument("--storages", type=int, default=2, help="cellar storage nodes (2)")
    parser.add_argument("--replicas", type=int, default=1, help="cellar replicas (1)")
    parser.add_argument("--partitions", type=int, default=12, help="cellar partitions (12)")
    parser.add_argument("--zeo-cache-bytes", type=int, default=0,
                        help="ZEO client cache size (default 0: loads reach the server)")
    parser.add_argument("--cellar-cache-bytes", type=int, default=0,
                        help="cellar's local cache size (CellarStorage local_cache_size;"
                             " default 0: loads reach the storage nodes)")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    parser.add_argument("--tmp-dir", help="parent of the temporary directory ($TMPDIR)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--zeo-server", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker or args.zeo_server:
        return args
    args.stores = [s for s in args.stores.split(",") if s]
    unknown = set(args.stores) - set(STORES)
    if unknown or not args.stores:
        parser.error("--stores: unknown %s (choose from %s)" % (
            ",".join(sorted(unknown)) or "(none)", ",".join(STORES)))
    try:
        args.processes = [int(p) for p in args.processes.split(",")]
    except ValueError:
        parser.error("--processes: comma-separated positive integers")
    if not args.processes or min(args.processes) < 1:
        parser.error("--processes: comma-separated positive integers")
    if args.seconds <= 0 or args.warmup < 0 or args.objects < 1 or args.object_bytes < 0:
        parser.error("--seconds > 0, --warmup >= 0, --objects >= 1, --object-bytes >= 0")
    return args


def main(argv):
    args = parse_args(argv)
    if args.worker:
        worker_main(json.loads(args.worker))
        return 0
    if args.zeo_server:
        zeo_server_main(args.zeo_server)
        return 0
    tmp = tempfile.mkdtemp(prefix="cellar-zodb-bench-", dir=args.tmp_dir)
    rows, stores = [], Stores()
    try:
        stores.start(args, tmp)
        for store in args.stores:
            setup(stores.specs[store], max(args.processes), args.objects, args.object_bytes)
        log("load average before: %.2f %.2f %.2f" % os.getloadavg())
        for workers in args.processes:
            for store in args.stores:
                rows += measure(args, stores, store, workers)
        log("load average after: %.2f %.2f %.2f" % os.getloadavg())
    except Exception as e:
        log("setup or run failed: %s: %s" % (type(e).__name__, e))
        return 1
    finally:
        stores.close()
        shutil.rmtree(tmp, ignore_errors=True)
    rows.sort(key=lambda r: (OPS.index(r["op"]), r["workers"]))
    print_table(rows, args.stores)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 2 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
