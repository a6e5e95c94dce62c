"""Tokens and embeddings, shared by the keyword index and the vector store.

One tokenizer feeds both sides of hybrid search: jieba words for Chinese, lower-cased words for
English, CJK character bigrams (robust to segmentation differences) and whole identifiers such as
``ORD-20261120-0042`` or ``SKU-AB123`` (so exact order numbers match). The default embedding
hashes those tokens into a fixed-size, L2-normalised vector: local, multilingual, deterministic
and download-free. An OpenAI-compatible embeddings endpoint is the configurable alternative.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import zlib
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

_IDENT = re.compile(r"[a-z0-9]+(?:[-_/][a-z0-9]+)+|[a-z]*\d[a-z0-9]{3,}|[a-z]{2,}\d+[a-z0-9]*")
_WORD = re.compile(r"[a-z][a-z']+|\d+")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_CJK_CHAR = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

# Function words that carry no topic in feedback (kept short on purpose: negations stay).
_STOP = frozenset(
    """的 了 是 我 你 他 她 它 们 这 那 就 都 也 还 和 与 在 有 吧 吗 呢 啊 呀 哦 嗯 个 一 把 被
    给 让 又 很 太 得 地 着 过 么 啦 哈 呵 而 及 或 但 却 对 从 到 为 于 之 其 此 并 等 能 会 要 想
    a an the and or but of to in on at for with by from is are was were be been am it its this
    that these those i me my we our you your he she they them his her as so if do does did have
    has had will would can could should just very really""".split()
)


@cache
def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


@cache
def _idf() -> tuple[dict[str, float], float]:
    """jieba's shipped IDF table (``jieba/analyse/idf.txt``, in the package) and its median."""
    from importlib.resources import files

    table: dict[str, float] = {}
    with files("jieba").joinpath("analyse/idf.txt").open("r", encoding="utf-8") as fh:
        for line in fh:
            word, _, value = line.rstrip("\n").partition(" ")
            if value:
                table[word] = float(value)
    values = sorted(table.values())
    return table, values[len(values) // 2]


def normalize_text(text: str) -> str:
    """NFKC (full-width -> half-width) and lower case."""
    return unicodedata.normalize("NFKC", text).lower()


def identifiers(text: str) -> list[str]:
    """Order numbers, SKUs and similar codes in ``text`` (lower-cased, whole)."""
    return [m for m in _IDENT.findall(normalize_text(text)) if any(c.isdigit() for c in m)]


def tokenize(text: str) -> list[str]:
    """Tokens for indexing and embedding (with repeats, in order)."""
    norm = normalize_text(text)
    tokens = [m for m in _IDENT.findall(norm) if any(c.isdigit() for c in m)]
    for run in _CJK_RUN.findall(norm):
        if len(run) == 1:
            if run not in _STOP:
                tokens.append(run)
            continue
        tokens.extend(w for w in _jieba().lcut(run, HMM=False) if w not in _STOP)
        tokens.extend("#" + run[i : i + 2] for i in range(len(run) - 1))
    tokens.extend(w for w in _WORD.findall(norm) if w not in _STOP and len(w) > 1)
    return tokens


def _weight(token: str) -> float:
    if token.startswith("#"):  # CJK bigram: a backstop for segmentation, worth less than a word
        return 0.35
    if _CJK_CHAR.match(token):
        idf, median = _idf()
        return idf.get(token, median) / median
    if any(c.isdigit() for c in token):
        return 1.5 if len(token) >= 5 else 0.5  # identifiers are decisive, small numbers not
    return 1.0


@cache
def _slot(token: str, dim: int) -> tuple[int, float]:
    h = zlib.crc32(token.encode("utf-8"))
    return h % dim, (1.0 if (h >> 31) & 1 else -1.0)


def hash_embed(token_lists: Sequence[Sequence[str]], dim: int) -> np.ndarray:
    """Hash token lists into L2-normalised float32 vectors (signed feature hashing, sublinear tf)."""
    out = np.zeros((len(token_lists), dim), dtype=np.float32)
    for row, tokens in enumerate(token_lists):
        counts: dict[str, int] = {}
        for t in tokens:
            counts[t] = counts.get(t, 0) + 1
        vec = out[row]
        for t, n in counts.items():
            slot, sign = _slot(t, dim)
            vec[slot] += sign * _weight(t) * (1.0 + np.log(n))
        norm = float(np.linalg.norm(vec))
        if norm > 0:
            vec /= norm
    return out


class NormalisedVectors:
    """Chroma's space hooks for embeddings that return L2-normalised vectors."""

    def default_space(self) -> Space:
        """Vectors are normalised: cosine distance."""
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        """Spaces that make sense for normalised vectors."""
        return ["cosine", "ip", "l2"]


@register_embedding_function
class HashEmbedding(NormalisedVectors, EmbeddingFunction[Documents]):
    """Local multilingual embedding: jieba words + CJK bigrams + identifiers, hashed.

    Registered with Chroma (``name``/``get_config``/``build_from_config``) so a collection
    reopened by any client rebuilds this function instead of Chroma's downloading default.
    """

    VERSION = 1
    keyword_weight: float | None = None  # None: rank fusion with the keyword list (RRF)
    evidence_threshold = 0.3  # reply evidence: a past case at least this similar
    cluster_distance = 0.55  # root-cause clusters: average-linkage cosine distance
    center_languages = False  # word hashes carry no language component to remove
    near_duplicate = 0.95

    def __init__(self, dim: int = 256) -> None:
        """Create the embedding function with ``dim`` hash buckets."""
        if not 32 <= dim <= 4096:
            raise ValueError(f"embedding dim must be between 32 and 4096, got {dim}")
        self.dim = dim

    def __call__(self, input: Documents) -> Embeddings:  # noqa: A002 (Chroma's signature)
        """Embed documents."""
        return list(self.embed_tokens([tokenize(t) for t in input]))

    def embed_tokens(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """Embed already-tokenized texts (ingestion tokenizes once for both indexes)."""
        return hash_embed(token_lists, self.dim)

    @staticmethod
    def name() -> str:
        """Name under which Chroma persists this function."""
        return "feedback-agent-hash"

    def get_config(self) -> dict[str, Any]:
        """Serializable configuration."""
        return {"dim": self.dim, "version": self.VERSION}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> HashEmbedding:
        """Rebuild from :meth:`get_config` output."""
        return HashEmbedding(dim=int(config.get("dim", 256)))

    @property
    def label(self) -> str:
        """Human-readable name recorded by evals."""
        return f"hash-v{self.VERSION}-{self.dim}"


@register_embedding_function
class OpenAIEndpointEmbedding(EmbeddingFunction[Documents]):
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint.

    The API key is read from ``OPENAI_API_KEY`` at call time and never stored in the config.
    """

    keyword_weight: float | None = None
    evidence_threshold = 0.3
    cluster_distance = 0.55
    center_languages = False
    near_duplicate = 0.95

    def __init__(
        self, model: str, base_url: str | None = None, batch_size: int = 256, redact_pii: bool = False
    ) -> None:
        """Configure the endpoint; the client is created lazily on first use. With ``redact_pii``
        personal data is replaced by placeholders before texts are sent."""
        self.model = model
        self.redact_pii = redact_pii
        self.base_url = base_url
        self.batch_size = batch_size
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(base_url=self.base_url, max_retries=3, timeout=60)
        return self._client

    def __call__(self, input: Documents) -> Embeddings:  # noqa: A002
        """Embed documents through the endpoint, in batches."""
        vectors: list[np.ndarray] = []
        if self.redact_pii:
            from retrieval.pii import redact

            input = [redact(t) for t in input]  # noqa: A001
        for i in range(0, len(input), self.batch_size):
            resp = self._get_client().embeddings.create(model=self.model, input=list(input[i : i + self.batch_size]))
            vectors.extend(np.asarray(d.embedding, dtype=np.float32) for d in resp.data)
        return vectors

    def embed_tokens(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """Not used: endpoint embeddings take raw text (see :meth:`embed_texts`)."""
        raise NotImplementedError

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed raw texts, normalised."""
        arr = np.asarray(self(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        return arr / np.where(norms == 0, 1, norms)

    @staticmethod
    def name() -> str:
        """Name under which Chroma persists this function."""
        return "feedback-agent-openai"

    def get_config(self) -> dict[str, Any]:
        """Serializable configuration (no secrets)."""
        return {"model": self.model, "base_url": self.base_url}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> OpenAIEndpointEmbedding:
        """Rebuild from :meth:`get_config` output."""
        return OpenAIEndpointEmbedding(model=config["model"], base_url=config.get("base_url"))

    def default_space(self) -> str:  # type: ignore[override]
        """Cosine, as most embedding models are trained for it."""
        return "cosine"

    @property
    def label(self) -> str:
        """Human-readable name recorded by evals."""
        return f"openai:{self.model}"


if TYPE_CHECKING:
    from retrieval.semantic import MultilingualEmbedding

Embedder = Union[HashEmbedding, OpenAIEndpointEmbedding, "MultilingualEmbedding"]


def embed(embedder: Embedder, texts: Sequence[str], token_lists: Sequence[Sequence[str]]) -> np.ndarray:
    """Embed with whichever input the embedder takes (tokens for the hash, text for the others)."""
    if isinstance(embedder, HashEmbedding):
        return embedder.embed_tokens(token_lists)
    return embedder.embed_texts(texts)
