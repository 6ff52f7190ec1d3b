"""A throw-away PostgreSQL cluster for the tests: initdb in a temp dir, `postgres` on a free
127.0.0.1 port, stopped and deleted after. PostgreSQL refuses to run as root (CI and the dev
machines run as root): then the cluster belongs to, and runs as, user `nobody`.

Missing binaries skip the tests that need them, except under CI (set there), where they fail:
./dev installs Debian's postgresql."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from gateway.cli.launcher import free_port


def bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def require_postgres() -> Path:
    where = bindir()
    if where is None or not (where / "pg_ctl").exists():
        if os.environ.get("CI"):  # CI installs it: missing there is a failure, not a skip
            raise AssertionError("PostgreSQL is missing: ./dev installs it with apt")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    return where


class Cluster:
    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="gw-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # postgres will not run as root
            self.user = "nobody"
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.running = False

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        result = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=120, cwd=self.root
        )
        if result.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {result.stdout}\n{result.stderr}")

    def init(self) -> Cluster:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-sync")  # fmt: skip
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -F "
            "-c max_connections=200 -c shared_buffers=16MB"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                  "-o", options, "-w", "-t", "60", "start")  # fmt: skip
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                      "-t", "60", "stop")  # fmt: skip
            self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database in the cluster; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
