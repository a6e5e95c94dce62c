"""Streaming readers for CSV, JSONL and XLSX input, with column mapping.

Nothing here loads a whole file: CSV and JSONL are read line by line from a byte stream (so the
progress bar can show bytes), XLSX through openpyxl's read-only mode.

Nothing is lost to one bad byte. Each physical line of a CSV is decoded on its own: strict UTF-8,
then GB18030 (a superset of GBK/GB2312), so a GBK export with a few UTF-8 rows (or the reverse)
keeps every row. A line neither decodes keeps its undecodable bytes as surrogates, and the row
holding it is rejected with its original bytes (``RawRow.raw``), never silently altered. NUL
bytes are cleaned out of the row that holds them; only a file that is mostly NULs is refused as
binary. A quote left open does not swallow the rest of the file: a record whose continuation
lines parse as rows of their own is a runaway, its first line is rejected with its line range and
reading resumes at the next line.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from retrieval.errors import InputFileError, RowError
from retrieval.records import FEEDBACK_FIELDS, FIELD_ALIASES, RESOLUTION_FIELDS, check_text

SUPPORTED = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
}
MAX_FIELD_CHARS = 1_000_000  # a runaway quote must not swallow a 1 GB file into one field
MAX_RECORD_LINES = 200  # a quoted field spanning more lines than this is a runaway, whatever it holds
REQUIRED = {"feedback": ("text",), "resolution": ("feedback_id", "action")}


@dataclass
class RawRow:
    """One input row: mapped values, or the reason it could not be read."""

    number: int  # 1-based data row (header not counted)
    line: int | None  # physical line (CSV/JSONL) or sheet row (XLSX)
    values: dict[str, Any] | None = None
    error: str | None = None
    source: dict[str, Any] = field(default_factory=dict)  # original cells, for the rejects file
    raw: bytes | None = None  # the row's original bytes (CSV/JSONL), for the rejects file
    sheet: str | None = None  # the XLSX sheet, when the workbook has several
    last_line: int | None = None  # the last physical line of a multi-line record


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
                f"column {header!r} (mapped to {fld}) is not in the file; columns: " + ", ".join(headers[:30])
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
            raise InputFileError(f"{path.name}: no {fld} column (columns: {shown}); name one with --map {fld}=Header")


# --------------------------------------------------------------------------- encodings


def detect_encoding(head: bytes) -> str:
    """Pick the encoding of a text file from its first bytes.

    BOMs first; then UTF-16 without a BOM (NULs in every other byte of mostly-ASCII text); then
    strict UTF-8, then GB18030. "binary" when NULs make up much of the sample otherwise. The CSV
    reader decodes each line on its own (:func:`decode_line`), so this only names the file's
    main encoding.
    """
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    nuls = head.count(b"\x00")
    if nuls:
        even, odd = head[0::2].count(b"\x00"), head[1::2].count(b"\x00")
        pairs = max(1, len(head) // 2)
        if odd > 0.3 * pairs and even < 0.05 * pairs:
            return "utf-16-le"
        if even > 0.3 * pairs and odd < 0.05 * pairs:
            return "utf-16-be"
        if nuls > 0.1 * len(head):
            return "binary"
    for enc in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(enc)().decode(head.replace(b"\x00", b""), final=False)
            return enc
        except UnicodeDecodeError:
            continue
    return "utf-8"  # undecodable bytes become surrogates; their rows are rejected


def decode_line(raw: bytes, fallback: str = "utf-8") -> tuple[str, str | None]:
    """One line of an 8-bit file as text, and the encoding that read it (None: neither did).

    Strict UTF-8 comes first because it almost never accepts GBK bytes by accident, while
    GB18030 accepts much of UTF-8. A line neither reads is decoded in ``fallback`` with its bad
    bytes kept as surrogates, so the row is rejected rather than altered.
    """
    raw = raw.replace(b"\x00", b"")
    for enc in ("utf-8", "gb18030"):
        try:
            return raw.decode(enc), enc
        except UnicodeDecodeError:
            continue
    return raw.decode(fallback, "surrogateescape"), None


@dataclass
class _Line:
    number: int  # 1-based physical line
    raw: bytes
    text: str


class _LineFeed:
    """Physical lines for ``csv.reader``, remembering which lines the current record used.

    Lines can be pushed back, so that after a runaway record the lines it swallowed are read again.
    """

    def __init__(self, lines: Iterator[_Line]) -> None:
        self._lines = lines
        self.pending: deque[_Line] = deque()
        self.used: list[_Line] = []

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        line = self.pending.popleft() if self.pending else next(self._lines)
        self.used.append(line)
        return line.text

    def take(self) -> list[_Line]:
        used, self.used = self.used, []
        return used


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
        self.notes: list[str] = []  # what the reader passed over or chose (sheets), said to the user
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
        if not head.strip(b" \t\r\n\x00"):
            raise InputFileError(f"{self.path.name} is empty")
        self.encoding = detect_encoding(head)
        if self.encoding == "binary":
            raise InputFileError(f"{self.path.name} looks binary, not CSV (mostly NUL bytes)")
        self._encodings: dict[str, int] = {}
        feed = _LineFeed(self._physical_lines())
        header_cells = self._first_record(feed)
        delimiter = "\t" if self.path.suffix.lower() == ".tsv" else _sniff_delimiter(header_cells)
        csv.field_size_limit(MAX_FIELD_CHARS)
        header = next(csv.reader([header_cells], delimiter=delimiter), [])
        self.headers = _unique_headers(header)
        self.header_map = build_header_map(self.headers, self.kind, self.explicit_map)
        check_required(self.header_map, self.headers, self.kind, self.path)
        return self._csv_rows(feed, delimiter)

    def _physical_lines(self) -> Iterator[_Line]:
        """Lines with their original bytes; 8-bit files are decoded line by line."""
        assert self._source is not None
        fh = self._source._fh
        if self.encoding and self.encoding.startswith("utf-16"):
            # Two-byte text cannot be split on b"\n": decode the stream, keep each line re-encoded.
            enc = self.encoding
            stream = self._source.text = io.TextIOWrapper(fh, encoding=enc, errors="surrogatepass", newline="")
            for number, line in enumerate(stream, start=1):
                clean = line.replace("\x00", "").lstrip("\ufeff") if number == 1 else line.replace("\x00", "")
                yield _Line(number, line.encode(enc if enc != "utf-16" else "utf-16-le", "surrogatepass"), clean)
            return
        fallback = "gb18030" if self.encoding == "gb18030" else "utf-8"
        for number, raw in enumerate(fh, start=1):
            body = raw[3:] if number == 1 and raw.startswith(codecs.BOM_UTF8) else raw
            text, used = decode_line(body, fallback)
            if used is not None and any(b > 0x7F for b in body):
                self._encodings[used] = self._encodings.get(used, 0) + 1
            yield _Line(number, raw, text)

    @property
    def encodings_seen(self) -> dict[str, int]:
        """Lines read by each 8-bit encoding (non-ASCII lines only): a mixed file shows both."""
        return dict(getattr(self, "_encodings", {}))

    @staticmethod
    def _first_record(feed: _LineFeed) -> str:
        """The header's text (a header may hold quoted line breaks, but not a runaway)."""
        lines: list[str] = []
        for text in feed:
            lines.append(text)
            if "".join(lines).count('"') % 2 == 0 or len(lines) >= 5:
                break
        feed.take()
        return "".join(lines)

    def _csv_rows(self, feed: _LineFeed, delimiter: str) -> Iterator[RawRow]:
        reader = csv.reader(feed, delimiter=delimiter)
        number = 0
        n_headers = len(self.headers)
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                used = feed.take()
                number += 1
                yield RawRow(
                    number=number,
                    line=used[0].number if used else None,
                    last_line=used[-1].number if used else None,
                    error=f"malformed CSV: {exc}",
                    source={"text": _joined(used)},
                    raw=b"".join(u.raw for u in used),
                )
                reader = csv.reader(feed, delimiter=delimiter)  # a fresh reader: the old one may be mid-field
                continue
            used = feed.take()
            if not cells or all(not c.strip() for c in cells):
                continue  # blank line
            if len(used) > 1 and _runaway(used, cells, n_headers, delimiter):
                number += 1
                first = used[0]
                feed.pending.extendleft(reversed(used[1:]))
                yield RawRow(
                    number=number,
                    line=first.number,
                    last_line=first.number,
                    error=f"unclosed quote: the field ran over lines {first.number}-{used[-1].number}, "
                    f"which hold rows of their own; rejected line {first.number} only and "
                    f"read on from line {used[1].number}",
                    source={"text": first.text},
                    raw=first.raw,
                )
                continue
            number += 1
            line, last = used[0].number, used[-1].number
            raw = b"".join(u.raw for u in used)
            if len(cells) > n_headers and any(c.strip() for c in cells[n_headers:]):
                yield RawRow(
                    number=number,
                    line=line,
                    last_line=last,
                    raw=raw,
                    error=f"row has {len(cells)} cells but the header has {n_headers}",
                    source={"cells": cells},
                )
                continue
            row = self._map_row(dict(zip(self.headers, cells, strict=False)), number, line)
            row.raw, row.last_line = raw, last
            yield row

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
            body = raw[3:] if line_no == 1 and raw.startswith(codecs.BOM_UTF8) else raw
            text, enc = decode_line(body)
            bad: dict[str, Any] = {"number": number, "line": line_no, "raw": raw, "source": {"text": text}}
            if enc is None:
                yield RawRow(**bad, error="line is not valid UTF-8 (nor GB18030)")
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield RawRow(**bad, error=f"invalid JSON: {exc.msg}")
                continue
            if not isinstance(obj, dict):
                yield RawRow(**bad, error="line is not a JSON object")
                continue
            cells = {
                str(k): (json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v) for k, v in obj.items()
            }
            key = tuple(cells)
            if key not in maps:
                maps[key] = build_header_map(list(key), self.kind, self.explicit_map)
            self.header_map = maps[key]
            if not checked:
                self.headers = list(key)
                check_required(self.header_map, self.headers, self.kind, self.path)
                checked = True
            row = self._map_row(cells, number, line_no)
            row.raw = raw
            yield row
        if not checked:
            raise InputFileError(f"{self.path.name} holds no JSON records")

    def _open_xlsx(self) -> Iterator[RawRow]:
        """Every sheet whose header holds the required columns is read; the others are named in
        :attr:`notes`, so no sheet is passed over without a word."""
        import zipfile

        from openpyxl import load_workbook

        try:
            self._wb = load_workbook(self.path, read_only=True, data_only=True)
        except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
            raise InputFileError(f"{self.path.name} is not a readable XLSX workbook: {exc}") from None
        sheets: list[tuple[Any, list[str], dict[str, str], Iterator[tuple[Any, ...]]]] = []
        first_error: InputFileError | None = None
        for ws in self._wb.worksheets:
            rows = ws.iter_rows(values_only=True)
            header = next(rows, None)
            if header is None or all(h is None or not str(h).strip() for h in header):
                self.notes.append(f"sheet {ws.title!r} is empty: skipped")
                continue
            headers = _unique_headers(["" if h is None else str(h) for h in header])
            header_map = build_header_map(headers, self.kind, self.explicit_map)
            try:
                check_required(header_map, headers, self.kind, self.path)
            except InputFileError as exc:
                first_error = first_error or exc
                self.notes.append(f"sheet {ws.title!r} skipped: {str(exc).split(': ', 1)[-1]}")
                continue
            sheets.append((ws, headers, header_map, rows))
        if not sheets:
            if first_error is not None:
                raise first_error
            raise InputFileError(f"{self.path.name}: every sheet is empty")
        if len(self._wb.worksheets) > 1:
            self.notes.append("read sheets: " + ", ".join(repr(ws.title) for ws, *_ in sheets))
        self._xlsx_rows = sum(int(ws.max_row or 0) for ws, *_ in sheets)
        self._xlsx_pos = 0
        self.headers, self.header_map = sheets[0][1], sheets[0][2]
        return self._xlsx_iter(sheets)

    def _xlsx_iter(
        self, sheets: list[tuple[Any, list[str], dict[str, str], Iterator[tuple[Any, ...]]]]
    ) -> Iterator[RawRow]:
        number = 0
        done = 0
        for ws, headers, header_map, rows in sheets:
            self.headers, self.header_map = headers, header_map
            for sheet_row, cells in enumerate(rows, start=2):
                self._xlsx_pos = done + sheet_row
                if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
                    continue
                number += 1
                row = self._map_row(dict(zip(headers, cells, strict=False)), number, sheet_row)
                if len(sheets) > 1:
                    row.sheet = ws.title
                yield row
            done += int(ws.max_row or 0)


def _sniff_delimiter(header_line: str) -> str:
    """The delimiter that splits the header into the most cells with quotes respected: a split
    that leaves a stray quote inside a cell cut through a quoted header (a semicolon file whose
    quoted headers hold commas), so it ranks below any clean split."""
    best, best_score = ",", (False, 1)
    for d in (",", "\t", ";", "|"):
        try:
            cells = next(csv.reader([header_line.rstrip("\r\n")], delimiter=d), [])
        except csv.Error:
            continue
        score = (not any('"' in c for c in cells), len(cells))
        if len(cells) > 1 and score > best_score:
            best, best_score = d, score
    return best


def _joined(lines: list[_Line]) -> str:
    return "".join(u.text for u in lines)


def _runaway(used: list[_Line], cells: list[str], n_headers: int, delimiter: str) -> bool:
    """Whether a record spanning several lines swallowed rows that stand on their own.

    A legitimate multi-line field holds text fragments; a quote left open holds whole rows. A
    continuation line counts as a row when it alone parses into the header's number of cells
    with no stray quote (the closing line of a real multi-line field has one). One such line
    with a record of the wrong shape, two such lines, or a field over ``MAX_RECORD_LINES``
    lines, make a runaway.
    """
    if len(used) > MAX_RECORD_LINES:
        return True
    rowlike = 0
    for line in used[1:]:
        if '"' in line.text or not line.text.strip():
            continue
        try:
            alone = next(csv.reader([line.text], delimiter=delimiter), [])
        except csv.Error:
            continue
        if len(alone) == n_headers:
            rowlike += 1
            if rowlike >= 2 or len(cells) != n_headers:
                return True
    return False


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
