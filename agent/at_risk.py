"""Proactive intervention: customers with early signals who have not reviewed yet, ranked by the
risk that a bad review follows.

Records are followed by customer (``customer_id``; a record with only an ``order_id`` takes the
customer another record of that order names, else the order itself is followed). For a reference
time T:

* a **review** is a record with a rating (or posted on a review channel); a **bad review** has a
  rating of 2 or less;
* a **signal** is any other record that is not positive and not praise: a chat, ticket, e-mail,
  post or survey answer about a problem;
* a customer is a **candidate** when they have signals in the ``days`` before T and have not
  reviewed since the first of them (the story has not turned into a review yet).

Two scores rank the candidates. The **rule score** is fixed and readable: complaints (1 each, at
most 3), repeat contact (+1.5), a case open without resolution (up to +1.5 at 7 days), a case
closed as unresolved or escalated (+1), high or critical urgency (+1 / +2), a late parcel (+1), a
detractor NPS answer (+1). The **model** learns from the store's own history: at weekly cutoffs
before T it takes the candidates of that time, their features (the rule's signals, their counts
and ages, how often the customer reviewed before and how badly, their tier, the rule score) and
whether a bad review followed within ``horizon`` days, and fits a logistic regression. When that
history holds too few bad reviews after signals, the list says so and ranks by the rule score.

:func:`evaluate` measures both on time: fit before T, rank the candidates at T, and score them
against the bad reviews of the ``horizon`` days after T (``feedback-agent eval at-risk``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import or_, select

from agent.queue import source_note
from agent.wording import Lang, say
from retrieval.store import Store, feedback_table, resolution_table

DAY = 86400.0
REVIEW_CHANNELS = {"app_review", "mini_program", "review", "reviews", "评价", "商品评价"}
URGENCY_LEVEL = {"low": 0, "medium": 1, "high": 2, "critical": 3}
TIER_VALUE = {"platinum": 1.0, "gold": 0.7, "silver": 0.4}
MIN_POSITIVES = 8  # bad reviews after signals the history must hold before the model is used
TRAIN_CUTOFFS = 26  # weekly cutoffs the model learns from (half a year)
FEATURES = (
    "contacts",
    "negative",
    "repeat",
    "urgency",
    "open_cases",
    "open_days",
    "unresolved",
    "days_since_last",
    "delay",
    "detractor",
    "reviews_before",
    "bad_reviews_before",
    "tier",
    "rule_score",
)


@dataclass
class _Rec:
    id: str
    ts: float
    text: str
    rating: float | None
    nps: int | None
    sentiment: str | None
    urgency: str | None
    urgency_source: str | None
    label_basis: str | None
    category: str | None
    channel: str | None
    tier: str | None
    order_id: str | None

    @property
    def review(self) -> bool:
        return self.rating is not None or (self.channel or "").lower() in REVIEW_CHANNELS

    @property
    def signal(self) -> bool:
        return not self.review and self.sentiment != "positive" and self.category != "praise"


@dataclass
class _History:
    """A store's followable records by customer, and its resolutions by feedback id."""

    by_key: dict[str, list[_Rec]]
    resolutions: dict[str, list[tuple[float, str]]]  # feedback id -> (resolved_ts, outcome)
    unlinked_signals: int
    first_ts: float | None

    def resolved_before(self, rec: _Rec, t: float) -> tuple[bool, bool]:
        """(resolved, closed as unresolved/escalated) as known at ``t``."""
        known = [outcome for ts, outcome in self.resolutions.get(rec.id, []) if ts < t]
        return "resolved" in known, any(o != "resolved" for o in known)


@dataclass
class _Case:
    key: str
    signals: list[_Rec]
    features: dict[str, float]
    reasons: list[tuple[str, float, str]]  # (signal, points, text)
    history: tuple[int, int]
    rule_score: float
    label: int | None = None


def load_history(store: Store, until: float) -> _History:
    """Every record before ``until`` that names a customer or an order, grouped by customer."""
    f, r = feedback_table.c, resolution_table.c
    cols = [
        f.id,
        f.created_ts,
        f.text,
        f.rating,
        f.nps,
        f.sentiment,
        f.urgency,
        f.urgency_source,
        f.label_basis,
        f.category,
        f.channel,
        f.customer_tier,
        f.customer_id,
        f.order_id,
    ]
    with store.engine.connect() as conn:
        rows = conn.execute(select(*cols).where(f.created_ts < until).order_by(f.created_ts, f.id)).all()
        unlinked = 0
        owner: dict[str, str] = {}
        for row in rows:
            if row.customer_id and row.order_id:
                owner.setdefault(row.order_id, row.customer_id)
        by_key: dict[str, list[_Rec]] = defaultdict(list)
        first_ts: float | None = None
        for row in rows:
            first_ts = row.created_ts if first_ts is None else first_ts
            rec = _Rec(
                row.id,
                row.created_ts,
                row.text,
                row.rating,
                row.nps,
                row.sentiment,
                row.urgency,
                row.urgency_source,
                row.label_basis,
                row.category,
                row.channel,
                row.customer_tier,
                row.order_id,
            )
            key = (
                row.customer_id or owner.get(row.order_id or "") or (f"order:{row.order_id}" if row.order_id else None)
            )
            if key is None:
                unlinked += rec.signal
                continue
            by_key[key].append(rec)
        ids = [rec.id for recs in by_key.values() for rec in recs if rec.signal]
        resolutions: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for i in range(0, len(ids), 900):
            chunk = ids[i : i + 900]
            for fid, ts, outcome in conn.execute(
                select(r.feedback_id, r.resolved_ts, r.outcome).where(
                    r.feedback_id.in_(chunk), or_(r.resolved_ts.is_(None), r.resolved_ts < until)
                )
            ):
                resolutions[fid].append((ts if ts is not None else 0.0, outcome))
    return _History(dict(by_key), dict(resolutions), unlinked, first_ts)


def _case(key: str, recs: list[_Rec], hist: _History, t: float, days: int, lang: Lang) -> _Case | None:
    """The candidate ``key`` at ``t`` (None when it is not one): its signals, features and reasons."""
    before = [x for x in recs if x.ts < t]
    last_review = max((x.ts for x in before if x.review), default=None)
    since = t - days * DAY
    signals = [x for x in before if x.signal and x.ts >= since and (last_review is None or x.ts > last_review)]
    if not signals:
        return None
    negative = sum(x.sentiment == "negative" for x in signals)
    open_ages, unresolved = [], False
    for x in signals:
        solved, failed = hist.resolved_before(x, t)
        unresolved = unresolved or failed
        if not solved:
            open_ages.append((t - x.ts) / DAY)
    top = max(signals, key=lambda x: URGENCY_LEVEL.get(x.urgency or "", -1))
    level = URGENCY_LEVEL.get(top.urgency or "", 0)
    delay = any(x.category == "logistics" for x in signals)
    scores = [x.nps for x in signals if x.nps is not None and x.nps <= 6]
    reviews = [x for x in before if x.review]
    bad_before = sum(x.rating is not None and x.rating <= 2 for x in reviews)
    last_days = (t - signals[-1].ts) / DAY
    open_days = max(open_ages, default=0.0)

    reasons: list[tuple[str, float, str]] = [
        (
            "complaints",
            float(min(max(negative, 1), 3)),
            say("at_risk.complaints", lang, n=len(signals), last=f"{last_days:.0f}"),
        )
    ]
    if len(signals) >= 2:
        reasons.append(("repeat", 1.5, say("at_risk.repeat", lang, n=len(signals))))
    if open_ages:
        reasons.append(
            ("open", round(1.5 * min(open_days / 7, 1.0), 2), say("at_risk.open", lang, days=f"{open_days:.0f}"))
        )
    if unresolved:
        reasons.append(("unresolved", 1.0, say("at_risk.unresolved", lang)))
    if level >= 2:
        guessed = source_note(top.urgency_source, top.label_basis, "urgency", lang)
        reasons.append(("urgency", float(level - 1), say("at_risk.urgency", lang, level=top.urgency, guessed=guessed)))
    if delay:
        reasons.append(("delay", 1.0, say("at_risk.delay", lang)))
    if scores:
        reasons.append(("detractor", 1.0, say("at_risk.detractor", lang, score=min(scores))))
    rule = round(sum(p for _, p, _ in reasons), 2)
    features = {
        "contacts": float(len(signals)),
        "negative": float(negative),
        "repeat": float(len(signals) >= 2),
        "urgency": float(level),
        "open_cases": float(len(open_ages)),
        "open_days": min(open_days, 30.0),
        "unresolved": float(unresolved),
        "days_since_last": min(last_days, 30.0),
        "delay": float(delay),
        "detractor": float(bool(scores)),
        "reviews_before": float(len(reviews)),
        "bad_reviews_before": float(bad_before),
        "tier": TIER_VALUE.get(signals[-1].tier or "", 0.0),
        "rule_score": rule,
    }
    return _Case(key, signals, features, reasons, (len(reviews), bad_before), rule)


def candidates(hist: _History, t: float, days: int, lang: Lang = "zh") -> list[_Case]:
    """The candidates at ``t``."""
    found = (_case(key, recs, hist, t, days, lang) for key, recs in hist.by_key.items())
    return [c for c in found if c is not None]


def _followed_by_bad_review(hist: _History, case: _Case, t: float, horizon: int) -> int:
    end = t + horizon * DAY
    recs = hist.by_key.get(case.key, [])
    return int(any(x.review and x.rating is not None and x.rating <= 2 and t <= x.ts < end for x in recs))


@dataclass
class RiskModel:
    """The fitted model (None when the history was too thin) and what it learned from."""

    examples: int
    positives: int
    cutoffs: int
    pipeline: Any = None
    notes: list[str] = field(default_factory=list)

    def score(self, cases: Sequence[_Case]) -> list[float]:
        """Each case's risk: the model's probability, or the rule score without a model."""
        if self.pipeline is None or not cases:
            return [c.rule_score for c in cases]
        x = np.array([[c.features[n] for n in FEATURES] for c in cases])
        return [float(p) for p in self.pipeline.predict_proba(x)[:, 1]]


def fit(hist: _History, t: float, *, days: int, horizon: int) -> RiskModel:
    """Learn from the candidates of weekly cutoffs before ``t`` whose horizon ended by ``t``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows: list[list[float]] = []
    labels: list[int] = []
    cutoffs = 0
    start = hist.first_ts if hist.first_ts is not None else t
    for k in range(TRAIN_CUTOFFS):
        cut = t - horizon * DAY - k * 7 * DAY
        if cut - 7 * DAY < start:  # at least a week of history before a cutoff
            break
        cutoffs += 1
        for c in candidates(hist, cut, days):
            rows.append([c.features[n] for n in FEATURES])
            labels.append(_followed_by_bad_review(hist, c, cut, horizon))
    positives = sum(labels)
    model = RiskModel(examples=len(rows), positives=positives, cutoffs=cutoffs)
    if positives < MIN_POSITIVES or positives == len(labels):
        return model
    model.pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    model.pipeline.fit(np.array(rows), np.array(labels))
    return model


# --------------------------------------------------------------------------- the list


class Signal(BaseModel):
    """One early signal and the rule points it adds."""

    signal: str
    points: float
    text: str


class Suggestion(BaseModel):
    """What a similar past case did, and which."""

    action: str
    resolution_id: str
    feedback_id: str
    similarity: float


class AtRiskCustomer(BaseModel):
    """A customer (or an order without a customer id) to contact before they review."""

    customer: str = Field(description="customer_id, or order:<order_id> when no customer id links it.")
    risk: float = Field(description="The model's probability of a bad review within the horizon, or the rule score.")
    rule_score: float
    tier: str | None
    orders: list[str]
    feedback_ids: list[str] = Field(description="The signals, oldest first.")
    last_text: str
    last_at: str
    category: str | None
    signals: list[Signal]
    history: str | None = Field(description="How this customer reviewed before, when they did.")
    suggestion: Suggestion | None
    suggestion_note: str | None = None


class AtRisk(BaseModel):
    """Customers with early signals and no review yet, highest risk first."""

    as_of: str
    days: int
    horizon_days: int
    method: str = Field(description="model (learned from this store) or rules (too little history).")
    method_note: str
    trained_on: dict[str, int]
    candidates: int
    unlinked: int = Field(description="Signals with no customer or order id, which cannot be followed.")
    notes: list[str]
    items: list[AtRiskCustomer]


Suggest = Callable[[str, str | None], Suggestion | None]


def at_risk(
    store: Store,
    as_of: datetime,
    *,
    days: int = 30,
    horizon: int = 14,
    limit: int = 20,
    lang: Lang = "zh",
    suggest: Suggest | None = None,
) -> AtRisk:
    """The at-risk list at ``as_of``."""
    t = as_of.timestamp()
    hist = load_history(store, t)
    model = fit(hist, t, days=days, horizon=horizon)
    cases = candidates(hist, t, days, lang)
    ranked = sorted(zip(model.score(cases), cases, strict=True), key=lambda p: (-p[0], -p[1].rule_score, p[1].key))
    notes = [say("at_risk.unlinked", lang, n=hist.unlinked_signals)] if hist.unlinked_signals else []
    method_note = (
        say("at_risk.model", lang, examples=model.examples, positives=model.positives)
        if model.pipeline is not None
        else say("at_risk.rules", lang, positives=model.positives, needed=MIN_POSITIVES)
    )
    items = [_item(c, risk, as_of, lang, suggest) for risk, c in ranked[:limit]]
    return AtRisk(
        as_of=as_of.isoformat(),
        days=days,
        horizon_days=horizon,
        method="model" if model.pipeline is not None else "rules",
        method_note=method_note,
        trained_on={"examples": model.examples, "positives": model.positives, "cutoffs": model.cutoffs},
        candidates=len(cases),
        unlinked=hist.unlinked_signals,
        notes=notes,
        items=items,
    )


def _item(c: _Case, risk: float, as_of: datetime, lang: Lang, suggest: Suggest | None) -> AtRiskCustomer:
    last = c.signals[-1]
    worst = max(c.signals, key=lambda x: (x.sentiment == "negative", URGENCY_LEVEL.get(x.urgency or "", -1), x.ts))
    suggestion = suggest(worst.text, worst.category) if suggest else None
    n_reviews, n_bad = c.history
    return AtRiskCustomer(
        customer=c.key,
        risk=round(risk, 4),
        rule_score=c.rule_score,
        tier=last.tier,
        orders=sorted({x.order_id for x in c.signals if x.order_id}),
        feedback_ids=[x.id for x in c.signals],
        last_text=last.text,
        last_at=datetime.fromtimestamp(last.ts, as_of.tzinfo).isoformat(),
        category=worst.category,
        signals=[Signal(signal=s, points=p, text=txt) for s, p, txt in c.reasons],
        history=say("at_risk.reviews_before", lang, n=n_reviews, bad=n_bad) if n_reviews else None,
        suggestion=suggestion,
        suggestion_note=None if suggestion or not suggest else say("at_risk.no_suggestion", lang),
    )


# --------------------------------------------------------------------------- the eval


def _ranking_metrics(scores: list[float], cases: list[_Case], k: int, positives_total: int) -> dict[str, float]:
    order = sorted(range(len(cases)), key=lambda i: (-scores[i], -cases[i].rule_score, cases[i].key))
    labels = [cases[i].label or 0 for i in order]
    hits = sum(labels[:k])
    found, precisions = 0, []
    for rank, y in enumerate(labels, start=1):
        if y:
            found += 1
            precisions.append(found / rank)
    return {
        f"precision_at_{k}": round(hits / k, 4) if cases else 0.0,
        f"recall_at_{k}": round(hits / positives_total, 4) if positives_total else 0.0,
        "average_precision": round(sum(precisions) / positives_total, 4) if positives_total else 0.0,
    }


def evaluate(store: Store, as_of: datetime, *, days: int = 30, horizon: int = 14, k: int = 20) -> dict[str, Any]:
    """Fit before ``as_of``, rank its candidates, score against the bad reviews of the next ``horizon`` days.

    Recall is of the bad reviews (by customer) that followed from candidates; ``missed`` counts the
    customers who left one without being a candidate (no earlier signal: nothing could flag them).
    """
    t = as_of.timestamp()
    hist = load_history(store, t + horizon * DAY)
    known = load_history(store, t)
    model = fit(known, t, days=days, horizon=horizon)
    cases = candidates(known, t, days)
    for c in cases:
        c.label = _followed_by_bad_review(hist, c, t, horizon)
    positives = sum(c.label or 0 for c in cases)
    flagged = {c.key for c in cases}
    bad_after = {
        key
        for key, recs in hist.by_key.items()
        if any(x.review and x.rating is not None and x.rating <= 2 and t <= x.ts < t + horizon * DAY for x in recs)
    }
    return {
        "model": _ranking_metrics(model.score(cases), cases, k, positives),
        "rules": _ranking_metrics([c.rule_score for c in cases], cases, k, positives),
        "data": {
            "candidates": len(cases),
            "followed_by_bad_review": positives,
            "base_rate": round(positives / len(cases), 4) if cases else 0.0,
            "bad_reviewers_in_horizon": len(bad_after),
            "missed_without_signal": len(bad_after - flagged),
            "train_examples": model.examples,
            "train_positives": model.positives,
            "train_cutoffs": model.cutoffs,
            "method": "model" if model.pipeline is not None else "rules",
        },
    }
