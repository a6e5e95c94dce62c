"""Ingestion: stream a file, validate each row, upsert in batches, reject bad rows with reasons.

Guarantees:

* streaming and batched: memory stays flat whatever the file size;
* idempotent: ids are stable, unchanged rows are detected by content hash, so re-running the
  same file adds and updates nothing;
* interruptible: each batch is committed on its own, so a run killed mid-file and run again ends
  with every good row stored exactly once;
* one writer per store at a time (:meth:`Store.writer_lock`: a file lock in the home, or an
  advisory lock on PostgreSQL), so concurrent ingests queue instead of racing;
* bad rows never stop the run: they go to ``<home>/rejects/<file>-<time>.jsonl`` with the row
  number, the line and the reason. Only an unusable file (missing, unreadable, no text column)
  raises :class:`InputFileError`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, Field, ValidationError

from retrieval.errors import RowError
from retrieval.pii import redact
from retrieval.readers import InputFile, RawRow
from retrieval.records import Feedback, Resolution, parse_feedback, parse_resolution
from retrieval.store import Kind, Store, UpsertResult
from retrieval.taxonomy import Taxonomy

ProgressFn = Callable[[int, int], None]
RejectFn = Callable[[RawRow, str], None]
Labeler = Callable[[list[Feedback]], list[Feedback]]
# The free-text fields personal data can sit in (names, phones, addresses), per kind.
FREE_TEXT = {"feedback": ("text",), "resolution": ("action", "reply", "compensation")}


class IngestSummary(BaseModel):
    """What an ingest run did (the ``--json`` output of ``ingest``)."""

    path: str
    kind: Kind
    format: str
    encoding: str | None
    read: int = Field(0, description="Data rows read (blank lines not counted).")
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejects_path: str | None = None
    notes: list[str] = Field(default_factory=list, description="What the reader chose or passed over (sheets).")
    seconds: float = 0.0


def printable(value: Any) -> Any:
    """Cells for the rejects file's readable part: undecodable bytes shown as U+FFFD."""
    if isinstance(value, str):
        return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in value)
    if isinstance(value, dict):
        return {str(printable(k)): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return str(value)


class _Rejects:
    """The rejects file, created on the first reject.

    Each entry holds the row number, its line (or line range), the reason, the cells in readable
    form and, where the reader has them, the row's original bytes in base64 (``raw_b64``): a
    rejected row can always be recovered exactly, whatever its encoding.
    """

    def __init__(self, home: Path, source: Path, now: datetime) -> None:
        self.path = home / "rejects" / f"{source.stem}-{now.strftime('%Y%m%dT%H%M%S%f')}.jsonl"
        self.count = 0
        self._fh: IO[str] | None = None

    def add(self, raw: RawRow, reason: str) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        entry: dict[str, Any] = {
            "row": raw.number,
            "line": raw.line,
            "reason": reason,
            "data": printable(raw.source or raw.values or {}),
        }
        if raw.last_line is not None and raw.last_line != raw.line:
            entry["lines"] = [raw.line, raw.last_line]
        if raw.sheet is not None:
            entry["sheet"] = raw.sheet
        if raw.raw is not None:
            entry["raw_b64"] = base64.b64encode(raw.raw).decode("ascii")
        self._fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def _id_key(record_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(record_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def ingest_rows(
    store: Store,
    rows: Iterable[RawRow],
    *,
    kind: Kind,
    taxonomy: Taxonomy | None,
    zone: tzinfo,
    now: datetime,
    reject: RejectFn,
    batch_size: int = 1000,
    labeler: Labeler | None = None,
    after_batch: Callable[[], None] | None = None,
    defer_vectors: bool = False,
    redact_pii: bool = False,
) -> UpsertResult:
    """Validate rows and upsert them in batches; the one row loop of every ingest (file or HTTP).

    The caller holds the store's writer lock. Each bad row goes to ``reject`` with its reason and
    never stops the run; in-input duplicate ids are rejected after the first. With
    ``redact_pii`` the free-text fields have phones, e-mails, ID and card numbers and addresses
    replaced by placeholders before anything is stored, so no part of the store (mirror,
    keyword tokens, vectors, the classifier's model file) holds them.

    Returns:
        The ids added, updated and left unchanged.
    """
    total = UpsertResult([], [], [])
    seen: dict[int, int] = {}
    batch: list[Feedback | Resolution] = []

    def flush() -> None:
        if not batch:
            return
        result = store.upsert(
            kind, batch, now, label=labeler if kind == "feedback" else None, defer_vectors=defer_vectors
        )
        total.added += result.added
        total.updated += result.updated
        total.unchanged += result.unchanged
        batch.clear()
        if after_batch is not None:
            after_batch()

    for raw in rows:
        if raw.error is not None or raw.values is None:
            reject(raw, raw.error or "unreadable row")
            continue
        if redact_pii:
            raw.values = {
                k: redact(v) if k in FREE_TEXT[kind] and isinstance(v, str) else v for k, v in raw.values.items()
            }
        try:
            record: Feedback | Resolution
            if kind == "feedback":
                record = parse_feedback(raw.values, zone=zone, imported_at=now, taxonomy=taxonomy)
            else:
                record = parse_resolution(raw.values, zone=zone, imported_at=now)
        except RowError as exc:
            reject(raw, str(exc))
            continue
        except ValidationError as exc:
            err = exc.errors()[0]
            reject(raw, f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}")
            continue
        key = _id_key(record.id)
        first = seen.get(key)
        if first is not None:
            reject(raw, f"duplicate id {record.id!r} (first seen at row {first})")
            continue
        seen[key] = raw.number
        batch.append(record)
        if len(batch) >= batch_size:
            flush()
    flush()
    return total


def ingest_file(
    store: Store,
    path: str | Path,
    *,
    kind: Kind = "feedback",
    mapping: dict[str, str] | None = None,
    taxonomy: Taxonomy | None = None,
    zone: tzinfo,
    now: datetime,
    batch_size: int = 1000,
    progress: ProgressFn | None = None,
    labeler: Labeler | None = None,
    redact_pii: bool = False,
    defer_vectors: bool = False,
) -> IngestSummary:
    """Ingest one file of feedback or resolution records into ``store``.

    Args:
        store: the target store.
        path: CSV/TSV, JSONL or XLSX file.
        kind: ``feedback`` or ``resolution``.
        mapping: {field: header} from ``--map``.
        taxonomy: imported labels are checked against it.
        zone: zone for naive timestamps.
        now: the import time (missing ``created_at`` takes it).
        batch_size: rows per committed batch.
        progress: called with (position, total) as the file is read.
        labeler: fills in missing labels of new feedback (classification on ingest).
        defer_vectors: store the records without vectors, for :meth:`Store.fill` to compute.
        redact_pii: store free text with personal data replaced (see :func:`ingest_rows`).

    Raises:
        InputFileError: the file is unusable as a whole.
        StoreError: the store cannot be written.
    """
    started = time.perf_counter()
    source = InputFile(path, kind, mapping)
    summary = IngestSummary(path=str(path), kind=kind, format=source.format or "", encoding=source.encoding)
    rejects = _Rejects(store.home, Path(path), now)

    def counted(rows: Iterable[RawRow]) -> Iterable[RawRow]:
        for raw in rows:
            summary.read += 1
            yield raw

    def after_batch() -> None:
        if progress is not None:
            progress(source.position, source.total)

    with store.writer_lock():
        try:
            store.repair()  # a run killed between Chroma and the mirror left orphans: clear them first
            result = ingest_rows(
                store,
                counted(source),
                kind=kind,
                taxonomy=taxonomy,
                zone=zone,
                now=now,
                reject=rejects.add,
                batch_size=batch_size,
                labeler=labeler,
                after_batch=after_batch,
                redact_pii=redact_pii,
                defer_vectors=defer_vectors,
            )
        finally:
            rejects.close()
            source.close()
    summary.added, summary.updated, summary.unchanged = len(result.added), len(result.updated), len(result.unchanged)
    store.settle(kind, summary.added + summary.updated)
    mixed = source.encodings_seen
    if len(mixed) > 1:
        summary.encoding = "mixed (" + ", ".join(f"{n} lines {e}" for e, n in sorted(mixed.items())) + ")"
    summary.notes = source.notes
    summary.rejected = rejects.count
    summary.rejects_path = str(rejects.path) if rejects.count else None
    summary.seconds = round(time.perf_counter() - started, 3)
    if progress is not None:
        progress(source.total, source.total)
    return summary
