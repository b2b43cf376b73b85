"""Checks the manifests `helm template` rendered from deploy/helm/cellar.

usage: check_rendered.py MATRIX-NAME FILE.yaml  (run by deploy/helm/check)

Prints one line per failed check and exits 1 if any failed. The flags a
binary defines are read from its sources (ABSL_FLAG), so a flag the chart
passes but no binary knows fails here without building anything.
"""
import base64
import fnmatch
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

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

TLS_DIR = "/etc/cellar/tls"
# Matrix entries with TLS on, and how: name -> (mutual, Secret of the nodes).
TLS = {
    "tls-generated": (False, "cellar-ci-tls"),
    "tls-existing": (False, "cellar-certs"),
    "tls-mutual": (True, "cellar-ci-tls"),
}
CELLARCTL_HEALTH_FLAGS = {"service", "timeout", "tls-ca", "tls-cert", "tls-key", "tls-server-name"}

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


def probe_service(probe):
    """The health service a probe asks for (native gRPC or cellarctl health)."""
    if "grpc" in probe:
        return probe["grpc"].get("service", "")
    cmd = probe.get("exec", {}).get("command", [])
    return next((a.split("=", 1)[1] for a in cmd if a.startswith("--service=")), "")


def check_probe(where, probe, port, tls):
    """Without TLS the kubelet's native gRPC probe; with TLS (which that probe
    cannot speak) `cellarctl health` over TLS on the container's own port."""
    if not tls:
        if probe.get("grpc", {}).get("port") != port:
            fail(f"{where}: not a native gRPC probe on port {port}: {probe}")
        return
    cmd = probe.get("exec", {}).get("command", [])
    if cmd[:3] != ["/usr/local/bin/cellarctl", "health", f"127.0.0.1:{port}"]:
        fail(f"{where}: with TLS, not `cellarctl health 127.0.0.1:{port}`: {cmd}")
        return
    flags = {}
    for a in cmd[3:]:
        name, _, value = a[2:].partition("=")
        if not a.startswith("--") or name not in CELLARCTL_HEALTH_FLAGS:
            fail(f"{where}: cellarctl health has no flag {a!r}")
        flags[name] = value
    want = {"tls-ca": f"{TLS_DIR}/ca.crt", "tls-cert": f"{TLS_DIR}/tls.crt", "tls-key": f"{TLS_DIR}/tls.key"}
    for k, v in want.items():
        if flags.get(k) != v:
            fail(f"{where}: --{k} is {flags.get(k)!r}, expected {v!r}")
    if not flags.get("tls-server-name"):
        fail(f"{where}: no --tls-server-name (the probe dials 127.0.0.1)")
    timeout = flags.get("timeout", "")
    if not re.fullmatch(r"\d+s", timeout) or int(timeout[:-1]) >= probe.get("timeoutSeconds", 1):
        fail(f"{where}: cellarctl --timeout={timeout} not below the probe's timeoutSeconds {probe.get('timeoutSeconds', 1)}")


def check_tls_args(where, given, args, tls):
    mutual, _ = tls
    values = {a[2:].split("=", 1)[0]: a.split("=", 1)[1] if "=" in a else True for a in args}
    want = {"tls_cert_file": f"{TLS_DIR}/tls.crt", "tls_key_file": f"{TLS_DIR}/tls.key",
            "tls_ca_file": f"{TLS_DIR}/ca.crt"}
    if mutual:
        want.update({"tls_client_ca_file": f"{TLS_DIR}/ca.crt", "tls_require_client_cert": True})
    for k, v in want.items():
        if values.get(k) != v:
            fail(f"{where}: --{k} is {values.get(k)!r}, expected {v!r}")
    if not mutual and ("tls_client_ca_file" in values or "tls_require_client_cert" in values):
        fail(f"{where}: client certificates asked for without tls.mutual")
    if "tls_reload_interval" not in values:
        fail(f"{where}: no --tls_reload_interval")


def check_container(where, c, component, auth, tls=None):
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
        port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            check_probe(f"{where} {probe}", c.get(probe, {}), port, tls)
        ready = probe_service(c.get("readinessProbe", {}))
        if ready != READINESS[component]:
            fail(f"{where}: readiness on health service {ready!r}, expected {READINESS[component]!r}")
        if tls:
            check_tls_args(where, given, args, tls)
        elif any(n.startswith("tls_") for n in given):
            fail(f"{where}: TLS off but given --tls_* flags")


def check_tls_volume(where, spec, volumes, component, tls):
    mutual, secret = tls
    containers = [c for c in spec["containers"] if c["name"] != "postgres"]
    for c in containers:
        mounts = [m for m in c.get("volumeMounts", []) if m["mountPath"] == TLS_DIR]
        if len(mounts) != 1 or not mounts[0].get("readOnly"):
            fail(f"{where} container {c['name']}: the TLS Secret is not mounted read-only at {TLS_DIR}")
            return
        vol = volumes.get(mounts[0]["name"], {}).get("secret", {})
        keys = sorted(i["path"] for i in vol.get("items", []))
        if component == "test":
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            if env.get("CELLAR_TLS_CA") != f"{TLS_DIR}/ca.crt":
                fail(f"{where}: the test pod has no CELLAR_TLS_CA")
            if mutual != ("CELLAR_TLS_CERT" in env and "CELLAR_TLS_KEY" in env):
                fail(f"{where}: the test pod's client certificate (CELLAR_TLS_CERT/KEY) does not follow tls.mutual")
            want_keys = ["ca.crt", "tls.crt", "tls.key"] if mutual else ["ca.crt"]
            want_secret = "cellar-ci-tls-client" if mutual and secret.startswith("cellar-ci") else secret
        else:
            want_keys, want_secret = ["ca.crt", "tls.crt", "tls.key"], secret
        if keys != want_keys or vol.get("secretName") != want_secret:
            fail(f"{where}: TLS volume is {vol.get('secretName')} {keys}, expected {want_secret} {want_keys}")


def openssl(*args, stdin=None):
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True)


def check_generated_tls(secrets, mutual, pod_names):
    """The generated certificates chain to the generated CA and carry every
    name a node is dialled at."""
    by_name = {d["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in d["data"].items()}
               for d in secrets}
    want = {"cellar-ci-tls-ca", "cellar-ci-tls"} | ({"cellar-ci-tls-client"} if mutual else set())
    if set(by_name) != want:
        fail(f"generated TLS Secrets are {sorted(by_name)}, expected {sorted(want)}")
        return
    ca = by_name["cellar-ci-tls-ca"]["tls.crt"]
    with tempfile.TemporaryDirectory() as tmp:
        ca_file = os.path.join(tmp, "ca.crt")
        with open(ca_file, "w") as f:
            f.write(ca)
        for name in sorted(want - {"cellar-ci-tls-ca"}):
            data = by_name[name]
            if data.get("ca.crt") != ca:
                fail(f"Secret/{name}: ca.crt is not the generated CA")
            r = openssl("verify", "-CAfile", ca_file, stdin=data["tls.crt"])
            if r.returncode != 0:
                fail(f"Secret/{name}: tls.crt does not chain to the CA: {r.stdout}{r.stderr}")
            cert_key = openssl("x509", "-noout", "-pubkey", stdin=data["tls.crt"]).stdout
            if not cert_key or cert_key != openssl("pkey", "-pubout", stdin=data["tls.key"]).stdout:
                fail(f"Secret/{name}: tls.key is not the key of tls.crt")
        sans = openssl("x509", "-noout", "-ext", "subjectAltName",
                       stdin=by_name["cellar-ci-tls"]["tls.crt"]).stdout
        dns = re.findall(r"DNS:([^,\s]+)", sans)
        ips = re.findall(r"IP Address:([^,\s]+)", sans)
        for host in pod_names + ["localhost"]:
            if not any(fnmatch.fnmatchcase(host, d) and d.count(".") == host.count(".") for d in dns):
                fail(f"generated node certificate: no SAN covers {host} (it has {dns})")
        if "127.0.0.1" not in ips:
            fail(f"generated node certificate: no IP SAN 127.0.0.1 ({ips})")


def main():
    name, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
    auth = name != "auth-off"
    tls = TLS.get(name)

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
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("initContainers", []) + spec["containers"]:
            check_container(f"{where} container {c['name']}", c, component, auth, tls)
            for m in c.get("volumeMounts", []):
                # A subPath mount of a Secret never sees its updates (the
                # kubelet swaps a symlink in the volume's directory).
                if "subPath" in m or "subPathExpr" in m:
                    fail(f"{where} container {c['name']}: volume {m['name']} mounted with subPath")
        if tls and component in list(READINESS) + ["test"]:
            check_tls_volume(where, spec, volumes, component, tls)

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
                     (all(a in master_args for a in (
                         "--canary_analysis_interval=1m", "--canary_max_error_ratio=0.01",
                         "--canary_max_latency_ratio=2", "--canary_min_requests=100",
                         "--canary_promote_after=5")), "the canary analysis defaults as master flags"),
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
        "canary-analysis": [(all(a in master_args for a in (
            "--canary_analysis_interval=30s", "--canary_max_error_ratio=0.05",
            "--canary_max_latency_ratio=1.5", "--canary_min_requests=500",
            "--canary_promote_after=3")), "the canary analysis values as master flags")],
        "prometheus-operator": [("ServiceMonitor" in kinds, "a ServiceMonitor with the CRD"),
                                ("PrometheusRule" in kinds and kinds["PrometheusRule"][0]["spec"]["groups"], "a PrometheusRule with groups")],
    }
    stable_sts = next((v for k, v in sts.items() if k.endswith("-storage")), None)
    canary_sts = next((v for k, v in sts.items() if k.endswith("-storage-canary")), None)
    canary_args = args_of("-storage-canary") or []
    def canary_ok(tag, storages, db_arg=None):
        """The canary StatefulSet beside an unchanged stable one."""
        if not canary_sts or not stable_sts:
            return False
        tmpl = canary_sts["spec"]["template"]
        labels = tmpl["metadata"]["labels"]
        return (canary_sts["spec"]["replicas"] == storages
                and canary_sts["spec"]["selector"]["matchLabels"].get("cellar.io/track") == "canary"
                and "cellar.io/track" not in stable_sts["spec"]["selector"]["matchLabels"]
                and labels.get("cellar.io/track") == "canary" and labels.get("cellar.io/version") == tag
                and canary_sts["metadata"]["labels"].get("cellar.io/version") == tag
                and tmpl["spec"]["containers"][0]["image"].endswith(f":{tag}")
                and "--track=canary" in canary_args and f"--build_id={tag}" in canary_args
                and "--track=stable" in storage_args
                and stable_sts["spec"]["template"]["metadata"]["labels"].get("cellar.io/track") == "stable"
                and canary_sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
                and stable_sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
                and "partition" not in canary_sts["spec"]["updateStrategy"]["rollingUpdate"]
                and (db_arg is None or db_arg in canary_args))
    if name not in ("canary", "canary-external") and canary_sts:
        fail("a canary StatefulSet without canary.enabled")
    if name != "canary" and stable_sts and stable_sts["spec"]["updateStrategy"]["rollingUpdate"].get("partition") != 0:
        fail("the stable storages' rollout partition is not 0 by default")
    expect.update({
        "canary": [(canary_ok("0.2.0", 2), "a canary StatefulSet of 2 storages, track canary, tag 0.2.0, beside the stable one"),
                   (canary_args[-1:] == ["--max_object_bytes=1048576"], "canary.extraArgs last on the canary only"),
                   ("--max_object_bytes=1048576" not in storage_args, "no canary.extraArgs on the stable storages"),
                   (stable_sts and stable_sts["spec"]["updateStrategy"]["rollingUpdate"].get("partition") == 2,
                    "storage.rollout.partition on the stable StatefulSet")],
        "canary-external": [(canary_ok("0.2.0", 1, "--backend=dbname=cellar_scanary$(POD_INDEX)"),
                             "the canary on databases of its own (cellar_scanary<i>)")],
    })
    secrets = {d["metadata"]["name"]: d for d in kinds.get("Secret", [])}
    admin_args = args_of("-admin") or []
    tls_secrets = [d for n, d in secrets.items() if "-tls" in n]
    sm_endpoints = [e for d in kinds.get("ServiceMonitor", []) for e in d["spec"]["endpoints"]]
    expect.update({
        "tls-generated": [(len(tls_secrets) == 2, "the generated CA and node Secrets")],
        "tls-existing": [(not tls_secrets, "no generated TLS Secret with tls.existingSecret")],
        "tls-mutual": [(len(tls_secrets) == 3, "the generated CA, node and client Secrets")],
        "metrics-auth": [(all("--metrics_auth" in a for a in (master_args, storage_args, admin_args)),
                          "--metrics_auth on master, storage and admin"),
                         (sm_endpoints and all(e.get("basicAuth", {}).get("password", {}).get("key") == "metrics-token"
                                               and e["basicAuth"]["username"].get("key") == "metrics-username"
                                               for e in sm_endpoints),
                          "the ServiceMonitor sends basicAuth from the auth Secret")],
    })
    if name != "metrics-auth":
        expect.setdefault(name, []).append((not any("--metrics_auth" in a for a in (master_args, storage_args, admin_args))
                                            and not any("basicAuth" in e for e in sm_endpoints),
                                            "no metrics auth without metrics.auth"))
    if name in ("tls-generated", "tls-mutual"):
        pods = []
        for a in master_args + storage_args:
            if a.startswith("--advertise="):
                sts_name = next(k for k in sts if a.startswith("--advertise=$(POD_NAME)") and k.endswith(
                    "-master" if a.endswith(":7100") else "-storage"))
                pods.append(a.split("=", 1)[1].replace("$(POD_NAME)", f"{sts_name}-0").rsplit(":", 1)[0])
            if a.startswith("--master="):
                pods += [m.rsplit(":", 1)[0] for m in a.split("=", 1)[1].split(",")]
        for d in kinds.get("Pod", []):
            for e in d["spec"]["containers"][0].get("env", []):
                if e["name"] in ("CELLAR_ADMIN", "CELLAR_MASTERS"):
                    pods += [m.rsplit(":", 1)[0] for m in e["value"].split(",")]
        check_generated_tls(tls_secrets, TLS[name][0], sorted(set(pods)))

    for ok, what in expect.get(name, []):
        if not ok:
            fail(f"{name}: expected {what}")

    # The pods' checksum/auth is the hash of the generated Secret's data (the
    # same render), so new credentials roll the pods and an upgrade that keeps
    # them does not.
    auth_secrets = [d for d in kinds.get("Secret", []) if d["metadata"]["name"].endswith("-auth")]
    if auth_secrets:
        data = {k: base64.b64decode(v).decode() for k, v in auth_secrets[0]["data"].items()}
        want = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        for d in kinds.get("StatefulSet", []):
            got = d["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/auth")
            if got is not None and got != want:
                fail(f"StatefulSet/{d['metadata']['name']}: checksum/auth {got} is not the hash of the auth Secret's data {want}")
        tokens = data["tokens"]
        roles = [("admin", "admin"), ("client", "client")]
        if name == "metrics-auth":
            roles.append(("metrics", "readonly"))
            if data.get("metrics-username") != "prometheus":
                fail("auth Secret: no metrics-username for the ServiceMonitor")
        elif "metrics-token" in data:
            fail("auth Secret: a metrics token without metrics.auth")
        for key, role in roles:
            _, tid, secret = data[f"{key}-token"].split("_")
            line = f"{tid} {role} {hashlib.sha256(secret.encode()).hexdigest()} helm-{key}"
            if line not in tokens.splitlines():
                fail(f"auth Secret: the tokens file has no line {line!r} for the {key} token")
            if not re.fullmatch(r"[0-9a-f]{8}", tid) or not re.fullmatch(r"[0-9a-f]{64}", secret):
                fail(f"auth Secret: the {key} token is not cellar_<8 hex>_<64 hex>")

    summary = ", ".join(f"{len(v)} {k}" for k, v in sorted(kinds.items()))
    if errors:
        for e in errors:
            print(f"helm-check:   {name}: {e}")
        return 1
    print(f"helm-check:    template {name}: ok ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
