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
