"""Run an eval task the way ``feedback-agent eval ...`` does: on the configured store or a temporary
one, record the run in the history and compare it with the thresholds.

The scoring lives in :mod:`evals.harness`; this module only decides which store a task runs on
and what is recorded, so the CLI (and any other caller) runs exactly one code path.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from agent.app import OptionError, Workspace
from agent.config import Settings
from agent.errors import ConfigError
from agent.runtime import make_chat_model, make_embedder, make_encoder, open_store, taxonomy_of, zone_of
from evals import harness
from evals.history import EvalResult, below_thresholds, load_thresholds, record_run
from retrieval.ingest import ingest_file, ingest_rows
from retrieval.readers import RawRow, parse_map_options

Task = Literal["classify", "retrieval", "ask", "reply", "at-risk"]
Progress = Callable[[int, int], None]


@dataclass
class Run:
    """A recorded eval run and the thresholds it fell below (empty when it passed or had none)."""

    record: dict[str, Any]
    result: EvalResult
    failures: list[str]


def run_eval(
    settings: Settings,
    task: Task,
    dataset: Path,
    *,
    history: Path | None = None,
    thresholds: Path | None = None,
    history_from: Path | None = None,
    resolutions_from: Path | None = None,
    limit: int | None = None,
    maps: list[str] | None = None,
    k: int = 5,
    mode: str = "hybrid",
    as_of: str | None = None,
    days: int = 30,
    horizon: int = 14,
    progress: Progress | None = None,
) -> Run:
    """Run ``task`` on ``dataset``, append the run to the history and check the thresholds."""
    if not dataset.exists():
        raise ConfigError(f"dataset not found: {dataset}")
    if resolutions_from is not None and history_from is None and task != "at-risk":
        raise OptionError("--resolutions-from", "--resolutions-from needs --history-from")
    if mode not in ("hybrid", "vector", "keyword"):
        raise OptionError("--mode", f"--mode {mode!r}: use hybrid, vector or keyword")
    model = make_chat_model(settings) if task not in ("retrieval", "at-risk") else None
    try:
        if task == "at-risk":
            result = _at_risk(settings, dataset, resolutions_from, as_of, days, horizon, k, progress)
        elif task == "classify":
            result = _classify(settings, dataset, model, history_from, limit, maps, progress)
        elif task == "retrieval":
            result = _retrieval(settings, dataset, k, limit, mode)
        else:
            result = _on_store(settings, task, dataset, model, history_from, resolutions_from, limit, progress)
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{dataset.name}: {exc}") from None
    record = record_run(
        history or settings.home / "eval-history.jsonl",
        task,
        dataset,
        result,
        provider=settings.llm_provider,
        model_name=getattr(model, "name", None),
        embedding=make_embedder(settings).label,
        taxonomy=taxonomy_of(settings),
    )
    failures = below_thresholds(result, load_thresholds(thresholds, dataset)) if thresholds else []
    return Run(record, result, failures)


def _classify(
    settings: Settings,
    dataset: Path,
    model: Any,
    history_from: Path | None,
    limit: int | None,
    maps: list[str] | None,
    progress: Progress | None,
) -> EvalResult:
    store = None if history_from else open_store(settings)
    try:
        return harness.eval_classify(
            dataset=dataset,
            taxonomy=taxonomy_of(settings),
            store=store,
            embedder=make_embedder(settings),
            zone=zone_of(settings),
            model=model,
            history_from=history_from,
            limit=limit,
            encoder=make_encoder(settings),
            mapping=parse_map_options(maps or [], "feedback"),
            progress=progress,
        )
    finally:
        if store is not None:
            store.close()


def _retrieval(settings: Settings, dataset: Path, k: int, limit: int | None, mode: str) -> EvalResult:
    """A paraphrase set (doc and query rows) is searched in a temporary store of its own docs; any
    other set on the configured store."""
    docs = harness.paraphrase_docs(dataset)
    with tempfile.TemporaryDirectory(prefix="fa-eval-") as tmp:
        use = settings.model_copy(update={"home": Path(tmp), "chroma_url": None, "db_url": None}) if docs else settings
        store = open_store(use)
        try:
            if docs:
                rows = (
                    RawRow(number=i + 1, line=None, values={"id": d["id"], "text": d["text"]})
                    for i, d in enumerate(docs)
                )
                ingest_rows(
                    store,
                    rows,
                    kind="feedback",
                    taxonomy=None,
                    zone=zone_of(settings),
                    now=datetime.now(UTC),
                    reject=lambda raw, why: None,
                )
            return harness.eval_retrieval(dataset=dataset, store=store, k=k, limit=limit, mode=mode)
        finally:
            store.close()


def _on_store(
    settings: Settings,
    task: Task,
    dataset: Path,
    model: Any,
    history_from: Path | None,
    resolutions_from: Path | None,
    limit: int | None,
    progress: Progress | None,
) -> EvalResult:
    """``ask`` and ``reply``: on the configured store, or on a temporary one holding ``history_from``."""
    tax, zone = taxonomy_of(settings), zone_of(settings)
    store = None if history_from else open_store(settings)
    try:
        with harness.store_for(store, history_from, embedder=make_embedder(settings), taxonomy=tax, zone=zone) as used:
            if resolutions_from is not None:
                ingest_file(used, resolutions_from, kind="resolution", zone=zone, now=datetime.now(UTC))
            if task == "ask":
                return harness.eval_ask(
                    dataset=dataset, store=used, taxonomy=tax, zone=zone, model=model, limit=limit, progress=progress
                )
            return harness.eval_reply(
                dataset=dataset, store=used, taxonomy=tax, model=model, limit=limit, progress=progress
            )
    finally:
        if store is not None:
            store.close()


def _at_risk(
    settings: Settings,
    dataset: Path,
    resolutions: Path | None,
    as_of: str | None,
    days: int,
    horizon: int,
    k: int,
    progress: Progress | None,
) -> EvalResult:
    """A customer history is scored in a temporary home of its own; its resolutions come from
    ``--resolutions-from`` or, when there is one, the file beside it named ``<name>_resolutions``."""
    if resolutions is None:
        beside = dataset.with_name(f"{dataset.stem}_resolutions{dataset.suffix}")
        resolutions = beside if beside.exists() else None
    with tempfile.TemporaryDirectory(prefix="fa-eval-") as tmp:
        use = settings.model_copy(update={"home": Path(tmp), "chroma_url": None, "db_url": None, "llm": "none"})
        with Workspace.open(use) as ws:
            return harness.eval_at_risk(
                ws=ws,
                dataset=dataset,
                resolutions=resolutions,
                as_of=as_of,
                days=days,
                horizon=horizon,
                k=k,
                progress=progress,
            )
