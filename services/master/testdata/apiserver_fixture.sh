#!/usr/bin/env bash
# A throwaway kube-apiserver (+ etcd) on loopback, for k8s_lease_test.
#   apiserver_fixture.sh start DIR [OWNER_PID]
#                                    starts etcd and kube-apiserver with state in DIR
#                                    (created; must not hold a running fixture), waits
#                                    until the API answers, prints KEY=VALUE lines:
#                                    url, admin_token_file, denied_token_file, ca_file.
#                                    With OWNER_PID, both are stopped once that process
#                                    is gone (a test killed by its timeout leaves nothing).
#   apiserver_fixture.sh stop DIR    stops both (by the pids in DIR) and removes DIR
# Binaries: $KUBE_APISERVER (default: the newest ~/.cache/cellar-k8s/*/bin/kube-apiserver)
# and $ETCD (default: an etcd under ~/.cache/cellar-k8s, else /usr/bin/etcd).
# Exit 3 when a binary is missing (callers skip), 1 on any other failure
# (the logs in DIR are printed). Authentication: static tokens (--token-auth-file);
# authorization: RBAC. "admin" is in system:masters (everything); "denied" is a
# user with no role at all (every lease call answers 403).
set -euo pipefail

cmd=${1:-} dir=${2:-} owner=${3:-}
[[ ( $cmd == start || $cmd == stop ) && -n $dir ]] || {
  echo "usage: $0 start|stop DIR" >&2; exit 2; }

home=$(getent passwd "$(id -u)" | cut -d: -f6)
k8s_cache="${home}/.cache/cellar-k8s"

stop() {
  for name in apiserver etcd; do
    [[ -f "$dir/$name.pid" ]] || continue
    pid=$(cat "$dir/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/$name.pid"
  done
}

if [[ $cmd == stop ]]; then
  stop
  rm -rf "$dir"
  exit 0
fi

apiserver=${KUBE_APISERVER:-$(ls -d "$k8s_cache"/*/bin/kube-apiserver 2>/dev/null | sort -V | tail -1 || true)}
etcd=${ETCD:-$(ls -d "$k8s_cache"/*/bin/etcd "$k8s_cache"/etcd*/etcd 2>/dev/null | sort -V | tail -1 || true)}
[[ -n $etcd ]] || etcd=$(command -v etcd || true)
[[ -n $apiserver && -x $apiserver ]] || {
  echo "apiserver_fixture: no kube-apiserver (set KUBE_APISERVER or build one under $k8s_cache)" >&2
  exit 3; }
[[ -n $etcd && -x $etcd ]] || {
  echo "apiserver_fixture: no etcd (set ETCD or apt-get install etcd-server)" >&2; exit 3; }

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
trap 'echo "apiserver_fixture: failed; logs:" >&2; tail -n 30 "$dir"/*.log >&2 || true; stop' ERR

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
etcd_port=$(free_port) etcd_peer=$(free_port) api_port=$(free_port)

# A self-signed serving certificate (it is its own CA) and the service-account key.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
  -keyout "$dir/serving.key" -out "$dir/ca.crt" 2>"$dir/openssl.log"
openssl genrsa -out "$dir/sa.key" 2048 2>>"$dir/openssl.log"

head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/admin.token"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/denied.token"
{
  echo "$(cat "$dir/admin.token"),cellar-admin,uid-admin,\"system:masters\""
  echo "$(cat "$dir/denied.token"),cellar-denied,uid-denied"
} >"$dir/tokens.csv"

"$etcd" --name fixture --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "fixture=http://127.0.0.1:$etcd_peer" \
  >"$dir/etcd.log" 2>&1 &
echo $! >"$dir/etcd.pid"

"$apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --tls-cert-file "$dir/ca.crt" --tls-private-key-file "$dir/serving.key" \
  --cert-dir "$dir/certs" \
  --token-auth-file "$dir/tokens.csv" --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$dir/sa.key" --service-account-signing-key-file "$dir/sa.key" \
  --service-cluster-ip-range 10.0.0.0/24 \
  --enable-priority-and-fairness=false \
  >"$dir/apiserver.log" 2>&1 &
echo $! >"$dir/apiserver.pid"

if [[ -n $owner ]]; then
  # Reaper: stops the fixture when its owner is gone (fds closed: popen's reader
  # must not wait for it).
  ( while kill -0 "$owner" 2>/dev/null && [[ -f "$dir/apiserver.pid" ]]; do sleep 1; done
    stop; rm -rf "$dir" ) </dev/null >/dev/null 2>&1 &
fi

url="https://127.0.0.1:$api_port"
# Ready once the admin may read a namespace's leases (RBAC bootstrap done).
for _ in $(seq 600); do
  if curl -sf --max-time 2 --cacert "$dir/ca.crt" -H "Authorization: Bearer $(cat "$dir/admin.token")" \
      "$url/apis/coordination.k8s.io/v1/namespaces/default/leases" >/dev/null 2>&1; then
    echo "url=$url"
    echo "admin_token_file=$dir/admin.token"
    echo "denied_token_file=$dir/denied.token"
    echo "ca_file=$dir/ca.crt"
    exit 0
  fi
  kill -0 "$(cat "$dir/apiserver.pid")" 2>/dev/null || { echo "apiserver_fixture: kube-apiserver exited" >&2; false; }
  kill -0 "$(cat "$dir/etcd.pid")" 2>/dev/null || { echo "apiserver_fixture: etcd exited" >&2; false; }
  sleep 0.2
done
echo "apiserver_fixture: kube-apiserver not ready within 120 s" >&2
false
