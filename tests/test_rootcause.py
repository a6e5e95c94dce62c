"""Root-cause summaries: the sample's planted trends, and a freshly planted data set."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from agent.llm import FakeChatModel
from agent.rootcause import root_cause
from agent.tools import Analytics, Window
from evals.ask_questions import count, facet_count, iso_week, last_days, load_rows
from retrieval.records import parse_feedback
from retrieval.sample_data import SAMPLE_DIR
from retrieval.store import Store
from retrieval.taxonomy import load_taxonomy
from tests.conftest import ZONE

AS_OF = datetime(2026, 11, 23, 23, 59, 59, tzinfo=ZONE)
TAX = load_taxonomy()
ROWS = load_rows(SAMPLE_DIR / "feedback.csv")


def test_logistics_names_the_carrier_with_counts_and_shares(sample_store) -> None:
    r = root_cause(Analytics(sample_store, AS_OF, ZONE), TAX, category="logistics", window=Window(days=30), lang="en")
    days = last_days(AS_OF.date(), 30)
    carriers = facet_count(ROWS, days, "carrier", "logistics")
    assert r.volume == count(ROWS, days)["logistics"] == sum(carriers.values())
    top = r.facets[0]
    assert (top.facet, top.value, top.count, top.of) == ("carrier", "云达快运", carriers["云达快运"], r.volume)
    assert top.concentrated and top.share == round(carriers["云达快运"] / r.volume, 4) and top.lift > 2
    assert f"{top.count} of {top.of} ({top.share * 100:.1f}%)" in r.summary
    assert not any(f.concentrated for f in r.facets[1:])
    assert r.clusters and all(c.size >= 2 for c in r.clusters) and r.clusters[0].quote_id in r.citations
    assert r.past_actions and r.past_actions[0].count >= r.past_actions[-1].count
    assert any("云达快运" in a for a in r.actions)
    assert r.path == "rules" and r.tool_calls


def test_product_spike_week(sample_store) -> None:
    r = root_cause(Analytics(sample_store, AS_OF, ZONE), TAX, category="product_quality", window=Window(weeks_ago=1))
    w47, w46 = iso_week(AS_OF.date(), 1), iso_week(AS_OF.date(), 2)
    assert (r.volume, r.previous_volume) == (count(ROWS, w47)["product_quality"], count(ROWS, w46)["product_quality"])
    top = r.facets[0]
    assert (top.facet, top.value, top.count) == (
        "product",
        "智能保温杯 Pro",
        facet_count(ROWS, w47, "product", "product_quality")["智能保温杯 Pro"],
    )
    assert "漏水" in r.clusters[0].label  # the leaking lid is the biggest group
    assert any("上升" in c or "增加" in c for c in r.causes) and r.actions[0].startswith("把它列为本周优先事项")


def _planted(store: Store) -> None:
    """Two weeks of complaints: a carrier behind 80% of logistics, a product spiking in week 2."""
    rng = random.Random(7)
    start = datetime(2026, 3, 2, 9, tzinfo=ZONE)  # Monday of 2026-W10
    rows = []
    for i in range(300):
        day = start + timedelta(days=rng.randrange(14), minutes=i)
        week2 = day >= start + timedelta(days=7)
        if rng.random() < 0.4:
            carrier = "飞鸟快递" if rng.random() < 0.8 else rng.choice(["甲快递", "乙快递", "丙快递"])
            rows.append(
                {
                    "text": f"包裹{i}号一直没到，{carrier}太慢了",
                    "category": "logistics",
                    "carrier": carrier,
                    "product": rng.choice(["A", "B", "C"]),
                }
            )
        elif week2 and rng.random() < 0.5:
            rows.append(
                {
                    "text": f"新到的蓝牙音箱{i}没声音",
                    "category": "product_quality",
                    "product": "蓝牙音箱",
                    "carrier": rng.choice(["甲快递", "乙快递", "飞鸟快递"]),
                }
            )
        else:
            rows.append(
                {
                    "text": f"东西{i}质量一般",
                    "category": "product_quality",
                    "product": rng.choice(["A", "B", "C", "蓝牙音箱"]),
                    "carrier": rng.choice(["甲快递", "乙快递", "丙快递"]),
                }
            )
        rows[-1].update(id=f"P{i:04d}", created_at=day.isoformat(), sentiment="negative", urgency="medium")
    now = datetime.now(UTC)
    store.upsert("feedback", [parse_feedback(r, zone=ZONE, imported_at=now, taxonomy=TAX) for r in rows], now)


def test_planted_carrier_and_product_are_named(store: Store) -> None:
    _planted(store)
    as_of = datetime(2026, 3, 16, 0, 0, tzinfo=ZONE)
    a = Analytics(store, as_of, ZONE)
    with store.engine.connect() as conn:
        from sqlalchemy import text

        def q(sql: str) -> int:
            return int(conn.execute(text(sql)).scalar_one())

        n_log = q("SELECT count(*) FROM feedback WHERE category='logistics'")
        n_bird = q("SELECT count(*) FROM feedback WHERE category='logistics' AND carrier='飞鸟快递'")
        n_w2 = q(
            f"SELECT count(*) FROM feedback WHERE category='product_quality' AND created_ts >= {(as_of - timedelta(days=7)).timestamp()}"
        )
        n_w2_speaker = q(
            f"SELECT count(*) FROM feedback WHERE category='product_quality' AND product='蓝牙音箱' "
            f"AND created_ts >= {(as_of - timedelta(days=7)).timestamp()}"
        )
    logistics = root_cause(a, TAX, category="logistics", window=Window(days=14), lang="en")
    assert (logistics.facets[0].value, logistics.facets[0].count, logistics.facets[0].of) == ("飞鸟快递", n_bird, n_log)
    assert logistics.facets[0].concentrated
    quality = root_cause(a, TAX, category="product_quality", window=Window(weeks_ago=1), lang="en")
    assert quality.volume == n_w2 and quality.change > 0
    assert (quality.facets[0].facet, quality.facets[0].value, quality.facets[0].count) == (
        "product",
        "蓝牙音箱",
        n_w2_speaker,
    )


_GOOD = '{"summary": "云达快运占物流投诉的 75.2%（129 条中 97 条），建议复盘时效。", "cited_ids": ["FB261122-01402"]}'
_INVENTED = '{"summary": "云达快运占物流投诉的 90%，共 300 条。", "cited_ids": ["FB261122-01402"]}'


def test_llm_may_only_reword_with_the_computed_numbers(sample_store) -> None:
    """Scripted model (logic test): a summary with an invented figure is re-asked once with the
    problem named, and discarded when the second answer is wrong too."""
    a = Analytics(sample_store, AS_OF, ZONE)
    good = FakeChatModel([_GOOD])
    r = root_cause(a, TAX, category="logistics", window=Window(days=30), model=good)
    assert r.path == "llm" and r.prompt_version == "rootcause@v1" and r.citations[0] == "FB261122-01402"
    bad = FakeChatModel([_INVENTED, _INVENTED])
    r = root_cause(a, TAX, category="logistics", window=Window(days=30), model=bad)
    assert r.path == "rules" and "300" in (r.fallback_reason or "") and "75.2%" in r.summary
    bad.assert_consumed()
    assert "numbers not in the facts: 90, 300" in bad.requests[1].messages[-1].content
    fixed = FakeChatModel([_INVENTED, _GOOD])  # the re-ask corrects the figures: its answer is used
    r = root_cause(a, TAX, category="logistics", window=Window(days=30), model=fixed)
    assert r.path == "llm" and "75.2%" in r.summary and len(fixed.requests) == 2
