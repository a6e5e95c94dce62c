"""Evidence marks: an agent's word that a past case is (or is not) the right evidence for a message.

The workbench's reply panel (and ``POST /v1/reply/marks``) records a mark: the customer's message,
a resolution id and ``right`` or ``wrong``. The reply drafter reads them back for messages that say
the same thing (cosine >= :data:`NEAR` on the store's embedding, so a re-sent or lightly reworded
message counts and a different complaint does not): a resolution marked right comes first as
evidence, one marked wrong is not used. A mark is kept in the SQL mirror with the message's vector,
so it needs no re-embedding to be found.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from pydantic import BaseModel
from sqlalchemy import Column, Float, LargeBinary, MetaData, String, Table, Text, delete, insert, select

from retrieval.store import Store
from retrieval.text import embed, tokenize

NEAR = 0.9
Verdict = Literal["right", "wrong"]

marks_metadata = MetaData()
marks_table = Table(
    "evidence_marks",
    marks_metadata,
    Column("text_hash", String(40), primary_key=True),
    Column("resolution_id", String(200), primary_key=True),
    Column("text", Text, nullable=False),
    Column("vec", LargeBinary, nullable=False),
    Column("embedding", String(100), nullable=False),
    Column("verdict", String(10), nullable=False),
    Column("created_ts", Float, nullable=False),
)


class Mark(BaseModel):
    """A stored mark."""

    text: str
    resolution_id: str
    verdict: Verdict
    created_at: str


def _ensure(store: Store) -> None:
    store.ensure_tables(marks_metadata)


def _vector(store: Store, text: str) -> np.ndarray:
    return np.asarray(embed(store.embedder, [text], [tokenize(text)])[0], dtype=np.float32)


def mark(store: Store, text: str, resolution_id: str, verdict: Verdict) -> Mark:
    """Record (or change) the verdict on ``resolution_id`` as evidence for ``text``."""
    _ensure(store)
    text = text.strip()
    if not text:
        raise ValueError("the message is empty")
    found = store.records("resolution", [resolution_id])
    if not found:
        raise LookupError(f"no resolution has id {resolution_id!r}")
    if verdict == "right" and found[resolution_id].outcome != "resolved":
        raise ValueError(
            f"{resolution_id} is {found[resolution_id].outcome}, not resolved: only a resolved case can be evidence"
        )
    now = datetime.now(UTC)
    row = {
        "text_hash": hashlib.sha1(text.encode()).hexdigest(),
        "resolution_id": resolution_id,
        "text": text,
        "vec": _vector(store, text).tobytes(),
        "embedding": store.embedder.label,
        "verdict": verdict,
        "created_ts": now.timestamp(),
    }
    t = marks_table.c
    with store.engine.begin() as conn:  # replace an earlier mark on the same pair
        conn.execute(delete(marks_table).where(t.text_hash == row["text_hash"], t.resolution_id == resolution_id))
        conn.execute(insert(marks_table), [row])
    return Mark(text=text, resolution_id=resolution_id, verdict=verdict, created_at=now.isoformat())


def near(store: Store, text: str) -> dict[str, tuple[Verdict, float]]:
    """Resolution id -> (verdict, similarity) of the marks on messages near ``text`` (the
    nearest mark wins when one resolution was marked on several)."""
    _ensure(store)
    t = marks_table.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.resolution_id, t.vec, t.verdict).where(t.embedding == store.embedder.label)).all()
    if not rows:
        return {}
    query = _vector(store, text)
    out: dict[str, tuple[Verdict, float]] = {}
    for rid, vec, verdict in rows:
        sim = float(np.dot(query, np.frombuffer(vec, dtype=np.float32)))
        if sim >= NEAR and (rid not in out or sim > out[rid][1]):
            out[rid] = (verdict, round(sim, 4))
    return out


def listed(store: Store, limit: int = 100) -> list[Mark]:
    """The newest marks."""
    _ensure(store)
    t = marks_table.c
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(t.text, t.resolution_id, t.verdict, t.created_ts).order_by(t.created_ts.desc()).limit(limit)
        ).all()
    return [
        Mark(text=x, resolution_id=r, verdict=v, created_at=datetime.fromtimestamp(ts, UTC).isoformat())
        for x, r, v, ts in rows
    ]
