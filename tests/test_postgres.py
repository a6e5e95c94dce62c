"""The SQL mirror on a real PostgreSQL (issue 21): a throwaway server started from the machine's
Debian `postgresql` binaries, the same data ingested there and in the embedded default, and the
same figures out of both. No server binary or no driver fails with what to install."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from agent.app import Workspace
from agent.config import load_settings
from retrieval.sample_data import SAMPLE_DIR
from retrieval.store import Store
from retrieval.text import HashEmbedding
from tests.test_chroma_server import chroma_url  # noqa: F401  (the real `chroma run` server fixture)

QUESTIONS = Path(__file__).resolve().parent.parent / "evals" / "datasets" / "ask_default.jsonl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    """A PostgreSQL cluster in a temp dir on a free loopback port; yields a URL without a database."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL server binaries are missing: apt-get install postgresql (Debian/Ubuntu)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("the PostgreSQL driver is missing: pip install -e '.[postgres]' (make test installs it)")
    bin_dir = Path(found[-1]).parent
    # Outside pytest's temp tree (its folders are private to the user running the tests): a folder
    # of its own in the system temp dir, owned by nobody when run as root (PostgreSQL refuses root).
    root = Path(tempfile.mkdtemp(prefix="fa-pg-"))
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "nobody")
    data, port = root / "data", _free_port()

    def run(*cmd: str) -> None:
        res = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120, check=False, cwd=root)
        assert res.returncode == 0, res.stderr[-2000:]

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


def _database(server: str, name: str) -> str:
    engine = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return f"{server}/{name}"


def _load(home: Path, db_url: str | None, chroma: str | None = None, journeys: bool = True) -> Workspace:
    ws = Workspace(load_settings(home=home, embedding="hash", db_url=db_url, chroma_url=chroma))
    files = [("feedback.csv", "feedback"), ("resolutions.csv", "resolution")]
    if journeys:
        files += [("journeys.csv", "feedback"), ("journey_resolutions.csv", "resolution")]
    for name, kind in files:
        ws.ingest_file(SAMPLE_DIR / name, kind=kind)  # type: ignore[arg-type]
    return ws


def test_postgresql_mirror_gives_the_embedded_store_figures(pg_server: str, tmp_path: Path) -> None:
    import json

    pg = _load(tmp_path / "pg", _database(pg_server, "fa_same"))
    local = _load(tmp_path / "local", None)
    try:
        assert pg.store.engine.dialect.name == "postgresql" and local.store.engine.dialect.name == "sqlite"
        assert pg.status().consistent and pg.status().facts["feedback"] == local.status().facts["feedback"]
        rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines()]
        for row in rows:
            a = pg.ask(row["question"], as_of=row["as_of"])
            b = local.ask(row["question"], as_of=row["as_of"])
            assert a.answer == b.answer, row["question"]
        for ask in ("上周回头客的物流投诉有多少？", "我们的 NPS 是多少？", "最近30天哪些客户投诉最多？"):
            assert pg.ask(ask, as_of="2026-11-23").answer == local.ask(ask, as_of="2026-11-23").answer
        week = pg.report_week("2026-W47")
        ra, rb = pg.report(week, charts=False), local.report(week, charts=False)
        assert ra.executive_summary == rb.executive_summary and ra.headline == rb.headline
        assert ra.csat_by_product == rb.csat_by_product
        qa, qb = pg.queue(as_of="2026-11-23"), local.queue(as_of="2026-11-23")
        assert [i.id for i in qa.items] == [i.id for i in qb.items]
        xa, xb = pg.at_risk(as_of="2026-11-23", limit=10), local.at_risk(as_of="2026-11-23", limit=10)
        assert [(i.customer, i.risk) for i in xa.items] == [(i.customer, i.risk) for i in xb.items]
        # the alert outbox lives in the mirror: the same alerts, recorded once, on PostgreSQL too
        wa, wb = pg.watch(), local.watch()
        assert [m.key for m in wa.new] == [m.key for m in wb.new] and wa.new
        assert pg.watch().known == len(wa.new) and not pg.watch().new
        sa = pg.similar("快递一个星期了还没到", k=5)
        sb = local.similar("快递一个星期了还没到", k=5)
        # identical texts have identical vectors: ties may swap ids between the two, never content
        assert [h.text for h in sa.hits] == [h.text for h in sb.hits]
    finally:
        pg.close()
        local.close()


def test_a_previous_schema_on_postgresql_opens_in_place(pg_server: str, tmp_path: Path) -> None:
    url = _database(pg_server, "fa_upgrade")
    path = tmp_path / "fb.csv"
    path.write_text("id,text,created_at\nA,物流太慢,2026-11-20 10:00\n", encoding="utf-8")
    with Workspace.open(load_settings(home=tmp_path / "h", embedding="hash", db_url=url)) as ws:
        ws.ingest_file(path)
    engine = create_engine(url)
    with engine.begin() as conn:
        for column in ("customer_id", "nps", "label_basis"):
            conn.execute(text(f"ALTER TABLE feedback DROP COLUMN {column}"))
        conn.execute(text("UPDATE store_meta SET value = '2' WHERE key = 'schema'"))
    Store(tmp_path / "h", HashEmbedding(), db_url=url).close()
    with engine.connect() as conn:
        columns = {
            r[0]
            for r in conn.execute(
                text("SELECT column_name FROM information_schema.columns WHERE table_name = 'feedback'")
            )
        }
        assert {"customer_id", "nps", "label_basis"} <= columns
        assert conn.execute(text("SELECT count(*) FROM feedback")).scalar() == 1
    engine.dispose()


def test_postgresql_and_a_chroma_server_together(pg_server: str, chroma_url: str, tmp_path: Path) -> None:  # noqa: F811
    """The shape a team outgrowing one laptop runs: the mirror on PostgreSQL, vectors on `chroma run`."""
    import json

    both = _load(tmp_path / "both", _database(pg_server, "fa_both"), chroma=chroma_url, journeys=False)
    local = _load(tmp_path / "local", None, journeys=False)
    try:
        status = both.status()
        assert status.consistent and status.facts["chroma_feedback"] == status.facts["feedback"] == 1513
        for line in QUESTIONS.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            assert (
                both.ask(row["question"], as_of=row["as_of"]).answer
                == local.ask(row["question"], as_of=row["as_of"]).answer
            ), row["question"]
        hits = both.similar("订单 2611230024 的快递怎么还没到", k=3).hits
        assert [h.text for h in hits] == [h.text for h in local.similar("订单 2611230024 的快递怎么还没到", k=3).hits]
    finally:
        both.close()
        local.close()
