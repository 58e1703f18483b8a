"""The example deployments make roles real.

The Kubernetes example is built on this machine from deploy/kubernetes/runner-with-cofferd.yaml itself: each
volume a directory (emptyDirs 0777, as the kubelet makes them), the prepare step run as root with CAP_CHOWN
alone, cofferd and the runner under the uids and groups the manifest gives them, every path mapped to its
volume. The runner's uid then gets values through the worker socket and reaches nothing else. And in a
directory anyone can write, an impostor socket gets nothing from any of the three clients.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import BUILD, C_CLIENT, ROOT, _accepts as accepts

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root and setpriv to act as other uids")

MANIFEST = ROOT / "deploy" / "kubernetes" / "runner-with-cofferd.yaml"
CANARY = "canary-value-7f3a9c"


def as_user(uid: int, gid: int, groups: list[int], argv: list[str]) -> list[str]:
    group_option = f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", group_option, "--", *argv]


class Pod:
    """The manifest's pod, on this machine."""

    def __init__(self, root: Path):
        self.spec = yaml.safe_load(MANIFEST.read_text())["spec"]["template"]["spec"]
        self.root = root
        os.chmod(root, 0o755)
        self.bin = root / "bin"
        self.bin.mkdir(mode=0o755)
        for name in ("cofferd", "coffer"):
            shutil.copy2(BUILD / name, self.bin / name)
            os.chmod(self.bin / name, 0o755)
        self.volumes: dict[str, Path] = {}
        for volume in self.spec["volumes"]:
            directory = root / "v" / volume["name"]
            directory.mkdir(parents=True)
            os.chmod(root / "v", 0o755)
            if "secret" in volume:
                key = directory / "master.key"
                key.write_bytes(os.urandom(32))
                os.chmod(key, volume["secret"]["defaultMode"])
                os.chmod(directory, 0o755)
            else:
                os.chmod(directory, 0o777)  # what the kubelet makes of an emptyDir
        containers = self.spec["initContainers"] + self.spec["containers"]
        self.containers = {c["name"]: c for c in containers}
        self.supplemental = self.spec.get("securityContext", {}).get("supplementalGroups", [])
        self.cofferd: subprocess.Popen | None = None

    def mounts(self, container: str) -> dict[str, Path]:
        return {m["mountPath"]: self.volumes_for(m["name"]) for m in self.containers[container]["volumeMounts"]}

    def volumes_for(self, name: str) -> Path:
        return self.root / "v" / name

    def map(self, container: str, text: str) -> str:
        """A path (or a text holding paths) as the container sees it, mapped to the volumes here."""
        for mount_path, directory in sorted(self.mounts(container).items(), key=lambda item: -len(item[0])):
            text = text.replace(mount_path, str(directory))
        return text

    def identity(self, container: str) -> tuple[int, int, list[int]]:
        context = self.containers[container]["securityContext"]
        return context["runAsUser"], context.get("runAsGroup", context["runAsUser"]), list(self.supplemental)

    def environment(self, container: str, **extra: str) -> dict[str, str]:
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": "/nonexistent"}
        for variable in self.containers[container].get("env", []):
            env[variable["name"]] = self.map(container, variable["value"])
        env.update(extra)
        return env

    def run_as(self, container: str, argv: list[str], stdin: bytes = b"", **env: str) -> subprocess.CompletedProcess:
        uid, gid, groups = self.identity(container)
        return subprocess.run(as_user(uid, gid, groups, argv), input=stdin, capture_output=True,
                              env=self.environment(container, **env), timeout=60)

    def prepare(self) -> subprocess.CompletedProcess:
        script = self.map("prepare", self.containers["prepare"]["command"][2])
        capabilities = self.containers["prepare"]["securityContext"]["capabilities"]
        assert capabilities["drop"] == ["ALL"]
        keep = ",".join("+" + name.lower() for name in capabilities.get("add", []))
        return subprocess.run(["setpriv", f"--bounding-set=-all,{keep}", "--", "/bin/sh", "-c", script],
                              capture_output=True, timeout=60)

    def start_cofferd(self) -> None:
        args = [self.map("cofferd", arg) for arg in self.containers["cofferd"]["args"]]
        uid, gid, groups = self.identity("cofferd")
        self.log = open(self.root / "cofferd.log", "wb")
        self.cofferd = subprocess.Popen(as_user(uid, gid, groups, [str(self.bin / "cofferd"), *args]),
                                        stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=self.environment("cofferd"))
        deadline = time.monotonic() + 15
        while not (accepts(self.socket("admin")) and accepts(self.socket("worker"))):
            assert self.cofferd.poll() is None, (self.root / "cofferd.log").read_text()
            assert time.monotonic() < deadline, "cofferd did not start"
            time.sleep(0.05)

    def socket(self, role: str) -> str:
        arg = next(a for a in self.containers["cofferd"]["args"] if a.startswith(f"--{role}-socket="))
        return self.map("cofferd", arg.split("=", 1)[1])

    def stop(self) -> None:
        if self.cofferd and self.cofferd.poll() is None:
            self.cofferd.terminate()
            self.cofferd.wait(30)


@pytest.fixture
def pod():
    root = Path(tempfile.mkdtemp(prefix="k8s-", dir="/tmp"))
    built = Pod(root)
    try:
        yield built
    finally:
        built.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_runner_gets_values_and_reaches_nothing_else(pod: Pod):
    prepared = pod.prepare()
    assert prepared.returncode == 0, prepared.stderr
    pod.start_cofferd()
    cofferd_uid = pod.identity("cofferd")[0]
    status = Path(f"/proc/{pod.cofferd.pid}/status").read_text()
    assert f"Uid:\t{cofferd_uid}\t" in next(line + "\t" for line in status.splitlines() if line.startswith("Uid:"))

    # An admin, as `kubectl exec -c cofferd -- coffer ...` would: cofferd's own uid on the admin socket.
    admin = {"COFFER_ADMIN_SOCKET": pod.socket("admin"), "COFFER_WORKER_SOCKET": pod.socket("worker")}
    put = pod.run_as("cofferd", ["coffer", "put", "http/api"], stdin=f'{{"baseURL": "https://api.example.com", "token": "{CANARY}"}}'.encode(), **admin)
    assert put.returncode == 0, put.stderr
    assert pod.run_as("cofferd", ["coffer", "grant", "deploy", "http/api"], **admin).returncode == 0
    issued = pod.run_as("cofferd", ["coffer", "token", "issue", "deploy"], **admin)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.decode().strip()

    # The runner: its manifest's uid, groups, environment and mounts.
    runner_volumes = {m["name"] for m in pod.containers["runner"]["volumeMounts"]}
    assert runner_volumes == {"coffer-worker"}
    got = pod.run_as("runner", ["coffer", "get", "http/api", "--field", "token"], COFFER_TOKEN=token)
    assert got.returncode == 0, got.stderr
    assert got.stdout.decode() == CANARY

    # The admin socket: not mounted in the runner; even at its path on this one machine, out of reach.
    listed = pod.run_as("runner", ["coffer", "list"], COFFER_ADMIN_SOCKET=pod.socket("admin"))
    assert listed.returncode == 5, listed.stderr
    assert b"permission denied" in listed.stderr
    granted = pod.run_as("runner", ["coffer", "grant", "runner", "http/api"], COFFER_ADMIN_SOCKET=pod.socket("admin"))
    assert granted.returncode == 5
    # Nor the key, nor a place for a socket of its own beside the worker socket.
    key = pod.map("cofferd", next(a for a in pod.containers["cofferd"]["args"] if a.startswith("--key-file=")).split("=", 1)[1])
    assert pod.run_as("runner", ["cat", key]).returncode != 0
    impostor = str(Path(pod.socket("worker")).parent / "impostor.sock")
    planted = pod.run_as("runner", ["/usr/bin/python3", "-c",
                                    f"import socket; socket.socket(socket.AF_UNIX).bind({impostor!r})"])
    assert planted.returncode != 0 and b"Permission denied" in planted.stderr

    pod.stop()
    log = (pod.root / "cofferd.log").read_text()
    assert CANARY not in log and token not in log


def test_cofferd_refuses_a_socket_directory_others_can_write(pod: Pod):
    # Without the prepare step, the emptyDirs are as the kubelet makes them: 0777.
    prepared = pod.prepare()
    assert prepared.returncode == 0
    shared = pod.volumes_for("coffer-worker")
    os.chmod(shared, 0o777)
    args = [pod.map("cofferd", arg) for arg in pod.containers["cofferd"]["args"]]
    uid, gid, groups = pod.identity("cofferd")
    refused = subprocess.run(as_user(uid, gid, groups, [str(pod.bin / "cofferd"), *args]), capture_output=True,
                             timeout=60, env=pod.environment("cofferd"))
    assert refused.returncode == 7, refused.stderr
    assert b"can be written by its group or others" in refused.stderr


IMPOSTOR = r"""
import os, socket, sys
directory, record = sys.argv[1], sys.argv[2]
listeners = []
for name in ("admin.sock", "worker.sock"):
    s = socket.socket(socket.AF_UNIX)
    s.bind(os.path.join(directory, name))
    s.listen(16)
    listeners.append(s)
open(record + ".ready", "w").close()
import selectors
sel = selectors.DefaultSelector()
for s in listeners:
    sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        conn.settimeout(2)
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        with open(record, "ab") as out:
            out.write(data)
        conn.close()
"""


def test_no_client_sends_anything_to_an_impostor_in_a_shared_directory():
    root = Path(tempfile.mkdtemp(prefix="impostor-", dir="/tmp"))
    os.chmod(root, 0o755)
    shared = root / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # a directory anyone can write, owned by root
    own = root / "impostor"
    own.mkdir()
    os.chown(own, 10001, 10001)
    record = own / "received"
    record.touch()
    os.chown(record, 10001, 10001)
    impostor = subprocess.Popen(as_user(10001, 10001, [], ["/usr/bin/python3", "-c", IMPOSTOR, str(shared),
                                                             str(record)]))
    try:
        deadline = time.monotonic() + 10
        while not Path(str(record) + ".ready").exists():
            assert impostor.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        env = dict(os.environ, COFFER_ADMIN_SOCKET=str(shared / "admin.sock"),
                   COFFER_WORKER_SOCKET=str(shared / "worker.sock"), COFFER_TOKEN="cft_0123456789abcdef_" + CANARY,
                   PYTHONPATH=str(ROOT / "clients" / "python"))
        env.pop("COFFER_SERVER_UID", None)
        clients = {
            "swift": [str(BUILD / "coffer")],
            "c": [str(C_CLIENT)],
            "python": [sys.executable, "-m", "coffer_client"],
        }
        for name, argv in clients.items():
            for command, stdin in ((["get", "http/api"], b""), (["put", "http/api"], b'{"baseURL": "https://api.example.com", "token": "%s"}' % CANARY.encode())):
                result = subprocess.run(argv + command, input=stdin if name != "c" else b"token=" + CANARY.encode(),
                                        capture_output=True, env=env, timeout=30)
                assert result.returncode == 7, f"{name} {command}: {result.stderr!r}"
                assert b"is not cofferd" in result.stderr, f"{name}: {result.stderr!r}"
                assert CANARY.encode() not in result.stderr
        assert record.read_bytes() == b"", "a client sent something to the impostor"

        # Told to trust that uid, a client talks to it: the check above is what kept the token back.
        trusting = dict(env, COFFER_SERVER_UID="10001")
        subprocess.run(clients["python"] + ["get", "http/api"], capture_output=True, env=trusting, timeout=30)
        assert CANARY.encode() in record.read_bytes()
    finally:
        impostor.kill()
        impostor.wait()
        shutil.rmtree(root, ignore_errors=True)


def test_the_systemd_unit_runs_cofferd_as_its_own_user_with_a_socket_directory_only_it_writes():
    unit = (ROOT / "deploy" / "systemd" / "cofferd.service").read_text()
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["User"] == "coffer" and settings["Group"] == "coffer"
    assert int(settings["RuntimeDirectoryMode"], 8) & 0o022 == 0
    assert int(settings["StateDirectoryMode"], 8) == 0o700
    assert "--worker-socket-group coffer-workers" in unit and "--admin-socket-mode 0600" in unit
    sysusers = (ROOT / "deploy" / "systemd" / "coffer.sysusers.conf").read_text()
    assert "u coffer " in sysusers and "g coffer-workers " in sysusers


def test_the_cluster_manifest_keeps_its_promises():
    """deploy/kubernetes/cluster.yaml: every runner pod's cofferd joins through a password file, never argv or the
    runner's environment; the key and the password are 0400 secrets installed for cofferd alone; each pod's store
    starts empty; the runner reaches only the worker socket."""
    documents = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "cluster.yaml").read_text()))
    kinds = {d["kind"]: d for d in documents}
    assert kinds["Service"]["metadata"]["name"] == "coffer-postgres"
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    assert kinds["Deployment"]["spec"]["replicas"] > 1
    cofferd = next(c for c in pod["initContainers"] if c["name"] == "cofferd")
    args = cofferd["args"]
    cluster = next(a for a in args if a.startswith("--cluster="))
    assert "@coffer-postgres:" in cluster and ":" not in cluster.split("//")[1].split("@")[0]  # no password
    assert "--database-password-file=/etc/coffer/database-password" in args
    assert not any("PASSWORD" in e["name"] for c in pod["containers"] + pod["initContainers"] for e in c.get("env", []))
    volumes = {v["name"]: v for v in pod["volumes"]}
    for secret in ("coffer-master-key", "coffer-database-password"):
        assert volumes[secret]["secret"]["defaultMode"] == 0o400
    assert volumes["coffer-data"] == {"name": "coffer-data", "emptyDir": {}}
    assert volumes["coffer-secrets"]["emptyDir"]["medium"] == "Memory"
    runner = pod["containers"][0]
    assert [m["name"] for m in runner["volumeMounts"]] == ["coffer-worker"]
    assert cofferd["securityContext"]["runAsUser"] == 10002 and runner["securityContext"]["runAsUser"] == 10001
