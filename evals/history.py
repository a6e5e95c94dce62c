"""The eval history: every run appended as one JSON line (time, task, dataset name and hash, size,
provider/model, embedding, prompt versions, git commit, metrics), read back, compared, gated by
thresholds and tabled for the docs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from retrieval.taxonomy import Taxonomy


class EvalResult(BaseModel):
    """One eval run's figures: its size, metrics per field, its speed, and what the task adds
    (label paths, failures with their reasons, prompt versions, the store it ran on, ...)."""

    model_config = ConfigDict(extra="allow")

    n: int
    metrics: dict[str, dict[str, Any]]
    latency_ms_per_item: float
    invalid_labels: int | None = None
    paths: dict[str, int] | None = None
    failures: list[dict[str, Any]] | None = None
    prompt_versions: list[str] | None = None

    def fields(self) -> dict[str, Any]:
        """What the history records: the fields the task set, extras included."""
        return self.model_dump(mode="json", exclude_unset=True)


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
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=cwd or Path(__file__).resolve().parent.parent,
            check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def record_run(
    history: Path,
    task: str,
    dataset: Path,
    result: EvalResult,
    *,
    provider: str,
    model_name: str | None,
    embedding: str,
    taxonomy: Taxonomy,
) -> dict[str, Any]:
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
        **result.fields(),
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


def find_run(runs: list[dict[str, Any]], run_id: str) -> dict[str, Any]:
    """A run by id or unique id prefix."""
    matches = [r for r in runs if r.get("run_id", "").startswith(run_id)]
    if len(matches) != 1:
        raise ValueError(f"run {run_id!r} {'is ambiguous' if matches else 'is not in the history'}")
    return matches[0]


def compare_runs(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Metric deltas b - a for every scalar metric the two runs share."""
    out = []
    for field in sorted(set(a.get("metrics", {})) & set(b.get("metrics", {}))):
        ma, mb = a["metrics"][field], b["metrics"][field]
        for name in sorted(set(ma) & set(mb)):
            if isinstance(ma[name], int | float) and isinstance(mb[name], int | float) and name != "n":
                out.append(
                    {
                        "field": field,
                        "metric": name,
                        "a": ma[name],
                        "b": mb[name],
                        "delta": round(mb[name] - ma[name], 4),
                    }
                )
    return out


MAXIMUM_METRICS = {"policy_violations", "silent_wrong"}


def below_thresholds(result: EvalResult, thresholds: dict[str, Any]) -> list[str]:
    """Which metrics miss the thresholds: {field: {metric: minimum}}; counts of bad outcomes
    (invalid_labels, policy_violations) are maximums."""
    failures = []
    for field, mins in thresholds.items():
        if field == "invalid_labels":
            if (result.invalid_labels or 0) > mins:
                failures.append(f"invalid_labels {result.invalid_labels} > {mins}")
            continue
        for metric, minimum in mins.items():
            value = result.metrics.get(field, {}).get(metric)
            if metric in MAXIMUM_METRICS:
                if value is None or value > minimum:
                    failures.append(f"{field}.{metric} {value} > {minimum}")
            elif value is None or value < minimum:
                failures.append(f"{field}.{metric} {value} < {minimum}")
    return failures


def load_thresholds(path: Path, dataset: Path) -> dict[str, Any]:
    """The thresholds for a dataset (by file name) from a thresholds YAML file."""
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return dict(data.get(dataset.name, {}))


TABLE_METRICS = {
    "accuracy",
    "macro_f1",
    "mrr",
    "exact_in_tools",
    "exact_in_answer",
    "language_match",
    "citation_validity",
    "groundedness",
    "policy_violations",
    "review_recall",
    "llm_judge_1_5",
}


def _trained_on(run: dict[str, Any]) -> str:
    """The run's training file and, for classify runs that recorded it, whether the encoder was on."""
    train = Path(run["train"]["path"]).name if run.get("train") else "-"
    if "encoder" not in run:
        return train
    return f"{train}, {'encoder' if run['encoder'] else 'no encoder'}"


def markdown_table(runs: list[dict[str, Any]]) -> str:
    """The latest run per (task, dataset, training data and encoder) as a Markdown table, for the README."""
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for run in runs:
        latest[(run["task"], run["dataset"], _trained_on(run))] = run
    lines = [
        "| date | commit | task | dataset | trained on | n | results | provider | run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (task, dataset, trained), r in sorted(latest.items()):
        parts = []
        for field, m in r.get("metrics", {}).items():
            scalars = ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in m.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and k in TABLE_METRICS or k.startswith("hit@")
            )
            parts.append(f"{field}: {scalars}")
        if "invalid_labels" in r:
            parts.append(f"invalid labels {r['invalid_labels']}")
        lines.append(
            f"| {r['timestamp'][:10]} | {r.get('git_commit') or '?'} | {task} | {dataset} | {trained} | {r.get('n')} | "
            f"{'; '.join(parts)} | {r.get('provider')} | {r['run_id']} |"
        )
    return "\n".join(lines)
