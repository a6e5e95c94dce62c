"""The record store: Chroma holds vectors, a SQL mirror holds every field, FTS5 holds keywords.

Why three parts: Chroma answers nearest-neighbour queries fast, but its metadata filters cost
30-190 ms at 50k records and paging its metadata out for analytics costs ~1.3 s. So every field
lives in a relational mirror (SQLite in the home dir by default, any SQLAlchemy URL by
configuration) that analytics and filters query directly, and a full-text index (SQLite FTS5,
bm25) over the same tokens as the embedding serves the keyword side of hybrid search.

Write order per batch is Chroma, then keywords and mirror in one transaction when they share a
SQLite file. The mirror is the commit point: a row is "stored" once the mirror has it, and an
interrupted batch is simply redone by the next run (every write is an idempotent upsert);
:meth:`Store.repair` removes the vectors such a batch left behind.

Several processes may use one home (``serve`` and a CLI ingest). Writers queue on the home's
lock; embedded Chroma keeps its index in memory, so every write also bumps a generation counter
in the mirror, and a process that finds the counter moved by someone else reopens Chroma before
its next query or write: the server sees a CLI ingest's vectors at once, and never writes
through a stale index.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, overload
from urllib.parse import urlparse

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.schema import CreateIndex
from sqlalchemy.sql import Select

from retrieval.columns import FILTER_FIELDS, FilterColumns
from retrieval.errors import StoreError
from retrieval.records import (
    MACHINE_SOURCES,
    TRUSTED_SOURCES,
    Feedback,
    LabelSource,
    LabelValue,
    Resolution,
    content_hash,
)
from retrieval.text import Embedder, HashEmbedding, embed, tokenize

Kind = Literal["feedback", "resolution"]
KINDS: tuple[Kind, ...] = ("feedback", "resolution")
COLLECTIONS = {"feedback": "feedback", "resolution": "resolutions"}

metadata = MetaData()
# The fields analytics filter and group a window's records by (see the window indexes below).
WINDOW_COVERED = (
    "category",
    "channel",
    "product",
    "carrier",
    "region",
    "customer_tier",
    "urgency",
    "rating",
    "nps",
    "language",
    "category_source",
    "sentiment_source",
    "urgency_source",
)

feedback_table = Table(
    "feedback",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(200), nullable=False, unique=True),
    Column("text", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("created_ts", Float, nullable=False, index=True),
    Column("created_at_source", String(20), nullable=False),
    Column("channel", String(100)),
    Column("customer_tier", String(100)),
    Column("customer_id", String(200), index=True),
    Column("order_id", String(200), index=True),
    Column("product", String(300)),
    Column("sku", String(200), index=True),
    Column("carrier", String(200)),
    Column("region", String(200)),
    Column("rating", Float),
    Column("nps", Integer),
    Column("language", String(10)),
    Column("category", String(200)),
    Column("category_source", String(10)),
    Column("subcategory", String(200)),
    Column("subcategory_source", String(10)),
    Column("sentiment", String(50)),
    Column("sentiment_source", String(10)),
    Column("urgency", String(50)),
    Column("urgency_source", String(10)),
    Column("label_basis", Text),  # JSON {field: what a rule or model label rests on}
    Column("extra", Text),
    Column("content_hash", String(40), nullable=False),
    Column("ingested_at", String(40), nullable=False),
    # Filters and analytics slice by one facet over a time window: (facet, time) indexes serve both.
    *(Index(f"ix_feedback_{c}_time", c, "created_ts") for c in ("category", "channel", "product", "carrier", "region")),
    # Analytics count a window's records (its complaints, or all of them) by any of these fields:
    # indexes that hold them all answer from the index alone, without reading each record's row
    # (at a million records a 30-day window holds ~470,000 rows; 3-7x faster per query at 100k).
    Index("ix_feedback_window_sentiment", "sentiment", "created_ts", *WINDOW_COVERED),
    Index("ix_feedback_window", "created_ts", "sentiment", *WINDOW_COVERED),
)

resolution_table = Table(
    "resolutions",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(200), nullable=False, unique=True),
    Column("feedback_id", String(200), nullable=False, index=True),
    Column("action", Text, nullable=False),
    Column("reply", Text, nullable=False),
    Column("outcome", String(20), nullable=False, index=True),
    Column("compensation", Text),
    Column("resolved_at", String(40)),
    Column("resolved_ts", Float, index=True),
    Column("extra", Text),
    Column("content_hash", String(40), nullable=False),
    Column("ingested_at", String(40), nullable=False),
)

meta_table = Table(
    "store_meta",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

# Tokens and vectors live beside the keyword index, not in the mirror rows: mirror rows stay
# small (~300 bytes), so filters and analytics read little, and narrow filtered searches fetch
# only their candidates' vectors by primary key.
index_metadata = MetaData()


def _index_table(kind: str, tables: MetaData, *more: Column[Any]) -> Table:
    """A kind's index rows: id, token string, vector (empty while the fill has not reached it)."""
    return Table(
        f"{kind}_index",
        tables,
        Column("id", String(200), primary_key=True),
        Column("tokens", Text, nullable=False),
        Column("vec", LargeBinary, nullable=False),
        *more,
    )


INDEX_TABLES = {kind: _index_table(kind, index_metadata) for kind in ("feedback", "resolution")}
# Vectors of a reindex under way (see Store.reindex): the store keeps answering on its old
# embedding until every record has a new vector, then switches in one transaction.
reindex_table = Table(
    "reindex_vectors",
    index_metadata,
    Column("kind", String(20), primary_key=True),
    Column("id", String(200), primary_key=True),
    Column("vec", LargeBinary, nullable=False),
)
# Records written without a vector yet (a large ingest returns before its semantic vectors are
# computed; Store.fill adds them): they are in the mirror and the keyword index, not in Chroma, and
# their index row holds an empty vector until filled.
pending_table = Table(
    "pending_vectors",
    index_metadata,
    Column("kind", String(20), primary_key=True),
    Column("id", String(200), primary_key=True),
)
# On PostgreSQL the keyword index lives in the database itself (FTS5 is SQLite's): each index row
# gets a generated tsvector of its tokens (GIN-indexed, for matching) and a token count, and
# kw_vocab keeps each term's document frequency, so bm25 ranks exactly as FTS5 ranks on SQLite.
pg_keyword_metadata = MetaData()
vocab_table = Table(
    "kw_vocab",
    pg_keyword_metadata,
    Column("kind", String(20), primary_key=True),
    Column("term", Text, primary_key=True),
    Column("doc", Integer, nullable=False),
)
PG_INDEX_DDL = (
    "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS tsv tsvector GENERATED ALWAYS AS "
    "(array_to_tsvector(array_remove(string_to_array(tokens, ' '), ''))) STORED",
    "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS ntok integer",
    "CREATE INDEX IF NOT EXISTS ix_{t}_tsv ON {t} USING gin (tsv)",
)
# The index rows as PostgreSQL writes them: with the token count FTS5 would see (see _fts5_length).
_pg_index_metadata = MetaData()
PG_INDEX_TABLES = {
    kind: _index_table(kind, _pg_index_metadata, Column("ntok", Integer)) for kind in ("feedback", "resolution")
}
BM25_K1, BM25_B = 1.2, 0.75  # FTS5's
# FTS5 scores every record that holds any query term. At a million generated records one query's
# sixteen terms, each in 2-5% of the records, held 365,000 postings (114 ms), most in terms of
# little weight; with the terms kept within 20,000 postings, queries took 3-16 ms.
KEYWORD_POSTINGS = 20_000
SETTLE_AFTER = 10_000  # records written by one ingest after which PostgreSQL is vacuumed (Store.settle)
_FTS5_PIECE = re.compile(r"[\w\-/#]+")


def _tsquery_lexeme(term: str) -> str:
    """A token as one quoted tsquery lexeme, taken literally."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def _fts5_length(tokens: str) -> int:
    """How many tokens FTS5's unicode61 tokenizer (token characters ``-_/#``) finds in a token
    string: it splits "can't" in two, so bm25's average length on PostgreSQL matches SQLite's."""
    return sum(len(_FTS5_PIECE.findall(t)) for t in tokens.split())


LABEL_FIELDS = frozenset({"category", "subcategory", "sentiment", "urgency"})
SCHEMA_VERSION = "3"
# Columns each schema added to the feedback table, for opening an older store in place.
SCHEMA_ADDED = {"3": (("customer_id", "VARCHAR(200)"), ("nps", "INTEGER"), ("label_basis", "TEXT"))}

TABLES = {"feedback": feedback_table, "resolution": resolution_table}
KW_TABLES = {"feedback": "kw_feedback", "resolution": "kw_resolution"}
RECORD_COLUMNS = {
    kind: [c.name for c in table.columns if c.name not in ("seq", "content_hash")] for kind, table in TABLES.items()
}


class FeedbackRow(BaseModel):
    """A feedback record as the mirror holds it: every field, each label with its source."""

    id: str
    text: str
    created_at: str
    created_ts: float
    created_at_source: str
    channel: str | None = None
    customer_tier: str | None = None
    customer_id: str | None = None
    order_id: str | None = None
    product: str | None = None
    sku: str | None = None
    carrier: str | None = None
    region: str | None = None
    rating: float | None = None
    nps: int | None = None
    language: str | None = None
    category: str | None = None
    category_source: str | None = None
    subcategory: str | None = None
    subcategory_source: str | None = None
    sentiment: str | None = None
    sentiment_source: str | None = None
    urgency: str | None = None
    urgency_source: str | None = None
    label_basis: dict[str, str] = Field(
        default_factory=dict, description="Per machine label (source rule or model): the rule or the neighbours."
    )
    extra: dict[str, Any] = Field(default_factory=dict)
    ingested_at: str


class ResolutionRow(BaseModel):
    """A resolution as the mirror holds it."""

    id: str
    feedback_id: str
    action: str
    reply: str
    outcome: str
    compensation: str | None = None
    resolved_at: str | None = None
    resolved_ts: float | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    ingested_at: str


ROW_MODELS: dict[Kind, type[FeedbackRow] | type[ResolutionRow]] = {"feedback": FeedbackRow, "resolution": ResolutionRow}


@dataclass
class RepairResult:
    """What :meth:`Store.repair` did, per kind."""

    removed: dict[Kind, int]  # vectors (and keyword rows) no mirror row stands behind
    restored: dict[Kind, int]  # mirror rows whose vector Chroma had lost, re-added from the index

    @property
    def changed(self) -> bool:
        """Whether anything was repaired."""
        return any(self.removed.values()) or any(self.restored.values())


@dataclass
class UpsertResult:
    """What one batch did, by id."""

    added: list[str]
    updated: list[str]
    unchanged: list[str]


def _driver_rows(conn: Any, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """Rows of a SQLite query from the driver's own cursor: on search's hot paths SQLAlchemy's
    result rows cost ~10 ms per 6,000."""
    cursor = conn.connection.driver_connection.cursor()
    try:
        return list(cursor.execute(sql, params).fetchall())
    finally:
        cursor.close()


def _epoch(dt: datetime | None) -> float | None:
    return dt.timestamp() if dt is not None else None


def _feedback_row(r: Feedback, digest: str, now: str) -> dict[str, Any]:
    labels = r.labels
    row: dict[str, Any] = {
        "id": r.id,
        "text": r.text,
        "created_at": r.created_at.isoformat(),
        "created_ts": r.created_at.timestamp(),
        "created_at_source": r.created_at_source,
        "channel": r.channel,
        "customer_tier": r.customer_tier,
        "customer_id": r.customer_id,
        "order_id": r.order_id,
        "product": r.product,
        "sku": r.sku,
        "carrier": r.carrier,
        "region": r.region,
        "rating": r.rating,
        "nps": r.nps,
        "language": r.language,
        "extra": json.dumps(r.extra, ensure_ascii=False) if r.extra else None,
        "content_hash": digest,
        "ingested_at": now,
    }
    basis: dict[str, str] = {}
    for name in ("category", "subcategory", "sentiment", "urgency"):
        lv = getattr(labels, name)
        row[name] = lv.value if lv else None
        row[f"{name}_source"] = lv.source.value if lv else None
        if lv is not None and lv.basis:
            basis[name] = lv.basis
    row["label_basis"] = json.dumps(basis, ensure_ascii=False) if basis else None
    return row


def _resolution_row(r: Resolution, digest: str, now: str) -> dict[str, Any]:
    return {
        "id": r.id,
        "feedback_id": r.feedback_id,
        "action": r.action,
        "reply": r.reply,
        "outcome": r.outcome,
        "compensation": r.compensation,
        "resolved_at": r.resolved_at.isoformat() if r.resolved_at else None,
        "resolved_ts": _epoch(r.resolved_at),
        "extra": json.dumps(r.extra, ensure_ascii=False) if r.extra else None,
        "content_hash": digest,
        "ingested_at": now,
    }


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _make_engine(url: str) -> Engine:
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (blocks while another process holds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def try_file_lock(path: Path) -> Iterator[bool]:
    """Take an exclusive lock on ``path`` without waiting: yields False when another process holds
    it. The holder writes its pid into the file (see :func:`lock_holder`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            fh.truncate(0)
            fh.write(str(os.getpid()))
            fh.flush()
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def lock_holder(path: Path) -> int | None:
    """The pid of the process holding :func:`try_file_lock` on ``path`` (-1 when unknown), or None."""
    if not path.exists():
        return None
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip()
            return int(pid) if pid.isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


def _lock_key(name: str, scope: str = "") -> int:
    """A PostgreSQL advisory lock key (signed 64-bit) for a lock name within a store."""
    digest = hashlib.blake2b(f"feedback-agent:{scope}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def recorded_embedding(home: str | Path, db_url: str | None = None) -> str | None:
    """The embedding label a store was built with, read without opening it (None: no store yet)."""
    url = db_url or f"sqlite:///{Path(home) / 'mirror.sqlite3'}"
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    engine = create_engine(url, future=True)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(meta_table.c.value).where(meta_table.c.key == "embedding")).first()
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    return str(row[0]) if row else None


class _Gate:
    """Many users of the Chroma client at once, or one reopening it (a reader/writer lock)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._users = 0
        self._reopening = False

    @contextmanager
    def use(self) -> Iterator[None]:
        with self._cond:
            while self._reopening:
                self._cond.wait()
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                self._cond.notify_all()

    @contextmanager
    def reopen(self) -> Iterator[None]:
        with self._cond:
            while self._reopening or self._users:
                self._cond.wait()
            self._reopening = True
        try:
            yield
        finally:
            with self._cond:
                self._reopening = False
                self._cond.notify_all()


def fts_query(tokens: Iterable[str]) -> str | None:
    """An FTS5 MATCH expression OR-ing the distinct tokens, each quoted as a literal."""
    distinct = list(dict.fromkeys(t for t in tokens if t))
    if not distinct:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in distinct[:64])


class Store:
    """Feedback and resolution records in Chroma + a SQL mirror + a keyword index.

    Args:
        home: data directory (Chroma files, SQLite mirror, rejects, locks).
        embedder: the embedding function; the store refuses to mix embeddings.
        chroma_url: ``http(s)://host:port`` of a Chroma server; None for the embedded store.
        db_url: SQLAlchemy URL of the mirror; None for ``home/mirror.sqlite3``.
        chroma_client: an already-built Chroma client (tests pass ``EphemeralClient``).
    """

    def __init__(
        self,
        home: str | Path,
        embedder: Embedder | None = None,
        *,
        chroma_url: str | None = None,
        db_url: str | None = None,
        chroma_client: Any = None,
    ) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.embedder: Embedder = embedder or HashEmbedding()
        self.chroma_url = chroma_url
        self.db_url = db_url or f"sqlite:///{self.home / 'mirror.sqlite3'}"
        # Two processes opening a new home at once would both create the schema ("table already
        # exists"): creation is serialised by a lock in the home (and in PostgreSQL, for two machines).
        with file_lock(self.home / ".init.lock"):
            self._open_databases()
            self._check_embedding()
            if self.kw_dialect == "postgresql":
                self._move_local_keywords()
        self._chroma_client = chroma_client
        self._owns_client = chroma_client is None
        self._collections: dict[str, Any] = {}
        self._gate = _Gate()
        self._embedded_rlock = threading.RLock()  # see _embedded_lock
        self._embedded_depth = 0
        self._embedded_fh: Any = None
        self._generation: int | None = None  # the write generation this process's Chroma has seen
        self._ensured: set[int] = set()  # extra table sets already checked (ensure_tables)
        self._kept_values: dict[str, tuple[int, Any]] = {}  # what _kept computed: key -> (write generation, value)
        self.keep_columns = False  # see filter_columns: a long-running process's choice
        self._columns: tuple[tuple[int, int], FilterColumns] | None = None
        self._columns_job: threading.Thread | None = None
        self._columns_next = 0.0  # monotonic time before which no new build starts

    def _open_databases(self) -> None:
        try:
            self.engine = _make_engine(self.db_url)
            dialect = self.engine.dialect.name
            # FTS5 is SQLite's and PostgreSQL has its own full-text search; with another
            # database the keyword index stays in a local SQLite file.
            self.kw_engine = (
                self.engine
                if dialect in ("sqlite", "postgresql")
                else _make_engine(f"sqlite:///{self.home / 'keywords.sqlite3'}")
            )
            self.kw_dialect = self.kw_engine.dialect.name
            with self.engine.begin() as conn:
                if dialect == "postgresql":  # other machines may be creating the schema right now
                    conn.execute(select(func.pg_advisory_xact_lock(_lock_key("init"))))
                metadata.create_all(conn)
                if self.kw_engine is self.engine:
                    index_metadata.create_all(conn)
                if dialect == "postgresql":
                    pg_keyword_metadata.create_all(conn)
                    for index in INDEX_TABLES.values():
                        for ddl in PG_INDEX_DDL:
                            conn.execute(text(ddl.format(t=index.name)))
            if self.kw_engine is not self.engine:
                index_metadata.create_all(self.kw_engine)
            if self.kw_dialect == "sqlite":
                with self.kw_engine.begin() as conn:
                    for table in KW_TABLES.values():
                        conn.execute(
                            text(
                                f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING fts5("
                                "tokens, id UNINDEXED, tokenize=\"unicode61 tokenchars '-_/#'\")"
                            )
                        )
                        conn.execute(
                            text(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table}_vocab USING fts5vocab({table}, 'row')")
                        )
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the SQL mirror {self._safe_db_url()}: {_first_line(exc)}") from None

    def _move_local_keywords(self, page: int = 2000) -> None:
        """A store whose PostgreSQL mirror kept its keyword index in ``<home>/keywords.sqlite3``
        (before PostgreSQL held it) has it copied into PostgreSQL once; the file is then renamed."""
        old = self.home / "keywords.sqlite3"
        if not old.exists():
            return
        local = _make_engine(f"sqlite:///{old}")
        try:
            with local.connect() as src:
                have = set(inspect(src).get_table_names())
                for kind in KINDS:
                    table = INDEX_TABLES[kind]
                    if table.name not in have:
                        continue
                    last = ""
                    while True:
                        rows = [
                            dict(r._mapping)
                            for r in src.execute(
                                select(table.c.id, table.c.tokens, table.c.vec)
                                .where(table.c.id > last)
                                .order_by(table.c.id)
                                .limit(page)
                            )
                        ]
                        if not rows:
                            break
                        last = rows[-1]["id"]
                        with self.engine.begin() as conn:
                            self._write_keywords(conn, kind, [r["id"] for r in rows], rows, pending=None)
                for side in (pending_table, reindex_table):
                    if side.name in have:
                        rows = [dict(r._mapping) for r in src.execute(select(side))]
                        for i in range(0, len(rows), page):
                            with self.engine.begin() as conn:
                                conn.execute(postgresql.insert(side).on_conflict_do_nothing(), rows[i : i + page])
        finally:
            local.dispose()
        old.rename(old.with_name("keywords.sqlite3.moved-to-postgresql"))

    # ------------------------------------------------------------------ setup
    def _safe_db_url(self) -> str:
        parsed = urlparse(self.db_url)
        if parsed.password:
            return self.db_url.replace(parsed.password, "***")
        return self.db_url

    def _check_embedding(self) -> None:
        # A new store names its Chroma collections after an id of its own: on a shared Chroma
        # server two stores must not write into one collection. Older stores keep plain names.
        expected = {
            "schema": SCHEMA_VERSION,
            "embedding": self.embedder.label,
            "collection_prefix": f"fa{uuid.uuid4().hex[:10]}_",
        }
        with self.engine.begin() as conn:
            stored = dict(conn.execute(select(meta_table.c.key, meta_table.c.value)).all())
            if not stored:
                conn.execute(insert(meta_table), [{"key": k, "value": v} for k, v in expected.items()])
                self.collection_prefix = expected["collection_prefix"]
                return
        self.collection_prefix = stored.get("collection_prefix", "")
        if stored.get("schema") in ("2",):
            self._upgrade(str(stored["schema"]))
            stored["schema"] = SCHEMA_VERSION
        if stored.get("schema") != SCHEMA_VERSION:
            raise StoreError(
                f"the store in {self.home} has schema {stored.get('schema', '1')!r}, this version needs "
                f"{SCHEMA_VERSION!r}; ingest your files into a new --home"
            )
        self._ensure_indexes()
        if stored.get("embedding") != self.embedder.label:
            raise StoreError(
                f"this store was built with embedding {stored.get('embedding')!r} but {self.embedder.label!r} "
                f"is configured; move it with `feedback-agent reindex --embedding ...`, use another --home or "
                "set the embedding back"
            )

    def _ensure_indexes(self) -> None:
        """Build the feedback indexes a later version added (the window indexes) on an older store,
        once: 4 s at a million records. Another process doing the same at once is
        waited for (PostgreSQL: the init lock; SQLite: the write lock)."""
        with self.engine.begin() as conn:
            have = {i["name"] for i in inspect(conn).get_indexes("feedback")}
            missing = [i for i in feedback_table.indexes if i.name not in have]
            if not missing:
                return
            if self.engine.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_lock_key("init"))))
            for index in missing:
                conn.execute(CreateIndex(index, if_not_exists=True))
            conn.execute(text("DROP INDEX IF EXISTS ix_feedback_sentiment_time"))  # the window index's prefix

    def _upgrade(self, schema: str) -> None:
        """Bring an older store's mirror to this schema in place: add the columns later schemas
        added (empty for the records already there) and record the new schema."""
        with self.engine.begin() as conn:
            have = {c["name"] for c in inspect(conn).get_columns("feedback")}
            for version in sorted(v for v in SCHEMA_ADDED if v > schema):
                for name, sql_type in SCHEMA_ADDED[version]:
                    if name not in have:
                        conn.execute(text(f"ALTER TABLE feedback ADD COLUMN {name} {sql_type}"))
            conn.execute(text("CREATE INDEX IF NOT EXISTS ix_feedback_customer_id ON feedback (customer_id)"))
            conn.execute(update(meta_table).where(meta_table.c.key == "schema").values(value=SCHEMA_VERSION))

    def ensure_tables(self, tables: MetaData) -> None:
        """Create another layer's tables (the alert outbox, evidence marks) in the mirror when
        missing. Two processes may both find them missing and race to create them: the loser
        tries again, and each process checks once."""
        if id(tables) in self._ensured:
            return
        for attempt in range(3):
            try:
                tables.create_all(self.engine)
                break
            except SQLAlchemyError:
                if attempt == 2:
                    raise
        self._ensured.add(id(tables))

    # ------------------------------------------------------------------ locks
    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Hold the store's writer lock (blocks while another writer holds it): one ingest, fill,
        repair or reindex at a time. On PostgreSQL it is an advisory lock in the database, so
        writers on other machines queue too; otherwise a file lock in the home."""
        if self.engine.dialect.name != "postgresql":
            with file_lock(self.home / ".ingest.lock"):
                yield
            return
        with self._advisory("writer", wait=True) as held:
            assert held
            yield

    @contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        """Take the named lock without waiting: yields False when another process holds it."""
        if self.engine.dialect.name != "postgresql":
            with try_file_lock(self.home / f".{name}.lock") as held:
                yield held
            return
        with self._advisory(name, wait=False) as held:
            yield held

    def lock_holder(self, name: str) -> int | None:
        """Who holds the named lock: a process id (on PostgreSQL the holder's database session),
        -1 when unknown, None when free."""
        if self.engine.dialect.name != "postgresql":
            return lock_holder(self.home / f".{name}.lock")
        key = _lock_key(name, self.collection_prefix) & 0xFFFFFFFFFFFFFFFF
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                    "AND classid = CAST(:hi AS oid) AND objid = CAST(:lo AS oid)"
                ),
                {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
            ).first()
        return int(row[0]) if row else None

    @contextmanager
    def _advisory(self, name: str, *, wait: bool) -> Iterator[bool]:
        """A session-level advisory lock on a connection of its own, released (and the connection
        returned) on leaving; a process that dies loses its session and with it the lock."""
        key = _lock_key(name, self.collection_prefix)
        conn = self.engine.connect()
        try:
            fn = func.pg_advisory_lock if wait else func.pg_try_advisory_lock
            got = conn.execute(select(fn(key))).scalar()
            conn.commit()
            held = wait or bool(got)
            try:
                yield held
            finally:
                if held:
                    conn.execute(select(func.pg_advisory_unlock(key)))
                    conn.commit()
        finally:
            conn.close()

    @property
    def chroma(self) -> Any:
        """The Chroma client, created on first use."""
        if self._chroma_client is None:
            import chromadb
            from chromadb.config import Settings

            settings = Settings(anonymized_telemetry=False)
            if self.chroma_url:
                parsed = urlparse(self.chroma_url)
                if parsed.scheme not in ("http", "https") or not parsed.hostname:
                    raise StoreError(f"Chroma URL {self.chroma_url!r} must look like http://host:8000")
                try:
                    self._chroma_client = chromadb.HttpClient(
                        host=parsed.hostname,
                        port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                        ssl=parsed.scheme == "https",
                        settings=settings,
                    )
                    self._chroma_client.heartbeat()
                except Exception as exc:  # chromadb raises assorted transport errors
                    raise StoreError(f"cannot reach Chroma at {self.chroma_url}: {_first_line(exc)}") from None
            else:
                self._chroma_client = chromadb.PersistentClient(path=str(self.home / "chroma"), settings=settings)
        return self._chroma_client

    def collection(self, kind: Kind) -> Any:
        """The Chroma collection of ``kind``, created with our embedding function."""
        if kind not in self._collections:
            try:
                self._collections[kind] = self.chroma.get_or_create_collection(
                    self.collection_prefix + COLLECTIONS[kind],
                    embedding_function=self.embedder,
                    configuration={"hnsw": {"space": "cosine"}},
                )
            except StoreError:
                raise
            except Exception as exc:
                raise StoreError(
                    f"cannot open Chroma collection {self.collection_prefix + COLLECTIONS[kind]!r}: {_first_line(exc)}"
                ) from None
        return self._collections[kind]

    def _counter(self, key: str, conn: Any = None) -> int:
        """A counter kept in the store's meta table (0 until first bumped)."""
        stmt = select(meta_table.c.value).where(meta_table.c.key == key)
        if conn is not None:
            row = conn.execute(stmt).first()
        else:
            with self.engine.connect() as c:
                row = c.execute(stmt).first()
        return int(row[0]) if row else 0

    def _bump_counter(self, conn: Any, key: str) -> int:
        """Add one to a meta counter inside ``conn``'s transaction; returns the value it had."""
        current = self._counter(key, conn)
        if current == 0:
            conn.execute(insert(meta_table).values(key=key, value="1"))
        else:
            conn.execute(meta_table.update().where(meta_table.c.key == key).values(value=str(current + 1)))
        return current

    def write_generation(self, conn: Any = None) -> int:
        """A counter every write bumps (in the mirror transaction), whichever process writes."""
        return self._counter("write_generation", conn)

    @contextmanager
    def _embedded_lock(self) -> Iterator[None]:
        """One process at a time inside embedded Chroma.

        Its files are not safe to read in one process while another writes: with `status`
        polling beside a background fill, both processes crashed in Chroma's native code and an
        index file grew without bound. So every use of an embedded client (open, read, write,
        close) holds an exclusive lock on ``<home>/.chroma.lock`` for the call; the threads of a
        process take turns (re-entrant). A Chroma server or a client passed in needs none.
        """
        if self.chroma_url or not self._owns_client:
            yield
            return
        with self._embedded_rlock:
            if self._embedded_depth == 0:
                fh = open(self.home / ".chroma.lock", "a+")  # noqa: SIM115 (closed when the last call leaves)
                fcntl.flock(fh, fcntl.LOCK_EX)
                self._embedded_fh = fh
            self._embedded_depth += 1
            try:
                yield
            finally:
                self._embedded_depth -= 1
                if self._embedded_depth == 0:
                    fcntl.flock(self._embedded_fh, fcntl.LOCK_UN)
                    self._embedded_fh.close()
                    self._embedded_fh = None

    @contextmanager
    def _chroma_call(self) -> Iterator[None]:
        """Around every Chroma call: the embedded lock, a reopen if another process wrote since,
        and the in-process gate."""
        with self._embedded_lock():
            if self._embedded_depth <= 1:  # the outermost call (a nested one must not reopen under itself)
                self._fresh()  # never read or write through an index another process has moved past
            with self._gate.use():
                yield

    def _fresh(self) -> None:
        """Reopen embedded Chroma when another process wrote since this one last looked.

        A Chroma server (or a client passed in) serves every process the same index, so only the
        embedded store needs this. In-flight queries finish before the client is swapped.
        """
        if self.chroma_url or not self._owns_client:
            return
        generation = self.write_generation()
        if self._generation is None or self._chroma_client is None:
            self._generation = generation
            return
        if generation != self._generation:
            with self._gate.reopen():
                if self._chroma_client is not None:
                    self._chroma_client.close()
                    self._chroma_client = None
                self._collections.clear()
                self._generation = generation

    def _bump_generation(self, conn: Any) -> None:
        current = self._bump_counter(conn, "write_generation")
        if self._generation == current:
            self._generation = current + 1  # our own write: our index has it

    def close(self) -> None:
        """Release Chroma (a client we created) and the database connections."""
        if self._owns_client and self._chroma_client is not None:
            # chromadb 1.5's HTTP component never closes its httpx session when the system
            # stops, which leaks one socket per connection; close it ourselves.
            for owner in (self._chroma_client, getattr(self._chroma_client, "_admin_client", None)):
                session = getattr(getattr(owner, "_server", None), "_session", None)
                if session is not None and hasattr(session, "close"):
                    session.close()
            with self._embedded_lock():
                self._chroma_client.close()  # ref-counted in chromadb: frees files (embedded mode)
            self._chroma_client = None
            self._collections.clear()
        self.engine.dispose()
        if self.kw_engine is not self.engine:
            self.kw_engine.dispose()

    # ------------------------------------------------------------------ writes
    def upsert(
        self,
        kind: Kind,
        records: Sequence[Feedback | Resolution],
        now: datetime,
        label: Callable[[list[Feedback]], list[Feedback]] | None = None,
        defer_vectors: bool = False,
    ) -> UpsertResult:
        """Add new records and update changed ones; unchanged records cost one lookup.

        Records must have distinct ids (ingestion rejects in-file duplicates before this).

        Args:
            kind: feedback or resolution.
            records: validated records.
            now: write time.
            label: fills missing labels of new and changed feedback (classification on ingest);
                unchanged records are not relabelled, and human labels already stored are kept.
            defer_vectors: write the records without vectors, listed for :meth:`fill`.
        """
        table = TABLES[kind]
        ids = [r.id for r in records]
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(table.c.id, table.c.content_hash, *self._existing_cols(kind)).where(table.c.id.in_(ids))
                )
                .mappings()
                .all()
            )
        existing = {row["id"]: row for row in rows}
        added: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        changed: list[tuple[Feedback | Resolution, str]] = []
        for record in records:
            old = existing.get(record.id)
            if (
                old is not None
                and isinstance(record, Feedback)
                and record.created_at_source == "import_time"
                and old["created_at_source"] == "import_time"
            ):
                # keep the first import time: the row has no date of its own
                record = record.model_copy(update={"created_at": datetime.fromisoformat(old["created_at"])})
            digest = content_hash(record)
            if old is None:
                added.append(record.id)
            elif old["content_hash"] == digest:
                unchanged.append(record.id)
                continue
            else:
                updated.append(record.id)
            changed.append((record, digest))
        if changed and kind == "feedback":
            changed = self._keep_human_labels(changed, existing, label)
        if changed:
            self._write(kind, changed, now, updated, defer_vectors)
        return UpsertResult(added, updated, unchanged)

    @staticmethod
    def _existing_cols(kind: Kind) -> list[Any]:
        """Stored columns an upsert needs: the first import time and the labels (humans' are kept)."""
        if kind == "feedback":
            f = feedback_table.c
            return [
                f.created_at,
                f.created_at_source,
                f.category,
                f.category_source,
                f.subcategory,
                f.subcategory_source,
                f.sentiment,
                f.sentiment_source,
                f.urgency,
                f.urgency_source,
            ]
        return []

    @staticmethod
    def _keep_human_labels(
        changed: list[tuple[Feedback | Resolution, str]],
        existing: dict[str, Any],
        label: Callable[[list[Feedback]], list[Feedback]] | None,
    ) -> list[tuple[Feedback | Resolution, str]]:
        records = [r for r, _ in changed]
        if label is not None:
            records = list(label(records))  # type: ignore[arg-type]
        out: list[tuple[Feedback | Resolution, str]] = []
        for record, (_, digest) in zip(records, changed, strict=True):
            old = existing.get(record.id)
            if old is not None and isinstance(record, Feedback):
                human = {}
                for name in ("category", "subcategory", "sentiment", "urgency"):
                    if old[f"{name}_source"] == LabelSource.HUMAN:
                        human[name] = LabelValue(value=old[name], source=LabelSource.HUMAN)
                if human:
                    record = record.model_copy(update={"labels": record.labels.model_copy(update=human)})
            out.append((record, digest))
        return out

    def _write(
        self,
        kind: Kind,
        changed: list[tuple[Feedback | Resolution, str]],
        now: datetime,
        updated: Sequence[str] = (),
        deferred: bool = False,
    ) -> None:
        records = [r for r, _ in changed]
        texts = [r.text for r in records]
        token_lists = [tokenize(t) for t in texts]
        vecs = None if deferred else embed(self.embedder, texts, token_lists)
        stamp = now.astimezone(UTC).isoformat()
        if kind == "feedback":
            rows = [_feedback_row(r, d, stamp) for r, d in changed]  # type: ignore[arg-type]
            metas = [_chroma_metadata(kind, r["created_ts"]) for r in rows]
        else:
            rows = [_resolution_row(r, d, stamp) for r, d in changed]  # type: ignore[arg-type]
            metas = [_chroma_metadata(kind, r["feedback_id"]) for r in rows]
        ids = [r["id"] for r in rows]
        try:
            if vecs is not None:
                with self._chroma_call():
                    self.collection(kind).upsert(ids=ids, embeddings=vecs, metadatas=metas)
            elif updated:  # a changed text's old vector must not answer for it until filled
                with self._chroma_call():
                    self.collection(kind).delete(ids=list(updated))
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"Chroma write failed: {_first_line(exc)}") from None
        blobs = [b""] * len(ids) if vecs is None else [v.astype(np.float32).tobytes() for v in vecs]
        kw_rows = [{"id": i, "tokens": " ".join(t), "vec": b} for i, t, b in zip(ids, token_lists, blobs, strict=True)]
        try:
            if self.kw_engine is self.engine:
                with self.engine.begin() as conn:
                    self._write_keywords(conn, kind, ids, kw_rows, pending=deferred)
                    self._upsert_rows(conn, kind, rows)
                    self._bump_generation(conn)
            else:
                with self.kw_engine.begin() as kconn:
                    self._write_keywords(kconn, kind, ids, kw_rows, pending=deferred)
                with self.engine.begin() as conn:
                    self._upsert_rows(conn, kind, rows)
                    self._bump_generation(conn)
        except OperationalError as exc:
            raise StoreError(f"SQL mirror write failed: {_first_line(exc)}") from None
        if kind == "feedback" and any(
            lv is not None and lv.source in TRUSTED_SOURCES
            for r in records
            for lv in (r.labels.category, r.labels.sentiment, r.labels.urgency)  # type: ignore[union-attr]
        ):
            self._bump_labels_version()

    def _bump_labels_version(self) -> None:
        with self.engine.begin() as conn:
            self._bump_counter(conn, "labels_version")

    def labels_version(self, conn: Any = None) -> int:
        """A counter bumped whenever imported or human labels change (learned models key on it)."""
        return self._counter("labels_version", conn)

    def _write_keywords(
        self, conn: Any, kind: Kind, ids: list[str], kw_rows: list[dict[str, Any]], *, pending: bool | None = False
    ) -> None:
        """Index rows (tokens, vector) and keyword entries of ``ids``; ``pending``: whether their
        vectors wait for the fill (None: leave that as it is)."""
        self._delete_keywords(conn, kind, ids, keep_rows=True)  # the rows' old words, if any
        if self.kw_dialect == "postgresql":
            rows = [{**r, "ntok": _fts5_length(r["tokens"])} for r in kw_rows]
            self._upsert(conn, PG_INDEX_TABLES[kind], rows, "postgresql")
            self._count_terms(conn, kind, [r["tokens"] for r in kw_rows], +1)
        else:
            conn.execute(text(f"INSERT INTO {KW_TABLES[kind]}(tokens, id) VALUES (:tokens, :id)"), kw_rows)
            self._upsert(conn, INDEX_TABLES[kind], kw_rows, "sqlite")
        if pending:
            insert_ = postgresql.insert if self.kw_dialect == "postgresql" else sqlite.insert
            conn.execute(insert_(pending_table).on_conflict_do_nothing(), [{"kind": kind, "id": i} for i in ids])
        elif pending is not None:  # written with its vector: no longer waiting (a no-op when nothing waits)
            conn.execute(delete(pending_table).where(pending_table.c.kind == kind, pending_table.c.id.in_(ids)))

    def _delete_keywords(self, conn: Any, kind: Kind, ids: Sequence[str], *, keep_rows: bool = False) -> None:
        """Take ``ids`` out of the keyword index (their index rows too, unless ``keep_rows``)."""
        if self.kw_dialect == "postgresql":
            index = INDEX_TABLES[kind]
            old = [r[0] for r in conn.execute(select(index.c.tokens).where(index.c.id.in_(list(ids))))]
            self._count_terms(conn, kind, old, -1)
        else:
            conn.execute(
                text(f"DELETE FROM {KW_TABLES[kind]} WHERE id IN (SELECT value FROM json_each(:ids))"),
                {"ids": json.dumps(list(ids), ensure_ascii=False)},
            )
        if not keep_rows:
            conn.execute(delete(INDEX_TABLES[kind]).where(INDEX_TABLES[kind].c.id.in_(list(ids))))

    @staticmethod
    def _count_terms(conn: Any, kind: Kind, token_strings: Iterable[str], sign: int) -> None:
        """Add (or take away) documents to the terms' document frequencies (PostgreSQL)."""
        counts: dict[str, int] = {}
        for tokens in token_strings:
            for term in set(tokens.split()):
                counts[term] = counts.get(term, 0) + sign
        if not counts:
            return
        rows = [{"kind": kind, "term": t, "doc": n} for t, n in sorted(counts.items())]
        stmt = postgresql.insert(vocab_table)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["kind", "term"], set_={"doc": vocab_table.c.doc + stmt.excluded.doc}
            ),
            rows,
        )
        if sign < 0:
            conn.execute(
                delete(vocab_table).where(
                    vocab_table.c.kind == kind, vocab_table.c.term.in_(list(counts)), vocab_table.c.doc <= 0
                )
            )

    def _upsert_rows(self, conn: Any, kind: Kind, rows: list[dict[str, Any]]) -> None:
        self._upsert(conn, TABLES[kind], rows, self.engine.dialect.name)

    @staticmethod
    def _upsert(conn: Any, table: Table, rows: list[dict[str, Any]], dialect: str) -> None:
        if dialect in ("sqlite", "postgresql"):
            mod = sqlite if dialect == "sqlite" else postgresql
            stmt = mod.insert(table)
            cols = {c: stmt.excluded[c] for c in rows[0] if c != "id"}
            conn.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=cols), rows)
        else:  # portable fallback (one writer per home holds the ingest lock)
            conn.execute(delete(table).where(table.c.id.in_([r["id"] for r in rows])))
            conn.execute(insert(table), rows)

    def set_labels(self, ids: Sequence[str], labels: dict[str, tuple[str | None, str | None]]) -> int:
        """Set label columns ({name: (value, source)}) on feedback records; returns rows changed."""
        values: dict[str, Any] = {}
        for name, (value, source) in labels.items():
            values[name] = value
            values[f"{name}_source"] = source
        with self.engine.begin() as conn:
            result = conn.execute(feedback_table.update().where(feedback_table.c.id.in_(list(ids))).values(**values))
            self._bump_counter(conn, "label_writes")
        if any(source in TRUSTED_SOURCES for _, source in labels.values()):
            self._bump_labels_version()
        return int(result.rowcount or 0)

    def set_machine_labels(self, updates: dict[str, dict[str, tuple[str, str, str | None]]]) -> int:
        """Replace labels a machine set, per record: {id: {field: (value, source, basis)}}. A label
        a person or an import set since is left as it is. Returns the records changed."""
        if not updates:
            return 0
        f = feedback_table.c
        changed = 0
        with self.engine.begin() as conn:
            stored = {
                r["id"]: r
                for r in conn.execute(
                    select(f.id, f.label_basis, *(f[f"{n}_source"] for n in LABEL_FIELDS)).where(
                        f.id.in_(list(updates))
                    )
                ).mappings()
            }
            for rid, fields in updates.items():
                row = stored.get(rid)
                if row is None:
                    continue
                keep = {n: v for n, v in fields.items() if row[f"{n}_source"] in (None, *MACHINE_SOURCES)}
                if not keep:
                    continue
                basis = json.loads(row["label_basis"]) if row["label_basis"] else {}
                values: dict[str, Any] = {}
                for name, (value, source, why) in keep.items():
                    values[name], values[f"{name}_source"] = value, source
                    if why:
                        basis[name] = why
                    else:
                        basis.pop(name, None)
                values["label_basis"] = json.dumps(basis, ensure_ascii=False) if basis else None
                conn.execute(update(feedback_table).where(f.id == rid).values(**values))
                changed += 1
            if changed:
                self._bump_counter(conn, "label_writes")
        return changed

    # ------------------------------------------------------------------ reads
    def count(self, kind: Kind, where: Select[Any] | None = None) -> int:
        """Number of records of ``kind`` (optionally of a filtered id select). The store's total is
        kept per write generation: a search asks for it several times (limits, bm25's idf)."""
        stmt = select(func.count()).select_from(where.subquery() if where is not None else TABLES[kind])

        def read() -> int:
            with self.engine.connect() as conn:
                return int(conn.execute(stmt).scalar_one())

        total: int = read() if where is not None else self._kept(f"count:{kind}", read)
        return total

    def index_rows(
        self, kind: Kind, ids: Sequence[str], rowids: Sequence[int] | None = None
    ) -> tuple[list[str], list[str], np.ndarray]:
        """Ids, token strings and vectors of the given records (unknown ids are skipped).

        ``rowids``: the records' index rows' rowids (:class:`FilterColumns` holds them), found
        faster than by id; a row whose id is not among ``ids`` is left out.
        A record still waiting for the semantic fill is embedded here, from its text in the
        mirror, so exact scoring and clusters never leave it out."""
        table = INDEX_TABLES[kind]
        with self.kw_engine.connect() as conn:
            if self.kw_dialect == "postgresql":  # one array parameter, not thousands to render and parse
                rows = conn.execute(
                    text(f"SELECT id, tokens, vec FROM {table.name} WHERE id = ANY(:ids)"), {"ids": list(ids)}
                ).all()
            elif rowids is not None:
                wanted = set(ids)
                rows = _driver_rows(
                    conn,
                    f"SELECT id, tokens, vec FROM {table.name} WHERE rowid IN (SELECT value FROM json_each(?))",
                    (json.dumps(sorted(int(r) for r in rowids if r >= 0)),),
                )
                rows = [r for r in rows if r[0] in wanted]
            else:
                rows = _driver_rows(
                    conn,
                    f"SELECT id, tokens, vec FROM {table.name} WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(list(ids), ensure_ascii=False),),
                )
        waiting = [r[0] for r in rows if not r[2]]
        fresh = {i: v for i, (v, _meta) in self._embedded(kind, waiting).items()} if waiting else {}
        rows = [r for r in rows if r[2] or r[0] in fresh]
        if not rows:
            return [], [], np.zeros((0, 1), dtype=np.float32)
        if fresh:
            mat = np.vstack([np.frombuffer(r[2], dtype=np.float32) if r[2] else fresh[r[0]] for r in rows])
        else:  # one buffer, not thousands of small arrays stacked
            mat = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1).copy()
        return [r[0] for r in rows], [r[1] for r in rows], mat.astype(np.float32, copy=False)

    def _embedded(
        self, kind: Kind, ids: Sequence[str], embedder: Embedder | None = None
    ) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        """Vectors (and Chroma metadata) of records computed now from their mirror text, with the
        store's embedding or ``embedder``; ids the mirror does not hold are left out."""
        table = TABLES[kind]
        meta_col = table.c.created_ts if kind == "feedback" else table.c.feedback_id
        text_cols = [table.c.text] if kind == "feedback" else [table.c.action, table.c.reply]
        with self.engine.connect() as conn:
            rows = conn.execute(select(table.c.id, meta_col, *text_cols).where(table.c.id.in_(list(ids)))).all()
        if not rows:
            return {}
        texts = [r[2] if kind == "feedback" else f"{r[2]}\n{r[3]}".strip() for r in rows]
        vecs = embed(embedder or self.embedder, texts, [tokenize(t) for t in texts]).astype(np.float32)
        return {r[0]: (v, _chroma_metadata(kind, r[1])) for r, v in zip(rows, vecs, strict=True)}

    def pending(self, kind: Kind | None = None) -> int:
        """Records written without their vector yet (see :meth:`fill`)."""
        stmt = select(func.count()).select_from(pending_table)
        if kind is not None:
            stmt = stmt.where(pending_table.c.kind == kind)
        with self.kw_engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def fill(
        self,
        *,
        batch_size: int = 512,
        lock: Callable[[], AbstractContextManager[Any]] | None = None,
        progress: Callable[[int, int], None] | None = None,
        each_batch: Callable[[Kind, list[str]], None] | None = None,
    ) -> int:
        """Compute the vectors of records an ingest left pending and add them to Chroma; resumable
        (each batch commits on its own) and safe beside other writers when ``lock`` is the home's
        writer lock, taken per batch so an ingest waits at most one batch.

        Returns:
            Records filled in this run.
        """
        filled = 0
        for kind in KINDS:
            while True:
                with lock() if lock is not None else nullcontext():
                    with self.kw_engine.connect() as conn:
                        ids = [
                            r[0]
                            for r in conn.execute(
                                select(pending_table.c.id).where(pending_table.c.kind == kind).limit(batch_size)
                            )
                        ]
                    if not ids:
                        break
                    if each_batch is not None:  # the caller's own second pass (labels)
                        each_batch(kind, ids)
                    got = self._embedded(kind, ids)
                    index = INDEX_TABLES[kind]
                    # the vectors and the pending rows change together for any reader of this home
                    with self._chroma_call():
                        if got:
                            self.collection(kind).upsert(
                                ids=list(got),
                                embeddings=[v for v, _ in got.values()],
                                metadatas=[m for _, m in got.values()],
                            )
                        with self.kw_engine.begin() as kconn:
                            if got:
                                kconn.execute(
                                    update(index).where(index.c.id == bindparam("rid")).values(vec=bindparam("v")),
                                    [{"rid": i, "v": v.tobytes()} for i, (v, _) in got.items()],
                                )
                            kconn.execute(
                                delete(pending_table).where(pending_table.c.kind == kind, pending_table.c.id.in_(ids))
                            )
                        with self.engine.begin() as conn:
                            self._bump_generation(conn)
                filled += len(got)
                if progress is not None:
                    progress(filled, filled + self.pending())
        return filled

    def ids(self, where: Select[Any]) -> list[str]:
        """Ids selected by a filtered id select."""
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(where)]

    def select_ids(self, where: Select[Any], ids: Sequence[str], kind: Kind) -> set[str]:
        """The subset of ``ids`` that a filtered id select admits."""
        table = TABLES[kind]
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(where.where(table.c.id.in_(list(ids))))}

    def ann(self, kind: Kind, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """Approximate nearest neighbours from Chroma: [(id, cosine similarity)]."""
        try:
            with self._chroma_call():
                res = self.collection(kind).query(query_embeddings=[vector], n_results=n, include=["distances"])
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"Chroma query failed: {_first_line(exc)}") from None
        return [(i, 1.0 - float(d)) for i, d in zip(res["ids"][0], res["distances"][0], strict=True)]

    def ann_batch(self, kind: Kind, vectors: np.ndarray, n: int) -> list[list[tuple[str, float]]]:
        """Nearest neighbours of many vectors in one Chroma call: per vector [(id, similarity)]."""
        if len(vectors) == 0:
            return []
        try:
            with self._chroma_call():
                res = self.collection(kind).query(query_embeddings=list(vectors), n_results=n, include=["distances"])
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"Chroma query failed: {_first_line(exc)}") from None
        return [
            [(i, 1.0 - float(d)) for i, d in zip(ids, dists, strict=True)]
            for ids, dists in zip(res["ids"], res["distances"], strict=True)
        ]

    def keyword_terms(self, kind: Kind, tokens: Sequence[str]) -> list[tuple[str, int]]:
        """The query tokens worth matching, rarest first.

        FTS5 scores every document that matches any term, so a term found in a large share of
        the records ("没", "不", "快递") costs milliseconds while adding almost nothing to the
        ranking (its bm25 weight is near zero, and the vector side covers it). Such terms are
        dropped, as are bigrams that repeat a whole query word; the rarest few always stay. The
        terms kept hold at most KEYWORD_POSTINGS postings between them (the rarest always stays).

        Returns:
            [(term, document frequency)], rarest first.
        """
        distinct = list(dict.fromkeys(t for t in tokens if t))
        words = set(distinct)
        distinct = [t for t in distinct if not (t.startswith("#") and t[1:] in words)]
        if not distinct:
            return []
        # FTS5's vocabulary table counts a term's documents by walking its postings (15 ms for a
        # query's common terms at a million records): counts already read stay until a write
        df: dict[str, int] = self._kept(f"document-frequencies:{kind}", dict)
        if wanted := [t for t in distinct if t not in df]:
            df.update(dict.fromkeys(wanted, 0))
            df.update(self._document_frequencies(kind, wanted))
        present = sorted((t for t in distinct if df.get(t)), key=lambda t: (df[t], t))
        limit = max(200, int(0.05 * self.count(kind)))
        kept: list[str] = []
        postings = 0
        for t in present:  # rarest first: every rare term, topped up to three with common ones
            if len(kept) == 16 or (df[t] > limit and len(kept) >= 3) or (kept and postings + df[t] > KEYWORD_POSTINGS):
                break
            kept.append(t)
            postings += df[t]
        return [(t, int(df[t])) for t in kept]

    def _document_frequencies(self, kind: Kind, terms: list[str]) -> dict[str, int]:
        """How many records of ``kind`` hold each of ``terms`` (terms none holds are left out)."""
        with self.kw_engine.connect() as conn:
            if self.kw_dialect == "postgresql":
                v = vocab_table.c
                return dict(conn.execute(select(v.term, v.doc).where(v.kind == kind, v.term.in_(terms))).all())
            return dict(
                conn.execute(
                    text(
                        f"SELECT term, doc FROM {KW_TABLES[kind]}_vocab WHERE term IN (SELECT value FROM json_each(:t))"
                    ),
                    {"t": json.dumps(terms, ensure_ascii=False)},
                ).all()
            )

    def keyword(self, kind: Kind, tokens: Sequence[str], n: int) -> list[tuple[str, float]]:
        """bm25 keyword matches: [(id, score)], best first (higher is better)."""
        if self.kw_dialect == "postgresql":
            return self._pg_keyword(kind, self.keyword_terms(kind, tokens), n)
        query = fts_query(t for t, _ in self.keyword_terms(kind, tokens))
        if query is None:
            return []
        table = KW_TABLES[kind]
        sql = f"SELECT id, bm25({table}) AS s FROM {table} WHERE {table} MATCH ? ORDER BY s LIMIT ?"
        with self.kw_engine.connect() as conn:  # a broad filter may ask for thousands
            return [(r[0], -float(r[1])) for r in _driver_rows(conn, sql, (query, n))]

    def keyword_scores(self, kind: Kind, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every keyword match's FTS5 rowid and bm25 score (higher better), unsorted (SQLite).

        Reading rowids and scores only costs about what the best 129 cost with their ids (6-19 ms
        for 3,000-15,000 matches at a million records, against 22-55 ms with ids): the filter
        columns map the rowids to records."""
        query = fts_query(t for t, _ in self.keyword_terms(kind, tokens))
        if query is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        table = KW_TABLES[kind]
        with self.kw_engine.connect() as conn:
            rows = _driver_rows(conn, f"SELECT rowid, bm25({table}) FROM {table} WHERE {table} MATCH ?", (query,))
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        got = np.array(rows, dtype=np.float64)
        return got[:, 0].astype(np.int64), -got[:, 1]

    def _pg_keyword(self, kind: Kind, terms: list[tuple[str, int]], n: int) -> list[tuple[str, float]]:
        """bm25 in PostgreSQL, as FTS5 computes it: the GIN index finds the records holding any
        term, and each is scored with the terms' document frequencies and the average length."""
        if not terms:
            return []
        n_docs, avgdl = self._keyword_stats(kind)
        params: dict[str, Any] = {"n": n, "avgdl": avgdl or 1.0}
        tfs, parts = [], []
        for j, (term, df) in enumerate(terms[:64]):
            params[f"t{j}"], params[f"w{j}"] = term, max(math.log((n_docs - df + 0.5) / (df + 0.5)), 1e-6)
            params[f"l{j}"] = _tsquery_lexeme(term)
            # the tsvector answers "holds the term?" by binary search; only then are its
            # occurrences counted (most records hold one or two of a query's terms)
            tfs.append(
                f"CASE WHEN tsv @@ CAST(:l{j} AS tsquery) THEN "
                f"cardinality(array_positions(string_to_array(tokens, ' '), CAST(:t{j} AS text))) ELSE 0 END AS tf{j}"
            )
            parts.append(
                f"CAST(:w{j} AS float8) * tf{j} * {BM25_K1 + 1} / "
                f"(tf{j} + {BM25_K1} * (1 - {BM25_B} + {BM25_B} * ntok / CAST(:avgdl AS float8)))"
            )
        params["q"] = " | ".join(params[f"l{j}"] for j in range(len(tfs)))
        index = INDEX_TABLES[kind].name
        sql = (
            f"SELECT id, {' + '.join(parts)} AS s FROM (SELECT id, ntok, {', '.join(tfs)} "
            f"FROM {index} WHERE tsv @@ CAST(:q AS tsquery)) m ORDER BY s DESC, id LIMIT :n"
        )
        with self.kw_engine.connect() as conn:
            return [(r[0], float(r[1])) for r in conn.execute(text(sql), params)]

    def _keyword_stats(self, kind: Kind) -> tuple[int, float]:
        """Records in the keyword index and their average token count (bm25's N and avgdl), kept
        per write generation."""
        index = INDEX_TABLES[kind]

        def read() -> tuple[int, float]:
            with self.kw_engine.connect() as conn:
                count, avg = conn.execute(select(func.count(), func.avg(text("ntok"))).select_from(index)).one()
            return int(count), float(avg or 0.0)

        stats: tuple[int, float] = self._kept(f"keyword-stats:{kind}", read)
        return stats

    @overload
    def records(self, kind: Literal["feedback"], ids: Sequence[str]) -> dict[str, FeedbackRow]: ...
    @overload
    def records(self, kind: Literal["resolution"], ids: Sequence[str]) -> dict[str, ResolutionRow]: ...
    @overload
    def records(self, kind: Kind, ids: Sequence[str]) -> dict[str, FeedbackRow] | dict[str, ResolutionRow]: ...
    def records(self, kind: Kind, ids: Sequence[str]) -> dict[str, FeedbackRow] | dict[str, ResolutionRow]:
        """Full rows (without tokens and vectors) by id."""
        if not ids:
            return {}
        table = TABLES[kind]
        cols = [table.c[name] for name in RECORD_COLUMNS[kind]]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*cols).where(table.c.id.in_(list(ids)))).mappings().all()
        model = ROW_MODELS[kind]
        return {row["id"]: model.model_validate(_row_dict(row)) for row in rows}  # type: ignore[return-value]

    def resolutions_for(self, feedback_ids: Sequence[str]) -> dict[str, list[ResolutionRow]]:
        """Resolutions linked to each feedback id, newest first."""
        if not feedback_ids:
            return {}
        cols = [resolution_table.c[name] for name in RECORD_COLUMNS["resolution"]]
        stmt = (
            select(*cols)
            .where(resolution_table.c.feedback_id.in_(list(feedback_ids)))
            .order_by(resolution_table.c.resolved_ts.desc())
        )
        out: dict[str, list[ResolutionRow]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(stmt).mappings():
                out.setdefault(row["feedback_id"], []).append(ResolutionRow.model_validate(_row_dict(row)))
        return out

    def facet_values(self, facet: str) -> list[str]:
        """Distinct non-empty values of a feedback field, most frequent first (ties by value).

        Every question reads several facets' values to recognise the products, carriers and
        channels it names: a GROUP BY over the whole store each time (about 100 ms per facet at a
        million records). Fields that only ingest writes are therefore kept per write generation,
        which every write in any process bumps; label fields, which labelling changes without a
        new generation, are read each time."""
        col = feedback_table.c[facet]
        stmt = select(col, func.count()).where(col.is_not(None)).group_by(col).order_by(func.count().desc(), col)

        def read() -> list[str]:
            with self.engine.connect() as conn:
                return [r[0] for r in conn.execute(stmt) if r[0]]

        return list(self._kept(f"facet:{facet}", read, keep=facet not in LABEL_FIELDS))

    def holds(self, field: str) -> bool:
        """Whether any feedback record has a value in ``field``. A field no record holds costs a
        scan of the whole table (no index), so the answer is kept per write generation, as facet
        values are; label fields are read each time."""
        col = feedback_table.c[field]

        def read() -> bool:
            with self.engine.connect() as conn:
                return conn.execute(select(col).where(col.is_not(None)).limit(1)).first() is not None

        found: bool = self._kept(f"holds:{field}", read, keep=field not in LABEL_FIELDS)
        return found

    def _kept(self, key: str, compute: Callable[[], Any], *, keep: bool = True) -> Any:
        """``compute()``, kept until the next write generation (every write in any process bumps
        it). ``keep=False`` computes each time: label fields change without a new generation."""
        if not keep:
            return compute()
        generation = self.write_generation()
        hit = self._kept_values.get(key)
        if hit is not None and hit[0] == generation:
            return hit[1]
        value = compute()
        self._kept_values[key] = (generation, value)
        return value

    def _columns_key(self) -> tuple[int, int]:
        """What the filter columns must be read again after: any write, or any label change
        (labelling does not bump the write generation, which would reopen Chroma)."""
        with self.engine.connect() as conn:
            return self.write_generation(conn), self._counter("label_writes", conn)

    def filter_columns(self, *, wait: bool = False) -> FilterColumns | None:
        """The feedback filter fields in memory (:mod:`retrieval.columns`), when they are current.

        They cost a read of every record (5-7 s at a million), so only a long-running process
        (``keep_columns``: the service, the benchmarks) keeps them: when they are missing or out of
        date a thread reads them again, and until it is done filters are resolved in SQL, which
        gives the same answers more slowly. A process that writes often would read them over and
        over: a new read starts no sooner than ten times the last read's duration after it.
        ``wait`` reads them now (tests; and with ``keep_columns`` off)."""
        key = self._columns_key()
        held = self._columns
        if held is not None and held[0] == key:
            return held[1]
        if wait:
            self._read_columns()
            held = self._columns
            return held[1] if held is not None and held[0] == self._columns_key() else None
        if not self.keep_columns:
            return None
        job = self._columns_job
        if (job is None or not job.is_alive()) and time.monotonic() >= self._columns_next:
            self._columns_job = threading.Thread(target=self._read_columns_quietly, name="filter-columns", daemon=True)
            self._columns_job.start()
        return None

    def _read_columns_quietly(self) -> None:
        """The background read: a failure (the store closed under it) leaves searches in SQL."""
        try:
            self._read_columns()
        except Exception:  # noqa: BLE001
            self._columns_next = time.monotonic() + 60.0

    def _read_columns(self) -> None:
        started = time.monotonic()
        key = self._columns_key()
        f = feedback_table.c
        cols: list[Any] = [f.id, f.created_ts, *(f[name] for name in FILTER_FIELDS)]
        source: Any = feedback_table
        # with the keyword index in the same SQLite file, each record's index row is found by its
        # rowid, not its id: a narrow search reads thousands of them (14 ms for 6,000, not 25)
        rowids = self.kw_engine is self.engine and self.kw_dialect == "sqlite"
        if rowids:
            index = INDEX_TABLES["feedback"]
            cols.append(text(f"{index.name}.rowid"))
            source = feedback_table.outerjoin(index, index.c.id == f.id)
        stmt = select(*cols).select_from(source).order_by(f.seq)
        with self.engine.connect() as conn:
            columns = FilterColumns.from_rows(conn.execute(stmt), rowids=rowids)
        if self.kw_dialect == "sqlite":
            with self.kw_engine.connect() as conn:
                columns = columns.with_keyword_rows(
                    conn.exec_driver_sql(f"SELECT rowid, id FROM {KW_TABLES['feedback']}")
                )
        if self._columns_key() == key:  # nothing changed while reading: the columns are that state's
            self._columns = (key, columns)
        took = time.monotonic() - started
        self._columns_next = time.monotonic() + 10 * took

    def settle(self, kind: Kind, written: int) -> None:
        """After a large write on PostgreSQL, ``VACUUM (ANALYZE)`` the tables it wrote.

        A table loaded a moment ago has no planner statistics and few all-visible pages until
        autovacuum comes round: at 100,000 generated records keyword search took 101 ms at p50
        before and 52 ms after (the vacuum took 0.3 s). SQLite needs nothing of the kind."""
        if self.engine.dialect.name != "postgresql" or written < SETTLE_AFTER:
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in (TABLES[kind].name, INDEX_TABLES[kind].name):
                conn.execute(text(f"VACUUM (ANALYZE) {table}"))

    def chroma_count(self, kind: Kind) -> int:
        """Vectors held by Chroma for ``kind`` (for consistency checks)."""
        with self._chroma_call():
            return int(self.collection(kind).count())

    def reindex(
        self, target: Embedder, *, batch_size: int = 1000, progress: Callable[[str, int, int], None] | None = None
    ) -> dict[str, int]:
        """Move the store to the ``target`` embedding; resumable, and the store answers meanwhile.

        New vectors go to new Chroma collections and a side table, batch by batch (a run
        stopped midway resumes where it stopped). When every record has one, a single mirror
        transaction switches the embedding, the collections and the stored vectors; the old
        collections are then dropped. The caller holds the home's writer lock.

        Returns:
            Records re-embedded per kind in this run.
        """
        if target.label == self.embedder.label:
            return dict.fromkeys(KINDS, 0)
        with self.engine.connect() as conn:
            meta = dict(conn.execute(select(meta_table.c.key, meta_table.c.value)).all())
        prefix = meta.get("reindex_prefix", "")
        if meta.get("reindex_target") != target.label:  # a new move (or another target): start over
            prefix = f"fa{uuid.uuid4().hex[:10]}_"
            with self.kw_engine.begin() as kconn:
                kconn.execute(delete(reindex_table))
            with self.engine.begin() as conn:
                conn.execute(delete(meta_table).where(meta_table.c.key.in_(["reindex_target", "reindex_prefix"])))
                conn.execute(
                    insert(meta_table),
                    [{"key": "reindex_target", "value": target.label}, {"key": "reindex_prefix", "value": prefix}],
                )
        done: dict[str, int] = {}
        for kind in KINDS:
            table = TABLES[kind]
            with self._embedded_lock():
                new_col = self.chroma.get_or_create_collection(
                    prefix + COLLECTIONS[kind], embedding_function=target, configuration={"hnsw": {"space": "cosine"}}
                )
            with self.kw_engine.connect() as kconn:
                have = {r[0] for r in kconn.execute(select(reindex_table.c.id).where(reindex_table.c.kind == kind))}
            total = self.count(kind)
            done[kind] = 0
            last_seq = 0
            while True:
                with self.engine.connect() as conn:
                    rows = conn.execute(
                        select(table.c.seq, table.c.id)
                        .where(table.c.seq > last_seq)
                        .order_by(table.c.seq)
                        .limit(batch_size)
                    ).all()
                if not rows:
                    break
                last_seq = rows[-1][0]
                got = self._embedded(kind, [r[1] for r in rows if r[1] not in have], target)
                if got:
                    with self._embedded_lock():
                        new_col.upsert(
                            ids=list(got),
                            embeddings=[v for v, _ in got.values()],
                            metadatas=[m for _, m in got.values()],
                        )
                    with self.kw_engine.begin() as kconn:
                        kconn.execute(
                            insert(reindex_table),
                            [{"kind": kind, "id": i, "vec": v.tobytes()} for i, (v, _) in got.items()],
                        )
                    done[kind] += len(got)
                    have.update(got)
                if progress is not None:
                    progress(kind, len(have), total)
        self._switch_embedding(target, prefix)
        return done

    def _switch_embedding(self, target: Embedder, prefix: str) -> None:
        old_names = [self.collection_prefix + COLLECTIONS[k] for k in KINDS]

        def switch_vectors(kconn: Any) -> None:
            for kind in KINDS:
                kconn.execute(
                    text(
                        f"UPDATE {kind}_index SET vec = (SELECT r.vec FROM reindex_vectors r WHERE r.kind = :k "
                        f"AND r.id = {kind}_index.id) WHERE id IN (SELECT id FROM reindex_vectors WHERE kind = :k)"
                    ),
                    {"k": kind},
                )
            kconn.execute(delete(reindex_table))
            kconn.execute(delete(pending_table))  # the reindex embedded every record

        def switch_meta(conn: Any) -> None:
            conn.execute(
                delete(meta_table).where(
                    meta_table.c.key.in_(["reindex_target", "reindex_prefix", "embedding", "collection_prefix"])
                )
            )
            conn.execute(
                insert(meta_table),
                [{"key": "embedding", "value": target.label}, {"key": "collection_prefix", "value": prefix}],
            )
            self._bump_generation(conn)

        if self.kw_engine is self.engine:  # one SQLite file: one transaction switches everything
            with self.engine.begin() as conn:
                switch_vectors(conn)
                switch_meta(conn)
        else:  # vectors first: until the mirror says otherwise, the old embedding stays in force
            with self.kw_engine.begin() as kconn:
                switch_vectors(kconn)
            with self.engine.begin() as conn:
                switch_meta(conn)
        with self._embedded_lock():
            for name in old_names:
                try:
                    self.chroma.delete_collection(name)
                except Exception:  # already gone: nothing to drop  # noqa: S110
                    pass
        self.embedder, self.collection_prefix = target, prefix
        self._collections.clear()
        self._generation = None

    def counts(self) -> dict[Kind, tuple[int, int, int]]:
        """Per kind: (mirror records, Chroma vectors, records waiting for the fill), read together:
        a fill moves records from pending to Chroma under the Chroma lock, so read apart the three
        could be a batch apart."""
        with self._chroma_call():
            return {kind: (self.count(kind), self.chroma_count(kind), self.pending(kind)) for kind in KINDS}

    def mismatches(self, counts: dict[Kind, tuple[int, int, int]] | None = None) -> dict[Kind, tuple[int, int]]:
        """Kinds whose mirror (less what waits for the fill) and Chroma counts differ: {kind:
        (mirror, chroma)}, from ``counts`` when already read."""
        both = {kind: (n - waiting, c) for kind, (n, c, waiting) in (counts or self.counts()).items()}
        return {kind: c for kind, c in both.items() if c[0] != c[1]}

    def repair(self, *, full: bool = False, page: int = 5000) -> RepairResult:
        """Bring Chroma and the keyword index back in line with the mirror (the commit point).

        A write interrupted between Chroma and the mirror (kill -9, a 503 mid-request) leaves
        vectors no mirror row stands behind: they are deleted, with their keyword rows. A mirror
        row whose vector Chroma lost is re-added from the vector kept in the index table. Cheap
        when nothing is wrong: the ids are compared only for a kind whose counts differ, unless
        ``full`` (the ``repair`` command) compares them always. The caller holds the home's
        writer lock.
        """
        removed = dict.fromkeys(KINDS, 0)
        restored = dict.fromkeys(KINDS, 0)
        with self._chroma_call():
            self._repair(full, page, removed, restored)
        result = RepairResult(removed, restored)
        if result.changed:
            with self.engine.begin() as conn:
                self._bump_generation(conn)
        return result

    def _repair(self, full: bool, page: int, removed: dict[Kind, int], restored: dict[Kind, int]) -> None:
        kinds: list[Kind] = list(KINDS) if full else list(self.mismatches())
        for kind in kinds:
            table = TABLES[kind]
            with self.engine.connect() as conn:
                mirror = {r[0] for r in conn.execute(select(table.c.id))}
            col = self.collection(kind)
            held: set[str] = set()
            offset = 0
            while True:
                got = col.get(include=[], limit=page, offset=offset)["ids"]
                held.update(got)
                if len(got) < page:
                    break
                offset += page
            orphans = sorted(held - mirror)
            for i in range(0, len(orphans), page):
                chunk = orphans[i : i + page]
                col.delete(ids=chunk)
                with self.kw_engine.begin() as conn:
                    self._delete_keywords(conn, kind, chunk)
            removed[kind] = len(orphans)
            with self.kw_engine.begin() as kconn:  # waiting for the fill, not lost; forget what the mirror lacks
                waiting = {r[0] for r in kconn.execute(select(pending_table.c.id).where(pending_table.c.kind == kind))}
                stale = sorted(waiting - mirror)
                for i in range(0, len(stale), page):
                    kconn.execute(
                        delete(pending_table).where(
                            pending_table.c.kind == kind, pending_table.c.id.in_(stale[i : i + page])
                        )
                    )
            missing = sorted(mirror - held - waiting)
            for i in range(0, len(missing), page):
                ids, _tokens, vecs = self.index_rows(kind, missing[i : i + page])
                if not ids:
                    continue
                meta_col = table.c.created_ts if kind == "feedback" else table.c.feedback_id
                with self.engine.connect() as conn:
                    meta = dict(conn.execute(select(table.c.id, meta_col).where(table.c.id.in_(ids))).all())
                metas = [_chroma_metadata(kind, meta[i_]) for i_ in ids]
                col.upsert(ids=ids, embeddings=list(vecs), metadatas=metas)
                restored[kind] += len(ids)


def _chroma_metadata(kind: Kind, value: Any) -> dict[str, Any]:
    """What Chroma keeps beside a vector: the creation time of feedback, the feedback id of a
    resolution (``value`` is that column of the mirror row)."""
    return {"created_ts": int(value)} if kind == "feedback" else {"feedback_id": value}


def _row_dict(row: Any) -> dict[str, Any]:
    """A mirror row as a dict, its extra columns decoded."""
    d = dict(row)
    d["extra"] = json.loads(d["extra"]) if d.get("extra") else {}
    if "label_basis" in d:
        d["label_basis"] = json.loads(d["label_basis"]) if d["label_basis"] else {}
    return d


def _first_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__
