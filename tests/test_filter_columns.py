"""The filter columns a running service keeps in memory (retrieval/columns.py): they pass exactly
the records the SQL filter passes, searches give the same answers with them as without, and they
are never used after a write or a label change has made them out of date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import retrieval.search as search_mod
from retrieval.columns import FILTER_FIELDS
from retrieval.records import Feedback, get_zone, parse_feedback
from retrieval.sample_data import SAMPLE_AS_OF
from retrieval.search import Searcher, SearchFilters, filter_select
from retrieval.store import Store
from retrieval.taxonomy import load_taxonomy
from retrieval.text import HashEmbedding

ZONE = get_zone("Asia/Shanghai")
NOW = datetime(2026, 11, 23, tzinfo=UTC)


def _filters(store: Store) -> list[SearchFilters]:
    """Windows (both ends, one end, none) crossed with each filter field's two most common values
    and a value no record holds, plus pairs of fields."""
    windows = [
        {},
        {"since": SAMPLE_AS_OF - timedelta(days=7), "until": SAMPLE_AS_OF},
        {"since": SAMPLE_AS_OF - timedelta(days=30), "until": SAMPLE_AS_OF},
        {"since": SAMPLE_AS_OF - timedelta(days=45)},
        {"until": SAMPLE_AS_OF - timedelta(days=60)},
    ]
    facets: list[dict[str, str]] = [{}]
    for name in FILTER_FIELDS:
        facets += [{name: v} for v in store.facet_values(name)[:2]]
        facets.append({name: "no-such-value"})
    facets += [
        {"category": store.facet_values("category")[0], "channel": store.facet_values("channel")[0]},
        {"sentiment": "negative", "product": store.facet_values("product")[0]},
    ]
    return [SearchFilters(**w, **f) for w in windows for f in facets]


def test_the_columns_pass_what_the_sql_filter_passes(sample_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sample_store, "_columns", None)  # the shared store is left as it was
    columns = sample_store.filter_columns(wait=True)
    assert columns is not None and len(columns) == sample_store.count("feedback")
    total, sizes = len(columns), []
    for f in _filters(sample_store):
        keep = columns.mask(
            f.since.timestamp() if f.since else None, f.until.timestamp() if f.until else None, f.facets()
        )
        got = set(columns.ids[keep])
        assert got == set(sample_store.ids(filter_select("feedback", f))), f
        sizes.append(len(got))
    assert 0 in sizes and total in sizes and any(0 < n < total for n in sizes)  # the set is not trivial


@pytest.mark.parametrize("exact_max", [2000, 10])  # scored exactly; the broad path (EXACT_CAP too)
def test_searches_answer_the_same_with_the_columns_as_in_sql(
    sample_store: Store, monkeypatch: pytest.MonkeyPatch, exact_max: int
) -> None:
    monkeypatch.setattr(search_mod, "EXACT_MAX", exact_max)
    monkeypatch.setattr(search_mod, "EXACT_CAP", exact_max)
    monkeypatch.setattr(sample_store, "_columns", None)
    searcher = Searcher(sample_store)
    order = sample_store.records("feedback", [_an_id_with_order(sample_store)]).popitem()[1].order_id
    queries = ["包装破损 漏液", "快递三天没更新", "refund still not received", f"订单 {order} 还没发货"]
    filters = [f for f in _filters(sample_store) if f.since is not None][::3]
    in_sql = [[(h.id, h.score) for h in searcher.search(q, k=8, filters=f)] for q in queries for f in filters]
    assert sample_store.filter_columns(wait=True) is not None
    used: list[int] = []
    mask = type(sample_store.filter_columns()).mask
    monkeypatch.setattr(type(sample_store.filter_columns()), "mask", lambda self, *a: used.append(1) or mask(self, *a))
    with_columns = [[(h.id, h.score) for h in searcher.search(q, k=8, filters=f)] for q in queries for f in filters]
    assert len(used) == len(in_sql)  # every search went through the columns
    assert with_columns == in_sql
    assert any(with_columns) and any(not hits for hits in with_columns)


def _an_id_with_order(store: Store) -> str:
    from sqlalchemy import select

    from retrieval.store import feedback_table

    with store.engine.connect() as conn:
        return conn.execute(
            select(feedback_table.c.id).where(feedback_table.c.order_id.is_not(None)).limit(1)
        ).scalar_one()


def _record(rid: str, category: str | None, day: int) -> Feedback:
    row = {"id": rid, "text": f"快递 {rid} 包装坏了", "created_at": f"2026-11-{day:02d} 10:00:00"}
    return parse_feedback(
        row | ({"category": category} if category else {}),
        zone=ZONE,
        imported_at=NOW,
        taxonomy=load_taxonomy(),
    )


def test_a_write_or_a_label_change_puts_the_columns_out_of_date(tmp_path: Path) -> None:
    store = Store(tmp_path / "home", HashEmbedding())
    try:
        store.upsert("feedback", [_record("a", "logistics", 20), _record("b", None, 21)], NOW)
        columns = store.filter_columns(wait=True)
        assert columns is not None and set(columns.ids) == {"a", "b"}
        assert store.filter_columns() is columns  # current: kept

        store.upsert("feedback", [_record("c", "logistics", 22)], NOW)  # a write
        assert store.filter_columns() is None  # out of date, and this process does not keep them
        columns = store.filter_columns(wait=True)
        assert columns is not None and set(columns.ids) == {"a", "b", "c"}

        store.set_labels(["a"], {"category": ("packaging", "human")})  # a label change
        assert store.filter_columns() is None
        store.set_machine_labels({"b": {"category": ("logistics", "model", None)}})  # b had none
        columns = store.filter_columns(wait=True)
        assert columns is not None
        assert set(columns.ids[columns.mask(None, None, {"category": "packaging"})]) == {"a"}
        assert set(columns.ids[columns.mask(None, None, {"category": "logistics"})]) == {"b", "c"}

        # a process that keeps them reads them again in the background, answering in SQL meanwhile
        store.keep_columns = True
        store.upsert("feedback", [_record("d", "logistics", 23)], NOW)
        store._columns_next = 0.0
        assert store.filter_columns() is None
        assert store._columns_job is not None
        store._columns_job.join(timeout=30)
        columns = store.filter_columns()
        assert columns is not None and "d" in set(columns.ids)
        hits = Searcher(store).search("快递", k=5, filters=SearchFilters(category="logistics"))
        assert {h.id for h in hits} == {"b", "c", "d"}
    finally:
        store.close()


def test_the_best_passing_keyword_matches_keep_every_tie_at_the_cut() -> None:
    from retrieval.columns import FilterColumns

    rows = [
        (f"r{i}", 100.0 + i, "logistics" if i % 2 else "packaging", None, None, None, None, None, None)
        for i in range(8)
    ]
    columns = FilterColumns.from_rows(rows).with_keyword_rows([(10 + i, f"r{i}") for i in range(8)] + [(99, "gone")])
    keep = columns.mask(None, None, {"category": "logistics"})  # r1, r3, r5, r7
    rowids = np.array([11, 13, 15, 17, 10, 99, 500])  # 99: a record the columns lack; 500: past the map
    scores = np.array([1.0, 2.0, 2.0, 2.0, 9.0, 9.0, 9.0])
    # r0 scores best but does not pass; r3, r5 and r7 tie, and the tie goes to the smaller id
    assert columns.best_passing(keep, rowids, scores, 2) == ["r3", "r5"]
    assert columns.best_passing(keep, rowids, scores, 10) == ["r3", "r5", "r7", "r1"]
    assert columns.best_passing(keep, rowids[:0], scores[:0], 5) == []
