"""Streaming readers: encodings, delimiters, mapping, malformed input (no store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openpyxl import Workbook

from retrieval.errors import InputFileError
from retrieval.readers import InputFile, detect_encoding, parse_map_options

ROWS = [
    ("评价内容", "评价时间", "渠道"),
    ("快递太慢了", "2026-11-20 10:00", "app"),
    ("包装破损，杯子碎了", "2026/11/21", "weibo"),
]


def write_csv(path: Path, rows: list[tuple[str, ...]], encoding: str, sep: str = ",") -> Path:
    path.write_bytes("\n".join(sep.join(r) for r in rows).encode(encoding))
    return path


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16"])
def test_encodings_are_detected(tmp_path: Path, encoding: str) -> None:
    path = write_csv(tmp_path / "f.csv", ROWS, encoding)
    src = InputFile(path, "feedback")
    rows = list(src)
    assert [r.values["text"] for r in rows] == ["快递太慢了", "包装破损，杯子碎了"]
    assert rows[0].values["created_at"] == "2026-11-20 10:00"
    assert rows[0].values["channel"] == "app"


def test_detect_encoding_prefers_utf8_then_gb18030() -> None:
    assert detect_encoding("物流".encode()) == "utf-8"
    assert detect_encoding("物流".encode("gbk")) == "gb18030"
    # a multi-byte character cut at the end of the sample is still UTF-8
    assert detect_encoding("物流".encode()[:-1]) == "utf-8"


@pytest.mark.parametrize(("sep", "suffix"), [("\t", ".tsv"), (";", ".csv"), ("\t", ".txt"), ("|", ".csv")])
def test_delimiters(tmp_path: Path, sep: str, suffix: str) -> None:
    path = write_csv(tmp_path / f"f{suffix}", ROWS, "utf-8", sep)
    assert [r.values["text"] for r in InputFile(path, "feedback")] == ["快递太慢了", "包装破损，杯子碎了"]


def test_explicit_map_wins(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", [("买家留言", "下单渠道"), ("发错货了", "app")], "utf-8")
    with pytest.raises(InputFileError, match="no text column"):
        InputFile(path, "feedback")
    rows = list(InputFile(path, "feedback", parse_map_options(["text=买家留言", "channel=下单渠道"], "feedback")))
    assert rows[0].values == {"text": "发错货了", "channel": "app"}


def test_bad_map_options() -> None:
    with pytest.raises(InputFileError, match="field=Header"):
        parse_map_options(["text"], "feedback")
    with pytest.raises(InputFileError, match="unknown field 'txt'"):
        parse_map_options(["txt=评价"], "feedback")


def test_mapped_header_must_exist(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", ROWS, "utf-8")
    with pytest.raises(InputFileError, match="column '内容2' \\(mapped to text\\) is not in the file"):
        InputFile(path, "feedback", {"text": "内容2"})


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "file not found"),
        ("empty.csv", b"", "is empty"),
        ("binary.csv", b"PK\x03\x04\x00\x00\x00binary", "looks binary"),
        ("notes.docx", b"x", "unsupported file type"),
        ("broken.xlsx", b"not a zip", "not a readable XLSX"),
        ("nocol.csv", b"id,channel\n1,app\n", "no text column"),
    ],
)
def test_unusable_files_fail_with_one_line(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputFileError, match=message) as info:
        InputFile(path, "feedback")
    assert "\n" not in str(info.value)


def test_undecodable_bytes_become_a_rejectable_marker(tmp_path: Path) -> None:
    good = "text\n" + "好评\n" * 20000  # push the bad bytes past the detection sample
    path = tmp_path / "f.csv"
    path.write_bytes(good.encode() + b"\xff\xfe\xfd broken\n" + "最后一行\n".encode())
    rows = list(InputFile(path, "feedback"))
    assert rows[-1].values["text"] == "最后一行"
    assert any("\udcff" in r.values["text"] for r in rows)


def test_jsonl_rows_with_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    lines = [
        json.dumps({"content": "物流慢", "tags": ["a"]}, ensure_ascii=False),
        "{oops",
        "[1,2]",
        "",
        json.dumps({"text": "second"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = list(InputFile(path, "feedback"))
    assert rows[0].values["text"] == "物流慢" and rows[0].values["tags"] == '["a"]'
    assert rows[1].error.startswith("invalid JSON") and rows[1].line == 2
    assert rows[2].error == "line is not a JSON object"
    assert rows[3].values["text"] == "second" and rows[3].number == 4 and rows[3].line == 5


def test_xlsx_streaming(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(["评价内容", "评价时间", "订单号"])
    ws.append(["屏幕有坏点", "2026-11-20 08:00", 261120123456789])
    ws.append([None, None, None])
    ws.append(["Great!", None, None])
    path = tmp_path / "f.xlsx"
    wb.save(path)
    src = InputFile(path, "feedback")
    rows = list(src)
    assert [r.values["text"] for r in rows] == ["屏幕有坏点", "Great!"]
    assert rows[0].values["order_id"] == 261120123456789
    assert rows[1].line == 4


def test_ragged_and_runaway_rows(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text(
        'text,channel\nok,app\ntoo,many,cells,here\nshort\n"unterminated' + "x" * 1_100_000 + "\n", encoding="utf-8"
    )
    rows = list(InputFile(path, "feedback"))
    assert rows[0].values == {"text": "ok", "channel": "app"}
    assert "4 cells but the header has 2" in rows[1].error
    assert rows[2].values["text"] == "short"
    assert rows[3].error.startswith("malformed CSV")


def test_large_files_are_streamed_not_loaded(tmp_path: Path) -> None:
    """A 60 MB file is read incrementally: after 1,000 rows only a small prefix has been read."""
    path = tmp_path / "big.csv"
    line = "快递太慢了，包装也破了，客服一直不回复，希望尽快处理这个问题,2026-11-20 10:00,app\n".encode()
    with open(path, "wb") as fh:
        fh.write(b"text,created_at,channel\n")
        block = line * 10_000
        while fh.tell() < 60 * 2**20:
            fh.write(block)
    src = InputFile(path, "feedback")
    it = iter(src)
    for _ in range(1000):
        next(it)
    assert src.total == path.stat().st_size
    assert 0 < src.position < 2 * 2**20  # a buffer's worth, not the file
    src.close()
