"""Build train/test splits of the public data sets in ../shared/data for `eval classify`.

Nothing derived from them is committed (waimai/ChnSentiCorp carry no licence; bitext is
CDLA-Sharing-1.0 and is used here for evaluation only). ``python -m evals.shared_data OUT_DIR``
writes, with a fixed shuffle:

* ``bitext-train.csv`` / ``bitext-test.csv`` (500 test rows) and ``bitext-taxonomy.json`` (27 intents)
* ``bitext-train-10.csv``: 10 rows per intent from the train split (the few-shot case, where
  wording the training rows do not share matters most)
* ``waimai-train.csv`` / ``waimai-test.csv`` (1,000 test rows), sentiment positive/negative
* ``chnsenticorp-train.csv`` / ``chnsenticorp-test.csv`` (1,000 test rows)
"""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _write(path: Path, rows: list[dict[str, str]], cols: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def main(out: Path, shared: Path = SHARED) -> None:
    """Write the splits into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(shared / "bitext" / "bitext_customer_support.csv", encoding="utf-8") as fh:
        rows = [{"text": r["instruction"], "category": r["intent"]} for r in csv.DictReader(fh)]
    random.Random(7).shuffle(rows)
    _write(out / "bitext-test.csv", rows[:500], ["text", "category"])
    _write(out / "bitext-train.csv", rows[500:], ["text", "category"])
    per_intent: dict[str, list[dict[str, str]]] = {}
    for r in rows[500:]:
        per_intent.setdefault(r["category"], []).append(r)
    _write(out / "bitext-train-10.csv", [r for group in per_intent.values() for r in group[:10]], ["text", "category"])
    intents = sorted({r["category"] for r in rows})
    (out / "bitext-taxonomy.json").write_text(json.dumps(
        {"name": "bitext-intents", "categories": [{"id": i, "description": i.replace("_", " ")} for i in intents]}))
    for name, file in (("waimai", "waimai_10k.csv"), ("chnsenticorp", "ChnSentiCorp_htl_all.csv")):
        with open(shared / "sophonplus" / file, encoding="utf-8") as fh:
            rows = [{"text": r["review"].strip(), "sentiment": "positive" if r["label"] == "1" else "negative"}
                    for r in csv.DictReader(fh) if r["review"] and r["review"].strip()]  # fmt: skip
        random.Random(7).shuffle(rows)
        _write(out / f"{name}-test.csv", rows[:1000], ["text", "sentiment"])
        _write(out / f"{name}-train.csv", rows[1000:], ["text", "sentiment"])
    print(f"splits written to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "eval-data"))
