"""``--llm fake``: a model that fills any schema by itself, so every LLM path runs end to end offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from agent.classify import Classifier
from agent.reply import _LLMDraft
from agent.report import _LLMSummary
from agent.rootcause import _Summary
from agent.schema_model import SchemaModel, fill
from agent.tools import Analytics
from cli import app
from retrieval.store import Store
from retrieval.taxonomy import load_taxonomy
from tests.conftest import NOW, ZONE, sample_home


def test_fill_validates_against_every_schema_the_product_asks_for(sample_store: Store) -> None:
    """The structured answers (classify, reply, root cause, report) and every analytics tool's input."""
    schemas: list[type[BaseModel]] = [
        _LLMDraft,
        _Summary,
        _LLMSummary,
        Classifier(sample_store, load_taxonomy())._schema(),
    ]
    schemas += [t.input_model for t in Analytics(sample_store, NOW, ZONE).tools()]
    for schema in schemas:
        schema.model_validate(fill(schema.model_json_schema()))  # raises when the filled value is invalid
    assert fill({"type": "object", "properties": {"a": {"type": "integer", "minimum": 3}}, "required": ["a"]}) == {
        "a": 3
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("fake-llm")
    sample_home(home).close()
    return home


def _run(home: Path, *args: str) -> dict:
    res = CliRunner().invoke(app, [*args, "--json", "--home", str(home), "--llm", "fake"])
    assert res.exit_code == 0, res.stderr
    data = json.loads(res.stdout)
    return data[0] if isinstance(data, list) else data


def test_every_llm_path_runs_with_the_fake_model_and_says_what_it_kept(home: Path) -> None:
    """Each capability sends its request, parses the answer and checks it: a plan that drops what
    the question names, drafts and summaries that cite nothing or state no figure are rejected with
    the reason, and the rules' answer is returned."""
    asked = _run(home, "ask", "上周物流投诉有多少条？", "--as-of", "2026-11-23")
    assert asked["path"] == "rules" and "the question names category logistics" in asked["fallback_reason"]
    assert asked["plan"]["filters"]["category"] == "logistics"
    planned = _run(home, "ask", "投诉最多的是什么？", "--as-of", "2026-11-23")  # nothing named: its plan stands
    assert planned["path"] == "llm" and planned["prompt_version"] == "ask_plan@v1" and planned["plan"]
    drafted = _run(home, "reply", "快递一个星期了还没到，物流信息一直不更新")
    assert drafted["path"] == "template" and "cites no past resolution" in drafted["fallback_reason"]
    summary = _run(home, "root-cause", "--category", "logistics", "--as-of", "2026-11-23")
    assert summary["path"] == "rules" and "no valid record id cited" in summary["fallback_reason"]
    weekly = _run(home, "report", "--week", "2026-W47", "--format", "md", "--out", str(home / "r"))
    assert weekly["summary_path"] == "rules" and "no figure" in weekly["fallback_reason"]
    labels = _run(home, "classify", "The mug arrived with a crack in the handle")
    assert labels["category"] in load_taxonomy().category_ids() and labels["error"] is None


def test_the_fake_model_answers_a_structured_request_in_every_mode() -> None:
    from agent.llm import complete_structured

    model = SchemaModel()
    got = complete_structured(model, "label this", _Summary)
    assert isinstance(got.value, _Summary) and got.mode == "json_schema" and model.usage.calls == 1
