"""Alerts and delivery (`watch`, `alerts`, `report --send`, alerts after ingest) against real local
receivers: an HTTP server on loopback that records every webhook call (and can be told to fail),
and an SMTP server (aiosmtpd) that records every message. The signatures are checked with HMAC
computed here from the chats' published recipes, not with the code under test."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from agent.app import Workspace
from agent.config import load_settings
from agent.service import create_app
from cli import app
from retrieval.sample_data import SAMPLE_DIR

DING_SECRET = "SECdingtalk-test-secret"
FEISHU_SECRET = "feishu-test-secret"
HOOK_SECRET = "hook-test-secret"
OK_BODIES: dict[str, Any] = {
    "/wecom": {"errcode": 0, "errmsg": "ok"},
    "/dingtalk": {"errcode": 0, "errmsg": "ok"},
    "/feishu": {"code": 0, "msg": "success"},
    "/slack": "ok",
}


class Receiver:
    """Webhook receiver on 127.0.0.1: records the calls it accepts; ``fail[path]`` lists the
    answers (status, body) to give first."""

    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        self.fail: dict[str, list[tuple[int, Any]]] = {}
        self.delay = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                parts = urllib.parse.urlsplit(self.path)
                call = {
                    "path": parts.path,
                    "query": dict(urllib.parse.parse_qsl(parts.query)),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "raw": raw,
                    "body": json.loads(raw),
                }
                time.sleep(receiver.delay)
                with receiver.lock:
                    scripted = receiver.fail.get(parts.path) or []
                    status, reply = scripted.pop(0) if scripted else (200, OK_BODIES.get(parts.path, {"ok": True}))
                    (receiver.accepted if status == 200 and not _refusal(reply) else receiver.refused).append(call)
                data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "text/plain" if isinstance(reply, str) else "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [c for c in self.accepted if c["path"] == path]


def _refusal(reply: Any) -> bool:
    return isinstance(reply, dict) and (reply.get("errcode") or reply.get("code")) not in (None, 0)


class Mailbox:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def _config(home: Path, receiver: Receiver, smtp_port: int | None = None, *, extra: str = "", send: str = "") -> None:
    """config.toml with one destination of each webhook kind (and e-mail when a port is given)."""
    home.mkdir(parents=True, exist_ok=True)
    send_line = f"send = [{send}]\n" if send else ""
    parts = [
        'embedding = "hash"\ndelivery_backoff = 0.01\n' + extra,
        f'[[destinations]]\ntype = "wecom"\nurl = "{receiver.url}/wecom?key=wecom-key-123"\n{send_line}',
        f'[[destinations]]\ntype = "dingtalk"\nurl = "{receiver.url}/dingtalk?access_token=ding-token"\n'
        f'secret = "{DING_SECRET}"\n{send_line}',
        f'[[destinations]]\ntype = "feishu"\nurl = "{receiver.url}/feishu"\nsecret = "{FEISHU_SECRET}"\n{send_line}',
        f'[[destinations]]\ntype = "slack"\nurl = "{receiver.url}/slack"\n{send_line}',
        f'[[destinations]]\ntype = "webhook"\nname = "ops"\nurl = "{receiver.url}/hook"\n'
        f'secret = "{HOOK_SECRET}"\n{send_line}',
    ]
    if smtp_port:
        parts.append(
            f'[[destinations]]\ntype = "email"\nsmtp_host = "127.0.0.1"\nsmtp_port = {smtp_port}\n'
            f'security = "none"\nmail_from = "alerts@example.com"\nmail_to = ["cs-leads@example.com"]\n{send_line}'
        )
    (home / "config.toml").write_text("\n".join(parts), encoding="utf-8")


def _cli(home: Path, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--home", str(home)])


def _json(res: Any) -> Any:
    assert res.exit_code == 0, res.stderr or res.stdout
    return json.loads(res.stdout)


# A small file: one safety complaint with personal data in it, and quiet days before it.
CRITICAL_TEXT = "充电宝充电时冒烟起火，孩子手被烫伤了！电话 13812345678，邮箱 wang.li@example.com，请马上联系"


def _small_file(path: Path, extra_rows: list[list[str]] | None = None) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "created_at", "channel", "product", "category", "sentiment", "urgency"])
        for day in range(10, 20):
            w.writerow(
                [f"Q{day}", "物流有点慢", f"2026-11-{day} 10:00:00", "email", "保温杯", "logistics", "neutral", "low"]
            )
        w.writerow(
            [
                "CRIT-1",
                CRITICAL_TEXT,
                "2026-11-20 09:30:00",
                "weibo",
                "充电宝",
                "product_quality",
                "negative",
                "critical",
            ]
        )
        for row in extra_rows or []:
            w.writerow(row)
    return path


# --------------------------------------------------------------------------- the checks


def test_ingesting_the_planted_spike_sample_twice_sends_each_alert_once_in_every_format(
    tmp_path: Path, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    home = tmp_path / "home"
    _config(home, receiver, port, extra="alerts_on_ingest = true\n")
    first = _json(_cli(home, "ingest", str(SAMPLE_DIR / "feedback.csv"), "--json"))
    new = first["alerts"]["new"]
    keys = [m["key"] for m in new]
    assert len(keys) == len(set(keys)) >= 3
    # the planted product spike of the sample's last week is among them, with its figures
    (planted,) = [m for m in new if m["key"] == "spike:week:product:智能保温杯 Pro:2026-W47"]
    assert planted["figures"]["current"] > 2 * planted["figures"]["baseline_mean"]
    assert all(m["record_ids"] and m["commands"] for m in new)
    assert {d["status"] for d in first["alerts"]["deliveries"]} == {"sent"}

    second = _json(_cli(home, "ingest", str(SAMPLE_DIR / "feedback.csv"), "--json"))
    assert second["alerts"]["new"] == [] and second["alerts"]["known"] == len(keys)
    watch = _json(_cli(home, "watch", "--json"))
    assert watch["new"] == [] and watch["deliveries"] == []

    # every destination got every alert exactly once
    for path in ("/wecom", "/dingtalk", "/feishu", "/slack", "/hook"):
        assert len(receiver.calls(path)) == len(keys), path
    assert sorted(c["body"]["key"] for c in receiver.calls("/hook")) == sorted(keys)
    assert len(box.messages) == len(keys)
    assert sorted(m["X-Feedback-Agent-Key"] for m in box.messages) == sorted(keys)
    assert not receiver.refused

    titles = {m["title"] for m in new}
    for call in receiver.calls("/wecom"):  # 企业微信: markdown within its 4096-byte limit
        body = call["body"]
        assert body["msgtype"] == "markdown" and len(body["markdown"]["content"].encode()) <= 4096
        assert any(t in body["markdown"]["content"] for t in titles)
        assert call["query"]["key"] == "wecom-key-123"
    for call in receiver.calls("/dingtalk"):  # 钉钉: timestamp + sign in the URL
        ts = call["query"]["timestamp"]
        expected = base64.b64encode(
            hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(), hashlib.sha256).digest()
        ).decode()
        assert call["query"]["sign"] == expected and call["query"]["access_token"] == "ding-token"
        assert abs(int(ts) / 1000 - time.time()) < 600
        assert call["body"]["msgtype"] == "markdown" and call["body"]["markdown"]["title"] in titles
    for call in receiver.calls("/feishu"):  # 飞书: timestamp + sign in the body, an interactive card
        body = call["body"]
        expected = base64.b64encode(
            hmac.new(f"{body['timestamp']}\n{FEISHU_SECRET}".encode(), b"", hashlib.sha256).digest()
        ).decode()
        assert body["sign"] == expected and body["msg_type"] == "interactive"
        assert body["card"]["header"]["title"]["content"] in titles
    for call in receiver.calls("/slack"):
        blocks = call["body"]["blocks"]
        assert blocks[0]["type"] == "header" and blocks[1]["text"]["type"] == "mrkdwn"
        assert len(blocks[1]["text"]["text"]) <= 3000
    for call in receiver.calls("/hook"):  # generic: the whole alert, HMAC over timestamp + body
        h = call["headers"]
        mac = hmac.new(
            HOOK_SECRET.encode(), f"{h['x-feedback-agent-timestamp']}.".encode() + call["raw"], hashlib.sha256
        )
        assert h["x-feedback-agent-signature"] == "sha256=" + mac.hexdigest()
        assert call["body"]["event"] == "alert" and call["body"]["record_ids"]

    listed = _json(_cli(home, "alerts", "--json", "--limit", "100"))
    assert len(listed) == len(keys)
    assert all({d["status"] for d in s["deliveries"]} == {"sent"} and len(s["deliveries"]) == 6 for s in listed)


def test_a_receiver_failing_twice_then_succeeding_gets_the_alert_once(tmp_path: Path, receiver: Receiver) -> None:
    home = tmp_path / "home"
    _config(home, receiver)
    receiver.fail["/hook"] = [(500, {"error": "boom"}), (503, {"error": "busy"})]
    _json(_cli(home, "ingest", str(_small_file(tmp_path / "f.csv")), "--json"))
    result = _json(_cli(home, "watch", "--json"))
    assert [m["kind"] for m in result["new"]] == ["critical"]
    hook = [d for d in result["deliveries"] if d["destination"] == "ops"]
    assert hook == [{**hook[0], "status": "sent", "attempts": 3, "error": None}]
    assert len(receiver.calls("/hook")) == 1 and len(receiver.refused) == 2
    assert _json(_cli(home, "watch", "--json"))["deliveries"] == []
    assert len(receiver.calls("/hook")) == 1


def test_a_failed_delivery_is_kept_and_sent_once_on_the_next_run(tmp_path: Path, receiver: Receiver) -> None:
    home = tmp_path / "home"
    _config(home, receiver)
    receiver.fail["/slack"] = [(502, "bad gateway")] * 3  # every attempt of the first run
    receiver.fail["/dingtalk"] = [(200, {"errcode": 310000, "errmsg": "sign not match"})]  # not worth retrying
    _json(_cli(home, "ingest", str(_small_file(tmp_path / "f.csv")), "--json"))
    res = _cli(home, "watch")
    assert res.exit_code == 1
    assert "not sent" in res.stderr and "HTTP 502" in res.stderr and "310000 sign not match" in res.stderr
    state = _json(_cli(home, "alerts", "--json"))[0]["deliveries"]
    by_dest = {d["destination"]: d for d in state}
    assert by_dest["slack"]["status"] == "pending" and by_dest["slack"]["attempts"] == 3
    assert by_dest["dingtalk"]["status"] == "pending" and by_dest["dingtalk"]["attempts"] == 1
    assert by_dest["wecom"]["status"] == "sent"

    again = _json(_cli(home, "watch", "--json"))
    assert again["new"] == [] and sorted(d["destination"] for d in again["deliveries"]) == ["dingtalk", "slack"]
    assert {d["status"] for d in again["deliveries"]} == {"sent"}
    assert _json(_cli(home, "watch", "--json"))["deliveries"] == []
    for path in ("/wecom", "/dingtalk", "/feishu", "/slack", "/hook"):
        assert len(receiver.calls(path)) == 1, path


def test_an_unreachable_destination_is_a_pending_delivery_not_a_crash(tmp_path: Path, receiver: Receiver) -> None:
    home = tmp_path / "home"
    home.mkdir()
    dead = f"http://127.0.0.1:{_free_port()}/nobody"
    (home / "config.toml").write_text(
        f'embedding = "hash"\ndelivery_backoff = 0.01\n[[destinations]]\ntype = "webhook"\nurl = "{dead}"\n'
    )
    _json(_cli(home, "ingest", str(_small_file(tmp_path / "f.csv")), "--json"))
    res = _cli(home, "watch", "--json")
    assert res.exit_code == 1
    delivery = json.loads(res.stdout)["deliveries"][0]
    assert delivery["status"] == "pending" and "ConnectError" in delivery["error"]


def test_personal_data_is_replaced_in_everything_sent(
    tmp_path: Path, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    home = tmp_path / "home"
    _config(home, receiver, port)
    _json(_cli(home, "ingest", str(_small_file(tmp_path / "f.csv")), "--json"))
    _json(_cli(home, "watch", "--json"))
    sent = [c["raw"].decode() for c in receiver.accepted] + [m.as_string() for m in box.messages]
    assert len(sent) == 6
    for text in sent:
        assert "13812345678" not in text and "wang.li@example.com" not in text
    hook = receiver.calls("/hook")[0]["body"]
    assert "[PHONE_1]" in hook["lines"][0] and "[EMAIL_1]" in hook["lines"][0] and "冒烟起火" in hook["lines"][0]
    assert hook["record_ids"] == ["CRIT-1"] and "feedback-agent show CRIT-1" in hook["commands"][0]
    stored = _json(_cli(home, "alerts", "--json"))[0]["message"]
    assert "13812345678" not in json.dumps(stored, ensure_ascii=False)


def test_dry_run_records_and_sends_nothing(tmp_path: Path, receiver: Receiver) -> None:
    home = tmp_path / "home"
    _config(home, receiver)
    _json(_cli(home, "ingest", str(_small_file(tmp_path / "f.csv")), "--json"))
    dry = _json(_cli(home, "watch", "--dry-run", "--json"))
    assert len(dry["new"]) == 1 and dry["deliveries"] == [] and not receiver.accepted
    assert _json(_cli(home, "alerts", "--json")) == []
    assert len(_json(_cli(home, "watch", "--json"))["new"]) == 1


def test_without_destinations_alerts_are_recorded_and_said_not_sent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('embedding = "hash"\n')
    _json(_cli(home, "ingest", str(_small_file(tmp_path / "f.csv")), "--json"))
    res = _cli(home, "watch", "--lang", "en")
    assert res.exit_code == 0 and "no destinations configured" in res.stderr
    assert "Critical case" in res.stdout and "feedback-agent show CRIT-1" in res.stdout
    assert _json(_cli(home, "watch", "--json"))["known"] == 1


def test_two_watchers_at_once_send_each_alert_once(tmp_path: Path, receiver: Receiver) -> None:
    home = tmp_path / "home"
    _config(home, receiver)
    _json(_cli(home, "ingest", str(_small_file(tmp_path / "f.csv")), "--json"))
    receiver.delay = 0.2
    results: list[Any] = []

    def run() -> None:  # two processes' worth: each its own workspace and connections
        with Workspace.open(load_settings(home=home)) as ws:
            results.append(ws.watch())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and all(not r.pending for r in results)
    assert sum(len(r.deliveries) for r in results) == 5
    for path in ("/wecom", "/dingtalk", "/feishu", "/slack", "/hook"):
        assert len(receiver.calls(path)) == 1, path


# --------------------------------------------------------------------------- the weekly report


def test_report_send_delivers_html_with_charts_and_the_markdown_once(
    tmp_path: Path, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    home = tmp_path / "home"
    _config(home, receiver, port, send='"report"')
    _json(_cli(home, "ingest", str(SAMPLE_DIR / "feedback.csv"), "--json", "--no-classify"))
    res = _cli(home, "report", "--week", "2026-W47", "--send", "--json")
    sent = _json(res)["delivery"]
    assert sent["queued"] and {d["status"] for d in sent["deliveries"]} == {"sent"} and len(sent["deliveries"]) == 6

    (mail,) = box.messages
    assert mail["Subject"] == "客户反馈周报 2026-W47"
    html_part = mail.get_body(("html",))
    html = html_part.get_content()
    assert "data:image" not in html and "@font-face" not in html
    related = mail.get_payload()[0].get_payload()[1]  # mixed > alternative > related
    cids = {p["Content-ID"].strip("<>") for p in related.iter_parts() if p["Content-ID"]}
    assert cids and all(f"cid:{c}" in html for c in cids)
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_filename() == "report-2026-W47.md"
    assert attachment.get_content().startswith("# 客户反馈周报 2026-W47")
    hook = receiver.calls("/hook")[0]["body"]
    assert hook["event"] == "report" and hook["report"]["week"] == "2026-W47"
    assert "智能保温杯" in receiver.calls("/wecom")[0]["body"]["markdown"]["content"]

    again = _cli(home, "report", "--week", "2026-W47", "--send")
    assert again.exit_code == 0 and "sent before" in again.stderr
    assert len(box.messages) == 1 and len(receiver.calls("/hook")) == 1
    _json(_cli(home, "report", "--week", "2026-W47", "--send", "--resend", "--json"))
    assert len(box.messages) == 2 and len(receiver.calls("/hook")) == 2
    assert _json(_cli(home, "alerts", "--json")) == []  # reports are not alerts
    assert len(_json(_cli(home, "alerts", "--reports", "--json"))) == 1


def test_report_send_without_a_report_destination_is_one_line(tmp_path: Path, receiver: Receiver) -> None:
    home = tmp_path / "home"
    _config(home, receiver, send='"alerts"')
    _json(_cli(home, "ingest", str(_small_file(tmp_path / "f.csv")), "--json"))
    res = _cli(home, "report", "--week", "2026-W47", "--send")
    assert res.exit_code == 1 and "no destination takes reports" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not receiver.accepted


# --------------------------------------------------------------------------- configuration


def test_config_show_never_prints_secrets(tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    _config(home, receiver, 2525)
    (home / "config.toml").write_text(
        (home / "config.toml").read_text() + '\nusername = "mailer"\n', encoding="utf-8"
    )  # appended to the e-mail entry: SMTP login without TLS is refused off loopback only
    shown = _cli(home, "config", "show", "--json")
    assert shown.exit_code == 0, shown.stderr
    text = shown.stdout
    for secret in ("wecom-key-123", "ding-token", DING_SECRET, FEISHU_SECRET, HOOK_SECRET):
        assert secret not in text
    dests = json.loads(text)["destinations"]["value"]
    assert [d["type"] for d in dests] == ["wecom", "dingtalk", "feishu", "slack", "webhook", "email"]
    assert dests[1]["secret"] == "<set>" and dests[0]["url"].startswith("http://127.0.0.1/")


def test_destinations_from_the_environment_and_bad_ones_are_one_line(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('embedding = "hash"\ndelivery_backoff = 0.01\n')
    monkeypatch.setenv("HOOK_URL", f"{receiver.url}/hook")
    monkeypatch.setenv("FEEDBACK_AGENT_DESTINATIONS", json.dumps([{"type": "webhook", "url_env": "HOOK_URL"}]))
    _json(_cli(home, "ingest", str(_small_file(tmp_path / "f.csv")), "--json"))
    assert _json(_cli(home, "watch", "--json"))["deliveries"][0]["status"] == "sent"
    assert len(receiver.calls("/hook")) == 1

    for bad, words in (
        ([{"type": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send?access_token=x"}], "signing secret"),
        ([{"type": "email", "smtp_host": "smtp.example.com"}], "mail_from, mail_to"),
        ([{"type": "pager", "url": "https://x"}], "destinations.0.type"),
        (
            [
                {
                    "type": "email",
                    "smtp_host": "smtp.example.com",
                    "mail_from": "a@b.c",
                    "mail_to": ["d@e.f"],
                    "password": "p",
                    "security": "none",
                }
            ],
            "unencrypted",
        ),
    ):
        monkeypatch.setenv("FEEDBACK_AGENT_DESTINATIONS", json.dumps(bad))
        res = _cli(home, "watch")
        assert res.exit_code == 1 and words in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    monkeypatch.setenv("FEEDBACK_AGENT_DESTINATIONS", json.dumps([{"type": "webhook", "url_env": "NOT_SET_HERE"}]))
    (home / "more.csv").write_text(
        "id,text,created_at,urgency,sentiment\nCRIT-2,有人被烫伤了,2026-11-20 11:00:00,critical,negative\n"
    )
    _json(_cli(home, "ingest", str(home / "more.csv"), "--json"))
    res = _cli(home, "watch", "--json")
    assert res.exit_code == 1 and "NOT_SET_HERE is not set" in json.loads(res.stdout)["deliveries"][0]["error"]


# --------------------------------------------------------------------------- the HTTP API


def test_http_ingest_checks_alerts_after_answering_and_the_api_lists_them(tmp_path: Path, receiver: Receiver) -> None:
    home = tmp_path / "home"
    _config(home, receiver, extra='alerts_on_ingest = true\npublic_url = "https://feedback.example.com/"\n')
    _json(_cli(home, "ingest", str(_small_file(tmp_path / "f.csv")), "--json"))  # CRIT-1 alerted here
    assert len(receiver.calls("/hook")) == 1
    record = {"id": "CRIT-9", "text": "加热杯漏电，手被电了一下，太危险", "created_at": "2026-11-20 12:00:00"}
    record |= {"urgency": "critical", "sentiment": "negative", "category": "product_quality"}
    with TestClient(create_app(load_settings(home=home, api_keys="k"))) as client:
        key = {"Authorization": "Bearer k"}
        res = client.post("/v1/feedback", json={"records": [record]}, headers=key)
        assert res.status_code == 200 and res.json()["alerts"] == "checking"
        hooks = receiver.calls("/hook")
        assert len(hooks) == 2 and hooks[1]["body"]["record_ids"] == ["CRIT-9"]
        link = hooks[1]["body"]["link"]
        assert link.startswith("https://feedback.example.com/v1/alerts/")
        listed = client.get("/v1/alerts", headers=key).json()
        assert [s["message"]["record_ids"] for s in listed] == [["CRIT-9"], ["CRIT-1"]]
        one = client.get("/v1/alerts/" + link.rsplit("/", 1)[1], headers=key)
        assert one.status_code == 200 and one.json()["message"]["record_ids"] == ["CRIT-9"]
        assert client.get("/v1/alerts/nope", headers=key).status_code == 404
        rec = client.get("/v1/records/CRIT-9", headers=key)
        assert rec.status_code == 200 and rec.json()["text"].startswith("加热杯漏电")
        assert client.get("/v1/records/missing", headers=key).status_code == 404
        watch = client.post("/v1/watch", json={}, headers=key).json()
        assert watch["new"] == [] and watch["known"] == 2
        unchanged = client.post("/v1/feedback", json={"records": [record]}, headers=key).json()
        assert unchanged["alerts"] is None
    assert len(receiver.calls("/hook")) == 2


def test_show_prints_records_and_says_which_ids_are_missing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('embedding = "hash"\n')
    _json(_cli(home, "ingest", str(_small_file(tmp_path / "f.csv")), "--json"))
    res = _cli(home, "show", "CRIT-1", "NOPE")
    assert res.exit_code == 0 and "冒烟起火" in res.stdout and "no feedback record has id NOPE" in res.stderr
    assert _cli(home, "show", "NOPE").exit_code == 1
