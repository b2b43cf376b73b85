"""cellar_fuzz_target: one libFuzzer target, its corpus replay test and its short run.

For `name` (say "storage_service") it declares
  :<name>_fuzzer          the fuzz binary. With --config=fuzz (clang, ASan,
                          UBSan) it is linked with libFuzzer
                          (-fsanitize=fuzzer); in the normal build it is
                          linked with replay_main.cc instead, which runs
                          LLVMFuzzerTestOneInput over the files it is given;
  :<name>_corpus_test     (normal `bazel test //...`) replays every file
                          of corpus/<name>/ (the seeds and each crash found,
                          kept as regressions);
  :<name>_fuzz_test       (tagged manual; tools/test runs them with
                          --config=fuzz) runs the libFuzzer binary for
                          `seconds` from the corpus; fails on a crash.
"""

load("@rules_cc//cc:defs.bzl", "cc_binary", "cc_test")

def cellar_fuzz_target(name, srcs, deps, seconds = 5):
    corpus = native.glob(["corpus/%s/*" % name])
    cc_binary(
        name = name + "_fuzzer",
        testonly = True,
        srcs = srcs,
        linkopts = select({
            "//fuzz:libfuzzer": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        deps = deps + select({
            "//fuzz:libfuzzer": [],
            "//conditions:default": ["//fuzz:replay_main"],
        }),
    )
    cc_test(
        name = name + "_corpus_test",
        size = "small",
        srcs = srcs,
        args = ["$(location %s)" % f for f in corpus],
        data = corpus,
        deps = deps + ["//fuzz:replay_main"],
    )
    native.sh_test(
        name = name + "_fuzz_test",
        size = "small",
        srcs = ["//fuzz:fuzz_test.sh"],
        args = [
            "$(location :%s_fuzzer)" % name,
            str(seconds),
        ] + ["$(location %s)" % f for f in corpus],
        data = [":%s_fuzzer" % name] + corpus,
        tags = ["manual"],
    )
