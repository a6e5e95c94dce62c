"""The bundled sample and seed bank: in sync with the generator, planted trends as documented."""

from __future__ import annotations

import csv
from collections import Counter

from retrieval.sample_data import (
    BAD_CARRIER,
    FEEDBACK_COLUMNS,
    RESOLUTION_COLUMNS,
    SAMPLE_DIR,
    SPIKE_PRODUCT,
    facts,
    generate,
)
from retrieval.taxonomy import load_taxonomy
from retrieval.training_data import load_seed_examples


def read(name: str) -> list[dict[str, str]]:
    with open(SAMPLE_DIR / name, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_committed_files_match_the_generator() -> None:
    feedback, resolutions = generate()
    assert read("feedback.csv") == [{k: str(r[k]) for k in FEEDBACK_COLUMNS} for r in feedback]
    assert read("resolutions.csv") == [{k: str(r[k]) for k in RESOLUTION_COLUMNS} for r in resolutions]


def test_coverage_of_categories_channels_languages_and_weeks() -> None:
    rows = read("feedback.csv")
    tax = load_taxonomy()
    assert {r["category"] for r in rows} == set(tax.category_ids())
    assert len({r["channel"] for r in rows}) >= 5 and len({r["carrier"] for r in rows if r["carrier"]}) >= 4
    english = sum(not any("\u4e00" <= ch <= "\u9fff" for ch in r["text"]) for r in rows)
    assert 0.1 < english / len(rows) < 0.3  # mostly Chinese, with real English share
    assert len({r["created_at"][:10] for r in rows}) >= 60  # at least 8 weeks of days
    assert len({r["text"] for r in rows}) / len(rows) > 0.6  # real variety, not a handful of strings


def test_planted_trends() -> None:
    f = facts(generate()[0])
    base = [
        n for key, n in f["negative_by_week_category"].items() if key.endswith("product_quality") and "W47" not in key
    ]
    assert f["w47_product_quality"] >= 2 * max(base)
    product, count = f["w47_product_quality_top_product"]
    assert product == SPIKE_PRODUCT and count / f["w47_product_quality"] > 0.6
    top_carrier, n = next(iter(f["logistics_by_carrier"].items()))
    assert top_carrier == BAD_CARRIER and n / f["logistics_complaints_with_carrier"] > 0.6
    assert f["bad_carrier_share_of_shipments"] < 0.4
    assert f["w46_price_promotion"] >= 2.5 * f["w45_price_promotion"]


def test_resolutions_link_to_existing_feedback() -> None:
    ids = {r["id"] for r in read("feedback.csv")}
    resolutions = read("resolutions.csv")
    assert len(resolutions) > 400 and all(r["feedback_id"] in ids for r in resolutions)


def test_seed_bank_is_valid_and_balanced() -> None:
    seeds = load_seed_examples()
    tax = load_taxonomy()
    per = Counter((s["category"], s["language"]) for s in seeds)
    for cat in tax.category_ids():
        assert per[(cat, "zh")] >= 6 and per[(cat, "en")] >= 3
    assert all(tax.normalize("sentiments", s["sentiment"]) and tax.normalize("urgencies", s["urgency"]) for s in seeds)
    sample_texts = {r["text"] for r in read("feedback.csv")}
    assert not sample_texts & {s["text"] for s in seeds}
