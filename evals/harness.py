"""Eval harness: run a task on a labelled dataset, score it, append the run to a history.

``eval classify`` reads any CSV/JSONL/XLSX with a text column and any of ``category``,
``sentiment``, ``urgency`` as gold (columns map like ingest). With ``--history-from`` a labelled
file is ingested into a fresh temporary store first (a benchmark's train split); otherwise the
configured store's labelled records are the training data. Every run appends one JSON line to the
history: time, task, dataset name and hash, size, provider/model, embedding, prompt versions, git
commit and the metrics.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from agent.classify import FIELDS, Classifier
from agent.llm import ChatModel
from retrieval.ingest import ingest_file
from retrieval.readers import InputFile, text_rows
from retrieval.store import Store
from retrieval.taxonomy import Taxonomy
from retrieval.text import Embedder

LABEL_SETS = {"category": "categories", "sentiment": "sentiments", "urgency": "urgencies"}


def file_sha256(path: Path) -> str:
    """Content hash of a dataset file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_commit(cwd: Path | None = None) -> str | None:
    """The checkout's commit, when there is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=cwd or Path(__file__).resolve().parent.parent, check=True)  # fmt: skip
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def field_metrics(gold: list[str], pred: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label precision/recall/F1/support and the costliest confusions."""
    labels = sorted(set(gold) | set(pred))
    per: dict[str, dict[str, float]] = {}
    for lab in labels:
        tp = sum(g == lab and p == lab for g, p in zip(gold, pred, strict=True))
        fp = sum(g != lab and p == lab for g, p in zip(gold, pred, strict=True))
        fn = sum(g == lab and p != lab for g, p in zip(gold, pred, strict=True))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[lab] = {"precision": round(prec, 4), "recall": round(rec, 4), "f1": round(f1, 4), "support": tp + fn}
    gold_labels = sorted(set(gold))
    confusions = Counter((g, p) for g, p in zip(gold, pred, strict=True) if g != p)
    return {
        "accuracy": round(sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold), 4) if gold else 0.0,
        "macro_f1": round(sum(per[lab]["f1"] for lab in gold_labels) / len(gold_labels), 4) if gold_labels else 0.0,
        "n": len(gold),
        "per_label": per,
        "top_confusions": [{"gold": g, "pred": p, "count": n} for (g, p), n in confusions.most_common(10)],
    }


def load_gold(path: Path, taxonomy: Taxonomy, mapping: dict[str, str] | None, limit: int | None) -> tuple[
        list[str], list[str | None], dict[str, list[str | None]], int]:  # fmt: skip
    """Texts, ids and gold labels (None where absent) of a dataset; rows with unknown labels are skipped."""
    texts: list[str] = []
    ids: list[str | None] = []
    gold: dict[str, list[str | None]] = {f: [] for f in FIELDS}
    skipped = 0
    for tr in text_rows(InputFile(path, "feedback", mapping)):
        if limit is not None and len(texts) >= limit:
            break
        if tr.text is None:
            skipped += 1
            continue
        values = tr.row.values or {}
        row: dict[str, str | None] = {}
        ok = True
        for f in FIELDS:
            v = values.get(f)
            if v in (None, ""):
                row[f] = None
                continue
            norm = taxonomy.normalize(LABEL_SETS[f], str(v))
            if norm is None:
                ok = False
                break
            row[f] = norm
        if not ok:
            skipped += 1
            continue
        texts.append(tr.text)
        ids.append(tr.id)
        for f in FIELDS:
            gold[f].append(row[f])
    return texts, ids, gold, skipped


def eval_classify(
    *,
    dataset: Path,
    taxonomy: Taxonomy,
    store: Store | None,
    embedder: Embedder,
    zone: tzinfo,
    model: ChatModel | None = None,
    history_from: Path | None = None,
    limit: int | None = None,
    mapping: dict[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Classify a labelled dataset and score it.

    Args:
        dataset: labelled file (text + any of category/sentiment/urgency).
        taxonomy: label sets; gold labels are normalised to its ids.
        store: the store whose labelled records train the classifier (ignored with history_from).
        embedder: embedding for a temporary store.
        zone: zone for timestamps of the history file.
        model: chat model, or None for the no-LLM path.
        history_from: labelled file ingested into a fresh temporary store first (train split).
        limit: evaluate at most this many rows.
        mapping: {field: header} for the dataset's columns.
        progress: called with (done, total).
    """
    texts, ids, gold, skipped = load_gold(dataset, taxonomy, mapping, limit)
    tmp: tempfile.TemporaryDirectory[str] | None = None
    train_info: dict[str, Any] | None = None
    try:
        if history_from is not None:
            tmp = tempfile.TemporaryDirectory(prefix="fa-eval-")
            store = Store(Path(tmp.name), embedder)
            summary = ingest_file(store, history_from, taxonomy=taxonomy, zone=zone, now=datetime.now(UTC),
                                  mapping=mapping, batch_size=2000)  # fmt: skip
            train_info = {"path": str(history_from), "sha256": file_sha256(history_from), "added": summary.added,
                          "rejected": summary.rejected}  # fmt: skip
        assert store is not None
        clf = Classifier(store, taxonomy, model)
        started = time.perf_counter()
        clf.trained()
        train_s = time.perf_counter() - started
        results = []
        started = time.perf_counter()
        step = 200
        for i in range(0, len(texts), step):
            results.extend(clf.classify(texts[i : i + step], ids[i : i + step]))
            if progress is not None:
                progress(min(i + step, len(texts)), len(texts))
        elapsed = time.perf_counter() - started
    finally:
        if tmp is not None:
            store.close()  # type: ignore[union-attr]
            tmp.cleanup()
    valid = {f: set(ids_) for f, ids_ in (("category", taxonomy.category_ids()),
                                           ("sentiment", [s.id for s in taxonomy.sentiments]),
                                           ("urgency", [u.id for u in taxonomy.urgencies]))}  # fmt: skip
    invalid = sum(getattr(r, f) not in valid[f] for r in results for f in FIELDS)
    metrics: dict[str, Any] = {}
    for f in FIELDS:
        pairs = [(g, getattr(r, f)) for g, r in zip(gold[f], results, strict=True) if g is not None]
        if pairs:
            metrics[f] = field_metrics([g for g, _ in pairs], [p for _, p in pairs])
    return {
        "n": len(texts),
        "skipped_rows": skipped,
        "metrics": metrics,
        "invalid_labels": invalid,
        "paths": dict(Counter(r.path for r in results)),
        "fallbacks": sum(r.fallback_reason is not None for r in results),
        "latency_ms_per_item": round(elapsed / max(len(texts), 1) * 1000, 3),
        "items_per_s": round(len(texts) / elapsed, 1) if elapsed else None,
        "train_s": round(train_s, 2),
        "train": train_info,
        "prompt_versions": sorted({r.prompt_version for r in results if r.prompt_version}),
    }


def record_run(history: Path, task: str, dataset: Path, result: dict[str, Any], *, provider: str,
               model_name: str | None, embedding: str, taxonomy: Taxonomy) -> dict[str, Any]:  # fmt: skip
    """Append one run to the history (JSON lines) and return the record."""
    now = datetime.now(UTC)
    record = {
        "run_id": now.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6],
        "timestamp": now.isoformat(),
        "task": task,
        "dataset": dataset.name,
        "dataset_sha256": file_sha256(dataset),
        "taxonomy": f"{taxonomy.name}@{taxonomy.version} ({len(taxonomy.categories)} categories)",
        "provider": provider,
        "model": model_name,
        "embedding": embedding,
        "git_commit": git_commit(),
        **result,
    }
    history.parent.mkdir(parents=True, exist_ok=True)
    with open(history, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return record


def read_history(history: Path, task: str | None = None) -> list[dict[str, Any]]:
    """Runs in the history, oldest first (unreadable lines are skipped)."""
    if not history.exists():
        return []
    runs = []
    with open(history, encoding="utf-8") as fh:
        for line in fh:
            try:
                run = json.loads(line)
            except json.JSONDecodeError:
                continue
            if task is None or run.get("task") == task:
                runs.append(run)
    return runs
