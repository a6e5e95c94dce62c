"""Root-cause summaries of a slice (a category, a product, a window): numbers first, words second.

Everything numeric comes from :mod:`agent.tools`: volume against the previous period, which
facet values concentrate the slice (share of the slice against their share of all feedback in
the same period, "lift"), clusters of similar complaints (agglomerative clustering of the stored
embeddings, labelled by their most distinctive words), representative quotes, and the actions
past resolutions took for the slice's records. Likely causes and suggested actions are stated
from those figures by rules. A chat model, when configured, only rewords the summary from the
computed facts and must cite record ids; a summary with a number no fact holds is discarded.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from agent.grounded import language_problems, number_problems, structured
from agent.llm import ChatModel, Message, ToolTrace
from agent.prompts import fence, load_prompt
from agent.tools import Analytics, CompareInput, CountByInput, Filters, Window, evidence_ids
from agent.wording import Words, phrases, say
from retrieval.store import FeedbackRow, ResolutionRow
from retrieval.taxonomy import Taxonomy

Lang = Literal["zh", "en"]
FACETS = ("carrier", "product", "channel", "region", "customer_tier")
CONCENTRATION_SHARE = 0.4  # a value holding at least this share of the slice ...
CONCENTRATION_LIFT = 1.3  # ... and this many times its share of all feedback concentrates it
MAX_CLUSTER_RECORDS = 3000
MAX_PAST_ACTION_RECORDS = 5000
CLUSTER_DISTANCE = 0.55  # cosine distance, average linkage (word-hash vectors; each embedding sets its own)
_LABEL_STOP = {
    "你好",
    "您好",
    "亲",
    "请",
    "谢谢",
    "thanks",
    "hello",
    "hi",
    "please",
    "麻烦",
    "一下",
    "说实话",
    "我想",
    "反映",
    "希望",
    "尽快",
    "处理",
    "太",
    "失望",
    "给个",
    "说法",
    "客服",
    "the",
    "and",
    "my",
    "is",
    "was",
    "it",
}


class FacetConcentration(BaseModel):
    """How one facet's top value concentrates the slice."""

    facet: str
    value: str
    count: int
    of: int = Field(description="Records of the slice that have a value for this facet.")
    share: float
    baseline_share: float | None = Field(description="The value's share of all feedback in the period.")
    lift: float | None
    concentrated: bool
    example_ids: list[str]
    runner_up: list[dict[str, Any]] = Field(default_factory=list)


class Cluster(BaseModel):
    """A group of similar complaints."""

    label: str
    size: int
    share: float
    quote_id: str
    quote: str
    example_ids: list[str]
    duplicates: int = Field(
        0,
        description="Repeat posts of a complaint already counted (same order, nearly the "
        "same words): left out of size.",
    )
    duplicate_ids: list[str] = Field(default_factory=list)


class PastAction(BaseModel):
    """What past resolutions of the slice's records did."""

    action: str
    count: int
    resolved_share: float
    resolution_ids: list[str]


class RootCause(BaseModel):
    """A root-cause summary; every number is computed, the summary text may be the LLM's."""

    slice: dict[str, Any]
    period: dict[str, str]
    previous_period: dict[str, str]
    volume: int
    previous_volume: int
    change: int
    change_pct: float | None
    share_of_all_feedback: float | None
    facets: list[FacetConcentration]
    clusters: list[Cluster]
    quotes: list[dict[str, Any]]
    past_actions: list[PastAction]
    causes: list[str]
    actions: list[str]
    summary: str
    citations: list[str]
    path: Literal["rules", "llm"] = "rules"
    fallback_reason: str | None = None
    prompt_version: str | None = None
    tool_calls: list[ToolTrace] = Field(default_factory=list)


class _Summary(BaseModel):
    """What the model may write: a summary citing ids."""

    summary: str = Field(description="3-6 sentences, in the requested language, using only the given facts.")
    cited_ids: list[str] = Field(description="Record ids from the facts that support the summary.")


def root_cause(
    analytics: Analytics,
    taxonomy: Taxonomy,
    *,
    category: str | None = None,
    product: str | None = None,
    window: Window | None = None,
    sentiment: str | None = "negative",
    lang: Lang = "zh",
    model: ChatModel | None = None,
    extra: dict[str, str] | None = None,
) -> RootCause:
    """Summarise the slice ``category`` x ``product`` (complaints by default) over ``window``."""
    filters = Filters(category=category, product=product, sentiment=sentiment, **(extra or {}))
    traces: list[ToolTrace] = []

    def call(name: str, fn: Any, args: BaseModel) -> Any:
        result = fn(args)
        traces.append(
            ToolTrace(
                tool=name, args=args.model_dump(mode="json", exclude_none=True), result=result.model_dump(mode="json")
            )
        )
        return result

    window = window or Window(days=30)
    vol = call("compare_periods", analytics.compare_periods, CompareInput(window=window, field=None, filters=filters))
    everything = analytics.compare_periods(CompareInput(window=window, field=None, filters=Filters()))
    facets: list[FacetConcentration] = []
    for facet in (("category",) if category is None else ()) + FACETS:
        if getattr(filters, facet) is not None:
            continue
        res = call("top_facets", analytics.count_by, CountByInput(field=facet, window=window, filters=filters, top=3))
        if not res.groups:
            continue
        base = analytics.count_by(CountByInput(field=facet, window=window, filters=Filters(), top=None))
        base_share = {g.value: g.share for g in base.groups}
        top = res.groups[0]
        b = base_share.get(top.value)
        lift = round(top.share / b, 2) if b else None
        facets.append(
            FacetConcentration(
                facet=facet,
                value=top.value,
                count=top.count,
                of=res.with_value,
                share=top.share,
                baseline_share=b,
                lift=lift,
                concentrated=top.share >= CONCENTRATION_SHARE
                and (lift or 0) >= CONCENTRATION_LIFT
                and res.with_value >= 5,
                example_ids=top.example_ids,
                runner_up=[{"value": g.value, "count": g.count, "share": g.share} for g in res.groups[1:]],
            )
        )
    facets.sort(key=lambda f: (not f.concentrated, -(f.lift or 0) * f.share))
    ids = analytics.newest_ids(analytics.resolve(window), filters, MAX_PAST_ACTION_RECORDS)  # one query, newest first
    clusters = _clusters(analytics, ids[:MAX_CLUSTER_RECORDS], vol.total_current)
    quotes = _quotes(analytics, clusters)
    past = _past_actions(analytics, ids)
    words = _Words(lang, taxonomy)
    causes, actions = words.causes(category, product, vol, facets, clusters, past)
    result = RootCause(
        slice={
            k: v
            for k, v in {"category": category, "product": product, "sentiment": sentiment, **(extra or {})}.items()
            if v
        },
        period=vol.current_period,
        previous_period=vol.previous_period,
        volume=vol.total_current,
        previous_volume=vol.total_previous,
        change=vol.total_change,
        change_pct=vol.total_change_pct,
        share_of_all_feedback=round(vol.total_current / everything.total_current, 4)
        if everything.total_current
        else None,
        facets=facets,
        clusters=clusters,
        quotes=quotes,
        past_actions=past,
        causes=causes,
        actions=actions,
        summary="",
        citations=[],
        tool_calls=traces,
    )
    result.summary = words.summary(result)
    gap = analytics.emptiness(analytics.resolve(window), lang)
    if gap is not None:
        result.summary = gap + say("separators.before_answer", lang) + result.summary
    result.citations = list(
        dict.fromkeys([c.quote_id for c in clusters] + evidence_ids([f.model_dump() for f in facets]))
    )[:20]
    if model is not None and result.volume:
        _llm_summary(result, model, lang)
    return result


# --------------------------------------------------------------------------- clusters, quotes, past actions


def _clusters(analytics: Analytics, ids: list[str], total: int) -> list[Cluster]:
    """Clusters of the given records' stored embeddings (ids newest first)."""
    if len(ids) < 2:
        return []
    from sklearn.cluster import AgglomerativeClustering

    got_ids, tokens, mat = analytics.store.index_rows("feedback", ids)
    order = {i: n for n, i in enumerate(ids)}
    perm = sorted(range(len(got_ids)), key=lambda k: order[got_ids[k]])  # newest first, deterministic
    got_ids = [got_ids[k] for k in perm]
    tokens = [tokens[k] for k in perm]
    mat = mat[perm]
    embedder = analytics.store.embedder
    texts = analytics.store.records("feedback", got_ids)
    dup_of = _near_duplicates(texts, got_ids, mat, getattr(embedder, "near_duplicate", 0.95))
    keep = [k for k in range(len(got_ids)) if k not in dup_of]
    if len(keep) < 2:
        return []
    vectors = mat[keep]
    if getattr(embedder, "center_languages", False):
        vectors = _centred_by_language(vectors, [_language(texts, got_ids[k]) for k in keep])
    labels_kept = AgglomerativeClustering(
        n_clusters=None,
        metric="cosine",
        linkage="average",
        distance_threshold=getattr(embedder, "cluster_distance", CLUSTER_DISTANCE),
    ).fit_predict(vectors)
    labels = np.full(len(got_ids), -1)
    labels[keep] = labels_kept
    for k, first in dup_of.items():
        labels[k] = labels[first]
    counted = np.zeros(len(got_ids), dtype=bool)
    counted[keep] = True
    words = [
        {w for w in t.split() if not w.startswith("#") and len(w) > 1 and w.lower() not in _LABEL_STOP} for t in tokens
    ]
    df = Counter(w for ws in words for w in ws)
    out: list[Cluster] = []
    for lab in sorted(set(labels_kept), key=lambda x: (-int(((labels == x) & counted).sum()), int(x))):
        everyone = np.flatnonzero(labels == lab)
        members = np.flatnonzero((labels == lab) & counted)
        if len(members) < 2:
            continue
        repeats = [got_ids[m] for m in everyone if not counted[m]]
        tf = Counter(w for m in members for w in words[m])
        # distinctive words: frequent in the cluster, rare outside it
        scored = sorted(tf, key=lambda w: (-(tf[w] / len(members)) * (tf[w] / df[w]), w))
        centroid = mat[members].mean(axis=0)
        best = members[int(np.argmax(mat[members] @ centroid))]
        rid = got_ids[best]
        out.append(
            Cluster(
                label=" / ".join(scored[:3]) or "-",
                size=len(members),
                share=round(len(members) / max(total, 1), 4),
                quote_id=rid,
                quote=" ".join(texts[rid].text.split())[:200],
                example_ids=[got_ids[m] for m in members[:5]],
                duplicates=len(repeats),
                duplicate_ids=repeats[:10],
            )
        )
        if len(out) >= 5:
            break
    return out


def _centred_by_language(vectors: np.ndarray, languages: list[str | None]) -> np.ndarray:
    """Vectors with each language's mean removed (languages with at least 5 records), renormalised:
    what is left is what the complaints say, not which language says it."""
    out = vectors.astype(np.float32, copy=True)
    langs = np.array([lang or "" for lang in languages])
    for lang in set(langs):
        rows = langs == lang
        if rows.sum() >= 5:
            out[rows] -= out[rows].mean(axis=0)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1, norms)


def _near_duplicates(recs: dict[str, FeedbackRow], ids: list[str], mat: np.ndarray, threshold: float) -> dict[int, int]:
    """{index: index of its first post} for repeat posts of one complaint: the same order and
    vectors at least ``threshold`` alike (ids newest first). Different customers writing the
    same words are different complaints and all count."""
    by_order: dict[str, list[int]] = {}
    for k, rid in enumerate(ids):
        rec = recs.get(rid)
        order_id = rec.order_id if rec else None
        if order_id:
            by_order.setdefault(order_id, []).append(k)
    dup_of: dict[int, int] = {}
    for members in by_order.values():
        for n, k in enumerate(members):
            first = next((f for f in members[:n] if f not in dup_of and float(mat[k] @ mat[f]) >= threshold), None)
            if first is not None:
                dup_of[k] = first
    return dup_of


def _language(recs: dict[str, FeedbackRow], rid: str) -> str | None:
    rec = recs.get(rid)
    return rec.language if rec else None


def _quotes(analytics: Analytics, clusters: list[Cluster]) -> list[dict[str, Any]]:
    recs = analytics.store.records("feedback", [c.quote_id for c in clusters])
    keys = ("id", "text", "created_at", "product", "carrier", "channel", "region")
    return [{k: getattr(recs[c.quote_id], k) for k in keys} for c in clusters if c.quote_id in recs]


def _past_actions(analytics: Analytics, ids: list[str]) -> list[PastAction]:
    links = analytics.store.resolutions_for(ids)
    by_action: dict[str, list[ResolutionRow]] = {}
    for rows in links.values():
        for r in rows:
            by_action.setdefault(r.action, []).append(r)
    ranked = sorted(by_action.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:5]
    return [
        PastAction(
            action=a,
            count=len(rs),
            resolved_share=round(sum(r.outcome == "resolved" for r in rs) / len(rs), 4),
            resolution_ids=[r.id for r in rs[:3]],
        )
        for a, rs in ranked
    ]


# --------------------------------------------------------------------------- wording


class _Words(Words):
    """The root cause's wording: causes, actions and the summary's first sentence."""

    def facet(self, facet: str) -> str:
        """A facet's name as the causes use it."""
        names: dict[str, str] = phrases()["rootcause.facets"][self.lang]
        return names.get(facet, facet)

    def causes(
        self,
        category: str | None,
        product: str | None,
        vol: Any,
        facets: list[FacetConcentration],
        clusters: list[Cluster],
        past: list[PastAction],
    ) -> tuple[list[str], list[str]]:
        causes: list[str] = []
        actions: list[str] = []
        for f in facets:
            if not f.concentrated:
                continue
            causes.append(
                self.say(
                    "rootcause.concentrated",
                    facet=self.facet(f.facet),
                    value=self.label(f.value) if f.facet == "category" else f.value,
                    of=f.of,
                    count=f.count,
                    share=self.share(f.share),
                    baseline=self.share(f.baseline_share),
                    lift=f.lift,
                    ids=", ".join(f.example_ids[:2]),
                )
            )
            if f.facet != "category":
                actions.append(_facet_action(self.lang, f.facet, f.value, category))
        if clusters:
            c = clusters[0]
            causes.append(
                self.say(
                    "rootcause.largest_cluster",
                    label=c.label,
                    size=c.size,
                    share=self.share(c.share),
                    quote_id=c.quote_id,
                    quote=c.quote[:60],
                )
            )
        if vol.total_change_pct is not None and vol.total_change >= 5 and vol.total_change_pct >= 50:
            causes.append(self.say("rootcause.rose", change=vol.total_change, pct=vol.total_change_pct))
            actions.insert(0, self.say("rootcause.priority"))
        proven = [p for p in past if p.count >= 2 and p.resolved_share >= 0.5]
        if proven:
            p = proven[0]
            actions.append(
                self.say(
                    "rootcause.proven_fix",
                    action=p.action,
                    count=p.count,
                    share=self.share(p.resolved_share),
                    example=p.resolution_ids[0],
                )
            )
        if not causes:
            causes.append(self.say("rootcause.spread_out"))
        return causes, list(dict.fromkeys(actions))

    def summary(self, r: RootCause) -> str:
        cat = r.slice.get("category")
        scope = " · ".join(
            x for x in (r.slice.get("product"), self.label(cat) if cat or not r.slice.get("product") else None) if x
        )
        what = self.say("rootcause.what.negative" if r.slice.get("sentiment") == "negative" else "rootcause.what.any")
        head = self.say(
            "rootcause.head",
            first=r.period["from"],
            last=r.period["to"],
            scope=scope,
            what=what,
            volume=r.volume,
            previous=r.previous_volume,
            change=f"{'+' if r.change >= 0 else ''}{r.change}",
        )
        if not r.volume:
            return head
        return " ".join([head, *r.causes[:2]])


def _facet_action(lang: Lang, facet: str, value: str, category: str | None) -> str:
    if facet == "product" and category == "packaging":
        facet = "packaging_product"
    known = facet in ("carrier", "packaging_product", "product", "channel", "region")
    return say(f"rootcause.actions.{facet if known else 'other'}", lang, value=value)


def _llm_summary(result: RootCause, model: ChatModel, lang: Lang) -> None:
    prompt = load_prompt("rootcause")
    facts = result.model_dump(
        mode="json",
        include={
            "slice",
            "period",
            "previous_period",
            "volume",
            "previous_volume",
            "change",
            "change_pct",
            "facets",
            "clusters",
            "past_actions",
            "causes",
            "actions",
        },
    )
    text = prompt.render(
        language=say("prompt.language", lang), facts=fence(json.dumps(facts, ensure_ascii=False), "facts")
    )
    known = (
        set(evidence_ids(facts))
        | {c.quote_id for c in result.clusters}
        | {i for p in result.past_actions for i in p.resolution_ids}
    )

    def check(value: _Summary) -> list[str]:
        cited = [] if any(i in known for i in value.cited_ids) else ["no valid record id cited"]
        return number_problems(value.summary, [facts]) + cited + language_problems(value.summary, lang)

    got = structured(model, [Message(role="user", content=text)], _Summary, check, prompt_version=prompt.ref)
    if got.value is None:
        result.fallback_reason = got.fallback_reason
        return
    cited = [i for i in got.value.cited_ids if i in known]
    result.summary, result.path, result.prompt_version = got.value.summary.strip(), "llm", prompt.ref
    result.citations = list(dict.fromkeys(cited + result.citations))
