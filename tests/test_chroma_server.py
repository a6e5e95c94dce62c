"""The same store against a real `chroma run` server on loopback (FEEDBACK_AGENT_CHROMA_URL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from evals.servers import ServerMissing, chroma_server, free_port
from retrieval.errors import StoreError
from retrieval.ingest import ingest_file
from retrieval.sample_data import SAMPLE_DIR
from retrieval.search import Searcher, SearchFilters
from retrieval.store import Store
from retrieval.taxonomy import load_taxonomy
from retrieval.text import HashEmbedding
from tests.conftest import NOW, ZONE


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server (the `chroma` CLI shipped in the chromadb wheel) on loopback."""
    try:
        with chroma_server(tmp_path_factory.mktemp("chroma-server")) as (url, _pid):
            yield url
    except ServerMissing as exc:
        pytest.fail(str(exc))


def test_ingest_and_search_through_a_chroma_server(chroma_url: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "home", HashEmbedding(), chroma_url=chroma_url)
    try:
        summary = ingest_file(store, SAMPLE_DIR / "feedback.csv", taxonomy=load_taxonomy(), zone=ZONE, now=NOW)
        assert summary.added == summary.read > 1000
        assert store.chroma_count("feedback") == store.count("feedback") == summary.added
        assert not (tmp_path / "home" / "chroma").exists()  # vectors live on the server, not locally
        hits = Searcher(store).search("快递一个星期了还没到，物流信息一直不更新", k=5)
        assert [h.record["category"] for h in hits].count("logistics") >= 4
        f = SearchFilters(category="packaging", channel="weibo")
        assert all(h.record["category"] == "packaging" for h in Searcher(store).search("箱子", filters=f))
        again = ingest_file(store, SAMPLE_DIR / "feedback.csv", taxonomy=load_taxonomy(), zone=ZONE, now=NOW)
        assert (again.added, again.unchanged) == (0, summary.read)
    finally:
        store.close()


@pytest.mark.slow
def test_cli_switches_by_env_var_alone(chroma_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDBACK_AGENT_CHROMA_URL", chroma_url)
    home = tmp_path / "cli-home"
    res = CliRunner().invoke(
        app, ["ingest", str(SAMPLE_DIR / "resolutions.csv"), "--kind", "resolution", "--home", str(home), "--json"]
    )
    assert res.exit_code == 0, res.output
    status = json.loads(CliRunner().invoke(app, ["status", "--home", str(home), "--json"]).stdout)
    assert status["resolutions"] == status["chroma_resolutions"] == json.loads(res.stdout)["added"]


def test_unreachable_server_is_one_clear_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "h", HashEmbedding(), chroma_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreError, match="cannot reach Chroma at http://127.0.0.1"):
        store.collection("feedback")
    res = CliRunner().invoke(app, ["status", "--home", str(tmp_path / "h2"), "--chroma-url", "http://127.0.0.1:9"])
    assert res.exit_code == 1
    assert res.stderr.strip().startswith("error: cannot reach Chroma") and len(res.stderr.strip().splitlines()) == 1
