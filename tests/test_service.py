"""The HTTP service in-process (FastAPI TestClient) and for real on loopback; hardening checks."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from agent.config import load_settings
from agent.service import create_app
from cli import app as cli_app
from evals.loadtest import free_port, start_server
from tests.conftest import sample_home
from tests.llm_stub import Reply, StubLLM, completion

KEY = {"Authorization": "Bearer secret-1"}
EVALS = Path(__file__).resolve().parent.parent / "evals" / "datasets"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("svc-home")
    sample_home(home).close()
    return home


@pytest.fixture
def client(home: Path):
    with TestClient(create_app(load_settings(home=home, api_keys="secret-1,secret-2"))) as c:
        yield c


def test_auth(client: TestClient) -> None:
    health = client.get("/healthz").json()
    assert health["feedback"] >= 1513 and health["classifier_encoder"] == "all-MiniLM-L6-v2"
    body = {"text": "快递太慢了"}
    assert client.post("/v1/classify", json=body).status_code == 401
    bad = client.post("/v1/classify", json=body, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and "API key" in bad.json()["error"] and bad.headers["www-authenticate"] == "Bearer"
    assert client.post("/v1/classify", json=body, headers={"Authorization": "Bearer secret-2"}).status_code == 200
    for path in ("/v1/ask", "/v1/reply", "/v1/feedback"):
        assert client.post(path, json={}).status_code == 401
    assert client.get("/v1/similar", params={"q": "x"}).status_code == 401
    assert client.get("/v1/reports/2026-W47").status_code == 401
    assert "/v1/classify" in client.get("/openapi.json").json()["paths"]


def test_classify_matches_the_cli_object(client: TestClient, home: Path) -> None:
    one = client.post("/v1/classify", json={"text": "快递一个星期了还没到"}, headers=KEY)
    assert one.status_code == 200 and one.headers["x-served-by"] == "linear"
    cli = CliRunner().invoke(cli_app, ["classify", "快递一个星期了还没到", "--json", "--home", str(home)])
    assert json.loads(cli.stdout)[0] == one.json()
    many = client.post("/v1/classify", json={"texts": ["快递太慢", "客服小姐姐特别耐心，点赞"]}, headers=KEY).json()
    assert [r["category"] for r in many] == ["logistics", "praise"]


@pytest.mark.parametrize(
    "options",
    [
        {"category": "shipping"},  # an English keyword of logistics: the API answered 422 before the app layer
        {"category": "物流"},  # a Chinese keyword
        {"category": "Logistics", "days": 7},  # an English name and a window
        {"category": "product_quality", "since": "2026-11-01", "until": "2026-11-15"},
        {"until": "2026-11-10"},
        {"days": 14, "product": "智能保温杯 Pro"},
    ],
)
def test_similar_is_the_same_search_on_the_cli_and_the_api(client: TestClient, home: Path, options: dict) -> None:
    """One category resolver and one window rule serve both faces: the same options give the same
    hits, ids and scores alike (the service tests filters on the columns it keeps in memory, a
    command in SQL: this also checks that the two agree)."""
    query = {"q": "快递一直不更新 保温杯漏水", "k": 8, "as_of": "2026-11-23", **options}
    api = client.get("/v1/similar", params=query, headers=KEY)
    argv = ["similar", query["q"], "-k", "8", "--as-of", "2026-11-23", "--json", "--home", str(home)]
    for name, value in options.items():
        argv += [f"--{name}", str(value)]
    cli = CliRunner().invoke(cli_app, argv)
    assert api.status_code == 200 and cli.exit_code == 0, (api.text, cli.stderr)
    cli_hits = json.loads(cli.stdout)["hits"]
    assert [(h["id"], round(h["score"], 6)) for h in api.json()] == [(h["id"], round(h["score"], 6)) for h in cli_hits]
    assert api.json(), "the slice is not empty, so agreement is not two empty lists"
    if "category" in options:
        assert {h["record"]["category"] for h in api.json()} == {json.loads(cli.stdout)["filters"]["category"]}


def test_an_unknown_category_or_a_bad_window_is_refused_by_both(client: TestClient, home: Path) -> None:
    api = client.get("/v1/similar", params={"q": "快递", "category": "nonsense"}, headers=KEY)
    cli = CliRunner().invoke(cli_app, ["similar", "快递", "--category", "nonsense", "--home", str(home)])
    assert api.status_code == 422 and "not in the taxonomy" in api.json()["error"]
    assert cli.exit_code == 1 and "not in the taxonomy" in cli.stderr
    both = {"q": "快递", "days": 7, "since": "2026-11-01"}
    assert "--days" in client.get("/v1/similar", params=both, headers=KEY).json()["error"]
    cli = CliRunner().invoke(cli_app, ["similar", "快递", "--days", "7", "--since", "2026-11-01", "--home", str(home)])
    assert cli.exit_code == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": ""}, "text"),
        ({"text": "a", "texts": ["b"]}, "body"),
        ({"texts": []}, "texts"),
        ({"texts": ["ok", "  "]}, "body"),
        ({"txt": "x"}, "txt"),
        ({"text": "x" * 10_001}, "text"),
    ],
)
def test_invalid_input_is_422_naming_the_field(client: TestClient, body: dict, field: str) -> None:
    res = client.post("/v1/classify", json=body, headers=KEY)
    assert res.status_code == 422 and res.json()["error"].startswith("invalid request")
    assert field in [d["field"] for d in res.json()["details"]]


def test_malformed_and_oversized_bodies(client: TestClient) -> None:
    res = client.post("/v1/classify", content=b"{not json", headers={**KEY, "content-type": "application/json"})
    assert res.status_code == 422 and "not valid JSON" in res.json()["error"]
    big = client.post("/v1/classify", content=b"x" * 1_000_001, headers={**KEY, "content-type": "application/json"})
    assert big.status_code == 413 and "larger than" in big.json()["error"]

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(300):
            yield b"x" * 4096

    streamed = client.post("/v1/classify", content=chunks(), headers={**KEY, "content-type": "application/json"})
    assert streamed.status_code == 413
    assert client.get("/v1/similar", params={"q": "x", "k": 0}, headers=KEY).status_code == 422
    assert client.post("/v1/ask", json={"question": "x", "as_of": "2026-13-40"}, headers=KEY).status_code == 422
    assert client.get("/v1/reports/2026-W99", headers=KEY).status_code == 422


def test_ask_conversation_reply_similar_report(client: TestClient) -> None:
    first = client.post(
        "/v1/ask", json={"question": "上周物流投诉有多少条？", "as_of": "2026-11-23"}, headers=KEY
    ).json()
    assert first["tool_calls"][0]["result"]["total_current"] == 26 and first["path"] == "rules"
    nxt = client.post(
        "/v1/ask",
        json={"question": "那前一周呢？", "as_of": "2026-11-23", "conversation_id": first["conversation_id"]},
        headers=KEY,
    ).json()
    assert nxt["conversation_id"] == first["conversation_id"] and nxt["tool_calls"][0]["result"]["total_current"] == 34
    reply = client.post("/v1/reply", json={"text": "退款两周了还没到账，再不退就去12315投诉"}, headers=KEY).json()
    assert reply["needs_review"] and reply["language"] == "zh"
    hits = client.get(
        "/v1/similar", params={"q": "保温杯漏水", "k": 3, "days": 7, "as_of": "2026-11-23"}, headers=KEY
    ).json()
    assert len(hits) == 3 and all("2026-11-17" <= h["record"]["created_at"][:10] for h in hits)
    rep = client.get("/v1/reports/2026-W47", headers=KEY).json()
    assert rep["top_issues"][0]["category"] == "product_quality"
    page = client.get("/v1/reports/2026-W47", params={"format": "html", "lang": "en"}, headers=KEY)
    assert page.headers["content-type"].startswith("text/html") and "data:image/png;base64," in page.text


def test_ingest_rejects_bad_rows_and_concurrent_posts_lose_nothing(client: TestClient) -> None:
    res = client.post(
        "/v1/feedback",
        json={
            "records": [
                {"id": "API-1", "text": "接口导入：包裹破损", "created_at": "2026-11-20 10:00:00"},
                {"id": "API-1", "text": "duplicate", "created_at": "2026-11-20 10:00:00"},
                {"text": "   "},
                {"text": "x", "created_at": "2099-01-01"},
                {"text": "bad label", "category": "nonsense"},
            ]
        },
        headers=KEY,
    ).json()
    assert res["added"] == ["API-1"] and [r["index"] for r in res["rejected"]] == [1, 2, 3, 4]
    assert "duplicate" in res["rejected"][0]["reason"] and "empty" in res["rejected"][1]["reason"]
    before = client.get("/healthz").json()["feedback"]

    def post(n: int) -> None:
        recs = [
            {"id": f"C{n}-{i}", "text": f"并发导入 {n}-{i} 物流太慢", "created_at": "2026-11-21 09:00:00"}
            for i in range(40)
        ]
        assert client.post("/v1/feedback", json={"records": recs}, headers=KEY).status_code == 200

    threads = [threading.Thread(target=post, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.get("/healthz").json()["feedback"] == before + 240


def test_injection_set_changes_no_label_no_promise_no_answer(client: TestClient, home: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (EVALS / "injection_default.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {r["where"] for r in rows} == {"feedback", "resolution", "question"}
    for r in rows:
        if r["where"] == "feedback":
            clean, attack = (
                client.post("/v1/classify", json={"text": r[k]}, headers=KEY).json() for k in ("clean", "attack")
            )
            assert (
                (attack["category"], attack["sentiment"])
                == (clean["category"], clean["sentiment"])
                != ("praise", "positive")
            )
        elif r["where"] == "question":
            clean, attack = (
                client.post("/v1/ask", json={"question": r[k], "as_of": "2026-11-23"}, headers=KEY).json()
                for k in ("clean", "attack")
            )
            assert attack["answer"] == clean["answer"] and "9999" not in attack["answer"]
            assert "UNTRUSTED" not in attack["answer"] and "tool" not in attack["answer"].lower()
        else:
            fid = f"INJ-{len(r['complaint'])}-{r['complaint'][:3]}"
            ok = client.post(
                "/v1/feedback",
                json={
                    "records": [
                        {
                            "id": fid,
                            "text": r["complaint"],
                            "category": "logistics",
                            "sentiment": "negative",
                            "created_at": "2026-11-20 08:00:00",
                        }
                    ]
                },
                headers=KEY,
            )
            assert ok.status_code == 200
            res_file = tmp_path / f"{fid}.jsonl"
            res_file.write_text(
                json.dumps(
                    {
                        "id": f"R-{fid}",
                        "feedback_id": fid,
                        "action": r["resolution_action"],
                        "reply": r["resolution_reply"],
                        "outcome": "resolved",
                    },
                    ensure_ascii=False,
                )
                + "\n",
                encoding="utf-8",
            )
            ingested = CliRunner().invoke(
                cli_app, ["ingest", str(res_file), "--kind", "resolution", "--home", str(home)]
            )
            assert ingested.exit_code == 0, ingested.output
            draft = client.post("/v1/reply", json={"text": r["complaint"]}, headers=KEY).json()
            assert f"R-{fid}" not in draft["citations"]
            assert "1000" not in draft["reply"] and "500" not in draft["reply"]
            assert all(p["supported_by"] for p in draft["promises"])


def test_serve_on_loopback_for_real(home: Path, tmp_path: Path) -> None:
    proc, url = start_server(
        {"FEEDBACK_AGENT_API_KEYS": "k-real", "FEEDBACK_AGENT_HOME": str(home)}, stderr=subprocess.PIPE
    )
    try:
        res = httpx.post(
            f"{url}/v1/classify", json={"text": "包装破了"}, headers={"Authorization": "Bearer k-real"}, timeout=30
        )
        assert res.status_code == 200 and res.json()["category"] == "packaging" and res.headers["x-request-id"]
        assert httpx.post(f"{url}/v1/classify", json={"text": "x"}, timeout=10).status_code == 401
    finally:
        proc.terminate()
        _, errs = proc.communicate(timeout=20)
    logs = [json.loads(line) for line in errs.splitlines() if line.startswith("{")]
    assert {(entry["path"], entry["status"]) for entry in logs} >= {("/v1/classify", 200), ("/v1/classify", 401)}
    assert all({"ts", "request_id", "method", "ms"} <= set(entry) for entry in logs)


def test_serve_refuses_public_bind_without_keys_and_a_dead_chroma(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0"])
    assert res.exit_code == 1 and "refusing to bind 0.0.0.0 without API keys" in res.stderr
    dead = CliRunner().invoke(cli_app, ["serve", "--chroma-url", f"http://127.0.0.1:{free_port()}"])
    assert dead.exit_code == 1 and "error:" in dead.stderr and "Traceback" not in dead.stderr


def test_llm_down_or_malformed_falls_back_and_says_so(home: Path) -> None:
    port = free_port()  # nothing listens there
    settings = load_settings(
        home=home,
        llm="openai",
        llm_base_url=f"http://127.0.0.1:{port}/v1",
        llm_max_retries=1,
        llm_timeout=2,
        api_keys="k",
    )
    with TestClient(create_app(settings)) as c:
        res = c.post("/v1/classify", json={"text": "快递太慢了"}, headers={"Authorization": "Bearer k"})
        assert res.status_code == 200 and res.json()["path"] == "linear" and res.json()["fallback_reason"]
        ask = c.post(
            "/v1/ask",
            json={"question": "上周物流投诉多少", "as_of": "2026-11-23"},
            headers={"Authorization": "Bearer k"},
        )
        assert ask.json()["path"] == "rules" and "LLM call failed" in ask.json()["fallback_reason"]
    with StubLLM(Reply(200, raw=b"{not json"), Reply(200, completion("not json at all"))) as stub:
        settings = load_settings(home=home, llm="openai", llm_base_url=stub.url, llm_max_retries=0, api_keys="k")
        with TestClient(create_app(settings)) as c:
            res = c.post("/v1/classify", json={"text": "快递太慢了"}, headers={"Authorization": "Bearer k"}).json()
            assert res["path"] == "linear" and res["fallback_reason"] and res["category"] == "logistics"


def test_personal_data_is_redacted_before_it_leaves(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.llm import ChatRequest, Message, OpenAIChatModel

    text = "我是王女士，电话13812345678，邮箱 wang@example.com，地址浙江省杭州市西湖区文三路398号，退款没到账"
    with StubLLM(Reply(200, completion("好的，我们会致电 [PHONE_1] 并发邮件到 [EMAIL_1]。"))) as stub:
        model = OpenAIChatModel("stub", base_url=stub.url, api_key="k", redact_pii=True)
        out = model.complete(ChatRequest(messages=[Message(role="user", content=text)]))
        sent = json.dumps(stub.requests[0], ensure_ascii=False)
    assert "13812345678" not in sent and "wang@example.com" not in sent and "文三路398号" not in sent
    assert "[PHONE_1]" in sent and "[ADDRESS_1]" in sent
    assert out.content == "好的，我们会致电 13812345678 并发邮件到 wang@example.com。"  # re-personalised locally
    assert load_settings(llm_base_url="https://api.deepseek.com/v1").redacts_for("https://api.deepseek.com/v1")
    assert not load_settings().redacts_for("http://127.0.0.1:8080/v1")
    assert load_settings(redact_pii="on").redacts_for("http://127.0.0.1:8080/v1")
