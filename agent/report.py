"""The weekly insight report: computed by the analytics tools, written as Markdown and offline HTML.

The report covers one ISO week (by default the last full week before as-of). All figures come from
:mod:`agent.tools` and :mod:`agent.rootcause`, computed with as-of set to the end of that week, so
data that arrives later for other weeks cannot change it, and the same data always gives the same
files (no generation timestamp inside; charts and the embedded font subset are deterministic).

Charts are PNGs drawn with matplotlib in Noto Sans CJK SC (shipped by the ``mplfonts`` package):
the category trend over 8 weeks and the week-over-week bars. The Markdown links them; the HTML
embeds them and a subset of the same font as data URIs, so it opens offline with no tofu boxes.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, tzinfo
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.grounded import language_problems, number_problems, structured
from agent.llm import ChatModel, Message
from agent.prompts import fence, load_prompt
from agent.rootcause import RootCause, root_cause
from agent.tools import (
    Analytics,
    CompareInput,
    Filters,
    RatingInput,
    SearchInput,
    SeriesInput,
    SpikesInput,
    Window,
)
from agent.wording import Words, phrases, say
from retrieval.records import check_reference_year
from retrieval.store import Store
from retrieval.taxonomy import Taxonomy

Lang = Literal["zh", "en"]
TOP_ISSUES = 5
DETAILED_ISSUES = 3
TREND_WEEKS = 8
TREND_LINES = 6


class Figure(BaseModel):
    """A headline figure and its change on the previous week."""

    current: float
    previous: float
    change: float
    change_pct: float | None = None
    model_labelled: int | None = Field(
        None,
        description="Of the current figure, records whose label the classifier "
        "guessed (not imported or set by a person).",
    )


class Issue(BaseModel):
    """A complaint category in the report week."""

    category: str
    name: str
    current: int
    previous: int
    change: int
    change_pct: float | None
    spike: bool
    baseline_mean: float | None = None
    model_labelled: int | None = Field(
        None, description="Of the current count, records whose category or sentiment the classifier guessed."
    )


class Chart(BaseModel):
    """A chart: file name, title, and the PNG (base64) for embedding."""

    name: str
    title: str
    png_base64: str = Field(repr=False)


class WeeklyReport(BaseModel):
    """The report's structured content (what `report --json` prints)."""

    week: str
    period: dict[str, str]
    previous_week: str
    lang: Lang
    headline: dict[str, Figure]
    emerging: list[Issue]
    top_issues: list[Issue]
    details: list[RootCause]
    highlights: list[dict[str, Any]]
    suggestions: list[dict[str, Any]]
    trend: dict[str, Any]
    csat_trend: dict[str, Any] = Field(
        default_factory=dict,
        description="CSAT per week over the trend's weeks (periods, csat, rated); empty without ratings.",
    )
    csat_by_channel: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Per channel with ratings: rated records and CSAT this week and the week before.",
    )
    csat_by_product: list[dict[str, Any]] = Field(
        default_factory=list, description="The same per product (the most rated first, at most 10)."
    )
    csat_by_segment: list[dict[str, Any]] = Field(default_factory=list, description="The same per customer tier.")
    executive_summary: str
    summary_path: Literal["rules", "llm"] = "rules"
    fallback_reason: str | None = None
    citations: list[str]
    charts: list[Chart] = Field(default_factory=list)


CSAT_FACETS = ("channel", "product", "customer_tier")
CSAT_ROWS = 10


def _csat_by(a: Analytics, facet: str, wk: Window) -> list[dict[str, Any]]:
    """CSAT this week and the week before per value of ``facet`` that has ratings, most rated first
    (two grouped queries, whatever the number of values)."""
    this, before = a.csat_by(facet, wk), a.csat_by(facet, Window(weeks_ago=2))
    rows: list[dict[str, Any]] = [
        {
            facet: value,
            "rated": this.get(value, (0, None))[0],
            "csat": this.get(value, (0, None))[1],
            "previous_csat": before.get(value, (0, None))[1],
        }
        for value in sorted(set(this) | set(before))
    ]
    rows.sort(key=lambda row: -int(row["rated"]))
    return rows[:CSAT_ROWS]


def week_of(as_of: datetime) -> str:
    """The last full ISO week before ``as_of``."""
    monday = as_of.date() - timedelta(days=as_of.weekday() + 7)
    y, w, _ = monday.isocalendar()
    return f"{y}-W{w:02d}"


def week_end(week: str, zone: tzinfo) -> datetime:
    """The first instant after an ISO week (its Sunday's end), in ``zone``."""
    m = re.fullmatch(r"(\d{4})-W(\d{2})", week)
    if not m:
        raise ValueError(f"{week!r} is not an ISO week like 2026-W46")
    try:
        check_reference_year(int(m[1]), repr(week))
        monday = date.fromisocalendar(int(m[1]), int(m[2]), 1)
    except ValueError as exc:
        raise ValueError(f"{week!r} is not an ISO week ({exc})") from None
    return datetime.combine(monday + timedelta(days=7), time.min, tzinfo=zone)


def build_report(
    store: Store,
    taxonomy: Taxonomy,
    zone: tzinfo,
    week: str,
    *,
    lang: Lang = "zh",
    model: ChatModel | None = None,
    charts: bool = True,
    progress: Callable[[str], None] | None = None,
) -> WeeklyReport:
    """Compute the report for ``week``."""
    step = progress or (lambda _s: None)
    a = Analytics(store, week_end(week, zone), zone)
    names = {
        lab.id: ((lab.name_zh if lang == "zh" else lab.name_en) or lab.id) for lab in taxonomy.labels_of("category")
    }
    wk = Window(weeks_ago=1)
    step("headline figures")
    every = a.compare_periods(CompareInput(window=wk, field="sentiment", filters=Filters()))
    critical = a.compare_periods(CompareInput(window=wk, field=None, filters=Filters(urgency="critical")))
    by_sent = {r.value: r for r in every.rows}
    neg = by_sent.get("negative")
    neg_now, neg_prev = (neg.current, neg.previous) if neg else (0, 0)
    share_now = neg_now / every.total_current if every.total_current else 0.0
    share_prev = neg_prev / every.total_previous if every.total_previous else 0.0
    headline = {
        "volume": Figure(
            current=every.total_current,
            previous=every.total_previous,
            change=every.total_change,
            change_pct=every.total_change_pct,
        ),
        "negative_share": Figure(
            current=round(share_now, 4),
            previous=round(share_prev, 4),
            change=round(share_now - share_prev, 4),
            model_labelled=a.label_sources("sentiment", "negative", wk).get("model", 0),
        ),
        "critical": Figure(
            current=critical.total_current,
            previous=critical.total_previous,
            change=critical.total_change,
            change_pct=critical.total_change_pct,
            model_labelled=a.label_sources("urgency", "critical", wk).get("model", 0),
        ),
    }
    now_rated = a.ratings(RatingInput(window=wk))
    before_rated = a.ratings(RatingInput(window=Window(weeks_ago=2)))
    csat_by: dict[str, list[dict[str, Any]]] = {}
    if now_rated.rated or before_rated.rated:  # CSAT: the share of 4-5 stars among rated records
        csat_now, csat_prev = now_rated.csat or 0.0, before_rated.csat or 0.0
        headline["csat"] = Figure(
            current=round(csat_now, 4), previous=round(csat_prev, 4), change=round(csat_now - csat_prev, 4)
        )
        csat_by = {facet: _csat_by(a, facet, wk) for facet in CSAT_FACETS}
    if now_rated.nps_answers or before_rated.nps_answers:  # NPS: % promoters (9-10) - % detractors (0-6)
        nps_now, nps_prev = now_rated.nps or 0.0, before_rated.nps or 0.0
        headline["nps"] = Figure(current=nps_now, previous=nps_prev, change=round(nps_now - nps_prev, 1))
    step("complaint categories and spikes")
    complaints = a.compare_periods(
        CompareInput(window=wk, field="category", filters=Filters(sentiment="negative"), order="current")
    )
    spikes = {s.value: s for s in a.spikes(SpikesInput(field="category", filters=Filters(sentiment="negative"))).spikes}
    issues = [
        Issue(
            category=r.value,
            name=names.get(r.value, r.value),
            current=r.current,
            previous=r.previous,
            change=r.change,
            change_pct=r.change_pct,
            spike=r.value in spikes,
            baseline_mean=spikes[r.value].baseline_mean if r.value in spikes else None,
            model_labelled=a.model_labelled(
                ("category", "sentiment"), wk, Filters(sentiment="negative", category=r.value)
            ),
        )
        for r in complaints.rows
        if r.current > 0
    ]
    emerging = [i for i in issues if i.spike]
    top = (emerging + [i for i in issues if not i.spike])[:TOP_ISSUES]
    details: list[RootCause] = []
    for issue in top[:DETAILED_ISSUES]:
        step(f"root cause: {issue.category}")
        details.append(root_cause(a, taxonomy, category=issue.category, window=wk, lang=lang))
    step("highlights and suggestions")
    praise = a.search_quotes(SearchInput(window=wk, filters=Filters(sentiment="positive"), k=3))
    ideas = (
        a.search_quotes(SearchInput(window=wk, filters=Filters(category="suggestion"), k=3))
        if "suggestion" in names
        else None
    )
    step("trend")
    trend = a.series(
        SeriesInput(
            interval="week",
            periods=TREND_WEEKS,
            skip_current=1,
            field="category",
            filters=Filters(sentiment="negative"),
            top=TREND_LINES,
        )
    )
    scored = "csat" in headline or "nps" in headline
    weekly = [a.ratings(RatingInput(window=Window(week=p))) for p in trend.periods] if scored else []
    csat_trend: dict[str, Any] = {}
    if weekly:
        csat_trend = {"periods": trend.periods, "csat": [w.csat for w in weekly], "rated": [w.rated for w in weekly]}
        if "nps" in headline:
            csat_trend |= {"nps": [w.nps for w in weekly], "nps_answers": [w.nps_answers for w in weekly]}
    report = WeeklyReport(
        week=week,
        period=complaints.current_period,
        previous_week=complaints.previous_period["label"],
        lang=lang,
        headline=headline,
        csat_by_channel=csat_by.get("channel", []),
        csat_by_product=csat_by.get("product", []),
        csat_by_segment=csat_by.get("customer_tier", []),
        csat_trend=csat_trend,
        emerging=emerging,
        top_issues=top,
        details=details,
        highlights=[q.model_dump() for q in praise.quotes],
        suggestions=[q.model_dump() for q in ideas.quotes] if ideas else [],
        trend=trend.model_dump(),
        executive_summary="",
        citations=[],
    )
    report.executive_summary = _summary(report, names)
    gap = a.emptiness(a.resolve(wk), lang)
    if gap is not None:
        report.executive_summary = gap + say("separators.before_answer", lang) + report.executive_summary
    report.citations = list(
        dict.fromkeys(
            [i for d in details for i in d.citations] + [q["id"] for q in report.highlights + report.suggestions]
        )
    )
    if model is not None:
        step("executive summary (LLM)")
        _llm_summary(report, model)
    if charts:
        step("charts")
        report.charts = draw_charts(report, names)
    return report


# --------------------------------------------------------------------------- wording


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.1f}%" if signed else f"{x:.1f}%"


def _summary(r: WeeklyReport, names: dict[str, str]) -> str:
    w = Words(r.lang)
    v, n, c = r.headline["volume"], r.headline["negative_share"], r.headline["critical"]
    direction = w.say("report.summary.direction.up" if v.change >= 0 else "report.summary.direction.down")
    parts = [
        w.say(
            "report.summary.head",
            week=r.week,
            first=r.period["from"],
            last=r.period["to"],
            volume=f"{v.current:.0f}",
            change=w.say("report.summary.change", direction=direction, amount=f"{abs(v.change):.0f}"),
            negative=f"{n.current * 100:.1f}%",
            negative_before=f"{n.previous * 100:.1f}%",
            critical=f"{c.current:.0f}",
            critical_before=f"{c.previous:.0f}",
            model=w.say("report.summary.model_labelled", n=c.model_labelled) if c.model_labelled else "",
        )
    ]
    scores = []
    if "csat" in r.headline:
        cs = r.headline["csat"]
        scores.append(w.say("report.summary.csat", now=f"{cs.current * 100:.1f}%", before=f"{cs.previous * 100:.1f}%"))
    if "nps" in r.headline:
        nps, answers = r.headline["nps"], (r.csat_trend.get("nps_answers") or [0])[-1]
        scores.append(w.say("report.summary.nps", now=f"{nps.current:+.1f}", before=f"{nps.previous:+.1f}", n=answers))
    if scores:
        parts.append(w.say("report.summary.scores", items=w.join(scores)))
    for issue in r.emerging[:2]:
        detail = next((d for d in r.details if d.slice.get("category") == issue.category), None)
        conc = next((f for f in (detail.facets if detail else []) if f.concentrated), None)
        text = w.say("report.summary.emerging", name=issue.name, current=issue.current, mean=f"{issue.baseline_mean:g}")
        if conc:
            text += w.say("report.summary.emerging_on", count=conc.count, share=w.share(conc.share), value=conc.value)
        else:
            text += w.say("separators.end")
        parts.append(text)
    others = [i for i in r.top_issues if not i.spike][:2]
    if others:
        items = (w.say("report.summary.other", name=i.name, current=i.current, previous=i.previous) for i in others)
        parts.append(w.say("report.summary.others", items=w.join(items)))
    for d in r.details:
        for f in d.facets:
            if f.concentrated and f.facet == "carrier":
                parts.append(
                    w.say(
                        "report.summary.carrier",
                        category=names.get(d.slice.get("category", ""), ""),
                        share=w.share(f.share),
                        value=f.value,
                        count=f.count,
                        of=f.of,
                    )
                )
    return " ".join(parts)


class _LLMSummary(BaseModel):
    summary: str = Field(description="3-5 sentences for a manager, from the facts only.")
    cited_ids: list[str] = Field(default_factory=list)


def _llm_summary(r: WeeklyReport, model: ChatModel) -> None:
    facts = r.model_dump(mode="json", include={"week", "period", "headline", "emerging", "top_issues"})
    facts["details"] = [
        {"category": d.slice.get("category"), "causes": d.causes, "actions": d.actions[:2]} for d in r.details
    ]
    prompt = load_prompt("report_summary")
    text = prompt.render(
        language=say("prompt.language", r.lang),
        facts=fence(_json(facts), "facts"),
        fallback=fence(r.executive_summary, "draft"),
    )

    def check(value: _LLMSummary) -> list[str]:
        figures = number_problems(value.summary, [facts, r.executive_summary], require=True)
        return language_problems(value.summary, r.lang) + figures

    got = structured(model, [Message(role="user", content=text)], _LLMSummary, check, prompt_version=prompt.ref)
    if got.value is None:
        r.fallback_reason = got.fallback_reason
        return
    r.executive_summary, r.summary_path = got.value.summary.strip(), "llm"


def _json(data: Any) -> str:
    import json

    return json.dumps(data, ensure_ascii=False)


# --------------------------------------------------------------------------- charts


@cache
def cjk_font_path() -> Path:
    """Noto Sans CJK SC from the mplfonts package (no download)."""
    import mplfonts

    path = Path(mplfonts.__file__).parent / "fonts" / "NotoSansCJKsc-Regular.otf"
    if not path.exists():
        raise FileNotFoundError(f"CJK font missing: {path}")
    return path


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager
    from matplotlib import pyplot as plt

    font_manager.fontManager.addfont(str(cjk_font_path()))
    plt.rcParams.update(
        {"font.family": "Noto Sans CJK SC", "axes.unicode_minus": False, "svg.hashsalt": "fa", "figure.dpi": 100}
    )
    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode()


def draw_charts(r: WeeklyReport, names: dict[str, str]) -> list[Chart]:
    """The 8-week category trend, the week-over-week bars and, with ratings, CSAT per week."""
    plt = _plt()
    charts: list[Chart] = []
    t = r.trend
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for cat, counts in t["series"].items():
        ax.plot(
            t["periods"],
            counts,
            marker="o",
            linewidth=2 if any(i.category == cat and i.spike for i in r.emerging) else 1.2,
            label=names.get(cat, cat),
        )
    title = say("report.charts.trend", r.lang)
    ax.set_title(title)
    ax.set_ylabel(say("report.charts.complaints", r.lang))
    ax.grid(alpha=0.3)
    ax.tick_params(axis="x", labelrotation=30)
    if t["series"]:  # a week with no complaints has no lines to name
        ax.legend(fontsize=8, ncols=2, frameon=False)
    charts.append(Chart(name=f"report-{r.week}-trend.png", title=title, png_base64=_png(fig)))
    plt.close(fig)

    issues = r.top_issues[:8]
    fig, ax = plt.subplots(figsize=(8, 3.4))
    xs = range(len(issues))
    ax.bar([x - 0.2 for x in xs], [i.previous for i in issues], width=0.4, label=r.previous_week, color="#9aa7b8")
    bars = ax.bar(
        [x + 0.2 for x in xs],
        [i.current for i in issues],
        width=0.4,
        label=r.week,
        color=["#d9534f" if i.spike else "#337ab7" for i in issues],
    )
    ax.bar_label(bars, fontsize=8)
    ax.set_xticks(list(xs), [i.name for i in issues], fontsize=9)
    title = say("report.charts.week_over_week", r.lang)
    ax.set_title(title)
    from matplotlib.patches import Patch

    handles = [Patch(color="#9aa7b8", label=r.previous_week), Patch(color="#337ab7", label=r.week)]
    if any(i.spike for i in issues):
        handles.append(Patch(color="#d9534f", label=f"{r.week} ({say('report.charts.spike', r.lang)})"))
    ax.legend(handles=handles, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    charts.append(Chart(name=f"report-{r.week}-wow.png", title=title, png_base64=_png(fig)))
    plt.close(fig)
    if r.csat_trend:
        c = r.csat_trend
        fig, ax = plt.subplots(figsize=(8, 3.0))
        points = [(p, v * 100) for p, v in zip(c["periods"], c["csat"], strict=True) if v is not None]
        ax.plot([p for p, _ in points], [v for _, v in points], marker="o", color="#5cb85c")
        for p, v in points:
            ax.annotate(f"{v:.0f}%", (p, v), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=8)
        title = say("report.charts.csat", r.lang)
        ax.set_title(title)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", labelrotation=30)
        charts.append(Chart(name=f"report-{r.week}-csat.png", title=title, png_base64=_png(fig)))
        plt.close(fig)
    if r.csat_trend.get("nps"):
        c = r.csat_trend
        fig, ax = plt.subplots(figsize=(8, 3.0))
        scores = [(p, v) for p, v in zip(c["periods"], c["nps"], strict=True) if v is not None]
        ax.plot([p for p, _ in scores], [v for _, v in scores], marker="o", color="#8e44ad")
        for p, v in scores:
            ax.annotate(f"{v:+.0f}", (p, v), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=8)
        title = say("report.charts.nps", r.lang)
        ax.set_title(title)
        ax.set_ylim(-100, 100)
        ax.axhline(0, color="#999999", linewidth=0.8)
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", labelrotation=30)
        charts.append(Chart(name=f"report-{r.week}-nps.png", title=title, png_base64=_png(fig)))
        plt.close(fig)
    return charts


# --------------------------------------------------------------------------- rendering


def _text(lang: Lang) -> dict[str, str]:
    """The report's headings and labels in ``lang``."""
    text: dict[str, str] = phrases()["report.text"][lang]
    return text


def _fig(name: str, f: Figure) -> tuple[str, str, str]:
    if name in ("negative_share", "csat"):
        return f"{f.current * 100:.1f}%", f"{f.previous * 100:.1f}%", f"{f.change * 100:+.1f} pp"
    if name == "nps":
        return f"{f.current:+.1f}", f"{f.previous:+.1f}", f"{f.change:+.1f}"
    change = f"{f.change:+.0f}" + (f" ({_pct(f.change_pct, signed=True)})" if f.change_pct is not None else "")
    return f"{f.current:.0f}", f"{f.previous:.0f}", change


def _sections(r: WeeklyReport) -> list[tuple[str, list[str], list[list[str]] | None]]:
    """(heading, paragraphs/bullets, table) triples shared by the Markdown and HTML renderers."""
    t = _text(r.lang)
    out: list[tuple[str, list[str], list[list[str]] | None]] = []
    out.append((t["summary"], [r.executive_summary], None))
    rows = [[t["metric"], t["this"], t["prev"], t["change"], t["model_labels"]]]
    rows += [[t[k], *_fig(k, f), _guessed(f.model_labelled)] for k, f in r.headline.items()]
    out.append((t["headline"], [t["model_labels_note"]], rows))
    if r.emerging:
        out.append(
            (
                t["emerging"],
                [
                    f"**{i.name}** ({i.category}): {i.current} — {t['baseline']} {i.baseline_mean:g}, "
                    f"{t['prev']} {i.previous}"
                    for i in r.emerging
                ],
                None,
            )
        )
    rows = [[t["category"], t["this"], t["prev"], t["change"], t["model_labels"]]]
    rows += [
        [
            f"{i.name} ({i.category})" + (f" ⚠ {t['spike']}" if i.spike else ""),
            str(i.current),
            str(i.previous),
            f"{i.change:+d}" + (f" ({_pct(i.change_pct, signed=True)})" if i.change_pct is not None else ""),
            _guessed(i.model_labelled),
        ]
        for i in r.top_issues
    ]
    out.append((t["top"], [], rows))
    for facet, heading, table in (
        ("channel", "csat_by_channel", r.csat_by_channel),
        ("product", "csat_by_product", r.csat_by_product),
        ("customer_tier", "csat_by_segment", r.csat_by_segment),
    ):
        if not table:
            continue
        rows = [[t[facet], t["rated"], t["this"], t["prev"], t["change"]]]
        for c in table:
            now, before = c["csat"], c["previous_csat"]
            change = f"{(now - before) * 100:+.1f} pp" if now is not None and before is not None else "-"
            rows.append([c[facet], str(c["rated"]), _pct(_hundred(now)), _pct(_hundred(before)), change])
        out.append((t[heading], [], rows))
    for d in r.details:
        cat = d.slice.get("category", "")
        issue = next((i for i in r.top_issues if i.category == cat), None)
        head = f"{t['details']}: {issue.name if issue else cat} ({cat}) — {d.volume} ({d.change:+d})"
        bullets = [f"{t['causes']}: {c}" for c in d.causes] + [f"{t['actions']}: {a}" for a in d.actions]
        bullets += [f"{t['quotes']}: [{q['id']}] {_clip(q['text'])}" for q in d.quotes[:3]]
        out.append((head, bullets, None))
    out.append((t["highlights"], [f"[{q['id']}] {_clip(q['text'])}" for q in r.highlights] or [t["none"]], None))
    out.append((t["suggestions"], [f"[{q['id']}] {_clip(q['text'])}" for q in r.suggestions] or [t["none"]], None))
    return out


def _guessed(n: int | None) -> str:
    """The model-labelled count of a figure, or a dash for a figure no label decides."""
    return "-" if n is None else str(n)


def _hundred(x: float | None) -> float | None:
    return None if x is None else x * 100


def _clip(text: str, n: int = 140) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def render_markdown(r: WeeklyReport) -> str:
    """The report as Markdown; charts are linked as PNG files beside it."""
    t = _text(r.lang)
    lines = [f"# {t['title']} {r.week} ({r.period['from']} – {r.period['to']})", ""]
    for heading, paras, table in _sections(r):
        lines += [f"## {heading}", ""]
        if table:
            lines += ["| " + " | ".join(_md_cell(c) for c in table[0]) + " |", "|" + " --- |" * len(table[0])]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table[1:]]
            lines.append("")
        bullet = len(paras) > 1 or heading not in (t["summary"],)
        lines += [(f"- {_md_text(p)}" if bullet else _md_text(p)) for p in paras]
        lines.append("")
    if r.charts:
        lines += [f"## {t['charts']}", ""] + [f"![{_md_text(c.title)}]({c.name})" for c in r.charts] + [""]
    lines += [f"_{t['footer']}_", ""]
    return "\n".join(lines)


# Feedback text reaches the report (quotes, product names). In Markdown it must stay text: raw
# HTML (<script>, onerror=) becomes entities and brackets are escaped, so no link or image
# (javascript: URLs included) can form. Our own **bold** markers are kept.
_MD_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "[": "\\[", "]": "\\]", "\\": "\\\\", "`": "\\`"})


def _md_text(s: str) -> str:
    return "**".join(part.translate(_MD_ESCAPES) for part in s.split("**"))


def _md_cell(s: str) -> str:
    return _md_text(s).replace("|", "\\|")


def render_html(r: WeeklyReport, *, images: Literal["inline", "cid"] = "inline", font: bool = True) -> str:
    """A self-contained HTML page: charts and a CJK font subset embedded, no external assets.
    For e-mail, ``images="cid"`` points at the charts as attached parts (mail readers block
    ``data:`` images) and ``font=False`` leaves the font to the reader."""

    t = _text(r.lang)
    body: list[str] = [
        f"<h1>{html.escape(t['title'])} {r.week}</h1>",
        f"<p class=sub>{r.period['from']} – {r.period['to']}</p>",
    ]
    for heading, paras, table in _sections(r):
        body.append(f"<h2>{html.escape(heading)}</h2>")
        if table:
            body.append(
                "<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in table[0]) + "</tr></thead><tbody>"
            )
            body += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table[1:]]
            body.append("</tbody></table>")
        if len(paras) == 1 and heading == t["summary"]:
            body.append(f"<p class=summary>{_inline(paras[0])}</p>")
        elif paras:
            body.append("<ul>" + "".join(f"<li>{_inline(p)}</li>" for p in paras) + "</ul>")
    if r.charts:
        body.append(f"<h2>{html.escape(t['charts'])}</h2>")
        body += [
            f'<figure><img alt="{html.escape(c.title)}" src="{_src(c, images)}">'
            f"<figcaption>{html.escape(c.title)}</figcaption></figure>"
            for c in r.charts
        ]
    body.append(f"<p class=foot>{html.escape(t['footer'])}</p>")
    content = "\n".join(body)
    face = _font_face(re.sub(r"<[^>]+>", "", content) + "".join(_text(r.lang).values())) if font else ""
    lang_attr = "zh-CN" if r.lang == "zh" else "en"
    return f"""<!doctype html>
<html lang="{lang_attr}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(t["title"])} {r.week}</title>
<style>
{face}
body {{ font-family: "FA CJK", "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif; max-width: 920px;
       margin: 2rem auto; padding: 0 1rem; color: #1f2933; line-height: 1.6; }}
h1 {{ margin-bottom: 0; }} .sub {{ color: #61707f; margin-top: .2rem; }}
h2 {{ border-bottom: 1px solid #d8dee4; padding-bottom: .2rem; margin-top: 2rem; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ border: 1px solid #d8dee4; padding: .35rem .6rem; text-align: left; }}
th {{ background: #f3f5f7; }} .summary {{ background: #f7fafc; border-left: 4px solid #337ab7; padding: .8rem 1rem; }}
figure {{ margin: 1rem 0; }} figure img {{ max-width: 100%; }} figcaption {{ color: #61707f; font-size: .9rem; }}
.foot {{ color: #61707f; font-size: .85rem; margin-top: 2rem; }}
</style></head>
<body>
{content}
</body></html>
"""


def _src(c: Chart, images: Literal["inline", "cid"]) -> str:
    from agent.delivery import chart_cid

    return f"cid:{chart_cid(c.name)}" if images == "cid" else f"data:image/png;base64,{c.png_base64}"


def _inline(text: str) -> str:
    escaped = html.escape(text)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)


@cache
def _font_bytes() -> bytes:
    return cjk_font_path().read_bytes()


def _font_face(text: str) -> str:
    """@font-face with a subset of Noto Sans CJK SC holding exactly the characters on the page."""
    from fontTools import subset

    chars = sorted({c for c in text if ord(c) > 0x7F}) + [chr(c) for c in range(0x20, 0x7F)]
    opts = subset.Options()
    opts.name_IDs = ["*"]
    opts.notdef_outline = True
    opts.drop_tables += ["DSIG"]
    font = subset.load_font(io.BytesIO(_font_bytes()), opts)  # from bytes: no file handle left open
    sub = subset.Subsetter(opts)
    sub.populate(text="".join(chars))
    sub.subset(font)
    buf = io.BytesIO()
    subset.save_font(font, buf, opts)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'@font-face {{ font-family: "FA CJK"; src: url(data:font/otf;base64,{data}) format("opentype"); }}'


def write_report(r: WeeklyReport, out_dir: Path, formats: list[str]) -> list[Path]:
    """Write the report files (and chart PNGs for Markdown); returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if "md" in formats:
        for c in r.charts:
            p = out_dir / c.name
            p.write_bytes(base64.b64decode(c.png_base64))
            written.append(p)
        p = out_dir / f"report-{r.week}.md"
        p.write_text(render_markdown(r), encoding="utf-8")
        written.append(p)
    if "html" in formats:
        p = out_dir / f"report-{r.week}.html"
        p.write_text(render_html(r), encoding="utf-8")
        written.append(p)
    return written
