"""Taxonomy files: the default, minimal user files, large ones, and bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval.errors import TaxonomyError
from retrieval.taxonomy import load_taxonomy


def test_default_taxonomy_matches_the_documented_labels() -> None:
    tax = load_taxonomy()
    assert tax.category_ids() == [
        "logistics",
        "product_quality",
        "packaging",
        "customer_service",
        "after_sales",
        "price_promotion",
        "app_website",
        "suggestion",
        "praise",
        "other",
    ]
    assert [s.id for s in tax.sentiments] == ["negative", "neutral", "positive"]
    assert [u.id for u in tax.urgencies] == ["critical", "high", "medium", "low"]
    assert "12315" in tax.urgencies[0].keywords
    assert tax.normalize("categories", "物流配送") == "logistics"


def test_minimal_json_file_gets_default_sentiments(tmp_path: Path) -> None:
    path = tmp_path / "banking.json"
    path.write_text(
        json.dumps({"categories": [{"id": "card_arrival"}, {"id": "lost_or_stolen_card", "description": "card lost"}]})
    )
    tax = load_taxonomy(path)
    assert tax.category_ids() == ["card_arrival", "lost_or_stolen_card"]
    assert [s.id for s in tax.sentiments] == ["negative", "neutral", "positive"]
    assert tax.name == "banking"


def test_large_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "intents.yaml"
    path.write_text("categories:\n" + "".join(f"  - id: intent_{i}\n" for i in range(77)))
    assert len(load_taxonomy(path).categories) == 77


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("{not json", ".json", "is not valid json"),
        ("categories: [", ".yaml", "is not valid yaml"),
        ("[1, 2]", ".yaml", "must hold a mapping"),
        ("categories: []", ".yaml", "categories"),
        ("categories:\n  - id: a\n  - id: a\n", ".yaml", "duplicate label id"),
        ("categories:\n  - name_zh: 无id\n", ".yaml", "categories.0.id"),
    ],
)
def test_bad_files_give_one_line(tmp_path: Path, content: str, suffix: str, message: str) -> None:
    path = tmp_path / f"t{suffix}"
    path.write_text(content)
    with pytest.raises(TaxonomyError, match=message) as info:
        load_taxonomy(path)
    assert "\n" not in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(TaxonomyError, match="not found"):
        load_taxonomy("/nonexistent/taxonomy.yaml")
