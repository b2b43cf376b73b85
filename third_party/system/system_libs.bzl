"""Wraps Debian system libraries (the -dev packages) as Bazel cc_library targets.

Works fully offline: nothing is downloaded. At fetch time the repository rule
runs `pkg-config` for link flags / defines and symlinks the library's header
directories from /usr/include into the repository, so the headers are declared
inputs (tracked by Bazel, visible in the sandbox).

Usage (WORKSPACE):
    load("//third_party/system:system_libs.bzl", "system_libs_repository")
    system_libs_repository(name = "system_libs")

Then depend on e.g. "@system_libs//:grpc++".

After upgrading any of these Debian packages run
    bazel sync --configure    (or: bazel clean --expunge)
so the generated BUILD file (pkg-config flags) is regenerated.
"""

# name -> struct(
#   pc:   pkg-config modules (link flags + -D defines come from here),
#   libs: extra -l flags for libraries that ship no .pc file,
#   hdrs: header dirs/files under /usr/include to expose (tracked inputs),
#   includes: extra include roots relative to /usr/include (-isystem),
#   deps: other targets in this repo.
# )
_LIBS = {
    "absl": struct(
        pc = [
            "absl_base",
            "absl_strings",
            "absl_str_format",
            "absl_status",
            "absl_statusor",
            "absl_synchronization",
            "absl_time",
            "absl_flat_hash_map",
            "absl_flat_hash_set",
            "absl_node_hash_map",
            "absl_btree",
            "absl_hash",
            "absl_random_random",
            "absl_cleanup",
            "absl_flags",
            "absl_flags_parse",
            "absl_flags_usage",
            "absl_failure_signal_handler",
            "absl_symbolize",
        ],
        libs = [],
        hdrs = ["absl"],
        includes = [],
        deps = [],
    ),
    "protobuf": struct(
        pc = ["protobuf"],
        libs = [],
        hdrs = ["google/protobuf"],
        includes = [],
        deps = [],
    ),
    "grpc++": struct(
        pc = ["grpc++"],
        libs = [],
        hdrs = ["grpc", "grpc++", "grpcpp"],
        includes = [],
        deps = [":protobuf", ":absl"],
    ),
    # Debian ships no grpc++_reflection.pc: link the library by hand.
    "grpc++_reflection": struct(
        pc = [],
        libs = ["-lgrpc++_reflection"],
        hdrs = [],
        includes = [],
        deps = [":grpc++"],
    ),
    "prometheus_cpp": struct(
        pc = ["prometheus-cpp-pull", "prometheus-cpp-core"],
        libs = ["-lcivetweb-cpp"],
        hdrs = ["prometheus", "civetweb.h", "CivetServer.h"],  # civetweb: the exposer's log callback
        includes = [],
        deps = [],
    ),
    "libpq": struct(
        pc = ["libpq"],
        libs = [],
        hdrs = ["postgresql"],
        includes = ["postgresql"],  # so that <libpq-fe.h> works
        deps = [],
    ),
    "sqlite3": struct(
        pc = ["sqlite3"],
        libs = [],
        hdrs = ["sqlite3.h", "sqlite3ext.h"],
        includes = [],
        deps = [],
    ),
    # SHA-1 object checksums (OpenSSL, already a dependency of gRPC).
    "crypto": struct(
        pc = ["libcrypto"],
        libs = [],
        hdrs = ["openssl"],
        includes = [],
        deps = [],
    ),
    # HTTP client of the Kubernetes Lease election (services/master/k8s_lease).
    # Debian puts <curl/curl.h> under the multiarch include directory.
    "curl": struct(
        pc = ["libcurl"],
        libs = [],
        hdrs = ["x86_64-linux-gnu/curl"],
        includes = ["x86_64-linux-gnu"],
        deps = [],
    ),
    # JSON (header-only) of the Kubernetes Lease election.
    "nlohmann_json": struct(
        pc = ["nlohmann_json"],
        libs = [],
        hdrs = ["nlohmann"],
        includes = [],
        deps = [],
    ),
    "gtest": struct(
        pc = ["gtest"],
        libs = [],
        hdrs = ["gtest"],
        includes = [],
        deps = [],
    ),
    "gtest_main": struct(
        pc = ["gtest_main"],
        libs = [],
        hdrs = [],
        includes = [],
        deps = [":gtest"],
    ),
    "gmock": struct(
        pc = ["gmock"],
        libs = [],
        hdrs = ["gmock"],
        includes = [],
        deps = [":gtest"],
    ),
    "gmock_main": struct(
        pc = ["gmock_main"],
        libs = [],
        hdrs = [],
        includes = [],
        deps = [":gmock"],
    ),
    "benchmark": struct(
        pc = ["benchmark"],
        libs = [],
        hdrs = ["benchmark"],
        includes = [],
        deps = [],
    ),
    # Debian ships no benchmark_main.pc.
    "benchmark_main": struct(
        pc = [],
        libs = ["-lbenchmark_main"],
        hdrs = [],
        includes = [],
        deps = [":benchmark"],
    ),
}

def _pkg_config(rctx, args):
    res = rctx.execute(["pkg-config"] + args)
    if res.return_code != 0:
        fail("`pkg-config %s` failed (is the Debian -dev package installed?):\n%s" %
             (" ".join(args), res.stderr))
    return res.stdout.strip()

def _dedup(items):
    seen = {}
    out = []
    for i in items:
        if i not in seen:
            seen[i] = True
            out.append(i)
    return out

def _system_libs_impl(rctx):
    prefix = rctx.attr.include_prefix
    if not rctx.which("pkg-config"):
        fail("pkg-config not found: apt-get install pkg-config")

    linked = {}
    out = [
        "# Generated by //third_party/system:system_libs.bzl. Do not edit.",
        'package(default_visibility = ["//visibility:public"])',
        "",
    ]
    for name, lib in _LIBS.items():
        linkopts = []
        defines = []
        if lib.pc:
            # One pkg-config call per library: Debian's pkgconf 1.8.1 needs
            # ~1.5 s per call for grpc++ (it walks ~100 absl .pc files).
            for flag in _pkg_config(rctx, ["--cflags-only-other", "--libs"] + lib.pc).split(" "):
                if flag.startswith("-D"):
                    defines.append(flag[2:])
                elif flag:
                    linkopts.append(flag)

        # Keep the first occurrence of each -l flag (the absl lists repeat a
        # lot); order matters for static linking only, we link shared libs.
        linkopts = _dedup(linkopts + lib.libs)

        # track_headers=True: headers become declared inputs (Bazel notices
        # an `apt upgrade`, sandbox sees exactly them). False: rely on the
        # compiler finding them in /usr/include (fewer sandbox symlinks).
        hdr_dirs = lib.hdrs if rctx.attr.track_headers else lib.includes
        hdr_globs = []
        for h in hdr_dirs:
            src = rctx.path(prefix + "/" + h)
            if not src.exists:
                fail("missing %s (install the -dev package)" % src)
            if not h in linked:
                rctx.symlink(src, "include/" + h)
                linked[h] = True
            hdr_globs.append(("include/%s/**" % h) if "." not in h else ("include/" + h))

        out.append("cc_library(")
        out.append("    name = %r," % name)
        if hdr_globs:
            out.append("    hdrs = glob(%r)," % hdr_globs)
            out.append("    includes = %r," % (["include"] + ["include/" + i for i in lib.includes]))
        if defines:
            out.append("    defines = %r," % _dedup(defines))
        out.append("    linkopts = %r," % linkopts)
        if lib.deps:
            out.append("    deps = %r," % lib.deps)
        out.append(")")
        out.append("")

    # Which versions were picked up (one pkg-config call for all modules).
    modules = [pc for lib in _LIBS.values() for pc in lib.pc]
    versions = _pkg_config(rctx, ["--modversion"] + modules).split("\n")
    rctx.file("VERSIONS.txt", "".join(["%s %s\n" % (m, v) for m, v in zip(modules, versions)]))
    out.append('exports_files(["VERSIONS.txt"])')
    rctx.file("WORKSPACE", 'workspace(name = "%s")\n' % rctx.name)
    rctx.file("BUILD.bazel", "\n".join(out) + "\n")

system_libs_repository = repository_rule(
    implementation = _system_libs_impl,
    attrs = {
        "include_prefix": attr.string(default = "/usr/include"),
        "track_headers": attr.bool(default = True),
    },
    # Re-run only when these env vars change, on `bazel sync --configure`,
    # or on `bazel clean --expunge` (NOT on every server restart: local=True
    # would cost ~10 s of pkg-config per restart).
    environ = ["PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR"],
    configure = True,
)
