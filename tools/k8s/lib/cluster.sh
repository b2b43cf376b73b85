# Sourced by tools/k8s/k8s: up, down, status of the single-node cluster.

K8S_PACKAGES=(containerd runc containernetworking-plugins etcd-server iptables iproute2
  openssl util-linux curl buildah busybox-static jq)
# Kernel settings kubelet changes on start (its "kernel tunables"); `up` records
# them and `down` puts them back.
K8S_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

W=$K8S_WORK
k() { "$K8S_BIN/kubectl" --kubeconfig "$W/admin.kubeconfig" "$@"; }
in_ns() { nsenter --net="/run/netns/$K8S_NETNS" -- "$@"; }

ensure_packages() {
  local installed missing=() p
  installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${K8S_PACKAGES[@]}" 2>/dev/null \
    | awk '$2 == "ii" { print $1 }' || true)
  for p in "${K8S_PACKAGES[@]}"; do grep -qxF "$p" <<<"$installed" || missing+=("$p"); done
  if [[ ${#missing[@]} -eq 0 ]]; then
    say "packages: all ${#K8S_PACKAGES[@]} installed"
    return 0
  fi
  say "packages: apt-get install ${missing[*]}"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >&2
}

# ---------------------------------------------------------------- processes

# start NAME CMD...: runs CMD inside the namespace, logs to $W/logs/NAME.log,
# pid in $W/run/NAME.pid (the pid of CMD itself: the shell execs it).
start() {
  local name=$1; shift
  say "start: $name"
  nsenter --net="/run/netns/$K8S_NETNS" -- sh -c 'echo $$ > "$0"; exec "$@"' \
    "$W/run/$name.pid" "$@" >"$W/logs/$name.log" 2>&1 </dev/null &
  local i
  for i in $(seq 50); do [[ -s $W/run/$name.pid ]] && break; sleep 0.1; done
  echo "$1" >"$W/run/$name.exe"
}

alive() {  # alive NAME: the recorded pid still runs the recorded program
  local f=$W/run/$1.pid pid exe
  [[ -s $f ]] || return 1
  pid=$(<"$f"); exe=$(<"$W/run/$1.exe")
  [[ $(tr '\0' '\n' 2>/dev/null </proc/"$pid"/cmdline | head -1) == "$exe" ]]
}

stop() {  # stop NAME: SIGTERM, up to 15 s, then SIGKILL
  local name=$1 pid i
  if alive "$name"; then
    pid=$(<"$W/run/$name.pid")
    say "stop: $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 150); do alive "$name" || break; sleep 0.1; done
    if alive "$name"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  fi
  rm -f "$W/run/$name.pid" "$W/run/$name.exe"
}

# wait_for WHAT SECONDS CMD...: polls CMD every second
wait_for() {
  local what=$1 secs=$2 t0=$SECONDS; shift 2
  say "wait: $what (up to $secs s)"
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - t0 >= secs )); then
      say "timeout after $secs s waiting for $what"
      return 1
    fi
    sleep 1
  done
  say "wait: $what: ok after $((SECONDS - t0)) s"
}

check_alive() {  # check_alive NAME...: die with the log tail if one has exited
  local n
  for n in "$@"; do
    if ! alive "$n"; then
      say "$n exited; last lines of $W/logs/$n.log:"
      tail -n 30 "$W/logs/$n.log" >&2 || true
      return 1
    fi
  done
}

# ---------------------------------------------------------------- PKI

pki() {
  local d=$W/pki
  mkdir -p "$d"
  say "pki: CA, serving and client certificates in $d (openssl)"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=cellar-k8s-ca" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  # cert NAME SUBJECT EXTENSIONS
  cert() {
    openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$d/$1.key" -out "$d/$1.csr" 2>/dev/null
    printf '%s\n' "$3" >"$d/$1.ext"
    openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
      -days 30 -extfile "$d/$1.ext" -out "$d/$1.crt" 2>/dev/null
    rm -f "$d/$1.csr" "$d/$1.ext"
  }
  local client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  cert apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$K8S_NODE_IP,IP:$K8S_SVC_API_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert kubelet-serving "/CN=$K8S_NODE" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$K8S_NODE_IP,DNS:$K8S_NODE"
  cert admin "/O=system:masters/CN=kubernetes-admin" "$client"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  cert kubelet "/O=system:nodes/CN=system:node:$K8S_NODE" "$client"
  cert controller-manager "/CN=system:kube-controller-manager" "$client"
  cert scheduler "/CN=system:kube-scheduler" "$client"
  cert kube-proxy "/CN=system:kube-proxy" "$client"
  cert coredns "/CN=system:coredns" "$client"
  local n
  for n in admin kubelet controller-manager scheduler kube-proxy coredns; do
    cat >"$W/$n.kubeconfig" <<EOK
apiVersion: v1
kind: Config
clusters:
- name: cellar-k8s
  cluster:
    server: https://$K8S_NODE_IP:6443
    certificate-authority: $d/ca.crt
users:
- name: $n
  user:
    client-certificate: $d/$n.crt
    client-key: $d/$n.key
contexts:
- name: cellar-k8s
  context: {cluster: cellar-k8s, user: $n}
current-context: cellar-k8s
EOK
  done
}

# ---------------------------------------------------------------- network

net_up() {
  local r
  r=$(ip -4 route show | awk '{print $1}' | grep -E '^10\.213\.' || true)
  [[ -z $r ]] || die "routes in $K8S_RANGE already exist on this machine: $r"
  [[ ! -e /run/netns/$K8S_NETNS ]] || die "network namespace $K8S_NETNS exists: run tools/k8s/k8s down"
  say "net: namespace $K8S_NETNS, veth $K8S_HOST_IF ($K8S_HOST_IP) <-> $K8S_NODE_IF ($K8S_NODE_IP, the node)"
  ip netns add "$K8S_NETNS"
  echo "netns" >>"$W/made"
  ip link add "$K8S_HOST_IF" type veth peer name "$K8S_NODE_IF" netns "$K8S_NETNS"
  ip addr add "$K8S_HOST_IP/30" dev "$K8S_HOST_IF"
  ip link set "$K8S_HOST_IF" up
  in_ns ip link set lo up
  in_ns ip addr add "$K8S_NODE_IP/30" dev "$K8S_NODE_IF"
  in_ns ip link set "$K8S_NODE_IF" up
  # Inside the namespace only: pods reach Services through the node (routed).
  in_ns sysctl -qw net.ipv4.ip_forward=1
  in_ns sysctl -qw net.ipv4.conf.all.route_localnet=1 || true
  if [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
    in_ns sysctl -qw net.bridge.bridge-nf-call-iptables=1 || true
  fi
  # The node itself reaches ClusterIPs (DNAT in OUTPUT re-routes to the pod);
  # a ClusterIP without a rule goes nowhere.
  in_ns ip route add "$K8S_SVC_CIDR" dev lo
  # The routes from the host to the pod and service ranges go through the node.
  ip route add "$K8S_POD_CIDR" via "$K8S_NODE_IP" dev "$K8S_HOST_IF"
  ip route add "$K8S_SVC_CIDR" via "$K8S_NODE_IP" dev "$K8S_HOST_IF"
  mkdir -p "$W/cni/net.d" "$W/cni/ipam"
  cat >"$W/cni/net.d/10-cellar-k8s.conflist" <<EOC
{
  "cniVersion": "0.4.0",
  "name": "cellar-k8s",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$K8S_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$W/cni/ipam",
        "ranges": [[{"subnet": "$K8S_POD_CIDR", "gateway": "$K8S_POD_GW"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOC
}

# ---------------------------------------------------------------- cgroups

cgroup_dirs() {  # every cgroup v1 hierarchy and the v2 one, as mounted
  awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts
}

cgroups_up() {
  local m
  say "cgroups: /cellar-k8s in each hierarchy (kubelet's cgroupRoot, cgroupfs driver)"
  for m in $(cgroup_dirs); do
    mkdir -p "$m/cellar-k8s"
    if [[ -e $m/cpuset.cpus && -e $m/cellar-k8s/cpuset.cpus ]]; then
      cat "$m/cpuset.cpus" >"$m/cellar-k8s/cpuset.cpus"
      cat "$m/cpuset.mems" >"$m/cellar-k8s/cpuset.mems"
    fi
  done
  echo "cgroups" >>"$W/made"
}

cgroups_down() {
  local m d
  for m in $(cgroup_dirs); do
    [[ -d $m/cellar-k8s ]] || continue
    # deepest first; a cgroup with processes left cannot go (reported)
    while read -r d; do
      rmdir "$d" 2>/dev/null || say "cgroups: could not remove $d"
    done < <(find "$m/cellar-k8s" -depth -type d)
  done
}

# ---------------------------------------------------------------- components

etcd_up() {
  mkdir -p "$W/etcd"
  local etcd=/usr/bin/etcd
  [[ $K8S_ETCD != build ]] || etcd=$K8S_BIN/etcd
  start etcd "$etcd" --name cellar-k8s --data-dir "$W/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster cellar-k8s=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    --quota-backend-bytes 1073741824 --log-level warn
  wait_for "etcd health" 60 in_ns curl -fsS http://127.0.0.1:2381/health || { check_alive etcd; return 1; }
}

apiserver_up() {
  local p=$W/pki
  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers http://127.0.0.1:2379 \
    --bind-address "$K8S_NODE_IP" --advertise-address "$K8S_NODE_IP" --secure-port 6443 \
    --service-cluster-ip-range "$K8S_SVC_CIDR" --service-node-port-range 30000-32767 \
    --client-ca-file "$p/ca.crt" --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --kubelet-client-certificate "$p/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$p/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --authorization-mode Node,RBAC --allow-privileged=true --profiling=false \
    --enable-admission-plugins NodeRestriction
  wait_for "kube-apiserver /readyz" 120 curl -fsS --cacert "$p/ca.crt" \
    --cert "$p/admin.crt" --key "$p/admin.key" "https://$K8S_NODE_IP:6443/readyz" \
    || { check_alive kube-apiserver; return 1; }
}

controllers_up() {
  local p=$W/pki
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$W/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$W/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$W/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
    --root-ca-file "$p/ca.crt" --service-account-private-key-file "$p/sa.key" \
    --allocate-node-cidrs=true --cluster-cidr "$K8S_POD_CIDR" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$K8S_SVC_CIDR"
  start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$W/scheduler.kubeconfig" \
    --authentication-kubeconfig "$W/scheduler.kubeconfig" \
    --authorization-kubeconfig "$W/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --leader-elect=false
}

containerd_up() {
  local c=$W/containerd
  mkdir -p "$c/root" "$c/state" "$c/opt"
  cat >"$c/config.toml" <<EOC
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$K8S_PAUSE_IMAGE"
  enable_selinux = false
  restrict_oom_score_adj = true
  # pods' network namespaces under our state dir, not /run/netns
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "$c/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$W/cni/net.d"
    max_conf_num = 1
EOC
  # containerd keeps its shims' sockets in /run/containerd/s whatever the config
  [[ -e /run/containerd ]] || echo "run-containerd" >>"$W/made"
  start containerd /usr/bin/containerd --config "$c/config.toml"
  wait_for "containerd socket" 30 ctr --address "$c/containerd.sock" version \
    || { check_alive containerd; return 1; }
}

# Cluster DNS: CoreDNS as a process in the namespace, on the node address
# (port 53), answering for cluster.local only: no upstream, nothing leaves.
coredns_up() {
  [[ $K8S_DNS == 1 ]] || { say "coredns: skipped (K8S_DNS=$K8S_DNS): pods get no cluster DNS"; return 0; }
  k apply -f "$K8S_HERE/coredns-rbac.yaml" >&2
  cat >"$W/Corefile" <<EOC
.:53 {
    bind $K8S_NODE_IP
    errors
    health 127.0.0.1:8081
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $W/coredns.kubeconfig cellar-k8s
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
EOC
  start coredns "$K8S_BIN/coredns" -conf "$W/Corefile"
  wait_for "coredns ready" 60 in_ns curl -fsS http://127.0.0.1:8181/ready || { check_alive coredns; return 1; }
}

kubelet_up() {
  local d=$W/kubelet
  # kubelet's device-plugin socket path is fixed (/var/lib/kubelet/device-plugins);
  # `down` removes what it made there, the whole folder if it made that too.
  [[ -e /var/lib/kubelet ]] || echo "var-lib-kubelet" >>"$W/made"
  mkdir -p "$d/root" "$d/pod-logs" "$d/volume-plugins" "$d/pki"
  printf 'nameserver %s\noptions ndots:1\n' "$K8S_NODE_IP" >"$W/resolv.conf"
  cat >"$d/config.yaml" <<EOC
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $K8S_NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $W/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $W/pki/kubelet-serving.crt
tlsPrivateKeyFile: $W/pki/kubelet-serving.key
cgroupDriver: cgroupfs
cgroupRoot: /cellar-k8s
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: false
containerRuntimeEndpoint: unix://$W/containerd/containerd.sock
podLogsDir: $d/pod-logs
clusterDomain: cluster.local
clusterDNS: [$( [[ $K8S_DNS == 1 ]] && echo "$K8S_NODE_IP" )]
resolvConf: $W/resolv.conf
maxPods: 60
serializeImagePulls: false
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
enforceNodeAllocatable: [pods]
rotateCertificates: false
serverTLSBootstrap: false
EOC
  start kubelet "$K8S_BIN/kubelet" --config "$d/config.yaml" \
    --kubeconfig "$W/kubelet.kubeconfig" --root-dir "$d/root" --cert-dir "$d/pki" \
    --hostname-override "$K8S_NODE" --node-ip "$K8S_NODE_IP" \
    --volume-plugin-dir "$d/volume-plugins" -v=1
}

kube_proxy_up() {
  cat >"$W/kube-proxy.yaml" <<EOC
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $W/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $K8S_NODE
bindAddress: $K8S_NODE_IP
clusterCIDR: $K8S_POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$K8S_NODE_IP/32"]
iptables: {masqueradeAll: true}
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOC
  start kube-proxy "$K8S_BIN/kube-proxy" --config "$W/kube-proxy.yaml"
}

node_ready() {
  [[ $(k get node "$K8S_NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

sysctls_save() {
  local s
  : >"$W/sysctls"
  for s in "${K8S_SYSCTLS[@]}"; do
    echo "$s=$(sysctl -n "$s")" >>"$W/sysctls"
  done
  sysctl -n net.ipv4.ip_forward >"$W/host-ip-forward"
}

sysctls_restore() {
  [[ -f $W/sysctls ]] || return 0
  local line name val
  while IFS= read -r line; do
    name=${line%%=*}; val=${line#*=}
    if [[ $(sysctl -n "$name") != "$val" ]]; then
      say "sysctl: $name back to $val (was $(sysctl -n "$name"))"
      sysctl -qw "$name=$val" || say "sysctl: could not restore $name"
    fi
  done <"$W/sysctls"
  # The host's ip_forward: `up` never changes it (the cluster forwards inside its
  # own namespace only). Others on the machine may (podman does): only report.
  if [[ -f $W/host-ip-forward && $(sysctl -n net.ipv4.ip_forward) != "$(<"$W/host-ip-forward")" ]]; then
    say "note: the host's net.ipv4.ip_forward changed since up (not by tools/k8s): left as it is"
  fi
}

cmd_up() {
  local t0=$SECONDS
  if [[ -e $W/made ]]; then
    die "$W/made exists: a cluster is up (or half torn down); run tools/k8s/k8s down first"
  fi
  ensure_packages
  cmd_build
  mkdir -p "$W/logs" "$W/run"
  : >"$W/made"
  trap 'rc=$?; if [[ $rc -ne 0 ]]; then say "up failed (exit $rc): tearing down"; cmd_down; fi' EXIT
  sysctls_save
  pki
  net_up
  cgroups_up
  ensure_pause_image
  etcd_up
  apiserver_up
  controllers_up
  coredns_up
  containerd_up
  load_archive "$K8S_IMAGES/pause.tar"
  kubelet_up
  kube_proxy_up
  wait_for "node $K8S_NODE Ready" "$K8S_READY_TIMEOUT" node_ready || {
    check_alive kubelet containerd kube-proxy kube-controller-manager kube-scheduler || true
    say "last lines of the kubelet log:"; tail -n 20 "$W/logs/kubelet.log" >&2
    return 1
  }
  wait_for "service account default/default (controller-manager)" 60 k get serviceaccount default
  check_alive etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy
  [[ $K8S_DNS != 1 ]] || check_alive coredns
  trap - EXIT
  say "up: ready in $((SECONDS - t0)) s. Use: eval \"\$(tools/k8s/k8s env)\"; kubectl get nodes"
}

# ---------------------------------------------------------------- down

# Every container of our containerd: kill its task, remove its network
# namespace (CRI's cni-* netns, named in the container's OCI spec) and the container.
containers_down() {
  local sock=$W/containerd/containerd.sock ns id netns
  [[ -S $sock ]] || return 0
  ctr --address "$sock" version >/dev/null 2>&1 || return 0
  for ns in $(ctr --address "$sock" namespaces list -q 2>/dev/null); do
    for id in $(ctr --address "$sock" -n "$ns" containers list -q 2>/dev/null); do
      netns=$(ctr --address "$sock" -n "$ns" containers info "$id" 2>/dev/null \
        | jq -r '.Spec.linux.namespaces[]? | select(.type == "network") | .path // empty' 2>/dev/null || true)
      ctr --address "$sock" -n "$ns" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
      for _ in 1 2 3 4 5 6 7 8 9 10; do
        ctr --address "$sock" -n "$ns" tasks delete -f "$id" >/dev/null 2>&1 && break
        ctr --address "$sock" -n "$ns" tasks list -q 2>/dev/null | grep -qxF "$id" || break
        sleep 0.3
      done
      ctr --address "$sock" -n "$ns" containers delete "$id" >/dev/null 2>&1 || true
      if [[ -n $netns && ( $netns == "$W/"* || $netns == /var/run/netns/cni-* || $netns == /run/netns/cni-* ) ]]; then
        if [[ -e $netns ]]; then
          say "down: pod network namespace $netns"
          umount "$netns" 2>/dev/null || true
          rm -f "$netns"
        fi
      fi
    done
  done
}

mounts_down() {  # everything mounted under $W, deepest first
  local m
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || say "down: could not unmount $m"
  done < <(awk -v w="$W/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r)
}

shims_down() {  # containerd shims started for our socket (matched by its path)
  local p cmd
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    if [[ $cmd == *containerd-shim*"-address $W/containerd/containerd.sock"* ]]; then
      say "down: shim ${p#/proc/}"
      kill -KILL "${p#/proc/}" 2>/dev/null || true
    fi
  done
}

cmd_down() {
  if [[ ! -e $W/made && ! -d $W/run ]]; then
    say "down: nothing to tear down ($W/made absent)"
    return 0
  fi
  say "down: tearing down the cluster in $W"
  stop kubelet
  stop kube-proxy
  containers_down
  stop containerd
  shims_down
  if grep -qx run-containerd "$W/made" 2>/dev/null; then rm -rf /run/containerd; fi
  stop coredns
  stop kube-scheduler
  stop kube-controller-manager
  stop kube-apiserver
  stop etcd
  mounts_down
  # kubelet's links for its pods' logs, pointing into $W
  local f
  for f in /var/log/containers/*; do
    [[ -L $f && $(readlink "$f") == "$W/"* ]] && rm -f "$f"
  done
  rmdir /var/log/containers 2>/dev/null || true
  if grep -qx var-lib-kubelet "$W/made" 2>/dev/null; then
    rm -rf /var/lib/kubelet
  else
    rm -f /var/lib/kubelet/device-plugins/kubelet.sock
  fi
  if ip netns list 2>/dev/null | grep -qw "^$K8S_NETNS"; then
    say "down: network namespace $K8S_NETNS (its bridge, veth, iptables, ip_forward go with it)"
    ip netns delete "$K8S_NETNS"
  fi
  ip link del "$K8S_HOST_IF" 2>/dev/null || true
  ip route del "$K8S_POD_CIDR" 2>/dev/null || true
  ip route del "$K8S_SVC_CIDR" 2>/dev/null || true
  cgroups_down
  sysctls_restore
  rm -rf "$W"
  say "down: done"
}

cmd_status() {
  local n
  for n in etcd kube-apiserver kube-controller-manager kube-scheduler coredns containerd kubelet kube-proxy; do
    if alive "$n"; then echo "$n: running (pid $(<"$W/run/$n.pid"))"; else echo "$n: not running"; fi
  done
  if [[ -f $W/admin.kubeconfig ]]; then k get nodes -o wide 2>&1 || true; fi
}

cmd_env() {
  echo "export KUBECONFIG=$W/admin.kubeconfig"
  echo "export PATH=$K8S_BIN:\$PATH"
}
