"""Alerts (实时预警): spikes, critical cases and a CSAT drop found in the store, each sent once.

What is checked, at the reference time (``--as-of``, else the newest record's time, never later
than now, so a store loaded with last month's export is checked where its data ends):

* **spikes** of complaints (negative feedback) per category, product, carrier and channel, with the
  analytics' own test (:meth:`Analytics.spikes`): the last full ISO week and this week so far
  against the 4 full weeks before each, and yesterday and today so far against the 7 days before
  each. A period still under way can only grow, so a spike it already shows is real; its key is the
  period's, so the same spike is not sent again once the period is complete;
* **critical cases**: feedback of the last 48 hours with urgency ``critical`` (which rule fired, or
  that it is the model's guess, is said);
* **CSAT dropping**: the last full week's CSAT 10 points or more under the 4 weeks before, on at
  least 20 ratings.

Every alert has a stable key (what, which value, which period). :func:`record` writes a new key to
the mirror with one delivery row per destination that takes alerts, in one transaction, and a key
already there is skipped: a re-run, a re-ingest of the same file, or a second process finds it and
sends nothing. :func:`deliver` claims each pending row with a conditional UPDATE (so two watchers
never send one row both), sends it (:func:`agent.delivery.send` retries transient failures with
backoff), and marks it sent, or leaves it pending with the error for the next run. A crash between a
receiver's acceptance and the mark is the one case that can repeat a message: the row's claim
expires after :data:`STALE_CLAIM` seconds and it is sent again.

Personal data (phones, e-mails, IDs, cards, addresses) is replaced before a message is stored, so
neither the outbox nor anything sent holds it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from agent.delivery import Destination, Message, send
from agent.errors import ConfigError
from agent.queue import source_note
from agent.tools import Analytics, Filters, Period, SpikesInput, Window
from agent.wording import Lang, Words
from retrieval.pii import Redactor
from retrieval.store import Store, feedback_table
from retrieval.taxonomy import Taxonomy

SPIKE_FIELDS = ("category", "product", "carrier", "channel")
CRITICAL_HOURS = 48
CSAT_DROP = 0.10
CSAT_MIN_RATED = 20
STALE_CLAIM = 600.0  # seconds after which a claim by a process that never finished is taken over

alert_metadata = MetaData()
messages_table = Table(
    "alert_messages",
    alert_metadata,
    Column("key", String(400), primary_key=True),
    Column("id", String(20), nullable=False, unique=True),
    Column("kind", String(20), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("body", Text, nullable=False),  # the Message as JSON, personal data already replaced
)
deliveries_table = Table(
    "alert_deliveries",
    alert_metadata,
    Column("key", String(400), primary_key=True),
    Column("destination", String(100), primary_key=True),
    Column("status", String(10), nullable=False),  # pending | sending | sent
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("claimed_ts", Float),
    Column("sent_at", String(40)),
)


def ensure_tables(store: Store) -> None:
    """Create the outbox tables in the store's mirror (SQLite or PostgreSQL) when missing."""
    store.ensure_tables(alert_metadata)


def message_id(key: str) -> str:
    """The short id of an alert key."""
    return hashlib.sha1(key.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- detection


class Context(BaseModel):
    """What detection needs besides the store: where commands point and how messages are worded."""

    home: str
    lang: Lang = "zh"
    public_url: str | None = None


def reference_time(store: Store, as_of: datetime | None, now: datetime) -> tuple[datetime, str]:
    """The time alerts are checked at, and why: ``as_of``, else the newest record's time (capped at now)."""
    if as_of is not None:
        return as_of, "as_of"
    with store.engine.connect() as conn:
        newest = conn.execute(select(func.max(feedback_table.c.created_ts))).scalar()
    if newest is None:
        return now, "now"
    at = datetime.fromtimestamp(float(newest) + 1, UTC)  # +1 s: the newest record is inside "today so far"
    return (at, "newest_record") if at < now else (now, "now")


def _message(ctx: Context, key: str, **fields: Any) -> Message:
    link = f"{ctx.public_url.rstrip('/')}/v1/alerts/{message_id(key)}" if ctx.public_url else None
    return Message(
        key=key, id=message_id(key), created_at=datetime.now(UTC).isoformat(), lang=ctx.lang, link=link, **fields
    )


def _show(ctx: Context, ids: Sequence[str]) -> str:
    return f"feedback-agent show {' '.join(ids)} --home {ctx.home}"


def _spikes(a: Analytics, ctx: Context, words: Words) -> list[Message]:
    zone = a.zone
    now = a.as_of
    today = datetime.combine(now.date(), time.min, tzinfo=zone)
    checks: list[tuple[Literal["week", "day"], Period]] = [
        ("week", a.resolve(Window(weeks_ago=1))),
        ("week", a.resolve(Window(weeks_ago=0))),
        (
            "day",
            Period(start=today - timedelta(days=1), end=today, label=(today - timedelta(days=1)).date().isoformat()),
        ),
        ("day", Period(start=today, end=now, label=today.date().isoformat())),
    ]
    out: list[Message] = []
    for period, latest in checks:
        for field in SPIKE_FIELDS:
            args = SpikesInput(
                field=field,
                period=period,
                baseline_periods=4 if period == "week" else 7,
                filters=Filters(sentiment="negative"),
            )
            result = a.spikes(args, latest=latest)
            for s in result.spikes:
                if not s.is_spike:
                    continue
                partial = latest.end >= now
                when = latest.label
                if partial:
                    so_far = "today_so_far" if period == "day" else "week_so_far"
                    when = words.say(f"alerts.{so_far}", week=latest.label, time=now.strftime("%m-%d %H:%M"))
                name = words.value(field, s.value)
                unit = words.say(f"alerts.unit_{period}")
                key = f"spike:{period}:{field}:{s.value}:{latest.label}"
                commands = [_show(ctx, s.example_ids)] if s.example_ids else []
                last_day = (latest.end - timedelta(microseconds=1)).date().isoformat()
                span = f"--since {latest.start.date().isoformat()} --until {last_day}"
                if field == "category":
                    commands.append(f"feedback-agent root-cause --category {s.value} {span} --home {ctx.home}")
                elif field == "product":
                    commands.append(f"feedback-agent root-cause --product '{s.value}' {span} --home {ctx.home}")
                out.append(
                    _message(
                        ctx,
                        key,
                        kind="spike",
                        severity="warning",
                        title=words.say(
                            "alerts.spike_title", field=words.facet(field), value=name, when=when, current=s.current
                        ),
                        lines=[
                            words.say("alerts.spike_current", when=when, current=s.current),
                            words.say(
                                "alerts.spike_baseline",
                                n=len(s.baseline),
                                unit=unit,
                                mean=f"{s.baseline_mean:g}",
                                counts=", ".join(str(c) for c in s.baseline),
                            ),
                            words.say(
                                "alerts.spike_ratio",
                                ratio="∞" if s.ratio is None else f"{s.ratio:g}",
                                score=f"{s.score:g}",
                            ),
                        ],
                        record_ids=s.example_ids,
                        commands=commands,
                        figures={
                            "field": field,
                            "value": s.value,
                            "period": period,
                            "latest": latest.describe(),
                            "partial": partial,
                            "current": s.current,
                            "baseline": s.baseline,
                            "baseline_mean": s.baseline_mean,
                            "ratio": s.ratio,
                            "score": s.score,
                        },
                    )
                )
    return out


def _critical(a: Analytics, ctx: Context, words: Words) -> list[Message]:
    f = feedback_table.c
    since = (a.as_of - timedelta(hours=CRITICAL_HOURS)).timestamp()
    stmt = (
        select(f.id, f.text, f.created_at, f.channel, f.product, f.category, f.urgency_source, f.label_basis)
        .where(and_(f.urgency == "critical", f.created_ts >= since, f.created_ts < a.as_of.timestamp()))
        .order_by(f.created_ts, f.id)
    )
    with a.store.engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    out: list[Message] = []
    for r in rows:
        source = source_note(r["urgency_source"], r["label_basis"], "urgency", words.lang)
        out.append(
            _message(
                ctx,
                f"critical:{r['id']}",
                kind="critical",
                severity="critical",
                title=words.say("alerts.critical_title", category=words.label(r["category"])),
                lines=[
                    words.say("alerts.critical_text", text=" ".join(str(r["text"]).split())[:300]),
                    words.say(
                        "alerts.critical_meta",
                        when=r["created_at"],
                        channel=r["channel"] or "-",
                        product=r["product"] or "-",
                    ),
                    words.say("alerts.critical_urgency", source=source),
                ],
                record_ids=[r["id"]],
                commands=[_show(ctx, [r["id"]]), f"feedback-agent queue --home {ctx.home}"],
                figures={"id": r["id"], "created_at": r["created_at"], "urgency_source": r["urgency_source"]},
            )
        )
    return out


def _csat(a: Analytics, ctx: Context, words: Words) -> list[Message]:
    from agent.tools import RatingInput

    week = a.resolve(Window(weeks_ago=1))
    current = a.ratings(RatingInput(window=Window(weeks_ago=1)))
    if current.csat is None or current.rated < CSAT_MIN_RATED:
        return []
    satisfied = rated = 0
    for back in range(2, 6):  # the ratings' own 1-5 counts, so the baseline is exact, not re-derived
        r = a.ratings(RatingInput(window=Window(weeks_ago=back)))
        satisfied += sum(n for stars, n in r.distribution.items() if int(stars) >= 4)
        rated += r.rated
    if not rated:
        return []
    base = satisfied / rated
    if base - current.csat < CSAT_DROP:
        return []
    return [
        _message(
            ctx,
            f"csat:{week.label}",
            kind="csat",
            severity="warning",
            title=words.say("alerts.csat_title", week=week.label, csat=words.share(current.csat)),
            lines=[
                words.say("alerts.csat_now", week=week.label, csat=words.share(current.csat), rated=current.rated),
                words.say("alerts.csat_before", csat=words.share(base), rated=rated),
            ],
            record_ids=current.example_ids,
            commands=[f"feedback-agent report --week {week.label} --home {ctx.home}"],
            figures={"week": week.label, "csat": current.csat, "rated": current.rated, "baseline_csat": round(base, 4)},
        )
    ]


def detect(store: Store, taxonomy: Taxonomy, zone: tzinfo, at: datetime, ctx: Context) -> list[Message]:
    """Every alert the store shows at ``at`` (recorded or not), personal data replaced."""
    a = Analytics(store, at, zone)
    words = Words(ctx.lang, taxonomy)
    found = _critical(a, ctx, words) + _spikes(a, ctx, words) + _csat(a, ctx, words)
    return [redacted(m) for m in found]


def redacted(m: Message) -> Message:
    """``m`` with personal data replaced in every text it carries (a report's charts excepted)."""
    r = Redactor()

    def walk(node: Any, key: str = "") -> Any:
        if isinstance(node, str):
            return node if key in ("png_base64", "key", "id", "created_at") else r.redact(node)
        if isinstance(node, list):
            return [walk(x, key) for x in node]
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        return node

    data = m.model_dump()
    return Message.model_validate(
        {k: (walk(v, k) if k not in ("record_ids", "commands", "link") else v) for k, v in data.items()}
    )


# --------------------------------------------------------------------------- the outbox


class Delivered(BaseModel):
    """One delivery of one message: sent now, or still pending (and why)."""

    id: str
    key: str
    title: str
    destination: str
    status: Literal["sent", "pending"]
    attempts: int = Field(description="Attempts so far, over all runs.")
    error: str | None = None


def _known_keys(store: Store, keys: Sequence[str]) -> set[str]:
    """The keys among ``keys`` already recorded (asked in chunks of 500)."""
    ensure_tables(store)
    known: set[str] = set()
    with store.engine.connect() as conn:
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            known |= {k for (k,) in conn.execute(select(messages_table.c.key).where(messages_table.c.key.in_(chunk)))}
    return known


def record(store: Store, messages: Sequence[Message], destinations: Sequence[Destination]) -> list[Message]:
    """Store the messages whose keys are new, each with a pending delivery per destination that
    takes its content; returns the new ones (a key another process stored first is not new)."""
    known = _known_keys(store, [m.key for m in messages])
    new: list[Message] = []
    for m in messages:
        if m.key in known:
            continue
        try:
            with store.engine.begin() as conn:
                conn.execute(
                    insert(messages_table).values(
                        key=m.key, id=m.id, kind=m.kind, created_at=m.created_at, body=m.model_dump_json()
                    )
                )
                rows = [
                    {"key": m.key, "destination": d.name, "status": "pending", "attempts": 0}
                    for d in destinations
                    if d.takes(m.content)
                ]
                if rows:
                    conn.execute(insert(deliveries_table), rows)
        except IntegrityError:
            continue
        known.add(m.key)
        new.append(m)
    return new


def requeue(store: Store, m: Message, destinations: Sequence[Destination]) -> None:
    """Send a stored message again: its delivery to each destination taking it becomes pending."""
    ensure_tables(store)
    with store.engine.begin() as conn:
        have = {
            d for (d,) in conn.execute(select(deliveries_table.c.destination).where(deliveries_table.c.key == m.key))
        }
        for d in destinations:
            if not d.takes(m.content):
                continue
            if d.name in have:
                conn.execute(
                    update(deliveries_table)
                    .where(and_(deliveries_table.c.key == m.key, deliveries_table.c.destination == d.name))
                    .values(status="pending", claimed_ts=None)
                )
            else:
                conn.execute(
                    insert(deliveries_table).values(key=m.key, destination=d.name, status="pending", attempts=0)
                )


def deliver(
    store: Store,
    destinations: Sequence[Destination],
    *,
    attempts: int = 3,
    backoff: float = 2.0,
    keys: Sequence[str] | None = None,
) -> list[Delivered]:
    """Send every pending delivery (of ``keys`` only, when given) to its destination."""
    ensure_tables(store)
    by_name = {d.name: d for d in destinations}
    d_t, m_t = deliveries_table.c, messages_table.c
    now = datetime.now(UTC).timestamp()
    waiting = or_(d_t.status == "pending", and_(d_t.status == "sending", d_t.claimed_ts < now - STALE_CLAIM))
    stmt = (
        select(d_t.key, d_t.destination, d_t.attempts, m_t.body)
        .join(messages_table, messages_table.c.key == d_t.key)
        .where(waiting)
        .order_by(m_t.created_at, d_t.key, d_t.destination)
    )
    if keys is not None:
        stmt = stmt.where(d_t.key.in_(list(keys)))
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    out: list[Delivered] = []
    for key, dest_name, done, body in rows:
        m = Message.model_validate_json(body)
        dest = by_name.get(dest_name)

        outcome = functools.partial(Delivered, id=m.id, key=key, title=m.title, destination=dest_name)
        if dest is None:
            out.append(outcome(status="pending", attempts=done, error="this destination is no longer configured"))
            continue
        this_row = and_(d_t.key == key, d_t.destination == dest_name)
        with store.engine.begin() as conn:
            claimed = conn.execute(
                update(deliveries_table)
                .where(and_(this_row, waiting))
                .values(status="sending", claimed_ts=datetime.now(UTC).timestamp())
            ).rowcount
        if claimed != 1:
            continue  # another process has it
        status: Literal["sent", "pending"] = "sent"
        error: str | None = None
        try:
            tries = send(dest, m, attempts=attempts, backoff=backoff)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the row must go back to pending
            from agent.delivery import DeliveryError

            tries = exc.attempts if isinstance(exc, DeliveryError) else 1
            status, error = "pending", (str(exc) if isinstance(exc, DeliveryError | ConfigError) else repr(exc))
        with store.engine.begin() as conn:
            conn.execute(
                update(deliveries_table)
                .where(this_row)
                .values(
                    status=status,
                    attempts=d_t.attempts + tries,
                    last_error=error,
                    claimed_ts=None,
                    sent_at=datetime.now(UTC).isoformat() if status == "sent" else None,
                )
            )
        out.append(outcome(status=status, attempts=done + tries, error=error))
    return out


class AlertState(BaseModel):
    """A recorded message and where it stands with each destination."""

    message: Message
    deliveries: list[dict[str, Any]]


def recorded(store: Store, *, limit: int = 50, ident: str | None = None, kind: str | None = None) -> list[AlertState]:
    """Recorded messages, newest first (one by id), with their deliveries."""
    ensure_tables(store)
    m_t, d_t = messages_table.c, deliveries_table.c
    stmt = select(m_t.key, m_t.body).order_by(m_t.created_at.desc(), m_t.key).limit(limit)
    if ident is not None:
        stmt = stmt.where(m_t.id == ident)
    if kind == "alerts":
        stmt = stmt.where(m_t.kind != "report")
    elif kind == "report":
        stmt = stmt.where(m_t.kind == "report")
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
        keys = [k for k, _ in rows]
        states: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
        if keys:
            for d in conn.execute(
                select(d_t.key, d_t.destination, d_t.status, d_t.attempts, d_t.last_error, d_t.sent_at).where(
                    d_t.key.in_(keys)
                )
            ).mappings():
                states[d["key"]].append(
                    {k: d[k] for k in ("destination", "status", "attempts", "last_error", "sent_at")}
                )
    # a report's full content (charts included) stays in the outbox; the listing names it
    return [
        AlertState(message=Message.model_validate_json(body).model_copy(update={"report": None}), deliveries=states[k])
        for k, body in rows
    ]


# --------------------------------------------------------------------------- one run


class WatchResult(BaseModel):
    """What one check found, recorded and sent."""

    as_of: str
    reference: Literal["as_of", "newest_record", "now"] = Field(
        description="Why that time: given, the newest record's time, or now."
    )
    found: int = Field(description="Alerts the store shows at that time.")
    new: list[Message] = Field(description="Alerts not seen before (recorded now unless dry_run).")
    known: int = Field(description="Alerts found that were already recorded (not sent again).")
    destinations: list[str]
    deliveries: list[Delivered]
    notes: list[str]
    dry_run: bool = False

    @property
    def pending(self) -> list[Delivered]:
        """Deliveries still waiting after this run."""
        return [d for d in self.deliveries if d.status == "pending"]


def destinations_for(destinations: Sequence[Destination], content: Literal["alerts", "report"]) -> list[Destination]:
    """The destinations that take ``content``."""
    return [d for d in destinations if d.takes(content)]


def watch(
    store: Store,
    taxonomy: Taxonomy,
    zone: tzinfo,
    destinations: Sequence[Destination],
    ctx: Context,
    *,
    as_of: datetime | None = None,
    dry_run: bool = False,
    attempts: int = 3,
    backoff: float = 2.0,
) -> WatchResult:
    """Find alerts, record the new ones, and deliver everything pending (earlier failures too)."""
    at, why = reference_time(store, as_of, datetime.now(UTC))
    notes: list[str] = []
    words = Words(ctx.lang, taxonomy)
    held = store.count("feedback")
    if not held:
        notes.append(words.say("alerts.empty", home=ctx.home))
    elif why == "newest_record":
        notes.append(words.say("alerts.at_newest", at=at.astimezone(zone).strftime("%Y-%m-%d %H:%M")))
    found = detect(store, taxonomy, zone, at, ctx) if held else []
    takers = destinations_for(destinations, "alerts")
    if not takers:
        notes.append(words.say("alerts.no_destinations"))
    if dry_run:
        known = _known_keys(store, [m.key for m in found])
        new = [m for m in found if m.key not in known]
        delivered: list[Delivered] = []
    else:
        new = record(store, found, takers)
        delivered = deliver(store, destinations, attempts=attempts, backoff=backoff)
    return WatchResult(
        as_of=at.astimezone(zone).isoformat(),
        reference=why,
        found=len(found),
        new=new,
        known=len(found) - len(new),
        destinations=[d.name for d in takers],
        deliveries=delivered,
        notes=notes,
        dry_run=dry_run,
    )


def report_message(report: Any, ctx: Context) -> Message:
    """The weekly report as a message (key ``report:<week>:<lang>``), personal data replaced."""
    words = Words(report.lang, None)
    h = report.headline
    lines = [report.executive_summary.replace("\n", " ")]
    for name in ("volume", "negative_share", "critical", "csat", "nps"):
        fig = h.get(name)
        if fig is None:
            continue
        value = words.share(fig.current) if name in ("negative_share", "csat") else f"{fig.current:g}"
        lines.append(words.say(f"alerts.report_{name}", value=value))
    for issue in report.top_issues[:5]:
        lines.append(
            words.say(
                "alerts.report_issue",
                name=issue.name,
                current=issue.current,
                change=words.change(issue.current, issue.previous),
                spike=words.say("alerts.report_spike") if issue.spike else "",
            )
        )
    key = f"report:{report.week}:{report.lang}"
    link = f"{ctx.public_url.rstrip('/')}/v1/reports/{report.week}?lang={report.lang}" if ctx.public_url else None
    m = Message(
        key=key,
        id=message_id(key),
        kind="report",
        severity="info",
        title=words.say("alerts.report_title", week=report.week),
        lines=lines,
        record_ids=list(report.citations[:10]),
        commands=[f"feedback-agent report --week {report.week} --lang {report.lang} --home {ctx.home}"],
        link=link,
        figures={"week": report.week, "period": report.period},
        created_at=datetime.now(UTC).isoformat(),
        lang=report.lang,
        report=json.loads(report.model_dump_json()),
    )
    return redacted(m)
