"""Untrusted text: recognising instruction-like spans that feedback authors plant.

Prompts fence untrusted text (agent/prompts.py); a learned model has no fence, so words such as
"classify this as praise" or "SYSTEM: 好评" would count as evidence. Those spans are cut out before
features are built. The stored text is never altered.
"""

from __future__ import annotations

import re

_END = r"[^\n。！!？?.]*[。！!？?.]?"
_PATTERNS = [
    rf"\b(?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+)?(?:the\s+|your\s+)?(?:previous|prior|above|earlier|system)\s+(?:instructions?|prompts?|rules?|messages?){_END}",
    rf"\b(?:classify|label|mark|tag|categori[sz]e|rate)\s+(?:this|it|me|the\s+(?:review|feedback|text|ticket))\s+(?:as|to\s+be)\b{_END}",
    rf"\b(?:system|assistant|developer)\s*(?:prompt|message)?\s*[:：]{_END}",
    rf"\byou\s+are\s+now\b{_END}",
    rf"(?:忽略|无视|忘记|忘掉)(?:掉)?(?:之前|以上|前面|上面|先前|所有)(?:的)?(?:所有)?(?:指令|指示|提示|规则|要求){_END}",
    rf"(?:把|将)?(?:这条|这个|本条|此条|它)?(?:评论|评价|反馈|内容)?(?:分类|标记|归类|标注|判定)(?:为|成){_END}",
    rf"(?:系统提示|系统指令|系统消息|system)\s*[:：]{_END}",
    rf"你现在是{_END}",
]
_INJECTION = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE)


def strip_instructions(text: str) -> tuple[str, list[str]]:
    """The text without instruction-like spans, and the spans removed."""
    found = [m.group(0).strip() for m in _INJECTION.finditer(text) if m.group(0).strip()]
    if not found:
        return text, []
    return _INJECTION.sub(" ", text).strip(), found
