"""One path for model output that must stand on facts: ask, check, re-ask with the problems, or
fall back with the reason.

Every LLM-backed capability (ask, root cause, the weekly report's summary, reply drafts) runs
its model call through :func:`grounded`: ``check(value)`` lists what is wrong with an answer
(numbers no fact holds, the wrong language, an uncited or over-promising draft); a non-empty list
re-asks with those problems spelled out, up to ``attempts`` calls; what is still wrong after that
becomes the ``fallback_reason`` the caller reports beside its rules-built answer. The language
detector and the number check every capability uses live here too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

from agent.errors import AgentError
from agent.llm import ChatModel, Message, complete_structured
from retrieval.records import detect_language

T = TypeVar("T")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
M = TypeVar("M", bound=BaseModel)
Lang = Literal["zh", "en"]


@dataclass
class Grounded(Generic[T]):
    """A checked model answer, or why there is none (``value`` is None exactly when
    ``fallback_reason`` is set)."""

    value: T | None
    fallback_reason: str | None
    attempts: int


def grounded(
    call: Callable[[list[Message]], T],
    messages: list[Message],
    check: Callable[[T], list[str]],
    *,
    show: Callable[[T], str],
    attempts: int = 2,
) -> Grounded[T]:
    """``call(messages)``, checked; a rejected answer is shown back (``show``) with its problems
    and asked again, up to ``attempts`` calls in all. A failed call ends it at once."""
    reason: str | None = None
    for n in range(1, attempts + 1):
        try:
            value = call(messages)
        except AgentError as exc:
            return Grounded(None, f"LLM call failed: {exc}", n)
        problems = check(value)
        if not problems:
            return Grounded(value, None, n)
        reason = "; ".join(problems)
        messages = [
            *messages,
            Message(role="assistant", content=show(value)),
            Message(role="user", content=f"The draft was rejected: {reason}. Write it again following every rule."),
        ]
    return Grounded(None, reason, attempts)


def structured(
    model: ChatModel,
    messages: list[Message],
    schema: type[M],
    check: Callable[[M], list[str]],
    *,
    prompt_version: str,
    attempts: int = 2,
) -> Grounded[M]:
    """:func:`grounded` over a structured answer validated against ``schema``."""

    def call(msgs: list[Message]) -> M:
        value: M = complete_structured(model, msgs, schema, prompt_version=prompt_version).value
        return value

    return grounded(call, messages, check, show=lambda v: v.model_dump_json(), attempts=attempts)


# --------------------------------------------------------------------------- language


def output_language(text: str) -> Lang:
    """The language to answer ``text`` in: English when it is written in English (a Chinese
    product name inside an English sentence does not make it Chinese), otherwise Chinese."""
    return "en" if detect_language(text) == "en" else "zh"


def language_problems(text: str, lang: Lang) -> list[str]:
    """An answer that is empty or not in ``lang``."""
    if not text.strip():
        return ["the answer is empty"]
    written = detect_language(text)
    # Text with no letters at all reads as Chinese to output_language(); an answer must show it.
    ok = written == "en" if lang == "en" else written != "en" and bool(_CJK.search(text))
    return [] if ok else [f"the answer is not in {'Chinese' if lang == 'zh' else 'English'}"]


# --------------------------------------------------------------------------- numbers

_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?")
_ID_LIKE = re.compile(r"\b[A-Za-z]+[\w-]*\d[\w-]*\b")


def _numbers_in(value: Any) -> set[float]:
    text = json.dumps(value, ensure_ascii=False, default=str)
    found: set[float] = set()
    for m in re.finditer(r"\d+(?:\.\d+)?", text):
        x = float(m.group())
        found |= {x, round(x, 1), float(round(x))}
        if "." in m.group() and x <= 1:  # a 0..1 share may be written as a percentage
            found |= {round(x * 100, 1), float(round(x * 100))}
    return found


def unsupported_numbers(answer: str, facts: list[Any], question: str = "") -> list[str]:
    """Numbers in ``answer`` that no fact (nor the question) contains.

    Record ids, ISO dates and list markers are not figures; percentages may be written from a
    0..1 share or rounded to one decimal.
    """
    allowed = _numbers_in(facts) | _numbers_in(question)
    text = _ID_LIKE.sub(" ", answer)
    text = re.sub(r"(?m)^\s*\d{1,2}[.)、]\s", " ", text)
    bad: list[str] = []
    for m in _NUMBER.finditer(text):
        x = abs(float(m.group()))
        if not any(abs(x - a) < 0.051 for a in allowed):
            bad.append(m.group())
    return list(dict.fromkeys(bad))


def number_problems(answer: str, facts: list[Any], question: str = "", *, require: bool = False) -> list[str]:
    """:func:`unsupported_numbers` as a problem to re-ask with; with ``require``, an answer that
    states no figure at all is one too (a summary for a manager says how many)."""
    bad = unsupported_numbers(answer, facts, question)
    if bad:
        return ["numbers not in the facts: " + ", ".join(bad[:5])]
    if require and not _NUMBER.search(_ID_LIKE.sub(" ", answer)):
        return ["states no figure from the facts"]
    return []
