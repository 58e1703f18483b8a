"""Metrics in Prometheus's text format on cofferd's optional listener: counts by operation and outcome, latency,
clients, the revision; never a value, a token or a connection's name."""

from __future__ import annotations

import json
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from coffer_client import Client
from conftest import Daemon


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_count_requests_by_operation_and_outcome_and_carry_no_secret(canary):
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="coffer-metrics-") as directory:
        daemon = Daemon(Path(directory), ["--metrics-address", f"127.0.0.1:{port}"])
        try:
            value = canary("metric")
            assert daemon.swift("put", "generic/secret-name", stdin=json.dumps({"v": value}).encode()).returncode == 0
            assert daemon.swift("grant", "deploy", "generic/secret-name").returncode == 0
            token = daemon.token("deploy")
            for _ in range(3):
                assert daemon.swift("get", "generic/secret-name", token=token).returncode == 0
            assert daemon.swift("get", "generic/other", token=token).returncode == 5
            with Client(daemon.worker_socket):
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            lines = body.splitlines()
            assert 'coffer_requests_total{operation="Get",outcome="OK"} 3' in lines
            assert 'coffer_requests_total{operation="Get",outcome="PERMISSION_DENIED"} 1' in lines
            assert 'coffer_requests_total{operation="Put",outcome="OK"} 1' in lines
            assert any(line.startswith('coffer_request_duration_seconds_bucket{operation="Get"') for line in lines)
            assert "coffer_revision 3.0" in lines  # put, grant, token
            assert 'coffer_clients{socket="worker"} 1.0' in lines
            assert "coffer_watches 0.0" in lines
            assert not any(line.startswith("coffer_cluster_") for line in lines)  # a single cofferd
            for secret in (value, token, "secret-name", "deploy"):
                assert secret not in body
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=10)
                raise AssertionError("a path other than /metrics was served")
            except urllib.error.HTTPError as error:
                assert error.code == 404
        finally:
            daemon.stop()
