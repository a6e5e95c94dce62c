"""Reply drafts for customer-service agents, grounded in past resolutions.

Evidence: the most similar past complaints that were *resolved*, with their resolutions (reply
text, action, compensation). Their ids are the draft's citations.

No LLM: the draft is composed, never copied. Its parts come from ``agent/data/reply.yaml``: an
acknowledgement fitted to the situation (injury, safety, money, lost, damage, delay, service,
app...), the next steps phrased from the *kinds* of action the cited resolutions took (refund,
replacement, trace the parcel...) as future steps or conditional offers, what we need from the
customer, and a closing. No text of another customer's record — past replies, names, phone
numbers, addresses, staff contacts — reaches a draft, and nothing is stated as already done.
With an LLM: a versioned prompt over the same evidence (personal data redacted), structured
output, then the same post-checks; a draft that fails them is re-asked once, then replaced by
the composed draft.

Post-checks on every draft (either path): each promise (refund, compensation, replacement,
amount, deadline) must appear in a cited resolution; nothing is claimed as already done; no
personal data that is not this customer's own; no request for passwords, verification codes or
card numbers; the language is the customer's. ``needs_review`` is set, with reasons, when
evidence is thin, urgency is critical, someone was hurt or endangered, the customer threatens
legal, regulator, media or chargeback action, or the text carries instructions aimed at the
assistant.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.classify import Classification, Classifier
from agent.grounded import output_language, structured
from agent.llm import ChatModel, Message
from agent.prompts import fence, load_data, load_prompt
from agent.safety import strip_instructions
from agent.wording import say
from retrieval.pii import EN_NAME, ZH_NAME, Redactor
from retrieval.search import Searcher, SearchFilters
from retrieval.store import Store
from retrieval.taxonomy import Taxonomy

Lang = Literal["zh", "en"]
MIN_SIMILARITY = 0.3  # below this a past case is not evidence (word-hash vectors; each embedding sets its own)
MAX_EVIDENCE = 5  # candidates the next steps are chosen from (the situation picks among them)

PROMISE_WORDS: dict[str, list[str]] = {
    "refund": ["退款", "退钱", "退还", "退回", "返还", "refund", "money back", "reimburse"],
    "compensation": [
        "补偿",
        "赔偿",
        "赔付",
        "优惠券",
        "代金券",
        "红包",
        "积分",
        "补差价",
        "免单",
        "无门槛券",
        "compensat",
        "voucher",
        "coupon",
        "store credit",
        "gift card",
        "credit",
    ],
    "replacement": [
        "换新",
        "补发",
        "重新发货",
        "换货",
        "重发",
        "更换",
        "replacement",
        "replace",
        "resend",
        "re-sent",
        "resent",
        "reship",
        "new one",
        "exchange",
    ],
}
_AMOUNT = re.compile(r"(?:[¥￥$]|rmb|usd)\s?\d+(?:\.\d+)?|\d+(?:\.\d+)?\s?(?:元|块钱|块|yuan|rmb|dollars?)", re.I)
_DEADLINE = re.compile(
    r"\d+(?:\s?[-~到至]\s?\d+)?\s?(?:个)?(?:工作日|天|小时|分钟|business days?|working days?|days?|hours?)"
    r"|今天|明天|今日|当天|马上到账|立即到账|tomorrow|today|right away",
    re.I,
)
_SECRETS = re.compile(
    r"密码|验证码|支付密码|银行卡号|卡号|信用卡|安全码|cvv|password|passcode|verification code|"
    r"one[- ]time code|card number|security code|pin\b",
    re.I,
)
THREATS = re.compile(
    r"12315|消协|消费者协会|工商|市场监管|监管部门|起诉|律师|法院|仲裁|报警|曝光|媒体|记者|微博|抖音|小红书|"
    r"拒付|银行争议|信用卡争议|申请争议|"
    r"lawyer|attorney|\bsue\b|lawsuit|legal action|court|regulator|consumer protection|\bbbb\b|chargeback|"
    r"dispute (?:the|this|it)|bank dispute|journalist|the press|media|go public|social media",
    re.I,
)
# Statements that something was already done for this customer. A draft may only offer or plan:
# other customers' outcomes are not this customer's.
_DONE = re.compile(
    r"(?:已经?|业已)(?:为您|给您|帮您|向您|替您)?(?:办理|安排|补发|重发|退款|退回|退还|发放|联系|提交|处理|加急|寄出|发出|"
    r"发货|补偿|更换|换货|取消|关闭|升级|核实|确认|派送|申请|开通|赔付|返还)|"
    r"\bwe(?:'ve| have)\s+(?:already\s+)?(?:refunded|sent|re-?sent|issued|arranged|opened|processed|contacted|"
    r"escalated|credited|shipped|replaced|cancell?ed|filed|reported|expedited|asked|approved|reached out)\b|"
    r"\b(?:has|have) been\s+(?:refunded|sent|issued|shipped|processed|credited|replaced|approved|dispatched)\b",
    re.I,
)


def evidence_threshold(store: Store) -> float:
    """The similarity a past case needs to be evidence, for the store's embedding."""
    return float(getattr(store.embedder, "evidence_threshold", MIN_SIMILARITY))


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
    marked: bool = Field(False, description="An agent marked this case the right evidence for a message like this one.")


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
    policy_violations: list[str] = Field(
        description="Problems the post-check found in the final draft (always empty "
        "for a returned draft; a failing LLM draft is replaced)."
    )
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


def foreign_personal_data(draft: str, own: str) -> list[str]:
    """Personal data in ``draft`` (phones, e-mails, IDs, cards, addresses, names with a title)
    that ``own`` — the customer's message, name and order number — does not hold."""
    found: list[str] = []
    redactor = Redactor()
    redactor.redact(draft)
    for token, value in redactor.mapping.items():
        if value not in own:
            found.append(token.strip("[]").split("_")[0].lower())
    if any(m.group(0) not in own for m in [*ZH_NAME.finditer(draft), *EN_NAME.finditer(draft)]):
        found.append("name")
    return sorted(set(found))


def tone_problems(draft: str, message: str) -> list[str]:
    """A draft's tone against the message: harm is never an "inconvenience", and the customer's
    insults are never quoted back (both word lists in ``agent/data/reply.yaml``)."""
    problems: list[str] = []
    low, said = draft.lower(), message.lower()
    if message and situation(message, None).get("severe"):
        small = [w for w in wording()["belittling"] if w in low]
        if small:
            problems.append(f"calls an injury or safety risk a small matter ('{small[0]}')")
    echoed = [w for w in wording()["insults"] if w.lower() in said and w.lower() in low]
    if echoed:
        problems.append(f"repeats the customer's insult ('{echoed[0]}')")
    return problems


def check_draft(
    draft: str,
    evidence: list[Evidence],
    cited: list[str],
    lang: Lang,
    *,
    message: str = "",
    customer: str | None = None,
    order_id: str | None = None,
) -> tuple[list[Promise], list[str]]:
    """The draft's promises (with support) and its policy violations.

    ``message``, ``customer`` and ``order_id`` are this customer's own: personal data the draft
    may repeat. Everything else personal in a draft came from another record and is a violation.
    """
    by_id = {e.resolution_id: e for e in evidence}
    own = draft
    draft = re.sub(r"“[^”]*”|\"[^\"]*\"|「[^」]*」", " ", draft)  # the customer's own words, quoted, promise nothing
    sources = [
        (rid, f"{by_id[rid].reply}\n{by_id[rid].action}\n{by_id[rid].compensation or ''}")
        for rid in cited
        if rid in by_id
    ]
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
            elif kind == "deadline" and (
                text.lower() in low
                or (_digits(text) and any(_digits(m.group(0)) == _digits(text) for m in _DEADLINE.finditer(src)))
            ):
                support = rid
            if support:
                break
        promises.append(Promise(kind=kind, text=text, supported_by=support))
        if support is None:
            problems.append(f"promises {kind} '{text}' that no cited resolution contains")
    if m := _SECRETS.search(draft):
        problems.append(f"asks for a secret ('{m.group(0)}')")
    if m := _DONE.search(draft):
        problems.append(
            f"states an action as already done ('{m.group(0)}'); only this customer's own record could say so"
        )
    foreign = foreign_personal_data(own, "\n".join(x for x in (message, customer, order_id) if x))
    if foreign:
        problems.append("carries personal data that is not this customer's own (" + ", ".join(foreign) + ")")
    problems += tone_problems(own, message)
    unknown = [c for c in cited if c not in by_id]
    if unknown:
        problems.append("cites unknown ids: " + ", ".join(unknown[:3]))
    if output_language(own) != lang:
        problems.append(f"written in the wrong language (customer wrote {lang})")
    return promises, problems


# --------------------------------------------------------------------------- drafting


class Replier:
    """Drafts replies from one store's resolution history."""

    def __init__(
        self,
        store: Store,
        taxonomy: Taxonomy,
        model: ChatModel | None = None,
        classifier: Classifier | None = None,
        prompt_version: int | None = None,
    ) -> None:
        """Bind the store, taxonomy, optional chat model and (shared) classifier; ``prompt_version``
        pins the reply prompt (default: the newest)."""
        self.store = store
        self.taxonomy = taxonomy
        self.model = model
        self.prompt_version = prompt_version
        self.classifier = classifier or Classifier(store, taxonomy)

    def evidence(
        self, text: str, category: str | None, lang: Lang, k: int = MAX_EVIDENCE, critical: bool = False
    ) -> list[Evidence]:
        """Resolved past cases of the category most similar to ``text``; same language first, and
        safety-critical cases answer critical complaints only (and vice versa)."""
        # past complaints of the same category: a coupon reply must not answer a leaking cup
        filters = SearchFilters(category=category) if category else None
        hits = Searcher(self.store).search(text, k=40, kind="feedback", filters=filters, with_links=True)
        found: list[tuple[tuple[int, int, float], Evidence]] = []
        for rank, h in enumerate(hits):
            sim = h.similarity or 0.0
            for res in h.resolutions:
                if res["outcome"] != "resolved" or sim < evidence_threshold(self.store):
                    continue
                if strip_instructions(f"{res['reply']}\n{res['action']}\n{res.get('compensation') or ''}")[1]:
                    continue  # a resolution record carrying instructions is not evidence to copy from
                ev = Evidence(
                    resolution_id=res["id"],
                    feedback_id=h.id,
                    similarity=round(sim, 4),
                    outcome=res["outcome"],
                    action=res["action"],
                    reply=res["reply"],
                    compensation=res.get("compensation"),
                    feedback_text=h.text,
                    language=output_language(res["reply"]),
                )
                key = (int(ev.language != lang), int((h.record.get("urgency") == "critical") != critical), rank)
                found.append((key, ev))
        found.sort(key=lambda p: p[0])
        return self._with_marks(text, [ev for _, ev in found], lang)[:k]

    def _with_marks(self, text: str, found: list[Evidence], lang: Lang) -> list[Evidence]:
        """Agents' marks on messages like this one: a case marked right comes first, one marked
        wrong is left out (see agent/marks.py)."""
        from agent.marks import near

        marks = near(self.store, text)
        if not marks:
            return found
        kept = [ev for ev in found if marks.get(ev.resolution_id, ("right", 0.0))[0] != "wrong"]
        right = {rid: sim for rid, (verdict, sim) in marks.items() if verdict == "right"}
        have = {ev.resolution_id: ev for ev in kept}
        resolutions = self.store.records("resolution", [r for r in right if r not in have])
        cases = self.store.records("feedback", [r.feedback_id for r in resolutions.values()])
        first: list[Evidence] = []
        for rid, sim in sorted(right.items(), key=lambda p: -p[1]):
            if rid in have:
                first.append(have[rid].model_copy(update={"marked": True}))
                continue
            res = resolutions.get(rid)
            case = cases.get(res.feedback_id) if res else None
            if res is None or case is None or res.outcome != "resolved":
                continue
            first.append(
                Evidence(
                    resolution_id=rid,
                    feedback_id=res.feedback_id,
                    similarity=sim,
                    outcome=res.outcome,
                    action=res.action,
                    reply=res.reply,
                    compensation=res.compensation,
                    feedback_text=case.text,
                    language=output_language(res.reply),
                    marked=True,
                )
            )
        chosen = {ev.resolution_id for ev in first}
        return first + [ev for ev in kept if ev.resolution_id not in chosen]

    def draft(self, text: str, *, customer: str | None = None, order_id: str | None = None) -> ReplyDraft:
        """A reply draft for one customer message."""
        text = text.strip()
        if not text:
            raise ValueError("the customer's text is empty")
        lang = output_language(text)
        clf: Classification = self.classifier.classify([text])[0]
        ev = self.evidence(text, clf.category, lang, critical=clf.urgency == "critical")
        sit = situation(text, clf.category)
        reasons = self._review_reasons(text, clf, ev, lang, sit)
        draft, cited = compose(lang, sit, clf, ev, customer, order_id)
        if ev and not cited and not _is_thanks(clf):
            reasons.append(say("reply.review.unmatched_evidence", lang))
        promises, problems = check_draft(draft, ev, cited, lang, message=text, customer=customer, order_id=order_id)
        if problems:  # a composed part its own citations do not support: drop to the holding reply
            draft, cited = compose(lang, sit, clf, [], customer, order_id)
            promises, problems = check_draft(draft, ev, cited, lang, message=text, customer=customer, order_id=order_id)
            reasons.append(say("reply.review.composed_failed", lang))
        result = ReplyDraft(
            reply=draft,
            language=lang,
            citations=cited,
            needs_review=bool(reasons),
            reasons=reasons,
            promises=promises,
            policy_violations=problems,
            classification=clf.model_dump(mode="json"),
            evidence=[_redacted(e) for e in ev],
            path="template",
        )
        if self.model is not None and ev:
            self._llm(result, text, customer, order_id)
        return result

    def _review_reasons(
        self, text: str, clf: Classification, ev: list[Evidence], lang: Lang, sit: dict[str, Any]
    ) -> list[str]:
        reasons: list[str] = []
        if not ev and not _is_thanks(clf):
            reasons.append(say("reply.review.no_evidence", lang))
        if clf.urgency == "critical":
            reasons.append(say("reply.review.critical", lang))
        if sit.get("severe"):
            reasons.append(say("reply.review.severe", lang))
        if m := THREATS.search(text):
            reasons.append(say("reply.review.threat", lang, words=m.group(0)))
        if strip_instructions(text)[1]:
            reasons.append(say("reply.review.instructions", lang))
        return reasons

    def _llm(self, result: ReplyDraft, text: str, customer: str | None, order_id: str | None) -> None:
        assert self.model is not None
        prompt = load_prompt("reply", self.prompt_version)
        # result.evidence is already redacted: other customers' personal data never reaches the model
        evidence = [
            {
                "id": e.resolution_id,
                "past_complaint": e.feedback_text,
                "action": e.action,
                "reply": e.reply,
                "compensation": e.compensation,
            }
            for e in result.evidence
        ]
        common = {
            "language": say("prompt.language", result.language),
            "customer": customer or "-",
            "order_id": order_id or "-",
            "classification": f"{result.classification['category']} / {result.classification['sentiment']} / "
            f"{result.classification['urgency']}",
            "evidence": fence(json.dumps(evidence, ensure_ascii=False, indent=1), "past_resolutions"),
            "message": fence(text, "customer_message"),
        }
        if prompt.version >= 2:  # the model writes from the composed draft's own parts
            sit = situation(text, result.classification["category"])
            steps = next_steps(result.language, sit, result.evidence)
            ask = sit.get("ask")
            common |= {
                "acknowledgement": sit["ack"][result.language],
                "steps": "\n".join(f"- [{rid}] {phrase}" for phrase, rid in steps)
                or "- (none: promise only to check and follow up)",
                "request": wording()["asks"][ask][result.language] if ask else "-",
                "draft": result.reply,
            }
        content = prompt.render(**common)
        evidence_ids = {e.resolution_id for e in result.evidence}

        promised: list[Promise] = []  # the promises of the draft last checked

        def check(d: _LLMDraft) -> list[str]:
            promises, problems = check_draft(
                d.reply,
                result.evidence,
                d.citations,
                result.language,
                message=text,
                customer=customer,
                order_id=order_id,
            )
            promised[:] = promises
            return problems + ([] if any(c in evidence_ids for c in d.citations) else ["cites no past resolution"])

        messages = [Message(role="user", content=content)]
        got = structured(self.model, messages, _LLMDraft, check, prompt_version=prompt.ref)
        if got.value is None:
            result.fallback_reason = got.fallback_reason
            return
        d = got.value  # the last draft checked: promised holds its promises
        result.reply, result.citations, result.promises = (
            d.reply.strip(),
            [c for c in d.citations if c in evidence_ids],
            list(promised),
        )
        result.reasons += [r for r in d.reasons if r and r not in result.reasons] if d.needs_review else []
        result.needs_review = bool(result.reasons) or d.needs_review
        result.path, result.prompt_version, result.fallback_reason = "llm", prompt.ref, None


# --------------------------------------------------------------------------- composition


def wording() -> dict[str, Any]:
    """The reply wording catalog (``agent/data/reply.yaml``)."""
    return load_data("reply")


def _matches(cues: list[str], text: str) -> bool:
    return any(re.search(c, text, re.I) for c in cues)


def situation(text: str, category: str | None) -> dict[str, Any]:
    """The catalog's situation for a message: a severe one (injury, safety) whenever its cues
    match; else a cue-matched one of the message's category; else the first cue-matched one;
    else the category's; else the default (the last)."""
    clean = strip_instructions(text)[0] or text
    situations: list[dict[str, Any]] = wording()["situations"]
    matched = [s for s in situations if _matches(s.get("cues", []), clean)]
    severe = [s for s in matched if s.get("severe")]
    of_category = [s for s in matched if category in s.get("categories", [])]
    by_category = [s for s in situations if category in s.get("categories", [])]
    return (severe or of_category or matched or by_category or situations[-1:])[0]


def action_kind(ev: Evidence) -> dict[str, Any] | None:
    """The catalog action a past resolution took (the first whose cues match), or None."""
    source = f"{ev.action}\n{ev.compensation or ''}"
    return next((a for a in wording()["actions"] if _matches(a["cues"], source)), None)


def _is_thanks(clf: Classification) -> bool:
    return clf.sentiment == "positive" and clf.category in ("praise", "suggestion")


def next_steps(lang: Lang, sit: dict[str, Any], ev: list[Evidence]) -> list[tuple[str, str]]:
    """Up to two (phrase, resolution id): the kinds of action the evidence took, the situation's
    preferred kinds first (and only those when any is present), one step per kind."""
    prefer: list[str] = sit.get("prefer", [])
    kinds = [(e, action_kind(e)) for e in ev]
    # the situation's own kinds of action first (a refund delay is answered with a refund, not a
    # return-fee refund), each group in evidence order
    kinds.sort(key=lambda p: prefer.index(p[1]["id"]) if p[1] and p[1]["id"] in prefer else len(prefer))
    if any(k and k["id"] in prefer for _, k in kinds):  # then only those: no unrelated extra offer
        kinds = [(e, k) for e, k in kinds if k and k["id"] in prefer]
    chosen: list[tuple[str, str]] = []
    for e, kind in kinds:
        if kind is None or any(kind[lang] == p for p, _ in chosen):
            continue
        chosen.append((kind[lang], e.resolution_id))
        if len(chosen) == 2:
            break
    return chosen


def compose(
    lang: Lang, sit: dict[str, Any], clf: Classification, ev: list[Evidence], customer: str | None, order_id: str | None
) -> tuple[str, list[str]]:
    """A draft from catalog parts, and the resolutions its next steps came from.

    Next steps (:func:`next_steps`) are phrased in the catalog as future steps or conditional
    offers. With no evidence, the holding line that promises nothing.
    """
    w = wording()
    greet = w["greeting"][lang]
    parts = [greet["named"].format(customer=customer) if customer else greet["plain"]]
    if _is_thanks(clf):
        t = w["thanks"][lang]
        return parts[0] + t["head"] + t["suggestion" if clf.category == "suggestion" else "praise"], []
    body: list[str] = []
    if order_id:
        body.append(w["order"][lang].format(order_id=order_id))
    body.append(sit["ack"][lang])
    chosen = next_steps(lang, sit, ev)
    steps, cited = [p for p, _ in chosen], [rid for _, rid in chosen]
    if steps:
        n = w["next_steps"][lang]
        body.append(n["intro"] + n["join"].join(steps) + n["end"])
    else:
        body.append(w["holding"][lang])
    ask = sit.get("ask")
    if ask and not (ask == "order" and order_id):
        body.append(w["asks"][ask][lang])
    body.append(w["closing"][lang])
    return parts[0] + greet["join"].join(body), cited


def _redacted(ev: Evidence) -> Evidence:
    """Evidence as shown to the agent and sent to a model: other customers' personal data replaced."""
    r = Redactor()

    def clean(s: str) -> str:
        return EN_NAME.sub("[NAME]", ZH_NAME.sub("[NAME]", r.redact(s)))

    return ev.model_copy(update={f: clean(getattr(ev, f)) for f in ("reply", "action", "feedback_text")})
