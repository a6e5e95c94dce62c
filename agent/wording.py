"""Wording as data: the sentences the rules path writes, per language, in ``agent/data/phrases.yaml``.

``say("ask.count.total", "zh", win=..., ...)`` fills a phrase; :class:`Words` words the pieces every
answer, summary and report shares (category labels, periods, changes, shares, facet and sentiment
names). Adding a language is adding its phrases, not editing code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from typing import Any, Literal

from agent.prompts import load_data
from retrieval.taxonomy import Taxonomy

Lang = Literal["zh", "en"]


@cache
def phrases() -> dict[str, dict[str, Any]]:
    """Every phrase by its dotted key (``ask.top.first``), each a ``{lang: template}`` mapping."""
    flat: dict[str, dict[str, Any]] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        if "zh" in node or "en" in node:
            flat[prefix] = node
            return
        for key, value in node.items():
            walk(f"{prefix}.{key}" if prefix else str(key), value)

    walk("", load_data("phrases"))
    return flat


def say(key: str, lang: Lang, /, **fields: Any) -> str:
    """The phrase ``key`` in ``lang`` with ``fields`` filled in."""
    template: str = phrases()[key][lang]
    return template.format(**fields)


def join(items: Iterable[str], lang: Lang, kind: Literal["list", "clauses"] = "list") -> str:
    """``items`` joined the language's way: 、 or ", " for a list, ； or "; " between clauses."""
    return say(f"separators.{kind}", lang).join(items)


class Words:
    """Language-specific wording of labels, windows and figures."""

    def __init__(self, lang: Lang, taxonomy: Taxonomy | None = None) -> None:
        """Word things in ``lang`` with ``taxonomy``'s category names (ids alone without one)."""
        self.lang: Lang = lang
        self.labels = {lab.id: lab for lab in taxonomy.labels_of("category")} if taxonomy else {}

    def say(self, key: str, /, **fields: Any) -> str:
        """:func:`say` in this language."""
        return say(key, self.lang, **fields)

    def join(self, items: Iterable[str], kind: Literal["list", "clauses"] = "list") -> str:
        """:func:`join` in this language."""
        return join(items, self.lang, kind)

    def label(self, cid: str | None) -> str:
        """A category as "物流配送 (logistics)"; None is all categories."""
        if cid is None:
            return self.say("common.all_categories")
        lab = self.labels.get(cid)
        name = (lab.name_zh if self.lang == "zh" else lab.name_en) if lab else None
        return f"{name} ({cid})" if name and name != cid else cid

    def value(self, facet: str | None, v: str) -> str:
        """A facet value, categories by their label."""
        return self.label(v) if facet in (None, "category") else v

    def facet(self, facet: str) -> str:
        """A facet's name ("快递公司" for carrier)."""
        names: dict[str, str] = load_data("phrases")["facets"].get(self.lang, {})
        return names.get(facet, facet)

    def sentiment(self, s: str | None) -> str:
        """What records of a sentiment are called ("complaints (negative feedback)")."""
        names: dict[str, str] = load_data("phrases")["sentiments"][self.lang]
        return names[s or "any"]

    def period(self, p: dict[str, str]) -> str:
        """A resolved period with its dates ("最近30天（2026-10-25 至 2026-11-23）")."""
        label = p["label"]
        if self.lang == "zh":
            names: dict[str, str] = load_data("phrases")["periods"]["zh"]
            if m := re.fullmatch(r"last (\d+) days", label):
                label = names["last_days"].format(n=m.group(1))
            elif m := re.fullmatch(r"the (\d+) days before", label):
                label = names["days_before"].format(n=m.group(1))
            label = names.get(label, label)
        span = p["from"] if p["from"] == p["to"] else self.say("common.span", first=p["from"], last=p["to"])
        return self.say("common.period", label=label, span=span) if ".." not in label else span

    @staticmethod
    def pct(part: int, whole: int) -> str:
        """``part`` of ``whole`` as a percentage with one decimal ("-" of nothing)."""
        return f"{part / whole * 100:.1f}%" if whole else "-"

    @staticmethod
    def share(x: float | None) -> str:
        """A 0..1 share as a percentage with one decimal ("-" when unknown)."""
        return "-" if x is None else f"{x * 100:.1f}%"

    def change(self, a: int, b: int) -> str:
        """From ``b`` to ``a``: "增加 5 条（+20.0%）" / "up 5, +20.0%", or unchanged."""
        d = a - b
        if d == 0:
            return self.say("common.unchanged")
        pct = self.say("common.change_pct", pct=f"{d / b * 100:+.1f}%") if b else ""
        return self.say("common.up" if d > 0 else "common.down", n=abs(d), pct=pct)

    def examples(self, ids: list[str]) -> str:
        """ " 例：A, B, C" for up to three record ids (nothing for none)."""
        return self.say("common.examples", ids=", ".join(ids[:3])) if ids else ""
