"""Write the bundled `eval ask` questions, with expected figures computed from a feedback CSV.

The expected values are computed here with the csv module and calendar arithmetic only, not
with agent/tools, so the eval checks the tools and the router against an independent count.
Windows follow the documented meaning: "last week" is the ISO week before the one holding
as-of, "last N days" is as-of's day and the N-1 days before it, complaints are sentiment
``negative``.

    python -m evals.ask_questions [FEEDBACK_CSV] [OUT_JSONL] [--as-of 2026-11-23] [--measures]
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from retrieval.sample_data import SAMPLE_DIR

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "datasets" / "ask_default.jsonl"

Row = dict[str, Any]
DayRange = tuple[date, date]  # inclusive

NAMES = {  # how people name categories in questions
    "logistics": ("logistics", "物流"),
    "product_quality": ("product quality", "质量"),
    "packaging": ("packaging", "包装"),
    "after_sales": ("refund", "售后"),
    "customer_service": ("customer service", "客服"),
    "price_promotion": ("coupon", "价格优惠"),
    "app_website": ("app", "APP"),
}


def load_rows(path: Path) -> list[Row]:
    """Feedback rows with a parsed day."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["day"] = datetime.strptime(r["created_at"][:10], "%Y-%m-%d").date()
    return rows


def iso_week(as_of: date, weeks_ago: int) -> DayRange:
    """Monday..Sunday of the ISO week ``weeks_ago`` weeks before as-of's week."""
    monday = as_of - timedelta(days=as_of.weekday()) - timedelta(days=7 * weeks_ago)
    return monday, monday + timedelta(days=6)


def last_days(as_of: date, n: int) -> DayRange:
    """As-of's day and the n-1 days before it."""
    return as_of - timedelta(days=n - 1), as_of


def count(rows: list[Row], days: DayRange, **eq: str) -> Counter[str]:
    """Negative rows in the range passing ``eq``, counted by category."""
    return Counter(
        r["category"]
        for r in rows
        if days[0] <= r["day"] <= days[1] and r["sentiment"] == "negative" and all(r[k] == v for k, v in eq.items())
    )


def facet_count(rows: list[Row], days: DayRange, facet: str, category: str) -> Counter[str]:
    """Negative rows of a category in the range, counted by a facet (rows without a value skipped)."""
    return Counter(
        r[facet]
        for r in rows
        if days[0] <= r["day"] <= days[1] and r["sentiment"] == "negative" and r["category"] == category and r[facet]
    )


def _unique_top(counter: Counter[str]) -> tuple[str, int] | None:
    top = counter.most_common(2)
    if not top or (len(top) > 1 and top[0][1] == top[1][1]):
        return None  # a tie has no single right answer
    return top[0]


def questions(rows: list[Row], as_of: date) -> list[dict[str, Any]]:
    """The question set: top category, one category's week-over-week count, concentration, rising,
    and a month's average rating and negative share, and a category's 8-week trend."""
    out: list[dict[str, Any]] = []

    def add(kind: str, text: str, expected: list[Any]) -> None:
        out.append(
            {
                "id": f"q{len(out) + 1:03d}",
                "kind": kind,
                "question": text,
                "as_of": as_of.isoformat(),
                "expected": expected,
            }
        )

    windows: list[tuple[str, str, Callable[[], DayRange]]] = [
        ("last week", "上周", lambda: iso_week(as_of, 1)),
        ("the last 30 days", "最近30天", lambda: last_days(as_of, 30)),
        ("the past 14 days", "近两周", lambda: last_days(as_of, 14)),
        ("the last 7 days", "最近7天", lambda: last_days(as_of, 7)),
    ]
    top_en = [
        "What were customers complaining about most in {w}?",
        "Top complaint category in {w}?",
        "which category got the most complaints in {w}",
        "biggest source of complaints {w}?",
    ]
    top_zh = [
        "{w}用户投诉最多的是哪一类？",
        "{w}大家主要在抱怨什么",
        "{w}投诉最多的问题是什么？",
        "{w}哪类问题被吐槽得最多",
    ]
    for i, (w_en, w_zh, days) in enumerate(windows):
        top = _unique_top(count(rows, days()))
        if top:
            add("top", top_en[i % len(top_en)].format(w=w_en), [top[0], top[1]])
            add("top", top_zh[i % len(top_zh)].format(w=w_zh), [top[0], top[1]])

    cnt_en = [
        "How many {c} complaints last week vs the week before?",
        "{c} complaints last week compared with the week before",
        "number of {c} complaints last week, and the week before?",
        "how many complaints about {c} did we get last week compared to the previous week",
    ]
    cnt_zh = [
        "上周{c}投诉有多少条？和前一周比呢？",
        "上周{c}问题多少条，比上上周多还是少",
        "{c}相关的投诉上周有几条，环比如何",
        "上周关于{c}的差评数量和前一周对比",
    ]
    last, before = iso_week(as_of, 1), iso_week(as_of, 2)
    for i, (cat, (en, zh)) in enumerate(NAMES.items()):
        a, b = count(rows, last)[cat], count(rows, before)[cat]
        add("count", cnt_en[i % len(cnt_en)].format(c=en), [a, b])
        add("count", cnt_zh[i % len(cnt_zh)].format(c=zh), [a, b])

    conc: list[tuple[str, str, str, str, Callable[[], DayRange], str, str]] = [
        (
            "carrier",
            "logistics",
            "the last 30 days",
            "最近30天",
            lambda: last_days(as_of, 30),
            "Which carrier is behind most logistics complaints in {w}?",
            "{w}物流投诉主要集中在哪家快递？",
        ),
        (
            "carrier",
            "logistics",
            "last week",
            "上周",
            lambda: iso_week(as_of, 1),
            "which courier had the most delivery complaints {w}",
            "{w}哪家快递公司的物流投诉最多",
        ),
        (
            "product",
            "product_quality",
            "last week",
            "上周",
            lambda: iso_week(as_of, 1),
            "Which product concentrates the quality complaints {w}?",
            "{w}质量问题主要集中在哪个商品？",
        ),
        (
            "product",
            "product_quality",
            "the last 30 days",
            "最近30天",
            lambda: last_days(as_of, 30),
            "what product is driving product quality complaints over {w}",
            "{w}哪款商品的质量投诉最多",
        ),
        (
            "product",
            "packaging",
            "the last 30 days",
            "最近30天",
            lambda: last_days(as_of, 30),
            "which product has the most packaging complaints in {w}?",
            "{w}包装问题集中在哪个产品",
        ),
    ]
    for facet, cat, w_en, w_zh, days, q_en, q_zh in conc:
        counter = facet_count(rows, days(), facet, cat)
        top = _unique_top(counter)
        if top:
            expected = [top[0], top[1], sum(counter.values())]
            add("concentration", q_en.format(w=w_en), expected)
            add("concentration", q_zh.format(w=w_zh), expected)

    rise_en = [
        "Which category rose most week over week?",
        "what complaint category increased the most last week?",
        "Which complaints grew the most last week compared to the week before?",
    ]
    rise_zh = ["上周哪类投诉涨得最多？", "哪个类别的投诉环比增长最多", "和上上周相比，上周哪类问题增加得最多"]
    now, prev = count(rows, last), count(rows, before)
    deltas = Counter({c: now[c] - prev[c] for c in set(now) | set(prev)})
    top = _unique_top(deltas)
    if top:
        for q in rise_en + rise_zh:
            add("rising", q, [top[0], now[top[0]], prev[top[0]]])

    # measures beyond counts: a calendar month (the one before as-of's), ratings, shares, a trend
    month_end = as_of.replace(day=1) - timedelta(days=1)
    month = (month_end.replace(day=1), month_end)
    in_month = [r for r in rows if month[0] <= r["day"] <= month[1]]
    zh_month, en_month = f"{month[0].month}月", month[0].strftime("%B")
    product = "智能保温杯 Pro"
    rated = [float(r["rating"]) for r in in_month if r["product"] == product and r["rating"]]
    if rated:
        avg = round(sum(rated) / len(rated), 2)
        add("rating", f"{product} {zh_month}的平均评分是多少", [avg, len(rated)])
        add("rating", f"What was the average rating of {product} in {en_month}?", [avg, len(rated)])
    negative = sum(r["sentiment"] == "negative" for r in in_month)
    if in_month:
        add("share", f"{zh_month}差评率多少", [negative, len(in_month)])
        add("share", f"What share of feedback was negative in {en_month}?", [negative, len(in_month)])
    weeks = [iso_week(as_of, k) for k in (8, 4, 1)]  # the oldest, a middle and the newest of 8 weeks
    trend = [count(rows, w)["logistics"] for w in weeks]
    add("trend", "物流投诉最近8周每周的趋势", trend)
    add("trend", "weekly trend of logistics complaints over the last 8 weeks", trend)
    return out


MEASURES_OUT = HERE / "datasets" / "ask_measures.jsonl"


def _rated(rows: list[Row]) -> list[float]:
    return [float(r["rating"]) for r in rows if r["rating"]]


def _pct(part: int, whole: int) -> dict[str, float]:
    """A percentage as the answer shows it (one decimal) and the tools hold it (a share)."""
    return {"percent": round(100 * part / whole, 1)}


def measure_questions(rows: list[Row], as_of: date) -> list[dict[str, Any]]:
    """The measures, facets and gaps of issue 16 (CSAT, stars, ratings per value, tiers, regions,
    channels, two values side by side, a week's share, a daily series, fallers, urgent cases,
    "why", top N, and fields the sample lacks), each in Chinese and English. Written from the
    issue's list before the answers were looked at; the figures are the csv module's."""
    out: list[dict[str, Any]] = []

    def add(kind: str, text: str, expected: list[Any], not_used: list[str] | None = None) -> None:
        row: dict[str, Any] = {
            "id": f"m{len(out) + 1:03d}",
            "kind": kind,
            "question": text,
            "as_of": as_of.isoformat(),
            "expected": expected,
        }
        if not_used:
            row["not_used"] = not_used
        out.append(row)

    def within(days: DayRange) -> list[Row]:
        return [r for r in rows if days[0] <= r["day"] <= days[1]]

    last, before, d30, d7 = iso_week(as_of, 1), iso_week(as_of, 2), last_days(as_of, 30), last_days(as_of, 7)
    month_end = as_of.replace(day=1) - timedelta(days=1)
    month = (month_end.replace(day=1), month_end)
    zh_month, en_month = f"{month[0].month}月", month[0].strftime("%B")
    negative = [r for r in rows if r["sentiment"] == "negative"]

    # CSAT: the share of 4-5 stars among the rated
    product = "智能保温杯 Pro"
    rated = _rated([r for r in within(month) if r["product"] == product])
    if rated:
        csat = _pct(sum(x >= 4 for x in rated), len(rated))
        add("csat", f"{product} {zh_month}的满意度（CSAT）是多少", [len(rated), csat])
        add("csat", f"What was the CSAT of {product} in {en_month}?", [len(rated), csat])
    # a star range, every sentiment
    ones = sum(1 for x in _rated(within(month)) if round(x) == 1)
    add("stars", f"{zh_month}一星评价有多少条", [ones])
    add("stars", f"How many 1-star reviews did we get in {en_month}?", [ones])
    low = sum(1 for x in _rated(within(month)) if round(x) <= 2)
    add("stars", f"{zh_month}两星及以下的评价有多少", [low])
    add("stars", f"How many reviews rated 2 stars or less in {en_month}?", [low])
    # ratings per product: the lowest average
    per: dict[str, list[float]] = {}
    for r in within(d30):
        if r["rating"] and r["product"]:
            per.setdefault(r["product"], []).append(float(r["rating"]))
    averages = sorted((round(sum(v) / len(v), 2), p) for p, v in per.items())
    if len(averages) > 1 and averages[0][0] != averages[1][0]:
        avg, worst = averages[0]
        add("rating_by", "最近30天哪个商品的平均评分最低", [worst, avg])
        add("rating_by", "Which product had the lowest average rating in the last 30 days?", [worst, avg])
    # segments: tier, region, channel
    tiers = Counter(r["customer_tier"] for r in negative if last[0] <= r["day"] <= last[1] and r["customer_tier"])
    if (top := _unique_top(tiers)) is not None:
        add("tier", "上周哪个客户等级的投诉最多", [top[0], top[1]])
        add("tier", "Which customer tier complained the most last week?", [top[0], top[1]])
    regions = Counter(r["region"] for r in negative if d30[0] <= r["day"] <= d30[1] and r["region"])
    if (top := _unique_top(regions)) is not None:
        add("region", "最近30天各地区的投诉分别有多少", [top[0], top[1]])
        add("region", "Complaints by region over the last 30 days", [top[0], top[1]])
    weibo = count(rows, last, channel="weibo")
    add("channel", "上周微博渠道（weibo）的投诉有多少", [sum(weibo.values())])
    add("channel", "How many complaints came in through weibo last week?", [sum(weibo.values())])
    pair = [sum(count(rows, last, customer_tier=t).values()) for t in ("platinum", "regular")]
    add("two_values", "上周 platinum 和 regular 客户的投诉各有多少", pair)
    add("two_values", "Complaints from platinum vs regular customers last week", pair)
    # a week's share of negative feedback
    week = within(last)
    neg = sum(r["sentiment"] == "negative" for r in week)
    add("share_week", "上周差评占全部反馈的比例是多少", [neg, len(week)])
    add("share_week", "What share of last week's feedback was negative?", [neg, len(week)])
    # a daily series over the last 7 days: the first and the last day
    days = [sum(count(rows, (d7[0] + timedelta(days=i), d7[0] + timedelta(days=i))).values()) for i in (0, 6)]
    add("series_day", "最近7天每天的投诉数量", days)
    add("series_day", "daily complaints over the last 7 days", days)
    # fallers: the category that fell most, last week against the week before
    now, prev = count(rows, last), count(rows, before)
    drops = Counter({c: prev[c] - now[c] for c in set(now) | set(prev)})
    if (top := _unique_top(drops)) is not None:
        add("fallers", "上周哪类投诉减少得最多", [top[0], now[top[0]], prev[top[0]]])
        add("fallers", "Which complaint category fell the most last week?", [top[0], now[top[0]], prev[top[0]]])
    # urgent: critical and high cases of the last 7 days, every sentiment
    crit = sum(1 for r in within(d7) if r["urgency"] == "critical")
    high = sum(1 for r in within(d7) if r["urgency"] == "high")
    add("urgent", "最近7天有哪些紧急问题需要马上处理", [crit, high])
    add("urgent", "What urgent issues need action right now?", [crit, high])
    # why: the root cause of last week's logistics complaints (the slice's count)
    add("why", "上周物流投诉为什么这么多", [now["logistics"]])
    add("why", "Why were customers unhappy with logistics last week?", [now["logistics"]])
    # top N by a facet
    products = Counter(r["product"] for r in negative if d30[0] <= r["day"] <= d30[1] and r["product"])
    ranked = products.most_common()
    if len(ranked) > 5 and ranked[0][1] > ranked[1][1] and ranked[4][1] > ranked[5][1]:
        add("top_n", "最近30天投诉最多的前5个商品", [ranked[0][0], ranked[0][1], ranked[4][0]])
        add("top_n", "top 5 products by complaints in the last 30 days", [ranked[0][0], ranked[0][1], ranked[4][0]])
    # fields the sample does not hold: said, never answered as all customers in silence
    all_last = sum(now.values())
    add("missing", "上周回头客的投诉有多少", [all_last], ["回头客"])
    add("missing", "How many complaints from returning customers last week?", [all_last], ["returning customers"])
    add("missing", f"{zh_month}的NPS是多少", [], ["NPS"])
    add("missing", f"What was our NPS in {en_month}?", [], ["NPS"])
    return out


def main() -> None:
    """Write the questions file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("feedback", nargs="?", type=Path, default=SAMPLE_DIR / "feedback.csv")
    ap.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--as-of", default="2026-11-23")
    ap.add_argument("--measures", action="store_true", help="write the measures set (ask_measures.jsonl)")
    args = ap.parse_args()
    make = measure_questions if args.measures else questions
    if args.measures and args.out == DEFAULT_OUT:
        args.out = MEASURES_OUT
    qs = make(load_rows(args.feedback), date.fromisoformat(args.as_of))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in qs)
    print(f"{len(qs)} questions -> {args.out}")


if __name__ == "__main__":
    main()
