"""The web workbench in a real browser: Playwright drives Debian's Chromium (headless) against a
real `feedback-agent serve` on loopback, with an API key, over the bundled sample.

Every test checks what a person sees against what the API returns for the same request, that the
page loaded nothing from outside the machine, and that the console holds no error. Screenshots go
to ``$WORKBENCH_SCREENSHOTS`` (default: the test's temporary directory) to be looked at."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from evals.loadtest import start_server
from tests.browser import FLAGS, chromium
from tests.conftest import sample_home

KEY = "workbench-key"
AS_OF = "2026-11-22"  # the sample's newest record is on this day: the page proposes it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("workbench-home")
    sample_home(home).close()
    env = {"FEEDBACK_AGENT_HOME": str(home), "FEEDBACK_AGENT_API_KEYS": KEY, "FEEDBACK_AGENT_LLM": "none"}
    with open(home / "serve.log", "w") as log:
        proc, base = start_server(env, stderr=log)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def api(base: str, method: str, path: str, **kwargs: Any) -> Any:
    r = httpx.request(method, base + path, headers={"Authorization": f"Bearer {KEY}"}, timeout=120, **kwargs)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=FLAGS)
        yield b
        b.close()


class Watched:
    """A page, the console errors it logged and the requests it made elsewhere than the server."""

    def __init__(self, page: Any, base: str) -> None:
        self.page, self.base = page, base
        self.errors: list[str] = []
        self.outside: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", self._request)

    def _request(self, request: Any) -> None:
        url = request.url
        if not (url.startswith(self.base + "/") or url.startswith(("data:", "about:", "blob:"))):
            self.outside.append(url)


@pytest.fixture
def page(browser: Any, server: str, tmp_path: Path) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    pg = context.new_page()
    watched = Watched(pg, server)
    pg.goto(server + "/")
    pg.fill("#key-input", KEY)  # the server has keys: the page asks once, on its first call
    pg.click("#key-form button[type=submit]")
    pg.wait_for_selector("#store-line:not(:empty)")
    yield watched
    assert watched.errors == [], watched.errors
    assert watched.outside == [], watched.outside
    context.close()


def shot(page: Any, name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("WORKBENCH_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"workbench-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000
    return path


def test_the_key_is_asked_once_and_kept_in_the_session_only(page: Watched, server: str) -> None:
    pg = page.page
    assert pg.evaluate("sessionStorage.getItem('fa-key')") == KEY
    assert pg.evaluate("localStorage.length") == 0
    assert pg.input_value("#as-of") == AS_OF  # the sample ends on this day: the page proposes it
    facts = api(server, "GET", "/v1/status")
    assert pg.inner_text("#store-line").startswith(f"{facts['feedback']} ")
    headers = httpx.get(server + "/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert httpx.get(server + "/v1/status").status_code == 401  # the data needs the key; the page does not


def test_ask_shows_the_figures_the_plan_and_the_records_and_follows_up(
    page: Watched, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    pg = page.page
    question, follow_up = "最近30天物流投诉主要集中在哪家快递？", "那上周呢？"
    pg.fill("#ask-input", question)
    pg.press("#ask-input", "Enter")
    answers = pg.locator(".msg.agent .answer")
    expect(answers).to_have_count(1, timeout=60_000)

    direct = api(server, "POST", "/v1/ask", json={"question": question, "as_of": AS_OF})
    assert answers.nth(0).inner_text() == direct["answer"]
    first = pg.locator(".msg.agent").nth(0)
    # the figures: the table rows are the tool's groups, the chart has one bar per row
    measure = [c["result"] for c in direct["tool_calls"] if "groups" in (c["result"] or {})][0]
    groups = measure["groups"][:8]
    cells = first.locator("table.figures tbody tr")
    expect(cells).to_have_count(len(groups))
    assert cells.nth(0).locator("td").nth(1).inner_text() == str(groups[0]["count"])
    assert f"{groups[0]['value']}：{groups[0]['count']} 条" in direct["answer"]  # the table is what the answer says
    assert f"{measure['period']['from']} – {measure['period']['to']}" in first.locator(".caption").inner_text()
    expect(first.locator("svg.chart rect.bar")).to_have_count(len(groups))
    # the plan it ran
    first.locator("details summary").click()
    assert '"measure"' in first.locator("pre.plan").inner_text()
    # a cited record opens with its text
    cited = direct["citations"][0]
    first.locator(".chips .chip", has_text=cited).first.click()
    record = api(server, "GET", f"/v1/records/{cited}")
    expect(pg.locator("#record-body .record-text")).to_have_text(record["text"])
    pg.locator("#record-dialog .close").click()

    pg.fill("#ask-input", follow_up)
    pg.press("#ask-input", "Enter")
    expect(answers).to_have_count(2, timeout=60_000)
    convo = api(server, "POST", "/v1/ask", json={"question": question, "as_of": AS_OF})
    again = api(
        server,
        "POST",
        "/v1/ask",
        json={"question": follow_up, "as_of": AS_OF, "conversation_id": convo["conversation_id"]},
    )
    assert answers.nth(1).inner_text() == again["answer"]
    assert again["plan"]["window"] != direct["plan"]["window"]  # the follow-up changed the window
    shot(pg, "ask", tmp_path)


def test_a_series_is_drawn_and_a_question_it_cannot_answer_says_so(page: Watched, server: str) -> None:
    from playwright.sync_api import expect

    pg = page.page
    pg.select_option("#lang", "en")
    pg.fill("#ask-input", "Weekly trend of complaints over the last 8 weeks")
    pg.press("#ask-input", "Enter")
    answer = pg.locator(".msg.agent").last
    expect(answer.locator(".answer")).to_have_count(1, timeout=60_000)
    expect(answer.locator("svg.chart rect.bar")).to_have_count(8)
    pg.fill("#ask-input", "How many complaints came from male customers last week?")
    pg.press("#ask-input", "Enter")
    answers = pg.locator(".msg.agent .answer")
    expect(answers).to_have_count(2, timeout=60_000)
    last = pg.locator(".msg.agent").last
    expect(last.locator(".badge.partial, .badge.no")).to_have_count(1)
    assert "male" in last.inner_text()


def test_reply_draft_shows_citations_copies_and_marks_evidence(page: Watched, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    pg = page.page
    text = "快递一个星期了还没到，物流信息一直不更新"
    pg.click("nav [data-tab=reply]")
    pg.fill("#reply-text", text)
    pg.fill("#reply-customer", "陈女士")
    pg.click("#reply-form button[type=submit]")
    expect(pg.locator("#reply-evidence .card").first).to_be_visible(timeout=60_000)
    draft = api(server, "POST", "/v1/reply", json={"text": text, "customer": "陈女士"})
    assert pg.input_value("#reply-draft") == draft["reply"]
    shown = [
        pg.locator("#reply-evidence .card").nth(i).get_attribute("data-resolution")
        for i in range(len(draft["evidence"]))
    ]
    assert shown == [e["resolution_id"] for e in draft["evidence"]] and set(draft["citations"]) <= set(shown)
    # edit, then copy what was edited
    pg.fill("#reply-draft", draft["reply"] + " 祝您生活愉快！")
    pg.click("#reply-copy")
    expect(pg.locator("#copy-state")).not_to_be_empty()
    assert pg.evaluate("navigator.clipboard.readText()") == draft["reply"] + " 祝您生活愉快！"
    # the last past case shown is marked the right evidence: the next draft puts it first
    last = shown[-1]
    pg.locator(f"#reply-evidence .card[data-resolution='{last}'] .mark-right").click()
    expect(pg.locator(f"#reply-evidence .card[data-resolution='{last}'] .mark-state")).not_to_be_empty()
    marks = api(server, "GET", "/v1/reply/marks")
    assert marks[0]["resolution_id"] == last and marks[0]["verdict"] == "right" and marks[0]["text"] == text
    again = api(server, "POST", "/v1/reply", json={"text": text})
    assert again["evidence"][0]["resolution_id"] == last and again["evidence"][0]["marked"]
    shot(pg, "reply", tmp_path)


def test_queue_lists_cases_with_reasons_and_hands_one_to_the_reply_panel(
    page: Watched, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    pg = page.page
    pg.click("nav [data-tab=queue]")
    queue = api(server, "GET", "/v1/queue", params={"limit": 30, "as_of": AS_OF, "lang": "zh"})
    rows = pg.locator("#queue-table tbody tr")
    expect(rows).to_have_count(len(queue["items"]), timeout=60_000)
    first = queue["items"][0]
    assert rows.nth(0).locator("td").nth(1).inner_text() == first["id"]
    assert first["reasons"][0]["text"] in rows.nth(0).locator("td.reasons").inner_text()
    rows.nth(0).locator("button.ghost").click()
    assert pg.input_value("#reply-text") == first["text"]
    pg.click("nav [data-tab=queue]")
    expect(rows).to_have_count(len(queue["items"]), timeout=60_000)
    shot(pg, "queue", tmp_path)


def test_a_report_opens_with_its_charts(page: Watched, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    pg = page.page
    pg.click("nav [data-tab=reports]")
    pg.select_option("#report-week", "2026-W47")
    pg.click("#report-form button[type=submit]")
    frame = pg.frame_locator("#report-frame")
    expect(frame.locator("h1")).to_contain_text("2026-W47", timeout=120_000)
    report = api(server, "GET", "/v1/reports/2026-W47", params={"lang": "zh"})
    expect(frame.locator("p.summary")).to_have_text(re.compile(re.escape(report["executive_summary"][:40])))
    images = frame.locator("figure img")
    expect(images.first).to_be_visible()
    assert images.count() >= 3
    for i in range(images.count()):
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 300")
    images.first.scroll_into_view_if_needed()  # the screenshot shows a chart
    shot(pg, "report", tmp_path)


def test_without_keys_the_page_is_served_on_loopback_names_only(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from agent.config import load_settings
    from agent.service import create_app

    with TestClient(create_app(load_settings(home=tmp_path / "h"))) as client:
        page = client.get("/", headers={"host": "127.0.0.1:8000"})
        assert page.status_code == 200 and 'src="/web/app.js"' in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert client.get("/", headers={"host": "evil.example"}).status_code == 421
        assert (
            client.get("/web/app.js", headers={"host": "localhost"})
            .headers["content-type"]
            .startswith("text/javascript")
        )
        assert client.get("/web/../config.py", headers={"host": "localhost"}).status_code == 404
        assert client.get("/healthz", headers={"host": "localhost"}).json()["api_key_required"] is False


def test_search_with_a_filter_shows_the_api_hits(page: Watched, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    pg = page.page
    pg.click("nav [data-tab=search]")
    pg.fill("#search-q", "保温杯漏水")
    pg.select_option("#search-category", "product_quality")
    pg.click("#search-form button[type=submit]")
    cards = pg.locator("#search-results .card")
    hits = api(server, "GET", "/v1/similar", params={"q": "保温杯漏水", "k": 10, "category": "product_quality"})
    expect(cards).to_have_count(len(hits), timeout=60_000)
    assert [cards.nth(i).locator(".chip").first.inner_text() for i in range(len(hits))] == [h["id"] for h in hits]
    shot(pg, "search", tmp_path)


def test_bad_evidence_marks_are_one_line_and_change_nothing(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from agent.config import load_settings
    from agent.service import create_app

    home = tmp_path / "h"
    sample_home(home).close()
    with TestClient(create_app(load_settings(home=home, api_keys="k"))) as client:
        key = {"Authorization": "Bearer k"}
        text = "快递一个星期了还没到，物流信息一直不更新"
        for body, status, words in (
            ({"text": text, "resolution_id": "NOPE"}, 422, "no resolution has id"),
            ({"text": "  ", "resolution_id": "RS261104-01066"}, 422, "text"),
            ({"text": text, "resolution_id": "RS261104-01066", "verdict": "maybe"}, 422, "verdict"),
        ):
            r = client.post("/v1/reply/marks", json=body, headers=key)
            assert r.status_code == status and words in r.json()["error"], r.text
        assert client.get("/v1/reply/marks", headers=key).json() == []
        unresolved = _unresolved_case(home)
        r = client.post("/v1/reply/marks", json={"text": text, "resolution_id": unresolved}, headers=key)
        assert r.status_code == 422 and "not resolved" in r.json()["error"]
        # a wrong mark takes a case out of the evidence for the same message
        first = client.post("/v1/reply", json={"text": text}, headers=key).json()["evidence"][0]["resolution_id"]
        r = client.post("/v1/reply/marks", json={"text": text, "resolution_id": first, "verdict": "wrong"}, headers=key)
        assert r.status_code == 200
        after = client.post("/v1/reply", json={"text": text}, headers=key).json()
        assert first not in [e["resolution_id"] for e in after["evidence"]] and first not in after["citations"]


def _unresolved_case(home: Path) -> str:
    from sqlalchemy import select

    from retrieval.store import Store, resolution_table

    store = Store(home)
    try:
        with store.engine.connect() as conn:
            return str(
                conn.execute(select(resolution_table.c.id).where(resolution_table.c.outcome != "resolved")).scalar()
            )
    finally:
        store.close()
