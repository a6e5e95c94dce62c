"""The README's five-minute tour, run exactly as written (issue 20): each command exits 0 and says
what the tour promises. It runs in a scratch folder that sees the checkout's .venv and docs/."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import httpx

from evals.loadtest import free_port

REPO = Path(__file__).resolve().parent.parent


def tour_lines() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- tour -->\s*```sh\n(.*?)```\s*<!-- /tour -->", readme, re.S)
    assert block, "the README has no tour block"
    return [ln for ln in block.group(1).splitlines() if ln.strip()]


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    for name in (".venv", "docs"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEEDBACK_AGENT_", "OPENAI_"))}
    # what `make demo` does, in this folder
    demo = subprocess.run(
        [".venv/bin/feedback-agent", "demo", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr[-2000:]
    lines = tour_lines()
    serve = [ln for ln in lines if " serve" in ln]
    assert len(serve) == 1 and lines[-1] == serve[0] and lines[0].startswith("export FEEDBACK_AGENT_HOME=")
    outputs: list[str] = []
    for line in lines[1:-1]:
        res = subprocess.run(
            ["bash", "-c", f"{lines[0]}\n{line}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert res.returncode == 0, f"{line}\n{res.stderr[-2000:]}"
        assert res.stdout.strip(), line
        outputs.append(res.stdout)
    ingest_fb, ingest_rs, ask, chat, similar, reply, root, report = outputs
    assert "gb18030" in ingest_fb and re.search(r"│\s+24 │\s+24 │", ingest_fb)
    assert re.search(r"│\s+8 │\s+8 │", ingest_rs)
    assert "商品质量" in ask and "例：" in ask
    assert chat.count("云达快运") >= 2 and "2026-W47" in chat  # the follow-up narrowed to last week
    assert "E024" in similar.splitlines()[1]  # the order's own record first
    assert reply.startswith("陈女士您好") and "2611230024" in reply
    assert "云达快运" in root
    assert (tmp_path / ".feedback-agent/demo/reports/report-2026-W47.html").exists() and "2026-W47" in report
    port = free_port()
    proc = subprocess.Popen(
        ["bash", "-c", f"{lines[0]}\nexec {lines[-1].replace('8000', str(port))}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(150):
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health.json()["feedback"] == 1513 + 832 + 24  # the sample, the planted journeys, the export
        assert httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
