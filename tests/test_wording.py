"""The phrase catalog (agent/data/phrases.yaml) and the router vocabulary (agent/data/router.yaml)."""

from __future__ import annotations

import string

import pytest

from agent.prompts import load_data
from agent.wording import Words, phrases, say
from retrieval.taxonomy import load_taxonomy


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


TEMPLATES = {key: node for key, node in phrases().items() if all(isinstance(v, str) for v in node.values())}


@pytest.mark.parametrize("key", sorted(TEMPLATES))
def test_every_phrase_has_both_languages_with_the_same_fields(key: str) -> None:
    """A phrase missing a language, or whose languages take different fields, would fail at the
    first answer in that language (KeyError) or silently drop a figure."""
    node = TEMPLATES[key]
    assert set(node) == {"zh", "en"}, key
    assert _fields(node["zh"]) == _fields(node["en"]), key
    filled = {name: f"<{name}>" for name in _fields(node["zh"])}
    for lang in ("zh", "en"):
        text = say(key, lang, **filled)
        assert all(f"<{name}>" in text for name in filled), (key, lang)


def test_the_catalog_is_what_the_answers_say() -> None:
    """Words reads the catalog, not a copy in code: a period, a change and a facet name."""
    zh, en = Words("zh", load_taxonomy()), Words("en", load_taxonomy())
    period = {"label": "last 30 days", "from": "2026-10-25", "to": "2026-11-23"}
    assert zh.period(period) == "最近30天（2026-10-25 至 2026-11-23）"
    assert en.period(period) == "last 30 days (2026-10-25 to 2026-11-23)"
    assert zh.change(12, 10) == "增加 2 条（+20.0%）" and en.change(8, 10) == "down 2, -20.0%"
    assert zh.facet("carrier") == load_data("phrases")["facets"]["zh"]["carrier"]
    assert zh.label("logistics").endswith("(logistics)") and en.label(None) == "all categories"


def test_router_vocabulary_is_loaded_from_data() -> None:
    from agent import ask

    router = load_data("router")
    assert ask.CUES == router["cues"] and "上周" in ask.WINDOW_WORDS[1][0]
    assert ask.QUESTION_HELP["en"].startswith("I can answer")
