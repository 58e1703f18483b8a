#!/usr/bin/env python3
"""Crash and shutdown trials against the release cofferd: what was answered is what was recorded and kept.

    .venv/bin/python benchmarks/trials.py              # 50 kill -9 trials and 50 SIGTERM rounds; about five minutes
    .venv/bin/python benchmarks/trials.py kill 10      # one kind, fewer rounds
    .venv/bin/python benchmarks/trials.py rotation 20  # key rotations killed mid-way; about five minutes

kill     A mixed load (Gets from 4 clients, Puts and Overwrites from 2 admins), then kill -9 at a random moment.
         After a restart: every answered Get and every answered change has its audit record, and every
         acknowledged Put and Overwrite is in the store.
sigterm  40 admin clients each pipelining 50 Puts, then SIGTERM once the first answer is in. Every request is
         either answered (with its id) or was never done; every acknowledged Put is kept.
rotation 50,000 connections of two fields, Gets from 8 clients throughout; a key rotation, then kill -9 at a random
         moment of the re-encryption that follows, and a restart. Every Get answered while cofferd runs is OK and
         right; the re-encryption resumes and completes; every field is then under the new generation and holds
         its value; the old generation is retired.
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients" / "python"))

from coffer_client import Client, CofferError, pb  # noqa: E402
from nacl.public import PublicKey, SealedBox  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from compare import Servers, fill_granted, varint  # noqa: E402


def frame(request: pb.Request) -> bytes:
    body = request.SerializeToString()
    return varint(len(body)) + body


def read_answers(sock: socket.socket, buffer: bytes = b"") -> list[pb.Response]:
    """Every answer until cofferd closes the connection; `buffer` holds what was read of them already."""
    answers = []
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            return answers
        buffer += chunk
        while buffer:
            length, shift, used = 0, 0, 0
            for byte in buffer:
                used += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
            else:
                break
            if len(buffer) < used + length:
                break
            answers.append(pb.Response.FromString(buffer[used:used + length]))
            buffer = buffer[used + length:]


def trail(admin: Client) -> list:
    records, after = [], 0
    while True:
        request = pb.AuditRequest(after_sequence=after)
        page = admin._call("audit", request)
        records += page.records
        if not page.records or page.records[-1].sequence >= page.last_sequence:
            return records
        after = page.records[-1].sequence


def kill_trials(rounds: int, quiet: bool = False) -> Counter:
    with tempfile.TemporaryDirectory(prefix="coffer-trials-") as temp:
        servers = Servers(Path(temp))
        servers.start_cofferd()
        with Client(servers.admin) as admin:
            for index in range(20):
                admin.put(f"generic/get{index}", {"v": f"value-{index}"})
                admin.grant("trial", f"generic/get{index}")
        totals = Counter()
        for trial in range(1, rounds + 1):
            with Client(servers.admin) as admin:
                token, token_id = admin.issue_token("trial", ttl_seconds=3600)
            answered_gets, answered_puts, answered_overwrites = Counter(), [], []
            stop = threading.Event()

            def getter():
                try:
                    with Client(servers.worker) as worker:
                        while not stop.is_set():
                            index = random.randrange(20)
                            worker.get(f"generic/get{index}", token)
                            answered_gets[f"generic/get{index}"] += 1
                except (CofferError, OSError):
                    pass

            def writer(number: int):
                try:
                    with Client(servers.admin) as admin:
                        count = 0
                        while not stop.is_set():
                            count += 1
                            name = f"generic/t{trial}-w{number}-{count}"
                            admin.put(name, {"v": "1"})
                            answered_puts.append(name)
                            admin.overwrite(name, {"v": "2"}, expected_version=1)
                            answered_overwrites.append(name)
                except (CofferError, OSError):
                    pass

            threads = [threading.Thread(target=getter) for _ in range(4)]
            threads += [threading.Thread(target=writer, args=(n,)) for n in range(2)]
            for thread in threads:
                thread.start()
            time.sleep(random.uniform(0.3, 1.5))
            servers.cofferd.send_signal(signal.SIGKILL)
            servers.cofferd.wait()
            stop.set()
            for thread in threads:
                thread.join()
            servers.start_cofferd()
            with Client(servers.admin) as admin:
                records = trail(admin)
                stored = {info.connection: info.version for info in admin.list()}
            recorded_gets = Counter(r.connection for r in records
                                    if r.operation == "Get" and r.token_id == token_id and r.outcome == pb.OK)
            recorded_puts = {r.connection for r in records if r.operation == "Put" and r.outcome == pb.OK}
            recorded_overwrites = {r.connection for r in records if r.operation == "Overwrite" and r.outcome == pb.OK}
            missing_gets = sum(max(0, n - recorded_gets[c]) for c, n in answered_gets.items())
            missing_changes = sum(name not in recorded_puts for name in answered_puts)
            missing_changes += sum(name not in recorded_overwrites for name in answered_overwrites)
            lost = sum(name not in stored for name in answered_puts)
            lost += sum(stored.get(name, 0) < 2 for name in answered_overwrites)
            totals.update(trials=1, gets=sum(answered_gets.values()), changes=len(answered_puts) + len(answered_overwrites),
                          missing_gets=missing_gets, missing_changes=missing_changes, lost=lost)
            if not quiet:
                print(f"kill -9 trial {trial}: {sum(answered_gets.values())} Gets and "
                      f"{len(answered_puts) + len(answered_overwrites)} changes answered; records missing: "
                      f"{missing_gets} Gets, {missing_changes} changes; acknowledged changes lost: {lost}", flush=True)
        servers.stop_cofferd()
    if quiet:
        return totals
    print(f"\n| kill -9 trials | answered Gets | answered changes | Gets without a record | changes without a record | "
          f"acknowledged changes lost |\n|---|---|---|---|---|---|\n| {totals['trials']} | {totals['gets']:,} | "
          f"{totals['changes']:,} | {totals['missing_gets']} | {totals['missing_changes']} | {totals['lost']} |")
    return totals


def sigterm_rounds(rounds: int) -> None:
    totals = Counter()
    with tempfile.TemporaryDirectory(prefix="coffer-trials-") as temp:
        servers = Servers(Path(temp))
        for round_number in range(1, rounds + 1):
            servers.start_cofferd()
            with Client(servers.admin) as admin:
                key, key_id = admin.public_key()
            sealed = SealedBox(PublicKey(key)).encrypt(b"v")
            writers = []
            for writer in range(40):
                sock = socket.socket(socket.AF_UNIX)
                sock.connect(servers.admin)
                frames = b"".join(frame(pb.Request(id=i, put=pb.PutRequest(
                    connection=f"generic/r{round_number}-w{writer}-{i}", key_id=key_id,
                    fields=[pb.SealedField(name="v", sealed_value=sealed)]))) for i in range(1, 51))
                writers.append((writer, sock, frames))
            for _, sock, frames in writers:
                sock.sendall(frames)
            # Once one answer is in, cofferd is working through the rest.
            first = writers[0][1].recv(1)
            servers.cofferd.send_signal(signal.SIGTERM)
            answered, without_id = {}, 0
            for writer, sock, _ in writers:
                answers = read_answers(sock, first if writer == 0 else b"")
                for answer in answers:
                    if answer.id == 0:
                        without_id += 1
                    answered[f"generic/r{round_number}-w{writer}-{answer.id}"] = answer.status.code
                sock.close()
            status = servers.cofferd.wait(60)
            servers.start_cofferd()
            with Client(servers.admin) as admin:
                stored = {info.connection for info in admin.list()}
            servers.stop_cofferd()
            done_unanswered = sum(1 for name in stored if name.startswith(f"generic/r{round_number}-") and name not in answered)
            lost = sum(1 for name, code in answered.items() if code == pb.OK and name not in stored)
            totals.update(rounds=1, sent=40 * 50, answered=len(answered), unanswered_done=done_unanswered, lost=lost,
                          without_id=without_id, bad_exit=int(status != 0))
            print(f"SIGTERM round {round_number}: {len(answered)} of 2000 answered, {done_unanswered} done without an "
                  f"answer, {lost} acknowledged lost, exit {status}", flush=True)
    print(f"\n| SIGTERM rounds | requests sent | answered | done without an answer | answered without its id | "
          f"acknowledged lost | exits not 0 |\n|---|---|---|---|---|---|---|\n| {totals['rounds']} | {totals['sent']:,} | "
          f"{totals['answered']:,} | {totals['unanswered_done']} | {totals['without_id']} | {totals['lost']} | "
          f"{totals['bad_exit']} |")


ROTATION_CONNECTIONS = 50_000


def expected_values(index: int) -> dict[str, bytes]:
    return {"key": f"key-{index}".encode(), "secret": f"secret-{index:05d}-{'x' * 40}".encode()}


def fill_for_rotation(servers: Servers) -> None:
    fill_granted(servers.admin, ROTATION_CONNECTIONS, lambda i: f"generic/r{i}", expected_values, "rotation")


def rotation_trials(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="coffer-trials-") as temp:
        servers = Servers(Path(temp))
        servers.start_cofferd("--sealed-key-grace", "0")
        started = time.monotonic()
        fill_for_rotation(servers)
        print(f"filled {ROTATION_CONNECTIONS:,} connections ({2 * ROTATION_CONNECTIONS:,} fields) in "
              f"{time.monotonic() - started:.1f} s", flush=True)
        totals = Counter()
        done_at_kill = []
        for trial in range(1, rounds + 1):
            with Client(servers.admin) as admin:
                token, token_id = admin.issue_token("rotation", ttl_seconds=3600)
            outcomes = Counter()
            stop = threading.Event()

            def getter():
                while not stop.is_set():
                    try:
                        with Client(servers.worker, timeout=10) as worker:
                            while not stop.is_set():
                                index = random.randrange(ROTATION_CONNECTIONS)
                                _, values = worker.get(f"generic/r{index}", token)
                                outcomes["ok" if values == expected_values(index) else "wrong values"] += 1
                    except CofferError as error:
                        # cofferd killed or not yet back: not an answer. Anything cofferd answered is one.
                        if error.code == pb.UNAVAILABLE and ("cannot" in str(error) or "closed" in str(error)):
                            outcomes["while down"] += 1
                        else:
                            outcomes[pb.Code.Name(error.code)] += 1
                    except OSError:
                        outcomes["while down"] += 1
                    time.sleep(0.005)

            threads = [threading.Thread(target=getter) for _ in range(8)]
            for thread in threads:
                thread.start()
            time.sleep(0.3)
            with Client(servers.admin) as admin:
                generation = admin.rotate_key().number
            time.sleep(random.uniform(0.2, 1.5))
            servers.cofferd.send_signal(signal.SIGKILL)
            servers.cofferd.wait()
            servers.start_cofferd("--sealed-key-grace", "0")
            with Client(servers.admin) as admin:
                at_restart = admin.key_status().reencryption
            deadline = time.monotonic() + 300
            while True:
                with Client(servers.admin) as admin:
                    status = admin.key_status()
                if status.reencryption.done or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            stop.set()
            for thread in threads:
                thread.join()
            # Every value, read back under the new generation.
            lost = 0
            with Client(servers.worker) as worker:
                for index in range(ROTATION_CONNECTIONS):
                    try:
                        if worker.get(f"generic/r{index}", token)[1] != expected_values(index):
                            lost += 1
                    except CofferError:
                        lost += 1
            old = [g for g in status.generations if g.number < generation and g.state != "retired"]
            left_behind = sum(g.fields + g.records for g in old)
            active_fields = next(g.fields for g in status.generations if g.number == generation)
            with Client(servers.admin) as admin:
                admin.revoke_token(token_id)
                for g in old:
                    admin.retire_key(g.number)
            failed = sum(n for outcome, n in outcomes.items() if outcome not in ("ok", "while down"))
            interrupted = not at_restart.done
            if interrupted:
                done_at_kill.append(at_restart.records_current / max(at_restart.records_total, 1))
            totals.update(trials=1, completed=int(status.reencryption.done), interrupted=int(interrupted),
                          ok=outcomes["ok"], failed=failed, lost=lost + (2 * ROTATION_CONNECTIONS - active_fields),
                          left_behind=left_behind)
            for outcome, n in outcomes.items():
                if outcome not in ("ok", "while down"):
                    totals[f"code {outcome}"] += n
            print(f"rotation trial {trial}: generation {generation}; killed "
                  f"{'during the re-encryption, ' + str(at_restart.records_current) + ' of ' + str(at_restart.records_total) + ' records done at restart' if interrupted else 'after the re-encryption'}; "
                  f"{'completed' if status.reencryption.done else 'NOT COMPLETED'}; Gets {dict(outcomes)}; "
                  f"fields lost {lost}; left under old generations {left_behind}", flush=True)
        servers.stop_cofferd()
    codes = ", ".join(f"{k[5:]} {v}" for k, v in totals.items() if k.startswith("code ")) or "none"
    done_at_kill.sort()
    spread = (f"{100 * done_at_kill[0]:.0f}% / {100 * done_at_kill[len(done_at_kill) // 2]:.0f}% / "
              f"{100 * done_at_kill[-1]:.0f}%") if done_at_kill else "-"
    print(f"\n| rotation trials | killed mid-re-encryption | records re-encrypted when killed (min / median / max) | "
          f"resumed and completed | Gets answered OK | Gets failed (codes) | fields lost | "
          f"left under an old generation |\n|---|---|---|---|---|---|---|---|\n"
          f"| {totals['trials']} | {totals['interrupted']} | {spread} | {totals['completed']} | {totals['ok']:,} | "
          f"{totals['failed']} ({codes}) | {totals['lost']} | {totals['left_behind']} |")


def main() -> None:
    kinds = {"kill": kill_trials, "sigterm": sigterm_rounds, "rotation": rotation_trials}
    chosen = [sys.argv[1]] if len(sys.argv) > 1 else ["kill", "sigterm"]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    subprocess.run(["swift", "build", "-c", "release", "--product", "cofferd"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    for kind in chosen:
        kinds[kind](rounds)


if __name__ == "__main__":
    main()
