"""``feedback-agent llm check``: is the configured model there, how fast, and what it supports."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.errors import AgentError, OutputValidationError
from agent.llm import ChatModel, ChatRequest, Message, Tool, Usage, complete_structured
from agent.loop import run_tools
from agent.prompts import fence, load_prompt

CHECK_TEXT = "快递一个星期才到，盒子还压坏了，太失望了"


class SentimentCheck(BaseModel):
    """The sentiment of one piece of customer feedback."""

    model_config = ConfigDict(extra="forbid")

    sentiment: Literal["negative", "neutral", "positive"] = Field(description="Overall sentiment of the feedback.")


class CountArgs(BaseModel):
    """Arguments of the probe tool."""

    category: str = Field(description="Feedback category, e.g. logistics.")


class CheckReport(BaseModel):
    """What ``llm check`` found."""

    provider: str
    model: str | None
    endpoint: str | None
    answers: bool
    latency_ms: float | None = None
    error: str | None = None
    structured_output: dict[str, Any] = Field(default_factory=dict)
    tool_calling: dict[str, Any] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)


def run_check(model: ChatModel | None, provider: str) -> CheckReport:
    """Probe the model: a ping, a structured answer, a tool call."""
    if model is None:
        return CheckReport(
            provider=provider,
            model=None,
            endpoint=None,
            answers=False,
            error="no LLM configured: every command runs on its no-LLM path",
        )
    report = CheckReport(provider=provider, model=model.name, endpoint=getattr(model, "endpoint", None), answers=False)
    started = time.perf_counter()
    try:
        pong = model.complete(
            ChatRequest(messages=[Message(role="user", content="Reply with the single word: pong")], max_tokens=8)
        )
    except AgentError as exc:
        report.error = str(exc)
        return report
    report.answers = True
    report.latency_ms = round((time.perf_counter() - started) * 1000, 1)
    report.structured_output["ping_reply"] = pong.content.strip()[:40]

    prompt = load_prompt("check")
    text = prompt.render(schema=SentimentCheck.model_json_schema(), data=fence(CHECK_TEXT))
    try:
        got = complete_structured(model, text, SentimentCheck, prompt_version=prompt.ref, max_tokens=64)
        report.structured_output.update(
            ok=True, mode=got.mode, attempts=got.attempts, value=got.value.model_dump(), expected="negative"
        )
    except OutputValidationError as exc:
        report.structured_output.update(ok=False, error=str(exc), raw=(exc.raw or "")[:200])
    except AgentError as exc:
        report.structured_output.update(ok=False, error=str(exc))
    report.structured_output["modes_refused"] = sorted(m for m in getattr(model, "unsupported", set()) if ":" not in m)

    calls: list[str] = []

    def count(a: CountArgs) -> dict[str, Any]:
        calls.append(a.category)
        return {"category": a.category, "count": 42}

    tool = Tool("count_feedback", "Count feedback records of one category.", CountArgs, count)
    tprompt = load_prompt("check_tools")
    msgs = [Message(role="user", content=tprompt.render(question="How many logistics complaints were there?"))]
    for choice_name, choice in (("auto", None), ("forced", {"type": "function", "function": {"name": tool.name}})):
        try:
            run = run_tools(model, msgs, [tool], max_steps=2, prompt_version=tprompt.ref, tool_choice=choice)
        except AgentError as exc:
            report.tool_calling = {"ok": False, "error": str(exc)}
            break
        if run.trace and any(t.error is None for t in run.trace):
            report.tool_calling = {"ok": True, "tool_choice": choice_name, "calls": [t.model_dump() for t in run.trace]}
            break
        report.tool_calling = {
            "ok": False,
            "tool_choice": choice_name,
            "error": "the model answered without a valid tool call",
            "answer": run.answer[:200],
        }
    report.usage = model.usage
    return report
