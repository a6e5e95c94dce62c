"""Analytics tools against counts made independently from the sample CSV (csv module only)."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from pydantic import ValidationError

from agent.tools import (
    Analytics,
    CompareInput,
    CountByInput,
    Filters,
    GetRecordsInput,
    SearchInput,
    SeriesInput,
    SpikesInput,
    TopInput,
    Window,
    evidence_ids,
)
from evals.ask_questions import count, facet_count, iso_week, last_days, load_rows
from retrieval.sample_data import SAMPLE_DIR
from tests.conftest import ZONE

AS_OF = datetime(2026, 11, 23, 23, 59, 59, tzinfo=ZONE)
TODAY = AS_OF.date()
NEG = Filters(sentiment="negative")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return load_rows(SAMPLE_DIR / "feedback.csv")


@pytest.fixture
def tools(sample_store) -> Analytics:
    return Analytics(sample_store, AS_OF, ZONE)


def test_windows_resolve_to_iso_weeks_months_and_whole_days(tools: Analytics) -> None:
    last = tools.resolve(Window(weeks_ago=1))
    assert (last.label, last.first_day, last.last_day) == ("2026-W47", date(2026, 11, 16), date(2026, 11, 22))
    assert tools.resolve(Window(week="2026-W46")).previous().label == "2026-W45"
    month = tools.resolve(Window(months_ago=1))
    assert (month.label, month.first_day, month.last_day) == ("2026-10", date(2026, 10, 1), date(2026, 10, 31))
    assert month.previous().label == "2026-09"
    seven = tools.resolve(Window(days=7))
    assert (seven.first_day, seven.last_day) == (date(2026, 11, 17), date(2026, 11, 23))
    before = seven.previous()
    assert (before.first_day, before.last_day) == (date(2026, 11, 10), date(2026, 11, 16))
    span = tools.resolve(Window(since=date(2026, 11, 1), until=date(2026, 11, 15)))
    assert (span.first_day, span.last_day) == (date(2026, 11, 1), date(2026, 11, 15))


def test_window_takes_one_form_and_aware_as_of(sample_store) -> None:
    with pytest.raises(ValidationError):
        Window(days=7, weeks_ago=1)
    with pytest.raises(ValidationError):
        Window(since=date(2026, 11, 5), until=date(2026, 11, 1))
    with pytest.raises(ValueError):
        Analytics(sample_store, datetime(2026, 11, 23), ZONE)


def test_count_by_matches_independent_counts(tools: Analytics, rows) -> None:
    out = tools.count_by(CountByInput(field="category", window=Window(weeks_ago=1), filters=NEG))
    expected = count(rows, iso_week(TODAY, 1))
    assert {g.value: g.count for g in out.groups} == dict(expected)
    assert out.total == sum(expected.values())
    assert out.groups[0].value == "product_quality" and out.groups[0].count == 60
    assert abs(sum(g.share for g in out.groups) - 1) < 1e-3
    ids = out.groups[0].example_ids
    recs = tools.store.records("feedback", ids)
    assert ids and all(recs[i].category == "product_quality" and recs[i].sentiment == "negative" for i in ids)


def test_top_facets_names_the_planted_carrier(tools: Analytics, rows) -> None:
    out = tools.top(
        TopInput(
            facet="carrier", window=Window(days=30), filters=Filters(sentiment="negative", category="logistics"), n=2
        )
    )
    expected = facet_count(rows, last_days(TODAY, 30), "carrier", "logistics")
    assert (out.groups[0].value, out.groups[0].count) == expected.most_common(1)[0] == ("云达快运", out.groups[0].count)
    assert out.with_value == sum(expected.values())
    assert out.other_groups == len(expected) - 2
    assert out.groups[0].share == round(out.groups[0].count / out.with_value, 4)


def test_compare_periods_week_over_week(tools: Analytics, rows) -> None:
    out = tools.compare_periods(CompareInput(window=Window(weeks_ago=1), filters=NEG))
    now, prev = count(rows, iso_week(TODAY, 1)), count(rows, iso_week(TODAY, 2))
    assert out.previous_period["label"] == "2026-W46"
    assert (out.total_current, out.total_previous) == (sum(now.values()), sum(prev.values()))
    first = out.rows[0]  # ordered by rise
    assert first.value == "product_quality" and (first.current, first.previous) == (
        now["product_quality"],
        prev["product_quality"],
    )
    assert first.change == first.current - first.previous and first.change_pct == round(
        first.change / first.previous * 100, 1
    )
    assert [r.change for r in out.rows] == sorted((r.change for r in out.rows), reverse=True)


def test_spikes_find_the_planted_week(tools: Analytics) -> None:
    out = tools.spikes(SpikesInput(field="category", filters=NEG))
    spikes = [s for s in out.spikes if s.is_spike]
    assert [s.value for s in spikes] == ["product_quality"]
    assert spikes[0].current == 60 and len(spikes[0].baseline) == 4 and max(spikes[0].baseline) < 30
    products = tools.spikes(
        SpikesInput(field="product", filters=Filters(sentiment="negative", category="product_quality"))
    )
    assert products.spikes[0].value == "智能保温杯 Pro" and products.spikes[0].is_spike


def test_series_by_week_adds_up(tools: Analytics, rows) -> None:
    out = tools.series(SeriesInput(interval="week", periods=8, skip_current=1, field="category", filters=NEG))
    assert out.periods[-1] == "2026-W47" and len(out.periods) == 8
    assert out.series["product_quality"][-1] == 60
    assert out.totals[-1] == sum(count(rows, iso_week(TODAY, 1)).values())
    totals = tools.series(SeriesInput(interval="day", periods=7, filters=NEG))
    assert sum(totals.totals) == sum(count(rows, last_days(TODAY, 7)).values())


def test_search_quotes_and_records(tools: Analytics) -> None:
    out = tools.search_quotes(SearchInput(query="保温杯漏水", window=Window(weeks_ago=1), filters=NEG, k=3))
    assert len(out.quotes) == 3 and all("漏" in q.text for q in out.quotes)
    assert all("2026-11-16" <= q.created_at[:10] <= "2026-11-22" for q in out.quotes)
    newest = tools.search_quotes(SearchInput(filters=Filters(category="packaging"), k=2))
    assert [q.category for q in newest.quotes] == ["packaging", "packaging"]
    assert newest.quotes[0].created_at >= newest.quotes[1].created_at
    got = tools.get_records(GetRecordsInput(ids=[out.quotes[0].id, "nope"]))
    assert got.missing == ["nope"] and got.records[0]["id"] == out.quotes[0].id
    assert evidence_ids([out.model_dump(), {"example_ids": ["x"]}]) == [q.id for q in out.quotes] + ["x"]


def test_tools_offer_json_schemas(tools: Analytics) -> None:
    specs = {t.name: t.spec() for t in tools.tools()}
    assert set(specs) == {
        "count_by",
        "top_facets",
        "compare_periods",
        "detect_spikes",
        "time_series",
        "search_quotes",
        "get_records",
    }
    assert "window" in specs["count_by"].parameters["properties"]


def test_label_mix_counts_each_field_and_any_model_label(tmp_path, rows) -> None:
    """One grouped pass gives each field's sources, the slice's total, and the records with a
    model label in any field (a record guessed in two fields counts once)."""
    from agent.tools import LabelMixInput
    from tests.conftest import sample_home

    store = sample_home(tmp_path / "h")
    w47 = iso_week(TODAY, 1)
    ids = [r["id"] for r in rows if w47[0] <= r["day"] <= w47[1] and r["sentiment"] == "negative"]
    store.set_labels(ids[:3], {"category": ("logistics", "model")})
    store.set_labels(ids[2:6], {"sentiment": ("negative", "model")})
    mix = Analytics(store, AS_OF, ZONE).label_mix(
        LabelMixInput(window=Window(weeks_ago=1), filters=NEG, fields=["category", "sentiment"])
    )
    assert mix.total == len(ids) and mix.model_labelled == 6
    assert mix.by_source["category"] == {"import": len(ids) - 3, "model": 3}
    assert mix.by_source["sentiment"] == {"import": len(ids) - 4, "model": 4}
    store.close()
