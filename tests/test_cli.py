"""The CLI as a user runs it: --json documents, exit codes, one-line errors, config precedence."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cli import app
from retrieval.sample_data import SAMPLE_DIR

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_ingest_json_summary_and_rejects(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("text,created_at\n好评,2026-11-01\n,2026-11-01\n差评,someday\n", encoding="utf-8")
    res = invoke("ingest", str(path), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert {k: data[k] for k in ("read", "added", "updated", "unchanged", "rejected")} == {
        "read": 3,
        "added": 1,
        "updated": 0,
        "unchanged": 0,
        "rejected": 2,
    }
    assert Path(data["rejects_path"]).parent == tmp_path / "home" / "rejects"  # FEEDBACK_AGENT_HOME
    again = json.loads(invoke("ingest", str(path), "--json").stdout)
    assert (again["added"], again["unchanged"]) == (0, 1)


def test_missing_text_column_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("标题,时间\nx,2026-11-01\n", encoding="utf-8")
    res = invoke("ingest", str(path))
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines() == [
        "error: in.csv: no text column (columns: 标题, 时间); name one with --map text=Header"
    ]
    assert "Traceback" not in res.output
    assert invoke("ingest", str(tmp_path / "nope.csv")).exit_code == 1


def test_map_option_and_home_flag(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes("买家留言,时间\n发货太慢,2026-11-01 10:00\n".encode("gbk"))
    home = tmp_path / "elsewhere"
    res = invoke(
        "ingest", str(path), "--map", "text=买家留言", "--map", "created_at=时间", "--home", str(home), "--json"
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["encoding"] == "gb18030"
    assert (home / "mirror.sqlite3").exists()
    bad = invoke("ingest", str(path), "--map", "txt=买家留言")
    assert bad.exit_code == 1 and "unknown field 'txt'" in bad.stderr


def test_similar_json_and_usage_errors(tmp_path: Path) -> None:
    assert invoke("ingest", str(SAMPLE_DIR / "feedback.csv"), "--json").exit_code == 0
    res = invoke(
        "similar",
        "杯盖漏水",
        "-k",
        "3",
        "--days",
        "7",
        "--as-of",
        "2026-11-22",
        "--product",
        "智能保温杯 Pro",
        "--json",
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert len(data["hits"]) == 3
    assert all(h["record"]["product"] == "智能保温杯 Pro" for h in data["hits"])
    assert data["filters"]["since"].startswith("2026-11-15T23:59:59")
    by_name = json.loads(invoke("similar", "物流", "--category", "物流配送", "--json").stdout)
    assert by_name["filters"]["category"] == "logistics"
    assert invoke("similar", "x", "--days", "3", "--since", "2026-11-01").exit_code == 2
    assert invoke("similar", "x", "--since", "2026-02-30").exit_code == 2
    keyword = json.loads(invoke("similar", "x", "--category", "shipping", "--json").stdout)
    assert keyword["filters"]["category"] == "logistics"  # a category keyword names it too
    bad_cat = invoke("similar", "x", "--category", "gardening")
    assert bad_cat.exit_code == 1 and "not in the taxonomy" in bad_cat.stderr
    assert invoke("similar", "   ").exit_code == 2


def test_config_precedence_flag_env_file(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('timezone = "Europe/Berlin"\nembedding_dim = 512\n')
    data = json.loads(invoke("config", "show", "--json").stdout)
    assert data["timezone"] == {"value": "Europe/Berlin", "source": "file"}
    monkeypatch.setenv("FEEDBACK_AGENT_TIMEZONE", "UTC")
    data = json.loads(invoke("config", "show", "--json").stdout)
    assert data["timezone"] == {"value": "UTC", "source": "env"}
    assert data["embedding_dim"] == {"value": 512, "source": "file"}
    monkeypatch.setenv("FEEDBACK_AGENT_TIMEZONE", "Mars/Olympus")
    res = invoke("config", "show")
    assert res.exit_code == 1 and "unknown time zone" in res.stderr


def test_demo_runs_offline_and_reports(tmp_path: Path) -> None:
    res = invoke("demo", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [i["rejected"] for i in data["ingest"]] == [0, 0, 0, 0]  # sample, resolutions, journeys, theirs
    assert all(s["hits"] for s in data["searches"])
    assert "exact" in data["searches"][-1]["hits"][0]["matched_by"]  # the order-number lookup
    assert [c["category"] for c in data["classify"]] == [
        "product_quality",
        "logistics",
        "product_quality",
        "after_sales",
    ]
    assert data["classify"][2]["sentiment"] == "negative"  # sarcasm
    assert "product_quality" in data["ask"][0]["answer"] and data["ask"][2]["answer"].startswith("Logistics")
    assert data["root_cause"][0]["facets"][0]["value"] == "云达快运"
    assert [r["needs_review"] for r in data["reply"]] == [False, False, True]
    assert data["report"]["week"] == "2026-W47" and Path(data["report"]["files"][-1]).exists()
    assert data["at_risk"]["method"] == "model" and len(data["at_risk"]["items"]) == 5
    assert invoke("demo").exit_code == 0  # runs again over its own fresh home


def test_bracketed_text_is_printed_verbatim(tmp_path: Path) -> None:
    """Reviews often contain [图片] or [bold]; rich must not swallow them as markup."""
    path = tmp_path / "in.csv"
    path.write_text("text\n[图片][图片] 杯子漏水 [bold]真的[/bold]\n", encoding="utf-8")
    assert invoke("ingest", str(path)).exit_code == 0
    res = invoke("similar", "杯子漏水")
    assert "[图片][图片] 杯子漏水 [bold]真的[/bold]" in res.stdout
    bad = invoke("ingest", str(tmp_path / "[x].csv"))
    assert bad.exit_code == 1 and "[x].csv" in bad.stderr


def test_kind_is_validated_by_the_cli() -> None:
    res = invoke("similar", "x", "--kind", "tickets")
    assert res.exit_code == 2 and "feedback" in res.stderr and "resolution" in res.stderr


def test_ask_and_chat(tmp_path: Path) -> None:
    assert invoke("ingest", str(SAMPLE_DIR / "feedback.csv"), "--no-classify", "--json").exit_code == 0
    res = invoke("ask", "上周物流投诉有多少条？", "--as-of", "2026-11-23", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert set(data) >= {"answer", "tool_calls", "citations"} and data["path"] == "rules"
    assert data["tool_calls"][0]["result"]["total_current"] == 26 and "26" in data["answer"]
    assert {"tool", "args", "result"} <= set(data["tool_calls"][0])
    assert invoke("ask", "  ").exit_code == 2
    assert invoke("ask", "x", "--as-of", "2026-13-01").exit_code == 2
    res = runner.invoke(
        app,
        ["chat", "--as-of", "2026-11-23"],
        input="how many logistics complaints last week?\n/json\nand the week before?\n/reset\n/nope\n",
    )
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert "2026-W47" in lines[0]
    turn = json.loads(lines[-1])
    assert turn["tool_calls"][0]["args"]["window"] == {"weeks_ago": 2}
    assert "conversation reset" in res.stderr and "commands:" in res.stderr


def test_reply_and_root_cause(tmp_path: Path) -> None:
    assert invoke("ingest", str(SAMPLE_DIR / "feedback.csv"), "--json").exit_code == 0
    assert invoke("ingest", str(SAMPLE_DIR / "resolutions.csv"), "--kind", "resolution", "--json").exit_code == 0
    res = invoke(
        "reply", "快递一个星期了还没到，物流信息一直不更新", "--customer", "陈女士", "--order", "2611230001", "--json"
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (
        data["reply"].startswith("陈女士您好")
        and data["citations"]
        and data["classification"]["category"] == "logistics"
    )
    assert {"needs_review", "reasons", "promises", "evidence"} <= set(data)
    assert invoke("reply", " ").exit_code == 2
    res = invoke("root-cause", "--category", "物流", "--days", "30", "--as-of", "2026-11-23", "--json")
    assert res.exit_code == 0, res.output
    rc = json.loads(res.stdout)
    assert (
        rc["facets"][0]["value"] == "云达快运"
        and rc["facets"][0]["concentrated"]
        and rc["slice"]["category"] == "logistics"
    )
    res = invoke(
        "root-cause", "--product", "智能保温杯 Pro", "--since", "2026-11-16", "--until", "2026-11-22", "--lang", "en"
    )
    assert res.exit_code == 0 and "From 2026-11-16 to 2026-11-22" in res.stdout
    bad = invoke("root-cause", "--category", "nonsense")
    assert bad.exit_code == 1 and "not in the taxonomy" in bad.stderr
    assert invoke("root-cause", "--days", "7", "--since", "2026-11-01").exit_code == 2


HOSTILE = [
    ("h1", "快递\x1b[2J\x1b[31m丢了\x1b]0;pwned\x07，一周没到", "2026-11-20 10:00"),
    (
        '=HYPERLINK("http://x")',
        "=1+2 包装破了 <script>alert(1)</script> [点我](javascript:alert(1))",
        "2026-11-20 11:00",
    ),
    ("h3", "<img src=x onerror=alert(1)> 快递太慢了", "2026-11-21 09:00"),
    ("h4", "很好用<script>alert(2)</script> [赞](javascript:alert(2))", "2026-11-21 10:00"),
]


def _hostile_home(tmp_path: Path) -> Path:
    import csv

    path = tmp_path / "hostile.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "created_at", "category", "sentiment"])
        w.writerows(
            [
                (i, t, c, "praise" if i == "h4" else "logistics", "positive" if i == "h4" else "negative")
                for i, t, c in HOSTILE
            ]
        )
    assert invoke("ingest", str(path)).exit_code == 0
    return path


def test_terminal_control_sequences_in_records_are_not_printed(tmp_path: Path) -> None:
    """Issue 14, defect 11: ANSI escapes stored in feedback are stripped from what the CLI prints."""
    _hostile_home(tmp_path)
    res = invoke("similar", "快递丢了", "-k", "3")
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout and "快递丢了" in res.stdout


def test_markdown_report_keeps_feedback_as_text(tmp_path: Path) -> None:
    """The Markdown report escapes raw HTML and link syntax from feedback, as the HTML one does."""
    _hostile_home(tmp_path)
    res = invoke("report", "--week", "2026-W47", "--out", str(tmp_path / "r"), "--format", "md", "--json")
    assert res.exit_code == 0, res.output
    md = next((tmp_path / "r").glob("*.md")).read_text(encoding="utf-8")
    import re

    assert "<script" not in md and "<img" not in md
    assert not re.search(r"(?<!\\)\]\(javascript:", md) and "\\](javascript:" in md  # the bracket is escaped
    assert "很好用&lt;script&gt;" in md  # the quote is there, as text


def test_classify_csv_output_cannot_carry_formulas(tmp_path: Path) -> None:
    import csv

    src = tmp_path / "in.csv"
    src.write_text("id,text\n\"=cmd|' /C calc'!A0\",物流太慢\n@SUM(1),包装破了\n+1,ok\n-2,好评\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    res = invoke("classify", "--file", str(src), "--out", str(out))
    assert res.exit_code == 0, res.output
    with open(out, encoding="utf-8-sig", newline="") as fh:
        ids = [row["id"] for row in csv.DictReader(fh)]
    assert ids == ["'=cmd|' /C calc'!A0", "'@SUM(1)", "'+1", "'-2"]


def test_a_bare_as_of_date_means_the_same_instant_in_every_command(tmp_path: Path) -> None:
    """Issue 20: `--as-of 2026-11-23` is the end of that day in ask, chat, root-cause and report,
    and the demo's "as of 2026-11-23" is that same instant, so the figures agree."""
    demo = json.loads(invoke("demo", "--json").stdout)
    home = demo["home"]
    assert demo["as_of"].startswith("2026-11-23T23:59:59")
    question = "最近用户投诉最多的是什么？"
    asked = json.loads(invoke("ask", question, "--as-of", "2026-11-23", "--home", home, "--json").stdout)
    assert asked["answer"] == demo["ask"][0]["answer"]
    chat = runner.invoke(app, ["chat", "--as-of", "2026-11-23", "--home", home], input=question + "\n")
    assert demo["ask"][0]["answer"] in chat.stdout
    rc = json.loads(
        invoke(
            "root-cause", "--category", "logistics", "--days", "30", "--as-of", "2026-11-23", "--home", home, "--json"
        ).stdout
    )
    first = demo["root_cause"][0]
    assert (rc["volume"], rc["period"], rc["facets"][0]) == (first["volume"], first["period"], first["facets"][0])
    rep = json.loads(invoke("report", "--as-of", "2026-11-23", "--home", home, "--json").stdout)
    assert rep["week"] == demo["report"]["week"] == "2026-W47"


def test_an_empty_store_and_an_empty_window_are_said_plainly(tmp_path: Path) -> None:
    """Issue 20: no confident "no category rose" from a store that holds nothing."""
    empty = json.loads(invoke("ask", "上周哪类投诉涨得最多", "--as-of", "2026-11-23", "--json").stdout)
    assert empty["understood"] is False and "还没有任何反馈记录" in empty["answer"]
    en = json.loads(invoke("ask", "What rose most last week?", "--json").stdout)
    assert "holds no feedback yet" in en["answer"]
    rep = json.loads(invoke("report", "--week", "2026-W47", "--json").stdout)
    assert rep["executive_summary"].startswith("这个数据目录里还没有任何反馈记录")
    rc = json.loads(invoke("root-cause", "--category", "logistics", "--lang", "en", "--json").stdout)
    assert rc["summary"].startswith("This store holds no feedback yet")
    sim = invoke("similar", "订单 2611201234567 怎么样了")
    assert sim.exit_code == 0 and sim.stdout.splitlines()[0].startswith("the store at")

    path = tmp_path / "in.csv"
    path.write_text("id,text,created_at\na1,快递太慢了,2026-11-20 10:00\n", encoding="utf-8")
    assert invoke("ingest", str(path)).exit_code == 0
    gap = json.loads(invoke("ask", "上周物流投诉有多少", "--as-of", "2026-03-10", "--json").stdout)
    assert gap["answer"].startswith(
        "2026-03-02 至 2026-03-08 没有任何反馈记录（数据中的反馈在 2026-11-20 至 2026-11-20 之间）"
    )


def test_an_order_number_no_record_holds_is_said_first(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,text,order_id\na1,快递太慢了,2611200001\na2,包装破了,2611200002\n", encoding="utf-8")
    assert invoke("ingest", str(path)).exit_code == 0
    res = invoke("similar", "订单 2611201234567 怎么样了")
    assert res.stdout.splitlines()[0] == "no record has order number, SKU or id 2611201234567; similar records below"
    data = json.loads(invoke("similar", "订单 2611201234567 和 2611200002", "--json").stdout)
    assert data["not_found"] == ["2611201234567"] and data["hits"][0]["id"] == "a2"
