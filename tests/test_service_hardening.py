"""The HTTP defects of the red-team pass (issue 14): bad records, bad dates, internal errors, error
bodies, the order of checks, Host names, slow bodies and offline docs."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from agent.config import is_loopback, load_settings
from agent.service import create_app
from evals.loadtest import start_server
from retrieval.search import Searcher

KEY = {"Authorization": "Bearer k1"}


@pytest.fixture
def client(tmp_path: Path):
    # raise_server_exceptions: an error that escaped to the server (and reset keep-alive
    # connections under uvicorn) fails the test instead of passing as a 500.
    with TestClient(create_app(load_settings(home=tmp_path / "h", api_keys="k1")), raise_server_exceptions=True) as c:
        yield c


def test_one_bad_record_is_rejected_and_the_rest_stored(client: TestClient) -> None:
    body = (
        '{"records": ['
        '{"id": "ok-1", "text": "快递一周没到"},'
        '{"id": "nul", "text": "\\u0000"},'
        '{"id": "s\\ud800", "text": "id with a lone surrogate"},'
        '{"id": "ch", "text": "ok", "channel": "t\\udc80b"},'
        '{"id": "ex", "text": "ok", "note": "\\ud83d"},'
        '{"id": "zw", "text": "\\u200b\\u200b"},'
        '{"id": "ok-2", "text": "Refund never arrived"}]}'
    )
    res = client.post("/v1/feedback", content=body, headers={**KEY, "content-type": "application/json"})
    assert res.status_code == 200, res.text
    data = res.json()
    assert sorted(data["added"]) == ["ok-1", "ok-2"]
    assert [r["index"] for r in data["rejected"]] == [1, 2, 3, 4, 5]
    assert "no visible characters" in data["rejected"][0]["reason"] or "empty" in data["rejected"][0]["reason"]
    assert "lone surrogate" in data["rejected"][1]["reason"]
    assert client.get("/healthz").json()["feedback"] == 2


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("POST", "/v1/ask", {"json": {"question": "最近投诉最多的是什么", "as_of": "0001-01-01"}}),
        ("POST", "/v1/ask", {"json": {"question": "what is up", "as_of": "9999-12-31"}}),
        ("GET", "/v1/similar", {"params": {"q": "快递", "as_of": "0001-01-01", "days": 7}}),
        ("GET", "/v1/reports/0001-W01", {}),
        ("GET", "/v1/reports/9999-W52", {}),
    ],
)
def test_out_of_range_dates_are_422(client: TestClient, method: str, path: str, params: dict) -> None:
    res = client.request(method, path, headers=KEY, **params)
    assert res.status_code == 422 and "2000-2100" in res.json()["error"]


def test_an_internal_error_is_one_500_logged_once_without_content(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("customer 13812345678 said: 快递丢了")

    monkeypatch.setattr(Searcher, "search", boom)
    res = client.get("/v1/similar", params={"q": "快递丢了 13812345678"}, headers=KEY)
    assert res.status_code == 500 and res.json()["error"].startswith("internal error")
    assert client.get("/healthz").status_code == 200  # the same client goes on
    logged = capfd.readouterr().err
    lines = [json.loads(x) for x in logged.splitlines() if x.startswith("{")]
    assert [ln["status"] for ln in lines if ln["path"] == "/v1/similar"] == [500]
    assert "13812345678" not in logged and "快递丢了" not in logged and "Traceback" not in logged
    assert any(ln.get("error", "").startswith("RuntimeError at test_service_hardening.py") for ln in lines)


def test_error_bodies_are_all_error_objects(client: TestClient) -> None:
    for res, status in (
        (client.get("/nope", headers=KEY), 404),
        (client.put("/v1/ask", headers=KEY), 405),
        (client.post("/v1/ask", content=b"{bad", headers={**KEY, "content-type": "application/json"}), 422),
    ):
        assert res.status_code == status and set(res.json()) >= {"error"} and "detail" not in res.json()


def test_the_key_is_checked_before_the_body(client: TestClient) -> None:
    malformed = client.post("/v1/ask", content=b"{bad json", headers={"content-type": "application/json"})
    assert malformed.status_code == 401
    big = client.post("/v1/feedback", content=b"x" * 2_000_000, headers={"content-type": "application/json"})
    assert big.status_code == 401


def test_keyless_server_answers_loopback_host_names_only(tmp_path: Path) -> None:
    app = create_app(load_settings(home=tmp_path / "h"))
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/healthz", headers={"host": "localhost:8000"}).status_code == 200
        assert c.get("/healthz", headers={"host": "[::1]:8000"}).status_code == 200
        rebound = c.get("/healthz", headers={"host": "attacker.example:8000"})
        assert rebound.status_code == 421 and "loopback" in rebound.json()["error"]
    assert not is_loopback("http://127.evil.invalid") and not is_loopback("http://127.0.0.1.nip.io")
    assert is_loopback("http://127.0.0.2:9") and is_loopback("http://[::1]:80") and is_loopback("http://localhost")


def test_docs_load_nothing_from_outside(client: TestClient) -> None:
    page = client.get("/docs").text
    assert "swagger-ui-bundle.js" in page and "cdn." not in page and "https://" not in page.split("<body>")[0]
    asset = next(x for x in page.split('"') if x.endswith("swagger-ui-bundle.js"))
    assert client.get(asset).status_code == 200
    assert client.get("/redoc").status_code == 200 and "cdn." not in client.get("/redoc").text


def test_a_slow_partial_body_is_cut_off(tmp_path: Path) -> None:
    proc, url = start_server({"FEEDBACK_AGENT_HOME": str(tmp_path / "h"), "FEEDBACK_AGENT_BODY_TIMEOUT": "1.5"})
    try:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"question"'
            )
            started = time.monotonic()
            answer = sock.recv(4096).decode()
            waited = time.monotonic() - started
        assert answer.startswith("HTTP/1.1 408") and waited < 8
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_sees_a_cli_ingest_into_its_home(tmp_path: Path) -> None:
    """Issue 14, defect 7: the server reopens embedded Chroma when another process has written,
    so a CLI-ingested record ranks by its vector at once (not by keyword only)."""
    import subprocess
    import sys

    home = tmp_path / "h"
    first = tmp_path / "a.csv"
    first.write_text("id,text\na1,保温杯漏水\na2,The blender is loud\na3,耳机没有声音\n", encoding="utf-8")
    ingest = [sys.executable, "-c", "from cli import main; main()", "ingest", "--home", str(home), "--no-classify"]
    subprocess.run([*ingest, str(first)], check=True, capture_output=True)
    proc, url = start_server({"FEEDBACK_AGENT_HOME": str(home)})
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            before = http.get("/v1/similar", params={"q": "快递丢件", "k": 10}).json()
            assert "b1" not in [h["id"] for h in before]
            second = tmp_path / "b.csv"
            second.write_text("id,text\nb1,快递丢件了一个星期\n", encoding="utf-8")
            subprocess.run([*ingest, str(second)], check=True, capture_output=True)
            hits = {h["id"]: h for h in http.get("/v1/similar", params={"q": "快递丢件", "k": 10}).json()}
            assert "vector" in hits["b1"]["matched_by"]
            assert http.get("/healthz").json()["feedback"] == 4
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_random_malformed_input_never_gets_a_500(client: TestClient) -> None:
    """A bounded, seeded fuzz over every route: bad JSON, lone surrogates, NULs, odd types, dates
    out of range, undecodable query bytes. Every answer is 2xx or 4xx with an {error} body."""
    import random

    rng = random.Random(14)
    alphabet = [
        "a",
        "快",
        "\x00",
        "\ud800",
        "\udc80",
        "\u200b",
        "\x1b[31m",
        "'",
        '"',
        "\\",
        "<script>",
        "𝕏",
        "\n",
        "12315",
        "=1+2",
        "{}",
    ]

    def rstr() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))

    def rval() -> object:
        return rng.choice(
            [
                rstr(),
                rng.randint(-(10**12), 10**12),
                rng.random() * 1e6,
                None,
                True,
                [rstr()],
                {"x": rstr()},
                "9999-99-99",
                "0001-01-01",
                "2026-11-20",
                1e308,
            ]
        )

    headers = {**KEY, "content-type": "application/json"}
    seen: set[int] = set()
    for _ in range(150):
        which = rng.choice(["fb", "ask", "reply", "cls", "sim", "rep", "raw"])
        if which == "fb":
            recs = [
                {
                    rng.choice(["id", "text", "created_at", "channel", "rating", "category", rstr()]): rval()
                    for _ in range(rng.randint(0, 5))
                }
                for _ in range(rng.randint(1, 3))
            ]
            res = client.post("/v1/feedback", content=json.dumps({"records": recs}), headers=headers)
        elif which == "ask":
            res = client.post("/v1/ask", content=json.dumps({"question": rval(), "as_of": rval()}), headers=headers)
        elif which == "reply":
            res = client.post("/v1/reply", content=json.dumps({"text": rval(), "customer": rval()}), headers=headers)
        elif which == "cls":
            res = client.post("/v1/classify", content=json.dumps({"texts": [rval(), rval()]}), headers=headers)
        elif which == "sim":
            res = client.get("/v1/similar?q=%ff%fe%ed%a0%80&as_of=%ff&days=x&category=%c0", headers=KEY)
        elif which == "rep":
            week = rng.choice(["abc%ff", "2026-W47", "0000-W00", "2100-W53", "2026-W99", "%ed%a0%80"])
            res = client.get(f"/v1/reports/{week}?format=" + rng.choice(["json", "md", "html", "x%ff"]), headers=KEY)
        else:
            res = client.post(
                "/v1/feedback", content=bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 30))), headers=headers
            )
        seen.add(res.status_code)
        assert res.status_code < 500, (which, res.text)
        if res.status_code >= 400:
            assert "error" in res.json()
    assert {200, 422} <= seen


def test_the_api_says_what_is_missing(client: TestClient) -> None:
    empty = client.post("/v1/ask", json={"question": "上周哪类投诉涨得最多", "as_of": "2026-11-23"}, headers=KEY).json()
    assert empty["understood"] is False and "还没有任何反馈记录" in empty["answer"]
    client.post(
        "/v1/feedback", json={"records": [{"id": "o1", "text": "快递太慢", "order_id": "2611200001"}]}, headers=KEY
    )
    res = client.get("/v1/similar", params={"q": "订单 2611209999999"}, headers=KEY)
    assert res.status_code == 200 and res.headers["x-not-found"] == "2611209999999"
