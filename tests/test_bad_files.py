"""The bad-file matrix of the red-team pass (issue 14): every input row is accounted for as added or
rejected with its original bytes; no file is lost to one bad byte, an open quote or a NUL."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from openpyxl import Workbook

from retrieval.ingest import IngestSummary, ingest_file
from retrieval.store import Store
from retrieval.taxonomy import load_taxonomy
from tests.conftest import NOW, ZONE

TAX = load_taxonomy()


def run(store: Store, path: Path, **kw: object) -> IngestSummary:
    return ingest_file(store, path, taxonomy=TAX, zone=ZONE, now=NOW, **kw)  # type: ignore[arg-type]


def rejects_of(summary: IngestSummary) -> list[dict]:
    if not summary.rejects_path:
        return []
    return [json.loads(x) for x in Path(summary.rejects_path).read_text(encoding="utf-8").splitlines()]


def bad_byte_csv(tmp_path: Path) -> Path:
    """The issue's reproduction: one undecodable byte in the channel column of row 11."""
    lines = [b"id,text,created_at,channel"]
    lines += [f"a{i},ok{i},2026-11-10,tb".encode() for i in range(1, 11)]
    lines += [b"x,bad,2026-11-10,t\xffb"]
    lines += [f"b{i},ok{i},2026-11-10,tb".encode() for i in range(1, 11)]
    path = tmp_path / "bad.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("batch_size", [1000, 5])
def test_a_bad_byte_in_a_non_text_column_rejects_that_row_only(store: Store, tmp_path: Path, batch_size: int) -> None:
    summary = run(store, bad_byte_csv(tmp_path), batch_size=batch_size)
    assert (summary.read, summary.added, summary.rejected) == (21, 20, 1)
    [rej] = rejects_of(summary)
    assert rej["line"] == 12 and "channel" in rej["reason"]
    assert base64.b64decode(rej["raw_b64"]) == b"x,bad,2026-11-10,t\xffb\n"  # the original bytes, recoverable
    assert store.count("feedback") == store.chroma_count("feedback") == 20


def test_a_lone_surrogate_escape_in_jsonl_rejects_that_line_only(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    good = [
        json.dumps({"id": f"j{i}", "text": f"物流慢{i}", "created_at": "2026-11-10"}, ensure_ascii=False)
        for i in range(6)
    ]
    bad = [
        r'{"id": "s1", "text": "ok", "channel": "a\ud800b"}',
        r'{"id": "s2\udc00", "text": "ok"}',
        r'{"id": "s3", "text": "ok", "note\ud800": "x"}',
    ]
    path.write_text("\n".join(good[:3] + bad + good[3:]) + "\n", encoding="utf-8")
    summary = run(store, path)
    assert (summary.read, summary.added, summary.rejected) == (9, 6, 3)
    reasons = [r["reason"] for r in rejects_of(summary)]
    assert "column 'channel' has a lone surrogate" in reasons[0]
    assert "column 'id'" in reasons[1] and "column name" in reasons[2]
    assert all(r["raw_b64"] for r in rejects_of(summary))


def gbk_lines(n: int) -> list[bytes]:
    return [f"g{i},第{i}单快递太慢了，包装也破了,2026-11-1{i % 10} 10:00,淘宝".encode("gbk") for i in range(n)]


def test_a_gbk_file_with_a_stray_byte_keeps_every_other_row(store: Store, tmp_path: Path) -> None:
    lines = [b"id,text,created_at,channel", *gbk_lines(25), b"s1,\xff\xfe broken,2026-11-10,tb", *gbk_lines(50)[25:]]
    path = tmp_path / "gbk.csv"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    summary = run(store, path)
    assert (summary.read, summary.added, summary.rejected) == (51, 50, 1)
    rec = store.records("feedback", ["g7"])["g7"]
    assert rec.text == "第7单快递太慢了，包装也破了" and rec.channel == "淘宝"
    [rej] = rejects_of(summary)
    assert base64.b64decode(rej["raw_b64"]) == b"s1,\xff\xfe broken,2026-11-10,tb\r\n"


def test_a_gbk_file_with_utf8_rows_reads_both(store: Store, tmp_path: Path) -> None:
    utf8 = [
        "u1,这一行是UTF-8写的，物流很慢,2026-11-10,京东".encode(),
        "u2,另一行UTF-8：退款没到,2026-11-10,京东".encode(),
    ]
    lines = [b"id,text,created_at,channel", *gbk_lines(10), utf8[0], *gbk_lines(20)[10:], utf8[1]]
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    summary = run(store, path)
    assert (summary.read, summary.added, summary.rejected) == (22, 22, 0)
    assert summary.encoding is not None and summary.encoding.startswith("mixed")
    rows = store.records("feedback", ["u2", "g3"])
    assert rows["u2"].text == "另一行UTF-8：退款没到" and rows["g3"].channel == "淘宝"


def test_an_unclosed_quote_rejects_its_line_and_reads_on(store: Store, tmp_path: Path) -> None:
    rows = [f"r{i},评价{i}：物流有点慢,2026-11-10,tb" for i in range(1, 101)]
    rows[2] = 'r3,"评价3：这里的引号没有关上,2026-11-10,tb'
    path = tmp_path / "quote.csv"
    path.write_text("id,text,created_at,channel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    summary = run(store, path)
    assert (summary.read, summary.added, summary.rejected) == (100, 99, 1)
    [rej] = rejects_of(summary)
    assert rej["line"] == 4 and "unclosed quote" in rej["reason"] and "lines 4-101" in rej["reason"]
    assert store.records("feedback", ["r4"])["r4"].text == "评价4：物流有点慢"


def test_a_real_multiline_field_is_kept_whole(store: Store, tmp_path: Path) -> None:
    body = 'id,text,created_at,channel\nm1,"第一行\n第二行, 还是同一条评价",2026-11-10,tb\nm2,普通一行,2026-11-10,tb\n'
    path = tmp_path / "multi.csv"
    path.write_text(body, encoding="utf-8")
    summary = run(store, path)
    assert (summary.added, summary.rejected) == (2, 0)
    assert store.records("feedback", ["m1"])["m1"].text == "第一行\n第二行, 还是同一条评价"


def test_a_nul_byte_is_cleaned_from_its_row_and_the_file_is_kept(store: Store, tmp_path: Path) -> None:
    rows = [f"n{i},正常评价{i},2026-11-10,tb".encode() for i in range(10)]
    rows[1] = b"n1,has a\x00nul,2026-11-10,tb"
    path = tmp_path / "nul.csv"
    path.write_bytes(b"id,text,created_at,channel\n" + b"\n".join(rows) + b"\n")
    summary = run(store, path)
    assert (summary.read, summary.added, summary.rejected) == (10, 10, 0)
    assert store.records("feedback", ["n1"])["n1"].text == "has anul"


def test_utf16le_without_a_bom_is_read(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes("id,text\nw1,屏幕有坏点\nw2,Battery drains fast\n".encode("utf-16-le"))
    summary = run(store, path)
    assert (summary.encoding, summary.added, summary.rejected) == ("utf-16-le", 2, 0)
    assert store.records("feedback", ["w1"])["w1"].text == "屏幕有坏点"


def test_semicolon_file_with_commas_in_quoted_headers(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text('id;"text, as written";"channel, shop"\nc1;物流太慢, 真的;app\n', encoding="utf-8")
    summary = run(store, path, mapping={"text": "text, as written"})
    assert (summary.added, summary.rejected) == (1, 0)
    assert store.records("feedback", ["c1"])["c1"].text == "物流太慢, 真的"


def test_rejects_keep_the_original_of_malformed_rows(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text('{"text": "ok"}\n{oops not json\n', encoding="utf-8")
    summary = run(store, path)
    [rej] = rejects_of(summary)
    assert rej["data"] == {"text": "{oops not json\n"} and base64.b64decode(rej["raw_b64"]) == b"{oops not json\n"


@pytest.mark.parametrize("text", ["\u200b\u200b", "\x00", " \ufeff\u200d "])
def test_text_with_nothing_visible_is_rejected(store: Store, tmp_path: Path, text: str) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text(
        json.dumps({"id": "z", "text": text}) + "\n" + json.dumps({"id": "y", "text": "ok"}) + "\n", encoding="utf-8"
    )
    summary = run(store, path)
    assert (summary.added, summary.rejected) == (1, 1)
    assert rejects_of(summary)[0]["reason"] in ("text has no visible characters", "empty text")


def test_xlsx_reads_every_sheet_with_a_text_column_and_names_the_rest(store: Store, tmp_path: Path) -> None:
    wb = Workbook()
    wb.active.title = "封面"  # an empty first sheet
    s2 = wb.create_sheet("十一月")
    s2.append(["编号", "评价内容"])
    s2.append(["x1", "屏幕有坏点"])
    s3 = wb.create_sheet("汇总")
    s3.append(["渠道", "数量"])
    s3.append(["app", 3])
    s4 = wb.create_sheet("十二月")
    s4.append(["编号", "评价内容"])
    s4.append(["x2", "物流太慢"])
    path = tmp_path / "book.xlsx"
    wb.save(path)
    summary = run(store, path)
    assert (summary.added, summary.rejected) == (2, 0)
    notes = " | ".join(summary.notes)
    assert "'封面' is empty" in notes and "'汇总' skipped" in notes and "'十一月', '十二月'" in notes


def test_redact_pii_on_ingest_keeps_personal_data_out_of_every_part_of_the_store(store: Store, tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "pii.csv"
    path.write_text(
        "id,text\np1,快递没到，联系我13812345678，地址北京市朝阳区建国路88号3号楼1单元502室\n"
        "p2,Call me on +44 20 7946 0958 or mail jo@example.com\n",
        encoding="utf-8",
    )
    summary = run(store, path, redact_pii=True)
    assert summary.added == 2
    assert store.records("feedback", ["p1"])["p1"].text.startswith("快递没到，联系我[PHONE_1]")
    con = sqlite3.connect(store.home / "mirror.sqlite3")
    dump = "\n".join(con.iterdump())
    assert not [s for s in ("13812345678", "建国路", "7946", "jo@example.com") if s in dump]
