"""The fields similar-case filters test, for every feedback record, held in memory as columns.

At a million records a 30-day window holds ~470,000 rows: finding the ~6,000 of them that also
name one category and one channel costs SQL 50-115 ms (whichever index it picks), and counting a
broad window's records or checking an ANN's answers against it costs as much again. The same
tests on numpy columns cost a few milliseconds. The columns are read once per write generation
and label change (:meth:`retrieval.store.Store.filter_columns`), so they answer exactly what the
SQL filter answers: the tests in ``tests/test_search.py`` compare the two on every filter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

FILTER_FIELDS = ("category", "channel", "product", "carrier", "region", "sentiment", "urgency")


@dataclass(frozen=True)
class FilterColumns:
    """Every feedback record's id, time and filter fields, one array per field.

    A text field is held as integer codes into its distinct values (``-1``: no value), so an
    equality test is one array comparison.
    """

    ids: np.ndarray  # object array of record ids, in the mirror's order
    rowids: np.ndarray | None  # int64 rowids of their keyword-index rows (SQLite; -1: none), or None
    created_ts: np.ndarray  # float64
    codes: Mapping[str, np.ndarray]  # field -> int32 codes
    values: Mapping[str, Mapping[str, int]]  # field -> {value: code}
    positions: Mapping[str, int]  # record id -> row
    # keyword-index (FTS5) rowid -> row (-1: none), when the keyword index is SQLite's: a broad
    # filter's keyword side then takes every match's rowid and score and filters them here
    keyword_rows: np.ndarray | None = None

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[object]], *, rowids: bool = False) -> FilterColumns:
        """Build from rows of ``(id, created_ts, *FILTER_FIELDS)``, and the index row's rowid last
        when ``rowids``."""
        ids: list[str] = []
        index_rows: list[int] = []
        ts: list[float] = []
        values: dict[str, dict[str, int]] = {name: {} for name in FILTER_FIELDS}
        codes: dict[str, list[int]] = {name: [] for name in FILTER_FIELDS}
        tables = [(values[name], codes[name].append) for name in FILTER_FIELDS]
        width = 2 + len(FILTER_FIELDS)
        for row in rows:
            ids.append(str(row[0]))
            ts.append(float(row[1]) if row[1] is not None else np.nan)  # type: ignore[arg-type]
            if rowids:
                index_rows.append(int(row[width]) if row[width] is not None else -1)  # type: ignore[call-overload]
            for (known, add), value in zip(tables, row[2:width], strict=True):
                if value is None:
                    add(-1)
                else:
                    add(known.setdefault(str(value), len(known)))
        return cls(
            ids=np.array(ids, dtype=object),
            rowids=np.array(index_rows, dtype=np.int64) if rowids else None,
            created_ts=np.array(ts, dtype=np.float64),
            codes={name: np.array(codes[name], dtype=np.int32) for name in FILTER_FIELDS},
            values=values,
            positions={rid: i for i, rid in enumerate(ids)},
        )

    def __len__(self) -> int:
        """Records held."""
        return len(self.ids)

    def mask(self, since: float | None, until: float | None, equal: Mapping[str, str]) -> np.ndarray:
        """Which records pass: ``since <= created_ts <= until`` and every ``field == value``."""
        keep = np.ones(len(self.ids), dtype=bool)
        if since is not None:
            keep &= self.created_ts >= since
        if until is not None:
            keep &= self.created_ts <= until
        for name, value in equal.items():
            code = self.values[name].get(value)
            if code is None:  # a value no record holds: nothing passes
                return np.zeros(len(self.ids), dtype=bool)
            keep &= self.codes[name] == code
        return keep

    def with_keyword_rows(self, pairs: Iterable[tuple[int, str]]) -> FilterColumns:
        """A copy that maps the keyword index's rowids, from its ``(rowid, record id)`` pairs."""
        pos = self.positions
        got = [(int(r), pos.get(i, -1)) for r, i in pairs]
        rows = np.full(max((r for r, _ in got), default=0) + 1, -1, dtype=np.int32)
        if got:
            at = np.array(got, dtype=np.int64)
            rows[at[:, 0]] = at[:, 1]
        return replace(self, keyword_rows=rows)

    def best_passing(self, keep: np.ndarray, rowids: np.ndarray, scores: np.ndarray, n: int) -> list[str]:
        """The ids of the best ``n`` keyword matches (``rowids`` of the keyword index and their
        scores, higher better) that ``keep`` admits, best first, ties by id as ranked_ids orders."""
        assert self.keyword_rows is not None
        inside = rowids < len(self.keyword_rows)
        rows = np.full(len(rowids), -1, dtype=np.int64)
        rows[inside] = self.keyword_rows[rowids[inside]]
        ok = rows >= 0
        ok[ok] = keep[rows[ok]]
        rows, scores = rows[ok], np.round(scores[ok], 5)
        if len(rows) > n:  # every match scoring at least the n-th best, so ties at the cut all compete
            cut = np.partition(scores, len(scores) - n)[len(scores) - n]
            top = scores >= cut
            rows, scores = rows[top], scores[top]
        ids = self.ids[rows]
        order = sorted(range(len(rows)), key=lambda j: (-scores[j], ids[j]))
        return [str(ids[j]) for j in order[:n]]

    def admitted(self, keep: np.ndarray, ids: Iterable[str]) -> set[str]:
        """The ``ids`` that a :meth:`mask` admits (ids not held are not)."""
        pos = self.positions
        return {rid for rid in ids if (i := pos.get(rid)) is not None and keep[i]}
