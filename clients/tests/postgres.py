"""A real PostgreSQL server for the cluster tests: Debian's binaries, run as the unprivileged `postgres` user (the
server refuses root) in a temporary directory, on a free loopback port, with a password (scram-sha-256)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    user = "coffer"
    database = "postgres"

    def __init__(self):
        self.bin = _binaries()
        if self.bin is None:
            raise RuntimeError("PostgreSQL's server is missing: apt-get install postgresql")
        self.owner = "postgres"
        pwd.getpwnam(self.owner)  # Debian's package makes it
        self.directory = Path(tempfile.mkdtemp(prefix="coffer-pg-"))
        os.chmod(self.directory, 0o755)
        shutil.chown(self.directory, user=self.owner)
        self.password = os.urandom(12).hex()
        self.port = _free_port()
        password_file = self.directory / "pw"
        password_file.write_text(self.password)
        shutil.chown(password_file, user=self.owner)
        self._as_owner([str(self.bin / "initdb"), "-D", str(self.directory / "data"), "-U", self.user,
                        "-A", "scram-sha-256", f"--pwfile={password_file}"])
        password_file.unlink()
        self.start()

    def _as_owner(self, argv: list[str]) -> subprocess.CompletedProcess:
        result = subprocess.run(["runuser", "-u", self.owner, "--", *argv], capture_output=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr.decode(errors='replace')}")
        return result

    def start(self) -> None:
        self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.directory / "data"), "-w", "-l",
                        str(self.directory / "server.log"), "-o",
                        f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off", "start"])

    def stop(self) -> None:
        self._as_owner([str(self.bin / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop"])

    @property
    def url(self) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def sql(self, statement: str) -> str:
        """Runs one statement with psql as the database's owner, as someone with database access would."""
        result = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d",
                                 self.database, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", statement],
                                capture_output=True, env=dict(os.environ, PGPASSWORD=self.password), timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.decode(errors='replace')}")
        return result.stdout.decode().strip()

    def close(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass
        shutil.rmtree(self.directory, ignore_errors=True)
