# Sourced by tools/k8s/k8s: the tiny images (no registry: buildah from scratch +
# Debian's busybox-static), `load` into containerd, and the smoke test.

K8S_IMAGES=$K8S_CACHE/images
K8S_PAUSE_IMAGE=localhost/cellar-k8s/pause:1
K8S_SMOKE_IMAGE=localhost/cellar-k8s/smoke:1

bah() {  # buildah with a storage of our own (not the machine's /var/lib/containers)
  buildah --root "$K8S_CACHE/containers/storage" --runroot "$K8S_CACHE/containers/run" \
    --storage-driver vfs "$@"
}

# image_build NAME REF ARCHIVE CONFIG-ARGS...
image_build() {
  local name=$1 ref=$2 out=$3; shift 3
  if [[ -s $out ]]; then
    say "images: $name: cached ($out)"
    return 0
  fi
  need_cmd buildah
  [[ -x /bin/busybox ]] || die "/bin/busybox missing (Debian's busybox-static)"
  say "images: $name: buildah from scratch + busybox-static -> $ref"
  local c www
  c=$(bah from --name "cellar-k8s-$name-$$" scratch)
  bah copy "$c" /bin/busybox /bin/busybox >/dev/null
  if [[ $name == smoke ]]; then
    www=$(mktemp -d)
    echo "cellar-k8s smoke ok" >"$www/index.html"
    bah copy "$c" "$www/index.html" /www/index.html >/dev/null
    rm -rf "$www"
  fi
  bah config "$@" --label org.opencontainers.image.source=cellar/tools/k8s "$c"
  bah commit -q --rm "$c" "$ref" >/dev/null
  mkdir -p "$K8S_IMAGES"
  rm -f "$out.tmp"
  bah push -q "$ref" "oci-archive:$out.tmp:$ref" >/dev/null
  bah rmi "$ref" >/dev/null 2>&1 || true
  mv "$out.tmp" "$out"
  say "images: $name: $out ($(du -h "$out" | cut -f1))"
}

ensure_pause_image() {
  # The pod sandbox: PID 1 sleeps (containerd kills sandboxes with SIGKILL).
  image_build pause "$K8S_PAUSE_IMAGE" "$K8S_IMAGES/pause.tar" \
    --entrypoint '["/bin/busybox", "sleep", "2147483647"]' --cmd '' --user 65535:65535
}

cmd_images() {
  ensure_pause_image
  image_build smoke "$K8S_SMOKE_IMAGE" "$K8S_IMAGES/smoke.tar" \
    --entrypoint '["/bin/busybox", "httpd", "-f", "-v", "-p", "8080", "-h", "/www"]' --cmd '' \
    --port 8080/tcp
  echo "$K8S_IMAGES/pause.tar"
  echo "$K8S_IMAGES/smoke.tar"
}

load_archive() {  # load_archive ARCHIVE: into containerd's k8s.io namespace
  local a=$1 sock=$W/containerd/containerd.sock
  [[ -s $a ]] || die "load: no such archive: $a"
  [[ -S $sock ]] || die "load: containerd is not running ($sock): tools/k8s/k8s up first"
  say "load: ctr -n k8s.io images import $a"
  ctr --address "$sock" -n k8s.io images import --no-unpack=false "$a" >&2
}

cmd_load() {
  [[ $# -ge 1 ]] || die "usage: tools/k8s/k8s load OCI-ARCHIVE..."
  local a
  for a in "$@"; do load_archive "$a"; done
  ctr --address "$W/containerd/containerd.sock" -n k8s.io images list -q >&2
}

cmd_smoke() {
  local t0=$SECONDS down=0
  [[ ${1:-} == --down ]] && down=1
  if ! alive kubelet; then cmd_up; fi
  if [[ $down -eq 1 ]]; then
    trap 'rc=$?; say "smoke: tearing down (exit $rc)"; cmd_down' EXIT
  fi
  cmd_images >/dev/null
  load_archive "$K8S_IMAGES/smoke.tar"
  local m=$K8S_HERE/smoke.yaml
  # the server validates objects in a namespace only once that namespace exists
  k create namespace cellar-smoke --dry-run=client -o yaml | k apply -f - >&2
  say "smoke: kubectl apply --dry-run=server -f $m"
  k apply --dry-run=server -f "$m" >&2
  say "smoke: kubectl apply -f $m"
  k apply -f "$m" >&2
  say "smoke: kubectl wait pod/smoke Ready"
  if ! k -n cellar-smoke wait --for=condition=Ready pod/smoke --timeout=120s >&2; then
    k -n cellar-smoke describe pod smoke >&2 || true
    die "smoke: the pod did not become Ready"
  fi
  k -n cellar-smoke get pod,svc -o wide >&2
  local ip body
  ip=$(k -n cellar-smoke get svc smoke -o 'jsonpath={.spec.clusterIP}')
  # get URL WHAT: retried for up to 30 s (kube-proxy programs the Service
  # once the pod is Ready and its EndpointSlice updated)
  get() {
    say "smoke: GET $1 ($2)"
    local i
    for i in $(seq 60); do
      body=$(curl -fsS --max-time 5 "$1" 2>/dev/null) && break
      sleep 0.5
    done
    [[ $body == "cellar-k8s smoke ok" ]] || die "smoke: $2: $1 gave: ${body:-nothing}"
  }
  get "http://$ip/" "ClusterIP, from the host"
  get "http://$K8S_NODE_IP:30080/" "NodePort, from the host"
  say "smoke: from another pod: nslookup the Service, GET http://$ip/ (pod -> ClusterIP -> pod)"
  k -n cellar-smoke run client --image "$K8S_SMOKE_IMAGE" --image-pull-policy Never --restart Never \
    --command -- /bin/busybox sh -c \
    "/bin/busybox nslookup smoke.cellar-smoke.svc.cluster.local; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc $ip 80" >&2
  local phase=""
  for i in $(seq 60); do
    phase=$(k -n cellar-smoke get pod client -o 'jsonpath={.status.phase}')
    [[ $phase == Succeeded || $phase == Failed ]] && break
    sleep 0.5
  done
  body=$(k -n cellar-smoke logs client)
  [[ $phase == Succeeded && $body == *"cellar-k8s smoke ok"* ]] \
    || die "smoke: pod -> Service failed (phase $phase): $body"
  # cluster DNS (CoreDNS): the Service's name resolves to its ClusterIP
  [[ $K8S_DNS != 1 || $body == *"Address: $ip"* ]] || die "smoke: DNS: smoke.cellar-smoke.svc.cluster.local did not resolve to $ip: $body"
  [[ $K8S_DNS != 1 ]] || say "smoke: DNS smoke.cellar-smoke.svc.cluster.local -> $ip (CoreDNS)"
  k -n cellar-smoke delete pod client --wait=false >&2
  say "smoke: kubectl port-forward svc/smoke 18080:80 (host loopback)"
  k -n cellar-smoke port-forward svc/smoke 18080:80 >"$W/logs/port-forward.log" 2>&1 &
  local pf=$!
  local ok=0 i
  for i in $(seq 30); do
    body=$(curl -fsS --max-time 5 http://127.0.0.1:18080/ 2>/dev/null) && { ok=1; break; }
    sleep 0.5
  done
  kill "$pf" 2>/dev/null || true; wait "$pf" 2>/dev/null || true
  [[ $ok -eq 1 && $body == "cellar-k8s smoke ok" ]] || { cat "$W/logs/port-forward.log" >&2; die "smoke: port-forward failed"; }
  say "smoke: kubectl logs pod/smoke"
  k -n cellar-smoke logs smoke --tail=5 >&2 || true
  k delete -f "$m" --wait=true >&2  # the namespace too
  say "smoke: passed in $((SECONDS - t0)) s"
}
