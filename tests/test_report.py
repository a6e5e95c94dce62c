"""The weekly report on the sample (planted spike in 2026-W47), its files, and a real browser."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.report import build_report, render_html, week_of, write_report
from cli import app
from evals.ask_questions import count, facet_count, iso_week, load_rows
from retrieval.sample_data import SAMPLE_AS_OF, SAMPLE_DIR
from retrieval.taxonomy import load_taxonomy
from tests.conftest import NOW, ZONE

ROWS = load_rows(SAMPLE_DIR / "feedback.csv")
W47, W46 = iso_week(SAMPLE_AS_OF.date(), 1), iso_week(SAMPLE_AS_OF.date(), 2)


@pytest.fixture(scope="module")
def report(sample_store):
    return build_report(sample_store, load_taxonomy(), ZONE, "2026-W47", lang="zh")


def test_week_selection() -> None:
    assert week_of(SAMPLE_AS_OF) == "2026-W47"  # Monday 2026-11-23: the last full week
    assert week_of(SAMPLE_AS_OF.replace(day=29)) == "2026-W47"  # Sunday of W48 is not over yet


def test_spike_first_with_counts_and_product(report) -> None:
    first = report.top_issues[0]
    assert first.spike and first.category == "product_quality"
    assert (first.current, first.previous) == (count(ROWS, W47)["product_quality"], count(ROWS, W46)["product_quality"])
    assert report.emerging[0].category == "product_quality" and report.emerging[0].baseline_mean < 30
    detail = report.details[0]
    top = detail.facets[0]
    expected = facet_count(ROWS, W47, "product", "product_quality")
    assert (top.value, top.count) == ("智能保温杯 Pro", expected["智能保温杯 Pro"])
    assert "商品质量投诉 60 条" in report.executive_summary and "智能保温杯 Pro" in report.executive_summary
    volume = sum(1 for r in ROWS if W47[0] <= r["day"] <= W47[1])
    assert report.headline["volume"].current == volume
    negative = sum(count(ROWS, W47).values())
    assert report.headline["negative_share"].current == round(negative / volume, 4)
    assert report.highlights and all(q["sentiment"] == "positive" for q in report.highlights)
    assert report.suggestions and all(q["category"] == "suggestion" for q in report.suggestions)
    assert report.trend["periods"][-1] == "2026-W47" and len(report.trend["periods"]) == 8


def test_files_are_self_contained_and_idempotent(report, tmp_path: Path) -> None:
    a = write_report(report, tmp_path / "a", ["md", "html"])
    b = write_report(report, tmp_path / "b", ["md", "html"])
    assert [p.name for p in a] == [
        "report-2026-W47-trend.png",
        "report-2026-W47-wow.png",
        "report-2026-W47-csat.png",
        "report-2026-W47.md",
        "report-2026-W47.html",
    ]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b, strict=True))
    md = (tmp_path / "a" / "report-2026-W47.md").read_text(encoding="utf-8")
    assert md.index("新出现的问题") < md.index("主要投诉类别") and "](report-2026-W47-trend.png)" in md
    page = (tmp_path / "a" / "report-2026-W47.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    assert page.count("data:image/png;base64,") == 3 and "@font-face" in page
    # the embedded font subset covers every character on the page (no tofu)
    from fontTools.ttLib import TTFont

    data = re.search(r"data:font/otf;base64,([A-Za-z0-9+/=]+)", page).group(1)
    cmap = TTFont(io.BytesIO(base64.b64decode(data))).getBestCmap()
    text = re.sub(r"<style>.*?</style>|<[^>]+>|data:[^\"')]+", "", page, flags=re.S)
    missing = {c for c in text if ord(c) > 0x7F and ord(c) not in cmap and c not in "⚠–—…"}
    assert not missing, sorted(missing)[:20]


def test_cli_report_json_week_and_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(SAMPLE_DIR / "feedback.csv"), "--json"]).exit_code == 0
    res = runner.invoke(
        app, ["report", "--week", "2026-w46", "--out", str(tmp_path), "--format", "md", "--lang", "en", "--json"]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["week"] == "2026-W46" and data["files"][-1].endswith("report-2026-W46.md")
    assert data["top_issues"][0]["category"] == "price_promotion" and data["top_issues"][0]["spike"]
    assert not (tmp_path / "report-2026-W46.html").exists()
    assert runner.invoke(app, ["report", "--week", "2026-W60"]).exit_code == 1
    assert runner.invoke(app, ["report", "--week", "last"]).exit_code == 2
    assert runner.invoke(app, ["report", "--format", "pdf"]).exit_code == 2
    assert runner.invoke(app, ["report", "--week", "2026-W46", "--as-of", "2026-11-23"]).exit_code == 2


def test_html_renders_in_a_real_browser(report, tmp_path: Path) -> None:
    """Headless Chromium loads the page offline: the CJK font face loads and the three charts decode."""
    from tests.browser import chromium

    browser = chromium()
    probe = render_html(report).replace(
        "</body>",
        """<script>
document.fonts.load('16px "FA CJK"', "商品质量").then(f => {
  document.body.setAttribute("data-cjk", f.length + ":" + document.fonts.check('16px "FA CJK"', "商品质量"));
  document.body.setAttribute("data-imgs", [...document.images].map(i => i.naturalWidth).join(","));
});</script></body>""",
    )
    page = tmp_path / "probe.html"
    page.write_text(probe, encoding="utf-8")
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run([*args, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-cjk="1:true"' in body, body
    widths = [int(w) for w in re.search(r'data-imgs="([^"]*)"', body).group(1).split(",")]
    assert len(widths) == 3 and min(widths) > 300
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*args, f"--screenshot={shot}", "--window-size=1000,2400", page.as_uri()], capture_output=True, timeout=120
    )
    assert shot.stat().st_size > 50_000


def test_the_critical_count_says_how_much_rests_on_the_model(tmp_path: Path) -> None:
    """Issue 19: a headline count of critical cases says how many the classifier guessed."""
    from agent.classify import Classifier
    from retrieval.ingest import ingest_file
    from retrieval.store import Store

    store = Store(tmp_path / "h")
    path = tmp_path / "f.csv"
    path.write_text(
        "id,text,created_at,urgency\n"
        "c1,充电宝充电的时候冒烟着火了,2026-11-18 10:00,\n"
        "c2,孩子被刀片割伤了手,2026-11-19 10:00,critical\n"
        "c3,快递有点慢,2026-11-19 11:00,medium\n",
        encoding="utf-8",
    )
    ingest_file(
        store, path, taxonomy=load_taxonomy(), zone=ZONE, now=NOW, labeler=Classifier(store, load_taxonomy()).labeler
    )
    assert store.records("feedback", ["c1"])["c1"].urgency_source == "rule"  # smoke and fire: a rule's case
    r = build_report(store, load_taxonomy(), ZONE, "2026-W47", charts=False)
    c = r.headline["critical"]
    assert (c.current, c.model_labelled) == (2, 0) and "模型判断的" not in r.executive_summary
    store.set_labels(["c3"], {"urgency": ("critical", "model")})  # as if the model had guessed it
    r = build_report(store, load_taxonomy(), ZONE, "2026-W47", charts=False)
    c = r.headline["critical"]
    assert (c.current, c.model_labelled) == (3, 1)  # c1 by a rule, c2 imported, c3 the model's guess
    assert "其中 1 条的紧急程度是模型判断的" in r.executive_summary
    store.close()


def _csat(week: tuple) -> float:
    """CSAT from the CSV itself: the share of 4-5 stars among the week's rated records."""
    rated = [float(r["rating"]) for r in ROWS if week[0] <= r["day"] <= week[1] and r["rating"]]
    return round(sum(x >= 4 for x in rated) / len(rated), 4)


def test_the_headline_carries_csat_with_its_weekly_change(report) -> None:
    csat = report.headline["csat"]
    assert (csat.current, csat.previous) == (_csat(W47), _csat(W46))
    assert csat.change == pytest.approx(_csat(W47) - _csat(W46), abs=1e-4)
    from agent.report import render_markdown

    assert f"满意度 CSAT（4-5 星占比） | {_csat(W47) * 100:.1f}%" in render_markdown(report)


def test_csat_by_channel_matches_the_csv(report) -> None:
    def csat(week: tuple, channel: str) -> float | None:
        rated = [
            float(r["rating"])
            for r in ROWS
            if week[0] <= r["day"] <= week[1] and r["rating"] and r["channel"] == channel
        ]
        return round(sum(x >= 4 for x in rated) / len(rated), 4) if rated else None

    rated_channels = {r["channel"] for r in ROWS if r["rating"] and W46[0] <= r["day"] <= W47[1]}
    assert {c["channel"] for c in report.csat_by_channel} == rated_channels and rated_channels
    for c in report.csat_by_channel:
        assert (c["csat"], c["previous_csat"]) == (csat(W47, c["channel"]), csat(W46, c["channel"]))
    from agent.report import render_markdown

    assert "各渠道满意度 CSAT" in render_markdown(report)


def test_csat_per_week_over_the_trend_weeks_matches_the_csv(report) -> None:
    from datetime import date

    c = report.csat_trend
    assert c["periods"] == report.trend["periods"] and len(c["periods"]) == 8
    for label, value, rated in zip(c["periods"], c["csat"], c["rated"], strict=True):
        year, week = int(label[:4]), int(label[-2:])
        monday = date.fromisocalendar(year, week, 1)
        days = (monday, date.fromisocalendar(year, week, 7))
        stars = [float(r["rating"]) for r in ROWS if days[0] <= r["day"] <= days[1] and r["rating"]]
        assert rated == len(stars) and value == (round(sum(x >= 4 for x in stars) / len(stars), 4) if stars else None)
    assert any(ch.name.endswith("-csat.png") for ch in report.charts)
