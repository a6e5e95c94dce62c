"""The classifier's shipped training data: the seed bank, the sentiment lexicon and the sample
generator's templates as a cold-start bank (the generator itself is :mod:`retrieval.sample_data`)."""

from __future__ import annotations

import hashlib
import json
import random
from functools import cache
from pathlib import Path

import yaml

from retrieval.sample_data import CARRIERS, EN, PRODUCTS, ZH, fill_template

SEED_PATH = Path(__file__).parent / "data" / "seed_examples.jsonl"
LEXICON_PATH = SEED_PATH.parent / "sentiment_lexicon.yaml"


def load_seed_examples() -> list[dict[str, str]]:
    """The shipped seed bank: hand-written labelled examples per category, in both languages.

    Written separately from the sample generator's templates, so a classifier using it as
    neighbours is not scored on its own examples.
    """
    with open(SEED_PATH, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@cache
def shipped_data_version() -> str:
    """A hash of the shipped training data (seed bank and lexicon): a model trained on older data is stale."""
    digest = hashlib.sha1()
    for path in (SEED_PATH, LEXICON_PATH):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def load_sentiment_lexicon() -> list[tuple[str, str]]:
    """The shipped polar words and phrases as (text, sentiment) pairs, Chinese and English."""
    with open(LEXICON_PATH, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    return [
        (str(word), sentiment)
        for sentiment in ("positive", "negative")
        for lang in ("zh", "en")
        for word in data[sentiment][lang]
    ]


def template_examples() -> list[dict[str, str]]:
    """Every text template of the generator, filled once, with its labels (default taxonomy).

    A cold-start bank: with no labelled records of its own, the classifier learns the default
    categories' vocabulary from these next to the seed bank.
    """
    rng = random.Random(0)
    out: list[dict[str, str]] = []
    for lang, bank in (("zh", ZH), ("en", EN)):
        for category, templates in bank.items():
            for i, (template, sentiment, urgency) in enumerate(templates):
                product, carrier = PRODUCTS[i % len(PRODUCTS)], CARRIERS[(i + 1) % len(CARRIERS)]
                out.append(
                    {
                        "id": f"template-{lang}-{category}-{i:02d}",
                        "category": category,
                        "sentiment": sentiment,
                        "urgency": urgency,
                        "text": fill_template(template, rng, product, carrier, "2611201234567890"),
                    }
                )
    return out
