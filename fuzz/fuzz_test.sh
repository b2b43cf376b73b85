#!/usr/bin/env bash
# A short libFuzzer run: fuzz_test.sh FUZZER SECONDS CORPUS_FILE...
# Copies the corpus into a scratch directory (the fuzzer adds to it), runs
# FUZZER for SECONDS with one process, prints libFuzzer's final stats line,
# and fails if the fuzzer found a crash, leak or timeout.
set -euo pipefail
fuzzer=$1 seconds=$2
shift 2
work=${TEST_TMPDIR:-$(mktemp -d)}/corpus
mkdir -p "$work" "$work.artifacts"
[[ $# -eq 0 ]] || cp "$@" "$work/"
echo "fuzz_test: $fuzzer for ${seconds}s from $# seeds"
set +e
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work.artifacts/" "$work" 2>&1 | tail -n 40
rc=${PIPESTATUS[0]}
set -e
ls "$work.artifacts" | sed 's/^/fuzz_test: artifact: /'
exit "$rc"
