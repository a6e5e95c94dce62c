"""The priority queue (`queue`, `GET /v1/queue`): open cases only, a score that is the sum of its
shown reasons, weights from the settings, and the same list on both faces."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from agent.config import load_settings
from agent.service import create_app
from cli import app

HEADER = ["id", "text", "created_at", "channel", "customer_tier", "order_id", "category", "sentiment", "urgency"]
# id, days before 2026-11-23, channel, tier, order, sentiment, urgency (imported labels: no model involved)
ROWS = [
    ("Q-crit-plat-weibo", 2, "weibo", "platinum", "O1", "negative", "critical"),
    ("Q-crit-reg-email", 2, "email", "regular", "O2", "negative", "critical"),
    ("Q-low-reg-email", 1, "email", "regular", "O3", "negative", "low"),
    ("Q-med-old", 20, "ticket", "regular", "O4", "negative", "medium"),
    ("Q-repeat-a", 3, "online_chat", "regular", "O5", "negative", "medium"),
    ("Q-repeat-b", 2, "online_chat", "regular", "O5", "negative", "medium"),
    ("Q-repeat-c", 1, "online_chat", "regular", "O5", "negative", "medium"),
    ("Q-resolved", 2, "weibo", "platinum", "O6", "negative", "critical"),
    ("Q-escalated", 2, "ticket", "gold", "O7", "negative", "high"),
    ("Q-praise", 2, "weibo", "platinum", "O8", "positive", "low"),
    ("Q-too-old", 45, "weibo", "platinum", "O9", "negative", "critical"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("queue-home")
    feedback, resolutions = home / "fb.csv", home / "res.csv"
    with open(feedback, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for rid, days, channel, tier, order, sentiment, urgency in ROWS:
            day = 23 - days if days < 23 else None
            when = f"2026-11-{day:02d} 10:00:00" if day else f"2026-10-{31 - (days - 23):02d} 10:00:00"
            w.writerow(
                [rid, f"订单 {order} 的问题还没处理", when, channel, tier, order, "logistics", sentiment, urgency]
            )
    with open(resolutions, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "feedback_id", "action", "reply", "outcome", "resolved_at"])
        w.writerow(["R1", "Q-resolved", "refunded", "已退款", "resolved", "2026-11-22 10:00:00"])
        w.writerow(["R2", "Q-escalated", "escalated to carrier", "已升级", "escalated", "2026-11-22 10:00:00"])
    runner = CliRunner()
    for path, kind in ((feedback, "feedback"), (resolutions, "resolution")):
        res = runner.invoke(app, ["ingest", str(path), "--kind", kind, "--home", str(home), "--json"])
        assert res.exit_code == 0, res.stderr
    return home


def _queue(home: Path, *args: str) -> dict:
    res = CliRunner().invoke(app, ["queue", "--as-of", "2026-11-23", "--home", str(home), "--json", *args])
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def test_only_open_recent_complaints_are_listed_and_scores_are_their_reasons(home: Path) -> None:
    q = _queue(home)
    ids = [i["id"] for i in q["items"]]
    assert "Q-resolved" not in ids and "Q-praise" not in ids and "Q-too-old" not in ids
    assert "Q-escalated" in ids  # escalated is not resolved: still open
    assert q["open_total"] == len(ids) == 8
    for item in q["items"]:
        assert item["score"] == pytest.approx(sum(r["points"] for r in item["reasons"]), abs=0.011)
    assert [i["score"] for i in q["items"]] == sorted((i["score"] for i in q["items"]), reverse=True)
    assert ids[0] == "Q-crit-plat-weibo" and ids.index("Q-crit-reg-email") < ids.index("Q-low-reg-email")
    repeat = next(i for i in q["items"] if i["id"] == "Q-repeat-a")
    assert {r["signal"] for r in repeat["reasons"]} >= {"repeat"} and q["model_labelled"] == 0


def test_weights_come_from_the_settings_and_bad_ones_are_one_line(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDBACK_AGENT_QUEUE_WEIGHTS", "urgency=0,customer=0,public=0,age=10,repeat=0")
    q = _queue(home)
    assert q["items"][0]["id"] == "Q-med-old" and q["weights"]["age"] == 10  # only age counts now
    monkeypatch.setenv("FEEDBACK_AGENT_QUEUE_WEIGHTS", "urgency=4,vip=9")
    res = CliRunner().invoke(app, ["queue", "--home", str(home)])
    assert res.exit_code == 1 and "unknown signal 'vip'" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_the_api_lists_the_same_queue(home: Path) -> None:
    with TestClient(create_app(load_settings(home=home, api_keys="k"))) as client:
        key = {"Authorization": "Bearer k"}
        api = client.get("/v1/queue", params={"as_of": "2026-11-23", "limit": 5, "lang": "en"}, headers=key)
    cli = _queue(home, "--limit", "5", "--lang", "en")
    assert api.status_code == 200 and api.json()["items"] == cli["items"]
    assert api.json()["items"][0]["reasons"][0]["text"] == "urgency critical"
