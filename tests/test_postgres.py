"""The SQL mirror on a real PostgreSQL (issue 21): a throwaway server started from the machine's
Debian `postgresql` binaries, the same data ingested there and in the embedded default, and the
same figures out of both. No server binary or no driver fails with what to install."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from agent.app import Workspace
from agent.config import load_settings
from evals.servers import ServerMissing, create_database, postgres_server
from retrieval.sample_data import SAMPLE_AS_OF, SAMPLE_DIR
from retrieval.search import Searcher, SearchFilters, filter_select
from retrieval.store import Store
from retrieval.text import HashEmbedding, tokenize
from tests.test_chroma_server import chroma_url  # noqa: F401  (the real `chroma run` server fixture)

QUESTIONS = Path(__file__).resolve().parent.parent / "evals" / "datasets" / "ask_default.jsonl"


@pytest.fixture(scope="module")
def pg_server() -> Iterator[str]:
    """A PostgreSQL cluster in a temp dir on a free loopback port; yields a URL without a database."""
    try:
        with postgres_server() as url:
            yield url
    except ServerMissing as exc:
        pytest.fail(str(exc))


_database = create_database


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
        # the service's filter columns read from PostgreSQL pass what its SQL passes, and search alike
        columns = pg.store.filter_columns(wait=True)
        assert columns is not None and columns.rowids is None  # index rows are read by id there
        month = {"since": SAMPLE_AS_OF - timedelta(days=30), "until": SAMPLE_AS_OF}
        for f in (SearchFilters(**month), SearchFilters(**month, category="logistics", channel="online_chat")):
            keep = columns.mask(f.since.timestamp(), f.until.timestamp(), f.facets())  # type: ignore[union-attr]
            assert set(columns.ids[keep]) == set(pg.store.ids(filter_select("feedback", f))) != set()
            with_columns = Searcher(pg.store).search("快递一个星期了还没到", k=5, filters=f)
            in_sql = Searcher(local.store).search("快递一个星期了还没到", k=5, filters=f)
            assert [h.text for h in with_columns] == [h.text for h in in_sql] and with_columns
    finally:
        pg.close()
        local.close()


def test_a_large_ingest_leaves_postgresql_vacuumed_and_analyzed(
    pg_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A just-loaded table has no planner statistics until autovacuum comes round: an ingest that
    wrote SETTLE_AFTER records or more vacuums and analyzes what it wrote; a small one does not."""
    import retrieval.store as store_mod

    def stats(ws: Workspace) -> dict[str, tuple[object, object]]:
        with ws.store.engine.connect() as conn:
            got = conn.execute(
                text(
                    "SELECT relname, last_vacuum, last_analyze FROM pg_stat_user_tables WHERE relname IN ('feedback', 'feedback_index')"
                )
            ).all()
        return {r[0]: (r[1], r[2]) for r in got}

    ws = Workspace(load_settings(home=tmp_path / "small", embedding="hash", db_url=_database(pg_server, "fa_small")))
    try:
        ws.ingest_file(SAMPLE_DIR / "feedback.csv")
        assert all(v == (None, None) for v in stats(ws).values())  # under the threshold: left to autovacuum
    finally:
        ws.close()
    monkeypatch.setattr(store_mod, "SETTLE_AFTER", 100)
    ws = Workspace(load_settings(home=tmp_path / "large", embedding="hash", db_url=_database(pg_server, "fa_large")))
    try:
        ws.ingest_file(SAMPLE_DIR / "feedback.csv")
        got = stats(ws)
        assert set(got) == {"feedback", "feedback_index"} and all(v[0] and v[1] for v in got.values()), got
    finally:
        ws.close()


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


def test_keyword_search_lives_in_postgresql_and_ranks_as_fts5(pg_server: str, tmp_path: Path) -> None:
    """The keyword index is PostgreSQL's own (a tsvector of the tokens, GIN-indexed, and a term
    table): nothing is kept in the home, and bm25 gives the scores SQLite's FTS5 gives."""
    pg = _load(tmp_path / "pg", _database(pg_server, "fa_kw"), journeys=False)
    local = _load(tmp_path / "local", None, journeys=False)
    try:
        assert pg.store.kw_engine is pg.store.engine and pg.store.kw_dialect == "postgresql"
        assert not (tmp_path / "pg" / "keywords.sqlite3").exists()
        for query in ("杯盖漏水 保温杯", "快递 签收 没收到", "refund still not received", "SKU-TB-500 漏水"):
            tokens = tokenize(query)
            assert pg.store.keyword_terms("feedback", tokens) == local.store.keyword_terms("feedback", tokens)
            a, b = pg.store.keyword("feedback", tokens, 20), local.store.keyword("feedback", tokens, 20)
            assert a, query
            # equal scores to 1e-6, and the same records at each score (records of equal score may
            # come in another order; at the cut-off score, which of them made the 20 may differ)
            assert [round(s, 6) for _, s in a] == [round(s, 6) for _, s in b], query
            cut = round(a[-1][1], 6)
            found_a, found_b = (
                pg.store.records("feedback", [i for i, _ in a]),
                local.store.records("feedback", [i for i, _ in b]),
            )
            above_a = sorted((round(s, 6), found_a[i].text) for i, s in a if round(s, 6) > cut)
            above_b = sorted((round(s, 6), found_b[i].text) for i, s in b if round(s, 6) > cut)
            assert above_a == above_b and len(above_a) >= 3, query
        # an update moves a record's terms: the old words no longer find it, the new ones do
        path = tmp_path / "one.csv"
        path.write_text("id,text,created_at\nZ1,独一无二的蓝莓味道,2026-11-20 10:00\n", encoding="utf-8")
        pg.ingest_file(path)
        assert [i for i, _ in pg.store.keyword("feedback", tokenize("蓝莓"), 5)] == ["Z1"]
        path.write_text("id,text,created_at\nZ1,完全不同的草莓包装,2026-11-20 10:00\n", encoding="utf-8")
        pg.ingest_file(path)
        assert pg.store.keyword("feedback", tokenize("蓝莓"), 5) == []
        assert [i for i, _ in pg.store.keyword("feedback", tokenize("草莓"), 5)] == ["Z1"]
    finally:
        pg.close()
        local.close()


def test_writers_on_two_machines_queue_on_an_advisory_lock(pg_server: str, tmp_path: Path) -> None:
    """Two homes (two machines) on one PostgreSQL store take turns: the writer lock and the fill
    lock are advisory locks in the database, not files in a home."""
    import threading
    import time

    url = _database(pg_server, "fa_locks")
    a = Store(tmp_path / "machine-a", HashEmbedding(), db_url=url)
    b = Store(tmp_path / "machine-b", HashEmbedding(), db_url=url)
    try:
        order: list[str] = []

        def write_from_b() -> None:
            with b.writer_lock():
                order.append("b in")

        with a.writer_lock():
            order.append("a in")
            waiter = threading.Thread(target=write_from_b)
            waiter.start()
            time.sleep(0.5)
            assert order == ["a in"], "machine b must wait while machine a writes"
            with b.try_lock("fill") as got_b, a.try_lock("fill") as got_a:
                assert got_b and not got_a
                assert a.lock_holder("fill") is not None
            assert a.lock_holder("fill") is None
            order.append("a out")
        waiter.join(timeout=10)
        assert order == ["a in", "a out", "b in"]
        assert not list(tmp_path.glob("*/.ingest.lock")), "no lock file in either home"
    finally:
        a.close()
        b.close()


def test_a_home_keyword_file_moves_into_postgresql(pg_server: str, tmp_path: Path) -> None:
    """A store made before PostgreSQL held the keyword index kept it in <home>/keywords.sqlite3:
    opened now, the index is copied into PostgreSQL once and the file set aside."""
    import sqlite3

    url = _database(pg_server, "fa_move")
    local = _load(tmp_path / "local", None, journeys=False)
    pg = _load(tmp_path / "pg", url, journeys=False)
    try:
        expected = pg.store.keyword("feedback", tokenize("杯盖漏水"), 10)
    finally:
        pg.close()
    # the old layout: the index rows in a SQLite file in the home, none in PostgreSQL
    old = tmp_path / "pg" / "keywords.sqlite3"
    src = sqlite3.connect(tmp_path / "local" / "mirror.sqlite3")
    dst = sqlite3.connect(old)
    for table in ("feedback_index", "resolution_index"):
        dst.execute(f"CREATE TABLE {table} (id VARCHAR(200) PRIMARY KEY, tokens TEXT NOT NULL, vec BLOB NOT NULL)")
        dst.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", src.execute(f"SELECT id, tokens, vec FROM {table}"))
    dst.commit()
    dst.close()
    src.close()
    local.close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM feedback_index"))
        conn.execute(text("DELETE FROM resolution_index"))
        conn.execute(text("DELETE FROM kw_vocab"))
    engine.dispose()
    moved = Store(tmp_path / "pg", HashEmbedding(), db_url=url)
    try:
        assert not old.exists() and old.with_name("keywords.sqlite3.moved-to-postgresql").exists()
        assert moved.keyword("feedback", tokenize("杯盖漏水"), 10) == expected
        assert moved.index_rows("feedback", [expected[0][0]])[0] == [expected[0][0]]
    finally:
        moved.close()
