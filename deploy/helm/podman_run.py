"""The chart's pods under podman, with no Kubernetes (a smoke test, not a cluster).

usage: podman_run.py RENDERED.yaml WORKDIR   (see deploy/helm/podman-run)

Runs ordinal 0 of each StatefulSet (election database, master, storage,
admin) and then the helm test pod, each container as the manifest says
(command, args, env, volume mounts, uid 65532, read-only root, no
capabilities): env from fieldRefs and the rendered Secrets, $(VAR) expanded
like the kubelet does, native sidecars started first and waited for through
their startup probe, volumes as directories under WORKDIR, every pod DNS name
mapped to 127.0.0.1 on the host network. The chart's ports are fixed, so only
one pod per component fits: render with storage.replicaCount=1.
Exit status: the helm test pod's.
"""
import base64, os, re, subprocess, sys, time, yaml

rendered, work = sys.argv[1], sys.argv[2]
release = os.environ.get("RELEASE", "cellar-ci")
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
secrets = {d["metadata"]["name"]: {k: base64.b64decode(v) for k, v in d["data"].items()} for d in docs if d["kind"] == "Secret"}
hosts = []
for d in docs:
    if d["kind"] == "StatefulSet":
        hosts.append(f'{d["metadata"]["name"]}-0.{d["spec"]["serviceName"]}.db.svc.cluster.local')
hosts.append(f"{release}-admin.db.svc.cluster.local")
names = []

def sh(*a, **kw):
    return subprocess.run(list(a), **kw)

def run_pod(name, spec, labels, detach=True):
    pdir = os.path.join(work, name); os.makedirs(pdir, exist_ok=True)
    vols = {}
    for v in spec.get("volumes", []):
        vd = os.path.join(pdir, v["name"]); os.makedirs(vd, exist_ok=True)
        if "secret" in v:
            data = secrets[v["secret"]["secretName"]]
            for it in v["secret"].get("items", [{"key": k, "path": k} for k in data]):
                open(os.path.join(vd, it["path"]), "wb").write(data[it["key"]])
        vols[v["name"]] = vd
    vols.setdefault("data", os.path.join(pdir, "data")); os.makedirs(vols["data"], exist_ok=True)
    sh("chown", "-R", "65532:65532", pdir)
    def env_of(c):
        env = {}
        for e in c.get("env", []):
            if "value" in e: env[e["name"]] = e["value"]; continue
            vf = e["valueFrom"]
            if "fieldRef" in vf:
                p = vf["fieldRef"]["fieldPath"]
                env[e["name"]] = {"metadata.name": name, "spec.nodeName": "node1"}.get(p, "0" if "pod-index" in p else "")
            elif "secretKeyRef" in vf:
                r = vf["secretKeyRef"]
                env[e["name"]] = secrets.get(r["name"], {}).get(r["key"], b"").decode()
        return env
    def expand(s, env):
        return re.sub(r"\$\(([A-Z_]+)\)", lambda m: env.get(m.group(1), m.group(0)), s)
    def podman(c, detach):
        env = env_of(c)
        cname = f"podrun-{name}-{c['name']}"
        names.append(cname)
        img = c["image"]
        cmd = ["podman", "run", "--name", cname, "--network", "host", "--read-only", "--cap-drop=all",
               "--user", "65532:65532", "--security-opt", "no-new-privileges", "--hostname", name]
        cmd += ["-d"] if detach else ["--rm"]
        for h in hosts: cmd += ["--add-host", f"{h}:127.0.0.1"]
        for k, v in env.items(): cmd += ["-e", f"{k}={v}"]
        for m in c.get("volumeMounts", []):
            cmd += ["-v", f"{vols[m['name']]}:{m['mountPath']}" + (":ro" if m.get("readOnly") else "")]
        cmd += ["--entrypoint", c["command"][0], img] + [expand(a, env) for a in c["command"][1:] + c.get("args", [])]
        print("+", " ".join(cmd[cmd.index(img):])[:400], flush=True)
        return sh(*cmd)
    for c in spec.get("initContainers", []):
        podman(c, True)
        for _ in range(60):
            if sh("podman", "exec", f"podrun-{name}-{c['name']}", *c["startupProbe"]["exec"]["command"], stderr=subprocess.DEVNULL).returncode == 0: break
            time.sleep(1)
        else:
            sys.exit(f"{name}: sidecar {c['name']} never passed its startup probe")
    rc = 0
    for c in spec["containers"]:
        rc = podman(c, detach).returncode
    return rc

try:
    for comp in ("election", "master", "storage", "admin"):
        d = next((d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"].endswith("-" + comp)), None)
        if d is None: continue
        if comp == "election":
            spec = d["spec"]["template"]["spec"]
            run_pod(d["metadata"]["name"] + "-0", spec, {})
            for _ in range(60):
                if sh("podman", "exec", "podrun-%s-0-postgres" % d["metadata"]["name"], "/usr/lib/postgresql/15/bin/pg_isready", "-h", "127.0.0.1", stdout=subprocess.DEVNULL).returncode == 0: break
                time.sleep(1)
            continue
        d = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"].endswith("-" + comp))
        run_pod(d["metadata"]["name"] + "-0", d["spec"]["template"]["spec"], d["spec"]["template"]["metadata"]["labels"])
    time.sleep(3)
    test = next(d for d in docs if d["kind"] == "Pod")
    for _ in range(40):
        r = subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "grpcurl"), "-plaintext", "-H", "authorization: Bearer " + secrets[f"{release}-auth"]["admin-token"].decode(),
                            "-d", '{"service":"cellar.v1.Storage.Ready"}', "127.0.0.1:7200", "grpc.health.v1.Health/Check"], capture_output=True, text=True)
        if '"SERVING"' in r.stdout: break
        time.sleep(2)
    print("storage readiness:", r.stdout.strip().replace("\n", " "), r.stderr.strip()[:200], flush=True)
    rc = run_pod(test["metadata"]["name"], test["spec"], test["metadata"]["labels"], detach=False)
    print("helm test pod exit code:", rc, flush=True)
    if rc != 0:
        for n in names:
            print("---", n); sh("podman", "logs", "--tail", "15", n)
    sh("sh", "-c", f"podman logs podrun-{release}-master-0-master 2>&1 | grep -iE 'elect|primary' | head -3")
finally:
    for n in names: sh("podman", "rm", "-f", "-t", "3", n, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
sys.exit(rc)
