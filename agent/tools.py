"""Analytics tools: deterministic counts over the SQL mirror, typed in and out.

Every number the product shows (in `ask`, `root-cause` and the weekly report) comes from here;
the chat model only chooses which tool to call and words the answer. Each tool takes a pydantic
input model and returns a pydantic output model, so the same functions serve code, the
no-LLM router and an LLM's tool calls (as JSON schemas).

Time is explicit: an :class:`Analytics` is bound to one ``as_of`` and one zone, and every window
is resolved relative to them (ISO weeks and calendar months in that zone). Windows are half-open
``[start, end)``. "Complaints" are records with sentiment ``negative``; the tools take the
sentiment as a filter and never guess it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Integer, and_, case, cast, exists, func, or_, select

from agent.llm import Tool
from agent.wording import Lang, say
from retrieval.search import Searcher, SearchFilters
from retrieval.store import Store, feedback_table

Facet = Literal[
    "category",
    "subcategory",
    "sentiment",
    "urgency",
    "channel",
    "product",
    "sku",
    "carrier",
    "region",
    "customer_tier",
    "customer_id",
    "language",
]
FACETS: tuple[str, ...] = Facet.__args__  # type: ignore[attr-defined]
EXAMPLES_PER_GROUP = 3


# --------------------------------------------------------------------------- windows and filters


class Window(BaseModel):
    """A time window relative to the analytics' as-of time. Give at most one form; none = last 30 days."""

    model_config = ConfigDict(extra="forbid")

    days: int | None = Field(None, ge=1, le=3660, description="The last N days up to as-of.")
    weeks_ago: int | None = Field(
        None,
        ge=0,
        le=520,
        description="An ISO week (Mon-Sun): 0 = this week so far, 1 = last week, 2 = the week before last.",
    )
    week: str | None = Field(None, pattern=r"^[0-9]{4}-W[0-9]{2}$", description="An ISO week such as 2026-W47.")
    months_ago: int | None = Field(
        None, ge=0, le=240, description="A calendar month: 0 = this month so far, 1 = last month."
    )
    since: date | None = Field(None, description="First day (inclusive), with or without `until`.")
    until: date | None = Field(None, description="Last day (inclusive); default as-of.")

    @model_validator(mode="after")
    def _one_form(self) -> Window:
        forms = [
            self.days is not None,
            self.weeks_ago is not None,
            self.week is not None,
            self.months_ago is not None,
            self.since is not None or self.until is not None,
        ]
        if sum(forms) > 1:
            raise ValueError("give one of days, weeks_ago, week, months_ago or since/until")
        if self.since and self.until and self.since > self.until:
            raise ValueError("since is after until")
        return self


class Period(BaseModel):
    """A resolved window."""

    start: datetime
    end: datetime = Field(description="Exclusive.")
    label: str = Field(description="Human-readable name, e.g. 2026-W47 or 'last 7 days'.")
    unit: Literal["days", "week", "month"] = "days"

    @property
    def first_day(self) -> date:
        """The first calendar day covered."""
        return self.start.date()

    @property
    def last_day(self) -> date:
        """The last calendar day covered."""
        return (self.end - timedelta(microseconds=1)).date()

    def previous(self) -> Period:
        """The period of the same kind immediately before this one."""
        if self.unit == "week":
            start = self.start - timedelta(days=7)
            y, w, _ = start.isocalendar()
            return Period(start=start, end=self.start, label=f"{y}-W{w:02d}", unit="week")
        if self.unit == "month":
            first = (self.start.replace(day=1) - timedelta(days=1)).replace(day=1)
            return Period(start=first, end=self.start, label=first.strftime("%Y-%m"), unit="month")
        length = timedelta(days=math.ceil((self.end - self.start).total_seconds() / 86400 - 1e-6))
        return Period(start=self.start - length, end=self.start, label=f"the {_span(length)} before", unit="days")

    def describe(self) -> dict[str, str]:
        """JSON-friendly form: label and first/last day."""
        return {"label": self.label, "from": self.first_day.isoformat(), "to": self.last_day.isoformat()}


def _span(length: timedelta) -> str:
    days = round(length.total_seconds() / 86400)
    return f"{days} days" if days != 1 else "day"


class Filters(BaseModel):
    """Equality filters on feedback fields. Complaints = sentiment 'negative'."""

    model_config = ConfigDict(extra="forbid")

    category: str | None = None
    subcategory: str | None = None
    sentiment: str | None = Field(None, description="negative for complaints, positive, neutral; empty for all.")
    urgency: str | None = None
    channel: str | None = None
    product: str | None = None
    sku: str | None = None
    carrier: str | None = None
    region: str | None = None
    customer_tier: str | None = None
    language: Literal["zh", "en", "mixed"] | None = Field(None, description="The text's language.")
    customer: Literal["new", "returning"] | None = Field(
        None,
        description="returning: the customer (customer_id) had feedback before this record; new: not before.",
    )
    mentions: str | None = Field(
        None, min_length=1, max_length=60, description="Records whose text contains these words (any case)."
    )
    rating: str | None = Field(
        None,
        pattern=r"^[0-5]-[0-5]$",
        description="Star range 'lo-hi' (e.g. '1-2' for 2 stars or less, '5-5' for 5 stars): records whose "
        "rating rounds into it; records without a rating are left out.",
    )

    def active(self) -> dict[str, str]:
        """The filters that are set."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Analytics:
    """The analytics tools over one store, bound to ``as_of`` and a zone."""

    def __init__(self, store: Store, as_of: datetime, zone: tzinfo) -> None:
        """Bind to a store; ``as_of`` must be timezone-aware."""
        if as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware")
        self.store = store
        self.zone = zone
        self.as_of = as_of.astimezone(zone)
        self._values: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ windows
    def resolve(self, window: Window | None) -> Period:
        """The concrete period of a window."""
        w = window or Window(days=30)
        now = self.as_of
        today = datetime.combine(now.date(), time.min, tzinfo=self.zone)
        if w.weeks_ago is not None or w.week is not None:
            if w.week is not None:
                year, num = int(w.week[:4]), int(w.week[-2:])
                try:
                    monday = date.fromisocalendar(year, num, 1)
                except ValueError as exc:
                    raise ValueError(f"{w.week} is not an ISO week") from exc
                start = datetime.combine(monday, time.min, tzinfo=self.zone)
            else:
                start = today - timedelta(days=today.weekday()) - timedelta(days=7 * (w.weeks_ago or 0))
            y, n, _ = start.isocalendar()
            end = start + timedelta(days=7)
            return Period(
                start=start, end=min(end, now) if end > now > start else end, label=f"{y}-W{n:02d}", unit="week"
            )
        if w.months_ago is not None:
            first = today.replace(day=1)
            for _ in range(w.months_ago):
                first = (first - timedelta(days=1)).replace(day=1)
            nxt = (first + timedelta(days=32)).replace(day=1)
            return Period(
                start=first,
                end=min(nxt, now) if nxt > now > first else nxt,
                label=first.strftime("%Y-%m"),
                unit="month",
            )
        if w.since is not None or w.until is not None:
            end = datetime.combine(w.until, time.min, tzinfo=self.zone) + timedelta(days=1) if w.until else now
            start = datetime.combine(w.since, time.min, tzinfo=self.zone) if w.since else end - timedelta(days=30)
            return Period(start=start, end=end, label=f"{start.date()}..{(end - timedelta(microseconds=1)).date()}")
        # whole calendar days: the day of as-of (so far) and the N-1 days before it
        days = w.days or 30
        day_end = today if now == today else today + timedelta(days=1)
        return Period(start=day_end - timedelta(days=days), end=now, label=f"last {days} days" if days > 1 else "today")

    def _where(self, period: Period | None, filters: Filters | None) -> list[Any]:
        f = feedback_table.c
        conds: list[Any] = []
        if period is not None:
            conds += [f.created_ts >= period.start.timestamp(), f.created_ts < period.end.timestamp()]
        for name, value in (filters or Filters()).active().items():
            if name == "mentions":  # free text: the words as written, any case
                conds.append(func.lower(f.text).contains(value.lower(), autoescape=True))
            elif name == "rating":  # a star range, as ratings() rounds a rating to its star
                low, high = (int(x) for x in value.split("-"))
                conds += [f.rating >= low - 0.5, f.rating < high + 0.5]
            elif name == "customer":  # new or returning: whether the same customer wrote before
                earlier = feedback_table.alias("earlier")
                before = exists().where(earlier.c.customer_id == f.customer_id, earlier.c.created_ts < f.created_ts)
                conds += [f.customer_id.is_not(None), before if value == "returning" else ~before]
            else:
                conds.append(f[name] == value)
        return conds

    def holds(self, field: str) -> bool:
        """Whether any record of the store has a value in ``field``."""
        return self.store.holds(field)

    def values(self, facet: str) -> list[str]:
        """Distinct values of a facet in the store, most frequent first (cached)."""
        if facet not in self._values:
            self._values[facet] = self.store.facet_values(facet)
        return self._values[facet]

    # ------------------------------------------------------------------ tools
    def count_by(self, args: CountByInput) -> CountByOutput:
        """Counts per value of a field over a window, largest first, with shares and example ids."""
        period = self.resolve(args.window)
        return self._count(args.field, period, args.filters, args.top)

    def _count(self, field: str, period: Period, filters: Filters, top: int | None) -> CountByOutput:
        col = feedback_table.c[field]
        conds = self._where(period, filters)
        stmt = select(col, func.count()).where(and_(*conds)).group_by(col)
        with self.store.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        counts = {r[0]: int(r[1]) for r in rows}
        unknown = counts.pop(None, 0) + counts.pop("", 0)
        total = sum(counts.values()) + unknown
        known = total - unknown
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = ordered[:top] if top else ordered
        groups = [
            Group(
                value=v,
                count=n,
                share=round(n / known, 4) if known else 0.0,
                example_ids=self._examples(conds + [col == v]),
            )
            for v, n in shown
        ]
        return CountByOutput(
            field=field,
            period=period.describe(),
            filters=filters.active(),
            total=total,
            with_value=known,
            without_value=unknown,
            groups=groups,
            other_groups=len(ordered) - len(shown),
        )

    def newest_ids(self, period: Period, filters: Filters, limit: int) -> list[str]:
        """Ids of a slice's records, newest first (ties by id)."""
        return self._examples(self._where(period, filters), limit)

    def _examples(self, conds: list[Any], n: int = EXAMPLES_PER_GROUP) -> list[str]:
        f = feedback_table.c
        stmt = select(f.id).where(and_(*conds)).order_by(f.created_ts.desc(), f.id).limit(n)
        with self.store.engine.connect() as conn:
            return [r[0] for r in conn.execute(stmt)]

    def top(self, args: TopInput) -> CountByOutput:
        """The top-N values of a facet (e.g. which carrier concentrates logistics complaints)."""
        return self._count(args.facet, self.resolve(args.window), args.filters, args.n)

    def compare_periods(self, args: CompareInput) -> CompareOutput:
        """Counts in a window against the period before it (or a given one), overall and per value."""
        cur_p = self.resolve(args.window)
        prev_p = self.resolve(args.previous) if args.previous else cur_p.previous()
        cur = self._count(args.field, cur_p, args.filters, None) if args.field else None
        prev = self._count(args.field, prev_p, args.filters, None) if args.field else None
        total_cur = self._total(cur_p, args.filters)
        total_prev = self._total(prev_p, args.filters)
        rows: list[Change] = []
        if cur is not None and prev is not None:
            c_map = {g.value: g for g in cur.groups}
            p_map = {g.value: g.count for g in prev.groups}
            for value in sorted(set(c_map) | set(p_map)):
                a, b = c_map[value].count if value in c_map else 0, p_map.get(value, 0)
                rows.append(
                    Change(
                        value=value,
                        current=a,
                        previous=b,
                        change=a - b,
                        change_pct=_pct(a, b),
                        example_ids=c_map[value].example_ids if value in c_map else [],
                    )
                )
            rows.sort(key=lambda r: (-r.change, -r.current, r.value) if args.order == "rise" else (-r.current, r.value))
        return CompareOutput(
            field=args.field,
            current_period=cur_p.describe(),
            previous_period=prev_p.describe(),
            filters=args.filters.active(),
            total_current=total_cur,
            total_previous=total_prev,
            total_change=total_cur - total_prev,
            total_change_pct=_pct(total_cur, total_prev),
            example_ids=self._examples(self._where(cur_p, args.filters)),
            rows=rows[: args.top] if args.top else rows,
        )

    def coverage(self) -> tuple[int, str | None, str | None]:
        """How many feedback records the store holds, and the first and last day they span (None
        when it is empty)."""
        f = feedback_table.c
        with self.store.engine.connect() as conn:
            lo, hi, n = conn.execute(select(func.min(f.created_ts), func.max(f.created_ts), func.count())).one()

        def day(ts: float | None) -> str | None:
            return datetime.fromtimestamp(ts, self.zone).date().isoformat() if ts is not None else None

        return int(n), day(lo), day(hi)

    def emptiness(self, period: Period | None, lang: str) -> str | None:
        """The plain sentence an answer must start with when there is nothing to count: the store
        is empty, or ``period`` holds no feedback at all (with the span the store does cover).

        A window (or store) with feedback costs one indexed lookup of a single row; the whole store
        is read only to word the sentence.
        """
        cond = self._where(period, Filters()) if period is not None else []
        with self.store.engine.connect() as conn:
            if conn.execute(select(feedback_table.c.seq).where(*cond).limit(1)).first() is not None:
                return None
        total, first, last = self.coverage()
        language: Lang = "zh" if lang == "zh" else "en"
        if total == 0:
            return say("store.empty", language)
        if period is None:
            return None
        span = say("common.span", language, first=period.first_day.isoformat(), last=period.last_day.isoformat())
        return say("store.empty_period", language, span=span, first=first, last=last)

    def label_sources(
        self, field: str, value: str, window: Window | None, filters: Filters | None = None
    ) -> dict[str, int]:
        """Who set ``field = value`` on the window's records (passing ``filters``): counts by source
        (model, import, human), so a figure resting on the model's guesses can say so."""
        period = self.resolve(window)
        f = feedback_table.c
        conds = [*self._where(period, filters), f[field] == value]
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(f[f"{field}_source"], func.count()).where(and_(*conds)).group_by(f[f"{field}_source"])
            ).all()
        return {str(src or "unknown"): int(n) for src, n in rows}

    def model_labelled(self, fields: Sequence[str], window: Window | None, filters: Filters) -> int:
        """Records of the window passing ``filters`` whose label in any of ``fields`` is the
        classifier's guess (not imported or set by a person): how much of a figure is guessed."""
        period = self.resolve(window)
        f = feedback_table.c
        guessed = or_(*(f[f"{name}_source"] == "model" for name in fields))
        stmt = select(func.count()).select_from(feedback_table).where(and_(*self._where(period, filters), guessed))
        with self.store.engine.connect() as conn:
            return int(conn.execute(stmt).scalar() or 0)

    def label_mix(self, args: LabelMixInput) -> LabelMixOutput:
        """Who labelled the slice: per field, its records by label source (model, import, human),
        and how many carry a model label in any of the fields."""
        period = self.resolve(args.window)
        f = feedback_table.c
        cols = [f[f"{name}_source"] for name in args.fields]
        # one pass over the slice, grouped by every field's source: the window index holds them all
        stmt = select(*cols, func.count()).where(and_(*self._where(period, args.filters))).group_by(*cols)
        with self.store.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        by_source: dict[str, dict[str, int]] = {name: {} for name in args.fields}
        for row in rows:
            n = int(row[-1])
            for name, src in zip(args.fields, row[:-1], strict=True):
                key = str(src or "none")
                by_source[name][key] = by_source[name].get(key, 0) + n
        return LabelMixOutput(
            period=period.describe(),
            filters=args.filters.active(),
            total=sum(int(row[-1]) for row in rows),
            model_labelled=sum(int(row[-1]) for row in rows if "model" in row[:-1]),
            by_source=by_source,
        )

    def ratings(self, args: RatingInput) -> RatingOutput:
        """Average rating, the 1-5 distribution, CSAT (share of 4-5 among rated records) and, where
        0-10 scores were ingested, NPS (% promoters 9-10 minus % detractors 0-6)."""
        period = self.resolve(args.window)
        f = feedback_table.c
        conds = [*self._where(period, args.filters), f.rating.is_not(None)]
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(f.rating, func.count()).where(and_(*conds)).group_by(f.rating)).all()
        n = sum(int(c) for _, c in rows)
        dist: dict[str, int] = {}
        for rating, c in rows:
            key = str(int(round(float(rating))))
            dist[key] = dist.get(key, 0) + int(c)
        avg = round(sum(float(r) * int(c) for r, c in rows) / n, 2) if n else None
        csat = round(sum(c for k, c in dist.items() if int(k) >= 4) / n, 4) if n else None
        scored = [*self._where(period, args.filters), f.nps.is_not(None)]
        with self.store.engine.connect() as conn:
            answers = conn.execute(select(f.nps, func.count()).where(and_(*scored)).group_by(f.nps)).all()
        m = sum(int(c) for _, c in answers)
        promoters = sum(int(c) for score, c in answers if score >= 9)
        detractors = sum(int(c) for score, c in answers if score <= 6)
        groups: list[RatingGroup] = []
        if args.by is not None:
            col = f[args.by]
            happy = func.sum(case((f.rating >= 3.5, 1), else_=0))
            stmt = (
                select(col, func.count(), func.avg(f.rating), happy)
                .where(and_(*conds, col.is_not(None), col != ""))
                .group_by(col)
            )
            with self.store.engine.connect() as conn:
                found = conn.execute(stmt).all()
            groups = sorted(
                (
                    RatingGroup(value=str(v), rated=int(c), average=round(float(a), 2), csat=round(int(h) / int(c), 6))
                    for v, c, a, h in found
                ),
                key=lambda g: (-g.rated, g.value),
            )
        return RatingOutput(
            groups=groups,
            nps_answers=m,
            promoters=promoters,
            detractors=detractors,
            nps=round((promoters - detractors) * 100 / m, 1) if m else None,
            nps_example_ids=self._examples(scored) if m else [],
            period=period.describe(),
            filters=args.filters.active(),
            rated=n,
            total=self._total(period, args.filters),
            average=avg,
            csat=csat,
            distribution=dict(sorted(dist.items())),
            example_ids=self._examples(conds),
        )

    def _total(self, period: Period, filters: Filters) -> int:
        stmt = select(func.count()).select_from(feedback_table).where(and_(*self._where(period, filters)))
        with self.store.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def spikes(self, args: SpikesInput, latest: Period | None = None) -> SpikesOutput:
        """Values whose latest period is far above their own baseline (the periods before it).
        ``latest`` replaces the period checked (alerts check calendar days, today so far among them);
        the baseline is the whole periods before it."""
        unit = 7 if args.period == "week" else 1
        if latest is None and args.period == "week":
            latest = self.resolve(Window(weeks_ago=1 if args.complete_periods_only else 0))
        elif latest is None:
            latest = self.resolve(Window(days=1))
        edges = [latest]
        for _ in range(args.baseline_periods):
            edges.append(
                edges[-1].previous()
                if args.period == "week"
                else Period(start=edges[-1].start - timedelta(days=unit), end=edges[-1].start, label="day")
            )
        buckets = self._bucket_counts(args.field, edges, args.filters)
        out: list[Spike] = []
        for value, per in buckets.items():
            current, base = per[0], per[1:]
            mean = sum(base) / len(base) if base else 0.0
            score = (current - mean) / math.sqrt(mean + 1.0)
            ratio = current / mean if mean else None
            is_spike = (
                current - mean >= args.min_increase and score >= args.min_score and (ratio is None or ratio >= 1.5)
            )
            if is_spike or args.include_all:
                out.append(
                    Spike(
                        value=value,
                        current=current,
                        baseline_mean=round(mean, 2),
                        baseline=base,
                        ratio=round(ratio, 2) if ratio is not None else None,
                        score=round(score, 2),
                        is_spike=is_spike,
                        example_ids=self._examples(
                            self._where(latest, args.filters) + [feedback_table.c[args.field] == value]
                        ),
                    )
                )
        out.sort(key=lambda s: (not s.is_spike, -s.score, s.value))
        return SpikesOutput(
            field=args.field,
            period=args.period,
            latest_period=latest.describe(),
            baseline_periods=[p.describe() for p in edges[1:]],
            filters=args.filters.active(),
            spikes=out,
        )

    def _bucket_counts(self, field: str, periods: list[Period], filters: Filters) -> dict[str, list[int]]:
        """Counts per value for each period (periods given newest first), one query."""
        return {k: v for k, v in self._buckets(field, periods, filters).items() if k}

    def _buckets(self, field: str, periods: list[Period], filters: Filters) -> dict[str, list[int]]:
        """Counts per value ("" for records without one) for each period: one GROUP BY over the
        periods' span, each row's period picked in SQL, so the database returns a row per value
        and period rather than a row per record."""
        f = feedback_table.c
        lo, hi = min(p.start for p in periods), max(p.end for p in periods)
        span = Period(start=lo, end=hi, label="")
        seconds = {(p.end - p.start).total_seconds() for p in periods}
        contiguous = all(a.start == b.end for a, b in zip(periods, periods[1:], strict=False))
        if len(seconds) == 1 and contiguous:
            # equal, back-to-back periods (days, weeks): the period is arithmetic, one step per row
            step = (f.created_ts - lo.timestamp()) / seconds.pop()
            oldest_first = cast(step, Integer) if self.store.engine.dialect.name == "sqlite" else func.floor(step)
            bucket = (len(periods) - 1 - cast(oldest_first, Integer)).label("bucket")
        else:
            bucket = case(
                *[
                    (and_(f.created_ts >= p.start.timestamp(), f.created_ts < p.end.timestamp()), i)
                    for i, p in enumerate(periods)
                ],
                else_=None,
            ).label("bucket")
        value = func.coalesce(f[field], "").label("value")
        stmt = select(value, bucket, func.count()).where(and_(*self._where(span, filters))).group_by(value, bucket)
        out: dict[str, list[int]] = defaultdict(lambda: [0] * len(periods))
        with self.store.engine.connect() as conn:
            for v, i, n in conn.execute(stmt):
                if i is not None and 0 <= int(i) < len(periods):
                    out[v][int(i)] += int(n)
        return dict(out)

    def series(self, args: SeriesInput) -> SeriesOutput:
        """Counts per day or ISO week over the last N periods, or inside a window (optionally split
        by a field)."""
        if args.window is not None:
            periods = self._periods_in(self.resolve(args.window), args.interval)
        elif args.interval == "week":
            periods = [
                self.resolve(Window(weeks_ago=i))
                for i in range(args.periods - 1 + args.skip_current, -1 + args.skip_current, -1)
            ]
        else:
            today = datetime.combine(self.as_of.date(), time.min, tzinfo=self.zone)
            periods = [
                Period(
                    start=today - timedelta(days=i),
                    end=today - timedelta(days=i - 1),
                    label=(today - timedelta(days=i)).date().isoformat(),
                )
                for i in range(args.periods - 1, -1, -1)
            ]
        field = args.field or "sentiment"
        buckets = self._buckets(field, list(reversed(periods)), args.filters)
        labels = [p.label for p in periods]
        totals = [0] * len(periods)
        by_value: dict[str, list[int]] = {}
        for value, counts in buckets.items():
            row = list(reversed(counts))
            if value or args.field is None:  # records without a value count in the totals only
                totals = [a + b for a, b in zip(totals, row, strict=True)]
            if value:
                by_value[value] = row
        if args.field is None:
            by_value = {}
        ranked = sorted(by_value, key=lambda v: (-sum(by_value[v]), v))
        return SeriesOutput(
            interval=args.interval,
            field=args.field,
            periods=labels,
            totals=totals,
            series={v: by_value[v] for v in ranked[: args.top]},
            filters=args.filters.active(),
        )

    def _periods_in(self, span: Period, interval: str) -> list[Period]:
        """The days, or the ISO weeks cut to the span, that make up ``span`` (at most 366)."""
        out: list[Period] = []
        start = span.start
        while start < span.end and len(out) < 366:
            if interval == "day":
                end = datetime.combine(start.date() + timedelta(days=1), time.min, tzinfo=self.zone)
                label = start.date().isoformat()
            else:
                monday = start.date() - timedelta(days=start.date().weekday())
                end = datetime.combine(monday + timedelta(days=7), time.min, tzinfo=self.zone)
                year, week, _ = monday.isocalendar()
                label = f"{year}-W{week:02d}"
            end = min(end, span.end)
            if interval == "week" and (end - start) < timedelta(days=7):  # a week the span cuts: say which days
                first, last = start.date(), (end - timedelta(microseconds=1)).date()
                label += f" ({first:%m-%d})" if first == last else f" ({first:%m-%d}..{last:%m-%d})"
            out.append(Period(start=start, end=end, label=label))
            start = end
        return out

    def csat_by(self, facet: str, window: Window) -> dict[str, tuple[int, float]]:
        """Per value of ``facet`` with ratings in ``window``: (rated, CSAT), in one GROUP BY. CSAT
        is the share of ratings that round to 4 or 5, as :meth:`ratings` counts it."""
        f = feedback_table.c
        period = self.resolve(window)
        conds = [*self._where(period, None), f.rating.is_not(None), f[facet].is_not(None), f[facet] != ""]
        happy = func.sum(case((f.rating >= 3.5, 1), else_=0))
        stmt = select(f[facet], func.count(), happy).where(and_(*conds)).group_by(f[facet])
        with self.store.engine.connect() as conn:
            return {v: (int(n), round(int(h) / int(n), 4)) for v, n, h in conn.execute(stmt) if n}

    def search_quotes(self, args: SearchInput) -> SearchOutput:
        """Representative records: hybrid search when a query is given, else the newest matching ones."""
        period = self.resolve(args.window)
        filt = args.filters.active()
        quotes: list[Quote] = []
        if args.query and args.query.strip():
            sf = SearchFilters(
                since=period.start,
                until=period.end - timedelta(microseconds=1),
                **{k: v for k, v in filt.items() if k in SearchFilters.model_fields},
            )
            extra = {k: v for k, v in filt.items() if k not in SearchFilters.model_fields}
            hits = Searcher(self.store).search(args.query, k=args.k * (3 if extra else 1), filters=sf, with_links=False)
            for h in hits:
                if all(h.record.get(k) == v for k, v in extra.items()):
                    quotes.append(_quote(h.record))
        else:
            ids = self.newest_ids(period, args.filters, args.k)
            recs = self.store.records("feedback", ids)
            quotes = [_quote(recs[i].model_dump()) for i in ids if i in recs]
        return SearchOutput(query=args.query, period=period.describe(), filters=filt, quotes=quotes[: args.k])

    def get_records(self, args: GetRecordsInput) -> RecordsOutput:
        """Feedback records by id, with their linked resolutions."""
        recs = self.store.records("feedback", args.ids)
        links = self.store.resolutions_for(list(recs))
        found = []
        for rid in args.ids:
            if rid in recs:
                r = recs[rid]
                found.append(
                    {
                        **{
                            k: getattr(r, k)
                            for k in (
                                "id",
                                "text",
                                "created_at",
                                "channel",
                                "product",
                                "carrier",
                                "region",
                                "category",
                                "sentiment",
                                "urgency",
                                "order_id",
                            )
                        },
                        "resolutions": [
                            {k: getattr(x, k) for k in ("id", "action", "outcome", "compensation")}
                            for x in links.get(rid, [])
                        ],
                    }
                )
        return RecordsOutput(records=found, missing=[i for i in args.ids if i not in recs])

    def tools(self) -> list[Tool]:
        """The tools offered to a chat model."""
        return [
            Tool(
                "count_by",
                "Count feedback per value of a field (category, sentiment, product, carrier, ...) over a "
                "window, largest first, with shares and example ids. Complaints: filters.sentiment='negative'.",
                CountByInput,
                self.count_by,
            ),
            Tool(
                "top_facets",
                "Top-N values of a facet (carrier, product, channel, region, ...) within a slice, "
                "e.g. which carrier concentrates logistics complaints.",
                TopInput,
                self.top,
            ),
            Tool(
                "compare_periods",
                "Counts in a window vs the period before (e.g. last week vs the week before), "
                "overall and per value of a field, with change and % change.",
                CompareInput,
                self.compare_periods,
            ),
            Tool(
                "detect_spikes",
                "Values of a field whose latest week (or day) is far above their own baseline.",
                SpikesInput,
                self.spikes,
            ),
            Tool(
                "time_series",
                "Counts per day or ISO week over the last N periods, optionally per value of a field.",
                SeriesInput,
                self.series,
            ),
            Tool(
                "search_quotes",
                "Representative feedback texts with ids: hybrid search for a query, or the newest records of a slice.",
                SearchInput,
                self.search_quotes,
            ),
            Tool(
                "get_records",
                "Look up feedback records by id (with their resolutions).",
                GetRecordsInput,
                self.get_records,
            ),
        ]


def _pct(a: int, b: int) -> float | None:
    return round((a - b) / b * 100, 1) if b else None


def _quote(r: dict[str, Any]) -> Quote:
    return Quote(
        id=r["id"],
        text=r["text"],
        created_at=r["created_at"],
        **{k: r.get(k) for k in ("category", "sentiment", "product", "carrier", "channel")},
    )


# --------------------------------------------------------------------------- schemas


class Group(BaseModel):
    """One value of a field and its count."""

    value: str
    count: int
    share: float = Field(description="count / records that have a value for the field (0..1).")
    example_ids: list[str]


class CountByInput(BaseModel):
    """Arguments of count_by."""

    model_config = ConfigDict(extra="forbid")

    field: Facet = "category"
    window: Window | None = None
    filters: Filters = Field(default_factory=Filters)
    top: int | None = Field(None, ge=1, le=1000, description="Keep the N largest groups.")


class TopInput(BaseModel):
    """Arguments of top_facets."""

    model_config = ConfigDict(extra="forbid")

    facet: Facet
    window: Window | None = None
    filters: Filters = Field(default_factory=Filters)
    n: int = Field(5, ge=1, le=100)


class CountByOutput(BaseModel):
    """Counts per value."""

    field: str
    period: dict[str, str]
    filters: dict[str, str]
    total: int = Field(description="Records in the slice.")
    with_value: int = Field(description="Records in the slice that have a value for the field.")
    without_value: int
    groups: list[Group]
    other_groups: int = Field(0, description="Groups beyond the top N.")


class CompareInput(BaseModel):
    """Arguments of compare_periods."""

    model_config = ConfigDict(extra="forbid")

    window: Window | None = Field(None, description="The current period (default last 30 days).")
    previous: Window | None = Field(None, description="Default: the period of the same kind just before.")
    field: Facet | None = Field("category", description="Break down by this field (null: totals only).")
    filters: Filters = Field(default_factory=Filters)
    order: Literal["rise", "current"] = "rise"
    top: int | None = Field(None, ge=1, le=1000)


class Change(BaseModel):
    """One value's change between two periods."""

    value: str
    current: int
    previous: int
    change: int
    change_pct: float | None = Field(description="Percent change; null when the previous count is 0.")
    example_ids: list[str]


class CompareOutput(BaseModel):
    """Period-over-period change."""

    field: str | None
    current_period: dict[str, str]
    previous_period: dict[str, str]
    filters: dict[str, str]
    total_current: int
    total_previous: int
    total_change: int
    total_change_pct: float | None
    example_ids: list[str]
    rows: list[Change]


class SpikesInput(BaseModel):
    """Arguments of detect_spikes."""

    model_config = ConfigDict(extra="forbid")

    field: Facet = "category"
    period: Literal["week", "day"] = "week"
    baseline_periods: int = Field(4, ge=1, le=52)
    complete_periods_only: bool = Field(True, description="Weeks: compare the last full week, not this partial one.")
    filters: Filters = Field(default_factory=Filters)
    min_increase: float = Field(5, ge=0)
    min_score: float = Field(2.0, ge=0)
    include_all: bool = Field(False, description="Also list values that are not spikes.")


class Spike(BaseModel):
    """One value's latest period against its baseline."""

    value: str
    current: int
    baseline_mean: float
    baseline: list[int] = Field(description="Counts of the baseline periods, newest first.")
    ratio: float | None
    score: float = Field(description="(current - mean) / sqrt(mean + 1).")
    is_spike: bool
    example_ids: list[str]


class SpikesOutput(BaseModel):
    """Spikes, strongest first."""

    field: str
    period: str
    latest_period: dict[str, str]
    baseline_periods: list[dict[str, str]]
    filters: dict[str, str]
    spikes: list[Spike]


class SeriesInput(BaseModel):
    """Arguments of time_series."""

    model_config = ConfigDict(extra="forbid")

    interval: Literal["day", "week"] = "week"
    periods: int = Field(8, ge=1, le=366)
    skip_current: int = Field(0, ge=0, le=1, description="1: end with the last full week instead of this one.")
    window: Window | None = Field(
        None,
        description="Cover this period instead of the last N: each day (or ISO week, cut to the period) "
        "inside it, oldest first; periods and skip_current are then ignored.",
    )
    field: Facet | None = None
    filters: Filters = Field(default_factory=Filters)
    top: int = Field(10, ge=1, le=100)


class SeriesOutput(BaseModel):
    """Counts over time."""

    interval: str
    field: str | None
    periods: list[str]
    totals: list[int]
    series: dict[str, list[int]]
    filters: dict[str, str]


LabelField = Literal["category", "sentiment", "urgency"]


class LabelMixInput(BaseModel):
    """Arguments of label_mix."""

    model_config = ConfigDict(extra="forbid")

    window: Window | None = None
    filters: Filters = Field(default_factory=Filters)
    fields: list[LabelField] = Field(default_factory=lambda: list[LabelField](["category", "sentiment"]))


class LabelMixOutput(BaseModel):
    """Label sources of a slice."""

    period: dict[str, str]
    filters: dict[str, str]
    total: int
    model_labelled: int = Field(description="Records whose label in any of the fields is the model's guess.")
    by_source: dict[str, dict[str, int]]


class RatingInput(BaseModel):
    """Arguments of ratings."""

    model_config = ConfigDict(extra="forbid")

    window: Window | None = None
    filters: Filters = Field(default_factory=Filters)
    by: Facet | None = Field(None, description="Also per value of this field (average, CSAT, rated), most rated first.")


class RatingGroup(BaseModel):
    """The ratings of one value of a field."""

    value: str
    rated: int
    average: float
    csat: float = Field(description="Share of ratings of 4 or 5.")


class RatingOutput(BaseModel):
    """Ratings of a slice."""

    period: dict[str, str]
    filters: dict[str, str]
    rated: int = Field(description="Records with a rating.")
    total: int = Field(description="Records in the slice, rated or not.")
    average: float | None
    csat: float | None = Field(description="Share of ratings of 4 or 5 among rated records.")
    distribution: dict[str, int]
    example_ids: list[str]
    nps_answers: int = Field(0, description="Records with a 0-10 likelihood-to-recommend score.")
    promoters: int = Field(0, description="Scores of 9 or 10.")
    detractors: int = Field(0, description="Scores of 0 to 6.")
    nps: float | None = Field(None, description="Net Promoter Score: % promoters - % detractors (-100 to 100).")
    nps_example_ids: list[str] = Field(default_factory=list)
    groups: list[RatingGroup] = Field(default_factory=list, description="Per value of `by`, when asked.")


class SearchInput(BaseModel):
    """Arguments of search_quotes."""

    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(None, max_length=2000)
    window: Window | None = None
    filters: Filters = Field(default_factory=Filters)
    k: int = Field(5, ge=1, le=50)


class Quote(BaseModel):
    """A feedback record quoted as evidence."""

    id: str
    text: str
    created_at: str
    category: str | None = None
    sentiment: str | None = None
    product: str | None = None
    carrier: str | None = None
    channel: str | None = None


class SearchOutput(BaseModel):
    """Quotes with ids."""

    query: str | None
    period: dict[str, str]
    filters: dict[str, str]
    quotes: list[Quote]


class GetRecordsInput(BaseModel):
    """Arguments of get_records."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=100)


class RecordsOutput(BaseModel):
    """Records found and ids not found."""

    records: list[dict[str, Any]]
    missing: list[str]


def evidence_ids(result: Any) -> list[str]:
    """Every record id a tool result cites (example ids and quotes), in order, without repeats."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "example_ids" and isinstance(value, list):
                    found.extend(str(v) for v in value)
                elif key in ("quotes", "records") and isinstance(value, list):
                    found.extend(str(q["id"]) for q in value if isinstance(q, dict) and "id" in q)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(result)
    return list(dict.fromkeys(found))
