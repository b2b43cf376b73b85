"""Build hook: generates cellar._pb from the repository's protos.

The .proto files live in <repo>/protos/cellar/v1 and import each other as
"protos/cellar/v1/x.proto", so protoc's Python output imports
"protos.cellar.v1.x_pb2"; the generated modules are placed flat in
cellar/_pb and those import lines are pointed at cellar._pb instead.
CELLAR_PROTO_ROOT overrides where the repository root (the directory
holding protos/) is looked for.
"""
import os
import pathlib
import re

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
PROTOS = ("common", "master", "storage")


def proto_root():
    candidates = []
    if os.environ.get("CELLAR_PROTO_ROOT"):
        candidates.append(pathlib.Path(os.environ["CELLAR_PROTO_ROOT"]))
    candidates.append(HERE.parent.parent)
    for root in candidates:
        if (root / "protos" / "cellar" / "v1" / "common.proto").is_file():
            return root
    raise SystemExit(
        "cellar: cannot find protos/cellar/v1/*.proto (looked in %s); build "
        "from the cellar repository (pip install clients/python) or set "
        "CELLAR_PROTO_ROOT" % ", ".join(str(c) for c in candidates))


def generate(out_dir):
    from grpc_tools import protoc
    import grpc_tools

    root = proto_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "_gen"
    tmp.mkdir(exist_ok=True)
    include = str(pathlib.Path(grpc_tools.__file__).parent / "_proto")
    files = ["protos/cellar/v1/%s.proto" % name for name in PROTOS]
    rc = protoc.main(["grpc_tools.protoc", "-I" + str(root), "-I" + include,
                      "--python_out=" + str(tmp),
                      "--grpc_python_out=" + str(tmp)] + files)
    if rc != 0:
        raise SystemExit("cellar: protoc failed (%d)" % rc)
    gen = tmp / "protos" / "cellar" / "v1"
    for path in sorted(gen.glob("*.py")):
        text = path.read_text()
        text = re.sub(r"^from protos\.cellar\.v1 import ", "from cellar._pb import ",
                      text, flags=re.M)
        (out_dir / path.name).write_text(text)
    init = out_dir / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated gRPC stubs (setup.py): do not edit."""\n')
    for path in sorted(tmp.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    tmp.rmdir()


class BuildPy(build_py):
    def run(self):
        super().run()
        generate(pathlib.Path(self.build_lib) / "cellar" / "_pb")


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPy})
