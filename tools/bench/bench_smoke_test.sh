#!/usr/bin/env bash
# Smoke test of //tools/bench:bench: a fraction of a second per scenario with
# tiny sizes, on SQLite (and PostgreSQL when CELLAR_TEST_PG names a server).
# Checks that every expected scenario ran (ops > 0) without errors and that
# the JSON is valid and complete; then that --mode=security and --mode=flood
# run (clusters of processes) and print their rows and summaries. No timing
# assertions.
set -euo pipefail

bench=tools/bench/bench
json="${TEST_TMPDIR:-$(mktemp -d)}/bench.json"
args=(--seconds=0.3 --warmup=0.1 --clients=3 --bulk_clients=2 --bulk_objects=10
      --load_objects=200 --verify_sample=20 --storages=2 --json="$json")
if [[ -n "${CELLAR_TEST_PG:-}" ]]; then
  args+=(--backends=sqlite,postgresql --pg="$CELLAR_TEST_PG")
  expect_pg=1
else
  echo "CELLAR_TEST_PG not set: SQLite only, no raw PostgreSQL baseline"
  args+=(--backends=sqlite --raw_pg=false)
  expect_pg=0
fi

echo "+ $bench ${args[*]}"
"$bench" "${args[@]}"

/usr/bin/python3 - "$json" "$expect_pg" <<'PY'
import json, sys

path, expect_pg = sys.argv[1], sys.argv[2] == "1"
with open(path) as f:
    rows = json.load(f)
assert isinstance(rows, list), "JSON is not a list"
keys = {"name", "backend", "ops_per_s", "p50_ms", "p99_ms", "baseline_name",
        "baseline_ops_per_s", "ratio", "unit"}
by_key = {}
for row in rows:
    missing = keys - row.keys()
    assert not missing, f"{row.get('name')}: missing {missing}"
    by_key[(row["name"], row["backend"])] = row

backends = ["sqlite"] + (["postgresql"] if expect_pg else [])
cellar = ["tiny_commit_c1", "tiny_commit_c3", "bulk_10x300_c2",
          "load_uncached_c1", "load_uncached_c3", "load_many100_c1"]
expected = [(n, b) for b in backends for n in cellar]
raw_dbs = [("sqlite", "sqlite")] + ([("pg", "postgresql")] if expect_pg else [])
for db, backend in raw_dbs:
    expected += [(f"raw_{db}_commit_c1", backend), (f"raw_{db}_commit_c3", backend),
                 (f"raw_{db}_bulk_10_c2", backend), (f"raw_{db}_select_c1", backend),
                 (f"raw_{db}_select_c3", backend)]

failures = []
for key in expected:
    row = by_key.get(key)
    if row is None:
        failures.append(f"{key}: no row")
        continue
    if not row["ops_per_s"] > 0:
        failures.append(f"{key}: ops_per_s = {row['ops_per_s']}")
    if row.get("errors", 0) != 0:
        failures.append(f"{key}: {row['errors']} errors: {row.get('first_error')}")
    if not row["raw"]:
        has_baseline = row["baseline_name"] is not None
        if has_baseline != expect_pg:
            failures.append(f"{key}: baseline_name = {row['baseline_name']}")
        if (row["ratio"] is None) == has_baseline:
            failures.append(f"{key}: ratio = {row['ratio']}")
extra = set(by_key) - set(expected)
if extra:
    failures.append(f"unexpected rows: {sorted(extra)}")
if failures:
    print("FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"OK: {len(rows)} rows, all with ops > 0 and no errors")
PY

# check_rows JSON ROW...: each ROW ("name" or "name/backend") is in the
# JSON with ops > 0 and no errors (and cpu us > 0 when it has a backend).
check_rows() {
  /usr/bin/python3 - "$@" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
failures = []
for want in sys.argv[2:]:
    name, _, backend = want.partition("/")
    found = [r for r in rows if r["name"] == name and backend in ("", r["backend"])]
    if not found:
        failures.append(f"{want}: no row")
    for r in found:
        if not r["ops"] > 0 or r["errors"] != 0 or (backend and not r["cpu_us_per_op"] > 0):
            failures.append(f"{want}: {r}")
if failures:
    print("FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"OK: {len(sys.argv) - 2} rows as expected")
PY
}

# --mode=security: both clusters, the four rows each, the cost summary.
out="${TEST_TMPDIR:-$(mktemp -d)}/security.txt"
json="${TEST_TMPDIR:-$(mktemp -d)}/security.json"
args=(--mode=security --security_rounds=1 --seconds=0.3 --warmup=0.1 --clients=2
      --load_objects=100 --verify_sample=10 --json="$json")
echo "+ $bench ${args[*]}"
"$bench" "${args[@]}" | tee "$out"
grep -q "^auth + TLS cost" "$out" || { echo "FAILED: no auth + TLS cost summary"; exit 1; }
check_rows "$json" {tiny_commit_c1,tiny_commit_c2,load_uncached_c1,load_uncached_c2}/{sqlite,sqlite+tls}

# --mode=flood: B's rows in both phases without errors, A's rows, the
# summary with A's refusals.
out="${TEST_TMPDIR:-$(mktemp -d)}/flood.txt"
json="${TEST_TMPDIR:-$(mktemp -d)}/flood.json"
args=(--mode=flood --rate_limit=20 --flood_clients=2 --steady_loads=20 --steady_commits=5
      --flood_seconds=0.5 --warmup=0.2 --flood_objects=100 --json="$json")
echo "+ $bench ${args[*]}"
"$bench" "${args[@]}" | tee "$out"
for line in "^  B p99 flood/idle = " "^  A loads    offered " "^  A commits  offered "; do
  grep -q "$line" "$out" || { echo "FAILED: no line matching '$line'"; exit 1; }
done
check_rows "$json" flood_b_{load,commit}_{idle,flood} flood_a_load flood_a_commit
