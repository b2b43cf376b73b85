# Sourced by tools/k8s/k8s: builds the Kubernetes binaries from the Go module
# proxy into $K8S_CACHE/bin, once per version (a binary already there is kept).

build_ldflags() {
  local v=$K8S_VERSION major minor
  major=${v#v}; major=${major%%.*}
  minor=${v#v*.}; minor=${minor%%.*}
  local f=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    f+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "-s -w$f"
}

# build_go_binary NAME PACKAGE MODULE_DIR [LDFLAGS]
build_go_binary() {
  local name=$1 pkg=$2 dir=$3 ldflags=${4:-"-s -w"} out=$K8S_CACHE/bin/$1
  if [[ -x $out ]]; then
    say "build: $name: cached ($out)"
    return 0
  fi
  say "build: $name: go build $pkg (-p $K8S_BUILD_JOBS)"
  local t0=$SECONDS
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -p "$K8S_BUILD_JOBS" -trimpath \
      -ldflags "$ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  say "build: $name: done in $((SECONDS - t0)) s ($(du -h "$out" | cut -f1))"
}

# etcd: Debian's etcd-server 3.4.23 is accepted by kube-apiserver 1.34 and is
# the default (K8S_ETCD=debian). K8S_ETCD=build builds the version
# k8s.io/kubernetes itself requires (go.etcd.io/etcd/server/v3 v3.6.4, in the
# same module graph, so most of its packages are already compiled).
build_etcd() {
  [[ $K8S_ETCD == build ]] || return 0
  build_go_binary etcd go.etcd.io/etcd/server/v3 "$K8S_HERE/build" "-s -w"
}

# CoreDNS (cluster DNS): its own go.mod pins everything (no replace), so a
# plain `go install MODULE@VERSION` builds it. v1.12.4 uses client-go v0.34.
build_coredns() {
  [[ $K8S_DNS == 1 ]] || return 0
  local out=$K8S_CACHE/bin/coredns
  if [[ -x $out ]]; then
    say "build: coredns: cached ($out)"
    return 0
  fi
  say "build: coredns: go install github.com/coredns/coredns@$K8S_COREDNS_VERSION (-p $K8S_BUILD_JOBS)"
  local t0=$SECONDS tmp=$K8S_CACHE/coredns-gobin
  rm -rf "$tmp"
  CGO_ENABLED=0 GOBIN=$tmp GOFLAGS= go install -p "$K8S_BUILD_JOBS" -trimpath -ldflags "-s -w" \
    "github.com/coredns/coredns@$K8S_COREDNS_VERSION"
  mv "$tmp/coredns" "$out"
  rmdir "$tmp"
  say "build: coredns: done in $((SECONDS - t0)) s ($(du -h "$out" | cut -f1))"
}

cmd_build() {
  mkdir -p "$K8S_CACHE/bin"
  need_cmd go
  local t0=$SECONDS
  say "build: Kubernetes $K8S_VERSION into $K8S_CACHE/bin (module $K8S_HERE/build)"
  local ld; ld=$(build_ldflags)
  local b
  for b in $K8S_BINARIES; do
    build_go_binary "$b" "k8s.io/kubernetes/cmd/$b" "$K8S_HERE/build" "$ld"
  done
  build_etcd
  build_coredns
  say "build: all binaries present in $((SECONDS - t0)) s"
}
