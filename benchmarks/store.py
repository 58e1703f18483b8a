#!/usr/bin/env python3
"""What store format 2 costs, measured on the release cofferd.

    .venv/bin/python benchmarks/store.py                        # startup and rotation; about five minutes
    .venv/bin/python benchmarks/store.py integrity OLD_COFFERD  # Get latency beside a cofferd built before format 2

startup    100,000 connections of two fields (and a grant each): the time from starting cofferd to its sockets
           answering, which includes reading every record, checking its tag, the summaries and the audit chain.
rotation   on the same store: a rotation, then the re-encryption of every field, timed from cofferd's own log,
           with cofferd's CPU time over it (the re-encryption runs on the writer's one thread), and the Get
           latency of 8 clients during the re-encryption beside the same load after it.
integrity  Get p50 and p99 from one and from 8 connections, the current cofferd and OLD_COFFERD (for example
           a release build of commit 650c539, the last before format 2) side by side, alternating, three rounds
           each: the difference is what checking each record's tag and the map of what cofferd wrote costs.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients" / "python"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from coffer_client import Client, pb  # noqa: E402
from compare import (LOADGEN, Servers, coffer_frame, cpu_seconds, fill_granted, frames_file, loadgen, run,  # noqa: E402
                     table)

CONNECTIONS = 100_000


def fill(servers: Servers, count: int) -> str:
    fill_granted(servers.admin, count, lambda i: f"generic/s{i:06d}",
                 lambda i: {"key": f"key-{i}", "secret": f"secret-{i}-{'x' * 40}"}, "bench")
    with Client(servers.admin) as admin:
        return admin.issue_token("bench", ttl_seconds=86400)[0]


def timed_start(servers: Servers) -> float:
    started = time.monotonic()
    servers.start_cofferd("--log-level", "notice")
    return time.monotonic() - started


def startup_and_rotation(work: Path) -> None:
    servers = Servers(work)
    servers.start_cofferd()
    started = time.monotonic()
    token = fill(servers, CONNECTIONS)
    print(f"filled {CONNECTIONS:,} connections and grants in {time.monotonic() - started:.0f} s", flush=True)
    servers.stop_cofferd()
    starts = []
    for _ in range(3):
        starts.append(timed_start(servers))
        servers.stop_cofferd()
    table(f"Start-up with {CONNECTIONS:,} connections, {CONNECTIONS:,} grants and their audit records "
          "(every tag, summary and the audit chain checked)", [
              ["starts", "fastest s", "slowest s"],
              ["3", f"{min(starts):.2f}", f"{max(starts):.2f}"]])

    servers.start_cofferd("--log-level", "notice")
    gets = frames_file(work / "store-get", [
        coffer_frame(pb.Request(id=1, get=pb.GetRequest(connection=f"generic/s{index:06d}", token=token)))
        for index in range(0, CONNECTIONS, 97)])
    log = work / "cofferd.log"
    log_before = log.read_text() if log.exists() else ""
    cpu_before = cpu_seconds(servers.cofferd.pid)
    with Client(servers.admin) as admin:
        admin.rotate_key()
    during = loadgen(servers.worker, gets, "coffer", servers.cofferd.pid, 8, seconds=3)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with Client(servers.admin) as admin:
            if admin.key_status().reencryption.done:
                break
        time.sleep(0.05)
    cpu = cpu_seconds(servers.cofferd.pid) - cpu_before
    finished = [(re.search(r"fields=(\d+)", line).group(1), re.search(r"seconds=([0-9.]+)", line).group(1))
                for line in log.read_text()[len(log_before):].splitlines() if "re-encryption finished" in line]
    after = loadgen(servers.worker, gets, "coffer", servers.cofferd.pid, 8, seconds=3)
    servers.stop_cofferd()
    if not finished:
        raise RuntimeError("cofferd did not log the end of the re-encryption")
    fields, seconds = int(finished[-1][0]), float(finished[-1][1])
    table("Re-encryption after a rotation (8 clients getting throughout the first 3 s)", [
        ["fields", "seconds (cofferd's log)", "fields/s", "cofferd CPU s (all threads)", "fields per CPU second",
         "Get p50 / p99 us during", "Get p50 / p99 us after", "Gets/s during / after"],
        [f"{fields:,}", f"{seconds:.2f}", f"{fields / seconds:,.0f}", f"{cpu:.2f}", f"{fields / cpu:,.0f}",
         f"{during['p50_us']:.0f} / {during['p99_us']:.0f}", f"{after['p50_us']:.0f} / {after['p99_us']:.0f}",
         f"{during['per_second']:,.0f} / {after['per_second']:,.0f}"]])


def integrity(work: Path, old: Path) -> None:
    sides = {}
    for name, binary in [("format 2", None), ("before format 2", old)]:
        directory = work / name.replace(" ", "-")
        directory.mkdir()
        servers = Servers(directory, binary)
        servers.start_cofferd()
        token = servers.fill_cofferd()
        frames = frames_file(directory / "get", [
            coffer_frame(pb.Request(id=1, get=pb.GetRequest(connection=f"generic/{key}", token=token)))
            for key in servers.values])
        sides[name] = (servers, frames)
    rows = [["Gets", "format 2 p50 / p99 us", "before p50 / p99 us", "p99 difference us", "format 2 /s",
             "before /s"]]
    try:
        for connections in (1, 8):
            results = {name: [] for name in sides}
            for _ in range(3):
                for name, (servers, frames) in sides.items():
                    results[name].append(loadgen(servers.worker, frames, "coffer", servers.cofferd.pid, connections))
            def median(name, key):
                values = sorted(r[key] for r in results[name])
                return values[len(values) // 2]
            new, before = "format 2", "before format 2"
            rows.append([f"{connections} conn", f"{median(new, 'p50_us'):.0f} / {median(new, 'p99_us'):.0f}",
                         f"{median(before, 'p50_us'):.0f} / {median(before, 'p99_us'):.0f}",
                         f"{median(new, 'p99_us') - median(before, 'p99_us'):+.0f}",
                         f"{median(new, 'per_second'):,.0f}", f"{median(before, 'per_second'):,.0f}"])
    finally:
        for servers, _ in sides.values():
            servers.stop_cofferd()
    table("Get latency: the integrity checks of format 2 beside the build before it (medians of 3 rounds of 5 s, "
          "alternating; 1,000 keys of 256 bytes)", rows)


def main() -> None:
    part = sys.argv[1] if len(sys.argv) > 1 else "startup"
    run("swift", "build", "-c", "release", "--product", "cofferd", cwd=ROOT, stdout=subprocess.DEVNULL)
    run("make", "-C", str(ROOT / "benchmarks" / "loadgen"), "--no-print-directory", stdout=subprocess.DEVNULL)
    assert LOADGEN.exists()
    with tempfile.TemporaryDirectory(prefix="coffer-store-bench-") as temp:
        if part == "integrity":
            integrity(Path(temp), Path(sys.argv[2]).resolve())
        else:
            startup_and_rotation(Path(temp))


if __name__ == "__main__":
    main()
