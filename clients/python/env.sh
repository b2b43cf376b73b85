# clients/python/env.sh: sourced by clients/python/test and
# `tools/bench/run --mode=zodb`. Builds cellar local (unless
# CELLAR_LOCAL_BIN is set) and exports CELLAR_LOCAL_BIN, creates (or reuses)
# the virtualenv, installs the test dependencies (ZODB, zodburi, ZEO, pytest)
# and this package into it, and sets $venv to it.
#
# Environment: CELLAR_PYTHON_VENV (default ~/.cache/cellar-python/venv),
# PYTHON (default python3), CELLAR_BAZEL_DISK_CACHE (default
# ~/.cache/cellar-bazel-disk), CELLAR_LOCAL_BIN (skip the Bazel build and
# use this cellar-local binary).
cellar_python="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cellar_repo="$(cd "$cellar_python/../.." && pwd)"
venv="${CELLAR_PYTHON_VENV:-$HOME/.cache/cellar-python/venv}"
step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)" >&2; }

if [[ -z "${CELLAR_LOCAL_BIN:-}" ]]; then
  # cellar-local for most tests; cellar-cluster (and the node binaries)
  # for the token/TLS tests (skipped when CELLAR_LOCAL_BIN is given and
  # cellar-cluster is not built).
  step "building //tools/local:cellar-local //tools/cluster:cellar-cluster"
  (cd "$cellar_repo" && bazel build \
      --disk_cache="${CELLAR_BAZEL_DISK_CACHE:-$HOME/.cache/cellar-bazel-disk}" \
      --ui_event_filters=-info,-stdout --noshow_progress \
      //tools/local:cellar-local //tools/cluster:cellar-cluster) >&2
  export CELLAR_LOCAL_BIN="$cellar_repo/bazel-bin/tools/local/cellar-local"
fi

if [[ ! -x "$venv/bin/python" ]]; then
  step "creating the virtualenv $venv"
  mkdir -p "$(dirname "$venv")"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >&2
fi

step "installing build and test dependencies"
"$venv/bin/pip" install -q setuptools wheel 'grpcio-tools>=1.60' 'grpcio>=1.60' \
    'protobuf>=4.21' 'googleapis-common-protos>=1.56' 'ZODB[test]>=5.6' BTrees pytest \
    'zodburi>=2.5' 'ZEO>=5.2' >&2

step "installing clients/python (stubs generated from protos/cellar/v1)"
rm -rf "$cellar_python/build"
"$venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps "$cellar_python" >&2
rm -rf "$cellar_python/build" "$cellar_python"/src/*.egg-info
