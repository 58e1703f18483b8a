"""Three cofferd nodes on one machine, replicating through a real PostgreSQL: changes on one node reach the
others, two nodes creating one connection at once cannot both win, a database outage leaves Gets working and
refuses writes until every node catches up, an edited, injected, removed or rolled-back row of the log is never
applied by any node, and a new node catches up before it serves."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from coffer_client import Client, CofferError, pb
from conftest import BUILD, Daemon, wait_for
from postgres import Postgres




class Cluster:
    def __init__(self, postgres: Postgres, directory: Path):
        self.postgres = postgres
        self.directory = directory
        self.key = directory / "master.key"
        self.nodes: dict[str, Daemon] = {}

    def node(self, name: str, *extra: str) -> Daemon:
        daemon = Daemon(self.directory, ["--key-file", str(self.key), "--cluster", self.postgres.url, *extra],
                        env={"COFFER_DATABASE_PASSWORD": self.postgres.password}, name=f"{name}-")
        self.nodes[name] = daemon
        return daemon

    def health(self, name: str) -> str:
        return self.nodes[name].swift("health").stdout.decode()

    def stop(self) -> None:
        for daemon in self.nodes.values():
            daemon.stop()


@pytest.fixture
def cluster():
    postgres = Postgres()
    with tempfile.TemporaryDirectory(prefix="coffer-cluster-") as directory:
        created = Cluster(postgres, Path(directory))
        # The cluster's master key, which every node reads from its own copy.
        init = subprocess.run([str(BUILD / "cofferd"), "init", "--data-dir", str(Path(directory) / "seed"),
                               "--key-file", str(created.key)], capture_output=True)
        assert init.returncode == 0, init.stderr
        try:
            yield created
        finally:
            created.stop()
            postgres.close()


def _get(daemon: Daemon, ref: str, token: str, field: str = "v"):
    result = daemon.swift("get", ref, "--field", field, token=token)
    return result.returncode, result.stdout.decode()


def test_changes_on_one_node_reach_the_others_and_a_watch_hears_each_once_in_order(cluster, canary):
    a, b, c = cluster.node("a"), cluster.node("b"), cluster.node("c")
    first, second = canary("first"), canary("second")
    assert a.swift("put", "generic/db", stdin=json.dumps({"v": first}).encode()).returncode == 0
    assert a.swift("grant", "deploy", "generic/db").returncode == 0
    issued = json.loads(a.swift("token", "issue", "deploy", "--json").stdout)
    token = issued["token"]
    for node in (b, c):
        assert wait_for(lambda: _get(node, "generic/db", token) == (0, first)), node.output

    events = []
    watching = threading.Event()

    def follow():
        with Client(c.worker_socket) as worker:
            for event in worker.watch(token, ["generic/db"]):
                events.append(event)
                watching.set()

    watcher = threading.Thread(target=follow)
    watcher.start()
    assert watching.wait(10)

    # An overwrite on b, then a grant revocation on c, a grant again on a, a delete on b.
    assert b.swift("overwrite", "generic/db", stdin=json.dumps({"v": second}).encode()).returncode == 0
    for node in (a, c):
        assert wait_for(lambda: _get(node, "generic/db", token) == (0, second))
    assert c.swift("revoke", "deploy", "generic/db").returncode == 0
    for node in (a, b):
        assert wait_for(lambda: _get(node, "generic/db", token)[0] == 5)
    assert a.swift("grant", "deploy", "generic/db").returncode == 0
    assert b.swift("delete", "generic/db").returncode == 0
    for node in (a, c):
        assert wait_for(lambda: _get(node, "generic/db", token)[0] == 3)
    # A token revoked on a is refused everywhere.
    assert a.swift("token", "revoke", issued["id"]).returncode == 0
    for node in (b, c):
        assert wait_for(lambda: _get(node, "generic/none", token)[0] == 6)
    watcher.join(10)
    seen = [(e.kind, e.connection) for e in events if e.kind != pb.WatchEvent.HEARTBEAT]
    assert seen == [(pb.WatchEvent.STARTED, ""), (pb.WatchEvent.CHANGED, "generic/db"),
                    (pb.WatchEvent.INACCESSIBLE, "generic/db"), (pb.WatchEvent.CHANGED, "generic/db"),
                    (pb.WatchEvent.DELETED, "generic/db"), (pb.WatchEvent.ENDED, "")]
    revisions = [e.revision for e in events[1:-1] if e.kind != pb.WatchEvent.HEARTBEAT]
    assert revisions == sorted(set(revisions))
    for node in (a, b, c):
        assert "cluster: current" in cluster.health(node.log_path.name[0])
        assert first not in node.output and second not in node.output
    # The database holds sealed records only.
    dump = cluster.postgres.sql("SELECT encode(batch, 'escape') FROM coffer_log")
    assert first not in dump and second not in dump


def test_two_nodes_creating_one_connection_at_once_one_wins(cluster):
    a, b = cluster.node("a"), cluster.node("b")
    outcomes = {}

    def create(node: Daemon, name: str, index: int):
        with Client(node.admin_socket) as admin:
            try:
                admin.put(f"generic/race{index}", {"v": name})
                outcomes[(name, index)] = "ok"
            except CofferError as error:
                outcomes[(name, index)] = pb.Code.Name(error.code)

    threads = [threading.Thread(target=create, args=(node, name, index))
               for index in range(20) for node, name in ((a, "a"), (b, "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for index in range(20):
        results = sorted(outcomes[(name, index)] for name in ("a", "b"))
        assert results == ["ALREADY_EXISTS", "ok"], (index, results)
    # Twenty changes in the log (a batch may hold several), one per connection.
    assert cluster.postgres.sql("SELECT max(last_revision) FROM coffer_log") == "20"


def test_a_database_outage_keeps_gets_refuses_writes_and_every_node_catches_up(cluster, canary):
    a, b, c = cluster.node("a"), cluster.node("b"), cluster.node("c")
    value = canary("kept")
    assert a.swift("put", "generic/app", stdin=json.dumps({"v": value}).encode()).returncode == 0
    assert a.swift("grant", "deploy", "generic/app").returncode == 0
    token = json.loads(a.swift("token", "issue", "deploy", "--json").stdout)["token"]
    for node in (b, c):
        assert wait_for(lambda: _get(node, "generic/app", token) == (0, value))

    cluster.postgres.stop()
    gets = failures = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        for node in (a, b, c):
            gets += 1
            failures += _get(node, "generic/app", token) != (0, value)
    assert gets > 0 and failures == 0
    refused = b.swift("overwrite", "generic/app", stdin=b'{"v": "during"}')
    assert refused.returncode == 9 and b"cannot be used" in refused.stderr
    assert "cluster: unreachable" in cluster.health("c")
    # A node restarted during the outage starts and serves what it has.
    c.process.send_signal(signal.SIGKILL)
    c.process.wait()
    c.start()
    assert "cluster: current" not in cluster.health("c")  # it cannot know that without the database
    assert _get(c, "generic/app", token) == (0, value)
    assert wait_for(lambda: "cluster: unreachable" in cluster.health("c"))

    cluster.postgres.start()
    after = canary("after")
    assert wait_for(lambda: c.swift("overwrite", "generic/app", stdin=json.dumps({"v": after}).encode())
                     .returncode == 0, 10)
    for node in (a, b):
        assert wait_for(lambda: _get(node, "generic/app", token) == (0, after), 5)
    for node in ("a", "b", "c"):
        assert wait_for(lambda: "cluster: current" in cluster.health(node), 5)


def test_an_edited_injected_or_removed_batch_is_never_applied(cluster):
    a, b = cluster.node("a"), cluster.node("b")
    assert a.swift("put", "generic/x", stdin=b'{"v": "genuine"}').returncode == 0
    assert a.swift("grant", "deploy", "generic/x").returncode == 0
    token = json.loads(a.swift("token", "issue", "deploy", "--json").stdout)["token"]
    assert wait_for(lambda: _get(b, "generic/x", token) == (0, "genuine"))

    # b stops; a overwrites; someone with database access edits that batch: b never applies it.
    b.stop()
    assert a.swift("overwrite", "generic/x", stdin=b'{"v": "second"}').returncode == 0
    head = cluster.postgres.sql("SELECT max(first_revision) FROM coffer_log")
    genuine = cluster.postgres.sql(f"SELECT encode(batch, 'hex') FROM coffer_log WHERE first_revision = {head}")
    cluster.postgres.sql(f"UPDATE coffer_log SET batch = overlay(batch placing '\\x00'::bytea from 12) "
                         f"WHERE first_revision = {head}")
    b.start()
    assert wait_for(lambda: "cluster: failed" in cluster.health("b"))
    assert "fail their link" in b.output
    # A failed node serves no value (neither the edited batch's nor the older one) and takes no write.
    refused = b.swift("get", "generic/x", "--field", "v", token=token)
    assert refused.returncode == 9 and b"stopped following the cluster's log" in refused.stderr
    refused = b.swift("overwrite", "generic/x", stdin=b'{"v": "third"}')
    assert refused.returncode == 9 and b"takes no writes" in refused.stderr
    # Mended by whoever edited it: the node follows again without a restart.
    cluster.postgres.sql(f"UPDATE coffer_log SET batch = decode('{genuine}', 'hex') WHERE first_revision = {head}")
    assert wait_for(lambda: _get(b, "generic/x", token) == (0, "second"))
    assert "cluster: current" in cluster.health("b")

    # A batch injected at the head, without the key: every node refuses it, and writes are refused.
    cluster.postgres.sql("UPDATE coffer_head SET revision = revision + 1; "
                         "INSERT INTO coffer_log SELECT last_revision + 1, last_revision + 1, batch, link "
                         "FROM coffer_log ORDER BY first_revision DESC LIMIT 1")
    assert wait_for(lambda: "cluster: failed" in cluster.health("a"))
    assert wait_for(lambda: "fail their link" in a.output)

    # A node joining a log with a batch removed finds the gap.
    cluster.postgres.sql("DELETE FROM coffer_log WHERE first_revision = 2")
    c = cluster.node("c")
    assert wait_for(lambda: "cluster: failed" in cluster.health("c"))
    assert "a batch was removed" in c.output
    assert c.swift("get", "generic/x", token=token).returncode == 9  # never caught up: nothing served


def test_a_rolled_back_log_refuses_writes_on_the_nodes_that_saw_more(cluster):
    a = cluster.node("a")
    for n in range(3):
        assert a.swift("put", f"generic/r{n}", stdin=b'{"v": "x"}').returncode == 0
    cluster.postgres.sql("DELETE FROM coffer_log WHERE first_revision = 3")
    cluster.postgres.sql("UPDATE coffer_head SET revision = 2")
    refused = a.swift("put", "generic/r9", stdin=b'{"v": "x"}')
    assert refused.returncode == 9 and b"rolled back" in refused.stderr
    assert wait_for(lambda: "cluster: failed" in cluster.health("a"))
    assert json.loads(a.swift("list", "--json").stdout) and a.swift("describe", "generic/r9").returncode == 3


def test_a_new_node_catches_up_before_it_serves(cluster):
    a = cluster.node("a")
    with Client(a.admin_socket) as admin:
        for n in range(300):
            admin.put(f"generic/c{n:04d}", {"v": f"value-{n}"})
            admin.grant("deploy", f"generic/c{n:04d}")
        token, _ = admin.issue_token("deploy")
    # The writing node's own service, polling through the burst, never took a write of its own in flight for
    # a removed row.
    assert wait_for(lambda: "cluster: current" in cluster.health("a"), 5), cluster.health("a")
    assert "stopped applying" not in a.output
    started = time.monotonic()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    b = cluster.node("b", "--metrics-address", f"127.0.0.1:{port}")
    assert wait_for(lambda: "cluster: current" in cluster.health("b"), 10)
    ready = time.monotonic() - started
    assert ready < 5, ready
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode().splitlines()
    assert "coffer_cluster_lag_revisions 0.0" in metrics and "coffer_revision 601.0" in metrics
    with Client(b.worker_socket) as worker:
        for n in (0, 150, 299):
            assert worker.get(f"generic/c{n:04d}", token)[1] == {"v": f"value-{n}".encode()}
    assert len(json.loads(b.swift("list", "--json").stdout)) == 300


def test_an_acknowledged_write_survives_kill_9_of_the_node_that_wrote_it(cluster):
    a, b = cluster.node("a"), cluster.node("b")
    token = None
    for n in range(5):
        assert a.swift("put", f"generic/k{n}", stdin=b'{"v": "x"}').returncode == 0
        assert a.swift("grant", "deploy", f"generic/k{n}").returncode == 0
    token = json.loads(a.swift("token", "issue", "deploy", "--json").stdout)["token"]
    assert a.swift("overwrite", "generic/k4", stdin=b'{"v": "acknowledged"}').returncode == 0
    a.process.send_signal(signal.SIGKILL)
    a.process.wait()
    assert wait_for(lambda: _get(b, "generic/k4", token) == (0, "acknowledged"))
    a.start()
    assert wait_for(lambda: "cluster: current" in cluster.health("a"))
    assert _get(a, "generic/k4", token) == (0, "acknowledged")


def test_a_head_past_the_last_batch_is_reported_by_the_node_that_meets_it(cluster):
    a = cluster.node("a")
    for n in range(2):
        assert a.swift("put", f"generic/h{n}", stdin=b'{"v": "x"}').returncode == 0
    last = cluster.postgres.sql("SELECT max(first_revision) FROM coffer_log")
    cluster.postgres.sql(f"DELETE FROM coffer_log WHERE first_revision = {last}")
    b = cluster.node("b")
    assert wait_for(lambda: "cluster: failed" in cluster.health("b"))
    assert "its rows were removed" in b.output


def test_the_database_password_comes_from_a_private_file_never_argv(cluster):
    import os
    password = cluster.directory / "database-password"
    password.write_text(cluster.postgres.password + "\n")
    os.chmod(password, 0o644)
    argv = [str(BUILD / "cofferd"), "serve", "--init-if-missing", "--data-dir", str(cluster.directory / "p-data"),
            "--key-file", str(cluster.key), "--admin-socket", str(cluster.directory / "p-admin.sock"),
            "--worker-socket", str(cluster.directory / "p-worker.sock"), "--cluster", cluster.postgres.url,
            "--database-password-file", str(password)]
    env = {k: v for k, v in os.environ.items() if k != "COFFER_DATABASE_PASSWORD"}
    refused = subprocess.run(argv, capture_output=True, env=env, timeout=30)
    assert refused.returncode == 7 and b"chmod 600" in refused.stderr
    os.chmod(password, 0o600)
    node = Daemon(cluster.directory, ["--key-file", str(cluster.key), "--cluster", cluster.postgres.url,
                                      "--database-password-file", str(password)], name="p-")
    cluster.nodes["p"] = node
    assert wait_for(lambda: "cluster: current" in cluster.health("p"))
    assert cluster.postgres.password not in " ".join(node.argv)
    elsewhere = [str(cluster.directory / "q-data") if part.endswith("p-data") else part for part in argv[:-2]]
    wrong = subprocess.run([*elsewhere, "--cluster", cluster.postgres.url.replace("coffer@", "coffer:pw@")],
                           capture_output=True, env=env, timeout=30)
    assert wrong.returncode == 2 and b"must not hold the password" in wrong.stderr
