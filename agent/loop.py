"""The tool-calling loop: langchain's agent (``create_agent``) driving our chat-model door.

langchain runs the loop (model, tools, model, ...) and its middleware hooks hold our rules:

* ``_Limits.before_model`` ends the run after ``max_steps`` model calls (the answer is then
  unfinished, and the caller falls back);
* ``_Limits.wrap_model_call`` forces a tool choice on the first call only (``llm check`` uses it);
* ``_Trace.wrap_tool_call`` validates each call's arguments against the tool's input model, answers
  an unknown tool or invalid arguments with an error the model can act on, and records every call
  (arguments, result or error) for the number check and the citations;
* ``_AnswerCheck.after_model`` checks a final answer (every figure must be in a tool result) and
  sends it back to the model once with the problem named, without re-running the tools.

The model is :class:`ChatModelAdapter`: a langchain chat model around a :class:`~agent.llm.ChatModel`,
so retries, the deadline, the circuit breaker, PII redaction, the response cache and the token
count (all in ``OpenAIChatModel.complete``) apply to every step, and the scripted
``FakeChatModel`` and ``SchemaModel`` drive the same loop in tests and with ``--llm fake``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    InputAgentState,
    ModelRequest,
    ModelResponse,
    hook_config,
)
from langchain.agents.middleware.types import ToolCallRequest
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration
from langchain_core.outputs import ChatResult as LCChatResult
from langchain_core.tools import StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, ValidationError

from agent.llm import ChatModel, ChatRequest, Message, Tool, ToolCall, ToolRun, ToolSpec, ToolTrace, Usage

AnswerCheck = Callable[[str, list[Any]], list[str]]


# --------------------------------------------------------------------------- the model


class ChatModelAdapter(BaseChatModel):
    """A langchain chat model that sends each call through one of our :class:`ChatModel` s."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: Any
    prompt_version: str | None = None
    usage: Usage = Usage()

    @property
    def _llm_type(self) -> str:
        return "feedback-agent"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        """Tools as OpenAI function specs (what ``ChatRequest`` carries)."""
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], tool_choice=tool_choice, **kwargs)

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> LCChatResult:
        specs = [
            ToolSpec(name=f["name"], description=f.get("description", ""), parameters=f.get("parameters", {}))
            for f in (t["function"] for t in kwargs.get("tools") or [])
        ]
        request = ChatRequest(
            messages=[to_message(m) for m in messages],
            tools=specs,
            tool_choice=kwargs.get("tool_choice"),
            prompt_version=self.prompt_version,
        )
        result = self.inner.complete(request)
        self.usage.add(result.usage)
        calls = [{"name": c.name, "args": c.args, "id": c.id, "type": "tool_call"} for c in result.tool_calls]
        return LCChatResult(generations=[ChatGeneration(message=AIMessage(content=result.content, tool_calls=calls))])


def to_message(m: BaseMessage) -> Message:
    """A langchain message as ours."""
    text = m.content if isinstance(m.content, str) else json.dumps(m.content, ensure_ascii=False)
    if isinstance(m, SystemMessage):
        return Message(role="system", content=text)
    if isinstance(m, AIMessage):
        calls = [ToolCall(id=c.get("id") or "", name=c["name"], args=c.get("args") or {}) for c in m.tool_calls]
        return Message(role="assistant", content=text, tool_calls=calls)
    if isinstance(m, ToolMessage):
        return Message(role="tool", content=text, tool_call_id=m.tool_call_id)
    return Message(role="user", content=text)


def from_message(m: Message) -> AIMessage | HumanMessage | SystemMessage | ToolMessage:
    """Our message as langchain's."""
    if m.role == "system":
        return SystemMessage(content=m.content)
    if m.role == "assistant":
        calls = [{"name": c.name, "args": c.args, "id": c.id, "type": "tool_call"} for c in m.tool_calls]
        return AIMessage(content=m.content, tool_calls=calls)
    if m.role == "tool":
        return ToolMessage(content=m.content, tool_call_id=m.tool_call_id or "")
    return HumanMessage(content=m.content)


# --------------------------------------------------------------------------- middleware


class _Limits(AgentMiddleware):
    """At most ``max_steps`` model calls; ``tool_choice`` on the first call only."""

    def __init__(self, max_steps: int, tool_choice: str | dict[str, Any] | None) -> None:
        super().__init__()
        self.max_steps, self.tool_choice, self.calls = max_steps, tool_choice, 0

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: AgentState, runtime: Any) -> dict[str, Any] | None:
        return {"jump_to": "end"} if self.calls >= self.max_steps else None

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> Any:
        self.calls += 1
        if self.calls == 1 and self.tool_choice is not None:
            return handler(request.override(tool_choice=self.tool_choice))
        return handler(request)


class _Trace(AgentMiddleware):
    """Validates, answers and records every tool call."""

    def __init__(self, tools: dict[str, Tool]) -> None:
        super().__init__()
        self.by_name, self.trace = tools, list[ToolTrace]()

    def wrap_tool_call(self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Any]) -> Any:
        call = request.tool_call
        entry = ToolTrace(tool=call["name"], args=call.get("args") or {})
        self.trace.append(entry)
        tool = self.by_name.get(call["name"])
        if tool is None:
            entry.error = f"unknown tool {call['name']!r}; tools: {', '.join(self.by_name)}"
        else:
            try:
                tool.input_model.model_validate(entry.args)
            except ValidationError as exc:
                entry.error = "invalid arguments: " + "; ".join(
                    f"{'.'.join(str(x) for x in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors()
                )
        if entry.error is not None:
            return ToolMessage(content=_dump({"error": entry.error}), tool_call_id=call["id"] or "", status="error")
        result = handler(request)
        payload = json.loads(result.content)
        if isinstance(payload, dict) and set(payload) == {"error"} and getattr(result, "status", "") == "error":
            entry.error = payload["error"]
        else:
            entry.result = payload
        return result


class _AnswerCheck(AgentMiddleware):
    """Sends a final answer that fails ``check`` back to the model once, with the problem named."""

    def __init__(self, check: AnswerCheck, trace: list[ToolTrace], reasks: int) -> None:
        super().__init__()
        self.check, self.trace, self.reasks = check, trace, reasks

    @hook_config(can_jump_to=["model"])
    def after_model(self, state: AgentState, runtime: Any) -> dict[str, Any] | None:
        last = state["messages"][-1]
        if not isinstance(last, AIMessage) or last.tool_calls or self.reasks <= 0:
            return None
        text = last.content if isinstance(last.content, str) else ""
        problems = self.check(text, [t.result for t in self.trace if t.error is None])
        if not problems:
            return None
        self.reasks -= 1
        note = f"The draft was rejected: {'; '.join(problems)}. Write it again following every rule."
        return {"messages": [HumanMessage(content=note)], "jump_to": "model"}


# --------------------------------------------------------------------------- the loop


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _as_tool(tool: Tool) -> StructuredTool:
    """A langchain tool running ``tool.fn``; a ``ValueError`` (no such value, bad window) comes back
    as the tool's error, for the model to correct."""

    def run(**kwargs: Any) -> str:
        try:
            out = tool.fn(tool.input_model.model_validate(kwargs))
        except ValueError as exc:
            from langchain_core.tools import ToolException

            raise ToolException(_dump({"error": str(exc).splitlines()[0]})) from None
        return _dump(out.model_dump(mode="json") if isinstance(out, BaseModel) else out)

    return StructuredTool.from_function(
        func=run,
        name=tool.name,
        description=tool.description,
        args_schema=tool.input_model,
        handle_tool_error=lambda exc: str(exc),
    )


def run_tools(
    model: ChatModel,
    messages: list[Message],
    tools: Sequence[Tool],
    *,
    max_steps: int = 6,
    prompt_version: str | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    check: AnswerCheck | None = None,
    reasks: int = 1,
) -> ToolRun:
    """Let the model call tools until it answers, at most ``max_steps`` model calls.

    Invalid arguments, unknown tools and tool errors go back to the model as the tool's result,
    never as a crash. With ``check``, a final answer it rejects is sent back ``reasks`` times.
    """
    adapter = ChatModelAdapter(inner=model, prompt_version=prompt_version, usage=Usage())
    limits = _Limits(max_steps, tool_choice)
    tracer = _Trace({t.name: t for t in tools})
    middleware: list[AgentMiddleware] = [limits, tracer]
    if check is not None:
        middleware.append(_AnswerCheck(check, tracer.trace, reasks))
    agent = create_agent(adapter, [_as_tool(t) for t in tools], middleware=middleware)
    start: InputAgentState = {"messages": [from_message(m) for m in messages]}
    # One tool at a time, in the order the model asked: the trace (and the store) sees calls in sequence.
    state = agent.invoke(start, {"recursion_limit": 4 * max_steps + 10, "max_concurrency": 1})
    last = state["messages"][-1]
    finished = isinstance(last, AIMessage) and not last.tool_calls
    answer = last.content if finished and isinstance(last.content, str) else ""
    return ToolRun(answer=answer, trace=tracer.trace, steps=limits.calls, finished=finished, usage=adapter.usage)
