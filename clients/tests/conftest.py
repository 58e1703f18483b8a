"""Fixtures for the cross-language tests: a real cofferd on temporary sockets, and the three clients."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("COFFER_BUILD_DIR", ROOT / ".build" / "debug"))
C_CLIENT = ROOT / "clients" / "c" / "build" / "coffer-c"
sys.path.insert(0, str(ROOT / "clients" / "python"))


def _accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def wait_for(predicate, seconds: float = 10.0) -> bool:
    """Polls `predicate` every 50 ms until it holds or `seconds` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class Daemon:
    def __init__(self, directory: Path, extra: list[str] | None = None, env: dict[str, str] | None = None,
                 name: str = ""):
        self.directory = directory
        self.admin_socket = str(directory / f"{name}admin.sock")
        self.worker_socket = str(directory / f"{name}worker.sock")
        self.log_path = directory / f"{name}cofferd.log"
        self.argv = [str(BUILD / "cofferd"), "serve", "--init-if-missing", "--data-dir", str(directory / f"{name}data"),
                     "--admin-socket", self.admin_socket, "--worker-socket", self.worker_socket, *(extra or [])]
        self.env = dict(os.environ, **(env or {}))
        self._log = open(self.log_path, "ab")
        self.start()

    def start(self) -> None:
        """Starts cofferd and waits until both sockets accept connections."""
        if self._log.closed:
            self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + 10
        while not (_accepts(self.admin_socket) and _accepts(self.worker_socket)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cofferd did not start: {self.output}")
            time.sleep(0.02)

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def environment(self, token: str | None = None) -> dict[str, str]:
        env = dict(os.environ, COFFER_ADMIN_SOCKET=self.admin_socket, COFFER_WORKER_SOCKET=self.worker_socket,
                   PYTHONPATH=str(ROOT / "clients" / "python"))
        env.pop("COFFER_TOKEN", None)
        if token is not None:
            env["COFFER_TOKEN"] = token
        return env

    def run(self, argv: list[str], stdin: bytes = b"", token: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(argv, input=stdin, capture_output=True, env=self.environment(token), timeout=60)

    def swift(self, *args: str, stdin: bytes = b"", token: str | None = None) -> subprocess.CompletedProcess:
        return self.run([str(BUILD / "coffer"), *args], stdin, token)

    def c(self, *args: str, stdin: bytes = b"", token: str | None = None) -> subprocess.CompletedProcess:
        return self.run([str(C_CLIENT), *args], stdin, token)

    def python(self, *args: str, stdin: bytes = b"", token: str | None = None) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "coffer_client", *args], stdin, token)

    def token(self, workflow: str) -> str:
        issued = self.swift("token", "issue", workflow, "--json")
        assert issued.returncode == 0, issued.stderr
        return json.loads(issued.stdout)["token"]

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return None
        self._log.close()
        return self.process.returncode


@pytest.fixture
def daemon():
    for binary in (BUILD / "cofferd", BUILD / "coffer", C_CLIENT):
        if not binary.exists():
            pytest.fail(f"{binary} is missing: build with `swift build` and `make -C clients/c` first")
    with tempfile.TemporaryDirectory(prefix="coffer-x-") as directory:
        d = Daemon(Path(directory))
        try:
            yield d
        finally:
            d.stop()


@pytest.fixture
def canary():
    """A unique value whose appearance anywhere it should not be is a leak."""
    return lambda label="value": f"CANARY-{label}-{secrets.token_hex(12)}"
