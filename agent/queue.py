"""The priority queue: open feedback ranked by a score a lead can read.

Open = not yet resolved (no linked resolution with outcome ``resolved``; ``unresolved`` and
``escalated`` cases stay open) and not positive, within the window before the reference time.
Each item's score is a weighted sum of five signals, each between 0 and 1, and every signal that
counts is shown as a reason with the points it added:

* ``urgency``: critical 1, high 0.7, medium 0.3, low 0 (with the label's source: a model's guess
  is marked as one);
* ``customer``: the customer tier (platinum 1, gold 0.7, silver 0.4, other 0);
* ``public``: posted where others read it (app reviews, the mini-program's reviews, Weibo);
* ``age``: days open, 1 at 14 days or more;
* ``repeat``: other feedback on the same order in the window (1 at two or more).

The weights are the ``queue_weights`` setting (``urgency=4,customer=2,public=1.5,age=1.5,repeat=1.5``
by default), so a team can say what matters to it; they are printed with the queue.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import and_, select

from agent.wording import Lang, say
from retrieval.store import Store, feedback_table, resolution_table

SIGNALS = ("urgency", "customer", "public", "age", "repeat")
DEFAULT_WEIGHTS = "urgency=4,customer=2,public=1.5,age=1.5,repeat=1.5"
URGENCY = {"critical": 1.0, "high": 0.7, "medium": 0.3, "low": 0.0}
TIERS = {"platinum": 1.0, "gold": 0.7, "silver": 0.4}
PUBLIC_CHANNELS = {"app_review", "mini_program", "weibo"}
FULL_AGE_DAYS = 14


def parse_weights(text: str) -> dict[str, float]:
    """``name=weight,...`` as a dict; every signal must be named once, weights >= 0."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in SIGNALS:
            raise ValueError(f"unknown signal {name!r} in queue_weights; use {', '.join(SIGNALS)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"queue_weights: {part!r} is not name=number") from None
        if weights[name] < 0:
            raise ValueError(f"queue_weights: {name} must not be negative")
    missing = [s for s in SIGNALS if s not in weights]
    if missing:
        raise ValueError(f"queue_weights lacks {', '.join(missing)}")
    return weights


class Reason(BaseModel):
    """One signal that raised an item's score."""

    signal: Literal["urgency", "customer", "public", "age", "repeat"]
    points: float
    text: str


class QueueItem(BaseModel):
    """An open case and why it is where it is."""

    id: str
    score: float
    created_at: str
    text: str
    category: str | None
    urgency: str | None
    urgency_source: str | None
    channel: str | None
    customer_tier: str | None
    order_id: str | None
    open_days: float
    reasons: list[Reason]


class Queue(BaseModel):
    """Open feedback, highest score first."""

    as_of: str
    since: str
    weights: dict[str, float]
    open_total: int = Field(description="Open, non-positive feedback in the window.")
    items: list[QueueItem]
    model_labelled: int = Field(description="Items whose urgency is the model's guess, not a rule's or a person's.")


def priority_queue(
    store: Store,
    as_of: datetime,
    *,
    weights: dict[str, float],
    days: int = 30,
    limit: int = 20,
    lang: Lang = "zh",
) -> Queue:
    """Rank the open feedback of the ``days`` before ``as_of``."""
    f, r = feedback_table.c, resolution_table.c
    since = as_of - timedelta(days=days)
    resolved = select(r.feedback_id).where(r.outcome == "resolved")
    stmt = select(
        f.id,
        f.text,
        f.created_at,
        f.created_ts,
        f.category,
        f.urgency,
        f.urgency_source,
        f.label_basis,
        f.channel,
        f.customer_tier,
        f.order_id,
    ).where(
        and_(
            f.created_ts >= since.timestamp(),
            f.created_ts <= as_of.timestamp(),
            f.sentiment.is_distinct_from("positive"),
            f.id.not_in(resolved),
        )
    )
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
        orders = [row["order_id"] for row in rows if row["order_id"]]
        contacts = Counter(
            conn.execute(
                select(f.order_id).where(
                    and_(f.order_id.in_(orders), f.created_ts >= since.timestamp(), f.created_ts <= as_of.timestamp())
                )
            ).scalars()
        )
    items = [_item(row, as_of, weights, contacts, lang) for row in rows]
    items.sort(key=lambda i: (-i.score, -i.open_days, i.id))
    top = items[:limit]
    return Queue(
        as_of=as_of.isoformat(),
        since=since.isoformat(),
        weights=weights,
        open_total=len(items),
        items=top,
        model_labelled=sum(i.urgency_source == "model" and i.urgency in ("critical", "high") for i in top),
    )


def source_note(source: str | None, basis: str | None, field: str, lang: Lang) -> str:
    """How a label was set, when a machine set it: the model's guess, or the rule that fired."""
    if source == "model":
        return say("queue.model_guess", lang)
    if source == "rule":
        why = json.loads(basis).get(field, "") if basis else ""
        return say("queue.rule", lang, basis=why)
    return ""


def _item(row: Any, as_of: datetime, weights: dict[str, float], contacts: Counter[str], lang: Lang) -> QueueItem:
    open_days = max(0.0, (as_of.timestamp() - row["created_ts"]) / 86400)
    repeats = contacts.get(row["order_id"], 1) - 1 if row["order_id"] else 0
    level = row["urgency"] or ""
    guessed = source_note(row["urgency_source"], row["label_basis"], "urgency", lang)
    signals: list[tuple[Literal["urgency", "customer", "public", "age", "repeat"], float, str]] = [
        ("urgency", URGENCY.get(level, 0.0), say("queue.urgency", lang, level=level, guessed=guessed)),
        (
            "customer",
            TIERS.get(row["customer_tier"] or "", 0.0),
            say("queue.customer", lang, tier=row["customer_tier"]),
        ),
        (
            "public",
            1.0 if row["channel"] in PUBLIC_CHANNELS else 0.0,
            say("queue.public", lang, channel=row["channel"]),
        ),
        ("age", min(open_days / FULL_AGE_DAYS, 1.0), say("queue.age", lang, days=f"{open_days:.0f}")),
        ("repeat", min(repeats / 2, 1.0), say("queue.repeat", lang, n=repeats, order=row["order_id"])),
    ]
    reasons = [
        Reason(signal=name, points=round(weights[name] * value, 2), text=text)
        for name, value, text in signals
        if value > 0 and weights[name] > 0
    ]
    return QueueItem(
        id=row["id"],
        score=round(sum(x.points for x in reasons), 2),
        created_at=row["created_at"],
        text=row["text"],
        category=row["category"],
        urgency=row["urgency"],
        urgency_source=row["urgency_source"],
        channel=row["channel"],
        customer_tier=row["customer_tier"],
        order_id=row["order_id"],
        open_days=round(open_days, 1),
        reasons=reasons,
    )
