"""Write `evals/datasets/ask_unsupported.jsonl`: questions with one part the product cannot use yet
(a customer attribute the data does not hold, a place, a time of day, a word no filter reads).

An answer passes only when it says so: ``understood`` is not true and the answer names the unused
words (``not_used``), and it still gives the figures for the rest of the question (``expected``,
computed here from the CSV with the csv module only, like :mod:`evals.ask_questions`). A
confident answer that quietly drops the part is ``silent_wrong``. The questions were written
before the router that reads them was run on them.

    python -m evals.ask_unsupported
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date

from evals.ask_questions import HERE, iso_week, last_days, load_rows
from retrieval.sample_data import SAMPLE_DIR

OUT = HERE / "datasets" / "ask_unsupported.jsonl"
AS_OF = date(2026, 11, 23)


def main() -> None:
    """Write the set."""
    rows = load_rows(SAMPLE_DIR / "feedback.csv")
    neg = [r for r in rows if r["sentiment"] == "negative"]

    def count(category: str, days: tuple[date, date]) -> int:
        return sum(r["category"] == category and days[0] <= r["day"] <= days[1] for r in neg)

    def top(days: tuple[date, date]) -> str:
        return str(Counter(r["category"] for r in neg if days[0] <= r["day"] <= days[1]).most_common(1)[0][0])

    def carrier(category: str, days: tuple[date, date]) -> str:
        hits = [r["carrier"] for r in neg if r["category"] == category and days[0] <= r["day"] <= days[1]]
        return str(Counter(c for c in hits if c).most_common(1)[0][0])

    week, month, seven = iso_week(AS_OF, 1), last_days(AS_OF, 30), last_days(AS_OF, 7)
    questions = [
        ("上周男性用户的物流投诉有多少？", ["男性"], [count("logistics", week)]),
        ("How many logistics complaints from female customers last week?", ["female"], [count("logistics", week)]),
        ("上周学生党的包装投诉有几条", ["学生党"], [count("packaging", week)]),
        ("最近30天复购用户投诉最多的是什么", ["复购"], [top(month)]),
        ("What did customers in Tokyo complain about most in the last 30 days?", ["tokyo"], [top(month)]),
        ("上周直播间的客服投诉有多少", ["直播间"], [count("customer_service", week)]),
        (
            "Which carrier is behind most logistics complaints from first-time buyers in the last 30 days?",
            ["first-time"],
            [carrier("logistics", month)],
        ),
        ("最近7天夜间的质量投诉有多少", ["夜间"], [count("product_quality", seven)]),
        ("上周年轻妈妈们的售后投诉多少条", ["年轻妈妈"], [count("after_sales", week)]),
        (
            "How many packaging complaints from corporate accounts last week?",
            ["corporate accounts"],
            [count("packaging", week)],
        ),
    ]
    with open(OUT, "w", encoding="utf-8") as fh:
        for i, (q, unused, expected) in enumerate(questions, start=1):
            row = {
                "id": f"u{i:02d}",
                "question": q,
                "as_of": AS_OF.isoformat(),
                "expected": expected,
                "not_used": unused,
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(questions)} questions to {OUT}")


if __name__ == "__main__":
    main()
