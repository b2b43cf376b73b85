"""A cellar cluster for the tests: `cellar local` (one process: master,
3 storages, admin on SQLite) on free ports in a temporary directory.

The binary is $CELLAR_LOCAL_BIN, or <repo>/bazel-bin/tools/local/cellar-local
(clients/python/test builds it). Every wait is bounded; stop() terminates
the process (SIGTERM, then SIGKILL) and removes the directory.
"""
import os
import pathlib
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import grpc

from cellar._pb import master_pb2, master_pb2_grpc

REPO = pathlib.Path(__file__).resolve().parents[3]
START_TIMEOUT = 60.0


def local_binary() -> str:
    path = os.environ.get("CELLAR_LOCAL_BIN") or str(REPO / "bazel-bin/tools/local/cellar-local")
    if not os.access(path, os.X_OK):
        raise RuntimeError("%s is not built: run clients/python/test, or bazel build "
                           "//tools/local:cellar-local, or set CELLAR_LOCAL_BIN" % path)
    return path


class LocalCluster:
    def __init__(self, storages: int = 3, replicas: int = 1, partitions: int = 12,
                 cluster_name: str = "cellar"):
        self.cluster_name = cluster_name
        self.dir = tempfile.mkdtemp(prefix="cellar-pytest-")
        self.log_path = os.path.join(self.dir, "cellar-local.log")
        args = [local_binary(), "--data_dir=" + os.path.join(self.dir, "data"),
                "--storages=%d" % storages, "--replicas=%d" % replicas,
                "--partitions=%d" % partitions, "--cluster_name=" + cluster_name,
                "--master_port=0", "--storage_port=0", "--admin_port=0",
                "--master_metrics_port=0", "--storage_metrics_port=0",
                "--admin_metrics_port=0", "--quiet"]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.master = None
        lines = []
        found = threading.Event()

        def read():
            for line in self.proc.stdout:
                lines.append(line)
                self._log.write(line)
                self._log.flush()
                m = re.match(r"\s*master\s+(\S+)", line)
                if m and self.master is None:
                    self.master = m.group(1)
                    found.set()
        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not found.wait(START_TIMEOUT) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("cellar local did not start within %gs: %s" %
                               (START_TIMEOUT, "".join(lines)))
        self._channel = grpc.insecure_channel(self.master)
        self.master_stub = master_pb2_grpc.MasterStub(self._channel)
        self.wait_running()
        self.baseline = None

    def wait_running(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = self.master_stub.GetClusterInfo(master_pb2.GetClusterInfoRequest(),
                                                       timeout=5)
                if info.cluster_state == 3 and info.operational:  # CLUSTER_RUNNING
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("cluster not RUNNING within %gs" % timeout)
            time.sleep(0.02)

    def set_baseline(self, tid: int) -> None:
        """The tid truncate() goes back to (an empty first transaction)."""
        self.baseline = tid

    def truncate(self) -> None:
        """Deletes every transaction after the baseline (Master.Truncate),
        then waits until the cluster is RUNNING again."""
        info = self.master_stub.GetClusterInfo(master_pb2.GetClusterInfoRequest(), timeout=10)
        if info.last_tid > self.baseline:
            self.master_stub.Truncate(master_pb2.TruncateRequest(tid=self.baseline), timeout=60)
        self.wait_running()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_channel", None) is not None:
            self._channel.close()
        self._log.close()
        if os.environ.get("CELLAR_KEEP_TEST_DIRS"):
            print("cellar test cluster left in", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
