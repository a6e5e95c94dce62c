"""Build train/test splits of public data sets for `eval classify`.

``--source DIR`` is a folder laid out as ``bitext/bitext_customer_support.csv``,
``sophonplus/waimai_10k.csv`` and ``sophonplus/ChnSentiCorp_htl_all.csv`` (where to get them:
docs/evaluation.md); by default the workplace's shared data folder beside the checkout.

Nothing derived from them is committed (waimai/ChnSentiCorp carry no licence; bitext is
CDLA-Sharing-1.0 and is used here for evaluation only). ``python -m evals.shared_data OUT_DIR``
writes, with a fixed shuffle:

* ``bitext-train.csv`` / ``bitext-test.csv`` (500 test rows) and ``bitext-taxonomy.json`` (27 intents)
* ``bitext-train-10.csv``: 10 rows per intent from the train split (the few-shot case, where
  wording the training rows do not share matters most)
* ``waimai-train.csv`` / ``waimai-test.csv`` (1,000 test rows), sentiment positive/negative
* ``chnsenticorp-train.csv`` / ``chnsenticorp-test.csv`` (1,000 test rows)

BANKING77 (PolyAI, CC BY 4.0; the issue's 77-intent benchmark) is not among them. Given its
public ``test.csv`` (``text,category`` in category blocks), ``--banking77-test PATH`` also writes a
10-shot split: per intent, the first 10 rows train (``banking77-shot10-train.csv``), the next 10
test (``banking77-shot10-test.csv``), and ``banking77-taxonomy.json`` (77 bare ids).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _write(path: Path, rows: list[dict[str, str]], cols: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def _first_per_label(rows: list[dict[str, str]], start: int, stop: int) -> list[dict[str, str]]:
    """Rows ``start:stop`` of each category, categories in order of first appearance."""
    per_label: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        per_label.setdefault(r["category"], []).append(r)
    return [r for group in per_label.values() for r in group[start:stop]]


def main(out: Path, shared: Path = SHARED) -> None:
    """Write the splits into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(shared / "bitext" / "bitext_customer_support.csv", encoding="utf-8") as fh:
        rows = [{"text": r["instruction"], "category": r["intent"]} for r in csv.DictReader(fh)]
    random.Random(7).shuffle(rows)
    _write(out / "bitext-test.csv", rows[:500], ["text", "category"])
    _write(out / "bitext-train.csv", rows[500:], ["text", "category"])
    _write(out / "bitext-train-10.csv", _first_per_label(rows[500:], 0, 10), ["text", "category"])
    intents = sorted({r["category"] for r in rows})
    (out / "bitext-taxonomy.json").write_text(
        json.dumps(
            {"name": "bitext-intents", "categories": [{"id": i, "description": i.replace("_", " ")} for i in intents]}
        )
    )
    for name, file in (("waimai", "waimai_10k.csv"), ("chnsenticorp", "ChnSentiCorp_htl_all.csv")):
        with open(shared / "sophonplus" / file, encoding="utf-8") as fh:
            rows = [
                {"text": r["review"].strip(), "sentiment": "positive" if r["label"] == "1" else "negative"}
                for r in csv.DictReader(fh)
                if r["review"] and r["review"].strip()
            ]
        random.Random(7).shuffle(rows)
        _write(out / f"{name}-test.csv", rows[:1000], ["text", "sentiment"])
        _write(out / f"{name}-train.csv", rows[1000:], ["text", "sentiment"])
    print(f"splits written to {out}")


def banking77_shots(test_csv: Path, out: Path, shots: int = 10) -> dict[str, int]:
    """Write the BANKING77 few-shot split (see the module docstring); returns rows per file."""
    with open(test_csv, encoding="utf-8", newline="") as fh:
        rows = [{"text": r["text"], "category": r["category"]} for r in csv.DictReader(fh)]
    train, test = _first_per_label(rows, 0, shots), _first_per_label(rows, shots, 2 * shots)
    intents = sorted({r["category"] for r in rows})
    out.mkdir(parents=True, exist_ok=True)
    _write(out / f"banking77-shot{shots}-train.csv", train, ["text", "category"])
    _write(out / f"banking77-shot{shots}-test.csv", test, ["text", "category"])
    (out / "banking77-taxonomy.json").write_text(
        json.dumps({"name": "banking77", "categories": [{"id": i} for i in intents]})
    )
    return {"intents": len(intents), "train": len(train), "test": len(test)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Write eval splits of public data sets (and of BANKING77 if given).")
    ap.add_argument("out", nargs="?", default="eval-data", type=Path)
    ap.add_argument("--source", type=Path, default=SHARED, help="folder holding bitext/ and sophonplus/")
    ap.add_argument("--banking77-test", type=Path, help="BANKING77's public test.csv, for the 10-shot split")
    args = ap.parse_args()
    if not (args.source / "bitext" / "bitext_customer_support.csv").exists():
        raise SystemExit(
            f"error: no bitext/bitext_customer_support.csv under {args.source}; give --source DIR "
            "(docs/evaluation.md says where to get the data sets)"
        )
    main(args.out, args.source)
    if args.banking77_test:
        print(f"banking77 10-shot split: {banking77_shots(args.banking77_test, args.out)}")
