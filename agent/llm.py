"""The only door to chat models: one protocol, an OpenAI-compatible implementation, a fake.

``OpenAIChatModel`` speaks to any OpenAI-compatible endpoint (OpenAI, DeepSeek, Qwen/DashScope
compatible mode, vLLM, Ollama, llama.cpp) through langchain-openai's ``ChatOpenAI``, with:

* transport retries (tenacity): exponential backoff with jitter on timeouts, connection errors,
  429 (honouring ``Retry-After``) and 5xx; none on 400/401/403/404/422. The SDK's own retries are
  off (``max_retries=0``) so the two never multiply;
* a circuit breaker per endpoint: after consecutive failed attempts the endpoint is refused for a
  cool-down, so a dead server costs a few attempts, not every request's full retry budget;
* an overall deadline per command (each request's timeout is cut to what is left);
* token accounting per call and per command, and an optional on-disk response cache.

``complete_structured`` validates answers with pydantic, trying ``json_schema``, then function
calling, then JSON mode, as the endpoint supports them, and re-asks with the validation error.
This negotiation stays hand-written rather than langchain's ``with_structured_output``, which
binds one method per call: the recorded llama.cpp server answers ``json_schema`` with HTTP 500
and function calling works (``tests/cassettes/.../test_reply_with_a_real_model_is_post_checked``),
so the refused mode is remembered per endpoint and the next one tried. The tool loop is
langchain's agent (:mod:`agent.loop`). ``FakeChatModel`` queues canned replies for tests;
``--llm fake`` is :class:`agent.schema_model.SchemaModel`.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import (
    CircuitOpenError,
    DeadlineExceeded,
    OutputValidationError,
    ProviderError,
    UnconsumedModelSteps,
    UnexpectedModelCall,
)
from retrieval.pii import Redactor

T = TypeVar("T", bound=BaseModel)
Mode = Literal["json_schema", "function_calling", "json_mode"]
MODES: tuple[Mode, ...] = ("json_schema", "function_calling", "json_mode")


# --------------------------------------------------------------------------- wire types


class ToolCall(BaseModel):
    """A tool call requested by the model."""

    id: str
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None


class ToolSpec(BaseModel):
    """A tool the model may call: name, description and JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]

    def openai(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry."""
        return {"type": "function", "function": self.model_dump()}


class Usage(BaseModel):
    """Token use (summed over calls)."""

    calls: int = 0
    cached_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, other: Usage) -> None:
        """Accumulate another usage record."""
        self.calls += other.calls
        self.cached_calls += other.cached_calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens


class ChatRequest(BaseModel):
    """What a capability asks of the model."""

    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = None
    prompt_version: str | None = None
    probe: bool = Field(False, description="A capability probe: 5xx is an answer (unsupported), not retried.")


class ChatResult(BaseModel):
    """The model's answer."""

    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    cached: bool = False
    latency_s: float = 0.0


class ChatModel(Protocol):
    """Anything that answers a :class:`ChatRequest`."""

    name: str
    usage: Usage

    def complete(self, req: ChatRequest) -> ChatResult:
        """Answer one request."""
        ...


# --------------------------------------------------------------------------- resilience


@dataclass
class CircuitBreaker:
    """Opens after ``threshold`` consecutive failed attempts; one trial call after ``cooldown_s``."""

    threshold: int = 5
    cooldown_s: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, endpoint: str) -> None:
        """Raise while open; let one trial call through after the cool-down."""
        with self._lock:
            if self.opened_at is None:
                return
            if time.monotonic() - self.opened_at >= self.cooldown_s:
                self.opened_at = None  # half-open: the next failure re-opens at once
                self.failures = self.threshold - 1
                return
        raise CircuitOpenError(
            f"LLM endpoint {endpoint} failed {self.threshold} times in a row; not calling it for "
            f"{self.cooldown_s:.0f} s",
            retryable=True,
        )

    def record(self, ok: bool) -> None:
        """Record one attempt."""
        with self._lock:
            if ok:
                self.failures, self.opened_at = 0, None
            else:
                self.failures += 1
                if self.failures >= self.threshold:
                    self.opened_at = time.monotonic()


_BREAKERS: dict[str, CircuitBreaker] = {}


def breaker_for(endpoint: str) -> CircuitBreaker:
    """The process-wide breaker of an endpoint (shared by every model object using it)."""
    return _BREAKERS.setdefault(endpoint, CircuitBreaker())


def _status_of(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)


def _is_retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        return True
    status = _status_of(exc)
    return status is not None and (status == 429 or status >= 500)


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class ResponseCache:
    """On-disk cache of chat results keyed by model, prompt version and the full request."""

    def __init__(self, path: Path) -> None:
        """Open (creating) the cache database."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self._conn.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, result TEXT NOT NULL)")
        self._lock = threading.Lock()

    @staticmethod
    def key(model: str, endpoint: str, req: ChatRequest, temperature: float) -> str:
        """Stable key of a request."""
        body = {
            "model": model,
            "endpoint": endpoint,
            "temperature": temperature,
            **req.model_dump(mode="json", exclude={"probe"}),
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str) -> ChatResult | None:
        """A cached result, marked as cached."""
        with self._lock:
            row = self._conn.execute("SELECT result FROM cache WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        result = ChatResult.model_validate_json(row[0])
        return result.model_copy(update={"cached": True, "usage": Usage(calls=1, cached_calls=1)})

    def put(self, key: str, result: ChatResult) -> None:
        """Store a result."""
        with self._lock, self._conn:
            self._conn.execute("INSERT OR REPLACE INTO cache VALUES (?, ?)", (key, result.model_dump_json()))

    def close(self) -> None:
        """Close the database."""
        self._conn.close()


# --------------------------------------------------------------------------- OpenAI-compatible


def _restore_args(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor.restore(value)
    if isinstance(value, dict):
        return {k: _restore_args(v, redactor) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_args(v, redactor) for v in value]
    return value


class OpenAIChatModel:
    """An OpenAI-compatible chat endpoint through langchain-openai's ``ChatOpenAI``.

    Args:
        model: model name as the endpoint knows it.
        base_url: endpoint base URL (``None``: OpenAI).
        api_key: key (``None``: ``OPENAI_API_KEY``; keyless local servers get a placeholder).
        temperature, timeout_s, max_retries, max_tokens: per-call behaviour.
        deadline_s: total LLM seconds this object may spend (one command).
        cache: optional response cache.
        merge_system: put system text into the first user turn (chat formats that drop system
            messages, such as the local Gemma server's).
        redact_pii: replace phone numbers, e-mails, ID and card numbers and addresses with
            placeholders before sending, and put them back into the answer (retrieval/pii.py).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float = 0.0,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        max_tokens: int = 512,
        deadline_s: float = 120.0,
        cache: ResponseCache | None = None,
        merge_system: bool = False,
        provider: str = "openai",
        sleep: Callable[[float], None] = time.sleep,
        redact_pii: bool = False,
    ) -> None:
        """Configure the model; the HTTP client is created lazily on first use."""
        self.name = model
        self.redact_pii = redact_pii
        self.provider = provider
        self.base_url = base_url
        self.endpoint = base_url or "https://api.openai.com/v1"
        self._api_key = api_key
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        self.deadline_at = time.monotonic() + deadline_s
        self.cache = cache
        self.merge_system = merge_system
        self.usage = Usage()
        self.unsupported: set[str] = set()  # structured-output modes this endpoint refused
        self.supported: set[str] = set()  # modes that answered
        # langchain sends max_completion_tokens; servers behind a custom base URL (llama.cpp,
        # DeepSeek, DashScope, Ollama) honour the classic max_tokens, and llama.cpp otherwise
        # generates to the context limit. OpenAI itself gets only the new field.
        self.send_classic_max_tokens = base_url is not None and "api.openai.com" not in base_url
        # Some servers (llama-cpp-python's) reject tool-role messages or assistant tool calls with
        # null content; once seen, tool exchanges are sent as plain text turns instead.
        self.flatten_tool_messages = False
        self.tool_turns_ok = False
        self._sleep = sleep
        self._clients: dict[float, Any] = {}

    def _client(self, timeout: float) -> Any:
        timeout = round(timeout, 1)
        if timeout not in self._clients:
            import os

            from langchain_openai import ChatOpenAI

            key = self._api_key or os.environ.get("OPENAI_API_KEY") or "not-needed"
            self._clients[timeout] = ChatOpenAI(
                model=self.name,
                base_url=self.base_url,
                api_key=key,
                temperature=self.temperature,
                timeout=timeout,
                max_retries=0,
                max_tokens=self.max_tokens,
            )
        return self._clients[timeout]

    def _lc_messages(self, messages: Sequence[Message]) -> list[Any]:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

        msgs = list(messages)
        if self.merge_system and msgs and msgs[0].role == "system":
            system = msgs.pop(0).content
            head = msgs[0] if msgs else None
            if head is not None and head.role == "user":
                msgs[0] = msgs[0].model_copy(update={"content": system + "\n\n" + msgs[0].content})
            else:
                msgs.insert(0, Message(role="user", content=system))
        out: list[Any] = []
        for m in msgs:
            if m.role == "system":
                out.append(SystemMessage(m.content))
            elif m.role == "user":
                out.append(HumanMessage(m.content))
            elif m.role == "assistant":
                out.append(
                    AIMessage(
                        m.content,
                        tool_calls=[
                            {"id": c.id, "name": c.name, "args": c.args, "type": "tool_call"} for c in m.tool_calls
                        ],
                    )
                )
            else:
                out.append(ToolMessage(m.content, tool_call_id=m.tool_call_id or ""))
        return out

    def complete(self, req: ChatRequest) -> ChatResult:
        """Answer one request, with cache, breaker, deadline and transport retries."""
        if not self.redact_pii:
            return self._complete(req)
        redactor = Redactor()
        msgs = [m.model_copy(update={"content": redactor.redact(m.content)}) for m in req.messages]
        result = self._complete(req.model_copy(update={"messages": msgs}))
        return result.model_copy(
            update={
                "content": redactor.restore(result.content),
                "tool_calls": [
                    c.model_copy(update={"args": _restore_args(c.args, redactor)}) for c in result.tool_calls
                ],
            }
        )

    def _complete(self, req: ChatRequest) -> ChatResult:
        key = None
        if self.cache is not None:
            key = ResponseCache.key(self.name, self.endpoint, req, self.temperature)
            hit = self.cache.get(key)
            if hit is not None:
                self.usage.add(hit.usage)
                return hit
        has_tool_turns = any(m.role == "tool" or m.tool_calls for m in req.messages)
        probing = has_tool_turns and not (self.tool_turns_ok or self.flatten_tool_messages)
        try:
            if self.flatten_tool_messages and has_tool_turns:
                result = self._call_with_retries(self._flattened(req))
            else:
                result = self._call_with_retries(req.model_copy(update={"probe": True}) if probing else req)
                self.tool_turns_ok = self.tool_turns_ok or has_tool_turns
        except ProviderError as exc:
            if not probing or exc.status not in (400, 422, 500):
                raise
            self.flatten_tool_messages = True
            result = self._call_with_retries(self._flattened(req))
        self.usage.add(result.usage)
        if self.cache is not None and key is not None:
            self.cache.put(key, result)
        return result

    @staticmethod
    def _flattened(req: ChatRequest) -> ChatRequest:
        """The request with tool calls and results written as ordinary assistant/user turns."""
        msgs: list[Message] = []
        for m in req.messages:
            if m.role == "assistant" and m.tool_calls:
                calls = ", ".join(f"{c.name}({json.dumps(c.args, ensure_ascii=False)})" for c in m.tool_calls)
                msgs.append(
                    Message(role="assistant", content=(m.content + "\n" if m.content else "") + f"Calling {calls}")
                )
            elif m.role == "tool":
                msgs.append(Message(role="user", content=f"Tool result ({m.tool_call_id}): {m.content}"))
            else:
                msgs.append(m)
        return req.model_copy(update={"messages": msgs})

    def _call_with_retries(self, req: ChatRequest) -> ChatResult:
        from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

        breaker = breaker_for(self.endpoint)

        def should_retry(exc: BaseException) -> bool:
            if isinstance(exc, CircuitOpenError) or not _is_retryable(exc):
                return False
            return not (req.probe and (_status_of(exc) or 0) >= 500)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            delay = _retry_after(exc) if exc else None
            if delay is None:
                delay = min(8.0, 0.5 * 2 ** (state.attempt_number - 1)) * random.uniform(0.5, 1.0)
            remaining = self.deadline_at - time.monotonic()
            if delay >= remaining:
                raise DeadlineExceeded(f"LLM deadline reached while waiting {delay:.1f} s to retry", retryable=False)
            return delay

        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait,
            retry=retry_if_exception(should_retry),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    breaker.check(self.endpoint)
                    remaining = self.deadline_at - time.monotonic()
                    if remaining <= 0.05:
                        raise DeadlineExceeded("LLM deadline for this command is spent", retryable=False)
                    try:
                        result = self._call_once(req, min(self.timeout_s, remaining))
                    except Exception as exc:
                        breaker.record(ok=not _is_retryable(exc))
                        raise
                    breaker.record(ok=True)
                    return result
        except (ProviderError, OutputValidationError):
            raise
        except Exception as exc:
            status = _status_of(exc)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ProviderError(
                f"LLM call to {self.endpoint} failed: {first}", status=status, retryable=_is_retryable(exc)
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _call_once(self, req: ChatRequest, timeout: float) -> ChatResult:
        kwargs: dict[str, Any] = {}
        if req.tools:
            kwargs["tools"] = [t.openai() for t in req.tools]
            if req.tool_choice is not None:
                kwargs["tool_choice"] = req.tool_choice
        if req.response_format is not None:
            kwargs["response_format"] = req.response_format
        limit = req.max_tokens or self.max_tokens
        kwargs["max_tokens"] = limit
        if self.send_classic_max_tokens:
            kwargs["extra_body"] = {"max_tokens": limit}
        started = time.perf_counter()
        msg = self._client(timeout).invoke(self._lc_messages(req.messages), **kwargs)
        meta = getattr(msg, "usage_metadata", None) or {}
        content = msg.content if isinstance(msg.content, str) else json.dumps(msg.content, ensure_ascii=False)
        calls = [
            ToolCall(id=c.get("id") or f"call_{i}", name=c["name"], args=c.get("args") or {})
            for i, c in enumerate(getattr(msg, "tool_calls", []) or [])
        ]
        return ChatResult(
            content=content,
            tool_calls=calls,
            model=self.name,
            latency_s=round(time.perf_counter() - started, 3),
            usage=Usage(
                calls=1, input_tokens=int(meta.get("input_tokens", 0)), output_tokens=int(meta.get("output_tokens", 0))
            ),
        )


# --------------------------------------------------------------------------- fake


class FakeChatModel:
    """Queued canned replies; records every request. For tests and ``--llm fake``."""

    def __init__(self, replies: Sequence[ChatResult | str | Exception] = (), name: str = "fake") -> None:
        """Queue replies (a string is a plain text answer; an exception is raised when reached)."""
        self.name = name
        self.usage = Usage()
        self.requests: list[ChatRequest] = []
        self._queue: list[ChatResult | str | Exception] = list(replies)

    def enqueue(self, *replies: ChatResult | str | Exception) -> FakeChatModel:
        """Add replies to the queue."""
        self._queue.extend(replies)
        return self

    def complete(self, req: ChatRequest) -> ChatResult:
        """Pop the next reply."""
        self.requests.append(req)
        if not self._queue:
            raise UnexpectedModelCall(f"FakeChatModel got call {len(self.requests)} with nothing queued")
        reply = self._queue.pop(0)
        if isinstance(reply, Exception):
            raise reply
        result = reply if isinstance(reply, ChatResult) else ChatResult(content=reply, model=self.name)
        result = result.model_copy(
            update={
                "usage": Usage(
                    calls=1, input_tokens=result.usage.input_tokens, output_tokens=result.usage.output_tokens
                )
            }
        )
        self.usage.add(result.usage)
        return result

    def assert_consumed(self) -> None:
        """Fail when replies are left over."""
        if self._queue:
            raise UnconsumedModelSteps(f"{len(self._queue)} queued replies were never used")


# --------------------------------------------------------------------------- structured output


class Structured(BaseModel, Generic[T]):
    """A validated structured answer (an instance of the schema asked for) and how it was obtained."""

    value: T
    mode: Mode
    attempts: int
    prompt_version: str | None
    usage: Usage


def _extract_json(text: str) -> str:
    """The JSON object in an answer (models wrap it in code fences or prose)."""
    s = text.strip()
    if s.startswith("```"):
        s = s.split("\n", 1)[1] if "\n" in s else s[3:]
        s = s.rsplit("```", 1)[0]
    start, end = s.find("{"), s.rfind("}")
    return s[start : end + 1] if start != -1 and end > start else s


def _request_for(
    mode: Mode, messages: list[Message], schema: type[BaseModel], req_base: dict[str, Any], plain_json: bool
) -> ChatRequest:
    js = schema.model_json_schema()
    name = schema.__name__
    if mode == "json_schema":
        return ChatRequest(
            messages=messages,
            response_format={"type": "json_schema", "json_schema": {"name": name, "schema": js, "strict": False}},
            **req_base,
        )
    if mode == "function_calling":
        tool = ToolSpec(name=name, description=schema.__doc__ or f"Return a {name}.", parameters=js)
        return ChatRequest(
            messages=messages, tools=[tool], tool_choice={"type": "function", "function": {"name": name}}, **req_base
        )
    fmt: dict[str, Any] = {"type": "json_object"} if plain_json else {"type": "json_object", "schema": js}
    return ChatRequest(messages=messages, response_format=fmt, **req_base)


def complete_structured(
    model: ChatModel,
    prompt: str | list[Message],
    schema: type[T],
    *,
    prompt_version: str | None = None,
    max_reasks: int = 2,
    max_tokens: int | None = None,
) -> Structured[T]:
    """Ask for an answer that validates as ``schema``.

    Modes are tried in order json_schema -> function calling -> JSON mode, skipping those the
    endpoint already refused (HTTP 400/404/422/5xx on a probe). An answer that does not validate
    is re-asked up to ``max_reasks`` times with the pydantic error quoted.

    Raises:
        OutputValidationError: no valid answer; callers fall back to their no-LLM path.
        ProviderError: the endpoint itself failed (after transport retries).
    """
    messages = [Message(role="user", content=prompt)] if isinstance(prompt, str) else list(prompt)
    unsupported: set[str] = getattr(model, "unsupported", set())
    usage = Usage()
    base: dict[str, Any] = {"prompt_version": prompt_version, "max_tokens": max_tokens}
    last_raw: str | None = None
    attempts = 0
    for mode in [m for m in MODES if m not in unsupported]:
        plain_json = f"{mode}:plain" in unsupported
        convo = list(messages)
        for _reask in range(max_reasks + 1):
            req = _request_for(mode, convo, schema, base, plain_json)
            if mode not in getattr(model, "supported", set()):
                req.probe = True  # an unsupported mode should fail fast, not be retried
            try:
                result = model.complete(req)
            except ProviderError as exc:
                if exc.status in (400, 404, 405, 415, 422, 500, 501) and not isinstance(exc, CircuitOpenError):
                    if mode == "json_mode" and not plain_json:
                        unsupported.add("json_mode:plain")  # retry JSON mode without the schema key
                        plain_json = True
                        continue
                    unsupported.add(mode)
                    break
                raise
            attempts += 1
            usage.add(result.usage)
            supported: set[str] = getattr(model, "supported", set())
            supported.add(mode)
            raw = (
                json.dumps(result.tool_calls[0].args)
                if mode == "function_calling" and result.tool_calls
                else result.content
            )
            last_raw = raw
            try:
                value = schema.model_validate_json(_extract_json(raw))
            except (ValidationError, ValueError) as exc:
                err = str(exc).splitlines()
                detail = "; ".join(line.strip() for line in err[:6])
                convo = convo + [
                    Message(role="assistant", content=raw[:2000]),
                    Message(
                        role="user",
                        content=f"That answer is invalid: {detail}. Reply again with only a JSON "
                        f"object that matches the schema.",
                    ),
                ]
                continue
            return Structured[T](value=value, mode=mode, attempts=attempts, prompt_version=prompt_version, usage=usage)
        else:
            break  # re-asks exhausted in a working mode: another mode will not do better
    raise OutputValidationError(
        f"no valid {schema.__name__} after {attempts} answers"
        + (f" (modes refused: {', '.join(sorted(m for m in unsupported if ':' not in m))})" if unsupported else ""),
        attempts=attempts,
        raw=last_raw,
    )


# --------------------------------------------------------------------------- tools


@dataclass
class Tool:
    """A callable tool with a pydantic input model."""

    name: str
    description: str
    input_model: type[BaseModel]
    fn: Callable[[Any], Any]

    def spec(self) -> ToolSpec:
        """The spec sent to the model."""
        return ToolSpec(name=self.name, description=self.description, parameters=self.input_model.model_json_schema())


class ToolTrace(BaseModel):
    """One executed tool call."""

    tool: str
    args: dict[str, Any]
    result: Any = None
    error: str | None = None


class ToolRun(BaseModel):
    """The outcome of a tool loop."""

    answer: str
    trace: list[ToolTrace]
    steps: int
    finished: bool = Field(description="False when the step limit was hit before a final answer.")
    usage: Usage
