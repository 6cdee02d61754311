"""Real `sluiced` processes on loopback for the client's tests.

The binary comes from $SLUICED, else the cargo target dir ($CARGO_TARGET_DIR, default
~/.cache/sluice/target) as scripts/test.sh builds it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Optional, TypeVar

import pytest

from sluice import Admin, Cluster

T = TypeVar("T")


def sluiced_binary() -> Path:
    if os.environ.get("SLUICED"):
        return Path(os.environ["SLUICED"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "sluice" / "target"))
    for profile in ("debug", "release"):
        candidate = target / profile / "sluiced"
        if candidate.is_file():
            return candidate
    raise RuntimeError(f"no sluiced under {target}; build it (cargo build -p sluice-broker) or set SLUICED")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(what: str, timeout_s: float, check: Callable[[], Optional[T]], every_s: float = 0.05) -> T:
    """Polls ``check`` until it returns something other than None, or fails naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value is not None:
                return value
        except Exception as e:  # a node that is still starting refuses connections
            last = e
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last error: {last})")


class LocalCluster:
    """``n`` nodes, all controllers, each with its own ports, config and data dir."""

    def __init__(self, n: int, extra_config: str = "", hibernate_after_ms: int = 1500):
        self.dir = Path(tempfile.mkdtemp(prefix="sluice-py-"))
        self.binary = sluiced_binary()
        self.grpc = [f"127.0.0.1:{free_port()}" for _ in range(n)]
        self.procs: Dict[int, subprocess.Popen] = {}
        controllers = ", ".join(f'{{ id = {i + 1}, addr = "{a}" }}' for i, a in enumerate(self.grpc))
        for i, addr in enumerate(self.grpc):
            node = i + 1
            (self.dir / f"node{node}.toml").write_text(
                f'node_id = {node}\ndata_dir = "{self.dir / f"node{node}"}"\ngrpc_addr = "{addr}"\n'
                f'http_addr = "127.0.0.1:{free_port()}"\ncontrollers = [{controllers}]\n'
                "[raft]\nheartbeat_interval_ms = 50\nelection_timeout_min_ms = 300\nelection_timeout_max_ms = 600\n"
                f"hibernate_after_ms = {hibernate_after_ms}\n"
                "[liveness]\nheartbeat_interval_ms = 200\nsession_timeout_ms = 1500\n" + extra_config
            )
        for node in range(1, n + 1):
            self.start(node)
        self.client = Cluster(self.grpc)
        self.admin = Admin(self.client)

    def start(self, node: int) -> None:
        log = open(self.dir / f"node{node}.log", "ab")
        self.procs[node] = subprocess.Popen(
            [str(self.binary), "--config", str(self.dir / f"node{node}.toml")],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "RUST_LOG": "info,openraft=warn"},
        )

    def kill(self, node: int) -> None:
        """SIGKILL: no chance to flush or say goodbye."""
        proc = self.procs.pop(node, None)
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def node_of(self, addr: str) -> int:
        return self.grpc.index(addr) + 1

    def wait_ready(self, brokers: int) -> None:
        def ready():
            status = self.admin.cluster_status()
            alive = sum(1 for b in status.brokers if b.state == "alive")
            return True if status.HasField("meta_leader") and alive >= brokers else None

        eventually(f"a registry leader and {brokers} live brokers", 30, ready)

    def create_topic(self, name: str, partitions: int, replicas: int) -> None:
        """Creates a topic once enough brokers are counted alive (a loaded machine can make one
        miss its session timeout for a moment), then waits until every partition has a leader."""
        from sluice import SluiceError

        def create():
            try:
                return self.admin.create_topic(name, partitions, replicas)
            except SluiceError as e:
                if e.code == "NOT_ENOUGH_BROKERS":
                    return None
                raise

        eventually(f"topic {name} created", 30, create)

        def led():
            parts = self.client.refresh(name)
            return True if all(p.leader_addr for p in parts) else None

        eventually(f"every partition of {name} to have a leader", 30, led)

    def log(self, node: int) -> str:
        path = self.dir / f"node{node}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.client.close()
        for node in list(self.procs):
            self.kill(node)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster3():
    c = LocalCluster(3)
    try:
        c.wait_ready(3)
        yield c
    finally:
        c.stop()
