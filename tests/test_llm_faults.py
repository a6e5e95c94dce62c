"""Transport resilience against a scripted OpenAI-compatible server on loopback."""

from __future__ import annotations

import pytest

from agent.check import SentimentCheck
from agent.errors import CircuitOpenError, DeadlineExceeded, OutputValidationError, ProviderError
from agent.llm import ChatRequest, Message, OpenAIChatModel, complete_structured
from tests.llm_stub import Reply, StubLLM, completion

ASK = ChatRequest(messages=[Message(role="user", content="hi")])


def model(url: str, sleeps: list[float], **kw) -> OpenAIChatModel:
    kw.setdefault("timeout_s", 5.0)
    return OpenAIChatModel("stub", base_url=url, api_key="test-key", sleep=sleeps.append, **kw)


def test_429_honours_retry_after_then_succeeds() -> None:
    sleeps: list[float] = []
    with StubLLM(Reply(429, headers={"retry-after": "2"}), Reply(200, completion("fine"))) as stub:
        result = model(stub.url, sleeps).complete(ASK)
    assert result.content == "fine" and sleeps == [2.0] and len(stub.requests) == 2
    assert result.usage.input_tokens == 11 and result.usage.output_tokens == 5


def test_5xx_backs_off_exponentially_then_succeeds() -> None:
    sleeps: list[float] = []
    with StubLLM(Reply(500), Reply(503), Reply(502), Reply(200, completion("ok"))) as stub:
        m = model(stub.url, sleeps)
        assert m.complete(ASK).content == "ok"
    assert len(stub.requests) == 4 and len(sleeps) == 3
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0 and 1.0 <= sleeps[2] <= 2.0  # jittered doubling
    assert m.usage.calls == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    sleeps: list[float] = []
    with StubLLM(Reply(status)) as stub:
        with pytest.raises(ProviderError) as info:
            model(stub.url, sleeps).complete(ASK)
    assert info.value.status == status and not info.value.retryable
    assert len(stub.requests) == 1 and sleeps == []


def test_dead_endpoint_trips_the_breaker() -> None:
    sleeps: list[float] = []
    with StubLLM(Reply(500)) as stub:
        m = model(stub.url, sleeps, max_retries=3)
        with pytest.raises(ProviderError) as first:
            m.complete(ASK)
        assert first.value.status == 500 and len(stub.requests) == 4
        with pytest.raises(CircuitOpenError):  # 5th attempt fails and opens the circuit
            m.complete(ASK)
        n = len(stub.requests)
        with pytest.raises(CircuitOpenError, match="failed 5 times in a row"):
            m.complete(ASK)
        assert len(stub.requests) == n  # refused without a request


def test_slow_response_times_out_and_is_retried() -> None:
    sleeps: list[float] = []
    with StubLLM(Reply(200, completion("late"), delay=1.5), Reply(200, completion("quick"))) as stub:
        result = model(stub.url, sleeps, timeout_s=0.5).complete(ASK)
    assert result.content == "quick" and len(sleeps) == 1


def test_deadline_stops_retries() -> None:
    sleeps: list[float] = []
    with StubLLM(Reply(429, headers={"retry-after": "30"})) as stub:
        with pytest.raises(DeadlineExceeded):
            model(stub.url, sleeps, deadline_s=5).complete(ASK)
    assert len(stub.requests) == 1 and sleeps == []


def test_malformed_http_body_is_a_provider_error() -> None:
    with StubLLM(Reply(200, raw=b"<html>gateway</html>")) as stub:
        with pytest.raises(ProviderError):
            model(stub.url, []).complete(ASK)


def test_structured_output_falls_back_from_json_schema_to_function_calling() -> None:
    good = completion(None, tool_calls=[{"name": "SentimentCheck", "args": {"sentiment": "negative"}}])
    with StubLLM(Reply(500), Reply(200, good)) as stub:
        m = model(stub.url, [])
        got = complete_structured(m, "label this", SentimentCheck, prompt_version="check@v1")
    assert got.mode == "function_calling" and got.value.sentiment == "negative"
    assert len(stub.requests) == 2  # the json_schema probe is not retried on 500
    assert stub.requests[0]["response_format"]["type"] == "json_schema"
    assert stub.requests[1]["tool_choice"]["function"]["name"] == "SentimentCheck"
    assert "json_schema" in m.unsupported


def test_malformed_json_answer_is_re_asked_then_fails_typed() -> None:
    with StubLLM(
        Reply(200, completion('{"sentiment": "furious"}')),
        Reply(200, completion("not json at all")),
        Reply(200, completion('{"sentiment": "angry"}')),
    ) as stub:
        with pytest.raises(OutputValidationError) as info:
            complete_structured(model(stub.url, []), "label", SentimentCheck, max_reasks=2)
    assert info.value.attempts == 3 and info.value.raw == '{"sentiment": "angry"}'
    reask = stub.requests[1]["messages"][-1]["content"]
    assert "invalid" in reask and "furious" in stub.requests[1]["messages"][-2]["content"]


def test_re_ask_recovers() -> None:
    with StubLLM(
        Reply(200, completion('```json\n{"sentiment": "meh"}\n```')),
        Reply(200, completion('Sure! {"sentiment": "neutral"}')),
    ) as stub:
        got = complete_structured(model(stub.url, []), "label", SentimentCheck)
    assert got.value.sentiment == "neutral" and got.attempts == 2 and got.mode == "json_schema"


def test_token_cap_reaches_compatible_servers_in_both_spellings() -> None:
    with StubLLM(Reply(200, completion("x"))) as stub:
        model(stub.url, []).complete(ASK.model_copy(update={"max_tokens": 8}))
    assert stub.requests[0]["max_completion_tokens"] == 8 and stub.requests[0]["max_tokens"] == 8


def test_servers_that_reject_tool_messages_get_plain_turns() -> None:
    from agent.llm import ToolCall

    convo = [
        Message(role="user", content="how many?"),
        Message(role="assistant", tool_calls=[ToolCall(id="c1", name="count", args={"category": "a"})]),
        Message(role="tool", content='{"count": 3}', tool_call_id="c1"),
    ]
    with StubLLM(Reply(500), Reply(200, completion("3 records"))) as stub:
        m = model(stub.url, [])
        assert m.complete(ChatRequest(messages=convo)).content == "3 records"
    roles = [msg["role"] for msg in stub.requests[1]["messages"]]
    assert roles == ["user", "assistant", "user"] and m.flatten_tool_messages
    assert 'Calling count({"category": "a"})' in stub.requests[1]["messages"][1]["content"]
    assert len(stub.requests) == 2  # the 500 on a tool exchange is not retried blindly first...
