"""Record models for feedback and resolutions, and the parsing of raw input rows into them.

A raw row is a ``dict`` of already-mapped field names to cell values (strings from CSV, typed
values from JSONL/XLSX). Parsing validates every field and raises :class:`RowError` with a
one-line reason, which ingestion writes to the rejects file.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from retrieval.errors import RowError
from retrieval.taxonomy import Taxonomy

MAX_TEXT_CHARS = 20_000
Language = Literal["zh", "en", "mixed"]

FEEDBACK_FIELDS = (
    "id",
    "text",
    "created_at",
    "channel",
    "customer_tier",
    "customer_id",
    "order_id",
    "product",
    "sku",
    "carrier",
    "region",
    "rating",
    "nps",
    "category",
    "subcategory",
    "sentiment",
    "urgency",
)
RESOLUTION_FIELDS = (
    "id",
    "feedback_id",
    "action",
    "reply",
    "outcome",
    "compensation",
    "resolved_at",
)
# Input headers that map to a field without --map (lower-cased, Chinese back-office spellings).
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("record_id", "编号", "评价id", "反馈id"),
    "text": (
        "content",
        "review",
        "comment",
        "feedback",
        "message",
        "instruction",
        "评价内容",
        "内容",
        "评论",
        "评价",
        "反馈内容",
        "留言",
    ),
    "created_at": ("created", "date", "time", "timestamp", "评价时间", "时间", "日期", "创建时间", "反馈时间"),
    "channel": ("source", "渠道", "来源"),
    "customer_tier": ("tier", "member_level", "会员等级", "客户等级"),
    "customer_id": (
        "customer",
        "user_id",
        "buyer_id",
        "member_id",
        "客户id",
        "客户编号",
        "用户id",
        "用户编号",
        "买家id",
        "会员id",
        "会员编号",
    ),
    "order_id": ("order", "order_no", "订单号", "订单编号"),
    "product": ("product_name", "item", "商品", "商品名称", "产品"),
    "sku": ("sku_id", "规格编码"),
    "carrier": ("courier", "快递公司", "物流公司", "承运商"),
    "region": ("province", "city", "地区", "省份", "区域"),
    "rating": ("score", "stars", "评分", "星级"),
    "nps": ("nps_score", "likelihood_to_recommend", "recommend_score", "推荐意愿", "推荐度", "推荐分", "nps评分"),
    "category": ("类别", "分类", "问题类型"),
    "sentiment": ("情感", "情绪"),
    "urgency": ("紧急程度", "优先级"),
    "feedback_id": ("反馈编号",),
    "action": ("处理措施", "处理方式"),
    "reply": ("response", "回复", "客服回复"),
    "outcome": ("status", "处理结果", "结果"),
    "compensation": ("补偿",),
    "resolved_at": ("处理时间", "解决时间"),
}


class LabelSource(StrEnum):
    """Who set a label. Human labels win over imported ones, which win over machine ones: a rule
    of the taxonomy (an unmistakable case: injury, regulator, double charge ...) or the model."""

    IMPORT = "import"
    RULE = "rule"
    MODEL = "model"
    HUMAN = "human"


TRUSTED_SOURCES = (LabelSource.IMPORT, LabelSource.HUMAN)  # labels a person stands behind
MACHINE_SOURCES = (LabelSource.RULE, LabelSource.MODEL)  # labels a later, better pass may replace


class LabelValue(BaseModel):
    """A label id and where it came from."""

    model_config = ConfigDict(extra="forbid")

    value: str
    source: LabelSource
    basis: str | None = Field(
        default=None, description="What a machine label rests on: the rule that fired, or the neighbours."
    )


class Labels(BaseModel):
    """The four label fields of a feedback record, each optional."""

    model_config = ConfigDict(extra="forbid")

    category: LabelValue | None = None
    subcategory: LabelValue | None = None
    sentiment: LabelValue | None = None
    urgency: LabelValue | None = None


class Feedback(BaseModel):
    """One piece of customer feedback (review, chat, ticket, social post)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Given id, or fb_ + hash of channel, text and created_at.")
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    created_at: datetime = Field(description="Timezone-aware creation time.")
    created_at_source: Literal["given", "import_time"] = "given"
    channel: str | None = None
    customer_tier: str | None = None
    customer_id: str | None = Field(default=None, description="Links a customer's contacts, orders and reviews.")
    order_id: str | None = None
    product: str | None = None
    sku: str | None = None
    carrier: str | None = None
    region: str | None = None
    rating: float | None = Field(default=None, ge=0, le=5)
    nps: int | None = Field(default=None, ge=0, le=10, description="0-10 likelihood to recommend.")
    language: Language
    labels: Labels = Field(default_factory=Labels)
    extra: dict[str, str] = Field(default_factory=dict, description="Unmapped input columns.")


Outcome = Literal["resolved", "unresolved", "escalated"]


class Resolution(BaseModel):
    """How a feedback case was handled, linked to it by ``feedback_id``."""

    model_config = ConfigDict(extra="forbid")

    id: str
    feedback_id: str
    action: str = Field(description="What was done (refund, resend, voucher, explanation...).")
    reply: str = Field(default="", description="The reply sent to the customer.")
    outcome: Outcome
    compensation: str | None = Field(default=None, description="Refund or voucher, if any.")
    resolved_at: datetime | None = None
    extra: dict[str, str] = Field(default_factory=dict)

    @property
    def text(self) -> str:
        """The searchable text of a resolution."""
        return f"{self.action}\n{self.reply}".strip()


# --------------------------------------------------------------------------- language

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def detect_language(text: str) -> Language:
    """Classify text as ``zh``, ``en`` or ``mixed`` by its share of CJK characters.

    One CJK character carries about as much as half an English word, so counts are weighed
    accordingly. Text with neither (emoji, digits) is ``zh``, the product's primary language.
    """
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN_WORD.findall(text))
    if cjk == 0:
        return "en" if latin else "zh"
    if latin == 0:
        return "zh"
    share = cjk / (cjk + 2.0 * latin)
    if share >= 0.75:
        return "zh"
    if share <= 0.25:
        return "en"
    return "mixed"


# --------------------------------------------------------------------------- time


def get_zone(name: str) -> tzinfo:
    """Resolve an IANA zone name, raising ``ValueError`` with the name on failure."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name like Asia/Shanghai)") from None


_DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%Y.%m.%d %H:%M:%S",
    "%Y.%m.%d %H:%M",
    "%Y.%m.%d",
    "%Y%m%d %H:%M:%S",
    "%Y%m%d",
    "%Y年%m月%d日 %H:%M:%S",
    "%Y年%m月%d日 %H:%M",
    "%Y年%m月%d日%H:%M",
    "%Y年%m月%d日",
)
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# User-given reference times (as-of, since, until, report weeks) must leave room for the windows
# computed from them (a year back, a week ahead) inside what datetime can hold.
REFERENCE_YEARS = (2000, 2100)


def check_reference_year(year: int, what: str) -> None:
    """Raise ``ValueError`` for a reference time outside :data:`REFERENCE_YEARS`."""
    lo, hi = REFERENCE_YEARS
    if not lo <= year <= hi:
        raise ValueError(f"{what} is outside the years {lo}-{hi}")


def parse_datetime(value: Any, zone: tzinfo) -> datetime:
    """Parse a timestamp cell into an aware datetime; naive values take ``zone``.

    Accepts datetime/date objects (XLSX), epoch seconds or milliseconds, ISO 8601 and the usual
    Chinese back-office spellings (``2026/11/20 14:03``, ``2026年11月20日``).

    Raises:
        ValueError: the value is not a date this function can read unambiguously.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value, time())
    elif isinstance(value, int | float) and not isinstance(value, bool):
        parsed = _from_epoch(float(value))
    else:
        s = unicodedata.normalize("NFKC", str(value)).strip()
        if not s:
            raise ValueError("empty date")
        parsed = _parse_date_string(s)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    if parsed < _EARLIEST:
        raise ValueError(f"date {value!r} is before 2000")
    return parsed


def parse_when(value: str, zone: tzinfo, *, end_of_day: bool = True) -> datetime:
    """A user-given reference time: a bare date (YYYY-MM-DD) means that whole day, its end (as-of,
    until) or its start (since); anything else is read by :func:`parse_datetime`.

    Raises:
        ValueError: not a date.
    """
    s = value.strip()
    if m := re.fullmatch(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})", s):
        day = date(int(m[1]), int(m[2]), int(m[3]))
        check_reference_year(day.year, repr(value))
        return datetime.combine(day, time.max if end_of_day else time.min, tzinfo=zone)
    parsed = parse_datetime(s, zone)
    check_reference_year(parsed.year, repr(value))
    return parsed


def _from_epoch(number: float) -> datetime:
    if number > 1e11:  # milliseconds
        number /= 1000.0
    if not 9.4e8 <= number <= 4.1e9:
        raise ValueError(f"number {number!r} is not a plausible epoch time")
    return datetime.fromtimestamp(number, tz=UTC)


def _parse_date_string(s: str) -> datetime:
    if re.fullmatch(r"\d{10}(\d{3})?(\.\d+)?", s):
        return _from_epoch(float(s))
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)
    except ValueError:
        pass
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(s, fmt)
        except ValueError:
            continue
    raise ValueError(f"unreadable date {s!r}")


# --------------------------------------------------------------------------- parsing


def _clean(value: Any) -> str | None:
    """A cell as stripped text (NUL bytes removed), or None when empty."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # XLSX order numbers arrive as 1.2e10 floats
    s = str(value).replace("\x00", "").strip()
    return s or None


_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Characters that show nothing: zero-width spaces and joiners, BOMs, bidi marks, control codes.
_INVISIBLE = re.compile(r"[\s\u200b-\u200f\u2028-\u202f\u205f-\u206f\ufeff\x00-\x1f\x7f-\x9f]+")


def check_cells(raw: dict[str, Any]) -> None:
    """Reject a row any of whose cells (or column names) is not valid text.

    Undecodable bytes arrive as surrogates (``surrogateescape``) and JSON can carry lone
    ``\\ud800`` escapes; neither can be stored, hashed or sent, whichever column holds them.

    Raises:
        RowError: naming the column.
    """
    for key, value in raw.items():
        name = str(key)
        if _SURROGATE.search(name):
            raise RowError(f"a column name has {_bad_text(name)}")
        if isinstance(value, str) and _SURROGATE.search(value):
            raise RowError(f"column {name!r} has {_bad_text(value)}")


def _bad_text(s: str) -> str:
    if re.search(r"[\udc80-\udcff]", s):
        return "bytes that are not valid in the file's encoding"
    return "a lone surrogate (not valid text)"


def check_text(value: Any, field: str) -> str:
    """A text cell stripped and checked (not empty, visible, decodable, within the length limit).

    Raises:
        RowError: the reason the text is unusable.
    """
    text = _clean(value)
    if text is None:
        raise RowError(f"empty {field}")
    if _SURROGATE.search(text):
        raise RowError(f"{field} has bytes that are not valid in the file's encoding")
    if not _INVISIBLE.sub("", text):
        raise RowError(f"{field} has no visible characters")
    if len(text) > MAX_TEXT_CHARS:
        raise RowError(f"{field} is {len(text)} characters long (limit {MAX_TEXT_CHARS})")
    return text


def stable_id(prefix: str, *parts: str | None) -> str:
    """A short, stable id from the given parts (the same input always gives the same id)."""
    digest = hashlib.sha1("\x1f".join(p or "" for p in parts).encode("utf-8")).hexdigest()
    return f"{prefix}_{digest[:16]}"


_STARS = re.compile(r"^[★☆]+$")


def _parse_rating(value: Any) -> float | None:
    s = _clean(value)
    if s is None:
        return None
    if _STARS.match(s):
        return float(s.count("★"))
    s = s.removesuffix("星").removesuffix("分").strip()
    try:
        rating = float(s)
    except ValueError:
        raise RowError(f"rating {s!r} is not a number") from None
    if not 0 <= rating <= 5:
        raise RowError(f"rating {rating:g} is outside 0-5")
    return rating


def _parse_nps(value: Any) -> int | None:
    s = _clean(value)
    if s is None:
        return None
    s = s.removesuffix("分").strip()
    try:
        score = float(s)
    except ValueError:
        raise RowError(f"nps {s!r} is not a number") from None
    if not (0 <= score <= 10 and score.is_integer()):
        raise RowError(f"nps {score:g} is not a whole number from 0 to 10")
    return int(score)


def _parse_time_field(raw: dict[str, Any], field: str, zone: tzinfo, imported_at: datetime) -> datetime | None:
    cell = raw.get(field)
    if _clean(cell) is None:
        return None
    try:
        parsed = parse_datetime(cell, zone)
    except ValueError as exc:
        raise RowError(f"invalid {field}: {exc}") from None
    if parsed > imported_at + timedelta(days=1):
        raise RowError(f"invalid {field}: {parsed.isoformat()} is in the future")
    return parsed


def _label(raw: dict[str, Any], field: str, taxonomy: Taxonomy | None, label_set: str | None) -> LabelValue | None:
    value = _clean(raw.get(field))
    if value is None:
        return None
    if taxonomy is not None and label_set is not None:
        normalized = taxonomy.normalize(label_set, value)
        if normalized is None:
            raise RowError(f"{field} {value!r} is not in the taxonomy {taxonomy.name!r}")
        value = normalized
    return LabelValue(value=value, source=LabelSource.IMPORT)


def _extra(raw: dict[str, Any], known: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in raw.items():
        if key in known or key.startswith("_"):
            continue
        s = _clean(value)
        if s is not None:
            out[str(key)] = s
    return out


def parse_feedback(raw: dict[str, Any], *, zone: tzinfo, imported_at: datetime, taxonomy: Taxonomy | None) -> Feedback:
    """Validate one mapped input row as a :class:`Feedback` record.

    Args:
        raw: field name -> cell value (already mapped from input headers).
        zone: the zone given to naive timestamps.
        imported_at: the import time; missing ``created_at`` takes it, marked ``import_time``.
        taxonomy: imported labels are checked against it (None: kept as given).

    Raises:
        RowError: with the reason the row cannot be stored.
    """
    check_cells(raw)
    text = check_text(raw.get("text"), "text")
    created = _parse_time_field(raw, "created_at", zone, imported_at)
    channel = _clean(raw.get("channel"))
    created_key = created.astimezone(UTC).isoformat() if created else None
    record_id = _clean(raw.get("id")) or stable_id("fb", channel, text, created_key)
    labels = Labels(
        category=_label(raw, "category", taxonomy, "categories"),
        subcategory=_label(raw, "subcategory", None, None),
        sentiment=_label(raw, "sentiment", taxonomy, "sentiments"),
        urgency=_label(raw, "urgency", taxonomy, "urgencies"),
    )
    return Feedback(
        id=record_id,
        text=text,
        created_at=created or imported_at,
        created_at_source="given" if created else "import_time",
        channel=channel,
        customer_tier=_clean(raw.get("customer_tier")),
        customer_id=_clean(raw.get("customer_id")),
        order_id=_clean(raw.get("order_id")),
        product=_clean(raw.get("product")),
        sku=_clean(raw.get("sku")),
        carrier=_clean(raw.get("carrier")),
        region=_clean(raw.get("region")),
        rating=_parse_rating(raw.get("rating")),
        nps=_parse_nps(raw.get("nps")),
        language=detect_language(text),
        labels=labels,
        extra=_extra(raw, FEEDBACK_FIELDS),
    )


_OUTCOMES: dict[str, Outcome] = {
    "resolved": "resolved",
    "solved": "resolved",
    "closed": "resolved",
    "done": "resolved",
    "已解决": "resolved",
    "解决": "resolved",
    "已处理": "resolved",
    "完成": "resolved",
    "unresolved": "unresolved",
    "open": "unresolved",
    "pending": "unresolved",
    "未解决": "unresolved",
    "处理中": "unresolved",
    "待处理": "unresolved",
    "escalated": "escalated",
    "已升级": "escalated",
    "升级": "escalated",
    "转交": "escalated",
}


def parse_resolution(raw: dict[str, Any], *, zone: tzinfo, imported_at: datetime) -> Resolution:
    """Validate one mapped input row as a :class:`Resolution` record.

    Raises:
        RowError: with the reason the row cannot be stored.
    """
    check_cells(raw)
    feedback_id = _clean(raw.get("feedback_id"))
    if feedback_id is None:
        raise RowError("empty feedback_id")
    action = check_text(raw.get("action"), "action")
    reply = _clean(raw.get("reply")) or ""
    if reply:
        reply = check_text(reply, "reply")
    outcome_raw = _clean(raw.get("outcome")) or "resolved"
    outcome = _OUTCOMES.get(outcome_raw.casefold())
    if outcome is None:
        raise RowError(f"outcome {outcome_raw!r} is not resolved, unresolved or escalated")
    resolved_at = _parse_time_field(raw, "resolved_at", zone, imported_at)
    resolved_key = resolved_at.astimezone(UTC).isoformat() if resolved_at else None
    return Resolution(
        id=_clean(raw.get("id")) or stable_id("rs", feedback_id, action, reply, resolved_key),
        feedback_id=feedback_id,
        action=action,
        reply=reply,
        outcome=outcome,
        compensation=_clean(raw.get("compensation")),
        resolved_at=resolved_at,
        extra=_extra(raw, RESOLUTION_FIELDS),
    )


def content_hash(record: Feedback | Resolution) -> str:
    """Hash of everything a record says, so re-ingesting an unchanged row is a no-op.

    A feedback row without a date gets the import time each run; that time is left out so the
    same row imported twice is still "unchanged". Only imported labels count: model labels can
    change as the model learns and human corrections are not part of the file, so neither makes
    a re-imported row "updated".
    """
    data = record.model_dump(mode="json")
    if isinstance(record, Feedback):
        if record.created_at_source == "import_time":
            data.pop("created_at")
        data["labels"] = {
            k: {"value": v["value"], "source": v["source"]}
            for k, v in data["labels"].items()
            if v and v["source"] == LabelSource.IMPORT
        }
        for added in ("customer_id", "nps"):  # fields of schema 3: a row without them hashes as before
            if data[added] is None:
                del data[added]
    return hashlib.sha1(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
