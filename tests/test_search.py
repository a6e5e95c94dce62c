"""Hybrid similar-case search on the bundled sample: neighbours, filters, exact codes, links."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

import retrieval.search as search_mod
from retrieval.sample_data import SAMPLE_AS_OF, SPIKE_PRODUCT
from retrieval.search import Searcher, SearchFilters
from retrieval.store import Store


def categories(hits) -> list[str]:
    return [h.record["category"] for h in hits]


@pytest.mark.parametrize(
    ("query", "category"),
    [
        ("快递一个星期了还没到，物流信息一直不更新", "logistics"),
        ("退款申请两周了钱还没到账", "after_sales"),
        ("优惠券结算的时候用不了", "price_promotion"),
        ("APP一打开就闪退", "app_website"),
        ("The box arrived crushed and the item inside was dented", "packaging"),
        ("I was charged twice for the same order", "app_website"),
        ("Nobody from support has replied to my emails", "customer_service"),
        ("Love it, great quality, will buy again", "praise"),
    ],
)
def test_neighbours_share_the_topic(sample_store: Store, query: str, category: str) -> None:
    hits = Searcher(sample_store).search(query, k=5)
    assert len(hits) == 5
    assert hits[0].record["category"] == category, [h.text for h in hits]
    assert categories(hits).count(category) >= 3, [h.text for h in hits]
    assert hits[0].score >= hits[-1].score


def test_english_query_prefers_english_records(sample_store: Store) -> None:
    hits = Searcher(sample_store).search("Tracking says delivered but there is no parcel", k=3)
    assert all(h.record["language"] == "en" for h in hits)
    assert all(h.record["category"] == "logistics" for h in hits)


def test_time_window_and_product_filter(sample_store: Store) -> None:
    f = SearchFilters(since=SAMPLE_AS_OF - timedelta(days=7), until=SAMPLE_AS_OF, product=SPIKE_PRODUCT)
    hits = Searcher(sample_store).search("杯盖漏水", k=10, filters=f)
    assert len(hits) == 10
    for h in hits:
        assert h.record["product"] == SPIKE_PRODUCT
        assert f.since.timestamp() <= h.record["created_ts"] <= f.until.timestamp()
    assert sum("漏" in h.text for h in hits) >= 8


def test_category_and_channel_filters(sample_store: Store) -> None:
    f = SearchFilters(category="logistics", channel="weibo")
    hits = Searcher(sample_store).search("太慢了", k=8, filters=f)
    assert hits and all(h.record["category"] == "logistics" and h.record["channel"] == "weibo" for h in hits)


def test_filter_with_no_match_returns_nothing(sample_store: Store) -> None:
    f = SearchFilters(product="不存在的商品")
    assert Searcher(sample_store).search("物流", filters=f) == []


def _some_ids(store: Store, n: int) -> list[str]:
    from sqlalchemy import select

    from retrieval.store import feedback_table

    stmt = select(feedback_table.c.id).where(feedback_table.c.order_id.is_not(None)).order_by(feedback_table.c.id)
    with store.engine.connect() as conn:
        return [r[0] for r in conn.execute(stmt.limit(n))]


def test_exact_order_number_is_first(sample_store: Store) -> None:
    (rid,) = _some_ids(sample_store, 1)
    order = sample_store.records("feedback", [rid])[rid].order_id
    assert order and order.isdigit()
    hits = Searcher(sample_store).search(f"我的订单{order}怎么还没消息", k=3)
    assert hits[0].record["order_id"] == order and "exact" in hits[0].matched_by


def test_feedback_hits_carry_their_resolution(sample_store: Store) -> None:
    hits = Searcher(sample_store).search("显示已签收但是没收到包裹", k=10)
    linked = [h for h in hits if h.resolutions]
    assert linked, "the sample links about half of the complaints to a resolution"
    assert all(r["feedback_id"] == h.id for h in linked for r in h.resolutions)


def test_resolution_search_returns_linked_feedback(sample_store: Store) -> None:
    hits = Searcher(sample_store).search("补偿差价", k=3, kind="resolution")
    assert hits and all(h.kind == "resolution" and h.feedback is not None for h in hits)
    assert all("差价" in h.text for h in hits)
    f = SearchFilters(category="price_promotion")
    filtered = Searcher(sample_store).search("退款", k=5, kind="resolution", filters=f)
    assert filtered and all(h.feedback["category"] == "price_promotion" for h in filtered)


def test_broad_and_narrow_strategies_agree(sample_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The oversampling path must return what exact scoring of the candidates returns."""
    f = SearchFilters(since=SAMPLE_AS_OF - timedelta(days=30), until=SAMPLE_AS_OF)
    searcher = Searcher(sample_store)
    narrow = searcher.search("包装破损", k=10, filters=f)
    monkeypatch.setattr(search_mod, "EXACT_MAX", 10)
    broad = searcher.search("包装破损", k=10, filters=f)
    # identical texts have identical vectors, so compare texts: ties may swap ids, never content
    assert [h.text for h in broad] == [h.text for h in narrow]
    for h in broad:
        assert f.since.timestamp() <= h.record["created_ts"] <= f.until.timestamp()


def test_a_selective_filter_over_exact_max_is_scored_exactly(
    sample_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past EXACT_MAX, a filter that passes few records of the store (the broad path would ask the
    ANN for many times as many) is still scored exactly; a broad one still asks the ANN."""
    searcher = Searcher(sample_store)
    monkeypatch.setattr(search_mod, "EXACT_MAX", 10)
    asked: list[int] = []
    ann = sample_store.ann
    monkeypatch.setattr(sample_store, "ann", lambda kind, vector, n: asked.append(n) or ann(kind, vector, n))
    narrow = SearchFilters(since=SAMPLE_AS_OF - timedelta(days=30), until=SAMPLE_AS_OF, category="packaging")
    passing = sample_store.count("feedback", search_mod.filter_select("feedback", narrow))
    assert 10 < passing <= search_mod._exact_limit(40, sample_store.count("feedback"))
    hits = searcher.search("包装破损", k=10, filters=narrow)
    assert asked == [] and len(hits) == 10 and all(h.record["category"] == "packaging" for h in hits)
    searcher.search("包装破损", k=10, filters=SearchFilters(since=SAMPLE_AS_OF - timedelta(days=60)))
    assert asked  # most of the store passes: the oversampled ANN path


def test_exact_vector_scores_match_chroma(sample_store: Store) -> None:
    """Stored vectors (used for narrow filters) are the same vectors Chroma indexes."""
    ids = _some_ids(sample_store, 5)
    got = sample_store.collection("feedback").get(ids=ids, include=["embeddings"])
    assert sorted(got["ids"]) == sorted(ids)
    mids, _, mat = sample_store.index_rows("feedback", got["ids"])
    assert mids == got["ids"] or sorted(mids) == sorted(got["ids"])
    order = [mids.index(i) for i in got["ids"]]
    assert np.allclose(np.asarray(got["embeddings"]), mat[order], atol=1e-6)


def test_k_must_be_positive(sample_store: Store) -> None:
    with pytest.raises(ValueError):
        Searcher(sample_store).search("x", k=0)


def test_keyword_query_keeps_rare_terms_and_drops_noise(sample_store: Store) -> None:
    from retrieval.text import tokenize

    terms = [t for t, _ in sample_store.keyword_terms("feedback", tokenize("快递显示已签收但是我没收到，订单号在这"))]
    assert "#快递" not in terms  # repeats the word 快递
    assert "签收" in terms  # rare and telling
    assert "没" not in terms  # in far more than 5% of records (and 200 docs here)
    (only,) = sample_store.keyword_terms("feedback", tokenize("没"))  # never left empty
    assert only[0] == "没" and only[1] > 200
    assert sample_store.keyword_terms("feedback", tokenize("量子纠缠")) == []  # unknown terms


def test_python_bm25_ranks_like_fts5() -> None:
    """Narrow filtered searches score keywords in Python; they must agree with the FTS5 index."""
    import sqlite3

    from retrieval.search import bm25

    docs = [
        "快递 太慢 快递 没到",
        "包装 破损 快递",
        "客服 不 回复",
        "快递 丢件 客服 不 理",
        "好评 快递 很快 很快 很快 很快",
    ]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(tokens)")
    conn.executemany("INSERT INTO t(rowid, tokens) VALUES (?, ?)", list(enumerate(docs)))
    terms = [("快递", 4), ("客服", 2), ("很快", 1)]
    fts = conn.execute("SELECT rowid, -bm25(t) FROM t WHERE t MATCH '快递 OR 客服 OR 很快'").fetchall()
    ours = bm25(terms, docs, len(docs))
    for rowid, score in fts:
        assert abs(ours[rowid] - score) < 1e-6 * max(1.0, score)


def test_exact_sku_matches_rank_first(sample_store: Store) -> None:
    hits = Searcher(sample_store).search("TB-PRO-500 的杯盖漏水", k=5)
    assert all(h.record["sku"] == "TB-PRO-500" and "exact" in h.matched_by for h in hits)
    assert sum("漏" in h.text for h in hits) >= 3  # among the exact matches, the relevant ones first
