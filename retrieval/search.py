"""Hybrid similar-case search: vectors (Chroma) + keywords (FTS5 bm25), fused by reciprocal rank.

Filters are resolved in the SQL mirror, never by Chroma's ``where`` (30-190 ms at 50k records):

* no filter: one ANN query to Chroma;
* a narrow filter (at most ``EXACT_MAX`` candidates, or up to ``EXACT_CAP`` when the filter is
  selective enough that the broad path would ask the indexes for many more): the candidates' stored vectors and tokens
  are fetched by id and scored exactly: cosine with numpy, bm25 in Python with the keyword
  index's own document frequencies (cheaper than restricting FTS5, which costs ~10 ms at 50k);
* a broad filter: Chroma and FTS are asked for more results than needed, in proportion to the
  filter's selectivity, and the answers are checked against the mirror; the request widens until
  enough pass or the whole collection has been seen, so results are never silently short.

Order numbers, SKUs and record ids typed in the query are looked up exactly and ranked first.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select
from sqlalchemy.sql import Select

from retrieval.columns import FILTER_FIELDS
from retrieval.store import TABLES, FeedbackRow, Kind, ResolutionRow, Store, _epoch, feedback_table, resolution_table
from retrieval.text import embed, identifiers, tokenize

EXACT_MAX = 2000
# A filter passed by more than EXACT_MAX records is still scored exactly while the broad path would
# ask the indexes for more than a quarter as many results as pass it (a selective filter on a large
# store: at 1M records, 30 days + category + channel pass ~6,000, and the broad path would ask the
# ANN for ~9,000 neighbours and widen from there), up to EXACT_CAP candidates.
EXACT_CAP = 30000
BM25_K1, BM25_B = 1.2, 0.75
RRF_K = 60


class SearchFilters(BaseModel):
    """Filters on the feedback side; time applies to ``created_at`` (``resolved_at`` for resolutions)."""

    model_config = ConfigDict(extra="forbid")

    since: datetime | None = None
    until: datetime | None = None
    category: str | None = None
    channel: str | None = None
    product: str | None = None
    carrier: str | None = None
    region: str | None = None
    sentiment: str | None = None
    urgency: str | None = None

    def is_empty(self) -> bool:
        """True when nothing is filtered."""
        return all(v is None for v in self.model_dump().values())

    def bounds(self) -> tuple[float | None, float | None]:
        """``since`` and ``until`` in epoch seconds, as the stores keep times (None: open)."""
        return _epoch(self.since), _epoch(self.until)

    def facets(self) -> dict[str, str]:
        """The fields filtered on equality: {field: value}."""
        return {name: value for name in FILTER_FIELDS if (value := getattr(self, name)) is not None}


class Hit(BaseModel):
    """One search result."""

    id: str
    kind: Kind
    score: float = Field(description="Fused score (reciprocal-rank fusion; exact matches get +1).")
    matched_by: list[str] = Field(description="Which lists found it: exact, vector, keyword.")
    similarity: float | None = Field(None, description="Cosine similarity of the embeddings.")
    text: str
    record: dict[str, Any] = Field(description="Every stored field of the record.")
    resolutions: list[dict[str, Any]] = Field(default_factory=list, description="Linked resolutions (feedback).")
    feedback: dict[str, Any] | None = Field(None, description="The linked feedback (resolutions).")


def filter_select(kind: Kind, filters: SearchFilters, *columns: Any) -> Select[Any]:
    """A select of ``columns`` (default: id) over records of ``kind`` that pass ``filters``."""
    table = TABLES[kind]
    cols = columns or (table.c.id,)
    stmt = select(*cols)
    f = feedback_table.c
    if kind == "resolution":
        if filters.facets():
            stmt = stmt.join(feedback_table, feedback_table.c.id == resolution_table.c.feedback_id)
        ts = resolution_table.c.resolved_ts
    else:
        ts = f.created_ts
    since, until = filters.bounds()
    if since is not None:
        stmt = stmt.where(ts >= since)
    if until is not None:
        stmt = stmt.where(ts <= until)
    for name, value in filters.facets().items():
        stmt = stmt.where(f[name] == value)
    return stmt


def ranked_ids(scored: list[tuple[str, float]]) -> list[str]:
    """Ids best first, ties (equal to 5 decimals) broken by id, so every strategy and every run
    orders records with identical content the same way."""
    return [i for i, _ in sorted(scored, key=lambda p: (-round(p[1], 5), p[0]))]


def bm25(terms: list[tuple[str, int]], docs: list[str], n_docs: int) -> list[float]:
    """Okapi bm25 of space-separated token strings, computed as SQLite FTS5 computes it.

    Same idf (``log((N - n + 0.5) / (n + 0.5))``, floored at 1e-6 like FTS5), k1 and b, so the
    narrow path ranks exactly like the index; only the average length is the candidates' own.
    """
    if not terms or not docs:
        return [0.0] * len(docs)
    idf = {t: max(math.log((n_docs - df + 0.5) / (df + 0.5)), 1e-6) for t, df in terms}
    # The documents in one string, each between spaces and set apart by " \n ": a term found as
    # " term " is a whole token, and its offset says whose. str.find runs at memory speed; a regex
    # with lookarounds took 9 ms over the 6,000 candidates of a narrow filter at a million records.
    joined = " " + " \n ".join(docs) + " "
    starts = np.cumsum([1] + [len(d) + 3 for d in docs[:-1]])
    found: list[tuple[int, str]] = []
    for term in idf:
        needle = f" {term} "
        at = joined.find(needle)
        while at != -1:
            found.append((at + 1, term))
            at = joined.find(needle, at + len(needle) - 1)  # the closing space may open the next
    scores = [0.0] * len(docs)
    if not found:
        return scores
    lengths = [len(d.split()) for d in docs]
    avgdl = sum(lengths) / len(lengths) or 1.0
    owners = np.searchsorted(starts, [at for at, _ in found], side="right") - 1
    for (doc, term), tf in Counter(zip(owners.tolist(), (t for _, t in found), strict=True)).items():
        norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths[doc] / avgdl)
        scores[doc] += idf[term] * tf * (BM25_K1 + 1) / (tf + norm)
    return scores


def _broad_request(depth: int, n_pass: int, total: int) -> int:
    """How many results the broad path first asks each index for: enough that ``depth`` of them
    pass a filter that ``n_pass`` of ``total`` records pass, with a margin."""
    return min(total, math.ceil(depth / (n_pass / max(total, 1)) * 1.5))


def _exact_limit(depth: int, total: int) -> int:
    """The most candidates a filter may pass and still be scored exactly: EXACT_MAX, or while
    ``4 * _broad_request(depth, n, total) >= n``, that is ``n**2 <= 6 * depth * total`` (15,500 of a
    million at depth 40), up to EXACT_CAP."""
    return max(EXACT_MAX, min(EXACT_CAP, math.isqrt(6 * depth * total)))


def _rrf(lists: list[list[str]]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for ranked in lists:
        for rank, rid in enumerate(ranked, start=1):
            scores[rid] = scores.get(rid, 0.0) + 1.0 / (RRF_K + rank)
    return scores


class Searcher:
    """Runs hybrid searches against one :class:`Store`."""

    def __init__(self, store: Store) -> None:
        """Bind to a store."""
        self.store = store

    def search(
        self,
        query: str,
        *,
        k: int = 5,
        kind: Kind = "feedback",
        filters: SearchFilters | None = None,
        with_links: bool = True,
    ) -> list[Hit]:
        """The ``k`` records most similar to ``query`` that pass ``filters``.

        Args:
            query: free text in any language; order numbers and SKUs in it match exactly.
            k: number of results.
            kind: search feedback or resolution records.
            filters: time window and facet filters.
            with_links: attach linked resolutions (feedback) or feedback (resolutions).
        """
        if k < 1:
            raise ValueError("k must be at least 1")
        filters = filters or SearchFilters()
        tokens = tokenize(query)
        vector = embed(self.store.embedder, [query], [tokens])[0]
        depth = max(30, 4 * k)
        where = None if filters.is_empty() else filter_select(kind, filters)

        if where is None:
            exact = self._exact(kind, query)
            vec_list = ranked_ids(self.store.ann(kind, vector, min(depth, max(1, self.store.count(kind)))))
            kw_list = ranked_ids(self.store.keyword(kind, tokens, depth))
            sims: dict[str, float] = {}
        else:
            limit = _exact_limit(depth, self.store.count(kind))
            columns = self.store.filter_columns() if kind == "feedback" else None
            if columns is not None:  # the filter tested in memory (a long-running process)
                keep = columns.mask(*filters.bounds(), filters.facets())
                n_pass = int(keep.sum())
                candidates, rowids = [], None
                if n_pass <= limit:
                    candidates = list(columns.ids[keep])
                    rowids = list(columns.rowids[keep]) if columns.rowids is not None else None
                admits: Callable[[list[str]], set[str]] = lambda ids: columns.admitted(keep, ids)  # noqa: E731
            else:  # the candidates, when few enough to score exactly, in the same query that counts them
                candidates, rowids = self.store.ids(where.limit(limit + 1)), None
                n_pass = len(candidates) if len(candidates) <= limit else self.store.count(kind, where)
                admits = lambda ids: self.store.select_ids(where, ids, kind)  # noqa: E731
            if not n_pass:
                return []
            exact = self._exact(kind, query, where, admits if columns is not None else None)
            if n_pass <= limit:
                vec_list, sims, kw_list = self._score(kind, candidates, vector, tokens, depth, rowids)
            else:
                keyword = None
                if columns is not None and columns.keyword_rows is not None:
                    # every keyword match, filtered in memory: one FTS5 query however few pass
                    keyword = lambda: columns.best_passing(keep, *self.store.keyword_scores(kind, tokens), depth)  # noqa: E731
                vec_list, kw_list = self._broad(kind, admits, vector, tokens, depth, n_pass, keyword)
                sims = {}

        weight = getattr(self.store.embedder, "keyword_weight", None)
        if weight is None:  # word-hash vectors: rank fusion with the keyword list
            fused = _rrf([vec_list, kw_list])
            boost = 1.0
        else:  # semantic vectors: meaning first, keyword matches a small bonus
            fused = self._score_fusion(kind, list(dict.fromkeys(vec_list + kw_list)), vector, tokens, weight, sims)
            boost = 2.0 + weight
        if len(exact) > k:  # a SKU or product code shared by many records: rank those by relevance
            ev, esims, ek = self._score(kind, exact, vector, tokens, depth)
            sims.update(esims)
            exact_rank = _rrf([ev, ek])
        else:
            exact_rank = {}
        for rid in exact:
            fused[rid] = boost + exact_rank.get(rid, fused.get(rid, 0.0))
        ranked = sorted(fused, key=lambda i: (-fused[i], i))[:k]
        return self._hits(kind, ranked, fused, vector, sims, exact, set(vec_list), set(kw_list), with_links)

    def _score_fusion(
        self,
        kind: Kind,
        candidates: list[str],
        vector: np.ndarray,
        tokens: list[str],
        weight: float,
        sims: dict[str, float],
    ) -> dict[str, float]:
        """cosine + weight * bm25 / (the best bm25 among the candidates), for each candidate.

        Rank fusion treats a record missing from one list as far down it, so a partial keyword
        match in the wrong language outranked the right meaning; scores keep the proportions.
        """
        ids, token_strings, mat = self.store.index_rows(kind, candidates)
        if not ids:
            return {}
        cos = mat @ vector
        kw = np.asarray(bm25(self.store.keyword_terms(kind, tokens), token_strings, self.store.count(kind)))
        kw_norm = kw / kw.max() if len(kw) and kw.max() > 0 else np.zeros(len(ids))
        sims.update({i: float(c) for i, c in zip(ids, cos, strict=True)})
        return {i: float(c + weight * b) for i, c, b in zip(ids, cos, kw_norm, strict=True)}

    def missing_codes(self, query: str, kind: Kind = "feedback") -> list[str]:
        """Order numbers, SKUs and ids typed in ``query`` that no stored record holds (filters
        aside), so a caller can say "no record has order …" before offering similar records."""
        wanted = [c for c in dict.fromkeys(_typed_codes(query)) if len(c) >= 5]
        if not wanted:
            return []
        table = TABLES[kind]
        cols = [
            table.c.id,
            *(
                (feedback_table.c.order_id, feedback_table.c.sku)
                if kind == "feedback"
                else (resolution_table.c.feedback_id,)
            ),
        ]
        variants = {v for c in wanted for v in (c, c.upper(), c.lower())}
        with self.store.engine.connect() as conn:
            found = {
                str(v).casefold()
                for col in cols
                for (v,) in conn.execute(select(col).where(col.in_(variants)))
                if v is not None
            }
        return [c for c in wanted if c.casefold() not in found]

    # ------------------------------------------------------------------ strategies
    def _exact(
        self,
        kind: Kind,
        query: str,
        where: Select[Any] | None = None,
        admits: Callable[[list[str]], set[str]] | None = None,
    ) -> list[str]:
        """Records whose id, order number or SKU the query types, that pass the filter: ``where``
        in SQL, or ``admits`` (the filter columns) on what the codes' indexes find."""
        codes = set(_typed_codes(query))
        codes |= {c.upper() for c in codes}
        if not codes:
            return []
        table = TABLES[kind]
        conds = [table.c.id.in_(codes)]
        if kind == "feedback":
            conds += [feedback_table.c.order_id.in_(codes), feedback_table.c.sku.in_(codes)]
        else:
            conds.append(resolution_table.c.feedback_id.in_(codes))
        base = where if where is not None and admits is None else select(table.c.id)
        stmt = base.where(or_(*conds)).limit(EXACT_MAX if admits is None else EXACT_CAP)
        with self.store.engine.connect() as conn:
            found = [r[0] for r in conn.execute(stmt)]
        if admits is not None and found:
            passing = admits(found)
            found = [i for i in found if i in passing]
        return found[:EXACT_MAX]

    def _score(
        self,
        kind: Kind,
        candidates: list[str],
        vector: np.ndarray,
        tokens: list[str],
        depth: int,
        rowids: list[int] | None = None,
    ) -> tuple[list[str], dict[str, float], list[str]]:
        """Exact vector and keyword rankings of a small candidate set (``rowids``: see
        :meth:`Store.index_rows`)."""
        ids, token_strings, mat = self.store.index_rows(kind, candidates, rowids)
        if not ids:
            return [], {}, []
        sims_arr = mat @ vector
        # keep ties at the cut-off so the id tie-break sees all of them
        cut = np.sort(sims_arr)[::-1][min(depth, len(ids)) - 1]
        top = np.flatnonzero(sims_arr >= cut - 1e-5)
        vec_list = ranked_ids([(ids[i], float(sims_arr[i])) for i in top])[:depth]
        sims = {ids[i]: float(sims_arr[i]) for i in top}
        kw_scores = bm25(self.store.keyword_terms(kind, tokens), token_strings, self.store.count(kind))
        kw_list = ranked_ids([(i, sc) for i, sc in zip(ids, kw_scores, strict=True) if sc > 0])[:depth]
        return vec_list, sims, kw_list

    def _broad(
        self,
        kind: Kind,
        admits: Callable[[list[str]], set[str]],
        vector: np.ndarray,
        tokens: list[str],
        depth: int,
        n_pass: int,
        keyword: Callable[[], list[str]] | None = None,
    ) -> tuple[list[str], list[str]]:
        """Each index asked for more results than needed, its answers filtered, and asked again
        for more until ``depth`` pass or it has no more. Nearest neighbours cost more the more are
        asked for, so their request doubles; a keyword query scores every match whatever it
        returns (FTS5), so its request grows eightfold, unless ``keyword`` gives the keyword list
        another way (the filter columns)."""
        total = self.store.count(kind)
        n = _broad_request(depth, n_pass, total)
        vec_list = _widened(lambda m: self.store.ann(kind, vector, m), admits, depth, n, total, 2)
        if keyword is not None:
            return vec_list, keyword()
        kw_list = _widened(lambda m: self.store.keyword(kind, tokens, m), admits, depth, n, total, 8)
        return vec_list, kw_list

    # ------------------------------------------------------------------ results
    def _hits(
        self,
        kind: Kind,
        ranked: list[str],
        fused: dict[str, float],
        vector: np.ndarray,
        sims: dict[str, float],
        exact: list[str],
        vec_set: set[str],
        kw_set: set[str],
        with_links: bool,
    ) -> list[Hit]:
        if not ranked:
            return []
        records = self.store.records(kind, ranked)
        missing = [i for i in ranked if i not in sims]
        if missing:
            mids, _, mat = self.store.index_rows(kind, missing)
            sims.update({i: float(s) for i, s in zip(mids, mat @ vector, strict=True)})
        links_res = self.store.resolutions_for(ranked) if with_links and kind == "feedback" else {}
        links_fb: dict[str, FeedbackRow] = {}
        if with_links and kind == "resolution":
            linked = [rec.feedback_id for rec in records.values() if isinstance(rec, ResolutionRow)]
            links_fb = self.store.records("feedback", linked)
        hits: list[Hit] = []
        exact_set = set(exact)
        for rid in ranked:
            rec = records.get(rid)
            if rec is None:  # vector present in Chroma but the mirror write was interrupted
                continue
            matched = [name for name, s in (("exact", exact_set), ("vector", vec_set), ("keyword", kw_set)) if rid in s]
            text = rec.text if isinstance(rec, FeedbackRow) else f"{rec.action}\n{rec.reply}".strip()
            linked_fb = links_fb.get(rec.feedback_id) if isinstance(rec, ResolutionRow) else None
            hits.append(
                Hit(
                    id=rid,
                    kind=kind,
                    score=round(fused[rid], 6),
                    matched_by=matched,
                    similarity=round(sims[rid], 4) if rid in sims else None,
                    text=text,
                    record=rec.model_dump(),
                    resolutions=[r.model_dump() for r in links_res.get(rid, [])],
                    feedback=linked_fb.model_dump() if linked_fb else None,
                )
            )
        return hits


def _widened(
    fetch: Callable[[int], list[tuple[str, float]]],
    admits: Callable[[list[str]], set[str]],
    depth: int,
    n: int,
    total: int,
    growth: int,
) -> list[str]:
    """The best ``depth`` of ``fetch(n)``'s results that ``admits`` lets pass, ``n`` growing by
    ``growth`` until enough pass, ``fetch`` returns fewer than asked (no more), or ``n`` is the
    whole store."""
    while True:
        hits = fetch(n)
        passing = admits([i for i, _ in hits])
        ranked = ranked_ids([p for p in hits if p[0] in passing])[:depth]
        if len(ranked) >= depth or len(hits) < n or n >= total:
            return ranked
        n = min(total, n * growth)


def _typed_codes(query: str) -> list[str]:
    """Codes in a query: the tokenizer's identifiers and any typed word holding a digit."""
    typed = [w.strip(".,;:!?，。；：！？()（）") for w in query.split()]
    return list(identifiers(query)) + [w for w in typed if any(c.isdigit() for c in w)]
