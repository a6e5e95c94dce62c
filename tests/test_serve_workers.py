"""`serve --workers N` (issue 21): several processes over a real `chroma run` server share one
store; over the embedded Chroma, more than one worker is refused in one line."""

from __future__ import annotations

from pathlib import Path

import httpx
from typer.testing import CliRunner

from cli import app
from evals.loadtest import start_server
from tests.test_chroma_server import chroma_url  # noqa: F401  (the real `chroma run` server fixture)


def _children(pid: int) -> set[int]:
    """Live worker processes started by ``pid`` (from /proc; multiprocessing's own helper process,
    the resource tracker, is not a worker)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cmdline = (stat.parent / "cmdline").read_bytes() if stat.parent.exists() else b""
        if int(fields[1]) == pid and fields[0] != "Z" and b"spawn_main" in cmdline:
            found.add(int(stat.parent.name))
    return found


def test_several_workers_over_the_embedded_chroma_are_refused(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["serve", "--workers", "2", "--home", str(tmp_path)])
    assert res.exit_code == 1 and "needs a Chroma server" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_two_workers_share_one_store(chroma_url: str, tmp_path: Path) -> None:  # noqa: F811
    env = {"FEEDBACK_AGENT_EMBEDDING": "hash", "FEEDBACK_AGENT_API_KEYS": "k"}
    args = ["--workers", "2", "--home", str(tmp_path / "h"), "--chroma-url", chroma_url]
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    proc, base = start_server(env, stderr=log, args=args)
    key = {"Authorization": "Bearer k"}
    try:
        workers = _children(proc.pid)
        assert len(workers) == 2, f"two worker processes: {workers}\n{(tmp_path / 'serve.log').read_text()[-2000:]}"
        records = [
            {"id": f"W{i}", "text": f"订单 26112{i:05d} 的快递一直没到", "created_at": "2026-11-20 10:00"}
            for i in range(6)
        ]
        r = httpx.post(base + "/v1/feedback", json={"records": records}, headers=key, timeout=60)
        assert r.status_code == 200 and len(r.json()["added"]) == 6
        for _ in range(6):  # whichever worker answers sees the same store
            with httpx.Client() as fresh:
                h = fresh.get(base + "/healthz", timeout=5).json()
                assert h["worker"] in workers and h["feedback"] == 6
                hits = fresh.get(base + "/v1/similar", params={"q": "订单 2611200003"}, headers=key, timeout=30)
                assert hits.json()[0]["id"] == "W3"  # the exact order number
        assert _children(proc.pid) == workers  # no worker died on the way
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
