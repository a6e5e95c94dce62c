"""The local embedding and its registration with Chroma (no model download, ever)."""

from __future__ import annotations

from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings

from retrieval.errors import StoreError
from retrieval.store import Store
from retrieval.text import HashEmbedding, identifiers, tokenize


def test_tokens_cover_words_bigrams_and_codes() -> None:
    toks = tokenize("订单ORD-20261120-0042的保温杯漏水了 The lid LEAKS")
    assert "ord-20261120-0042" in toks
    assert "保温杯" in toks and "漏水" in toks and "#杯漏" in toks
    assert "lid" in toks and "leaks" in toks and "the" not in toks
    assert identifiers("SKU TB-PRO-500 订单 2611201234567") == ["tb-pro-500", "2611201234567"]


def test_embedding_is_deterministic_normalised_and_topical() -> None:
    ef = HashEmbedding(dim=256)
    a, b, c = np.asarray(ef(["快递太慢了，一直没到", "快递一直没到，太慢", "客服态度很好"]))
    assert np.isclose(np.linalg.norm(a), 1.0)
    assert np.array_equal(a, np.asarray(ef(["快递太慢了，一直没到"]))[0])
    assert a @ b > 0.6 > a @ c


def test_registered_embedding_survives_reopen(tmp_path: Path) -> None:
    client = chromadb.PersistentClient(path=str(tmp_path / "c"), settings=Settings(anonymized_telemetry=False))
    client.get_or_create_collection("feedback", embedding_function=HashEmbedding(dim=128))
    reopened = chromadb.PersistentClient(path=str(tmp_path / "c"), settings=Settings(anonymized_telemetry=False))
    col = reopened.get_collection("feedback")  # no function passed: Chroma must rebuild ours from config
    col.add(ids=["a"], documents=["快递太慢了"])  # Chroma's default would fetch an ONNX model here
    stored = np.asarray(col.get(ids=["a"], include=["embeddings"])["embeddings"][0])
    assert stored.shape == (128,)
    assert np.allclose(stored, np.asarray(HashEmbedding(dim=128)(["快递太慢了"]))[0], atol=1e-6)
    assert HashEmbedding.build_from_config(HashEmbedding(dim=128).get_config()).dim == 128


def test_store_refuses_a_different_embedding(tmp_path: Path) -> None:
    Store(tmp_path / "h", HashEmbedding(dim=256)).close()
    with pytest.raises(StoreError, match="built with embedding 'hash-v1-256'"):
        Store(tmp_path / "h", HashEmbedding(dim=128))
