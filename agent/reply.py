"""Reply drafts for customer-service agents, grounded in past resolutions.

Evidence: the most similar past complaints that were *resolved*, with their resolutions (reply
text, action, compensation). Their ids are the draft's citations.

No LLM: the best same-language resolution's reply is adapted: its greeting becomes this
customer's, the order number is named, the customer's own words are acknowledged, and names of
other customers' products and carriers are replaced. With an LLM: a versioned prompt, structured
output, then the same post-checks; a draft that fails them is re-asked once, then replaced by the
template draft.

Post-checks on every draft (either path): each promise (refund, compensation, replacement,
amount, deadline) must appear in a cited resolution; no request for passwords, verification codes
or card numbers; the language is the customer's. ``needs_review`` is set, with reasons, when
evidence is thin, urgency is critical, the customer threatens legal, regulator or media action,
or the text carries instructions aimed at the assistant.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.classify import Classification, Classifier
from agent.llm import ChatModel, Message, complete_structured
from agent.prompts import fence, load_prompt
from agent.safety import strip_instructions
from retrieval.records import detect_language
from retrieval.search import Searcher, SearchFilters
from retrieval.store import Store
from retrieval.taxonomy import Taxonomy

Lang = Literal["zh", "en"]
MIN_SIMILARITY = 0.3  # below this a past case is not evidence for this complaint
MAX_EVIDENCE = 3

PROMISE_WORDS: dict[str, list[str]] = {
    "refund": ["退款", "退钱", "退还", "退回", "返还", "refund", "money back", "reimburse"],
    "compensation": ["补偿", "赔偿", "赔付", "优惠券", "代金券", "红包", "积分", "补差价", "免单", "无门槛券",
                     "compensat", "voucher", "coupon", "store credit", "gift card", "credit"],
    "replacement": ["换新", "补发", "重新发货", "换货", "重发", "replacement", "replace", "resend", "reship", "new one"],
}  # fmt: skip
_AMOUNT = re.compile(r"(?:[¥￥$]|rmb|usd)\s?\d+(?:\.\d+)?|\d+(?:\.\d+)?\s?(?:元|块钱|块|yuan|rmb|dollars?)", re.I)
_DEADLINE = re.compile(r"\d+(?:\s?[-~到至]\s?\d+)?\s?(?:个)?(?:工作日|天|小时|分钟|business days?|working days?|days?|hours?)"
                       r"|今天|明天|今日|当天|马上到账|立即到账|tomorrow|today|right away", re.I)  # fmt: skip
_SECRETS = re.compile(r"密码|验证码|支付密码|银行卡号|卡号|信用卡|安全码|cvv|password|passcode|verification code|"
                      r"one[- ]time code|card number|security code|pin\b", re.I)  # fmt: skip
THREATS = re.compile(r"12315|消协|消费者协会|工商|市场监管|监管部门|起诉|律师|法院|仲裁|报警|曝光|媒体|记者|微博|抖音|小红书|"
                     r"lawyer|attorney|\bsue\b|lawsuit|legal action|court|regulator|consumer protection|\bbbb\b|chargeback|"
                     r"journalist|the press|media|go public|social media", re.I)  # fmt: skip
_GREETING_ZH = re.compile(r"^[^，,。！!]{0,12}?(?:您好|你好|亲)[，,！!]?\s*")
_GREETING_EN = re.compile(r"^(?:hi|hello|dear|hey)\b[^,，!]{0,40}[,，!]\s*", re.I)


class Evidence(BaseModel):
    """One past resolution the draft may rely on."""

    resolution_id: str
    feedback_id: str
    similarity: float
    outcome: str
    action: str
    reply: str
    compensation: str | None
    feedback_text: str
    language: str


class Promise(BaseModel):
    """Something the draft commits to, and the cited resolution that supports it."""

    kind: Literal["refund", "compensation", "replacement", "amount", "deadline"]
    text: str
    supported_by: str | None = Field(description="Resolution id whose text holds it; null when none does.")


class ReplyDraft(BaseModel):
    """What `reply` returns."""

    reply: str
    language: Lang
    citations: list[str] = Field(description="Resolution ids the draft is grounded in.")
    needs_review: bool
    reasons: list[str]
    promises: list[Promise]
    policy_violations: list[str] = Field(description="Problems the post-check found in the final draft (always empty "
                                                     "for a returned draft; a failing LLM draft is replaced).")
    classification: dict[str, Any]
    evidence: list[Evidence]
    path: Literal["template", "llm"]
    fallback_reason: str | None = None
    prompt_version: str | None = None


class _LLMDraft(BaseModel):
    """The model's structured answer."""

    reply: str = Field(description="The reply to send, in the customer's language.")
    citations: list[str] = Field(description="Ids of the past resolutions the reply relies on.")
    needs_review: bool
    reasons: list[str] = Field(default_factory=list)


def language_of(text: str) -> Lang:
    """The customer's language for the reply: zh when any Chinese is present and dominant."""
    lang = detect_language(text)
    return "en" if lang == "en" else "zh"


# --------------------------------------------------------------------------- checks


def find_promises(draft: str) -> list[tuple[str, str]]:
    """(kind, matched text) of every promise-like phrase in a draft."""
    found: list[tuple[str, str]] = []
    low = draft.lower()
    for kind, words in PROMISE_WORDS.items():
        for w in words:
            if w in low:
                found.append((kind, w))
    found += [("amount", m.group(0)) for m in _AMOUNT.finditer(draft)]
    found += [("deadline", m.group(0)) for m in _DEADLINE.finditer(draft)]
    return found


def _digits(s: str) -> str:
    return "".join(re.findall(r"\d+(?:\.\d+)?", s))


def check_draft(draft: str, evidence: list[Evidence], cited: list[str], lang: Lang) -> tuple[list[Promise], list[str]]:
    """The draft's promises (with support) and its policy violations."""
    by_id = {e.resolution_id: e for e in evidence}
    own = draft
    draft = re.sub(r"“[^”]*”|\"[^\"]*\"|「[^」]*」", " ", draft)  # the customer's own words, quoted, promise nothing
    sources = [(rid, f"{by_id[rid].reply}\n{by_id[rid].action}\n{by_id[rid].compensation or ''}") for rid in cited if rid in by_id]
    promises: list[Promise] = []
    problems: list[str] = []
    for kind, text in find_promises(draft):
        support = None
        for rid, src in sources:
            low = src.lower()
            if kind in PROMISE_WORDS and any(w in low for w in PROMISE_WORDS[kind]):
                support = rid
            elif kind == "amount" and any(_digits(m.group(0)) == _digits(text) for m in _AMOUNT.finditer(src)):
                support = rid
            elif kind == "deadline" and (text.lower() in low or (_digits(text) and any(
                    _digits(m.group(0)) == _digits(text) for m in _DEADLINE.finditer(src)))):  # fmt: skip
                support = rid
            if support:
                break
        promises.append(Promise(kind=kind, text=text, supported_by=support))  # type: ignore[arg-type]
        if support is None:
            problems.append(f"promises {kind} '{text}' that no cited resolution contains")
    if m := _SECRETS.search(draft):
        problems.append(f"asks for a secret ('{m.group(0)}')")
    unknown = [c for c in cited if c not in by_id]
    if unknown:
        problems.append("cites unknown ids: " + ", ".join(unknown[:3]))
    if language_of(own) != lang:
        problems.append(f"written in the wrong language (customer wrote {lang})")
    return promises, problems


# --------------------------------------------------------------------------- drafting


class Replier:
    """Drafts replies from one store's resolution history."""

    def __init__(self, store: Store, taxonomy: Taxonomy, model: ChatModel | None = None,
                 classifier: Classifier | None = None) -> None:  # fmt: skip
        """Bind the store, taxonomy, optional chat model and (shared) classifier."""
        self.store = store
        self.taxonomy = taxonomy
        self.model = model
        self.classifier = classifier or Classifier(store, taxonomy)
        self._facet_values: dict[str, list[str]] = {}

    def evidence(self, text: str, category: str | None, lang: Lang, k: int = MAX_EVIDENCE,
                 critical: bool = False) -> list[Evidence]:  # fmt: skip
        """Resolved past cases of the category most similar to ``text``; same language first, and
        safety-critical cases answer critical complaints only (and vice versa)."""
        # past complaints of the same category: a coupon reply must not answer a leaking cup
        filters = SearchFilters(category=category) if category else None
        hits = Searcher(self.store).search(text, k=40, kind="feedback", filters=filters, with_links=True)
        found: list[tuple[tuple[int, int, float], Evidence]] = []
        for rank, h in enumerate(hits):
            sim = h.similarity or 0.0
            for res in h.resolutions:
                if res["outcome"] != "resolved" or sim < MIN_SIMILARITY:
                    continue
                if strip_instructions(f"{res['reply']}\n{res['action']}\n{res.get('compensation') or ''}")[1]:
                    continue  # a resolution record carrying instructions is not evidence to copy from
                ev = Evidence(resolution_id=res["id"], feedback_id=h.id, similarity=round(sim, 4), outcome=res["outcome"],
                              action=res["action"], reply=res["reply"], compensation=res.get("compensation"),
                              feedback_text=h.text, language=language_of(res["reply"]))  # fmt: skip
                key = (int(ev.language != lang), int((h.record.get("urgency") == "critical") != critical), rank)
                found.append((key, ev))  # type: ignore[arg-type]
        found.sort(key=lambda p: p[0])
        return [ev for _, ev in found[:k]]

    def draft(self, text: str, *, customer: str | None = None, order_id: str | None = None) -> ReplyDraft:
        """A reply draft for one customer message."""
        text = text.strip()
        if not text:
            raise ValueError("the customer's text is empty")
        lang = language_of(text)
        clf: Classification = self.classifier.classify([text])[0]
        ev = self.evidence(text, clf.category, lang, critical=clf.urgency == "critical")
        reasons = self._review_reasons(text, clf, ev, lang)
        draft, cited = self._template(text, clf, ev, lang, customer, order_id)
        promises, problems = check_draft(draft, ev, cited, lang)
        if problems:  # a template carried something its own citations lack: drop to the holding reply
            draft, cited = _holding(lang, customer, order_id, _issue(text, lang)), []
            promises, problems = check_draft(draft, ev, cited, lang)
            reasons.append("the best past reply could not be adapted safely" if lang == "en" else "最相近的历史回复无法安全套用")
        result = ReplyDraft(reply=draft, language=lang, citations=cited, needs_review=bool(reasons), reasons=reasons,
                            promises=promises, policy_violations=problems, classification=clf.model_dump(mode="json"),
                            evidence=ev, path="template")  # fmt: skip
        if self.model is not None and ev:
            self._llm(result, text, customer, order_id)
        return result

    def _review_reasons(self, text: str, clf: Classification, ev: list[Evidence], lang: Lang) -> list[str]:
        zh = lang == "zh"
        reasons: list[str] = []
        thanks = clf.sentiment == "positive" and clf.category in ("praise", "suggestion")
        if not ev and not thanks:
            reasons.append("证据不足：没有足够相似且已解决的历史案例" if zh else "thin evidence: no similar resolved past case")
        elif not thanks and not any(e.language == lang for e in ev):
            reasons.append("没有同语言的历史回复可参考" if zh else "no past reply in the customer's language")
        if clf.urgency == "critical":
            reasons.append("紧急程度为 critical" if zh else "urgency is critical")
        if m := THREATS.search(text):
            reasons.append(f"客户提到法律/监管/媒体行动（“{m.group(0)}”）" if zh
                           else f"the customer threatens legal, regulator or media action ('{m.group(0)}')")  # fmt: skip
        if strip_instructions(text)[1]:
            reasons.append("文本中含有针对助手的指令，已按普通内容处理" if zh
                           else "the text contains instructions aimed at the assistant (treated as data)")  # fmt: skip
        return reasons

    def _template(self, text: str, clf: Classification, ev: list[Evidence], lang: Lang, customer: str | None,
                  order_id: str | None) -> tuple[str, list[str]]:  # fmt: skip
        same = [e for e in ev if e.language == lang]
        issue = _issue(text, lang)
        if clf.sentiment == "positive" and clf.category in ("praise", "suggestion"):
            return _thanks(lang, customer, clf.category), []
        if not same:
            return _holding(lang, customer, order_id, issue), []
        best = same[0]
        body = _strip_greeting(best.reply, lang)
        body = self._swap_names(body, best.feedback_id, text, lang)
        return _greeting(lang, customer) + _order_line(lang, order_id) + _ack(lang, issue) + body, [best.resolution_id]

    def _swap_names(self, body: str, source_feedback: str, text: str, lang: Lang) -> str:
        """Replace the past customer's product and carrier with this customer's (or a neutral word)."""
        src = self.store.records("feedback", [source_feedback]).get(source_feedback, {})
        for facet, neutral in (("product", {"zh": "商品", "en": "item"}), ("carrier", {"zh": "快递", "en": "carrier"})):
            old = src.get(facet)
            if not old or old not in body:
                continue
            mentioned = next((v for v in self._values(facet) if v in text), None)
            body = body.replace(old, mentioned or neutral[lang])
        return body

    def _values(self, facet: str) -> list[str]:
        """The store's values of a facet, longest first (so "智能保温杯 Pro" wins over "保温杯")."""
        if facet not in self._facet_values:
            self._facet_values[facet] = sorted(self.store.facet_values(facet), key=len, reverse=True)
        return self._facet_values[facet]

    def _llm(self, result: ReplyDraft, text: str, customer: str | None, order_id: str | None) -> None:
        from agent.errors import AgentError

        assert self.model is not None
        prompt = load_prompt("reply")
        evidence = [{"id": e.resolution_id, "past_complaint": e.feedback_text, "action": e.action, "reply": e.reply,
                     "compensation": e.compensation} for e in result.evidence]  # fmt: skip
        content = prompt.render(
            language="Chinese" if result.language == "zh" else "English",
            customer=customer or "-", order_id=order_id or "-",
            classification=f"{result.classification['category']} / {result.classification['sentiment']} / "
                           f"{result.classification['urgency']}",
            evidence=fence(json.dumps(evidence, ensure_ascii=False, indent=1), "past_resolutions"),
            message=fence(text, "customer_message"),
        )  # fmt: skip
        messages = [Message(role="user", content=content)]
        reason = None
        for _attempt in range(2):
            try:
                got = complete_structured(self.model, messages, _LLMDraft, prompt_version=prompt.ref)
            except AgentError as exc:
                reason = f"LLM call failed: {exc}"
                break
            d: _LLMDraft = got.value
            cited = [c for c in d.citations if c in {e.resolution_id for e in result.evidence}]
            promises, problems = check_draft(d.reply, result.evidence, d.citations, result.language)
            if not cited:
                problems.append("cites no past resolution")
            if not problems:
                result.reply, result.citations, result.promises = d.reply.strip(), cited, promises
                result.needs_review = result.needs_review or d.needs_review
                result.reasons += [r for r in d.reasons if r and r not in result.reasons] if d.needs_review else []
                result.needs_review = bool(result.reasons) or d.needs_review
                result.path, result.prompt_version, result.fallback_reason = "llm", prompt.ref, None
                return
            reason = "; ".join(problems)
            messages = messages + [Message(role="assistant", content=d.model_dump_json()),
                                   Message(role="user", content="The draft was rejected: " + reason +
                                           ". Write it again following every rule.")]  # fmt: skip
        result.fallback_reason = reason


def _issue(text: str, lang: Lang) -> str:
    """The customer's own words, shortened: the first clause that says something."""
    clean, _ = strip_instructions(text)
    clean = " ".join((clean or text).split())
    parts = [p.strip() for p in re.split(r"[。！!？?\n]|(?<=[.;])\s", clean) if len(p.strip()) >= 4]
    first = parts[0] if parts else clean
    first = re.sub(r"^(?:你好|您好|亲|客服你好|hi|hello)[，,\s]*", "", first, flags=re.I)
    first = first.rstrip("，,。.!！?？;；~ ")
    limit = 40 if lang == "zh" else 90
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _greeting(lang: Lang, customer: str | None) -> str:
    if lang == "zh":
        return f"{customer}您好，" if customer else "您好，"
    return f"Hi {customer}, " if customer else "Hello, "


def _order_line(lang: Lang, order_id: str | None) -> str:
    if not order_id:
        return ""
    return f"关于您的订单 {order_id}，" if lang == "zh" else f"regarding your order {order_id}: "


def _ack(lang: Lang, issue: str) -> str:
    return f"您反馈的“{issue}”我们已经收到。" if lang == "zh" else f"thank you for telling us \"{issue}\". "


def _strip_greeting(reply: str, lang: Lang) -> str:
    body = (_GREETING_ZH if lang == "zh" else _GREETING_EN).sub("", reply.strip(), count=1)
    return body[:1].upper() + body[1:] if lang == "en" else body


def _holding(lang: Lang, customer: str | None, order_id: str | None, issue: str) -> str:
    """A reply that promises nothing: acknowledgement and a follow-up."""
    if lang == "zh":
        return (_greeting(lang, customer) + _order_line(lang, order_id) + _ack(lang, issue)
                + "非常抱歉给您带来不便，我们正在核实具体情况，核实后会第一时间联系您并给出处理方案。")  # fmt: skip
    return (_greeting(lang, customer) + _order_line(lang, order_id) + _ack(lang, issue)
            + "We are sorry for the trouble. We are looking into it and will come back to you with a solution as soon as we have checked.")  # fmt: skip


def _thanks(lang: Lang, customer: str | None, category: str) -> str:
    if lang == "zh":
        tail = "您的建议我们已转给相关团队评估。" if category == "suggestion" else "您的认可是对我们最大的鼓励。"
        return _greeting(lang, customer) + "感谢您的反馈！" + tail
    tail = "We have passed your suggestion to the team." if category == "suggestion" else "It means a lot to the team."
    return _greeting(lang, customer) + "thank you for your kind words! " + tail
