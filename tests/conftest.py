"""Shared fixtures: every test gets its own home and a clean environment."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from retrieval.ingest import ingest_file
from retrieval.records import get_zone
from retrieval.sample_data import SAMPLE_DIR
from retrieval.store import Store
from retrieval.taxonomy import load_taxonomy
from retrieval.text import HashEmbedding

ZONE = get_zone("Asia/Shanghai")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point FEEDBACK_AGENT_HOME at a temp dir and drop ambient configuration and keys."""
    for key in list(os.environ):
        if key.startswith(("FEEDBACK_AGENT_", "OPENAI_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("FEEDBACK_AGENT_HOME", str(tmp_path / "home"))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """An empty store in a temp home (embedded Chroma, SQLite mirror)."""
    s = Store(tmp_path / "store", HashEmbedding())
    yield s
    s.close()


def sample_home(home: Path) -> Store:
    """A store at ``home`` (word-hash embedding) holding the bundled sample: feedback + resolutions."""
    s = Store(home, HashEmbedding())
    ingest_file(s, SAMPLE_DIR / "feedback.csv", kind="feedback", taxonomy=load_taxonomy(), zone=ZONE, now=NOW)
    ingest_file(s, SAMPLE_DIR / "resolutions.csv", kind="resolution", zone=ZONE, now=NOW)
    return s


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store holding the bundled sample (feedback + resolutions), shared read-only."""
    s = sample_home(tmp_path_factory.mktemp("sample-home"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def vcr_config() -> dict[str, object]:
    """Cassettes never hold credentials; bodies are stored decoded for review."""
    return {
        "filter_headers": [
            "authorization",
            "openai-organization",
            "openai-project",
            "cookie",
            "x-api-key",
            "set-cookie",
        ],
        "decode_compressed_response": True,
        "before_record_request": _skip_health_checks,
    }


def _skip_health_checks(request: object) -> object | None:
    """The local server's readiness polls (GET /v1/models) are not part of any exchange under test."""
    return None if getattr(request, "path", "").endswith("/models") else request
