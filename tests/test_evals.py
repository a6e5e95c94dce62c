"""The eval harness: metrics computed right, runs recorded, --history-from uses a fresh store."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli import app
from evals.harness import field_metrics

runner = CliRunner()


def test_field_metrics_by_hand() -> None:
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "c", "c"]
    m = field_metrics(gold, pred)
    assert m["accuracy"] == round(4 / 6, 4)
    # a: p=2/2 r=2/3 f1=0.8; b: p=1/2 r=1/2 f1=0.5; c: p=1/2 r=1/1 f1=2/3
    assert m["per_label"]["a"] == {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "support": 3}
    assert m["per_label"]["c"]["f1"] == round(2 / 3, 4)
    assert m["macro_f1"] == round((0.8 + 0.5 + 2 / 3) / 3, 4)
    assert m["top_confusions"] == [{"gold": "a", "pred": "b", "count": 1}, {"gold": "b", "pred": "c", "count": 1}]


def test_eval_classify_with_history_from_records_each_run(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    rows = (
        ["text,category"]
        + [f"card {w} never arrived in the post,card_arrival" for w in ("blue", "new", "old", "my")]
        + [
            f"my card was stolen {w} please block it,lost_or_stolen_card"
            for w in ("today", "yesterday", "now", "again")
        ]
    )
    train.write_text("\n".join(rows) + "\n")
    test = tmp_path / "test.jsonl"
    test.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"text": "my card still has not arrived", "category": "card_arrival"},
                {"text": "someone stole my card", "category": "lost_or_stolen_card"},
                {"text": "label unknown to the taxonomy", "category": "exchange_rate"},
            ]
        )
        + "\n"
    )
    tax = tmp_path / "tax.json"
    tax.write_text(json.dumps({"categories": [{"id": "card_arrival"}, {"id": "lost_or_stolen_card"}]}))
    history = tmp_path / "hist.jsonl"
    args = [
        "eval",
        "classify",
        "--dataset",
        str(test),
        "--history-from",
        str(train),
        "--taxonomy",
        str(tax),
        "--history",
        str(history),
        "--json",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n"] == 2 and out["invalid_labels"] == 0
    assert out["metrics"]["category"]["accuracy"] == 1.0
    assert "sentiment" not in out["metrics"] and "urgency" not in out["metrics"]  # absent from the dataset
    assert out["train"]["added"] == 8
    assert not (tmp_path / "home" / "mirror.sqlite3").exists()  # the configured store was not touched
    runner.invoke(app, args)
    runs = [json.loads(line) for line in history.read_text().splitlines()]
    assert len(runs) == 2 and runs[0]["run_id"] != runs[1]["run_id"]
    for key in ("timestamp", "dataset_sha256", "taxonomy", "provider", "embedding", "git_commit", "metrics"):
        assert key in runs[0]
    listed = json.loads(runner.invoke(app, ["eval", "history", "--history", str(history), "--json"]).stdout)
    assert [r["run_id"] for r in listed] == [r["run_id"] for r in runs]


def test_bundled_eval_set_is_not_the_seed_bank_nor_the_templates() -> None:
    from retrieval.training_data import load_seed_examples, template_examples

    path = Path(__file__).parent.parent / "evals" / "datasets" / "classify_default.jsonl"
    texts = {json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()}
    assert len(texts) >= 80 and not texts & {s["text"] for s in load_seed_examples()}
    assert not texts & {t["text"] for t in template_examples()}


def test_cold_start_classifies_the_bundled_set_without_any_labelled_records(tmp_path: Path) -> None:
    """A new user's first classify, before ingesting anything: seeds + templates must carry it."""
    res = runner.invoke(
        app,
        [
            "eval",
            "classify",
            "--dataset",
            str(Path(__file__).parent.parent / "evals" / "datasets" / "classify_default.jsonl"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)["metrics"]
    assert m["category"]["accuracy"] >= 0.85 and m["sentiment"]["accuracy"] >= 0.85 and m["urgency"]["accuracy"] >= 0.8


def test_markdown_table_keeps_the_latest_run_per_dataset() -> None:
    from evals.history import markdown_table

    def run(rid: str, acc: float) -> dict:
        return {
            "run_id": rid,
            "timestamp": "2026-11-23T00:00:00+00:00",
            "task": "classify",
            "dataset": "d.jsonl",
            "n": 10,
            "git_commit": "abc1234",
            "provider": "none",
            "invalid_labels": 0,
            "metrics": {"category": {"accuracy": acc, "macro_f1": acc, "n": 10}},
        }

    table = markdown_table([run("r1", 0.5), run("r2", 0.75)]).splitlines()
    assert len(table) == 3 and "r2" in table[2] and "accuracy 0.750" in table[2] and "abc1234" in table[2]
    # the same test set trained on other data, or without the encoder, is another row
    few = run("r3", 0.9) | {"train": {"path": "/x/train-10.csv"}, "encoder": "all-MiniLM-L6-v2"}
    few_off = run("r4", 0.8) | {"train": {"path": "/x/train-10.csv"}, "encoder": None}
    table = markdown_table([run("r2", 0.75), few, few_off]).splitlines()
    assert len(table) == 5
    assert any("train-10.csv, encoder |" in line and "r3" in line for line in table)
    assert any("train-10.csv, no encoder |" in line and "r4" in line for line in table)


def test_banking77_few_shot_split(tmp_path: Path) -> None:
    import csv

    from evals.shared_data import banking77_shots
    from retrieval.taxonomy import load_taxonomy

    src = tmp_path / "test.csv"
    with open(src, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "category"])
        for intent in ("card_arrival", "exchange_rate", "age_limit"):
            for i in range(25):
                w.writerow([f"{intent} question {i}, with a comma", intent])
    counts = banking77_shots(src, tmp_path / "out")
    assert counts == {"intents": 3, "train": 30, "test": 30}

    def rows(name: str) -> list[dict[str, str]]:
        with open(tmp_path / "out" / name, encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))

    train, test = rows("banking77-shot10-train.csv"), rows("banking77-shot10-test.csv")
    assert train[0]["text"] == "card_arrival question 0, with a comma" and train[9]["text"].endswith(
        "question 9, with a comma"
    )
    assert test[0]["text"] == "card_arrival question 10, with a comma"
    assert not {r["text"] for r in train} & {r["text"] for r in test}
    tax = load_taxonomy(tmp_path / "out" / "banking77-taxonomy.json")
    assert tax.category_ids() == ["age_limit", "card_arrival", "exchange_rate"]
