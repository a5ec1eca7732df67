"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl in a temp dir, on a loopback port."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Start with ``Cluster().start()``; ``url`` is a SQLAlchemy URL; ``stop()`` removes it."""

    def __init__(self):
        self.bin = pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="s3t-pg-"))
        self.port = free_port()
        self.as_root = os.geteuid() == 0  # initdb refuses root: run the server as 'postgres'

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> "Cluster":
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "s3t", "--no-sync")
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run("pg_ctl", "-D", str(data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "s3t", "s3t")
        return self

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://s3t@127.0.0.1:{self.port}/s3t"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def require_pg() -> None:
    """Module-level guard of a PostgreSQL test module: skip without the server binaries, except in
    CI, where .ci/run installs them and their absence is an error."""
    if pg_bin() is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("PostgreSQL binaries are missing in CI: .ci/run must install postgresql")
        pytest.skip("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed on this machine",
                    allow_module_level=True)


@pytest.fixture(scope="module")
def pg():
    """A throwaway cluster on a loopback port for the module (import this fixture by name)."""
    cluster = Cluster().start()
    yield cluster
    cluster.stop()
