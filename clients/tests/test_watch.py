"""Watch from Python against a real cofferd: changes arrive with their values, a revoked token ends the watch."""

from __future__ import annotations

import json
import threading

from coffer_client import Client, pb


def test_a_python_watch_gets_changes_with_values_and_ends_with_its_token(daemon, canary):
    put = daemon.swift("put", "generic/watched", stdin=json.dumps({"v": canary("v1")}).encode())
    assert put.returncode == 0, put.stderr
    assert daemon.swift("grant", "deploy", "generic/watched").returncode == 0
    issued = json.loads(daemon.swift("token", "issue", "deploy", "--json").stdout)
    events, started = [], threading.Event()

    def follow():
        with Client(daemon.worker_socket) as worker:
            for event in worker.watch(issued["token"], ["generic/watched"], with_values=True):
                events.append(event)
                started.set()

    thread = threading.Thread(target=follow)
    thread.start()
    assert started.wait(10)
    second = canary("v2")
    assert daemon.swift("overwrite", "generic/watched", stdin=json.dumps({"v": second}).encode()).returncode == 0
    assert daemon.swift("token", "revoke", issued["id"]).returncode == 0
    thread.join(10)
    kinds = [e.kind for e in events if e.kind != pb.WatchEvent.HEARTBEAT]
    assert kinds == [pb.WatchEvent.STARTED, pb.WatchEvent.CHANGED, pb.WatchEvent.ENDED]
    changed = events[1]
    assert changed.connection == "generic/watched" and changed.version == 2
    assert {f.name: f.value.decode() for f in changed.fields} == {"v": second}
    assert events[-1].reason == "the token was revoked"
    assert second not in daemon.output




def test_exec_on_change_restarts_or_signals_its_command_and_stops_it_when_access_ends(daemon, tmp_path):
    import hashlib
    import secrets
    import signal
    import subprocess

    from conftest import BUILD, wait_for

    first, second = "F" + secrets.token_hex(19) + "1", "S" + secrets.token_hex(19) + "2"
    put = daemon.swift("put", "aws/svc", stdin=json.dumps({"accessKeyID": "AKIAABCDEFGHIJKLMNOP",
                                                           "secretAccessKey": first}).encode())
    assert put.returncode == 0, put.stderr
    assert daemon.swift("grant", "deploy", "aws/svc").returncode == 0
    token = json.loads(daemon.swift("token", "issue", "deploy", "--json").stdout)["token"]
    starts = tmp_path / "starts"
    # The command records a digest of the secret it was started with, never the secret.
    script = f'printf %s "$AWS_SECRET_ACCESS_KEY" | sha256sum | cut -c1-16 >> {starts}; exec sleep 60'
    runner = subprocess.Popen([str(BUILD / "coffer"), "exec", "--on-change", "restart", "--connection", "aws/svc",
                               "--", "sh", "-c", script], env=daemon.environment(token),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    digest = lambda value: hashlib.sha256(value.encode()).hexdigest()[:16]  # noqa: E731
    assert wait_for(lambda: starts.exists() and starts.read_text().split() == [digest(first)])
    update = daemon.swift("update", "aws/svc", "--secret", "secretAccessKey",
                          stdin=json.dumps({"secretAccessKey": second}).encode())
    assert update.returncode == 0, update.stderr
    assert wait_for(lambda: starts.read_text().split() == [digest(first), digest(second)])
    # The grant revoked: the command is stopped, and coffer exits with PERMISSION_DENIED's status.
    assert daemon.swift("revoke", "deploy", "aws/svc").returncode == 0
    out, err = runner.communicate(timeout=20)
    assert runner.returncode == 5, err
    assert b"no longer granted" in err
    assert first.encode() not in out + err and second.encode() not in out + err

    # signal:HUP: the command is signalled, not restarted; SIGTERM to coffer reaches it, and its status is coffer's.
    assert daemon.swift("grant", "deploy", "aws/svc").returncode == 0
    hups, ready = tmp_path / "hups", tmp_path / "ready"
    script = f"trap 'echo hup >> {hups}' HUP; trap 'exit 7' TERM; touch {ready}; while true; do sleep 0.05; done"
    runner = subprocess.Popen([str(BUILD / "coffer"), "exec", "--on-change", "signal:HUP", "--connection",
                               "aws/svc", "--", "sh", "-c", script], env=daemon.environment(token),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_for(ready.exists)
    update = daemon.swift("update", "aws/svc", "--set", "region=eu-west-1")
    assert update.returncode == 0, update.stderr
    assert wait_for(lambda: hups.exists() and hups.read_text().split() == ["hup"])
    runner.send_signal(signal.SIGTERM)
    runner.communicate(timeout=20)
    assert runner.returncode == 7


def test_exec_on_change_with_a_command_that_exits_at_once_exits_with_its_status_every_time(daemon):
    import subprocess

    from conftest import BUILD

    assert daemon.swift("put", "generic/quick", stdin=b'{"v": "x"}').returncode == 0
    assert daemon.swift("grant", "deploy", "generic/quick").returncode == 0
    token = json.loads(daemon.swift("token", "issue", "deploy", "--json").stdout)["token"]
    # The command ends before coffer has finished starting it: coffer must still see it end, every time.
    for _ in range(40):
        run = subprocess.run([str(BUILD / "coffer"), "exec", "--on-change", "restart", "--env", "V=generic/quick#v",
                              "--", "sh", "-c", "exit 3"], env=daemon.environment(token), capture_output=True,
                             timeout=30)
        assert run.returncode == 3, run.stderr
