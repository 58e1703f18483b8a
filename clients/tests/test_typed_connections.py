"""Typed connections used as workflow steps use them, against a real cofferd: a curl config against a real HTTP
server, Relay step specs resolved, commands run with connections in their environment, the interactive put on a
terminal, the Python package installed with pip, and operators' types."""

from __future__ import annotations

import base64
import http.server
import json
import os
import pty
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import BUILD, ROOT, Daemon


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, str]]] = []

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        _Recorder.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()


def _put(daemon, ref: str, fields: dict, *args: str) -> None:
    put = daemon.swift("put", ref, *args, stdin=json.dumps(fields).encode())
    assert put.returncode == 0, put.stderr
    assert daemon.swift("grant", "deploy", ref).returncode == 0


def _curl(daemon, ref: str, token: str, path: str) -> subprocess.CompletedProcess:
    """`coffer get REF --format curl-config | curl -K -`: the config, and so the secret, goes through a pipe."""
    config = daemon.swift("get", ref, "--format", "curl-config", "--path", path, token=token)
    assert config.returncode == 0, config.stderr
    return subprocess.run(["curl", "--silent", "--show-error", "--fail", "-K", "-"], input=config.stdout,
                          capture_output=True, timeout=30)


def test_a_curl_config_sends_token_and_basic_auth_to_a_real_server(daemon, canary, http_server):
    url, seen = http_server
    token_value, password = canary("token"), canary("password")
    _put(daemon, "http/tokens", {"baseURL": url + "/api", "token": token_value, "header.Accept": "application/json",
                                 "header.X-Trace": "run {{ token }}", "param.api-version": "2024-01-01"})
    _put(daemon, "http/basic", {"baseURL": url, "username": "deployer", "password": password}, "--variant", "basic")
    token = daemon.token("deploy")

    result = _curl(daemon, "http/tokens", token, "/v1/items")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ok": True}
    path, headers = seen[-1]
    assert path == "/api/v1/items?api-version=2024-01-01"
    assert headers["authorization"] == f"Bearer {token_value}"
    assert headers["accept"] == "application/json" and headers["x-trace"] == f"run {token_value}"

    result = _curl(daemon, "http/basic", token, "/status")
    assert result.returncode == 0, result.stderr
    path, headers = seen[-1]
    assert path == "/status"
    assert headers["authorization"] == "Basic " + base64.b64encode(f"deployer:{password}".encode()).decode()

    # An aws connection has no curl config: the error says so and shows no value.
    _put(daemon, "aws/acct", {"accessKeyID": "AKIAABCDEFGHIJKLMNOP", "secretAccessKey": "A" * 40})
    wrong = daemon.swift("get", "aws/acct", "--format", "curl-config", token=token)
    assert wrong.returncode == 7 and b"http connection" in wrong.stderr and b"A" * 40 not in wrong.stderr
    _assert_nothing_shown(daemon, [token_value, password, token])


RELAY_SPEC = """\
apiVersion: v1
description: List EC2 instances and tell the API
steps:
- name: list-instances
  image: relaysh/aws-ec2-step-instances-describe
  spec:
    aws:
      connection: ${connections.aws.'my-aws-account'}
      region: us-west-2
- name: notify
  image: relaysh/core
  spec:
    api: !Connection { type: http, name: %s }
    url: ${connections.http.'%s'.baseURL}/notify
"""


def test_resolve_expands_granted_connections_and_names_the_others(daemon, canary):
    secret = "S" + secrets.token_hex(19) + "9"
    _put(daemon, "aws/my-aws-account", {"accessKeyID": "AKIAABCDEFGHIJKLMNOP", "secretAccessKey": secret})
    api_token = canary("api")
    _put(daemon, "http/notifier", {"baseURL": "https://hooks.example.com", "token": api_token})
    put = daemon.swift("put", "http/ungranted", stdin=json.dumps({"baseURL": "https://x.example.com",
                                                                 "token": canary("other")}).encode())
    assert put.returncode == 0
    token = daemon.token("deploy")

    resolved = daemon.swift("resolve", stdin=(RELAY_SPEC % ("notifier", "notifier")).encode(), token=token)
    assert resolved.returncode == 0, resolved.stderr
    import yaml  # PyYAML, from clients/tests/requirements.txt
    spec = yaml.safe_load(resolved.stdout)
    aws = spec["steps"][0]["spec"]["aws"]
    # The keys Relay's AWS steps read.
    assert aws["connection"] == {"accessKeyID": "AKIAABCDEFGHIJKLMNOP", "secretAccessKey": secret}
    assert aws["region"] == "us-west-2"
    assert spec["steps"][1]["spec"]["api"] == {"baseURL": "https://hooks.example.com", "token": api_token}
    assert spec["steps"][1]["spec"]["url"] == "https://hooks.example.com/notify"
    assert spec["steps"][0]["image"] == "relaysh/aws-ec2-step-instances-describe"

    # One granted, one not: the error names the ungranted one, and nothing is written.
    refused = daemon.swift("resolve", stdin=(RELAY_SPEC % ("ungranted", "notifier")).encode(), token=token)
    assert refused.returncode == 5 and refused.stdout == b""
    assert b"http/ungranted" in refused.stderr and secret.encode() not in refused.stderr
    missing = daemon.swift("resolve", stdin=b"x: ${connections.aws.'nothing'}\n", token=token)
    assert missing.returncode != 0 and b"aws/nothing" in missing.stderr
    malformed = daemon.swift("resolve", stdin=b"x: ${connections.aws}\n", token=token)
    assert malformed.returncode == 2 and b"${connections.aws}" in malformed.stderr

    # JSON in, JSON out.
    as_json = daemon.swift("resolve", stdin=json.dumps({"conn": "${connections.aws.'my-aws-account'}", "n": 3})
                           .encode(), token=token)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {"conn": {"accessKeyID": "AKIAABCDEFGHIJKLMNOP", "secretAccessKey": secret},
                                          "n": 3}
    _assert_nothing_shown(daemon, [secret, api_token, token])


def test_exec_runs_a_command_that_sees_the_aws_variables(daemon):
    secret = "E" + secrets.token_hex(19) + "x"
    _put(daemon, "aws/ci", {"accessKeyID": "AKIAABCDEFGHIJKLMNOP", "secretAccessKey": secret,
                            "sessionToken": "session-" + secret, "region": "eu-central-1"})
    token = daemon.token("deploy")
    # The command checks the variables itself and prints nothing of them; its exit status comes through.
    check = ('test "$AWS_ACCESS_KEY_ID" = AKIAABCDEFGHIJKLMNOP && test "$AWS_SECRET_ACCESS_KEY" = "$EXPECTED" '
             '&& test "$AWS_SESSION_TOKEN" = "session-$EXPECTED" && test "$AWS_REGION" = eu-central-1 '
             '&& test -z "$COFFER_TOKEN" && test "$ONE" = eu-central-1 && exit 42')
    env = daemon.environment(token)
    env["EXPECTED"] = secret
    ran = subprocess.run([str(BUILD / "coffer"), "exec", "--connection", "aws/ci", "--env", "ONE=aws/ci#region",
                          "--", "sh", "-c", check], capture_output=True, env=env, timeout=30)
    assert ran.returncode == 42, ran.stderr
    assert secret.encode() not in ran.stdout + ran.stderr
    ungranted = daemon.swift("exec", "--connection", "aws/other", "--", "true", token=token)
    assert ungranted.returncode == 5 and b"aws/other" in ungranted.stderr
    _assert_nothing_shown(daemon, [secret, token])


def test_put_on_a_terminal_asks_for_each_field_without_echoing_secrets(daemon, canary):
    password = canary("typed-on-a-terminal")
    answers = {b"username": b"alice", b"password": password.encode()}
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(str(BUILD / "coffer"), [str(BUILD / "coffer"), "put", "basic/tty"], daemon.environment())
    seen = b""
    deadline = time.monotonic() + 30
    answered = set()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        for name, answer in answers.items():
            if name not in answered and seen.rstrip().endswith(b":") and seen.rfind(name) > seen.rfind(b"\n" + b"x"):
                last_line = seen.splitlines()[-1] if seen.splitlines() else b""
                if last_line.startswith(name):
                    os.write(fd, answer + b"\n")
                    answered.add(name)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert b"put basic/tty" in seen
    assert b"alice" in seen  # public: echoed
    assert password.encode() not in seen  # secret: not echoed
    described = json.loads(daemon.swift("describe", "basic/tty", "--json").stdout)
    assert described["public_fields"] == {"username": "alice"} and described["secret_fields"] == ["password"]


def test_the_python_package_installs_with_pip_and_serves_a_step(daemon, tmp_path):
    target = tmp_path / "site"
    # A copy, so that the build leaves nothing in the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "clients" / "python", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                              "--target", str(target), str(source)],
                             capture_output=True, timeout=300)
    assert install.returncode == 0, install.stderr
    assert (target / "coffer_client" / "_generated" / "coffer" / "v1" / "coffer_pb2.py").exists()
    secret = "P" + secrets.token_hex(19) + "y"
    _put(daemon, "aws/pip", {"accessKeyID": "AKIAABCDEFGHIJKLMNOP", "secretAccessKey": secret})
    token = daemon.token("deploy")
    step = ("from coffer_client import Coffer\n"
            "aws = Coffer().get('aws/pip')\n"
            "assert aws.accessKeyID == 'AKIAABCDEFGHIJKLMNOP' and len(aws.secretAccessKey) == 40\n"
            "print(aws.type, aws.variant, sorted(aws.secret_fields))\n")
    env = daemon.environment(token)
    env["PYTHONPATH"] = str(target)  # the installed package, not the checkout
    ran = subprocess.run([sys.executable, "-c", step], capture_output=True, env=env, cwd=tmp_path, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.decode().split() == ["aws", "access-key", "['secretAccessKey']"]


def test_operators_declare_types_in_a_file(canary):
    with tempfile.TemporaryDirectory(prefix="coffer-types-") as directory:
        types = Path(directory) / "types.json"
        types.write_text(json.dumps({"types": [{
            "name": "vault", "version": 1, "description": "A Vault token.",
            "variants": [{"name": "token", "fields": [
                {"name": "address", "secret": False, "required": True, "format": "https-url"},
                {"name": "token", "secret": True, "required": True, "environment": "VAULT_TOKEN"}]}]}]}))
        daemon = Daemon(Path(directory), ["--types", str(types)])
        try:
            listed = daemon.swift("types", "vault")
            assert listed.returncode == 0 and b"VAULT_TOKEN" in listed.stdout
            value = canary("vault")
            bad = daemon.swift("put", "vault/main", stdin=json.dumps({"address": "vault.local", "token": value})
                               .encode())
            assert bad.returncode == 2 and b"address" in bad.stderr and value.encode() not in bad.stderr
            _put(daemon, "vault/main", {"address": "https://vault.example.com", "token": value})
            token = daemon.token("deploy")
            env = daemon.swift("get", "vault/main", "--format", "env", token=token)
            assert env.stdout.decode() == f"VAULT_TOKEN='{value}'\n"
            # What coffer types --json prints is what cofferd serve --types reads.
            printed = daemon.swift("types", "vault", "--json")
            assert printed.returncode == 0, printed.stderr
            again = Path(directory) / "printed.json"
            again.write_bytes(printed.stdout)
            second = Daemon(Path(directory), ["--types", str(again)], name="second-")
            try:
                assert json.loads(second.swift("types", "vault", "--json").stdout) == json.loads(printed.stdout)
            finally:
                second.stop()
        finally:
            daemon.stop()
        broken = Path(directory) / "broken.json"
        broken.write_text('{"types": [{"name": "aws", "version": 1, "variants": [{"name": "x", "fields": []}]}]}')
        refused = subprocess.run([str(BUILD / "cofferd"), "serve", "--data-dir", str(Path(directory) / "data"),
                                  "--admin-socket", str(Path(directory) / "a.sock"), "--worker-socket",
                                  str(Path(directory) / "w.sock"), "--types", str(broken)],
                                 capture_output=True, timeout=30)
        assert refused.returncode == 2 and b"declared twice" in refused.stderr


def _assert_nothing_shown(daemon, secret_values: list[str]) -> None:
    """No secret in cofferd's log, the audit trail, list or describe."""
    shown = daemon.output
    for args in (["audit", "--json"], ["list"], ["list", "--json"]):
        result = daemon.swift(*args)
        assert result.returncode == 0
        shown += result.stdout.decode()
    for connection in json.loads(daemon.swift("list", "--json").stdout):
        shown += daemon.swift("describe", connection["connection"]).stdout.decode()
        shown += daemon.swift("describe", connection["connection"], "--json").stdout.decode()
    for value in secret_values:
        assert value not in shown
