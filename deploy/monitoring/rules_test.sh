#!/usr/bin/env bash
# promtool check rules and promtool test rules on cellar-alerts.yaml.
set -euo pipefail
cd "${TEST_SRCDIR:-$(dirname "$0")/../..}/${TEST_WORKSPACE:-}/deploy/monitoring" 2>/dev/null \
  || cd "$(dirname "$0")"
command -v promtool >/dev/null || { echo "rules_test: promtool missing (run tools/setup)"; exit 1; }
echo "+ promtool check rules cellar-alerts.yaml"
promtool check rules cellar-alerts.yaml
echo "+ promtool test rules cellar-alerts.test.yaml"
promtool test rules cellar-alerts.test.yaml
