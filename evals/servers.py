"""Throwaway servers for the tests and benchmarks that need real ones: a PostgreSQL cluster from
the machine's Debian ``postgresql`` binaries, and ``chroma run`` from the chromadb wheel.

Both run on a free loopback port in a folder of their own and are stopped and removed on leaving.
A missing binary or driver raises :class:`ServerMissing` naming what to install, so a caller
fails with it instead of passing silently.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMA = Path(sys.executable).parent / "chroma"


class ServerMissing(RuntimeError):
    """A server binary or driver is not installed (the message says how to install it)."""


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL cluster in a temp dir on a free loopback port; yields a SQLAlchemy URL without a
    database (``<url>/postgres`` exists; see :func:`create_database`)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise ServerMissing("PostgreSQL server binaries are missing: apt-get install postgresql (Debian/Ubuntu)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ServerMissing(
            "the PostgreSQL driver is missing: pip install -e '.[postgres]' (make test installs it)"
        ) from None
    bin_dir = Path(found[-1]).parent
    # A folder of its own in the system temp dir, owned by nobody when run as root (PostgreSQL
    # refuses to run as root).
    root = Path(tempfile.mkdtemp(prefix="fa-pg-"))
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "nobody")
    data, port = root / "data", free_port()

    def run(*cmd: str) -> None:
        res = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120, check=False, cwd=root)
        if res.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {res.stderr[-2000:]}")

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "fa", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        opts = f"-h 127.0.0.1 -p {port} -k {root}"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start")
        try:
            yield f"postgresql+psycopg://fa@127.0.0.1:{port}"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def create_database(server: str, name: str) -> str:
    """A fresh database ``name`` on ``server`` (dropped first if there); returns its URL."""
    from sqlalchemy import create_engine, text

    engine = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return f"{server}/{name}"


@contextmanager
def chroma_server(data: Path) -> Iterator[tuple[str, int]]:
    """A real Chroma server (the ``chroma`` CLI shipped in the chromadb wheel) on loopback, storing
    in ``data/db``; yields its URL and process id."""
    if not CHROMA.exists():
        raise ServerMissing(f"chromadb's server CLI is missing at {CHROMA}: pip install -e . (chromadb)")
    port = free_port()
    data.mkdir(parents=True, exist_ok=True)
    with open(data / "server.log", "w") as log:
        proc = subprocess.Popen(
            [str(CHROMA), "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 60
            while True:
                try:
                    with urllib.request.urlopen(url + "/api/v2/heartbeat", timeout=1) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        raise RuntimeError(
                            "chroma run did not start: " + (data / "server.log").read_text()[-500:]
                        ) from None
                    time.sleep(0.2)
            yield url, proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=20)
