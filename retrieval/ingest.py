"""Ingestion: stream a file, validate each row, upsert in batches, reject bad rows with reasons.

Guarantees:

* streaming and batched: memory stays flat whatever the file size;
* idempotent: ids are stable, unchanged rows are detected by content hash, so re-running the
  same file adds and updates nothing;
* interruptible: each batch is committed on its own, so a run killed mid-file and run again ends
  with every good row stored exactly once;
* one writer per home at a time (a file lock), so concurrent ingests queue instead of racing;
* bad rows never stop the run: they go to ``<home>/rejects/<file>-<time>.jsonl`` with the row
  number, the line and the reason. Only an unusable file (missing, unreadable, no text column)
  raises :class:`InputFileError`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, tzinfo
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, Field, ValidationError

from retrieval.errors import RowError
from retrieval.readers import InputFile
from retrieval.records import Feedback, Resolution, parse_feedback, parse_resolution
from retrieval.store import Kind, Store, file_lock
from retrieval.taxonomy import Taxonomy

ProgressFn = Callable[[int, int], None]


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
    seconds: float = 0.0


def home_lock(home: Path) -> AbstractContextManager[None]:
    """Hold the home's writer lock (blocks while another ingest runs)."""
    return file_lock(home / ".ingest.lock")


def _printable(value: Any) -> Any:
    """Cells for the rejects file: undecodable bytes shown as U+FFFD."""
    if isinstance(value, str):
        return "".join("\ufffd" if "\udc80" <= ch <= "\udcff" else ch for ch in value)
    if isinstance(value, dict):
        return {str(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return str(value)


class _Rejects:
    """The rejects file, created on the first reject."""

    def __init__(self, home: Path, source: Path, now: datetime) -> None:
        self.path = home / "rejects" / f"{source.stem}-{now.strftime('%Y%m%dT%H%M%S%f')}.jsonl"
        self.count = 0
        self._fh: IO[str] | None = None

    def add(self, row: int, line: int | None, reason: str, data: dict[str, Any]) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        entry = {"row": row, "line": line, "reason": reason, "data": _printable(data)}
        self._fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def _id_key(record_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(record_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


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
    labeler: Callable[[list[Feedback]], list[Feedback]] | None = None,
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

    Raises:
        InputFileError: the file is unusable as a whole.
        StoreError: the store cannot be written.
    """
    started = time.perf_counter()
    source = InputFile(path, kind, mapping)
    summary = IngestSummary(path=str(path), kind=kind, format=source.format or "", encoding=source.encoding)
    rejects = _Rejects(store.home, Path(path), now)
    seen: dict[int, int] = {}
    batch: list[Feedback | Resolution] = []

    def flush() -> None:
        if not batch:
            return
        result = store.upsert(kind, batch, now, label=labeler if kind == "feedback" else None)
        summary.added += len(result.added)
        summary.updated += len(result.updated)
        summary.unchanged += len(result.unchanged)
        batch.clear()
        if progress is not None:
            progress(source.position, source.total)

    with home_lock(store.home):
        try:
            for raw in source:
                summary.read += 1
                if raw.error is not None or raw.values is None:
                    rejects.add(raw.number, raw.line, raw.error or "unreadable row", raw.source)
                    continue
                try:
                    record: Feedback | Resolution
                    if kind == "feedback":
                        record = parse_feedback(raw.values, zone=zone, imported_at=now, taxonomy=taxonomy)
                    else:
                        record = parse_resolution(raw.values, zone=zone, imported_at=now)
                except RowError as exc:
                    rejects.add(raw.number, raw.line, str(exc), raw.source)
                    continue
                except ValidationError as exc:
                    err = exc.errors()[0]
                    reason = f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
                    rejects.add(raw.number, raw.line, reason, raw.source)
                    continue
                key = _id_key(record.id)
                first = seen.get(key)
                if first is not None:
                    rejects.add(raw.number, raw.line, f"duplicate id {record.id!r} (first seen at row {first})", raw.source)
                    continue
                seen[key] = raw.number
                batch.append(record)
                if len(batch) >= batch_size:
                    flush()
            flush()
        finally:
            rejects.close()
            source.close()
    summary.rejected = rejects.count
    summary.rejects_path = str(rejects.path) if rejects.count else None
    summary.seconds = round(time.perf_counter() - started, 3)
    if progress is not None:
        progress(source.total, source.total)
    return summary
