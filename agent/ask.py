"""Question answering over the analytics tools, with or without a chat model.

No LLM: :func:`parse_question` reads the common questions in Chinese and English (top complaint
categories, one category's count against the period before, which carrier / product / channel /
region concentrates a slice, what is rising, examples) into an :class:`Intent`; :func:`answer_intent`
calls the tools and words the figures. Anything it does not understand gets a plain "I cannot
answer that" with the kinds of questions it can.

With an LLM: the model gets the same tools in a bounded loop (steps and deadline), and its final
answer is checked: every number in it must appear in a tool result (or the question). An answer
that fails the check, or a loop that does not finish, falls back to the router, and the result
says so. Either way the numbers come from :mod:`agent.tools`, never from the model.

A :class:`Conversation` keeps the turns, so "and the week before?" / "那前一周呢？" reuse the
previous question's slice with the window moved back one period.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from difflib import SequenceMatcher
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.grounded import grounded, number_problems, output_language
from agent.llm import ChatModel, Message, ToolRun, ToolTrace, run_tools
from agent.prompts import fence, load_data, load_prompt
from agent.tools import (
    Analytics,
    CompareInput,
    CompareOutput,
    CountByInput,
    CountByOutput,
    Filters,
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
from retrieval.taxonomy import Taxonomy

IntentKind = Literal[
    "top",
    "count",
    "concentration",
    "rising",
    "falling",
    "spikes",
    "examples",
    "why",
    "trend",
    "rating",
    "share",
    "urgent",
    "unknown",
]
MEASURES: tuple[IntentKind, ...] = ("why", "trend", "rating", "share", "urgent")
Lang = Literal["zh", "en"]
MAX_QUESTION_CHARS = 2000


class Answer(BaseModel):
    """What `ask` returns."""

    answer: str
    tool_calls: list[ToolTrace]
    citations: list[str] = Field(description="Ids of the records behind the figures.")
    path: Literal["rules", "llm"] = Field(description="Who wrote the answer: the rule-based router or the LLM.")
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


# --------------------------------------------------------------------------- vocabulary

CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "俩": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
EN_NUMBERS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
NUM = r"(\d+|[零〇一二两俩三四五六七八九十百]+|" + "|".join(EN_NUMBERS) + r"|a|an|a couple of|few)"

FACET_CUES: dict[str, list[str]] = {
    "carrier": [
        "shipping companies",
        "shipping company",
        "delivery company",
        "delivery companies",
        "logistics company",
        "logistics companies",
        "carriers",
        "carrier",
        "couriers",
        "courier company",
        "courier",
        "快递公司",
        "物流公司",
        "哪家快递",
        "哪个快递",
        "哪一家快递",
        "快递商",
        "承运商",
        "配送商",
        "哪家物流",
    ],
    "product": [
        "products",
        "product",
        "items",
        "item",
        "skus",
        "sku",
        "goods",
        "商品",
        "产品",
        "哪款",
        "哪个货",
        "单品",
        "型号",
        "货品",
        "宝贝",
    ],
    "channel": ["channels", "channel", "platforms", "platform", "渠道", "平台", "来源"],
    "region": [
        "regions",
        "region",
        "provinces",
        "province",
        "areas",
        "cities",
        "地区",
        "区域",
        "省份",
        "哪个省",
        "地域",
        "城市",
    ],
    "customer_tier": [
        "customer tiers",
        "customer tier",
        "membership level",
        "member level",
        "tiers",
        "tier",
        "会员等级",
        "客户等级",
        "会员级别",
    ],
}
CUES: dict[str, list[str]] = {
    "examples": [
        "examples",
        "example",
        "show me",
        "samples",
        "sample",
        "quotes",
        "quote",
        "verbatim",
        "what do they say",
        "what are they saying",
        "what did they say",
        "举例",
        "例子",
        "举几个",
        "看看",
        "原话",
        "具体内容",
        "典型",
        "给我看",
        "列几条",
        "看几条",
        "展示",
        "具体说了什么",
        "都说了什么",
        "说了些什么",
    ],
    "spikes": [
        "spike",
        "spikes",
        "spiking",
        "surge",
        "surged",
        "surging",
        "anomal",
        "emerging",
        "unusual",
        "sudden",
        "突增",
        "暴增",
        "激增",
        "飙升",
        "异常",
        "突然",
        "新冒出",
        "冒出来",
    ],
    "rising": [
        "rise",
        "rose",
        "rising",
        "risen",
        "increase",
        "increased",
        "increasing",
        "increases",
        "grew",
        "grow",
        "growing",
        "growth",
        "grown",
        "jump",
        "jumped",
        "up the most",
        "went up",
        "gone up",
        "going up",
        "trending",
        "worse",
        "climb",
        "climbed",
        "上升",
        "上涨",
        "增长",
        "增加",
        "增多",
        "涨",
        "变多",
        "多了",
        "多起来",
        "抬头",
        "恶化",
        "加剧",
        "升高",
        "多得最多",
        "增幅",
        "涨幅",
        "多出",
    ],
    "falling": [
        "fell",
        "fall",
        "falling",
        "drop",
        "dropped",
        "decline",
        "declined",
        "decrease",
        "decreased",
        "went down",
        "gone down",
        "improved",
        "下降",
        "减少",
        "变少",
        "少了",
        "回落",
        "好转",
        "降低",
    ],
    "count": [
        "how many",
        "number of",
        "count",
        "how much",
        "volume",
        "total",
        "多少",
        "几条",
        "几个",
        "数量",
        "有几",
        "总共",
        "一共",
        "总量",
    ],
    "compare": [
        " vs",
        "versus",
        "compared",
        "compare",
        "against",
        "than",
        "week before",
        "previous week",
        "prior week",
        "week over week",
        "week-over-week",
        "wow",
        "相比",
        "对比",
        "环比",
        "比起",
        "比上",
        "跟上",
        "和上",
        "与上",
    ],
    "top": [
        "most",
        "top",
        "biggest",
        "main",
        "mainly",
        "common",
        "frequent",
        "largest",
        "leading",
        "worst",
        "complaining about",
        "complain about",
        "complaints about what",
        "what are",
        "what issues",
        "which issues",
        "which category",
        "which categories",
        "what kind",
        "最多",
        "最主要",
        "主要",
        "最常见",
        "最大",
        "排名",
        "前几",
        "哪类",
        "哪一类",
        "哪个类",
        "哪些问题",
        "什么问题",
        "哪些方面",
        "哪方面",
        "什么方面",
        "吐槽什么",
        "抱怨什么",
        "投诉什么",
        "在抱怨",
        "在吐槽",
        "在投诉",
        "集中在",
    ],
    "concentrate": [
        "which",
        "behind",
        "concentrat",
        "driving",
        "responsible",
        "coming from",
        "come from",
        "mostly",
        "哪",
        "集中",
        "来自",
        "主要是",
        "出在",
    ],
    "negative": [
        "complain",
        "complaint",
        "complaints",
        "negative",
        "issue",
        "issues",
        "problem",
        "problems",
        "unhappy",
        "angry",
        "bad review",
        "投诉",
        "抱怨",
        "吐槽",
        "差评",
        "不满",
        "负面",
        "问题",
        "毛病",
    ],
    "positive": [
        "positive",
        "praise",
        "compliment",
        "happy",
        "satisfied",
        "good review",
        "好评",
        "表扬",
        "正面",
        "点赞",
        "满意",
        "夸",
    ],
    "all": [
        "all feedback",
        "feedback",
        "reviews",
        "messages",
        "mentions",
        "tickets",
        "反馈",
        "评价",
        "留言",
        "所有",
        "全部",
        "总量",
        "声量",
    ],
}
RELATIVE_PREVIOUS = [
    "the week before",
    "week before that",
    "before that",
    "the previous one",
    "previous period",
    "the period before",
    "month before",
    "the day before",
    "prior period",
    "前一周",
    "再前一周",
    "之前一周",
    "再往前",
    "那之前",
    "前一个月",
    "上一期",
    "前一期",
    "前一天",
]
FOLLOW_UP_OPENERS = (
    "and ",
    "what about",
    "how about",
    "and for",
    "same for",
    "那",
    "那么",
    "还有",
    "再看",
    "换成",
    "如果是",
)

QUESTION_HELP = {
    "zh": "我能回答这类问题：最近投诉最多的是什么；某类问题上周有多少、比前一周多还是少；某类问题主要集中在哪个快递/商品/渠道/地区；"
    "哪类问题涨得最多；给我看几条某类问题的例子。",
    "en": "I can answer questions like: what are customers complaining about most lately; how many <category> complaints "
    "last week vs the week before; which carrier / product / channel / region is behind <category> complaints; "
    "what is rising week over week; show examples of <category> complaints.",
}


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
                ok = (i == 0 or not _latin(self.s[i - 1])) and (
                    j == len(self.s) or not _latin(self.s[j]) or self.s[j] == "s"
                )
            if ok:
                if consume:
                    self.used[i:j] = [True] * (j - i)
                return i
            start = i + 1
        return -1

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

WINDOW_WORDS: list[tuple[list[str], dict[str, int]]] = [
    (["week before last", "the week before last", "上上周", "上上个星期", "上上星期", "上上个礼拜"], {"weeks_ago": 2}),
    (
        [
            "last week",
            "previous week",
            "prior week",
            "上周",
            "上星期",
            "上个星期",
            "上个礼拜",
            "上礼拜",
            "上一周",
            "上一个星期",
        ],
        {"weeks_ago": 1},
    ),
    (
        ["this week", "so far this week", "本周", "这周", "这星期", "这个星期", "本星期", "这礼拜", "这一周"],
        {"weeks_ago": 0},
    ),
    (["month before last", "上上个月", "上上月"], {"months_ago": 2}),
    (["last month", "previous month", "上个月", "上月", "上一个月"], {"months_ago": 1}),
    (["this month", "本月", "这个月", "这月"], {"months_ago": 0}),
    (
        ["past week", "past 7 days", "最近一周", "近一周", "过去一周", "最近7天", "近7天", "最近七天", "近七天"],
        {"days": 7},
    ),
    (["past month", "最近一个月", "近一个月", "过去一个月", "近一月", "最近一月"], {"days": 30}),
    (["yesterday", "昨天", "昨日"], {"yesterday": 1}),
    (["today", "今天", "今日"], {"today": 1}),
    (
        [
            "lately",
            "recently",
            "these days",
            "of late",
            "recent",
            "最近",
            "近期",
            "这段时间",
            "近来",
            "这阵子",
            "这几天",
        ],
        {"days": 7},
    ),
]


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


def _match_values(t: _Text, analytics: Analytics) -> dict[str, str]:
    """Product / carrier / channel / region / tier values named in the question (exact, then fuzzy)."""
    found: dict[str, str] = {}
    squeezed = t.s.replace(" ", "")
    for facet in ("product", "carrier", "channel", "region", "customer_tier"):
        values = sorted(analytics.values(facet), key=len, reverse=True)
        for v in values:
            if len(v) < 2:
                continue
            if t.find(v.lower()) >= 0 or (" " in v and v.lower().replace(" ", "") in squeezed):
                found[facet] = v
                break
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
    values = _match_values(t, analytics)
    lang = output_language("".join(" " if u else c for c, u in zip(t.s, t.used, strict=True)))
    relative = t.first(RELATIVE_PREVIOUS) is not None
    windows = _windows(t, analytics.as_of.date())
    facet, category = _match_terms(t, taxonomy)
    if facet == "carrier" and category is None and "logistics" in taxonomy.category_ids():
        category = "logistics"

    cues = {name: t.has(words) for name, words in CUES.items()}
    positive = cues["positive"] or category in ("praise",)
    if category in ("praise", "suggestion", "other"):
        sentiment, explicit = None, True
    elif positive and not cues["negative"]:
        sentiment, explicit = "positive", True
    elif cues["all"] and not cues["negative"]:
        sentiment, explicit = None, True
    else:
        sentiment, explicit = "negative", cues["negative"]

    cued = True
    if cues["examples"]:
        kind: IntentKind = "examples"
    elif cues["spikes"] and not facet:
        kind = "spikes"
    elif (cues["rising"] or cues["falling"]) and category and not facet:
        kind = "count"  # "did refund complaints go up?": that category against the period before
    elif cues["rising"]:
        kind = "rising"
    elif cues["falling"]:
        kind = "falling"
    elif facet and (cues["concentrate"] or cues["top"] or cues["count"]):
        kind = "concentration"
    elif facet and category:
        kind = "concentration"
    elif (cues["count"] or cues["compare"]) and (category or values or cues["negative"] or cues["all"] or positive):
        kind = "count"
    elif cues["top"] and not category:
        kind = "top"
    elif category or values:
        kind, cued = "count", False
    elif cues["negative"] or cues["top"]:
        kind = "top"
    else:
        kind = "unknown"
    limits = ask_limits()
    measure = next((m for m in MEASURES if t.has(limits["measures"][m]["cues"])), None)
    if measure is not None and kind != "examples":
        kind, cued = measure, True
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
        top_n=_top_n(t) or 3,
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
            a, b = windows[0][1], windows[1][1]
            if analytics.resolve(a).start < analytics.resolve(b).start:
                a, b = b, a
            intent.window, intent.previous = a, b
    if kind == "examples":
        intent.query = None if (category or values) else _leftover(t)
    if kind == "trend" and t.has(limits["measures"]["trend"]["daily"]):
        intent.interval = "day"
    intent.named_fields = [f for f, spec in limits["fields"].items() if t.has(spec["cues"])]
    return intent


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
    merged = replace(previous, lang=intent.lang, query=previous.query)
    if intent.category and intent.category != previous.category:
        merged.category = intent.category
    if intent.values:
        merged.values = dict(intent.values)
        if merged.kind == "concentration" and merged.facet in intent.values:
            merged.kind = "count"  # "which carrier ...?" then "and 顺捷速递?": that carrier's count
    if intent.facet and intent.kind == "concentration":
        merged.facet = intent.facet
    if intent.sentiment_explicit:
        merged.sentiment, merged.sentiment_explicit = intent.sentiment, True
    if intent.window is not None:
        merged.window, merged.previous = intent.window, intent.previous
    elif intent.shift:
        merged.window, merged.previous = _shift(previous.window, previous.kind, analytics), None
    merged.shift = 0
    return merged


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


DEFAULT_WINDOWS: dict[str, dict[str, int]] = {
    "top": {"days": 30},
    "count": {"days": 30},
    "concentration": {"days": 30},
    "examples": {"days": 30},
    "rising": {"weeks_ago": 1},
    "falling": {"weeks_ago": 1},
    "spikes": {"weeks_ago": 1},
    "unknown": {"days": 30},
    "why": {"days": 30},
    "trend": {"days": 56},
    "rating": {"days": 30},
    "share": {"days": 30},
    "urgent": {"days": 7},
}


# --------------------------------------------------------------------------- wording

FACET_NAMES = {
    "zh": {
        "category": "类别",
        "carrier": "快递公司",
        "product": "商品",
        "channel": "渠道",
        "region": "地区",
        "customer_tier": "客户等级",
        "sentiment": "情感",
        "urgency": "紧急程度",
        "subcategory": "子类别",
        "language": "语言",
    },
    "en": {"customer_tier": "customer tier"},
}
SENTIMENT_WORDS = {
    "zh": {"negative": "投诉（负面反馈）", "positive": "正面反馈", "neutral": "中性反馈", None: "反馈"},
    "en": {
        "negative": "complaints (negative feedback)",
        "positive": "positive feedback",
        "neutral": "neutral feedback",
        None: "feedback records",
    },
}


class _Words:
    """Language-specific wording of labels, windows and figures."""

    def __init__(self, lang: Lang, taxonomy: Taxonomy) -> None:
        self.lang = lang
        self.labels = {lab.id: lab for lab in taxonomy.labels_of("category")}

    def label(self, cid: str) -> str:
        lab = self.labels.get(cid)
        name = (lab.name_zh if self.lang == "zh" else lab.name_en) if lab else None
        return f"{name} ({cid})" if name and name != cid else cid

    def value(self, facet: str | None, v: str) -> str:
        return self.label(v) if facet in (None, "category") else v

    def facet(self, facet: str) -> str:
        return FACET_NAMES[self.lang].get(facet, facet)

    def period(self, p: dict[str, str]) -> str:
        label = p["label"]
        if self.lang == "zh":
            label = re.sub(r"^last (\d+) days$", r"最近\1天", label)
            label = re.sub(r"^the (\d+) days before$", r"此前\1天", label)
            label = {"today": "今天", "the day before": "前一天"}.get(label, label)
            span = p["from"] if p["from"] == p["to"] else f"{p['from']} 至 {p['to']}"
            return f"{label}（{span}）" if ".." not in label else span
        span = p["from"] if p["from"] == p["to"] else f"{p['from']} to {p['to']}"
        return f"{label} ({span})" if ".." not in label else span

    def sentiment(self, s: str | None) -> str:
        return SENTIMENT_WORDS[self.lang][s]

    def pct(self, part: int, whole: int) -> str:
        return f"{part / whole * 100:.1f}%" if whole else "-"

    def change(self, a: int, b: int) -> str:
        d = a - b
        pct = f", {d / b * 100:+.1f}%" if b else ""
        if self.lang == "zh":
            if d == 0:
                return "持平"
            return f"{'增加' if d > 0 else '减少'} {abs(d)} 条" + (f"（{d / b * 100:+.1f}%）" if b else "")
        return "unchanged" if d == 0 else f"{'up' if d > 0 else 'down'} {abs(d)}{pct}"

    def scope(self, intent: Intent) -> str:
        """The slice in words: facet values, then the category ("云达快运 物流配送 (logistics) 类")."""
        parts = list(intent.values.values())
        if intent.category:
            parts.append(self.label(intent.category) + (" 类" if self.lang == "zh" else ""))
        return " ".join(parts) + (" " if parts and self.lang == "en" else "")


class Asker:
    """Answers questions about one store at one as-of time."""

    def __init__(
        self, analytics: Analytics, taxonomy: Taxonomy, model: ChatModel | None = None, *, max_steps: int = 6
    ) -> None:
        """Bind the tools, the taxonomy and an optional chat model (None: the router only)."""
        self.analytics = analytics
        self.taxonomy = taxonomy
        self.model = model
        self.max_steps = max_steps

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
        answer = self._rules(intent)
        if self.model is not None:
            llm_answer, reason = self._llm(question, convo)
            if llm_answer is not None:
                answer = llm_answer
            else:
                answer.fallback_reason = reason
        convo.add(question, answer, intent)
        return answer

    # ------------------------------------------------------------------ rules
    def _rules(self, intent: Intent) -> Answer:
        words = _Words(intent.lang, self.taxonomy)
        traces: list[ToolTrace] = []
        handler = getattr(self, f"_{intent.kind}")
        text = handler(intent, words, traces)
        if intent.kind != "unknown":
            gap = self.analytics.emptiness(self.analytics.resolve(self._window(intent)), intent.lang)
            if gap is not None:  # the window holds no feedback at all, whatever was asked about it
                text = f"{gap} {text}" if intent.lang == "en" else gap + text
        missing = self._missing_fields(intent)
        if missing and intent.kind != "unknown":  # said first: the answer covers everyone, not the slice asked
            text = " ".join(missing) + (" " if intent.lang == "en" else "") + text
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
        )

    def _missing_fields(self, intent: Intent) -> list[str]:
        """A sentence for each field the question names that the store holds no value of."""
        limits = ask_limits()
        notes = []
        for name in intent.named_fields:
            if name == "rating" and intent.kind == "rating":
                continue  # the rating answer says itself when nothing is rated
            label = limits["fields"][name][intent.lang]
            if name == "rating":
                if not self.analytics.ratings(RatingInput(window=Window(days=3660))).rated:
                    notes.append(limits["notes"]["missing_field"][intent.lang].format(field=label))
                continue
            held = self.analytics.values(name)
            if not held:
                notes.append(limits["notes"]["missing_field"][intent.lang].format(field=label))
            elif name not in intent.values and not (intent.kind == "concentration" and intent.facet == name):
                # named ("华东", "VIP") but matching no value the records hold: said, not dropped
                notes.append(
                    limits["notes"]["unmatched_value"][intent.lang].format(
                        field=label, examples="、".join(held[:4]) if intent.lang == "zh" else ", ".join(held[:4])
                    )
                )
        return notes

    def _call(self, traces: list[ToolTrace], name: str, fn: Any, args: BaseModel) -> Any:
        result = fn(args)
        traces.append(
            ToolTrace(
                tool=name, args=args.model_dump(mode="json", exclude_none=True), result=result.model_dump(mode="json")
            )
        )
        return result

    def _filters(self, intent: Intent, with_sentiment: bool = True, with_category: bool = True) -> Filters:
        return Filters(
            sentiment=intent.sentiment if with_sentiment else None,
            category=intent.category if with_category else None,
            **intent.values,
        )

    def _window(self, intent: Intent) -> Window:
        return intent.window or Window(**DEFAULT_WINDOWS[intent.kind])

    def _top(self, intent: Intent, w: _Words, traces: list[ToolTrace]) -> str:
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
        scope = w.scope(replace(intent, category=None))
        if not rows:
            return f"{win}没有{scope}{sent}记录。" if w.lang == "zh" else f"No {scope}{sent} in {win}."
        first, rest = rows[0], rows[1:]
        ties = [r for r in rest if r.current == first.current]
        if w.lang == "zh":
            text = f"{win}共有 {total} 条{scope}{sent}。最多的是 {w.label(first.value)}：{first.current} 条，占 {w.pct(first.current, total)}"
            text += f"（{prev} 为 {first.previous} 条，{w.change(first.current, first.previous)}）"
            if ties:
                text += "；并列的还有 " + "、".join(w.label(r.value) for r in ties)
            others = [r for r in rest if r not in ties]
            if others:
                text += "；其次是 " + "、".join(
                    f"{w.label(r.value)} {r.current} 条（{w.pct(r.current, total)}）" for r in others
                )
            text += "。"
        else:
            text = (
                f"In {win} there were {total} {scope}{sent}. The most common category is {w.label(first.value)}: "
                f"{first.current} ({w.pct(first.current, total)}; {prev}: {first.previous}, "
                f"{w.change(first.current, first.previous)})"
            )
            if ties:
                text += "; tied with " + ", ".join(w.label(r.value) for r in ties)
            others = [r for r in rest if r not in ties]
            if others:
                text += "; then " + ", ".join(
                    f"{w.label(r.value)} {r.current} ({w.pct(r.current, total)})" for r in others
                )
            text += "."
        return text + self._evidence(w, first.example_ids)

    def _evidence(self, w: _Words, ids: list[str]) -> str:
        if not ids:
            return ""
        return (" 例：" if w.lang == "zh" else " Examples: ") + ", ".join(ids[:3])

    def _count(self, intent: Intent, w: _Words, traces: list[ToolTrace]) -> str:
        window = self._window(intent)
        res: CompareOutput = self._call(
            traces,
            "compare_periods",
            self.analytics.compare_periods,
            CompareInput(window=window, previous=intent.previous, field=None, filters=self._filters(intent)),
        )
        win, prev = w.period(res.current_period), w.period(res.previous_period)
        scope, sent = w.scope(intent), w.sentiment(intent.sentiment)
        a, b = res.total_current, res.total_previous
        if w.lang == "zh":
            text = f"{win}{scope}{sent}共 {a} 条；{prev} 为 {b} 条，{w.change(a, b)}。"
        else:
            text = f"{scope}{sent} in {win}: {a}; in {prev}: {b} ({w.change(a, b)})."
        if not intent.sentiment_explicit and intent.sentiment and (intent.category or intent.values):
            every: CompareOutput = self._call(
                traces,
                "compare_periods",
                self.analytics.compare_periods,
                CompareInput(
                    window=window,
                    previous=intent.previous,
                    field=None,
                    filters=self._filters(intent, with_sentiment=False),
                ),
            )
            if (every.total_current, every.total_previous) != (a, b):
                text += (
                    f" 如把中性和正面反馈也算上，共 {every.total_current} 条 / {every.total_previous} 条。"
                    if w.lang == "zh"
                    else f" Counting every sentiment: {every.total_current} / {every.total_previous}."
                )
        return text + self._evidence(w, res.example_ids)

    def _concentration(self, intent: Intent, w: _Words, traces: list[ToolTrace]) -> str:
        facet = intent.facet or "product"
        window = self._window(intent)
        res: CountByOutput = self._call(
            traces,
            "top_facets",
            self.analytics.top,
            TopInput(facet=facet, window=window, filters=self._filters(intent), n=max(intent.top_n, 3)),
        )
        win, scope, sent, fname = w.period(res.period), w.scope(intent), w.sentiment(intent.sentiment), w.facet(facet)
        if not res.groups:
            return (
                f"{win}没有带{fname}的{scope}{sent}。"
                if w.lang == "zh"
                else f"No {scope}{sent} with a {fname} in {win}."
            )
        base: CountByOutput = self._call(
            traces,
            "count_by",
            self.analytics.count_by,
            CountByInput(
                field=facet, window=window, filters=Filters(**{k: v for k, v in intent.values.items() if k != facet})
            ),
        )
        base_share = {g.value: g.share for g in base.groups}
        first, rest = res.groups[0], res.groups[1:]
        known = res.with_value
        if w.lang == "zh":
            text = f"{win}{scope}{sent}共 {res.total} 条"
            text += f"（其中 {known} 条有{fname}信息）" if known != res.total else ""
            text += (
                f"，最集中的{fname}是 {w.value(facet, first.value)}：{first.count} 条，占 {w.pct(first.count, known)}"
            )
            if first.value in base_share:
                text += (
                    f"（而它在同期全部反馈中只占 {base_share[first.value] * 100:.1f}%）"
                    if base_share[first.value] < first.share
                    else ""
                )
            if rest:
                text += "；其次是 " + "、".join(
                    f"{w.value(facet, g.value)} {g.count} 条（{w.pct(g.count, known)}）" for g in rest
                )
            text += "。"
        else:
            text = f"Of {res.total} {scope}{sent} in {win}"
            text += f" ({known} with a {fname})" if known != res.total else ""
            text += f", the top {fname} is {w.value(facet, first.value)}: {first.count} ({w.pct(first.count, known)})"
            if first.value in base_share and base_share[first.value] < first.share:
                text += f", against {base_share[first.value] * 100:.1f}% of all feedback in the same period"
            if rest:
                text += "; then " + ", ".join(
                    f"{w.value(facet, g.value)} {g.count} ({w.pct(g.count, known)})" for g in rest
                )
            text += "."
        return text + self._evidence(w, first.example_ids)

    def _rising(self, intent: Intent, w: _Words, traces: list[ToolTrace], falling: bool = False) -> str:
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
            w.scope(replace(intent, category=intent.category if field != "category" else None)),
            w.sentiment(intent.sentiment),
            w.facet(field),
        )
        if not rows:
            if w.lang == "zh":
                return f"{win}与{prev}相比，没有哪个{fname}的{scope}{sent}{'减少' if falling else '增加'}。"
            return f"No {fname} had {'fewer' if falling else 'more'} {scope}{sent} in {win} than in {prev}."
        first, rest = rows[0], rows[1:]
        if w.lang == "zh":
            verb = "减少" if falling else "增长"
            text = (
                f"{win}与{prev}相比，{scope}{sent}{verb}最多的{fname}是 {w.value(field, first.value)}："
                f"{first.current} 条，此前 {first.previous} 条，{w.change(first.current, first.previous)}"
            )
            if rest:
                text += "；其次是 " + "、".join(
                    f"{w.value(field, r.value)}（{r.previous} → {r.current} 条）" for r in rest
                )
            text += f"。总量 {res.total_previous} → {res.total_current} 条。"
        else:
            verb = "fell" if falling else "rose"
            text = (
                f"Comparing {win} with {prev}, the {fname} whose {scope}{sent} {verb} most is "
                f"{w.value(field, first.value)}: {first.current}, from {first.previous} "
                f"({w.change(first.current, first.previous)})"
            )
            if rest:
                text += "; then " + ", ".join(f"{w.value(field, r.value)} ({r.previous} -> {r.current})" for r in rest)
            text += f". Total {res.total_previous} -> {res.total_current}."
        return text + self._evidence(w, first.example_ids)

    def _falling(self, intent: Intent, w: _Words, traces: list[ToolTrace]) -> str:
        return self._rising(intent, w, traces, falling=True)

    def _spikes(self, intent: Intent, w: _Words, traces: list[ToolTrace]) -> str:
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
            return (
                f"{win}没有明显突增的{sent}类别（与此前 {n_base} 周的平均水平相比）。"
                if w.lang == "zh"
                else f"No category of {sent} spiked in {win} against its average of the {n_base} weeks before."
            )
        parts = []
        for s in spikes[:3]:
            if w.lang == "zh":
                parts.append(
                    f"{w.label(s.value)}：{s.current} 条，此前 {n_base} 周平均 {s.baseline_mean:g} 条（{'、'.join(map(str, s.baseline))}）"
                )
            else:
                parts.append(
                    f"{w.label(s.value)}: {s.current} against a {n_base}-week average of {s.baseline_mean:g} "
                    f"({', '.join(map(str, s.baseline))})"
                )
        head = f"{win}出现突增的{sent}：" if w.lang == "zh" else f"Spikes of {sent} in {win}: "
        return (
            head
            + ("；" if w.lang == "zh" else "; ").join(parts)
            + ("。" if w.lang == "zh" else ".")
            + self._evidence(w, spikes[0].example_ids)
        )

    def _examples(self, intent: Intent, w: _Words, traces: list[ToolTrace]) -> str:
        res: SearchOutput = self._call(
            traces,
            "search_quotes",
            self.analytics.search_quotes,
            SearchInput(query=intent.query, window=self._window(intent), filters=self._filters(intent), k=5),
        )
        win, scope, sent = w.period(res.period), w.scope(intent), w.sentiment(intent.sentiment)
        if not res.quotes:
            return f"{win}没有找到{scope}{sent}。" if w.lang == "zh" else f"No {scope}{sent} found in {win}."
        head = f"{win}{scope}{sent}的例子：" if w.lang == "zh" else f"Examples of {scope}{sent} in {win}:"
        lines = [f"- [{q.id}] {q.created_at[:10]} {' '.join(q.text.split())[:160]}" for q in res.quotes]
        return head + "\n" + "\n".join(lines)

    def _why(self, intent: Intent, w: _Words, traces: list[ToolTrace]) -> str:
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
            text += (" 建议：" if w.lang == "zh" else " Suggested: ") + rc.actions[0]
        return text

    def _trend(self, intent: Intent, w: _Words, traces: list[ToolTrace]) -> str:
        """Counts per week (or day) over the window's span, oldest first."""
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
                filters=self._filters(intent),
            ),
        )
        scope, sent = w.scope(intent), w.sentiment(intent.sentiment)
        pairs = ", ".join(f"{p} {c}" for p, c in zip(res.periods, res.totals, strict=True))
        first, last = res.totals[0], res.totals[-1]
        if w.lang == "zh":
            unit = "周" if intent.interval == "week" else "天"
            return (
                f"{scope}{sent}最近 {periods} {unit}的走势（每{unit}条数）：{pairs}。"
                f"从 {first} 条到 {last} 条，{w.change(last, first)}。"
            )
        unit = "weeks" if intent.interval == "week" else "days"
        return (
            f"{scope}{sent} over the last {periods} {unit} (count per {unit[:-1]}): {pairs}. "
            f"From {first} to {last} ({w.change(last, first)})."
        )

    def _rating(self, intent: Intent, w: _Words, traces: list[ToolTrace]) -> str:
        """Average rating, distribution and CSAT of the slice (every sentiment: ratings are their own)."""
        res: RatingOutput = self._call(
            traces,
            "ratings",
            self.analytics.ratings,
            RatingInput(window=self._window(intent), filters=self._filters(intent, with_sentiment=False)),
        )
        win, scope = w.period(res.period), w.scope(intent)
        if not res.rated:
            none: str = ask_limits()["notes"]["no_ratings"][w.lang]
            return f"{win}{scope}{none}"
        dist = ", ".join(f"{k}★ {v}" for k, v in sorted(res.distribution.items(), reverse=True))
        csat = f"{(res.csat or 0) * 100:.1f}%"
        if w.lang == "zh":
            return (
                f"{win}{scope}有评分的反馈 {res.rated} 条（共 {res.total} 条），平均 {res.average} 分；"
                f"满意度 CSAT（4-5 星占比）{csat}；分布：{dist}。"
            ) + self._evidence(w, res.example_ids)
        return (
            f"In {win}, {res.rated} {scope}records of {res.total} carry a rating: average {res.average}; "
            f"CSAT (share of 4-5 stars) {csat}; distribution: {dist}."
        ) + self._evidence(w, res.example_ids)

    def _share(self, intent: Intent, w: _Words, traces: list[ToolTrace]) -> str:
        """The slice's share of all feedback (complaints by default), against the period before."""
        window = self._window(intent)
        part: CompareOutput = self._call(
            traces,
            "compare_periods",
            self.analytics.compare_periods,
            CompareInput(window=window, previous=intent.previous, field=None, filters=self._filters(intent)),
        )
        whole: CompareOutput = self._call(
            traces,
            "compare_periods",
            self.analytics.compare_periods,
            CompareInput(window=window, previous=intent.previous, field=None, filters=Filters()),
        )
        win, prev = w.period(part.current_period), w.period(part.previous_period)
        scope, sent = w.scope(intent), w.sentiment(intent.sentiment)
        a, b = w.pct(part.total_current, whole.total_current), w.pct(part.total_previous, whole.total_previous)
        if w.lang == "zh":
            return (
                f"{win}{scope}{sent}占全部反馈的 {a}（{part.total_current}/{whole.total_current}）；"
                f"{prev}为 {b}（{part.total_previous}/{whole.total_previous}）。"
            ) + self._evidence(w, part.example_ids)
        return (
            f"{scope}{sent} were {a} of all feedback in {win} ({part.total_current} of {whole.total_current}); "
            f"{b} in {prev} ({part.total_previous} of {whole.total_previous})."
        ) + self._evidence(w, part.example_ids)

    def _urgent(self, intent: Intent, w: _Words, traces: list[ToolTrace]) -> str:
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
                cats = ("、" if w.lang == "zh" else ", ").join(f"{w.label(g.value)} {g.count}" for g in res.groups)
                guessed = self.analytics.label_sources("urgency", level, window, f).get("model", 0)
                note = (
                    (f"；其中 {guessed} 条由模型判断" if w.lang == "zh" else f"; {guessed} labelled by the model")
                    if guessed
                    else ""
                )
                lines.append(
                    f"{level} {res.total}（{cats}{note}）" if w.lang == "zh" else f"{level} {res.total} ({cats}{note})"
                )
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
            return (
                f"{win}没有 critical 或 high 紧急程度的反馈。"
                if w.lang == "zh"
                else f"No critical or high-urgency feedback in {win}."
            )
        head = (
            (f"{win}需要优先处理的反馈：" + "；".join(lines) + "。")
            if w.lang == "zh"
            else f"Feedback to act on first in {win}: " + "; ".join(lines) + "."
        )
        items = [f"- [{q.id}] {q.created_at[:10]} {' '.join(q.text.split())[:120]}" for q in quotes.quotes]
        return head + ("\n" + "\n".join(items) if items else "")

    def _unknown(self, intent: Intent, w: _Words, traces: list[ToolTrace]) -> str:
        if w.lang == "zh":
            return "抱歉，我没有理解这个问题，无法从数据中回答。" + QUESTION_HELP["zh"]
        return "Sorry, I did not understand that question, so I cannot answer it from the data. " + QUESTION_HELP["en"]

    # ------------------------------------------------------------------ LLM
    def _llm(self, question: str, convo: Conversation) -> tuple[Answer | None, str | None]:
        model = self.model
        assert model is not None
        prompt = load_prompt("ask")
        cats = "\n".join(
            f"- {lab.id}: {lab.name_en or ''} {lab.name_zh or ''}".rstrip()
            for lab in self.taxonomy.labels_of("category")
        )
        system = prompt.render(
            as_of=self.analytics.as_of.isoformat(),
            categories=cats,
            this_week=self.analytics.resolve(Window(weeks_ago=0)).label,
        )
        messages = [Message(role="system", content=system)]
        for q, a in convo.turns[-4:]:
            messages += [
                Message(role="user", content=fence(q, "question")),
                Message(role="assistant", content=a.answer),
            ]
        messages.append(Message(role="user", content=fence(question, "question")))
        tools = self.analytics.tools()

        def call(msgs: list[Message]) -> ToolRun:
            return run_tools(model, msgs, tools, max_steps=self.max_steps, prompt_version=prompt.ref)

        def check(run: ToolRun) -> list[str]:
            good = [t for t in run.trace if t.error is None]
            if not run.finished:
                return [f"the model did not finish within {self.max_steps} steps"]
            if not good:
                return ["the model answered without calling a tool"]
            if not run.answer.strip():
                return ["the model returned an empty answer"]
            return number_problems(run.answer, [t.result for t in good], question)

        # One attempt: a re-ask repeats the whole tool loop (up to max_steps calls), and the
        # router answers the question itself when the model's answer is rejected.
        got = grounded(call, messages, check, show=lambda r: r.answer, attempts=1)
        if got.value is None:
            return None, got.fallback_reason
        run = got.value
        good = [t for t in run.trace if t.error is None]
        lang = output_language(question)
        evidence = evidence_ids([t.result for t in good])
        cited = [i for i in evidence if i in run.answer] or evidence[:10]
        return Answer(
            answer=run.answer.strip(),
            tool_calls=run.trace,
            citations=cited,
            path="llm",
            language=lang,
            as_of=self.analytics.as_of.isoformat(),
            prompt_version=prompt.ref,
        ), None


# --------------------------------------------------------------------------- conversation


class Conversation:
    """The turns of one chat: questions, answers and what each question was understood as."""

    def __init__(self) -> None:
        """Start empty."""
        self.turns: list[tuple[str, Answer]] = []
        self.last_intent: Intent | None = None

    def add(self, question: str, answer: Answer, intent: Intent) -> None:
        """Record a turn; an unanswerable question does not replace the slice being discussed."""
        self.turns.append((question, answer))
        if intent.kind != "unknown":
            self.last_intent = intent

    def reset(self) -> None:
        """Forget everything."""
        self.turns.clear()
        self.last_intent = None
