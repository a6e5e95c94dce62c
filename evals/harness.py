"""Eval harness: run a task on a labelled dataset, score it, append the run to a history.

``eval classify`` reads any CSV/JSONL/XLSX with a text column and any of ``category``,
``sentiment``, ``urgency`` as gold (columns map like ingest). With ``--history-from`` a labelled
file is ingested into a fresh temporary store first (a benchmark's train split); otherwise the
configured store's labelled records are the training data. Runs are recorded by
:mod:`evals.history`; :mod:`evals.runner` picks the store a task runs on.
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from agent.app import Workspace
from agent.classify import FIELDS, Classifier
from agent.llm import ChatModel
from evals.history import EvalResult, file_sha256
from retrieval.encoder import SentenceEncoder
from retrieval.ingest import ingest_file
from retrieval.readers import InputFile, text_rows
from retrieval.store import Store, feedback_table
from retrieval.taxonomy import LABEL_SETS, Taxonomy
from retrieval.text import Embedder


def field_metrics(gold: list[str], pred: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 (over the gold labels), per-label precision/recall/F1/support and the
    costliest confusions (scikit-learn's metrics, zero where a label is never predicted)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    labels = sorted(set(gold) | set(pred))
    if not gold:
        return {"accuracy": 0.0, "macro_f1": 0.0, "n": 0, "per_label": {}, "top_confusions": []}
    prec, rec, f1, support = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0.0)
    per = {
        lab: {
            "precision": round(float(p), 4),
            "recall": round(float(r), 4),
            "f1": round(float(f), 4),
            "support": int(n),
        }
        for lab, p, r, f, n in zip(labels, prec, rec, f1, support, strict=True)
    }
    macro = f1_score(gold, pred, labels=sorted(set(gold)), average="macro", zero_division=0.0)
    confusions = Counter((g, p) for g, p in zip(gold, pred, strict=True) if g != p)
    return {
        "accuracy": round(float(accuracy_score(gold, pred)), 4),
        "macro_f1": round(float(macro), 4),
        "n": len(gold),
        "per_label": per,
        "top_confusions": [{"gold": g, "pred": p, "count": n} for (g, p), n in confusions.most_common(10)],
    }


def load_gold(
    path: Path, taxonomy: Taxonomy, mapping: dict[str, str] | None, limit: int | None
) -> tuple[list[str], list[str | None], dict[str, list[str | None]], int]:
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


@contextmanager
def store_for(
    store: Store | None,
    history_from: Path | None,
    *,
    embedder: Embedder,
    taxonomy: Taxonomy,
    zone: tzinfo,
    mapping: dict[str, str] | None = None,
    info: dict[str, Any] | None = None,
) -> Iterator[Store]:
    """``store``, or with ``history_from`` a fresh temporary store holding that file (removed after).

    ``info`` receives the file's path, hash and ingest counts.
    """
    if history_from is None:
        if store is None:
            raise ValueError("no store and no history file")
        yield store
        return
    with tempfile.TemporaryDirectory(prefix="fa-eval-") as tmp:
        temp = Store(Path(tmp), embedder)
        try:
            summary = ingest_file(
                temp,
                history_from,
                taxonomy=taxonomy,
                zone=zone,
                now=datetime.now(UTC),
                mapping=mapping,
                batch_size=2000,
            )
            if info is not None:
                info.update(
                    path=str(history_from),
                    sha256=file_sha256(history_from),
                    added=summary.added,
                    rejected=summary.rejected,
                )
            yield temp
        finally:
            temp.close()


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
    encoder: SentenceEncoder | None = None,
) -> EvalResult:
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
        encoder: the classifier's sentence encoder (None: TF-IDF features only).
    """
    texts, ids, gold, skipped = load_gold(dataset, taxonomy, mapping, limit)
    train_info: dict[str, Any] = {}
    with store_for(
        store, history_from, embedder=embedder, taxonomy=taxonomy, zone=zone, mapping=mapping, info=train_info
    ) as store:
        clf = Classifier(store, taxonomy, model, encoder)
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
    valid = {f: set(taxonomy.label_ids(f)) for f in FIELDS}
    invalid = sum(getattr(r, f) not in valid[f] for r in results for f in FIELDS)
    metrics: dict[str, Any] = {}
    for f in FIELDS:
        pairs = [(g, getattr(r, f)) for g, r in zip(gold[f], results, strict=True) if g is not None]
        if pairs:
            metrics[f] = field_metrics([g for g, _ in pairs], [p for _, p in pairs])
    return EvalResult(
        n=len(texts),
        skipped_rows=skipped,
        metrics=metrics,
        invalid_labels=invalid,
        paths=dict(Counter(r.path for r in results)),
        fallbacks=sum(r.fallback_reason is not None for r in results),
        latency_ms_per_item=round(elapsed / max(len(texts), 1) * 1000, 3),
        items_per_s=round(len(texts) / elapsed, 1) if elapsed else None,
        train_s=round(train_s, 2),
        train=train_info or None,
        encoder=encoder.name if encoder else None,
        prompt_versions=sorted({r.prompt_version for r in results if r.prompt_version}),
    )


def _expected(values: dict[str, Any]) -> tuple[set[str], str | None]:
    raw = values.get("expected_ids")
    if isinstance(raw, str):
        words = [x for x in raw.replace(",", " ").split() if x]
        try:
            raw = json.loads(raw) if raw.strip().startswith("[") else words
        except json.JSONDecodeError:
            raw = words
    ids = {str(x) for x in raw} if isinstance(raw, list) else set()
    category = values.get("expected_category")
    return ids, (str(category) if category not in (None, "") else None)


def paraphrase_docs(dataset: Path) -> list[dict[str, Any]]:
    """The ``{"type": "doc"}`` rows of a paraphrase set (a bank to search), or [] for a plain set."""
    if dataset.suffix != ".jsonl":
        return []
    with open(dataset, encoding="utf-8-sig") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [r for r in rows if r.get("type") == "doc"]


def eval_retrieval(
    *, dataset: Path, store: Store, k: int = 5, limit: int | None = None, mode: str = "hybrid"
) -> EvalResult:
    """Score similar-case search: hit@1, hit@k and MRR over queries with expected ids or a category.

    A row holds ``query`` (or ``text``) and ``expected_ids`` (a list, or ids separated by spaces
    or commas) and/or ``expected_category`` (a hit is a record of that category); in a paraphrase
    set, ``{"type": "query", "text", "relevant"}`` (its ``{"type": "doc"}`` rows are the bank,
    loaded by the caller). ``mode``: ``hybrid`` (what ``similar`` does), ``vector`` (the
    embedding alone) or ``keyword`` (bm25 alone). Results carry per-``pair`` hit@1 when rows name
    one (zh-zh, en-en, zh-en, en-zh).
    """
    from retrieval.search import Searcher
    from retrieval.text import embed, tokenize

    def ranked(query: str) -> list[tuple[str, dict[str, Any]]]:
        if mode == "hybrid":
            return [(h.id, h.record) for h in searcher.search(query, k=k, with_links=False)]
        if mode == "vector":
            found = store.ann("feedback", embed(store.embedder, [query], [tokenize(query)])[0], k)
        else:
            found = store.keyword("feedback", tokenize(query), k)
        records = store.records("feedback", [i for i, _ in found])
        return [(i, records[i].model_dump() if i in records else {}) for i, _ in found]

    searcher = Searcher(store)
    pairs: dict[str, list[int]] = {}
    hits1 = hitsk = 0
    rr = 0.0
    n = skipped = 0
    started = time.perf_counter()
    with open(dataset, encoding="utf-8-sig", newline="") as fh:
        rows = (
            [json.loads(line) for line in fh if line.strip()]
            if dataset.suffix == ".jsonl"
            else list(csv.DictReader(fh))
        )
    for values in rows:
        if limit is not None and n >= limit:
            break
        if values.get("type") == "doc":
            continue
        query = str(values.get("query") or values.get("text") or "").strip()
        ids, category = _expected(values)
        if values.get("relevant"):
            ids = {str(values["relevant"])}
        if not query or not (ids or category):
            skipped += 1
            continue
        n += 1
        results = ranked(query)
        rank = next(
            (
                i
                for i, (rid, rec) in enumerate(results, start=1)
                if rid in ids or (category is not None and rec.get("category") == category)
            ),
            None,
        )
        if rank is not None:
            hitsk += 1
            hits1 += rank == 1
            rr += 1.0 / rank
        if values.get("pair"):
            tally = pairs.setdefault(str(values["pair"]), [0, 0])
            tally[0] += rank == 1
            tally[1] += 1
    elapsed = time.perf_counter() - started
    return EvalResult(
        n=n,
        skipped_rows=skipped,
        k=k,
        metrics={
            "retrieval": {
                f"hit@{k}": round(hitsk / n, 4) if n else 0.0,
                "hit@1": round(hits1 / n, 4) if n else 0.0,
                "mrr": round(rr / n, 4) if n else 0.0,
                **{f"hit@1_{p}": round(a / b, 4) for p, (a, b) in sorted(pairs.items())},
            }
        },
        mode=mode,
        embedding=store.embedder.label,
        latency_ms_per_item=round(elapsed / max(n, 1) * 1000, 3),
        prompt_versions=[],
    )


# --------------------------------------------------------------------------- ask

_DATE_OR_ID = re.compile(r"\d{4}-\d{2}-\d{2}|\d{4}-W\d{2}|\b[A-Za-z]+[\w-]*\d[\w-]*\b")


def figure_in_results(value: Any, results: list[Any]) -> bool:
    """An expected figure is a number or a string value somewhere in the tool results; a
    ``{"percent": 45.5}`` is a share there (0.455, to the shown decimal)."""
    if isinstance(value, dict) and "percent" in value:
        pct = float(value["percent"])

        def share(node: Any) -> bool:
            if isinstance(node, dict):
                return any(share(v) for v in node.values())
            if isinstance(node, list):
                return any(share(v) for v in node)
            return isinstance(node, float) and abs(node * 100 - pct) <= 0.05 + 1e-9

        return share(results)

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        if isinstance(value, bool) or isinstance(node, bool):
            return False
        if isinstance(value, int | float):
            return isinstance(node, int | float) and abs(node - value) < 1e-9
        return isinstance(node, str) and node == str(value)

    return walk(results)


def figure_in_answer(value: Any, answer: str, taxonomy: Taxonomy) -> bool:
    """An expected number as a whole token of the answer (dates and ids aside); a string verbatim,
    or for a category id its Chinese or English name; a ``{"percent": 45.5}`` as "45.5%"."""
    if isinstance(value, dict) and "percent" in value:
        return re.search(rf"(?<![\d.]){re.escape(str(value['percent']))}\s*%", answer) is not None
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = _DATE_OR_ID.sub(" ", answer)
        num = str(int(value)) if float(value).is_integer() else str(value)
        return re.search(rf"(?<![\d.]){re.escape(num)}(?![\d]|\.\d)", text) is not None
    names = [str(value)]
    for lab in taxonomy.labels_of("category"):
        if lab.id == value:
            names += [n for n in (lab.name_zh, lab.name_en) if n]
    return any(n.lower() in answer.lower() for n in names)


def eval_ask(
    *,
    dataset: Path,
    store: Store,
    taxonomy: Taxonomy,
    zone: tzinfo,
    model: ChatModel | None = None,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Ask each question of a JSONL file and check its expected figures.

    A row holds ``question``, ``as_of`` (a date: its end of day, or a timestamp) and ``expected``:
    figures (numbers, label ids, facet values) that must all appear in the tool results and in
    the answer text. ``silent_wrong`` counts the wrong answers that still claimed to have
    understood the question (``understood`` true): the failure the product must never have. A row
    may add ``not_used``: words of the question the product cannot use yet; it then passes only
    when the answer names them and is not marked understood.
    """
    from agent.ask import Asker
    from agent.tools import Analytics
    from retrieval.records import parse_when

    rows = [json.loads(line) for line in dataset.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    rows = [r for r in rows if r.get("question") and isinstance(r.get("expected"), list)][:limit]
    if not rows:
        raise ValueError(f"{dataset.name}: no rows with a question and an expected list")
    per_kind: dict[str, list[int]] = {}
    failures: list[dict[str, Any]] = []
    ok_tools = ok_answer = ok_both = understood = silent_wrong = 0
    paths: Counter[str] = Counter()
    prompts: set[str] = set()
    started = time.perf_counter()
    for i, row in enumerate(rows, start=1):
        as_of_s = str(row.get("as_of") or "")
        when = parse_when(as_of_s, zone) if as_of_s else datetime.now(UTC)
        answer = Asker(Analytics(store, when, zone), taxonomy, model).ask(str(row["question"]))
        results = [c.result for c in answer.tool_calls if c.error is None]
        t_ok = all(figure_in_results(v, results) for v in row["expected"])
        a_ok = all(figure_in_answer(v, answer.answer, taxonomy) for v in row["expected"])
        if row.get("not_used"):  # the part it cannot use must be said, and the answer not pass as whole
            a_ok = a_ok and answer.understood is not True
            a_ok = a_ok and all(str(w).lower() in answer.answer.lower() for w in row["not_used"])
        ok_tools += t_ok
        ok_answer += a_ok
        ok_both += t_ok and a_ok
        understood += answer.understood is True
        silent_wrong += answer.understood is True and not (t_ok and a_ok)
        paths[answer.path] += 1
        prompts |= {answer.prompt_version} if answer.prompt_version else set()
        per_kind.setdefault(str(row.get("kind", "all")), []).append(int(t_ok and a_ok))
        if not (t_ok and a_ok):
            failures.append(
                {
                    "id": row.get("id"),
                    "question": row["question"],
                    "expected": row["expected"],
                    "in_tools": t_ok,
                    "in_answer": a_ok,
                    "understood": answer.understood,
                    "answer": answer.answer[:300],
                }
            )
        if progress is not None:
            progress(i, len(rows))
    elapsed = time.perf_counter() - started
    n = len(rows)
    return EvalResult(
        n=n,
        metrics={
            "ask": {
                "exact_in_tools": round(ok_tools / n, 4),
                "exact_in_answer": round(ok_answer / n, 4),
                "accuracy": round(ok_both / n, 4),
                "understood": round(understood / n, 4),
                "silent_wrong": silent_wrong,
                **{f"accuracy_{k}": round(sum(v) / len(v), 4) for k, v in sorted(per_kind.items())},
            }
        },
        paths=dict(paths),
        failures=failures[:50],
        latency_ms_per_item=round(elapsed / n * 1000, 3),
        prompt_versions=sorted(prompts),
    )


# --------------------------------------------------------------------------- reply


# The harness's own judges of tense and tone (independent of agent/reply.py's checks): a reply
# that says an action already happened, and words that make harm sound small.
_DONE_CLAIM = re.compile(
    r"已经?(?:为您|给您|帮您|向您)?(?:退款|退回|退还|补发|重发|发放|安排|处理|联系|寄出|发出|更换|加急|提交|升级)|"
    r"\b(?:we've|we have|has been|have been)\s+(?:already\s+)?\w+ed\b|\bwe (?:re-?sent|refunded|issued)\b",
    re.I,
)
_SMALL_HARM = re.compile(r"不便|麻烦|inconvenien|hassle", re.I)
_CONDITIONAL = re.compile(r"(?:once|after|when|as soon as|until|before|if)\s*$|(?:核实后|确认后|如果|若)\s*$", re.I)


def _claims_done(reply: str) -> bool:
    """A statement that something already happened; "once we have checked" is a condition, not one."""
    return any(not _CONDITIONAL.search(reply[max(0, m.start() - 12) : m.start()]) for m in _DONE_CLAIM.finditer(reply))


def eval_reply(
    *,
    dataset: Path,
    store: Store,
    taxonomy: Taxonomy,
    model: ChatModel | None = None,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Draft a reply for each complaint of a JSONL file and check it.

    A row holds ``text`` and optionally ``customer``, ``order_id``, ``language`` (default: the
    text's), ``expect_review`` (true for cases that must be flagged), ``severity`` (``injury`` or
    ``safety``: the draft must not call it an inconvenience) and ``insults`` (the customer's
    words the draft must not repeat). Checks, re-done here rather than trusted from the draft:
    the reply's language; every citation is a stored resolution whose complaint is similar to
    this one; every promise is in a cited resolution; no request for secrets; ``needs_review``
    on the cases that expect it. Tense, tone and echo are judged by this harness's own word
    lists, not the agent's: ``tense_ok`` (no action stated as already done), ``tone_ok`` (the
    severe rows), ``no_insult_echo`` (the rows with insults). With a chat model an LLM judge
    also scores each draft 1-5.
    """
    from agent.grounded import output_language
    from agent.reply import Replier, check_draft, evidence_threshold

    rows = [json.loads(line) for line in dataset.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    rows = [r for r in rows if str(r.get("text") or "").strip()][:limit]
    if not rows:
        raise ValueError(f"{dataset.name}: no rows with a text")
    replier = Replier(store, taxonomy, model)
    lang_ok = cites_ok = grounded = cited_any = violations = 0
    review_hits = review_total = calm_ok = calm_total = 0
    tense_ok = tone_ok = tone_total = echo_ok = echo_total = 0
    judge: list[float] = []
    paths: Counter[str] = Counter()
    prompts: set[str] = set()
    failures: list[dict[str, Any]] = []
    started = time.perf_counter()
    for i, row in enumerate(rows, start=1):
        text = str(row["text"])
        d = replier.draft(text, customer=row.get("customer"), order_id=row.get("order_id"))
        paths[d.path] += 1
        prompts |= {d.prompt_version} if d.prompt_version else set()
        want = row.get("language") or output_language(text)
        l_ok = d.language == want and output_language(d.reply) == want
        stored = store.records("resolution", d.citations)
        sims = {e.resolution_id: e.similarity for e in d.evidence}
        c_ok = all(c in stored and sims.get(c, 0) >= evidence_threshold(store) for c in d.citations)
        promises, problems = check_draft(
            d.reply,
            d.evidence,
            d.citations,
            want,
            message=text,
            customer=row.get("customer"),
            order_id=row.get("order_id"),
        )
        g_ok = all(p.supported_by for p in promises)
        lang_ok += l_ok
        cites_ok += c_ok
        grounded += g_ok
        cited_any += bool(d.citations)
        violations += bool(problems)
        done = _claims_done(d.reply)
        tense_ok += not done
        if row.get("severity") in ("injury", "safety"):
            tone_total += 1
            tone_ok += not _SMALL_HARM.search(d.reply)
        if row.get("insults"):
            echo_total += 1
            echo_ok += not any(str(w).lower() in d.reply.lower() for w in row["insults"])
        if row.get("expect_review") is True:
            review_total += 1
            review_hits += d.needs_review
        elif row.get("expect_review") is False:
            calm_total += 1
            calm_ok += not d.needs_review
        if model is not None:
            score = _judge(model, text, d.reply)
            if score is not None:
                judge.append(score)
        tone_bad = row.get("severity") in ("injury", "safety") and _SMALL_HARM.search(d.reply)
        echo_bad = any(str(w).lower() in d.reply.lower() for w in row.get("insults") or [])
        if (
            not (l_ok and c_ok and g_ok and not problems)
            or (row.get("expect_review") is True and not d.needs_review)
            or done
            or tone_bad
            or echo_bad
        ):
            failures.append(
                {
                    "id": row.get("id"),
                    "text": text[:120],
                    "reply": d.reply[:200],
                    "problems": problems,
                    "needs_review": d.needs_review,
                }
            )
        if progress is not None:
            progress(i, len(rows))
    n = len(rows)
    metrics: dict[str, Any] = {
        "language_match": round(lang_ok / n, 4),
        "citation_validity": round(cites_ok / n, 4),
        "groundedness": round(grounded / n, 4),
        "cited_share": round(cited_any / n, 4),
        "policy_violations": violations,
        "tense_ok": round(tense_ok / n, 4),
    }
    if tone_total:
        metrics["tone_ok"] = round(tone_ok / tone_total, 4)
    if echo_total:
        metrics["no_insult_echo"] = round(echo_ok / echo_total, 4)
    if review_total:
        metrics["review_recall"] = round(review_hits / review_total, 4)
    if calm_total:
        metrics["no_review_when_not_needed"] = round(calm_ok / calm_total, 4)
    if judge:
        metrics["llm_judge_1_5"] = round(sum(judge) / len(judge), 3)
    return EvalResult(
        n=n,
        metrics={"reply": metrics},
        paths=dict(paths),
        failures=failures[:50],
        latency_ms_per_item=round((time.perf_counter() - started) / n * 1000, 3),
        prompt_versions=sorted(prompts | ({"judge_reply@v1"} if judge else set())),
    )


def _judge(model: ChatModel, text: str, reply: str) -> float | None:
    """An LLM judge's 1-5 score for a draft (None when the judge fails)."""
    from pydantic import BaseModel, Field

    from agent.errors import AgentError
    from agent.llm import complete_structured
    from agent.prompts import fence, load_prompt

    class Verdict(BaseModel):
        score: int = Field(ge=1, le=5)
        reason: str = ""

    prompt = load_prompt("judge_reply")
    try:
        got = complete_structured(
            model,
            prompt.render(message=fence(text, "customer_message"), reply=fence(reply, "draft")),
            Verdict,
            prompt_version=prompt.ref,
            max_tokens=128,
        )
    except AgentError:
        return None
    return float(got.value.score)


def eval_at_risk(
    *,
    ws: Workspace,
    dataset: Path,
    resolutions: Path | None,
    as_of: str | None,
    days: int,
    horizon: int,
    k: int,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Load a customer history into the workspace ``ws`` (a fresh home), then score the at-risk
    list on time: fit before the reference time (default: the last record minus ``horizon`` days),
    rank the customers with open signals then, and compare with the bad reviews that followed."""
    from agent.at_risk import evaluate
    from retrieval.records import parse_when

    started = time.perf_counter()
    loaded = ws.ingest_file(dataset, progress=progress)
    if resolutions is not None:
        ws.ingest_file(resolutions, kind="resolution")
    f = feedback_table.c
    with ws.store.engine.connect() as conn:
        last = conn.execute(select(func.max(f.created_ts))).scalar()
    if last is None:
        raise ValueError("the dataset holds no usable feedback rows")
    t = parse_when(as_of, ws.zone) if as_of else datetime.fromtimestamp(last, ws.zone) - timedelta(days=horizon)
    scored = evaluate(ws.store, t, days=days, horizon=horizon, k=k)
    data = scored.pop("data")
    return EvalResult(
        n=data["candidates"],
        metrics=scored,
        latency_ms_per_item=round((time.perf_counter() - started) * 1000 / max(data["candidates"], 1), 3),
        as_of=t.isoformat(),
        horizon_days=horizon,
        k=k,
        data=data,
        ingest={"added": loaded.added, "rejected": loaded.rejected, "resolutions": str(resolutions or "")},
    )
