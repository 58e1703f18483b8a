#!/usr/bin/env python3
"""cofferd beside Redis, in one run, with one native load generator (benchmarks/loadgen).

    .venv/bin/python benchmarks/compare.py            # everything; about four minutes
    .venv/bin/python benchmarks/compare.py gets       # one part: gets, writes, flood, hold

Starts redis-server (Debian's) on a Unix socket and the release build of cofferd in a temporary directory,
fills both with the same 1,000 keys of 256-byte values, and measures, each side by side:
  gets    Get throughput and latency with 1 and 32 connections, with and without 16-deep pipelining, and the
          server's CPU time per request (from /proc/PID/stat);
  writes  durable overwrites with 1 and 32 clients against Redis with appendfsync always;
  flood   100 clients pipelining Health and 100 pipelining Gets without reading, for 30 s, under the uid of a
          well-behaved client that connects after the flood began: cofferd's VmHWM, its VmRSS 10 s after the
          flood, three floods in a row, and the well-behaved client's Gets;
  hold    1,000 clients held open on the worker socket with a Health every 8 s, while an admin lists 100 times
          and a new worker gets;
  typed   the same Gets and durable overwrites of typed http connections (a base URL, two headers, one a
          template citing the token; the token 256 bytes) beside the untyped (generic) ones and Redis: the cost of
          the type check on a write and of the public fields bound into the value on a Get.
It prints ratios beside the figures: this machine is noisy, so only figures from one run are compared.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients" / "python"))

from coffer_client import Client, pb  # noqa: E402
from nacl.public import PublicKey, SealedBox  # noqa: E402

LOADGEN = ROOT / "benchmarks" / "loadgen" / "build" / "loadgen"
KEYS = 1000
VALUE_BYTES = 256
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def run(*args, **kwargs):
    return subprocess.run(args, check=True, **kwargs)


def wait_for(path: str, process: subprocess.Popen | None = None, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited early")
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(path)
                return
            except OSError:
                time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {path}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, kib = line.split()[:2]
            values[name.rstrip(":")] = int(kib)
    return values


def frames_file(path: Path, frames: list[bytes]) -> Path:
    with open(path, "wb") as out:
        for frame in frames:
            out.write(struct.pack("<I", len(frame)) + frame)
    return path


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def coffer_frame(request: pb.Request) -> bytes:
    body = request.SerializeToString()
    return varint(len(body)) + body


def resp(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


class Servers:
    """cofferd and Redis, each with the same keys."""

    def __init__(self, directory: Path, binary: Path | None = None):
        self.directory = Path(directory)
        self.binary = binary or ROOT / ".build" / "release" / "cofferd"
        self.admin = str(directory / "admin.sock")
        self.worker = str(directory / "worker.sock")
        self.redis_socket = str(directory / "redis.sock")
        self.cofferd: subprocess.Popen | None = None
        self.redis: subprocess.Popen | None = None
        self.values = {f"bench-{i:04d}": os.urandom(VALUE_BYTES // 2).hex().encode() for i in range(KEYS)}

    def start_cofferd(self, *extra: str) -> None:
        log = open(self.directory / "cofferd.log", "ab")
        self.cofferd = subprocess.Popen(
            [str(self.binary), "serve", "--init-if-missing",
             "--data-dir", str(self.directory / "data"), "--admin-socket", self.admin,
             "--worker-socket", self.worker, "--log-level", "warning", *extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(self.admin, self.cofferd)
        wait_for(self.worker, self.cofferd)

    def stop_cofferd(self) -> None:
        if self.cofferd and self.cofferd.poll() is None:
            self.cofferd.send_signal(signal.SIGTERM)
            self.cofferd.wait(30)

    def fill_cofferd(self) -> str:
        with Client(self.admin) as admin:
            for name, value in self.values.items():
                admin.put(f"generic/{name}", {"token": value})
                admin.grant("bench", f"generic/{name}")
            token, _ = admin.issue_token("bench", ttl_seconds=86400)
        return token

    def start_redis(self, durable: bool) -> None:
        self.stop_redis()
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
        self.redis = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.redis_socket, "--save", "", "--dir",
             str(self.directory), *aof], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.redis_socket, self.redis)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.redis_socket)
            s.sendall(b"".join(resp(b"SET", name.encode(), value) for name, value in self.values.items()))
            expected, got = len(self.values) * 5, b""
            while len(got) < expected:
                got += s.recv(65536)

    def stop_redis(self) -> None:
        if self.redis and self.redis.poll() is None:
            self.redis.terminate()
            self.redis.wait(10)
        for name in ("appendonlydir", "appendonly.aof"):
            shutil.rmtree(self.directory / name, ignore_errors=True)


def fill_granted(admin_socket: str, count: int, connection, values, workflow: str, threads: int = 8) -> None:
    """Puts `count` connections (`connection(i)` holding `values(i)`) and grants each to `workflow`, from
    `threads` admin clients at once, so that group commit shares their syncs."""
    import threading

    def filler(first: int):
        with Client(admin_socket) as admin:
            for index in range(first, count, threads):
                admin.put(connection(index), values(index))
                admin.grant(workflow, connection(index))
    workers = [threading.Thread(target=filler, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def loadgen(socket_path: str, frames: Path, protocol: str, pid: int, connections: int, depth: int = 1,
            seconds: float = 5, mode: str = "load") -> dict:
    before = cpu_seconds(pid)
    started = time.monotonic()
    out = subprocess.run([str(LOADGEN), "--socket", socket_path, "--frames", str(frames), "--protocol", protocol,
                          "--connections", str(connections), "--depth", str(depth), "--seconds", str(seconds),
                          "--mode", mode], check=False, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed ({out.returncode}): {out.stderr.strip()} {out.stdout.strip()}")
    result = json.loads(out.stdout)
    # The server's CPU over the whole run (warm-up included), per request measured over the counted part.
    wall = time.monotonic() - started
    cpu = cpu_seconds(pid) - before
    result["cpu_us"] = cpu / (result["per_second"] * wall) * 1e6 if result["per_second"] else 0
    result["cpu_percent"] = 100 * cpu / wall
    return result


def table(title: str, rows: list[list[str]]) -> None:
    print(f"\n{title}\n")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    sys.stdout.flush()


def gets(servers: Servers, token: str, work: Path) -> None:
    coffer = frames_file(work / "coffer-get", [
        coffer_frame(pb.Request(id=1, get=pb.GetRequest(connection=f"generic/{name}", token=token)))
        for name in servers.values])
    redis = frames_file(work / "redis-get", [resp(b"GET", name.encode()) for name in servers.values])
    servers.start_redis(durable=False)
    rows = [["Gets", "cofferd /s", "Redis /s", "ratio", "cofferd p50 / p99 us", "Redis p50 / p99 us",
             "p50 ratio", "cofferd CPU us/Get", "Redis CPU us/GET"]]
    for connections, depth in [(1, 1), (32, 1), (1, 16), (32, 16)]:
        c = loadgen(servers.worker, coffer, "coffer", servers.cofferd.pid, connections, depth)
        r = loadgen(servers.redis_socket, redis, "redis", servers.redis.pid, connections, depth)
        rows.append([f"{connections} conn, depth {depth}", f"{c['per_second']:,.0f}", f"{r['per_second']:,.0f}",
                     f"{c['per_second'] / r['per_second']:.3f}x", f"{c['p50_us']:.0f} / {c['p99_us']:.0f}",
                     f"{r['p50_us']:.0f} / {r['p99_us']:.0f}", f"{c['p50_us'] / max(r['p50_us'], 1):.2f}x",
                     f"{c['cpu_us']:.1f}", f"{r['cpu_us']:.1f}"])
    table("Gets of 256-byte values, 1,000 keys (cofferd: token, grant, decrypt and audit record per Get)", rows)


def writes(servers: Servers, work: Path) -> None:
    with Client(servers.admin) as admin:
        key, key_id = admin.public_key()
    box = SealedBox(PublicKey(key))
    # Sealed once per key and sent again and again: cofferd opens each afresh, as it would a new value.
    coffer = frames_file(work / "coffer-overwrite", [
        coffer_frame(pb.Request(id=1, overwrite=pb.OverwriteRequest(
            connection=f"generic/{name}", key_id=key_id,
            fields=[pb.SealedField(name="token", sealed_value=box.encrypt(value))])))
        for name, value in servers.values.items()])
    redis = frames_file(work / "redis-set", [resp(b"SET", name.encode(), value)
                                             for name, value in servers.values.items()])
    servers.start_redis(durable=True)
    rows = [["Durable overwrites", "cofferd /s", "Redis appendfsync always /s", "ratio", "cofferd p50 / p99 us",
             "Redis p50 / p99 us", "cofferd CPU us/write"]]
    for connections in [1, 32]:
        c = loadgen(servers.admin, coffer, "coffer", servers.cofferd.pid, connections)
        r = loadgen(servers.redis_socket, redis, "redis", servers.redis.pid, connections)
        rows.append([f"{connections} client{'s' if connections > 1 else ''}", f"{c['per_second']:,.0f}",
                     f"{r['per_second']:,.0f}", f"{c['per_second'] / r['per_second']:.3f}x",
                     f"{c['p50_us']:.0f} / {c['p99_us']:.0f}", f"{r['p50_us']:.0f} / {r['p99_us']:.0f}",
                     f"{c['cpu_us']:.1f}"])
    table("Durable overwrites of one 256-byte field (acknowledged after the sync that covers them)", rows)
    servers.stop_redis()


def status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
            name, kib = line.split()[:2]
            values[name.rstrip(":")] = int(kib)
    return values


def flood(servers: Servers, token: str, work: Path) -> None:
    """On a fresh cofferd: the store's mapped pages from earlier parts would count in its resident memory."""
    fresh = Servers(work / "flood")
    fresh.directory.mkdir()
    fresh.start_cofferd()
    try:
        token = fresh.fill_cofferd()
        health = frames_file(work / "coffer-health", [coffer_frame(pb.Request(id=1, health=pb.HealthRequest()))])
        gets = frames_file(work / "flood-get", [
            coffer_frame(pb.Request(id=1, get=pb.GetRequest(connection=f"generic/{name}", token=token)))
            for name in fresh.values])
        pid = fresh.cofferd.pid
        time.sleep(1)
        idle = status(pid)
        rows = [["flood", "VmHWM MiB", "anonymous at its end MiB", "VmRSS 10 s after MiB",
                 "anonymous / file-backed 10 s after MiB", "idle VmRSS MiB (anonymous)", "well-behaved Gets (1,000/s)",
                 "its p99 us", "its failures"]]
        for round_number in range(1, 4):
            floods = [subprocess.Popen([str(LOADGEN), "--socket", fresh.worker, "--frames", str(frames), "--mode",
                                        "flood", "--connections", "100", "--seconds", "30"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                      for frames in (health, gets)]
            time.sleep(2)
            # A client that reads every answer, one Get a millisecond, connecting after the flood began.
            behaved = subprocess.run([str(LOADGEN), "--socket", fresh.worker, "--frames", str(gets), "--mode", "hold",
                                      "--connections", "1", "--interval", "0.001", "--seconds", "26"],
                                     capture_output=True, text=True)
            during = status(pid)
            for process in floods:
                process.wait()
            result = json.loads(behaved.stdout) if behaved.stdout.strip() else {"completed": 0, "failed": "?", "p99_us": 0}
            time.sleep(10)
            after = status(pid)
            rows.append([f"round {round_number}", f"{after['VmHWM'] / 1024:.1f}", f"{during['RssAnon'] / 1024:.1f}",
                         f"{after['VmRSS'] / 1024:.1f}", f"{after['RssAnon'] / 1024:.1f} / {after['RssFile'] / 1024:.1f}",
                         f"{idle['VmRSS'] / 1024:.1f} ({idle['RssAnon'] / 1024:.1f})", f"{result['completed']:,}",
                         f"{result['p99_us']:.0f}", f"{result['failed']}{' ' + behaved.stderr.strip() if behaved.returncode else ''}"])
        table("Flood: 100 clients pipelining Health and 100 pipelining Gets without reading, 30 s, same uid, "
              "on a fresh cofferd", rows)
    finally:
        fresh.stop_cofferd()


def hold(servers: Servers, token: str, work: Path) -> None:
    health = frames_file(work / "coffer-health", [coffer_frame(pb.Request(id=1, health=pb.HealthRequest()))])
    holder = subprocess.Popen([str(LOADGEN), "--socket", servers.worker, "--frames", str(health), "--mode", "hold",
                               "--connections", "1000", "--interval", "8", "--seconds", "40"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(10)
    times, failures = [], 0
    for _ in range(100):
        started = time.monotonic()
        try:
            with Client(servers.admin, timeout=5) as admin:
                admin.list()
        except Exception:  # noqa: BLE001 - any failure counts
            failures += 1
        times.append((time.monotonic() - started) * 1000)
    with Client(servers.worker) as worker:
        got = worker.get("generic/bench-0000", token)[1]["token"] == servers.values["bench-0000"]
    out, err = holder.communicate()
    held = json.loads(out) if out.strip() else {"failed": "?", "completed": 0}
    times.sort()
    table("1,000 clients held open on the worker socket, a Health from each every 8 s", [
        ["admin lists", "within 100 ms", "failed", "slowest ms", "a new worker's Get", "held clients' Healths answered"],
        ["100", f"{sum(t <= 100 for t in times)}", f"{failures}", f"{times[-1]:.1f}", "ok" if got else "FAILED",
         f"{held['completed']} ({held['failed']} failed{', ' + err.strip() if err.strip() else ''})"]])


def typed_fields(value: bytes) -> dict[str, str]:
    return {"baseURL": "https://api.example.com/v1", "header.Accept": "application/json",
            "header.Authorization": "Bearer {{ token }}", "token": value.decode()}


def typed(servers: Servers, token: str, work: Path) -> None:
    fill_granted(servers.admin, KEYS, lambda i: f"http/bench-{i:04d}",
                 lambda i: typed_fields(servers.values[f"bench-{i:04d}"]), "bench")
    with Client(servers.admin) as admin:
        key, key_id = admin.public_key()
    box = SealedBox(PublicKey(key))
    gets_of = {
        "generic": frames_file(work / "get-generic", [
            coffer_frame(pb.Request(id=1, get=pb.GetRequest(connection=f"generic/{name}", token=token)))
            for name in servers.values]),
        "http": frames_file(work / "get-http", [
            coffer_frame(pb.Request(id=1, get=pb.GetRequest(connection=f"http/{name}", token=token)))
            for name in servers.values]),
    }
    redis_get = frames_file(work / "redis-get", [resp(b"GET", name.encode()) for name in servers.values])
    servers.start_redis(durable=False)
    rows = [["Gets", "generic /s", "typed http /s", "typed / generic", "Redis /s", "typed / Redis",
             "generic p50 / p99 us", "typed p50 / p99 us", "generic CPU us", "typed CPU us"]]
    for connections, depth in [(1, 1), (32, 1), (32, 16)]:
        g = loadgen(servers.worker, gets_of["generic"], "coffer", servers.cofferd.pid, connections, depth)
        t = loadgen(servers.worker, gets_of["http"], "coffer", servers.cofferd.pid, connections, depth)
        r = loadgen(servers.redis_socket, redis_get, "redis", servers.redis.pid, connections, depth)
        rows.append([f"{connections} conn, depth {depth}", f"{g['per_second']:,.0f}", f"{t['per_second']:,.0f}",
                     f"{t['per_second'] / g['per_second']:.3f}x", f"{r['per_second']:,.0f}",
                     f"{t['per_second'] / r['per_second']:.3f}x", f"{g['p50_us']:.0f} / {g['p99_us']:.0f}",
                     f"{t['p50_us']:.0f} / {t['p99_us']:.0f}", f"{g['cpu_us']:.1f}", f"{t['cpu_us']:.1f}"])
    table("Gets, typed http connections beside generic ones (same 256-byte secret) and Redis GET", rows)

    def overwrite(name: str, value: bytes, typed_: bool) -> bytes:
        if not typed_:
            return coffer_frame(pb.Request(id=1, overwrite=pb.OverwriteRequest(
                connection=f"generic/{name}", key_id=key_id,
                fields=[pb.SealedField(name="token", sealed_value=box.encrypt(value))])))
        fields = typed_fields(value)
        return coffer_frame(pb.Request(id=1, overwrite=pb.OverwriteRequest(
            connection=f"http/{name}", key_id=key_id,
            fields=[pb.SealedField(name="token", sealed_value=box.encrypt(value))],
            public_fields=[pb.PublicField(name=k, value=v) for k, v in fields.items() if k != "token"])))
    writes_of = {kind: frames_file(work / f"overwrite-{kind}", [overwrite(name, value, kind == "http")
                                                                for name, value in servers.values.items()])
                 for kind in ("generic", "http")}
    rows = [["Durable overwrites", "generic /s", "typed http /s", "typed / generic", "generic p50 us",
             "typed p50 us", "generic CPU us", "typed CPU us"]]
    for connections in [1, 32]:
        g = loadgen(servers.admin, writes_of["generic"], "coffer", servers.cofferd.pid, connections)
        t = loadgen(servers.admin, writes_of["http"], "coffer", servers.cofferd.pid, connections)
        rows.append([f"{connections} client{'s' if connections > 1 else ''}", f"{g['per_second']:,.0f}",
                     f"{t['per_second']:,.0f}", f"{t['per_second'] / g['per_second']:.3f}x", f"{g['p50_us']:.0f}",
                     f"{t['p50_us']:.0f}", f"{g['cpu_us']:.1f}", f"{t['cpu_us']:.1f}"])
    table("Durable overwrites: a typed http connection (checked against its type) beside a generic one", rows)
    servers.stop_redis()


def main() -> None:
    parts = sys.argv[1:] or ["gets", "writes", "flood", "hold", "typed"]
    run("swift", "build", "-c", "release", "--product", "cofferd", cwd=ROOT, stdout=subprocess.DEVNULL)
    run("make", "-C", str(ROOT / "benchmarks" / "loadgen"), "--no-print-directory", stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="coffer-bench-") as temp:
        work = Path(temp)
        servers = Servers(work)
        servers.start_cofferd()
        try:
            token = servers.fill_cofferd()
            print(f"cofferd {ROOT / '.build/release/cofferd'}, {subprocess.check_output(['redis-server', '--version'], text=True).split()[2]}, "
                  f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
            if parts != ["typed"]:
                gets(servers, token, work)  # also writes the Get frames the others use
            if "writes" in parts:
                writes(servers, work)
            if "flood" in parts:
                flood(servers, token, work)
            if "hold" in parts:
                hold(servers, token, work)
            if "typed" in parts:
                typed(servers, token, work)
        finally:
            servers.stop_cofferd()
            servers.stop_redis()


if __name__ == "__main__":
    main()
