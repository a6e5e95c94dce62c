"""A chat model that answers any request by itself, from the request's own schemas (``--llm fake``).

Like pydantic-ai's ``TestModel``: a structured-output request gets the smallest JSON instance of
its schema (first enum value, minimum numbers, required fields only); a tool-calling request gets
one call of the forced (or first) tool with arguments filled the same way, and once tool results
are in the conversation, a final answer that quotes them. No network, no weights, deterministic.

So every LLM-backed path (classify, ask's plan, reply, root cause, the report summary) runs
end to end with ``--llm fake``: the request is built, sent, parsed and checked, and what the checks
reject shows as the fallback reason, exactly as with a real model that answers badly.
"""

from __future__ import annotations

import json
from typing import Any

from agent.llm import ChatRequest, ChatResult, ToolCall, Usage


class SchemaModel:
    """Fills any schema it is asked for; records every request."""

    def __init__(self, name: str = "schema-fake") -> None:
        """A fresh model with empty usage."""
        self.name = name
        self.usage = Usage()
        self.requests: list[ChatRequest] = []
        self.supported: set[str] = set()
        self.unsupported: set[str] = set()

    def complete(self, req: ChatRequest) -> ChatResult:
        """Answer ``req`` from its response format or its tools."""
        self.requests.append(req)
        self.usage.add(Usage(calls=1))
        fmt = req.response_format or {}
        if fmt.get("type") == "json_schema":
            return self._result(json.dumps(fill(fmt["json_schema"]["schema"]), ensure_ascii=False))
        if req.tools:
            last = req.messages[-1] if req.messages else None
            if last is not None and last.role == "tool":
                results = [m.content for m in req.messages if m.role == "tool"]
                return self._result("Tool results: " + " ".join(results))
            forced = req.tool_choice.get("function", {}).get("name") if isinstance(req.tool_choice, dict) else None
            tool = next((t for t in req.tools if t.name == forced), req.tools[0])
            call = ToolCall(id=f"call_{len(self.requests)}", name=tool.name, args=fill(tool.parameters))
            return self._result("", [call])
        if fmt.get("type") == "json_object" and "schema" in fmt:
            return self._result(json.dumps(fill(fmt["schema"]), ensure_ascii=False))
        return self._result("ok")

    def _result(self, content: str, calls: list[ToolCall] | None = None) -> ChatResult:
        return ChatResult(content=content, tool_calls=calls or [], model=self.name, usage=Usage(calls=1))


def fill(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """The smallest value that validates against a (pydantic-generated) JSON schema."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return fill(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return fill(options[0], defs)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {name: fill(props[name], defs) for name in schema.get("required", []) if name in props}
    if kind == "array":
        return [fill(schema.get("items", {}), defs) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return "x" * max(1, schema.get("minLength", 1))
    if kind == "integer":
        return int(schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1))
    if kind == "number":
        return float(schema.get("minimum", 0.0))
    if kind == "boolean":
        return False
    return None
