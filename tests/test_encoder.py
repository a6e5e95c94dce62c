"""The bundled sentence encoder (NumPy all-MiniLM-L6-v2), its vector cache, and its use by the classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.classify import Classifier
from agent.config import Settings
from agent.runtime import make_encoder
from retrieval.encoder import SentenceEncoder, VectorCache, bundled_encoder, model_dir
from retrieval.ingest import ingest_file
from retrieval.store import Store
from retrieval.taxonomy import Taxonomy, load_taxonomy
from tests.conftest import NOW, ZONE


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    enc = bundled_encoder()
    assert enc is not None, f"`make` installs the encoder; missing here (path {model_dir()})"
    return enc


def test_vectors_are_unit_length_and_rank_paraphrases_first(encoder: SentenceEncoder) -> None:
    texts = [
        "My card has not arrived yet.",
        "I am still waiting on my card",
        "What exchange rate do you use?",
        "How many euros do I get for a dollar?",
    ]
    v = encoder.encode(texts)
    assert v.shape == (4, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sims = v @ v.T
    assert sims[0, 1] > sims[0, 2] + 0.3 and sims[0, 1] > sims[0, 3] + 0.3
    assert sims[2, 3] > sims[2, 0]
    # batching and input order do not change a text's vector (padding is masked out)
    again = encoder.encode(texts[::-1], batch=1)[::-1]
    assert np.allclose(again, v, atol=1e-5)


@pytest.fixture
def encoded(encoder: SentenceEncoder, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text the encoder is asked to encode during the test, in order."""
    seen: list[str] = []
    real = encoder.encode

    def recording(texts: list[str], batch: int = 32) -> np.ndarray:
        seen.extend(texts)
        return real(texts, batch)

    monkeypatch.setattr(encoder, "encode", recording)
    return seen


def test_undecodable_bytes_from_argv_do_not_crash(tmp_path: Path, encoder: SentenceEncoder) -> None:
    text = "my card \udcff never arrived"  # what Python makes of a stray 0xff byte in argv
    v = VectorCache(tmp_path / "v.sqlite3").encode(encoder, [text])
    assert np.allclose(v, encoder.encode(["my card ? never arrived"]), atol=1e-3)


def test_cache_encodes_each_distinct_text_once(tmp_path: Path, encoder: SentenceEncoder, encoded: list[str]) -> None:
    cache = VectorCache(tmp_path / "v.sqlite3")
    first = cache.encode(encoder, ["refund please", "where is my parcel", "refund please"])
    assert encoded == ["refund please", "where is my parcel"]
    assert np.array_equal(first[0], first[2])
    second = VectorCache(tmp_path / "v.sqlite3").encode(encoder, ["where is my parcel", "refund please"])
    assert encoded == ["refund please", "where is my parcel"]  # nothing re-encoded, even by a new instance
    assert np.array_equal(second, first[[1, 0]])


def _intent_store(tmp_path: Path, name: str) -> tuple[Store, Taxonomy]:
    tax_file = tmp_path / "tax.json"
    tax_file.write_text(
        json.dumps(
            {
                "categories": [
                    {"id": "card_arrival"},
                    {"id": "exchange_rate"},
                    {"id": "lost_or_stolen_card"},
                    {"id": "refund"},
                ]
            }
        )
    )
    tax = load_taxonomy(tax_file)
    data = tmp_path / "in.csv"
    data.write_text(
        "id,text,category\n"
        "A1,I am still waiting on my card,card_arrival\nA2,When will my new card arrive?,card_arrival\n"
        "E1,What exchange rate do you use?,exchange_rate\nE2,How are your currency rates calculated?,exchange_rate\n"
        "L1,Someone stole my card,lost_or_stolen_card\nL2,I lost my card yesterday,lost_or_stolen_card\n"
        "R1,I want my money back for this order,refund\nR2,Please return the payment for the item,refund\n",
        encoding="utf-8",
    )
    store = Store(tmp_path / name)
    ingest_file(store, data, taxonomy=tax, zone=ZONE, now=NOW)
    return store, tax


def test_encoder_features_classify_wording_the_labels_never_used(tmp_path: Path, encoder: SentenceEncoder) -> None:
    # Two labelled examples per intent; the questions share almost no words with them.
    texts = [
        "My wallet was pickpocketed on the train",
        "What's the conversion between pounds and yen",
        "The plastic you mailed me never showed up",
        "Can I get reimbursed?",
    ]
    gold = ["lost_or_stolen_card", "exchange_rate", "card_arrival", "refund"]
    store, tax = _intent_store(tmp_path, "with")
    with_encoder = Classifier(store, tax, encoder=encoder).classify(texts)
    store.close()
    store, tax = _intent_store(tmp_path, "without")
    tfidf_only = [r.category for r in Classifier(store, tax).classify(texts)]
    store.close()
    assert [r.category for r in with_encoder[:2]] == gold[:2]
    # the evidence comes from the same features: "Someone stole my card", though it shares no word
    assert with_encoder[0].neighbors[0] == "L1"
    with_encoder = [r.category for r in with_encoder]
    hits = lambda got: sum(g == p for g, p in zip(gold, got, strict=True))  # noqa: E731
    assert hits(with_encoder) > hits(tfidf_only)


def test_chinese_text_never_reaches_the_encoder(tmp_path: Path, encoder: SentenceEncoder, encoded: list[str]) -> None:
    store, tax = _intent_store(tmp_path, "h")
    clf = Classifier(store, tax, encoder=encoder)
    clf.trained()
    encoded.clear()
    clf.classify(["我的卡还没到", "汇率是多少", "where is my card"])
    assert encoded == ["where is my card"]
    store.close()


def test_encoder_setting_and_model_cache_key(tmp_path: Path, encoder: SentenceEncoder) -> None:
    assert make_encoder(Settings(encoder="off")) is None
    assert make_encoder(Settings(encoder="auto")) is encoder
    store, tax = _intent_store(tmp_path, "h")
    # a model trained with the encoder is never reused without it (their features differ)
    assert Classifier(store, tax, encoder=encoder)._fingerprint() != Classifier(store, tax)._fingerprint()
    store.close()


def test_classify_without_the_package_says_so_and_still_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import agent.runtime
    from cli import app

    monkeypatch.setattr(agent.runtime, "bundled_encoder", lambda: None)  # as after a plain `pip install -e .`
    res = CliRunner().invoke(app, ["classify", "where is my parcel", "--json", "--home", str(tmp_path / "h")])
    assert res.exit_code == 0, res.output
    assert "sentence encoder is not installed" in res.stderr and "pip install --no-deps" in res.stderr
    assert json.loads(res.stdout)[0]["category"] == "logistics"
    off = CliRunner().invoke(
        app,
        ["classify", "where is my parcel", "--json", "--home", str(tmp_path / "h")],
        env={"FEEDBACK_AGENT_ENCODER": "off"},
    )
    assert off.exit_code == 0 and "not installed" not in off.stderr


def test_cache_keeps_training_texts_not_traffic(tmp_path: Path, encoder: SentenceEncoder) -> None:
    import sqlite3

    store, tax = _intent_store(tmp_path, "h")
    clf = Classifier(store, tax, encoder=encoder)
    clf.trained()
    db = store.home / "models" / "vectors.sqlite3"

    def rows() -> int:
        conn = sqlite3.connect(db)
        try:
            return int(conn.execute("SELECT count(*) FROM vectors").fetchone()[0])
        finally:
            conn.close()

    trained = rows()
    assert trained >= 8  # the eight labelled English rows (and English taxonomy descriptions)
    clf.classify(["a question nobody asked before", "another new one"])
    assert rows() == trained  # a service's traffic does not grow the file
    store.close()
