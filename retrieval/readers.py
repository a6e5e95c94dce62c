"""Streaming readers for CSV, JSONL and XLSX input, with column mapping.

Nothing here loads a whole file: CSV and JSONL are read line by line from a byte stream (so the
progress bar can show bytes), XLSX through openpyxl's read-only mode. Encodings are detected from
the first megabyte: BOMs, then strict UTF-8, then GB18030 (a superset of GBK/GB2312). Bytes that
do not decode become surrogates and the rows holding them are rejected, never silently altered.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from retrieval.errors import InputFileError, RowError
from retrieval.records import FEEDBACK_FIELDS, FIELD_ALIASES, RESOLUTION_FIELDS, check_text

SUPPORTED = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
             ".xlsx": "xlsx", ".xlsm": "xlsx"}  # fmt: skip
MAX_FIELD_CHARS = 1_000_000  # a runaway quote must not swallow a 1 GB file into one field
REQUIRED = {"feedback": ("text",), "resolution": ("feedback_id", "action")}


@dataclass
class RawRow:
    """One input row: mapped values, or the reason it could not be read."""

    number: int  # 1-based data row (header not counted)
    line: int | None  # physical line (CSV/JSONL) or sheet row (XLSX)
    values: dict[str, Any] | None = None
    error: str | None = None
    source: dict[str, Any] = field(default_factory=dict)  # original cells, for the rejects file


def fields_for(kind: str) -> tuple[str, ...]:
    """The record fields of ``kind`` (feedback or resolution)."""
    if kind == "feedback":
        return FEEDBACK_FIELDS
    if kind == "resolution":
        return RESOLUTION_FIELDS
    raise InputFileError(f"unknown kind {kind!r}: use feedback or resolution")


def parse_map_options(options: list[str], kind: str) -> dict[str, str]:
    """Parse ``--map field=Header`` options into {field: header}."""
    valid = fields_for(kind)
    mapping: dict[str, str] = {}
    for opt in options:
        name, sep, header = opt.partition("=")
        name, header = name.strip(), header.strip()
        if not sep or not name or not header:
            raise InputFileError(f"--map {opt!r} must look like field=Header")
        if name not in valid:
            raise InputFileError(f"--map {opt!r}: unknown field {name!r}; fields: {', '.join(valid)}")
        mapping[name] = header
    return mapping


def _norm_header(h: str) -> str:
    return re.sub(r"[\s\-]+", "_", h.strip().lstrip("\ufeff")).casefold()


def build_header_map(headers: list[str], kind: str, explicit: dict[str, str]) -> dict[str, str]:
    """Map input headers to record fields: explicit ``--map`` first, then names and aliases.

    Returns:
        {header: field}; headers not in it are kept as extra columns.

    Raises:
        InputFileError: a mapped header is absent.
    """
    valid = fields_for(kind)
    by_norm = {_norm_header(h): h for h in reversed(headers)}
    header_to_field: dict[str, str] = {}
    for fld, header in explicit.items():
        actual = header if header in headers else by_norm.get(_norm_header(header))
        if actual is None:
            raise InputFileError(
                f"column {header!r} (mapped to {fld}) is not in the file; columns: "
                + ", ".join(headers[:30])
            )
        header_to_field[actual] = fld
    taken = set(header_to_field.values())
    for fld in valid:
        if fld in taken:
            continue
        for name in (fld, *FIELD_ALIASES.get(fld, ())):
            actual = by_norm.get(_norm_header(name))
            if actual is not None and actual not in header_to_field:
                header_to_field[actual] = fld
                break
    return header_to_field


def check_required(header_map: dict[str, str], headers: list[str], kind: str, path: Path) -> None:
    """Fail with one line when a required column is missing."""
    mapped = set(header_map.values())
    for fld in REQUIRED[kind]:
        if fld not in mapped:
            shown = ", ".join(headers[:20]) or "none"
            raise InputFileError(
                f"{path.name}: no {fld} column (columns: {shown}); name one with --map {fld}=Header"
            )


# --------------------------------------------------------------------------- encodings


def detect_encoding(head: bytes) -> str:
    """Pick the encoding of a text file from its first bytes."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    for enc in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(enc)().decode(head, final=False)
            return enc
        except UnicodeDecodeError:
            continue
    return "utf-8"  # undecodable bytes become surrogates; their rows are rejected


class _Source:
    """An open input file with a byte position for progress."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self._fh: BinaryIO = open(path, "rb")  # noqa: SIM115 (closed by close())
        self.text: io.TextIOWrapper | None = None

    @property
    def position(self) -> int:
        try:
            return self._fh.tell()
        except (OSError, ValueError):
            return self.size

    def close(self) -> None:
        if self.text is not None:
            self.text.close()  # closes the byte stream too
        self._fh.close()


class InputFile:
    """Rows of one input file, mapped to the fields of ``kind``.

    Args:
        path: CSV/TSV, JSONL or XLSX file.
        kind: ``feedback`` or ``resolution``.
        explicit_map: {field: header} from ``--map``.

    Raises:
        InputFileError: the file is missing, unreadable, of an unknown type or has no text column.
    """

    def __init__(self, path: str | Path, kind: str, explicit_map: dict[str, str] | None = None):
        self.path = Path(path)
        self.kind = kind
        self.explicit_map = explicit_map or {}
        fields_for(kind)
        if not self.path.exists():
            raise InputFileError(f"file not found: {self.path}")
        if self.path.is_dir():
            raise InputFileError(f"{self.path} is a directory, not a file")
        if not os.access(self.path, os.R_OK):
            raise InputFileError(f"cannot read {self.path}: permission denied")
        self.format = SUPPORTED.get(self.path.suffix.lower())
        if self.format is None:
            raise InputFileError(
                f"{self.path.name}: unsupported file type {self.path.suffix or '(none)'}; "
                "use .csv, .tsv, .jsonl or .xlsx"
            )
        self.encoding: str | None = None
        self.headers: list[str] = []
        self.header_map: dict[str, str] = {}
        self._source: _Source | None = None
        try:
            self._rows: Iterator[RawRow] = self._open()
        except BaseException:
            self.close()
            raise

    # progress -----------------------------------------------------------
    @property
    def total(self) -> int:
        """Progress total: bytes (CSV/JSONL) or rows (XLSX)."""
        return self._xlsx_rows if self.format == "xlsx" else (self._source.size if self._source else 0)

    @property
    def position(self) -> int:
        """Progress so far, in the unit of :attr:`total`."""
        if self.format == "xlsx":
            return self._xlsx_pos
        return self._source.position if self._source else 0

    def __iter__(self) -> Iterator[RawRow]:
        try:
            yield from self._rows
        finally:
            self.close()

    def close(self) -> None:
        """Release the file handle."""
        if self._source is not None:
            self._source.close()
        wb = getattr(self, "_wb", None)
        if wb is not None:
            wb.close()

    # opening ---------------------------------------------------------------
    def _open(self) -> Iterator[RawRow]:
        if self.format == "csv":
            return self._open_csv()
        if self.format == "jsonl":
            return self._open_jsonl()
        return self._open_xlsx()

    def _map_row(self, cells: dict[str, Any], number: int, line: int | None) -> RawRow:
        values: dict[str, Any] = {}
        for header, value in cells.items():
            if header is None:
                continue
            fld = self.header_map.get(header)
            if fld is not None:
                values[fld] = value
            else:
                values.setdefault(header, value)  # kept as an extra column
        return RawRow(number=number, line=line, values=values, source=cells)

    def _open_csv(self) -> Iterator[RawRow]:
        self._source = _Source(self.path)
        with open(self.path, "rb") as fh:
            head = fh.read(1 << 20)
        if not head.strip():
            raise InputFileError(f"{self.path.name} is empty")
        self.encoding = detect_encoding(head)
        if self.encoding != "utf-16" and b"\x00" in head:
            raise InputFileError(f"{self.path.name} looks binary, not CSV (NUL bytes)")
        text = self._source.text = io.TextIOWrapper(
            self._source._fh, encoding=self.encoding, errors="surrogateescape", newline=""
        )
        first = text.readline()
        delimiter = "\t" if self.path.suffix.lower() == ".tsv" else _sniff_delimiter(first)
        csv.field_size_limit(MAX_FIELD_CHARS)
        header_cells = next(csv.reader([first], delimiter=delimiter), [])
        self.headers = _unique_headers(header_cells)
        self.header_map = build_header_map(self.headers, self.kind, self.explicit_map)
        check_required(self.header_map, self.headers, self.kind, self.path)
        return self._csv_rows(text, delimiter)

    def _csv_rows(self, text: io.TextIOWrapper, delimiter: str) -> Iterator[RawRow]:
        reader = csv.reader(text, delimiter=delimiter)
        number = 0
        n_headers = len(self.headers)
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                number += 1
                yield RawRow(number=number, line=reader.line_num + 1, error=f"malformed CSV: {exc}")
                continue
            if not cells or all(not c.strip() for c in cells):
                continue  # blank line
            number += 1
            line = reader.line_num + 1  # +1: the header line was read outside this reader
            if len(cells) > n_headers and any(c.strip() for c in cells[n_headers:]):
                yield RawRow(
                    number=number, line=line,
                    error=f"row has {len(cells)} cells but the header has {n_headers}",
                    source={"cells": cells},
                )  # fmt: skip
                continue
            yield self._map_row(dict(zip(self.headers, cells, strict=False)), number, line)

    def _open_jsonl(self) -> Iterator[RawRow]:
        self._source = _Source(self.path)
        self.encoding = "utf-8"
        return self._jsonl_rows()

    def _jsonl_rows(self) -> Iterator[RawRow]:
        assert self._source is not None
        number = 0
        maps: dict[tuple[str, ...], dict[str, str]] = {}
        checked = False
        for line_no, raw in enumerate(self._source._fh, start=1):
            if not raw.strip():
                continue
            number += 1
            try:
                obj = json.loads(raw.decode("utf-8-sig" if line_no == 1 else "utf-8"))
            except UnicodeDecodeError:
                yield RawRow(number=number, line=line_no, error="line is not valid UTF-8")
                continue
            except json.JSONDecodeError as exc:
                yield RawRow(number=number, line=line_no, error=f"invalid JSON: {exc.msg}")
                continue
            if not isinstance(obj, dict):
                yield RawRow(number=number, line=line_no, error="line is not a JSON object")
                continue
            cells = {str(k): (json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v)
                     for k, v in obj.items()}  # fmt: skip
            key = tuple(cells)
            if key not in maps:
                maps[key] = build_header_map(list(key), self.kind, self.explicit_map)
            self.header_map = maps[key]
            if not checked:
                self.headers = list(key)
                check_required(self.header_map, self.headers, self.kind, self.path)
                checked = True
            yield self._map_row(cells, number, line_no)
        if not checked:
            raise InputFileError(f"{self.path.name} holds no JSON records")

    def _open_xlsx(self) -> Iterator[RawRow]:
        import zipfile

        from openpyxl import load_workbook

        try:
            self._wb = load_workbook(self.path, read_only=True, data_only=True)
        except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
            raise InputFileError(f"{self.path.name} is not a readable XLSX workbook: {exc}") from None
        ws = self._wb.worksheets[0]
        self._xlsx_rows = int(ws.max_row or 0)
        self._xlsx_pos = 0
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise InputFileError(f"{self.path.name}: the first sheet is empty")
        self.headers = _unique_headers(["" if h is None else str(h) for h in header])
        self.header_map = build_header_map(self.headers, self.kind, self.explicit_map)
        check_required(self.header_map, self.headers, self.kind, self.path)
        return self._xlsx_iter(rows)

    def _xlsx_iter(self, rows: Iterator[tuple[Any, ...]]) -> Iterator[RawRow]:
        number = 0
        for sheet_row, cells in enumerate(rows, start=2):
            self._xlsx_pos = sheet_row
            if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
                continue
            number += 1
            yield self._map_row(dict(zip(self.headers, cells, strict=False)), number, sheet_row)


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _unique_headers(cells: list[str]) -> list[str]:
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(cells, start=1):
        h = raw.strip().lstrip("\ufeff") or f"column_{i}"
        if h in seen:
            seen[h] += 1
            h = f"{h}_{seen[h]}"
        else:
            seen[h] = 1
        out.append(h)
    return out


@dataclass
class TextRow:
    """A row reduced to what text tasks (classify, evals) need."""

    row: RawRow
    id: str | None
    text: str | None  # None when the row is unusable
    error: str | None


def text_rows(source: InputFile) -> Iterator[TextRow]:
    """Each row's id and checked text, or the reason it has none (same rules as ingestion)."""
    for raw in source:
        values = raw.values or {}
        rid = str(values["id"]).strip() if values.get("id") not in (None, "") else None
        if raw.error is not None:
            yield TextRow(raw, rid, None, raw.error)
            continue
        try:
            yield TextRow(raw, rid, check_text(values.get("text"), "text"), None)
        except RowError as exc:
            yield TextRow(raw, rid, None, str(exc))
