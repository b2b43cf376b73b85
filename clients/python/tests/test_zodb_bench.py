"""Smoke test of the ZODB benchmark (tools/bench/zodb_bench.py, run by
`tools/bench/run --mode=zodb`): a very short run with 2 workers on
cellar, FileStorage and ZEO, with a window (1 ms) shorter than most
operations, so every row relies on the stretched window; every row
measured something and had no error, and the JSON is complete."""
import json
import subprocess
import sys

from cellar_cluster import REPO


def test_zodb_bench_smoke(tmp_path):
    out = tmp_path / "rows.json"
    run = subprocess.run(
        [sys.executable, str(REPO / "tools/bench/zodb_bench.py"), "--seconds=0.001",
         "--warmup=0.1", "--processes=2", "--objects=50", "--json=%s" % out,
         "--tmp-dir=%s" % tmp_path],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = json.loads(out.read_text())
    assert sorted((r["op"], r["store"]) for r in rows) == sorted(
        (op, store) for op in ("commit", "load") for store in ("filestorage", "zeo", "cellar"))
    for row in rows:
        assert row["name"] == "zodb_%s_p2" % row["op"]
        assert row["ops"] > 0 and row["ops_per_s"] > 0 and row["errors"] == 0, row
        assert row["p50_ms"] > 0 and row["cpu_us_per_op"] > 0, row
        assert row["threads_in_one_process"] == (row["store"] == "filestorage")
    table = run.stdout.splitlines()
    assert table[0].split()[:3] == ["row", "store", "ops/s"]
    assert len(table) == 2 + len(rows)
    assert list((tmp_path).glob("cellar-zodb-bench-*")) == []  # cleaned up
