#!/usr/bin/env python3
"""Measures cofferd's resident memory while clients flood it with large frames and read nothing back.

    benchmarks/flood.py [--connections 200] [--frames 4]

Starts cofferd (the release build by default) on temporary sockets, opens N worker connections, and on each
writes FRAMES frames just under the 2 MiB request limit (Get requests with a huge connection name) without
reading a response. Prints cofferd's VmRSS before, during and after, and whether a fresh client is still
served. Each connection may make cofferd hold only a couple of frames: the figure shows the bound.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def health_frame() -> bytes:
    body = bytes([0x08, 0x01, 0xAA, 0x01, 0x00])  # Request{id: 1, health: {}}
    return varint(len(body)) + body


def flood(pid: int, path: str, frame: bytes, args) -> None:
    sockets = []
    start = time.monotonic()
    for _ in range(args.connections):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.setblocking(False)
        sockets.append([s, frame * args.frames, False])
    # Write what each socket will take without blocking, for a while.
    deadline = time.monotonic() + 10
    peak = 0.0
    while time.monotonic() < deadline and any(e[1] and not e[2] for e in sockets):
        for entry in sockets:
            s, pending, refused = entry
            if pending and not refused:
                try:
                    sent = s.send(pending[:1 << 20])
                    entry[1] = pending[sent:]
                except BlockingIOError:
                    pass
                except OSError:
                    entry[2] = True
        peak = max(peak, rss_mib(pid))
    written = sum(args.frames * len(frame) - len(e[1]) for e in sockets)
    refused = sum(1 for e in sockets if e[2])
    print(f"{Path(path).name}: {args.connections} connections wrote {written / 2**20:.0f} MiB in "
          f"{time.monotonic() - start:.1f} s, reading nothing; {refused} were refused and closed; "
          f"cofferd peaked at {peak:.1f} MiB")
    for s, _, _ in sockets:
        s.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--cofferd", default=str(ROOT / ".build/release/cofferd"),
                        help="the cofferd binary (default: the release build; swift build -c release --product cofferd)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coffer-flood-") as d:
        admin, worker = f"{d}/a.sock", f"{d}/w.sock"
        daemon = subprocess.Popen(
            [args.cofferd, "serve", "--init-if-missing", "--data-dir", f"{d}/data",
             "--admin-socket", admin, "--worker-socket", worker, "--max-connections", str(args.connections + 8)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not os.path.exists(worker):
                time.sleep(0.05)
            time.sleep(0.3)
            print(f"cofferd idle: {rss_mib(daemon.pid):.1f} MiB")
            # Get{connection: "a" * n}: field 14 (tag 0x72, 0x01... as bytes below), nested string field 1.
            name = b"a" * (2 * 1024 * 1024 - 64)
            get = b"\x0a" + varint(len(name)) + name
            body = b"\x08\x01" + b"\x72" + varint(len(get)) + get
            frame = varint(len(body)) + body
            for target in (worker, admin):
                flood(daemon.pid, target, frame, args)
                probe = socket.socket(socket.AF_UNIX)
                probe.settimeout(5)
                probe.connect(worker)
                probe.sendall(health_frame())
                served = len(probe.recv(4096)) > 0
                probe.close()
                print(f"  a fresh client is served: {'yes' if served else 'no'}")
                time.sleep(1)
                print(f"  after the flood: {rss_mib(daemon.pid):.1f} MiB")
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
