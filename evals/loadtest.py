"""Bounded load test of the HTTP service on loopback, no LLM.

``make loadtest`` (or ``python -m evals.loadtest [--clients 50] [--seconds 60]``) starts
``feedback-agent serve`` on a free loopback port over a fresh home holding the bundled sample,
runs N concurrent clients against ``POST /v1/classify`` and ``POST /v1/ask`` (alternating), and
meanwhile ingests new feedback through ``POST /v1/feedback`` in batches. It prints throughput,
p50/p95/p99 latency and errors per endpoint, then checks that every ingested record is in the
SQL mirror and in Chroma (nothing lost). Exit 1 on any error or loss.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from evals.ask_questions import DEFAULT_OUT
from retrieval.ingest import ingest_file
from retrieval.records import get_zone
from retrieval.sample_data import SAMPLE_DIR, generate
from retrieval.store import Store
from retrieval.taxonomy import load_taxonomy
from retrieval.text import HashEmbedding

ROOT = Path(__file__).resolve().parent.parent
KEY = "load-test-key"


def free_port() -> int:
    """A TCP port nothing listens on, on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    env: dict[str, str], stderr: Any = subprocess.DEVNULL, args: Sequence[str] = ()
) -> tuple[subprocess.Popen[Any], str]:
    """Start `feedback-agent serve [args]` on a free loopback port and wait until /healthz answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cli import main; main()", "serve", "--port", str(port), *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stderr=stderr,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("the server did not come up within 120 s")


def _pcts(ms: list[float]) -> dict[str, float]:
    if len(ms) < 2:
        return {"p50": ms[0] if ms else 0.0, "p95": ms[0] if ms else 0.0, "p99": ms[0] if ms else 0.0}
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": round(q[49], 1), "p95": round(q[94], 1), "p99": round(q[98], 1)}


def main() -> None:
    """Run the load test and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--ingest-batch", type=int, default=100)
    args = ap.parse_args()

    zone = get_zone("Asia/Shanghai")
    texts = [r["text"] for r in generate(per_week=80, seed=77)[0]]
    questions = [json.loads(line)["question"] for line in DEFAULT_OUT.read_text(encoding="utf-8").splitlines()]
    with tempfile.TemporaryDirectory(prefix="fa-load-") as tmp:
        home = Path(tmp)
        store = Store(home, HashEmbedding())
        ingest_file(store, SAMPLE_DIR / "feedback.csv", taxonomy=load_taxonomy(), zone=zone, now=datetime.now(UTC))
        ingest_file(store, SAMPLE_DIR / "resolutions.csv", kind="resolution", zone=zone, now=datetime.now(UTC))
        store.close()
        server, url = start_server(
            {"FEEDBACK_AGENT_HOME": str(home), "FEEDBACK_AGENT_API_KEYS": KEY, "FEEDBACK_AGENT_LLM": "none"}
        )
        headers = {"Authorization": f"Bearer {KEY}"}
        try:
            before = httpx.get(f"{url}/healthz").json()["feedback"]
            lat: dict[str, list[float]] = defaultdict(list)
            errors: dict[str, list[str]] = defaultdict(list)
            lock = threading.Lock()
            deadline = time.monotonic() + args.seconds
            ingested: list[str] = []

            def client(n: int) -> None:
                rng = random.Random(n)
                with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
                    i = 0
                    req: Callable[[], httpx.Response]
                    while time.monotonic() < deadline:
                        if (n + i) % 2 == 0:
                            name, req = "classify", lambda: http.post("/v1/classify", json={"text": rng.choice(texts)})
                        else:
                            name, req = (
                                "ask",
                                lambda: http.post(
                                    "/v1/ask", json={"question": rng.choice(questions), "as_of": "2026-11-23"}
                                ),
                            )
                        t = time.perf_counter()
                        try:
                            res = req()
                            ok, why = res.status_code == 200, f"HTTP {res.status_code}"
                        except httpx.HTTPError as exc:
                            ok, why = False, type(exc).__name__
                        with lock:
                            lat[name].append((time.perf_counter() - t) * 1000)
                            if not ok:
                                errors[name].append(why)
                        i += 1

            def ingester() -> None:
                with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
                    batch_no = 0
                    while time.monotonic() < deadline:
                        recs = [
                            {
                                "id": f"LOAD-{batch_no}-{i}",
                                "text": f"压测导入 {batch_no}-{i}：{texts[(batch_no * 7 + i) % len(texts)]}",
                                "created_at": "2026-11-22 12:00:00",
                                "channel": "api",
                            }
                            for i in range(args.ingest_batch)
                        ]
                        t = time.perf_counter()
                        res = http.post("/v1/feedback", json={"records": recs})
                        with lock:
                            lat["feedback"].append((time.perf_counter() - t) * 1000)
                            if res.status_code != 200 or res.json()["rejected"]:
                                errors["feedback"].append(f"HTTP {res.status_code}")
                            else:
                                ingested.extend(res.json()["added"])
                        batch_no += 1

            threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
            threads.append(threading.Thread(target=ingester))
            started = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - started
            after = httpx.get(f"{url}/healthz").json()["feedback"]
        finally:
            server.terminate()
            server.wait(timeout=30)
        store = Store(home, HashEmbedding())
        in_chroma = store.chroma_count("feedback")
        in_mirror = store.count("feedback")
        store.close()

    print(
        f"\nfeedback-agent load test: {args.clients} clients for {args.seconds:g} s on loopback, no LLM "
        f"(+1 client ingesting batches of {args.ingest_batch})"
    )
    print(f"{'endpoint':12}{'requests':>10}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name in ("classify", "ask", "feedback"):
        p = _pcts(lat[name])
        print(
            f"{name:12}{len(lat[name]):>10}{len(lat[name]) / elapsed:>9.1f}{p['p50']:>9}{p['p95']:>9}{p['p99']:>9}"
            f"{len(errors[name]):>8}"
        )
    lost = before + len(ingested) - after
    print(
        f"ingested during the load: {len(ingested)} records; mirror {after} = {before} + {len(ingested)}; "
        f"Chroma {in_chroma}, mirror {in_mirror}; lost: {lost}"
    )
    failed = sum(len(v) for v in errors.values())
    if failed or lost or in_chroma != in_mirror:
        print(f"FAILED: {failed} errors { {k: v[:3] for k, v in errors.items() if v} }, {lost} lost")
        sys.exit(1)


if __name__ == "__main__":
    main()
