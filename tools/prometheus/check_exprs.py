#!/usr/bin/python3
"""Asks a running Prometheus whether every dashboard expression and every
recording rule returns data. Used by tools/prometheus/check.

  tools/prometheus/check_exprs.py --prometheus http://127.0.0.1:PORT \
      --dashboard deploy/monitoring/grafana/cellar-dashboard.json

Checks, in order:
  1. every scrape target is up;
  2. every loaded rule (recording and alerting) evaluates without error;
  3. no alert is firing (a healthy cluster under load must not page);
  4. every recording rule's series has at least one sample with a value
     (not NaN) now;
  5. every `expr` of every dashboard panel target, with template variables
     substituted ($version, $track, $instance -> .*, $__rate_interval -> 1m,
     $__interval -> 15s, $__range -> 5m), returns at least one sample with
     a value (not NaN);
  6. every label_values() template variable query finds values.

Exceptions (expressions allowed to return no data) are listed in
ALLOWED_EMPTY below, each with its reason; it is empty on purpose: the
dashboard writes "0 when none" as `or vector(0)` / `or 0 * ...` instead.

Prints one line per expression and a summary "N expressions, N with data";
exits 1 listing what failed. Standard library only.
"""
import argparse
import json
import math
import re
import sys
import urllib.parse
import urllib.request

# expression (after substitution) -> why it may return nothing on a healthy
# cluster under load.
ALLOWED_EMPTY = {}

SUBSTITUTIONS = {
    "version": ".*",
    "track": ".*",
    "instance": ".*",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
}
VAR_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def get(base, path, **params):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{path}: {body.get('error', body)}")
    return body["data"]


def substitute(expr):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in SUBSTITUTIONS:
            raise ValueError(f"unknown template variable ${name}")
        return SUBSTITUTIONS[name]
    return VAR_RE.sub(repl, expr)


def samples_with_values(base, expr):
    """(number of series, number of series whose value is not NaN)."""
    data = get(base, "/api/v1/query", query=expr)
    if data["resultType"] == "scalar":
        return 1, 0 if math.isnan(float(data["result"][1])) else 1
    result = data["result"]
    valued = sum(1 for s in result if not math.isnan(float(s["value"][1])))
    return len(result), valued


def panel_targets(panels, row=""):
    """(where, expr) of every target; rows hold their panels when collapsed,
    otherwise the panels follow the row at the top level."""
    for panel in panels:
        if panel.get("type") == "row":
            row = panel.get("title", "")
            yield from panel_targets(panel.get("panels", []), row)
            continue
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield f'{row} / {panel.get("title")} [{target.get("refId")}]', target["expr"]
        yield from panel_targets(panel.get("panels", []), row)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--dashboard", required=True, help="Grafana dashboard JSON")
    args = parser.parse_args()
    base = args.prometheus.rstrip("/")
    failures = []

    # 1. Targets.
    targets = get(base, "/api/v1/targets")["activeTargets"]
    for t in targets:
        if t["health"] != "up":
            failures.append(f'target {t["scrapeUrl"]} is {t["health"]}: {t.get("lastError", "")}')
    print(f"check_exprs: {len(targets)} scrape targets, "
          f"{sum(t['health'] == 'up' for t in targets)} up")

    # 2-3. Rule health and alerts.
    recording, alerts = [], []
    for group in get(base, "/api/v1/rules")["groups"]:
        for rule in group["rules"]:
            if rule.get("health") != "ok":
                failures.append(f'rule {rule["name"]} health {rule.get("health")}: {rule.get("lastError", "")}')
            if rule["type"] == "recording":
                recording.append(rule["name"])
            else:
                alerts.append(rule)
    firing = [a for a in alerts if a["state"] == "firing"]
    pending = [a for a in alerts if a["state"] == "pending"]
    print(f"check_exprs: {len(recording)} recording rules, {len(alerts)} alerts "
          f"({len(firing)} firing, {len(pending)} pending)")
    for a in pending:
        print(f"  pending: {a['name']}")
    for a in firing:
        failures.append(f"alert {a['name']} is firing on a healthy cluster: "
                        + "; ".join(json.dumps(x["labels"]) for x in a.get("alerts", [])))

    # 4-5. Expressions.
    with open(args.dashboard) as f:
        dashboard = json.load(f)
    exprs = [(f"recording rule {name}", name) for name in recording]
    exprs += [(f"panel {where}", expr) for where, expr in panel_targets(dashboard["panels"])]
    with_data = 0
    for where, expr in exprs:
        try:
            query = substitute(expr)
            series, valued = samples_with_values(base, query)
        except Exception as e:  # noqa: BLE001 - report every failure
            failures.append(f"{where}: {e}")
            print(f"  ERROR {where}: {e}")
            continue
        one_line = " ".join(query.split())
        if valued > 0:
            with_data += 1
            print(f"  ok    {valued:3d} series  {where}")
        elif query in ALLOWED_EMPTY:
            print(f"  empty (allowed: {ALLOWED_EMPTY[query]})  {where}")
            with_data += 1
        else:
            what = "only NaN" if series else "no data"
            failures.append(f"{where}: {what}: {one_line}")
            print(f"  FAIL  {what}  {where}: {one_line}")

    # 6. Template variables.
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
        if not m:
            failures.append(f"variable {var['name']}: cannot check query {query}")
            continue
        values = get(base, "/api/v1/query", query=f"count by ({m.group(2)}) ({m.group(1)})")["result"]
        found = sorted(v["metric"].get(m.group(2), "") for v in values)
        print(f"  var   ${var['name']}: {', '.join(found) or 'NONE'}")
        if not found:
            failures.append(f"variable {var['name']}: {query} finds no values")

    print(f"check_exprs: {len(exprs)} expressions, {with_data} with data "
          f"({len(recording)} recording rules, {len(exprs) - len(recording)} dashboard targets)")
    if failures:
        print(f"check_exprs: FAILED ({len(failures)}):")
        for f in failures:
            print(f"  - {f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
