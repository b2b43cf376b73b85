#!/usr/bin/python3
"""Counts test targets for tools/test and prints the closing "N passed, N failed".

  test_count.py BEP_JSON EXPECTED_TARGETS BAZEL_EXIT_CODE

BEP_JSON is Bazel's --build_event_json_file (one event per line); each test
target's TestSummary.overallStatus is its result. PASSED counts as passed;
anything else (FAILED, TIMEOUT, FLAKY, NO_STATUS, FAILED_TO_BUILD, ...) as
failed, and so does every target listed in EXPECTED_TARGETS (one label a line,
from `bazel query 'tests(...)'`) that has no result. If Bazel failed but no test
did (say a non-test target broke), that is one failure. Exits 0 only if at
least one test passed and nothing failed.
"""
import json
import sys


def main(bep_path, expected_path, bazel_rc):
    status = {}
    try:
        with open(bep_path) as f:
            for line in f:
                event = json.loads(line)
                label = event.get("id", {}).get("testSummary", {}).get("label")
                if label:
                    status[label] = event.get("testSummary", {}).get("overallStatus", "NO_STATUS")
    except FileNotFoundError:
        pass
    try:
        with open(expected_path) as f:
            for label in f.read().split():
                status.setdefault(label, "NO_RESULT (failed to build or never ran)")
    except FileNotFoundError:
        pass

    passed = sorted(l for l, s in status.items() if s == "PASSED")
    failed = sorted(l for l, s in status.items() if s != "PASSED")
    for label in failed:
        print(f"test: {status[label]}: {label}")
    nfailed = len(failed)
    if bazel_rc not in (0, 3, 4) and nfailed == 0:
        print(f"test: bazel exited with code {bazel_rc} (see the log): counted as 1 failure")
        nfailed = 1
    if not passed and not nfailed:
        print("test: no test ran")
    print(f"{len(passed)} passed, {nfailed} failed")
    return 0 if passed and not nfailed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
