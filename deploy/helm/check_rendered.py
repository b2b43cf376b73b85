"""Checks the manifests `helm template` rendered from deploy/helm/cellar.

usage: check_rendered.py MATRIX-NAME FILE.yaml  (run by deploy/helm/check)

Prints one line per failed check and exits 1 if any failed. The flags a
binary defines are read from its sources (ABSL_FLAG), so a flag the chart
passes but no binary knows fails here without building anything.
"""
import json
import os
import re
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = {
    "cellar-master": ["services/master/main.cc"],
    "cellar-storage": ["services/storage/main.cc"],
    "cellar-admin": ["services/admin/main.cc"],
    "cellarctl": [],
}
COMMON = ["services/common/auth_flags.cc"]
READINESS = {"master": "", "storage": "cellar.v1.Storage.Ready", "admin": "cellar.v1.Admin"}
REQUIRED_FLAGS = {
    "cellar-master": ["listen", "advertise", "metrics_listen", "cluster_name"],
    "cellar-storage": ["listen", "advertise", "metrics_listen", "cluster_name", "master", "backend", "label"],
    "cellar-admin": ["listen", "metrics_listen", "cluster_name", "master"],
}

errors = []


def fail(msg):
    errors.append(msg)


def flags_of(binary):
    names = set()
    for path in SOURCES[binary] + COMMON:
        with open(os.path.join(REPO, path)) as f:
            names |= set(re.findall(r"ABSL_FLAG\([^,]+,\s*([a-z0-9_]+)", f.read()))
    return names


def pod_spec(doc):
    if doc["kind"] == "Pod":
        return doc["spec"]
    return doc["spec"]["template"]["spec"]


def check_container(where, c, component, auth):
    sc = c.get("securityContext", {})
    if sc.get("readOnlyRootFilesystem") is not True:
        fail(f"{where}: readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        fail(f"{where}: allowPrivilegeEscalation is not false")
    if sc.get("capabilities", {}).get("drop") != ["ALL"]:
        fail(f"{where}: capabilities not drop [ALL]")
    if "resources" not in c:
        fail(f"{where}: no resources")
    env = {e["name"] for e in c.get("env", [])}
    cmd = c.get("command", [])
    args = c.get("args", [])
    for a in args:
        for var in re.findall(r"\$\(([A-Z_]+)\)", a):
            if var not in env:
                fail(f"{where}: argument {a!r} uses $({var}), not in env")
    binary = os.path.basename(cmd[0]) if cmd else ""
    if binary in REQUIRED_FLAGS:
        known = flags_of(binary)
        given = []
        for a in args:
            if not a.startswith("--"):
                fail(f"{where}: argument {a!r} is not a --flag")
                continue
            name = a[2:].split("=", 1)[0]
            given.append(name)
            if name not in known:
                fail(f"{where}: {binary} has no flag --{name} (its flags: {', '.join(sorted(known))})")
        for name in REQUIRED_FLAGS[binary]:
            if name not in given:
                fail(f"{where}: {binary} is not given --{name}")
        if auth and "cluster_secret_file" not in given:
            fail(f"{where}: auth on but no --cluster_secret_file")
        if not auth and "insecure" not in given:
            fail(f"{where}: auth off but no --insecure (the binary would refuse to start)")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if "grpc" not in c.get(probe, {}):
                fail(f"{where}: {probe} is not a native gRPC probe")
        ready = c.get("readinessProbe", {}).get("grpc", {}).get("service", "")
        if ready != READINESS[component]:
            fail(f"{where}: readiness on health service {ready!r}, expected {READINESS[component]!r}")


def main():
    name, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
    auth = name != "auth-off"

    for d in docs:
        labels = d["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
                    "app.kubernetes.io/version", "cellar.io/version", "cellar.io/track"):
            if key not in labels:
                fail(f"{d['kind']}/{d['metadata']['name']}: no label {key}")

    pod_labels = []
    for d in kinds.get("StatefulSet", []) + kinds.get("Pod", []):
        where = f"{d['kind']}/{d['metadata']['name']}"
        spec = pod_spec(d)
        tmpl_labels = d["metadata"]["labels"] if d["kind"] == "Pod" else d["spec"]["template"]["metadata"]["labels"]
        pod_labels.append(tmpl_labels)
        component = tmpl_labels.get("app.kubernetes.io/component")
        psc = spec.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True or psc.get("runAsUser", 0) == 0:
            fail(f"{where}: pod not forced non-root")
        if d["kind"] == "StatefulSet":
            sel = d["spec"]["selector"]["matchLabels"]
            if any(tmpl_labels.get(k) != v for k, v in sel.items()):
                fail(f"{where}: selector {sel} does not match the pod labels")
            if any("version" in k for k in sel):
                fail(f"{where}: version label in the (immutable) selector")
            for vct in d["spec"].get("volumeClaimTemplates", []):
                if any("version" in k or k == "helm.sh/chart" for k in vct["metadata"].get("labels", {})):
                    fail(f"{where}: version label in volumeClaimTemplates (immutable)")
            if component in READINESS and auth and "checksum/auth" not in d["spec"]["template"]["metadata"].get("annotations", {}):
                fail(f"{where}: no checksum/auth annotation")
        for c in spec.get("initContainers", []) + spec["containers"]:
            check_container(f"{where} container {c['name']}", c, component, auth)

    # Services select pods that exist; headless ones publish not-ready pods.
    for s in kinds.get("Service", []):
        sel = s["spec"].get("selector", {})
        if not any(all(l.get(k) == v for k, v in sel.items()) for l in pod_labels):
            fail(f"Service/{s['metadata']['name']}: selector {sel} matches no pod template")
        if s["spec"].get("clusterIP") == "None" and not s["spec"].get("publishNotReadyAddresses"):
            fail(f"Service/{s['metadata']['name']}: headless but not publishNotReadyAddresses")

    sts = {d["metadata"]["name"]: d for d in kinds.get("StatefulSet", [])}
    def args_of(suffix):
        d = next((v for k, v in sts.items() if k.endswith(suffix)), None)
        return d and d["spec"]["template"]["spec"]["containers"][0]["args"]
    if len(kinds.get("PodDisruptionBudget", [])) != 3:
        fail("expected 3 PodDisruptionBudgets")
    if not any(d["metadata"]["annotations"].get("helm.sh/hook") == "test" for d in kinds.get("Pod", [])):
        fail("no helm test pod")
    cms = [d for d in kinds.get("ConfigMap", []) if d["metadata"]["name"].endswith("-monitoring")]
    if len(cms) != 1:
        fail("no monitoring ConfigMap")
    else:
        data = cms[0]["data"]
        json.loads(data["cellar-dashboard.json"])
        rules = yaml.safe_load(data["cellar-alerts.yaml"])
        if not rules.get("groups"):
            fail("monitoring ConfigMap: no rule groups")
        if name == "prometheus-operator" and "https://runbooks.example.com/cellar/" not in data["cellar-alerts.yaml"]:
            fail("monitoring ConfigMap: runbook base not replaced by monitoring.runbookBaseUrl")

    storage_args = args_of("-storage") or []
    master_args = args_of("-master") or []
    has = lambda args, prefix: any(a.startswith(prefix) for a in args)
    expect = {
        "defaults": [(has(storage_args, "--backend=host=/run/postgresql"), "storage on the PostgreSQL sidecar"),
                     ("ServiceMonitor" not in kinds, "no ServiceMonitor without the CRD"),
                     (len(kinds.get("NetworkPolicy", [])) == 3, "3 NetworkPolicies"),
                     (len(kinds.get("Secret", [])) == 1, "the generated auth Secret")],
        "masters3": [(has(master_args, "--election_pg=$(CELLAR_ELECTION_PG)"), "masters elect through --election_pg"),
                     (any(k.endswith("-election") for k in sts), "the election PostgreSQL StatefulSet"),
                     (has(storage_args, "--master=") and storage_args[[a.startswith("--master=") for a in storage_args].index(True)].count(",") == 2,
                      "storages know the 3 masters")],
        "masters3-external-election": [(not any(k.endswith("-election") for k in sts), "no bundled election database"),
                                       (has(master_args, "--election_pg="), "--election_pg")],
        "external-postgres": [(has(storage_args, "--backend=dbname=cellar_s$(POD_INDEX)"), "one database per ordinal"),
                              (not sts[next(k for k in sts if k.endswith("-storage"))]["spec"].get("volumeClaimTemplates"), "no PVC")],
        "sqlite": [(has(storage_args, "--backend=sqlite:///data/storage.db"), "SQLite on the PVC"),
                   ("--writer_threads=1" in storage_args, "one writer on SQLite")],
        "auth-off": [("Secret" not in kinds, "no auth Secret"), ("NetworkPolicy" not in kinds, "no NetworkPolicy")],
        "prometheus-operator": [("ServiceMonitor" in kinds, "a ServiceMonitor with the CRD"),
                                ("PrometheusRule" in kinds and kinds["PrometheusRule"][0]["spec"]["groups"], "a PrometheusRule with groups")],
    }
    for ok, what in expect.get(name, []):
        if not ok:
            fail(f"{name}: expected {what}")

    # The pods' checksum/auth is the hash of the generated Secret's data (the
    # same render), so new credentials roll the pods and an upgrade that keeps
    # them does not.
    auth_secrets = [d for d in kinds.get("Secret", []) if d["metadata"]["name"].endswith("-auth")]
    if auth_secrets:
        import base64, hashlib
        data = {k: base64.b64decode(v).decode() for k, v in auth_secrets[0]["data"].items()}
        want = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        for d in kinds.get("StatefulSet", []):
            got = d["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/auth")
            if got is not None and got != want:
                fail(f"StatefulSet/{d['metadata']['name']}: checksum/auth {got} is not the hash of the auth Secret's data {want}")
        tokens = data["tokens"]
        for role in ("admin", "client"):
            _, tid, secret = data[f"{role}-token"].split("_")
            line = f"{tid} {role} {hashlib.sha256(secret.encode()).hexdigest()} helm-{role}"
            if line not in tokens.splitlines():
                fail(f"auth Secret: the tokens file has no line {line!r} for the {role} token")
            if not re.fullmatch(r"[0-9a-f]{8}", tid) or not re.fullmatch(r"[0-9a-f]{64}", secret):
                fail(f"auth Secret: the {role} token is not cellar_<8 hex>_<64 hex>")

    summary = ", ".join(f"{len(v)} {k}" for k, v in sorted(kinds.items()))
    if errors:
        for e in errors:
            print(f"helm-check:   {name}: {e}")
        return 1
    print(f"helm-check:    template {name}: ok ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
