#!/usr/bin/env python3
"""Three cofferd nodes (release build) replicating through a real PostgreSQL, measured. One run, on this machine.

    .venv/bin/python benchmarks/cluster.py                 # everything; about six minutes
    .venv/bin/python benchmarks/cluster.py propagation     # one part: propagation, outage, kills, join, watch

  propagation  200 changes (overwrites, deletes and puts, grant revocations and grants), each on a node chosen
               in turn; the time until a watch on each other node hears of it, from just before the write was
               sent; and 20 token revocations, until a Get with the token is refused on the other nodes.
  outage       PostgreSQL stopped for 60 s: Gets on every node throughout, a write every second; after it
               restarts, the time until a write made then is on every node.
  kills        20 trials: a node is killed (-9) while a burst of writes on another is being applied, restarted,
               and checked against the writer; then the writing node is killed right after an acknowledged write.
  join         a new node joins a cluster holding 10,000 connections (each granted): the time until it is current.
  watch        100 kill -9 restarts of a node while a watch on it reconnects with its last revision and writes
               go on elsewhere: events lost and repeated.
"""

from __future__ import annotations

import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients" / "python"))
sys.path.insert(0, str(ROOT / "clients" / "tests"))

import conftest  # noqa: E402
from coffer_client import Client, CofferError, pb  # noqa: E402
from conftest import Daemon, wait_for  # noqa: E402
from postgres import Postgres  # noqa: E402

conftest.BUILD = ROOT / ".build" / "release"
RELEASE = conftest.BUILD


def table(title: str, rows: list[list[str]]) -> None:
    print(f"\n{title}\n")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    sys.stdout.flush()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class Cluster:
    def __init__(self, directory: Path):
        self.directory = directory
        self.postgres = Postgres()
        self.key = directory / "master.key"
        subprocess.run([str(RELEASE / "cofferd"), "init", "--data-dir", str(directory / "seed"), "--key-file",
                        str(self.key)], check=True, capture_output=True)
        self.nodes: dict[str, Daemon] = {}

    def node(self, name: str) -> Daemon:
        daemon = Daemon(self.directory, ["--key-file", str(self.key), "--cluster", self.postgres.url,
                                         "--log-level", "warning"],
                        env={"COFFER_DATABASE_PASSWORD": self.postgres.password}, name=f"{name}-")
        self.nodes[name] = daemon
        return daemon

    def current(self, name: str) -> bool:
        with Client(self.nodes[name].admin_socket) as admin:
            return admin._call("health", pb.HealthRequest()).cluster == "current"

    def close(self) -> None:
        for daemon in self.nodes.values():
            daemon.stop()
        self.postgres.close()


def granted(admin: Client, names: list[str], value: str = "v") -> None:
    for name in names:
        admin.put(name, {"v": value})
        admin.grant("bench", name)


def propagation(cluster: Cluster) -> None:
    names = ["a", "b", "c"]
    nodes = [cluster.node(n) for n in names]
    with Client(nodes[0].admin_socket) as admin:
        granted(admin, [f"generic/p{i}" for i in range(20)])
        token, _ = admin.issue_token("bench", ttl_seconds=3600)
    for name in names:
        assert wait_for(lambda: cluster.current(name), 10)
    heard: dict[str, dict[int, float]] = {n: {} for n in names}
    started = {n: threading.Event() for n in names}

    def watch(name: str, node: Daemon) -> None:
        with Client(node.worker_socket) as worker:
            for event in worker.watch(token):
                if event.kind == pb.WatchEvent.STARTED:
                    started[name].set()
                elif event.kind in (pb.WatchEvent.CHANGED, pb.WatchEvent.DELETED, pb.WatchEvent.INACCESSIBLE):
                    heard[name].setdefault(event.revision, time.monotonic())

    for name, node in zip(names, nodes):
        threading.Thread(target=watch, args=(name, node), daemon=True).start()
        assert started[name].wait(10)
    sent: list[tuple[str, int, float]] = []
    clients = {n: Client(node.admin_socket) for n, node in zip(names, nodes)}
    for i in range(200):
        origin = names[i % 3]
        admin = clients[origin]
        name = f"generic/p{i % 20}"
        before = time.monotonic()
        step = (i // 20) % 4  # each connection in turn: overwrite, revoke, grant, delete and put again
        if step == 0:
            admin.overwrite(name, {"v": f"v{i}"})
        elif step == 1:
            admin.revoke("bench", name)
        elif step == 2:
            admin.grant("bench", name)
        else:
            admin.delete(name)
            sent.append((origin, admin.last_revision, before))
            before = time.monotonic()
            admin.put(name, {"v": f"v{i}"})
            admin.grant("bench", name)
        sent.append((origin, admin.last_revision, before))
        time.sleep(0.01)
    time.sleep(2)
    rows = [["receiving node", "changes heard", "of", "p50 ms", "p99 ms", "max ms"]]
    for name in names:
        delays = [(heard[name][rev] - before) * 1000 for origin, rev, before in sent
                  if origin != name and rev in heard[name]]
        expected = sum(1 for origin, _, _ in sent if origin != name)
        rows.append([name, str(len(delays)), str(expected), f"{percentile(delays, 50):.1f}",
                     f"{percentile(delays, 99):.1f}", f"{max(delays):.1f}"])
    table("Propagation: from just before a write on one node until a watch on another hears of it "
          "(200 changes, written in turn on a, b, c)", rows)

    delays = []
    for i in range(20):
        origin = clients[names[i % 3]]
        token_i, token_id = origin.issue_token("bench", ttl_seconds=600)
        others = [nodes[j] for j in range(3) if j != i % 3]
        for other in others:
            assert wait_for(lambda: other.swift("get", "generic/p0", "--field", "v", token=token_i).returncode
                            in (0, 3, 5), 10)
        before = time.monotonic()
        origin.revoke_token(token_id)
        revision = origin.last_revision
        for other in others:
            # Health is not audited, so it shows when the revocation is applied; a refused Get's answer waits
            # for its counted audit record (the denial aggregation interval), which is not propagation.
            with Client(other.worker_socket) as worker:
                while worker._call("health", pb.HealthRequest()).revision < revision:
                    time.sleep(0.001)
            delays.append((time.monotonic() - before) * 1000)
        for other in others:
            assert other.swift("get", "generic/p0", token=token_i).returncode == 6
    table("Token revocation: from just before RevokeToken on one node until each other node has applied it (then a "
          "Get with the token is refused there; 20 revocations, 40 measurements)",
          [["measurements", "p50 ms", "p99 ms", "max ms"],
           [str(len(delays)), f"{percentile(delays, 50):.1f}", f"{percentile(delays, 99):.1f}",
            f"{max(delays):.1f}"]])
    for client in clients.values():
        client.close()


def outage(cluster: Cluster, seconds: int = 60) -> None:
    nodes = [cluster.node(n) for n in ("a", "b", "c")]
    with Client(nodes[0].admin_socket) as admin:
        granted(admin, ["generic/app"], "before")
        token, _ = admin.issue_token("bench", ttl_seconds=3600)
    for name in "abc":
        assert wait_for(lambda: cluster.current(name), 10)
    cluster.postgres.stop()
    gets = failed = writes = refused = 0
    workers = [Client(node.worker_socket) for node in nodes]
    deadline = time.monotonic() + seconds
    next_write = time.monotonic()
    while time.monotonic() < deadline:
        for worker in workers:
            gets += 1
            try:
                worker.get("generic/app", token)
            except CofferError:
                failed += 1
        if time.monotonic() >= next_write:
            next_write += 1
            writes += 1
            with Client(nodes[writes % 3].admin_socket) as admin:
                try:
                    admin.overwrite("generic/app", {"v": "during"})
                except CofferError as error:
                    refused += error.code == pb.UNAVAILABLE
        time.sleep(0.01)
    cluster.postgres.start()
    restarted = time.monotonic()
    with Client(nodes[0].admin_socket) as admin:
        while True:
            try:
                admin.overwrite("generic/app", {"v": "after"})
                break
            except CofferError:
                time.sleep(0.05)
    written = time.monotonic()
    for worker in workers:
        while worker.get("generic/app", token)[1]["v"] != b"after":
            time.sleep(0.005)
    everywhere = time.monotonic()
    for name in "abc":
        assert wait_for(lambda: cluster.current(name), 10)
    current = time.monotonic()
    table(f"PostgreSQL stopped for {seconds} s: Gets on 3 nodes throughout, a write every second",
          [["Gets", "Gets failed", "writes", "writes UNAVAILABLE", "first write taken after restart s",
            "that write on every node s", "every node current s"],
           [f"{gets:,}", str(failed), str(writes), str(refused), f"{written - restarted:.2f}",
            f"{everywhere - written:.3f}", f"{current - restarted:.2f}"]])
    for worker in workers:
        worker.close()


def kills(cluster: Cluster, trials: int = 20) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    acked: list[str] = []
    latest = [0]
    consistent = mid_apply = 0
    for trial in range(trials):
        stop = threading.Event()

        def burst():
            with Client(a.admin_socket) as admin:
                n = 0
                while not stop.is_set():
                    name = f"generic/t{trial}-{n}"
                    admin.put(name, {"v": str(n)})
                    acked.append(name)
                    latest[0] = admin.last_revision
                    n += 1

        writer = threading.Thread(target=burst)
        writer.start()
        time.sleep(random.uniform(0.1, 0.5))
        with Client(b.admin_socket) as admin:
            applied = admin._call("health", pb.HealthRequest()).revision
        b.process.send_signal(signal.SIGKILL)
        b.process.wait()
        mid_apply += latest[0] > applied
        stop.set()
        writer.join()
        b.start()
        assert wait_for(lambda: cluster.current("b"), 15)
        with Client(a.admin_socket) as x, Client(b.admin_socket) as y:
            consistent += [i.connection for i in x.list()] == [i.connection for i in y.list()]
    with Client(b.admin_socket) as admin:
        stored = {i.connection for i in admin.list()}
    lost = sum(name not in stored for name in acked)
    # The writing node killed right after an acknowledged write.
    with Client(a.admin_socket) as admin:
        admin.put("generic/last-acknowledged", {"v": "x"})
    a.process.send_signal(signal.SIGKILL)
    a.process.wait()
    def present() -> bool:
        with Client(b.admin_socket) as admin:
            return any(i.connection == "generic/last-acknowledged" for i in admin.list())
    assert wait_for(present, 10)
    table("kill -9 of the applying node while another writes, then of the writing node after an acknowledged write",
          [["trials", "killed behind the log", "consistent with the writer after restart", "acknowledged writes",
            "lost", "writer killed after ack: write on the other node"],
           [str(trials), str(mid_apply), str(consistent), f"{len(acked):,}", str(lost), "yes"]])


def join(cluster: Cluster, count: int = 10_000) -> None:
    a = cluster.node("a")
    threads = []
    for part in range(8):
        def fill(part=part):
            with Client(a.admin_socket) as admin:
                for i in range(part, count, 8):
                    admin.put(f"generic/j{i:05d}", {"v": f"value-{i}"})
                    admin.grant("bench", f"generic/j{i:05d}")
        threads.append(threading.Thread(target=fill))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    head = int(cluster.postgres.sql("SELECT max(last_revision) FROM coffer_log"))
    batches = int(cluster.postgres.sql("SELECT count(*) FROM coffer_log"))
    started = time.monotonic()
    cluster.node("n")
    assert wait_for(lambda: cluster.current("n"), 60)
    ready = time.monotonic() - started
    with Client(cluster.nodes["n"].admin_socket) as admin:
        held = len(admin.list())
    table(f"A new node joins a cluster of {count:,} connections",
          [["connections", "log revisions", "log batches", "process start to current s", "connections on it"],
           [f"{count:,}", f"{head:,}", f"{batches:,}", f"{ready:.2f}", f"{held:,}"]])


def watch(cluster: Cluster, restarts: int = 100) -> None:
    a, b = cluster.node("a"), cluster.node("b")
    with Client(a.admin_socket) as admin:
        granted(admin, ["generic/w"])
        token, _ = admin.issue_token("bench", ttl_seconds=3600)
    stop = threading.Event()
    written: list[int] = []

    def writes():
        with Client(a.admin_socket) as admin:
            n = 0
            while not stop.is_set():
                admin.overwrite("generic/w", {"v": str(n)})
                written.append(admin.last_revision)
                n += 1
                time.sleep(0.005)

    writer = threading.Thread(target=writes)
    writer.start()
    seen: list[int] = []
    last = 0
    for restart in range(restarts):
        deadline = time.monotonic() + random.uniform(0.05, 0.3)
        try:
            with Client(b.worker_socket, timeout=5) as worker:
                for event in worker.watch(token, ["generic/w"], after_revision=last):
                    if event.kind == pb.WatchEvent.CHANGED:
                        seen.append(event.revision)
                        last = event.revision
                    elif event.kind in (pb.WatchEvent.STARTED, pb.WatchEvent.RESTART) and last == 0:
                        last = event.revision
                    if time.monotonic() > deadline:
                        b.process.send_signal(signal.SIGKILL)
                        b.process.wait()
                        break
        except CofferError:
            pass
        if b.process.poll() is None:
            b.process.send_signal(signal.SIGKILL)
            b.process.wait()
        b.start()
    stop.set()
    writer.join()
    # One last watch to the end of what was written.
    target = written[-1]
    with Client(b.worker_socket) as worker:
        for event in worker.watch(token, ["generic/w"], after_revision=last):
            if event.kind == pb.WatchEvent.CHANGED:
                seen.append(event.revision)
                if event.revision >= target:
                    break
    expected = [r for r in written if r > (seen[0] - 1 if seen else 0)]
    repeated = len(seen) - len(set(seen))
    missing = len(set(expected) - set(seen))
    table(f"A watch on a node killed (-9) and restarted {restarts} times, reconnecting after its last revision",
          [["restarts", "changes written", "events received", "repeated", "missed"],
           [str(restarts), f"{len(written):,}", f"{len(seen):,}", str(repeated), str(missing)]])


def main() -> None:
    parts = sys.argv[1:] or ["propagation", "outage", "kills", "join", "watch"]
    subprocess.run(["swift", "build", "-c", "release", "--product", "cofferd"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["swift", "build", "-c", "release", "--product", "coffer"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    version = subprocess.run([str(Path(sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))[-1])), "--version"],
                             capture_output=True, text=True).stdout.strip()
    print(f"cofferd {RELEASE / 'cofferd'} (release), {version}, {time.strftime('%Y-%m-%d')}")
    for part in parts:
        with tempfile.TemporaryDirectory(prefix="coffer-cluster-bench-") as directory:
            cluster = Cluster(Path(directory))
            try:
                {"propagation": propagation, "outage": outage, "kills": kills, "join": join, "watch": watch}[part](cluster)
            finally:
                cluster.close()


if __name__ == "__main__":
    main()
