"""Question answering over the analytics tools, with or without a chat model.

Every question becomes one plan (an :class:`Intent`; printed as :class:`QueryPlan`) that the
executors (``Asker._<kind>``) compute with :mod:`agent.tools` and word from data files.

No LLM: :func:`parse_question` reads the slots of a Chinese or English question (windows,
category, facet values, segments, star ranges, measure cues) and records the words it did not
use; the answer names them and is ``understood: "partial"``. A question it cannot read gets a
plain "I cannot answer that" with the kinds of questions it can.

With an LLM: the model writes the plan, one structured-output call (:class:`PlanRequest`),
validated against the taxonomy and the store's own values; an invalid plan is sent back once
with its problems, then the parser's plan is used and the answer says why. The model writes no
figure and no prose: the numbers come only from the tools.

A :class:`Conversation` keeps the turns, so "and the week before?" / "那前一周呢？" change the
previous plan (with a model, it is shown the previous plans).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from difflib import SequenceMatcher
from functools import cache
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.grounded import output_language, structured
from agent.llm import ChatModel, Message, ToolTrace
from agent.prompts import fence, load_data, load_prompt
from agent.safety import strip_instructions
from agent.tools import (
    Analytics,
    CompareInput,
    CompareOutput,
    CountByInput,
    CountByOutput,
    Filters,
    LabelMixInput,
    LabelMixOutput,
    RatingInput,
    RatingOutput,
    SearchInput,
    SearchOutput,
    SeriesInput,
    SeriesOutput,
    SpikesInput,
    SpikesOutput,
    TopInput,
    Window,
    evidence_ids,
)
from agent.wording import Words, join, say
from retrieval.taxonomy import Taxonomy
from retrieval.text import _jieba

IntentKind = str  # a key of router.yaml `kinds`: each has an executor, Asker._<kind>
Lang = Literal["zh", "en"]
MAX_QUESTION_CHARS = 2000


class QueryPlan(BaseModel):
    """What was computed for a question: printed in ``--json`` so a user can check it."""

    measure: str = Field(description="count, share, rating (average, distribution, CSAT, NPS), series, top_n, ...")
    filters: dict[str, str] = Field(description="Equality filters applied (sentiment negative = complaints).")
    window: dict[str, str] = Field(description="The period counted (label, from, to).")
    previous_window: dict[str, str] | None = Field(None, description="The period compared with, when named.")
    group_by: str | None = None
    limit: int | None = None
    interval: str | None = Field(None, description="day or week, for a series.")
    keywords: str | None = Field(None, description="Free-text search words, for a list of records.")
    not_used: list[str] = Field(default_factory=list, description="Words of the question no part of the plan read.")
    fields_named: list[str] = Field(default_factory=list)


class Answer(BaseModel):
    """What `ask` returns."""

    answer: str
    tool_calls: list[ToolTrace]
    citations: list[str] = Field(description="Ids of the records behind the figures.")
    path: Literal["rules", "llm"] = Field(
        description="Who read the question into its plan: the rule-based parser or the LLM (the tools compute "
        "and word every figure either way)."
    )
    language: Lang
    as_of: str
    understood: bool | Literal["partial"] = Field(
        True,
        description="False when the question was not understood; 'partial' when part of it could not be used "
        "(the answer says which, and not_answered lists it).",
    )
    not_answered: list[str] = Field(default_factory=list, description="What the answer leaves out, and why.")
    fallback_reason: str | None = Field(None, description="Why an LLM answer was replaced by the router's.")
    prompt_version: str | None = None
    plan: QueryPlan | None = Field(None, description="What the no-LLM router computed (None when not understood).")


# --------------------------------------------------------------------------- vocabulary

_ROUTER: dict[str, Any] = load_data("router")

CN_DIGITS: dict[str, int] = _ROUTER["numbers"]["zh_digits"]
EN_NUMBERS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
NUM = r"(\d+|[零〇一二两俩三四五六七八九十百]+|" + "|".join(EN_NUMBERS) + r"|a|an|a couple of|few)"

FACET_CUES: dict[str, list[str]] = _ROUTER["facet_cues"]
CUES: dict[str, list[str]] = _ROUTER["cues"]
RELATIVE_PREVIOUS: list[str] = _ROUTER["relative_previous"]
FOLLOW_UP_OPENERS: tuple[str, ...] = tuple(_ROUTER["follow_up_openers"])

QUESTION_HELP: dict[str, str] = _ROUTER["question_help"]
# The fields whose values the store holds and a question names by value ("顺捷速递", "app_review"):
# matched in questions, offered to a model's plan, and the "where it came from" of a share's part.
FACET_FIELDS = ("product", "sku", "carrier", "channel", "region", "customer_tier")

KINDS: dict[str, dict[str, Any]] = _ROUTER["kinds"]
KIND_RULES: list[dict[str, Any]] = _ROUTER["kind_rules"]
DEFAULT_WINDOWS: dict[str, dict[str, int]] = {kind: spec["window"] for kind, spec in KINDS.items()}
# Answers whose figures count records by their category or sentiment label (urgent says its own).
LABELLED = {kind for kind, spec in KINDS.items() if spec["labelled"]}
# The measure each kind computes, as the plan names it, and the kind a model's plan measure runs.
PLAN_MEASURES: dict[str, str] = {kind: spec["measure"] for kind, spec in KINDS.items()}
PLAN_KINDS: dict[str, IntentKind] = {}
for _kind, _measure in PLAN_MEASURES.items():
    PLAN_KINDS.setdefault(_measure, _kind)


def _kind_of(flags: dict[str, bool]) -> tuple[IntentKind, bool]:
    """The first of router.yaml's `kind_rules` whose conditions hold, and whether it was cued."""
    for rule in KIND_RULES:
        if all(
            not flags[cond[1:]] if cond.startswith("!") else any(flags[c] for c in cond.split("|"))
            for cond in rule["when"]
        ):
            return rule["kind"], not rule.get("guessed", False)
    return "unknown", False


# --------------------------------------------------------------------------- parsing


@dataclass
class Intent:
    """A question, understood."""

    kind: IntentKind
    lang: Lang
    category: str | None = None
    facet: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    window: Window | None = None
    previous: Window | None = None
    sentiment: str | None = "negative"
    sentiment_explicit: bool = False
    top_n: int = 3
    query: str | None = None
    shift: int = 0  # 1: the question moves the previous window back one period
    cued: bool = True  # False when the kind was guessed from slots alone (a likely follow-up)
    interval: Literal["day", "week"] = "week"  # for trends
    named_fields: list[str] = field(default_factory=list)  # fields the question names (tier, region, rating)
    unused: list[str] = field(default_factory=list)  # words of the question no slot read
    segment_words: dict[str, str] = field(default_factory=dict)  # segment -> the words that named it
    compare: list[str] = field(default_factory=list)  # values of `facet` named side by side ("VIP and normal")
    weak_all: bool = False  # "all sentiments" read from a plain noun ("reviews", "评价"), not "all feedback"
    order: Literal["low", "high"] | None = None  # a rating breakdown, lowest or highest first


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower().replace("？", "?").replace("，", ",")).strip()


def _latin(c: str) -> bool:
    return c.isascii() and c.isalnum()


class _Text:
    """The question with a mask of consumed characters, so one phrase feeds one slot."""

    def __init__(self, question: str) -> None:
        self.s = _norm(question)
        self.used = [False] * len(self.s)

    def find(self, term: str, consume: bool = True) -> int:
        """Position of the first unconsumed whole-term match, or -1."""
        t = term.lower()
        ascii_term = t.isascii()
        start = 0
        while (i := self.s.find(t, start)) >= 0:
            j = i + len(t)
            ok = not any(self.used[i:j])
            if ok and ascii_term and t[0].isalnum():  # whole words for Latin terms
                plural = self.s[j : j + 1] == "s" and (j + 1 == len(self.s) or not _latin(self.s[j + 1]))
                ok = (i == 0 or not _latin(self.s[i - 1])) and (j == len(self.s) or not _latin(self.s[j]) or plural)
            if ok:
                if consume:
                    self.used[i:j] = [True] * (j - i)
                return i
            start = i + 1
        return -1

    def find_any(self, terms: list[str]) -> bool:
        """Whether any of ``terms`` is in the unconsumed question; the first found is consumed."""
        return self.first(terms) is not None

    def has(self, terms: list[str]) -> bool:
        return any(self.find(t, consume=False) >= 0 for t in terms)

    def first(self, terms: list[str], consume: bool = True) -> tuple[int, str] | None:
        """The earliest match among ``terms`` (longest first at equal positions)."""
        best: tuple[int, str] | None = None
        for t in sorted(terms, key=len, reverse=True):
            i = self.find(t, consume=False)
            if i >= 0 and (best is None or i < best[0]):
                best = (i, t)
        if best and consume:
            self.find(best[1])
        return best


def _number(token: str) -> int | None:
    token = token.strip().lower()
    if token.isdigit():
        return int(token)
    if token in EN_NUMBERS:
        return EN_NUMBERS[token]
    if token in ("a", "an"):
        return 1
    if token in ("a couple of",):
        return 2
    if token == "few":
        return 3
    if token and all(c in CN_DIGITS or c in "十百" for c in token):
        total, cur = 0, 0
        for c in token:
            if c == "百":
                total += (cur or 1) * 100
                cur = 0
            elif c == "十":
                total += (cur or 1) * 10
                cur = 0
            else:
                cur = CN_DIGITS[c]
        return total + cur
    return None


_UNIT_DAYS = {
    "day": 1,
    "days": 1,
    "天": 1,
    "日": 1,
    "week": 7,
    "weeks": 7,
    "周": 7,
    "星期": 7,
    "个星期": 7,
    "礼拜": 7,
    "个礼拜": 7,
    "month": 30,
    "months": 30,
    "月": 30,
    "个月": 30,
    "year": 365,
    "years": 365,
    "年": 365,
}
_EN_ROLLING = re.compile(
    r"\b(?:last|past|previous|recent|prior)\s+" + NUM + r"\s+(day|days|week|weeks|month|months|year|years)\b"
)
_EN_ROLLING_BARE = re.compile(r"\b(?:past|recent)\s+(day|week|month|year)\b")
_ZH_ROLLING = re.compile(r"(?:最近|近|过去|这)\s*" + NUM + r"\s*(个星期|个礼拜|个月|星期|礼拜|天|日|周|月|年)")
_ISO_WEEK = re.compile(r"\b(\d{4})-?w(\d{1,2})\b|\bweek\s+(\d{1,2})\b|第\s*(\d{1,2})\s*周|\bw(\d{1,2})\b")
_ISO_DATE = re.compile(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?")
_ZH_MD = re.compile(r"(\d{1,2})月(\d{1,2})[日号]")
# A calendar month named on its own: "10月", "十月份", "2026年10月", "in October", "Oct 2026".
_ZH_MONTH = re.compile(
    r"(?:(\d{4})年)?(1[0-2]|[1-9]|十[一二]?|[一二三四五六七八九])月份?(?![\d一二三四五六七八九十]*[日号])"
)
_EN_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_EN_MONTH = re.compile(
    r"\b(" + "|".join(m for m in _EN_MONTHS) + r"|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\b"
    r"(?:\s+(\d{4}))?"
)

WINDOW_WORDS: list[tuple[list[str], dict[str, int]]] = [(w["phrases"], w["window"]) for w in _ROUTER["window_words"]]


def _windows(t: _Text, as_of: date) -> list[tuple[int, Window]]:
    """Every window the question names, with its position."""
    found: list[tuple[int, Window]] = []

    def consume(m: re.Match[str]) -> bool:
        if any(t.used[m.start() : m.end()]):
            return False
        t.used[m.start() : m.end()] = [True] * (m.end() - m.start())
        return True

    for m in _ISO_DATE.finditer(t.s):
        try:
            d = date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            continue
        if consume(m):
            found.append((m.start(), Window(since=d, until=d)))
    for m in _ZH_MD.finditer(t.s):
        try:
            d = date(as_of.year, int(m[1]), int(m[2]))
        except ValueError:
            continue
        if d > as_of:
            d = d.replace(year=d.year - 1)
        if consume(m):
            found.append((m.start(), Window(since=d, until=d)))
    found = _merge_ranges(found, t.s)
    for m in [*_ZH_MONTH.finditer(t.s), *_EN_MONTH.finditer(t.s)]:
        name = m[2] if m.re is _ZH_MONTH else m[1]
        year_s = m[1] if m.re is _ZH_MONTH else m[2]
        month = (
            _number(name)
            if m.re is _ZH_MONTH
            else next(i for i, full in enumerate(_EN_MONTHS, 1) if full.startswith(name[:3]))
        )
        if m.re is _EN_MONTH and name == "may" and not year_s and not re.search(r"\bin\s+$", t.s[: m.start()]):
            continue  # "may" is mostly the verb: only "in May" or "May 2026" name the month
        if not month or not 1 <= month <= 12:
            continue
        year = int(year_s) if year_s else (as_of.year if month <= as_of.month else as_of.year - 1)
        first = date(year, month, 1)
        last = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
        if first <= as_of and consume(m):
            found.append((m.start(), Window(since=first, until=min(last, as_of))))
    for m in _ISO_WEEK.finditer(t.s):
        year = int(m[1]) if m[1] else as_of.isocalendar()[0]
        num = int(m[2] or m[3] or m[4] or m[5])
        if 1 <= num <= 53 and consume(m):
            found.append((m.start(), Window(week=f"{year}-W{num:02d}")))
    for rx in (_EN_ROLLING, _ZH_ROLLING):
        for m in rx.finditer(t.s):
            n = _number(m[1])
            if n and consume(m):
                found.append((m.start(), Window(days=min(3660, n * _UNIT_DAYS[m[2]]))))
    for m in _EN_ROLLING_BARE.finditer(t.s):
        if consume(m):
            found.append((m.start(), Window(days=_UNIT_DAYS[m[1]])))
    for words, spec in WINDOW_WORDS:
        for w in words:
            while (i := t.find(w)) >= 0:
                if "yesterday" in spec:
                    d = as_of - timedelta(days=1)
                    found.append((i, Window(since=d, until=d)))
                elif "today" in spec:
                    found.append((i, Window(since=as_of, until=as_of)))
                else:
                    found.append((i, Window(**spec)))
    return sorted(found, key=lambda p: p[0])


def _merge_ranges(found: list[tuple[int, Window]], s: str) -> list[tuple[int, Window]]:
    """'from 11-01 to 11-15' / '11月1日到11月15日': two single days joined by a range word become one range."""
    if len(found) < 2:
        if found and re.search(r"\bsince\b|以来|之后|起", s):
            pos, w = found[0]
            return [(pos, Window(since=w.since))]
        return found
    found = sorted(found, key=lambda p: p[0])
    (p1, a), (_, b) = found[0], found[1]
    assert a.since and b.until
    return [(p1, Window(since=min(a.since, b.until), until=max(a.since, b.until)))] + found[2:]


_STAR_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "零": 0}
_STAR_N = r"([0-5]|[零一二两三四五])"
_STAR_WORD = r"(?:(?:with |of |a |an )*(?:ratings?|rated|评分|打分|星级)(?: of| at| is| was|为|是|在)?\s*)"
_STAR_UNIT = r"\s*(?:-?\s*stars?\b|★|星(?!期)|分(?!钟))"
_STAR_SHAPES: list[tuple[str, str]] = [  # (the words around the numbers, how they make a range)
    (_STAR_N + r"\s*(?:-|~|to|到|至)\s*" + _STAR_N + "{unit}", "between"),
    (_STAR_N + "(?:{unit})?" + r"\s*(?:or|and|或|和|或者)\s*" + _STAR_N + "{unit}", "between"),
    (_STAR_N + "{unit}" + r"\s*(?:及|或|和)?\s*(?:以下|以内)", "at_most"),
    (_STAR_N + "{unit}" + r"\s*(?:及|或|和)?\s*以上", "at_least"),
    (_STAR_N + "{unit}" + r"\s*(?:or|and) (?:less|lower|below|fewer|under|worse)", "at_most"),
    (_STAR_N + "{unit}" + r"\s*(?:or|and) (?:more|higher|above|over|up|better)", "at_least"),
    (r"(?:below|under|less than|lower than|fewer than|低于|少于|不到|小于|不足)\s*" + _STAR_N + "{unit}", "below"),
    (r"(?:above|over|more than|higher than|高于|大于|超过|多于)\s*" + _STAR_N + "{unit}", "above"),
    (r"(?:at most|no more than|up to|最多|不超过|不高于)\s*" + _STAR_N + "{unit}", "at_most"),
    (r"(?:at least|no less than|至少|不低于|不少于)\s*" + _STAR_N + "{unit}", "at_least"),
    (_STAR_N + r"\s*(?:-\s*stars?\b|stars?\b|★|星(?!期))", "exactly"),
]
# Each shape with its star unit ("2 stars or less"), or after a rating word with the unit
# optional ("rating below 3", "评分低于3"); never a bare number ("fewer than 3 complaints").
_STAR_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(word + shape.format(unit=unit)), how)
    for shape, how in _STAR_SHAPES
    for word, unit in ((_STAR_WORD + "?", _STAR_UNIT), (_STAR_WORD, "(?:" + _STAR_UNIT + ")?"))
]


def _rating_range(t: _Text) -> tuple[int, int] | None:
    """A star range the question names ("2 stars or less", "4-5星", "低于3星", "1-star"), as
    (lowest, highest) stars; the words are consumed so no other slot reads them."""
    for pattern, how in _STAR_PATTERNS:
        for m in pattern.finditer(t.s):
            i, j = m.span()
            if any(t.used[i:j]) or (i > 0 and t.s[i - 1].isdigit()):
                continue
            nums = [_STAR_DIGITS.get(g, None) if not g.isdigit() else int(g) for g in m.groups() if g]
            if any(n is None for n in nums):
                continue
            a = int(nums[0])  # type: ignore[arg-type]
            low, high = {
                "between": (min(a, int(nums[-1])), max(a, int(nums[-1]))),  # type: ignore[arg-type]
                "at_most": (1, a),
                "at_least": (a, 5),
                "below": (1, a - 1),
                "above": (a + 1, 5),
                "exactly": (a, a),
            }[how]
            if not 0 <= low <= high <= 5:
                continue
            t.used[i:j] = [True] * (j - i)
            return low, high
    return None


_MENTIONS = (
    re.compile(
        r"(?:that |which )?(?:mention(?:s|ing|ed)?|contain(?:s|ing)?|with the words?|"
        r"including the words?)\s+[\"'“]?([a-z0-9][a-z0-9\- ]{1,40}?)[\"'”]?"
        r"(?=\s+(?:in|last|this|during|over|from|since|yesterday|today|so far|per|by)\b|\s*[?,.!]|$)"
    ),
    re.compile(
        r"(?:提到|提及|包含|含有|带有|说到|涉及|出现)\s*[\"“「]?([\u4e00-\u9fffa-z0-9\- ]{1,20}?)[\"”」]?\s*(?=的|这个词|字样)"
    ),
)


def _orders(t: _Text, question: str) -> list[tuple[int, int]]:
    """Where the question's orders to a model stand in ``t`` (they are not conditions)."""
    return [(i, i + len(_norm(x))) for x in strip_instructions(question)[1] if (i := t.s.find(_norm(x))) >= 0]


def _mentions(t: _Text, orders: list[tuple[int, int]]) -> str | None:
    """Words the records must contain ("complaints that mention battery", "提到“电池”的投诉"),
    consumed so no other slot reads them. Never from an order to a model inside the question."""
    for pattern in _MENTIONS:
        for m in pattern.finditer(t.s):
            i, j = m.span()
            word = m.group(1).strip()
            if any(t.used[i:j]) or not word or any(a < j and i < b for a, b in orders):
                continue
            t.used[i:j] = [True] * (j - i)
            return word
    return None


def _match_values(t: _Text, analytics: Analytics, several: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Product / carrier / channel / region / tier values named in the question (exact, then fuzzy).
    A facet named with two or more values ("VIP and normal customers") goes to ``several``."""
    found: dict[str, str] = {}
    squeezed = t.s.replace(" ", "")
    for facet in FACET_FIELDS:
        values = sorted(analytics.values(facet), key=len, reverse=True)
        named = [
            v
            for v in values
            if len(v) >= 2 and (t.find(v.lower()) >= 0 or (" " in v and v.lower().replace(" ", "") in squeezed))
        ]
        if named:
            found[facet] = named[0]
            if len(named) > 1 and several is not None:
                several[facet] = sorted(named, key=lambda v: t.s.find(v.lower()))
        if facet in found or facet not in ("product", "carrier"):
            continue
        best: tuple[int, str] | None = None
        for v in values:  # "保温杯Pro" for "智能保温杯 Pro"
            vv = v.lower().replace(" ", "")
            m = SequenceMatcher(None, squeezed, vv, autojunk=False).find_longest_match()
            need = 3 if any(ord(c) > 0x2E80 for c in vv[m.b : m.b + m.size]) else 5
            if m.size >= need and m.size >= 0.5 * len(vv) and (best is None or m.size > best[0]):
                best = (m.size, v)
        if best:
            found[facet] = best[1]
    return found


def _match_terms(t: _Text, taxonomy: Taxonomy) -> tuple[str | None, str | None]:
    """The facet asked about and the category named, longest phrase first ("商品质量" is a
    category, "哪个商品" a facet; "哪家快递" a facet, "快递" alone the logistics category)."""
    terms: list[tuple[str, str, str]] = [(cue, "facet", facet) for facet, cues in FACET_CUES.items() for cue in cues]
    for lab in taxonomy.labels_of("category"):
        for term in (lab.id, lab.id.replace("_", " "), lab.name_zh, lab.name_en, *lab.keywords):
            if term and len(term) >= 2:
                terms.append((term.lower(), "category", lab.id))
    first: dict[str, tuple[int, str]] = {}
    for term, kind, value in sorted(terms, key=lambda x: -len(x[0])):
        while (i := t.find(term)) >= 0:
            if kind not in first or i < first[kind][0]:
                first[kind] = (i, value)
    return (first["facet"][1] if "facet" in first else None), (first["category"][1] if "category" in first else None)


def _top_n(t: _Text) -> int | None:
    m = re.search(r"\btop[\s-]*" + NUM + r"\b|前\s*" + NUM + r"\s*(?:名|个|位|大|类)?|" + NUM + r"\s*大", t.s)
    if not m:
        return None
    return _number(next(g for g in m.groups() if g))


def parse_question(question: str, analytics: Analytics, taxonomy: Taxonomy) -> Intent:
    """Read a question into an intent (kind ``unknown`` when it is not understood)."""
    t = _Text(question)
    several: dict[str, list[str]] = {}
    values = _match_values(t, analytics, several)
    for name in several:  # "VIP and normal customers": compared side by side, not one of them
        del values[name]
    segment_words: dict[str, str] = {}
    for segment, options in ask_limits()["segments"].items():
        found = [(hit, value) for value, words in options.items() if (hit := t.first(words, consume=False))]
        if found:
            (_, word), value = min(found)
            t.find(word)
            values[segment], segment_words[segment] = value, word
    stars = _rating_range(t)
    if stars is not None:
        values["rating"] = f"{stars[0]}-{stars[1]}"
    orders = _orders(t, question)
    if (said := _mentions(t, orders)) is not None:
        values["mentions"] = said
    lang = output_language("".join(" " if u else c for c, u in zip(t.s, t.used, strict=True)))
    relative = t.first(RELATIVE_PREVIOUS) is not None
    windows = _windows(t, analytics.as_of.date())
    rates: dict[str, str] = ask_limits()["measures"]["share"]["sentiments"]
    rate = t.first(list(rates))  # "好评率": a share of positive feedback, read before "好评" names praise
    facet, category = _match_terms(t, taxonomy)
    if facet == "carrier" and category is None and "logistics" in taxonomy.category_ids():
        category = "logistics"

    cues = {name: t.has(words) for name, words in CUES.items()}
    weak_all = False
    positive = cues["positive"] or category in ("praise",)
    if category in ("praise", "suggestion", "other"):
        sentiment, explicit = None, True
    elif positive and not cues["negative"]:
        sentiment, explicit = "positive", True
    elif cues["all"] and not cues["negative"]:
        sentiment, explicit = None, True
        weak_all = not t.has(ask_limits()["strong_all"])
    else:
        sentiment, explicit = "negative", cues["negative"]
    if stars is not None and not cues["negative"]:
        sentiment, explicit, weak_all = None, True, False  # "1-star reviews": the stars are the slice
        if category == "praise":  # "5星好评" is five-star reviews, not the praise category's
            category = None

    kind, cued = _kind_of(
        {
            **cues,
            "positive": positive,
            "category": category is not None,
            "facet": facet is not None,
            "values": bool(values),
        }
    )
    limits = ask_limits()
    measure = next((m for m, spec in limits["measures"].items() if t.has(spec["cues"])), None)
    if rate is not None:
        measure, sentiment, explicit, weak_all = "share", rates[rate[1]], True, False
    if measure is not None and kind != "examples":
        kind, cued = measure, True
    compared: list[str] = []
    if several:
        facet = next(iter(several))
        compared = several[facet]
        if kind in ("count", "top", "unknown"):
            kind, cued = "concentration", True
    if kind in ("rising", "falling") and facet is None:
        facet = "category" if not category else None
    intent = Intent(
        kind=kind,
        lang=lang,
        category=category,
        facet=facet,
        values=values,
        sentiment=sentiment,
        sentiment_explicit=explicit,
        top_n=max([_top_n(t) or (10 if cues["breakdown"] else 3), *(len(v) for v in several.values())]),
        compare=compared,
        weak_all=weak_all,
        order=next((o for o, words in limits["rating_order"].items() if t.find_any(words)), None)
        if kind == "rating"
        else None,
        shift=1 if relative and not windows else 0,
        cued=cued and kind != "unknown",
    )
    if len(windows) == 1 and kind in ("rising", "falling", "count"):
        pos, only = windows[0]
        before = t.s[max(0, pos - 12) : pos]
        if re.search(r"(比|than|compared (to|with)|vs\.?|versus|相比|对比|比起)\s*$", before) and (
            only.weeks_ago or only.months_ago
        ):  # "比上上周" names the earlier period only
            later = (
                Window(weeks_ago=only.weeks_ago - 1)
                if only.weeks_ago
                else Window(months_ago=(only.months_ago or 1) - 1)
            )
            windows = [(pos, later), (pos + 1, only)]
    if windows:
        intent.window = windows[0][1]
        if len(windows) > 1 and windows[1][1] != windows[0][1]:
            # "上上周和上周比" / "last week vs the week before": the later period is the current one
            intent.window, intent.previous = _later_first(windows[0][1], windows[1][1], analytics)
    if kind == "rating" and relative and intent.window is not None and intent.previous is None:
        intent.previous = _shift(intent.window, kind, analytics)  # "last week vs the week before"
    if kind == "examples":
        intent.query = None if (category or values) else _leftover(t)
    if kind == "trend" and t.has(limits["measures"]["trend"]["daily"]):
        intent.interval = "day"
    intent.named_fields = [f for f, spec in limits["fields"].items() if t.has(spec["cues"])]
    if kind == "count" and facet is not None:  # "华东地区的投诉有多少": the field names a filter
        if facet in limits["fields"] and facet not in intent.named_fields:
            intent.named_fields.append(facet)
        intent.facet = None
    if stars is not None and "rating" not in intent.named_fields:
        intent.named_fields.append("rating")  # a store without ratings must say so, not count zero
    intent.segment_words = segment_words
    if kind != "unknown":
        for i, j in orders:  # orders to a model are not conditions: ignored
            t.used[i:j] = [True] * (j - i)
        intent.unused = _unused(t, taxonomy, [*values.values(), intent.query or ""])
    return intent


def _strings(node: Any) -> Iterator[str]:
    """Every string in a nested data structure (keys of mappings too)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _strings(item)


@cache
def _vocabulary(taxonomy: Taxonomy) -> tuple[str, ...]:
    """Every phrase the router knows (its word lists, the measure and field cues, the taxonomy's
    ids, names and keywords), longest first."""
    limits = ask_limits()
    words = set(_strings(_ROUTER)) | set(_strings({k: v for k, v in limits.items() if k not in ("notes", "filler")}))
    for name in ("category", "sentiment", "urgency"):
        for lab in taxonomy.labels_of(name):
            words |= {lab.id, lab.id.replace("_", " "), lab.name_zh or "", lab.name_en or "", *lab.keywords}
    return tuple(sorted((w.lower() for w in words if w and not w.isdigit()), key=len, reverse=True))


_CONTENT = re.compile(r"[a-z][a-z'\-]*[a-z]|[\u3400-\u9fff]+")


@cache
def _known_words(taxonomy: Taxonomy) -> frozenset[str]:
    return frozenset(_vocabulary(taxonomy)) | frozenset(ask_limits()["filler"]["en"])


def _inflected(word: str, taxonomy: Taxonomy) -> bool:
    """An English word that is a known word with an ending ("complained", "delays", "rising")."""
    known = _known_words(taxonomy)
    stems: set[str] = set()
    if word.endswith("ing"):  # rising -> rise, delaying -> delay
        stems |= {word[:-3], word[:-3] + "e"}
    if word.endswith("ed"):  # delayed -> delay, increased -> increase
        stems |= {word[:-2], word[:-1]}
    if word.endswith("es"):  # boxes -> box
        stems.add(word[:-2])
    if word.endswith("s"):  # delays -> delay (not "thermos" -> "there")
        stems.add(word[:-1])
    return any(len(stem) >= 3 and stem in known for stem in stems)


def _words(segment: str) -> list[str]:
    """English words and Chinese words (jieba) of a run of text, in order."""
    out: list[str] = []
    for token in _CONTENT.findall(segment):
        out += [token] if token.isascii() else [w for w in _jieba().lcut(token) if w.strip()]
    return out


def _unused(t: _Text, taxonomy: Taxonomy, matched: list[str]) -> list[str]:
    """What is left of the question once every slot and every known word has been read: the
    words that could change the answer and were not used. Filler words do not count."""
    for term in _vocabulary(taxonomy):
        while t.find(term) >= 0:
            pass
    rest = "".join("\0" if used else c for c, used in zip(t.s, t.used, strict=True))
    filler = ask_limits()["filler"]
    zh_filler = set(filler["zh"])
    known = [m.lower().replace(" ", "") for m in matched if m]
    out: list[str] = []
    for segment in rest.split("\0"):  # a run of the question no slot read
        pieces: list[str] = []
        words: list[str] = []  # consecutive content words make one phrase ("年轻妈妈", "pro smart cup")
        for token in _words(segment) + [""]:
            if token.isascii():
                content = token not in filler["en"] and len(token) >= 3 and not _inflected(token, taxonomy)
            else:
                # a one-character word counts when it continues a phrase ("学生" + "党")
                content = token not in zh_filler and (len(token) >= 2 or bool(words) and not words[-1].isascii())
            if token and content:
                words.append(token)
                continue
            if words:
                pieces.append((" " if words[0].isascii() else "").join(words))
                words = []
        for piece in pieces:
            if not any(piece.replace(" ", "") in k for k in known) and piece not in out:
                out.append(piece)
    return out


def ask_limits() -> dict[str, Any]:
    """The router's measure and field cues and its notes (``agent/data/ask.yaml``)."""
    return load_data("ask")


def _leftover(t: _Text) -> str | None:
    chars = [c if not u else " " for c, u in zip(t.s, t.used, strict=True)]
    text = "".join(chars)
    for words in (
        CUES["examples"],
        CUES["negative"],
        CUES["count"],
        ["of", "about", "的", "吗", "?", "关于", "有关", "some", "me", "几", "条", "些", "一下"],
    ):
        for w in words:
            text = re.sub(rf"\b{re.escape(w)}\b" if w.isascii() and w[0].isalnum() else re.escape(w), " ", text)
    text = " ".join(text.split())
    return text if len(text) >= 2 else None


def follow_up(intent: Intent, previous: Intent | None, question: str, analytics: Analytics) -> Intent:
    """Fill a follow-up ("and the week before?", "那包装呢？") from the previous intent."""
    if previous is None or previous.kind == "unknown":
        return intent
    has_slots = bool(
        intent.category or intent.values or intent.window or intent.shift or intent.facet or intent.sentiment_explicit
    )
    if intent.kind == "unknown" and not has_slots:
        return intent
    q = _norm(question)
    opener = q.startswith(FOLLOW_UP_OPENERS) or q.rstrip("?").endswith("呢")
    if not (opener or intent.shift or not intent.cued):
        return intent
    merged = replace(previous, lang=intent.lang, query=previous.query, unused=list(intent.unused))
    if intent.category and intent.category != previous.category:
        merged.category = intent.category
    if intent.values:  # a refinement ("只看英文评价") keeps the slice's other values
        merged.values = {**previous.values, **intent.values}
        merged.segment_words = {**previous.segment_words, **intent.segment_words}
        if merged.kind == "concentration" and merged.facet in intent.values:
            merged.kind = "count"  # "which carrier ...?" then "and 顺捷速递?": that carrier's count
    if intent.facet and intent.kind == "concentration":  # "按渠道呢？" / "and by channel?": that breakdown
        merged.facet = intent.facet
        merged.values = {k: v for k, v in merged.values.items() if k != intent.facet}
        if merged.kind in ("count", "top", "concentration"):
            merged.kind = "concentration"
    if intent.sentiment_explicit and not intent.weak_all:  # "in English reviews" keeps the complaints
        merged.sentiment, merged.sentiment_explicit = intent.sentiment, True
    if intent.window is not None:
        merged.window, merged.previous = intent.window, intent.previous
    elif intent.shift:
        merged.window, merged.previous = _shift(previous.window, previous.kind, analytics), None
    merged.shift = 0
    return merged


def _later_first(a: Window, b: Window, analytics: Analytics) -> tuple[Window, Window]:
    """Two periods compared, the later (the current one) first: "上上周和上周比" names it second."""
    return (b, a) if analytics.resolve(a).start < analytics.resolve(b).start else (a, b)


def _shift(window: Window | None, kind: IntentKind, analytics: Analytics) -> Window:
    """The window one period before ``window`` (the same ISO week / month / number of days)."""
    w = window or Window(**DEFAULT_WINDOWS[kind])
    if w.weeks_ago is not None:
        return Window(weeks_ago=w.weeks_ago + 1)
    if w.months_ago is not None:
        return Window(months_ago=w.months_ago + 1)
    prev = analytics.resolve(w).previous()
    if prev.unit == "week":
        return Window(week=prev.label)
    return Window(since=prev.first_day, until=prev.last_day)


# --------------------------------------------------------------------------- wording


def _quote(words: list[str], lang: Lang) -> str:
    """Words of the question, quoted as the answer's language quotes."""
    return join([f"“{u}”" if lang == "zh" else f"'{u}'" for u in words], lang)


def _stars(w: Words, value: str) -> str:
    """A star range in words ("rated 1-2★", "1-2 星")."""
    low, high = value.split("-")
    return w.say("segment.stars_one", n=low) if low == high else w.say("segment.stars", low=low, high=high)


def _scope(w: Words, intent: Intent) -> str:
    """The slice in words: facet values, then the category ("云达快运 物流配送 (logistics) 类")."""
    parts = [
        w.say(f"segment.{value}" if name == "customer" else f"segment.lang_{value}")
        if name in ("customer", "language")
        else _stars(w, value)
        if name == "rating"
        else w.say("segment.mentions", words=value)
        if name == "mentions"
        else value
        for name, value in intent.values.items()
    ]
    if intent.category:
        parts.append(w.say("common.category_scope", label=w.label(intent.category)))
    return " ".join(parts) + w.say("separators.before_answer") if parts else ""


class Asker:
    """Answers questions about one store at one as-of time."""

    def __init__(self, analytics: Analytics, taxonomy: Taxonomy, model: ChatModel | None = None) -> None:
        """Bind the tools, the taxonomy and an optional chat model (None: the router only)."""
        self.analytics = analytics
        self.taxonomy = taxonomy
        self.model = model

    # ------------------------------------------------------------------ entry
    def ask(self, question: str, conversation: Conversation | None = None) -> Answer:
        """Answer one question (a turn of ``conversation`` when given)."""
        question = " ".join(question.split())
        if not question:
            raise ValueError("the question is empty")
        if len(question) > MAX_QUESTION_CHARS:
            raise ValueError(f"the question is longer than {MAX_QUESTION_CHARS} characters")
        convo = conversation or Conversation()
        intent = parse_question(question, self.analytics, self.taxonomy)
        intent = follow_up(intent, convo.last_intent, question, self.analytics)
        empty = self.analytics.emptiness(None, intent.lang)
        if empty is not None:  # nothing to count: say so, never a confident "no category rose"
            answer = Answer(
                answer=empty,
                tool_calls=[],
                citations=[],
                path="rules",
                language=intent.lang,
                as_of=self.analytics.as_of.isoformat(),
                understood=False,
            )
            convo.add(question, answer, intent)
            return answer
        reason = None
        if self.model is not None:  # the model reads the question into a plan; the tools compute it
            planned, reason = self._llm(question, convo, intent)
            if planned is not None:
                intent = planned
        answer = self._rules(intent)
        if self.model is not None:
            answer.path = "rules" if reason else "llm"
            answer.fallback_reason = reason
            answer.prompt_version = None if reason else load_prompt("ask_plan").ref
        convo.add(question, answer, intent)
        return answer

    # ------------------------------------------------------------------ rules
    def _rules(self, intent: Intent) -> Answer:
        words = Words(intent.lang, self.taxonomy)
        traces: list[ToolTrace] = []
        unheld: list[str] = []
        if intent.facet == "customer_id" and intent.kind == "concentration" and not self.analytics.holds("customer_id"):
            unheld.append(ask_limits()["notes"]["missing_field"][intent.lang].format(field=words.facet("customer_id")))
        if intent.values.get("customer") and not self.analytics.holds("customer_id"):
            intent = replace(intent, values={k: v for k, v in intent.values.items() if k != "customer"})
            said = intent.segment_words.get("customer", "")
            unheld.append(
                ask_limits()["notes"]["no_customer_ids"][intent.lang].format(words=_quote([said], intent.lang))
            )
        handler = getattr(self, f"_{intent.kind}")
        text = handler(intent, words, traces)
        if intent.kind != "unknown":
            gap = self.analytics.emptiness(self.analytics.resolve(self._window(intent)), intent.lang)
            if gap is not None:  # the window holds no feedback at all, whatever was asked about it
                text = gap + say("separators.before_answer", intent.lang) + text
        by_label = KINDS[intent.kind].get("group_by") == "category" and (intent.facet or "category") == "category"
        uses_labels = by_label or intent.category or intent.sentiment or "urgency" in intent.values
        if intent.kind in LABELLED and uses_labels:  # a figure resting on the classifier's guesses says so
            mix: LabelMixOutput = self._call(
                traces,
                "label_mix",
                self.analytics.label_mix,
                LabelMixInput(
                    window=self._window(intent),
                    filters=self._filters(intent),
                    fields=["category", "sentiment"] + (["urgency"] if intent.values.get("urgency") else []),
                ),
            )
            if mix.model_labelled:
                text += say("ask.model_labelled", intent.lang, n=mix.model_labelled, total=mix.total)
        missing = unheld + self._missing_fields(intent)
        if intent.unused:  # words no slot read: the answer must not pass for an answer to them
            missing.append(
                ask_limits()["notes"]["unused"][intent.lang].format(words=_quote(intent.unused, intent.lang))
            )
        if missing and intent.kind != "unknown":  # said first: the answer covers everyone, not the slice asked
            text = " ".join(missing) + say("separators.before_answer", intent.lang) + text
        cited = evidence_ids([t.result for t in traces])
        understood: bool | Literal["partial"] = intent.kind != "unknown"
        if understood and missing:
            understood = "partial"
        return Answer(
            answer=text,
            tool_calls=traces,
            citations=cited[:20],
            path="rules",
            language=intent.lang,
            as_of=self.analytics.as_of.isoformat(),
            understood=understood,
            not_answered=missing,
            plan=self._plan(intent, traces) if intent.kind != "unknown" else None,
        )

    def _plan(self, intent: Intent, traces: list[ToolTrace]) -> QueryPlan:
        """What the router computed for the question, as data."""
        window = self.analytics.resolve(self._window(intent)).describe()
        previous = self.analytics.resolve(intent.previous).describe() if intent.previous else None
        if previous is None:  # a comparison with the period before, made by the tool
            previous = next((t.result["previous_period"] for t in traces if "previous_period" in t.result), None)
        group_by = intent.facet or KINDS[intent.kind].get("group_by")
        with_sentiment = intent.kind not in ("rating", "urgent")
        return QueryPlan(
            measure=PLAN_MEASURES[intent.kind],
            filters=self._filters(intent, with_sentiment=with_sentiment).active(),
            window=window,
            previous_window=previous,
            group_by=group_by,
            limit=intent.top_n if group_by else None,
            interval=intent.interval if intent.kind == "trend" else None,
            keywords=intent.query if intent.kind == "examples" else None,
            not_used=intent.unused,
            fields_named=intent.named_fields,
        )

    def _missing_fields(self, intent: Intent) -> list[str]:
        """A sentence for each field the question names that the store holds no value of."""
        limits = ask_limits()
        words = Words(intent.lang, self.taxonomy)
        notes = []
        for name in intent.named_fields:
            if name == "rating" and intent.kind == "rating":
                continue  # the rating answer says itself when nothing is rated
            label = limits["fields"][name][intent.lang] if name in limits["fields"] else words.facet(name)
            if name == "nps":
                if not self._holds_nps():
                    notes.append(limits["notes"]["missing_field"][intent.lang].format(field=label))
                continue
            if name == "rating":
                if not self.analytics.holds("rating"):
                    notes.append(limits["notes"]["missing_field"][intent.lang].format(field=label))
                continue
            held = self.analytics.values(name)
            if not held:
                notes.append(limits["notes"]["missing_field"][intent.lang].format(field=label))
            elif name not in intent.values and not (intent.kind == "concentration" and intent.facet == name):
                # named ("华东", "VIP") but matching no value the records hold: said, not dropped
                notes.append(
                    limits["notes"]["unmatched_value"][intent.lang].format(
                        field=label, examples=join(held[:4], intent.lang)
                    )
                )
        return notes

    def _holds_nps(self) -> bool:
        """Whether any record of the store carries an NPS score."""
        return self.analytics.holds("nps")  # one row looked up, not every rating of the store

    def _call(self, traces: list[ToolTrace], name: str, fn: Any, args: BaseModel) -> Any:
        result = fn(args)
        traces.append(
            ToolTrace(
                tool=name, args=args.model_dump(mode="json", exclude_none=True), result=result.model_dump(mode="json")
            )
        )
        return result

    def _totals(self, traces: list[ToolTrace], intent: Intent, window: Window, filters: Filters) -> CompareOutput:
        """The slice's total in the window and in the period before (one compare_periods call)."""
        args = CompareInput(window=window, previous=intent.previous, field=None, filters=filters)
        totals: CompareOutput = self._call(traces, "compare_periods", self.analytics.compare_periods, args)
        return totals

    def _filters(self, intent: Intent, with_sentiment: bool = True, with_category: bool = True) -> Filters:
        return Filters(
            sentiment=intent.sentiment if with_sentiment else None,
            category=intent.category if with_category else None,
            **intent.values,
        )

    def _window(self, intent: Intent) -> Window:
        return intent.window or Window(**DEFAULT_WINDOWS[intent.kind])

    def _top(self, intent: Intent, w: Words, traces: list[ToolTrace]) -> str:
        res: CompareOutput = self._call(
            traces,
            "compare_periods",
            self.analytics.compare_periods,
            CompareInput(
                window=self._window(intent),
                previous=intent.previous,
                field="category",
                filters=self._filters(intent, with_category=False),
                order="current",
            ),
        )
        rows = [r for r in res.rows if r.current > 0][: max(intent.top_n, 1)]
        win, prev, sent, total = (
            w.period(res.current_period),
            w.period(res.previous_period),
            w.sentiment(intent.sentiment),
            res.total_current,
        )
        scope = _scope(w, replace(intent, category=None))
        if not rows:
            return w.say("ask.top.none", win=win, scope=scope, sent=sent)
        first, rest = rows[0], rows[1:]
        ties = [r for r in rest if r.current == first.current]
        text = w.say(
            "ask.top.first",
            win=win,
            total=total,
            scope=scope,
            sent=sent,
            label=w.label(first.value),
            count=first.current,
            pct=w.pct(first.current, total),
            prev=prev,
            previous=first.previous,
            change=w.change(first.current, first.previous),
        )
        if ties:
            text += w.say("ask.top.ties", labels=w.join(w.label(r.value) for r in ties))
        others = [r for r in rest if r not in ties]
        if others:
            items = (
                w.say("ask.top.item", label=w.label(r.value), count=r.current, pct=w.pct(r.current, total))
                for r in others
            )
            text += w.say("ask.top.then", items=w.join(items))
        return text + w.say("separators.end") + w.examples(first.example_ids)

    def _count(self, intent: Intent, w: Words, traces: list[ToolTrace]) -> str:
        window = self._window(intent)
        res = self._totals(traces, intent, window, self._filters(intent))
        win, prev = w.period(res.current_period), w.period(res.previous_period)
        scope, sent = _scope(w, intent), w.sentiment(intent.sentiment)
        a, b = res.total_current, res.total_previous
        text = w.say("ask.count.total", win=win, scope=scope, sent=sent, a=a, prev=prev, b=b, change=w.change(a, b))
        if not intent.sentiment_explicit and intent.sentiment and (intent.category or intent.values):
            every = self._totals(traces, intent, window, self._filters(intent, with_sentiment=False))
            if (every.total_current, every.total_previous) != (a, b):
                text += w.say("ask.count.every_sentiment", a=every.total_current, b=every.total_previous)
        return text + w.examples(res.example_ids)

    def _concentration(self, intent: Intent, w: Words, traces: list[ToolTrace]) -> str:
        facet = intent.facet or "product"
        window = self._window(intent)
        res: CountByOutput = self._call(
            traces,
            "top_facets",
            self.analytics.top,
            TopInput(
                facet=facet,
                window=window,
                filters=self._filters(intent),
                n=50 if intent.compare else max(intent.top_n, 3),
            ),
        )
        if intent.compare:  # only the values the question named, each with its figure
            res = res.model_copy(update={"groups": [g for g in res.groups if g.value in intent.compare]})
        win, scope, sent, fname = w.period(res.period), _scope(w, intent), w.sentiment(intent.sentiment), w.facet(facet)
        if not res.groups:
            return w.say("ask.concentration.none", win=win, facet=fname, scope=scope, sent=sent)
        base: CountByOutput = self._call(
            traces,
            "count_by",
            self.analytics.count_by,
            CountByInput(
                field=facet, window=window, filters=Filters(**{k: v for k, v in intent.values.items() if k != facet})
            ),
        )
        base_share = {g.value: g.share for g in base.groups}
        first, rest = res.groups[0], res.groups[1 : max(intent.top_n, 1)]  # "top 2 products": two
        known = res.with_value
        text = w.say("ask.concentration.total", win=win, scope=scope, sent=sent, total=res.total)
        text += w.say("ask.concentration.known", known=known, facet=fname) if known != res.total else ""
        text += w.say(
            "ask.concentration.top",
            facet=fname,
            value=w.value(facet, first.value),
            count=first.count,
            pct=w.pct(first.count, known),
        )
        if first.value in base_share and base_share[first.value] < first.share:
            text += w.say("ask.concentration.baseline", pct=f"{base_share[first.value] * 100:.1f}%")
        if rest:
            items = (
                w.say("ask.concentration.item", value=w.value(facet, g.value), count=g.count, pct=w.pct(g.count, known))
                for g in rest
            )
            text += w.say("ask.concentration.then", items=w.join(items))
        return text + w.say("separators.end") + w.examples(first.example_ids)

    def _rising(self, intent: Intent, w: Words, traces: list[ToolTrace], falling: bool = False) -> str:
        field = intent.facet or "category"
        res: CompareOutput = self._call(
            traces,
            "compare_periods",
            self.analytics.compare_periods,
            CompareInput(
                window=self._window(intent),
                previous=intent.previous,
                field=field,
                filters=self._filters(intent, with_category=field != "category"),
                order="rise",
            ),
        )
        rows = list(reversed(res.rows)) if falling else res.rows
        rows = [r for r in rows if (r.change < 0 if falling else r.change > 0)][: max(intent.top_n, 1)]
        win, prev = w.period(res.current_period), w.period(res.previous_period)
        scope, sent, fname = (
            _scope(w, replace(intent, category=intent.category if field != "category" else None)),
            w.sentiment(intent.sentiment),
            w.facet(field),
        )
        direction = "down" if falling else "up"
        if not rows:
            return w.say(f"ask.rising.none_{direction}", win=win, prev=prev, facet=fname, scope=scope, sent=sent)
        first, rest = rows[0], rows[1:]
        text = w.say(
            f"ask.rising.first_{direction}",
            win=win,
            prev=prev,
            scope=scope,
            sent=sent,
            facet=fname,
            value=w.value(field, first.value),
            current=first.current,
            previous=first.previous,
            change=w.change(first.current, first.previous),
        )
        if rest:
            items = (
                w.say("ask.rising.item", value=w.value(field, r.value), previous=r.previous, current=r.current)
                for r in rest
            )
            text += w.say("ask.rising.then", items=w.join(items))
        text += w.say("ask.rising.total", previous=res.total_previous, current=res.total_current)
        return text + w.examples(first.example_ids)

    def _falling(self, intent: Intent, w: Words, traces: list[ToolTrace]) -> str:
        return self._rising(intent, w, traces, falling=True)

    def _spikes(self, intent: Intent, w: Words, traces: list[ToolTrace]) -> str:
        res: SpikesOutput = self._call(
            traces,
            "detect_spikes",
            self.analytics.spikes,
            SpikesInput(field="category", filters=self._filters(intent, with_category=False)),
        )
        win, sent = w.period(res.latest_period), w.sentiment(intent.sentiment)
        spikes = [s for s in res.spikes if s.is_spike]
        n_base = len(res.baseline_periods)
        if not spikes:
            return w.say("ask.spikes.none", win=win, sent=sent, weeks=n_base)
        parts = [
            w.say(
                "ask.spikes.item",
                label=w.label(sp.value),
                current=sp.current,
                weeks=n_base,
                mean=f"{sp.baseline_mean:g}",
                baseline=w.join(map(str, sp.baseline)),
            )
            for sp in spikes[:3]
        ]
        head = w.say("ask.spikes.head", win=win, sent=sent)
        return head + w.join(parts, "clauses") + w.say("separators.end") + w.examples(spikes[0].example_ids)

    def _examples(self, intent: Intent, w: Words, traces: list[ToolTrace]) -> str:
        res: SearchOutput = self._call(
            traces,
            "search_quotes",
            self.analytics.search_quotes,
            SearchInput(query=intent.query, window=self._window(intent), filters=self._filters(intent), k=5),
        )
        win, scope, sent = w.period(res.period), _scope(w, intent), w.sentiment(intent.sentiment)
        if not res.quotes:
            return w.say("ask.examples.none", win=win, scope=scope, sent=sent)
        head = w.say("ask.examples.head", win=win, scope=scope, sent=sent)
        lines = [f"- [{q.id}] {q.created_at[:10]} {' '.join(q.text.split())[:160]}" for q in res.quotes]
        return head + "\n" + "\n".join(lines)

    def _why(self, intent: Intent, w: Words, traces: list[ToolTrace]) -> str:
        """A "why" question: the root-cause analysis of the slice."""
        from agent.rootcause import root_cause

        extra = {k: v for k, v in intent.values.items() if k != "product"}
        rc = root_cause(
            self.analytics,
            self.taxonomy,
            category=intent.category,
            product=intent.values.get("product"),
            window=self._window(intent),
            sentiment=intent.sentiment or "negative",
            lang=w.lang,
            extra=extra or None,
        )
        traces.extend(rc.tool_calls)
        text = rc.summary
        if rc.actions:
            text += w.say("common.suggested", action=rc.actions[0])
        return text

    def _trend(self, intent: Intent, w: Words, traces: list[ToolTrace]) -> str:
        """Counts per week (or day) over the window's span, oldest first."""
        named = intent.window if intent.window and not intent.window.days else None  # last week, November
        days = intent.window.days if intent.window and intent.window.days else DEFAULT_WINDOWS["trend"]["days"]
        periods = max(2, min(52, days // 7)) if intent.interval == "week" else max(2, min(92, days))
        res: SeriesOutput = self._call(
            traces,
            "time_series",
            self.analytics.series,
            SeriesInput(
                interval=intent.interval,
                periods=periods,
                skip_current=1 if intent.interval == "week" else 0,
                window=named,
                filters=self._filters(intent),
            ),
        )
        scope, sent = _scope(w, intent), w.sentiment(intent.sentiment)
        pairs = ", ".join(f"{p} {c}" for p, c in zip(res.periods, res.totals, strict=True))
        first, last = res.totals[0], res.totals[-1]
        return w.say(
            "ask.trend_in" if named else "ask.trend",
            win=w.period(self.analytics.resolve(named).describe()) if named else "",
            scope=scope,
            sent=sent,
            periods=periods,
            unit=w.say(f"ask.trend_units.{intent.interval}"),
            units=w.say(f"ask.trend_units_plural.{intent.interval}"),
            pairs=pairs,
            first=first,
            last=last,
            change=w.change(last, first),
        )

    def _rating(self, intent: Intent, w: Words, traces: list[ToolTrace]) -> str:
        """Average rating, distribution and CSAT of the slice (every sentiment: ratings are their own)."""
        res: RatingOutput = self._call(
            traces,
            "ratings",
            self.analytics.ratings,
            RatingInput(
                window=self._window(intent),
                filters=self._filters(intent, with_sentiment=False),
                by=intent.facet if intent.facet and intent.facet not in intent.values else None,
            ),
        )
        win, scope = w.period(res.period), _scope(w, intent)
        notes = ask_limits()["notes"]
        asked_nps = "nps" in intent.named_fields
        parts: list[str] = []
        examples: list[str] = []
        if res.rated and not (asked_nps and res.nps_answers):
            examples += res.example_ids[:3]
            dist = ", ".join(f"{k}★ {v}" for k, v in sorted(res.distribution.items(), reverse=True))
            csat = f"{(res.csat or 0) * 100:.1f}%"
            parts.append(
                w.say(
                    "ask.rating",
                    win=win,
                    scope=scope,
                    rated=res.rated,
                    total=res.total,
                    average=res.average,
                    csat=csat,
                    dist=dist,
                )
            )
        if res.rated and intent.previous is not None:  # "this week vs last week": the same figures then
            before: RatingOutput = self._call(
                traces,
                "ratings",
                self.analytics.ratings,
                RatingInput(window=intent.previous, filters=self._filters(intent, with_sentiment=False)),
            )
            parts.append(
                w.say(
                    "ask.rating_before",
                    prev=w.period(before.period),
                    average=before.average if before.rated else "-",
                    csat=f"{(before.csat or 0) * 100:.1f}%" if before.rated else "-",
                    rated=before.rated,
                )
            )
        if res.groups and intent.facet:  # "average rating for each product": one line per value
            shown = [g for g in res.groups if g.value in intent.compare] if intent.compare else res.groups
            if intent.order:  # "lowest rated product": that one first, named
                shown = sorted(shown, key=lambda g: (g.average if intent.order == "low" else -g.average, -g.rated))
                first = shown[0]
                parts.append(
                    w.say(
                        f"ask.rating_{intent.order}est",
                        facet=w.facet(intent.facet),
                        value=first.value,
                        average=first.average,
                        rated=first.rated,
                    )
                )
            items = [
                w.say("ask.rating_group", value=g.value, average=g.average, csat=f"{g.csat * 100:.1f}%", rated=g.rated)
                for g in shown[:10]
            ]
            parts.append(w.say("ask.rating_by", facet=w.facet(intent.facet), items=w.join(items, "clauses")))
        if res.nps_answers:
            examples += res.nps_example_ids[:3]
            parts.append(
                w.say(
                    "ask.nps",
                    win=win,
                    scope=scope,
                    answers=res.nps_answers,
                    promoters=res.promoters,
                    detractors=res.detractors,
                    nps=f"{res.nps:+.1f}",
                )
            )
        elif asked_nps and self._holds_nps():  # a store with no NPS at all is said first, as a missing field
            parts.insert(0, notes["no_nps"][w.lang].format(win=win, scope=scope))
        if not parts:
            return str(notes["no_ratings"][w.lang].format(win=win, scope=scope))
        return " ".join(parts) + w.examples(examples or res.example_ids)

    def _share(self, intent: Intent, w: Words, traces: list[ToolTrace]) -> str:
        """The slice's share of all feedback (complaints by default), against the period before."""
        window = self._window(intent)
        part = self._totals(traces, intent, window, self._filters(intent))
        # the whole is the slice without what the share measures: "web complaint rate" is web
        # complaints of all web feedback; "logistics share of complaints", of all complaints
        sent = w.sentiment(intent.sentiment)
        around = _scope(w, replace(intent, category=None))
        if intent.category:
            whole = self._totals(traces, intent, window, Filters(sentiment=intent.sentiment, **intent.values))
            whole_name = w.say("ask.share_whole.of_sentiment", scope=around, sent=sent)
        else:
            values = intent.values
            if intent.sentiment is None:  # the part names no sentiment: the whole would be the part
                # ("what share of 5-star reviews came from app_review"): the whole drops the
                # product / channel / carrier / ... values, then every other condition
                values = {k: v for k, v in values.items() if k not in FACET_FIELDS}
                if values == intent.values:
                    values = {}
                around = _scope(w, replace(intent, category=None, values=values))
            whole = self._totals(traces, intent, window, Filters(**values))
            whole_name = w.say("ask.share_whole.of_slice" if around else "ask.share_whole.all", scope=around)
        win, prev = w.period(part.current_period), w.period(part.previous_period)
        scope = _scope(w, intent)
        a, b = w.pct(part.total_current, whole.total_current), w.pct(part.total_previous, whole.total_previous)
        text = w.say(
            "ask.share",
            whole=whole_name,
            win=win,
            prev=prev,
            scope=scope,
            sent=sent,
            a=a,
            b=b,
            part_now=part.total_current,
            all_now=whole.total_current,
            part_before=part.total_previous,
            all_before=whole.total_previous,
        )
        return text + w.examples(part.example_ids)

    def _urgent(self, intent: Intent, w: Words, traces: list[ToolTrace]) -> str:
        """Critical and high-urgency feedback of the window, newest first, with what it is about."""
        window = self._window(intent)
        lines: list[str] = []
        total = 0
        for level in ("critical", "high"):
            f = self._filters(intent, with_sentiment=False).model_copy(update={"urgency": level})
            res: CountByOutput = self._call(
                traces,
                "count_by",
                self.analytics.count_by,
                CountByInput(field="category", window=window, filters=f, top=3),
            )
            total += res.total
            if res.total:
                cats = w.join(f"{w.label(g.value)} {g.count}" for g in res.groups)
                guessed = self.analytics.label_sources("urgency", level, window, f).get("model", 0)
                note = w.say("ask.urgent.model_labelled", n=guessed) if guessed else ""
                lines.append(w.say("ask.urgent.level", level=level, total=res.total, cats=cats, note=note))
        quotes: SearchOutput = self._call(
            traces,
            "search_quotes",
            self.analytics.search_quotes,
            SearchInput(
                window=window,
                filters=self._filters(intent, with_sentiment=False).model_copy(update={"urgency": "critical"}),
                k=5,
            ),
        )
        win = w.period(self.analytics.resolve(window).describe())
        if not total:
            return w.say("ask.urgent.none", win=win)
        head = w.say("ask.urgent.head", win=win, levels=w.join(lines, "clauses"))
        items = [f"- [{q.id}] {q.created_at[:10]} {' '.join(q.text.split())[:120]}" for q in quotes.quotes]
        return head + ("\n" + "\n".join(items) if items else "")

    def _unknown(self, intent: Intent, w: Words, traces: list[ToolTrace]) -> str:
        return w.say("common.unknown") + QUESTION_HELP[w.lang]

    # ------------------------------------------------------------------ LLM
    def _llm(self, question: str, convo: Conversation, parsed: Intent) -> tuple[Intent | None, str | None]:
        """The model's plan for the question, as an intent the executors run (None: why not).

        A plan that contradicts what the question's own words name (a category, a product or
        other value the store holds, a period), as the parser read them into ``parsed``, is sent
        back naming the difference; a model that keeps it gets the parser's plan, saying why."""
        model = self.model
        assert model is not None
        prompt = load_prompt("ask_plan")
        held = {f: self.analytics.values(f)[:PLAN_VALUES_SHOWN] for f in FACET_FIELDS}
        system = prompt.render(
            as_of=self.analytics.as_of.isoformat(),
            this_week=self.analytics.resolve(Window(weeks_ago=0)).label,
            categories="\n".join(
                f"  - {lab.id}: {lab.name_en or ''} {lab.name_zh or ''}".rstrip()
                for lab in self.taxonomy.labels_of("category")
            ),
            urgencies=", ".join(lab.id for lab in self.taxonomy.labels_of("urgency")),
            facets="\n".join(f"  - {f}: {', '.join(v)}" for f, v in held.items() if v),
            missing=", ".join(f for f, v in held.items() if not v) or "none",
        )
        messages = [Message(role="system", content=system)]
        for q, plan in convo.plans[-4:]:  # follow-ups change the previous plan
            messages += [Message(role="user", content=fence(q, "question")), Message(role="assistant", content=plan)]
        messages.append(Message(role="user", content=fence(question, "question")))
        made: dict[str, Intent] = {}

        def check(plan: PlanRequest) -> list[str]:
            intent, problems = intent_from_plan(plan, question, self.analytics, self.taxonomy)
            made["intent"] = intent
            if intent.kind == "unknown":  # no plan at all: the parser's, below, and no re-ask
                return problems
            return problems + self._disagreements(parsed, intent)

        got = structured(model, messages, PlanRequest, check, prompt_version=prompt.ref, attempts=2)
        if got.value is None:
            return None, got.fallback_reason
        if made["intent"].kind == "unknown":  # the parser may still read it; if not, it says so itself
            return None, "the model's plan names no measure for the question (unknown)"
        return made["intent"], None

    def _disagreements(self, parsed: Intent, planned: Intent) -> list[str]:
        """Where a model's plan leaves out or changes what the question's words name."""
        problems = []
        if parsed.category and planned.category != parsed.category:
            problems.append(f"the question names category {parsed.category}; the plan has {planned.category}")
        for name, value in parsed.values.items():
            if planned.values.get(name) != value:
                problems.append(f"the question names {name} {value!r}; the plan has {planned.values.get(name)!r}")
        if parsed.window is not None:
            said, planned_period = self.analytics.resolve(parsed.window), self.analytics.resolve(self._window(planned))
            if (said.start, said.end) != (planned_period.start, planned_period.end):
                problems.append(f"the question names the period {said.label}; the plan has {planned_period.label}")
        return problems


# --------------------------------------------------------------------------- the model's plan


# How many of each facet's values a model's plan is shown.
PLAN_VALUES_SHOWN = 40
PlanGroup = Literal["category", "product", "sku", "carrier", "channel", "region", "customer_tier"]


class PlanRequest(BaseModel):
    """The query plan of one question: what to compute, over which records, in which period."""

    model_config = ConfigDict(extra="forbid")

    measure: str = Field(
        description="; ".join(f"{m}: {KINDS[k]['doc']}" for m, k in PLAN_KINDS.items()),
        json_schema_extra={"enum": list(PLAN_KINDS)},
    )

    @field_validator("measure")
    @classmethod
    def _a_known_measure(cls, measure: str) -> str:
        if measure not in PLAN_KINDS:
            raise ValueError(f"measure must be one of {', '.join(PLAN_KINDS)}")
        return measure

    filters: Filters = Field(default_factory=Filters, description="Complaints: sentiment negative.")
    window: Window | None = Field(None, description="The period; empty: the measure's default.")
    previous: Window | None = Field(None, description="A second period the question compares with.")
    group_by: PlanGroup | None = None
    compare_values: list[str] = Field(
        default_factory=list, max_length=10, description="Values of group_by named side by side (VIP and normal)."
    )
    limit: int | None = Field(None, ge=1, le=50, description="How many values of group_by (top N).")
    interval: Literal["day", "week"] | None = Field(None, description="For a series.")
    keywords: str | None = Field(None, max_length=60, description="For list: words the records must contain.")
    order: Literal["low", "high"] | None = Field(None, description="For rating by group_by: lowest or highest first.")
    not_understood: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="Every word or part of the question this plan leaves out: no filter, group or measure "
        "expresses it, or the records do not hold the field.",
    )


def plan_request(intent: Intent) -> PlanRequest:
    """An intent written as a model's plan: what a follow-up question changes."""
    measure = next((m for m, k in PLAN_KINDS.items() if k == intent.kind), "top_n")  # concentration: top_n
    group = intent.facet if intent.facet in get_args(PlanGroup) else None
    return PlanRequest(
        measure=measure,
        filters=Filters(category=intent.category, sentiment=intent.sentiment, **intent.values),
        window=intent.window,
        previous=intent.previous,
        group_by=group,
        compare_values=intent.compare,
        limit=intent.top_n if group else None,
        interval=intent.interval if intent.kind == "trend" else None,
        keywords=intent.query,
        order=intent.order,
        not_understood=intent.unused[:10],
    )


def _said_in(parts: list[str], question: str) -> list[str]:
    """The parts a model's plan left out that the question holds as written, outside its orders
    to a model (an order is no condition, and an invented part is not the user's)."""
    t = _Text(question)
    orders = _orders(t, question)
    kept = []
    for part in parts:
        i = t.s.find(_norm(part)) if _norm(part) else -1
        if i >= 0 and not any(a <= i < b for a, b in orders):
            kept.append(part.strip())
    return kept


def _held(value: str, held: list[str]) -> str | None:
    """The store's spelling of a facet value a model named: the same ignoring case and spaces, else
    the one held value containing it or contained in it."""
    key = value.casefold().replace(" ", "")
    squeezed = {v.casefold().replace(" ", ""): v for v in held}
    if key in squeezed:
        return squeezed[key]
    near = [v for k, v in squeezed.items() if len(key) >= 2 and (key in k or k in key)]
    return near[0] if len(near) == 1 else None


def intent_from_plan(
    plan: PlanRequest, question: str, analytics: Analytics, taxonomy: Taxonomy
) -> tuple[Intent, list[str]]:
    """The executors' intent for a model's plan, and what in the plan is invalid (told to the model).

    Values the store does not hold are not the model's fault: they are dropped from the filters
    and named in ``named_fields``, so the answer says it could not use them."""
    problems: list[str] = []
    f = plan.filters
    for name in ("category", "urgency", "sentiment"):
        ids = taxonomy.label_ids(name)
        if getattr(f, name) is not None and getattr(f, name) not in ids:
            problems.append(f"{name} {getattr(f, name)!r} is not one of {', '.join(ids)}")
    if plan.compare_values and plan.group_by is None:
        problems.append("compare_values needs group_by")
    limits = ask_limits()
    values: dict[str, str] = {}
    named: list[str] = []
    for name, value in f.active().items():
        if name in ("category", "sentiment", "subcategory"):
            continue
        if name in FACET_FIELDS:
            match = _held(value, analytics.values(name))
            if match is None:  # said in the answer as a value (or a field) the records do not hold
                named.append(name)
                continue
            value = match
        values[name] = value
        if name == "rating":
            named.append("rating")
    compare = [m for v in plan.compare_values if (m := _held(v, analytics.values(plan.group_by or "")))]
    kind = PLAN_KINDS[plan.measure]
    facet = plan.group_by
    if kind in ("top", "count") and facet not in (None, "category"):
        kind = "concentration"
    elif kind in ("top", "count") and facet == "category":  # counts by category: the top categories
        kind, facet = "top", None
    elif kind == "top":
        facet = None
    elif kind in ("rising", "falling") and facet is None:
        facet = "category" if not f.category else None
    if facet and facet in limits["fields"] and facet not in named:
        named.append(facet)
    window, previous = plan.window, plan.previous
    if window is not None and previous is not None:
        window, previous = _later_first(window, previous, analytics)
    intent = Intent(
        kind=kind,
        lang=output_language(question),
        category=f.category,
        facet=facet,
        values=values,
        window=window,
        previous=previous,
        sentiment=f.sentiment,
        sentiment_explicit=True,
        top_n=plan.limit or (10 if facet else 3),
        query=plan.keywords if kind == "examples" else None,
        interval=plan.interval or "week",
        named_fields=named,
        unused=_said_in(plan.not_understood, question),
        segment_words={"customer": f.customer} if f.customer else {},
        compare=compare,
        order=plan.order if kind == "rating" else None,
    )
    return intent, problems


# --------------------------------------------------------------------------- conversation


class Conversation:
    """The turns of one chat: questions, answers and what each question was understood as."""

    def __init__(self) -> None:
        """Start empty."""
        self.turns: list[tuple[str, Answer]] = []
        self.plans: list[tuple[str, str]] = []  # each question and its plan, as a model writes one
        self.last_intent: Intent | None = None

    def add(self, question: str, answer: Answer, intent: Intent) -> None:
        """Record a turn; an unanswerable question does not replace the slice being discussed."""
        self.turns.append((question, answer))
        try:
            self.plans.append((question, plan_request(intent).model_dump_json(exclude_defaults=True)))
        except ValueError:  # a slice no plan can hold (never seen): the model sees one turn fewer
            pass
        if intent.kind != "unknown":
            self.last_intent = intent

    def reset(self) -> None:
        """Forget everything."""
        self.turns.clear()
        self.plans.clear()
        self.last_intent = None
