"""Classification into the taxonomy: a learned model, taxonomy rules, and an optional LLM.

No-LLM path (always available):

* a linear model (LinearSVC) per field over TF-IDF features of our tokens (jieba words, CJK
  bigrams, identifiers) and character 1-4-grams, trained on the store's imported and human labels,
  the shipped seed bank (where its labels are in the taxonomy) and each label's own name and
  description (so a new taxonomy works before anything is labelled);
* with a sentence encoder (``retrieval.encoder``, on by default when installed), English texts
  also get its 384 meaning features, so wording the labelled records never used still lands (bitext
  intents with 10 examples each: 0.902 -> 0.964); Chinese texts keep the TF-IDF features alone;
* the neighbours (labelled records most similar in that same feature space) are returned as the
  evidence, and decide by vote when the linear model has no opinion;
* urgency rules from the taxonomy's keywords (safety, legal/regulator, public exposure, money
  taken, repeated contact) raise urgency; sarcasm markers flip praise-like sentiment.

With an LLM, the neighbours become few-shot examples and the model must answer with labels from
the closed set (a schema with ``Literal`` ids); an invalid or out-of-set answer is re-asked, then
the no-LLM result is returned with the reason. Labels are never outside the taxonomy.

Trained models are cached under ``<home>/models`` keyed by the taxonomy and the store's labels
version, so classification after a correction (``label``) retrains once, then reuses.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy import or_, select

from agent.errors import AgentError, OutputValidationError
from agent.llm import ChatModel, Message, complete_structured
from agent.prompts import fence, load_prompt
from agent.safety import strip_instructions
from retrieval.encoder import SentenceEncoder, VectorCache
from retrieval.pii import PERSON_NAME
from retrieval.records import Feedback, LabelSource, LabelValue, detect_language
from retrieval.store import Store, feedback_table
from retrieval.taxonomy import Taxonomy
from retrieval.text import embed, normalize_text, tokenize
from retrieval.training_data import load_seed_examples, load_sentiment_lexicon, shipped_data_version, template_examples

FIELDS = ("category", "sentiment", "urgency")
MODEL_VERSION = 8  # 7: product and SKU names masked out of the features; 8: people's names too
N_NEIGHBORS = 5
# Up to this many training rows, neighbours are exact (dot products of the models' features); beyond it the
# product grows dense and slow (150 texts/s at 50k), so the store's ANN index finds them.
EXACT_NEIGHBOR_ROWS = 5000
# Scale of the sentence-encoder block against the TF-IDF blocks (each row of each block has unit
# norm). A LinearSVC on bitext intents alone (no seeds), 10 examples each: TF-IDF 0.899; with the
# encoder at 1 -> 0.939, 1.5 -> 0.954, 2 -> 0.957, 3 -> 0.960; 40 each: 0.985 -> 0.995 at 1.5,
# 0.991 at 3; all 4,014 rows: 0.996 at 1.5, 0.994 at 2 and 3. 1.5 is the best all round.
ENCODER_WEIGHT = 1.5
_SARCASM = re.compile(r"呵呵|真是好|真棒啊|太好了吧|oh great|just great|amazing quality|thanks a lot for nothing", re.I)


class Classification(BaseModel):
    """The labels of one text and the evidence behind them."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="The input row's id, when it has one.")
    category: str = Field(description="A category id of the taxonomy.")
    subcategory: str | None = None
    sentiment: str
    urgency: str
    confidence: float = Field(ge=0, le=1, description="Confidence in the category.")
    confidences: dict[str, float] = Field(default_factory=dict, description="Per field.")
    language: str
    neighbors: list[str] = Field(default_factory=list, description="Ids of the labelled records relied on.")
    path: str = Field(description="What decided the category: linear, knn, llm.")
    paths: dict[str, str] = Field(
        default_factory=dict, description="What decided each field (rules, linear, knn, llm)."
    )
    reasons: list[str] = Field(default_factory=list)
    prompt_version: str | None = None
    fallback_reason: str | None = Field(None, description="Why the LLM answer was not used, if it was not.")
    error: str | None = Field(None, description="Set when the input row could not be classified.")


@dataclass
class _Trained:
    """The fitted model for one taxonomy and labels version."""

    vectorizer: Any
    matrix: Any  # training texts' features, encoder block included (the models' input; neighbours)
    ids: list[str]
    texts: list[str]
    labels: dict[str, list[str | None]]
    models: dict[str, Any]  # field -> LinearSVC (None when fewer than 2 classes)
    encoder: str | None = None  # the sentence encoder whose vectors the models also read
    masked: tuple[str, ...] = ()  # product and SKU names replaced by one token before features


PRODUCT_TOKEN = " 商品 "  # what a product name becomes: the same word whatever the product
PERSON_TOKEN = " 某人 "  # what a person's name becomes


def mask_names(text: str, names: tuple[str, ...]) -> str:
    """``text`` with each known product / SKU name (longest first) replaced by one neutral word,
    and people's names (王先生, 李经理, Mr Smith) by another.

    A learned model reads every token as evidence: in a store where one product had a quality
    spike, its name alone pulled a packaging or delivery complaint toward product_quality, and a
    name can stand for urgency the words do not say. Labels should follow what is said.
    """
    text = PERSON_NAME.sub(PERSON_TOKEN, text)
    if not names:
        return text
    return _names_pattern(names).sub(PRODUCT_TOKEN, text)


@lru_cache(maxsize=4)
def _names_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    # one alternation, longest names first, so "智能保温杯 Pro" wins over "保温杯" (thousands of SKUs stay cheap)
    return re.compile("|".join(re.escape(n) for n in names))


def _features() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_union

    return make_union(
        TfidfVectorizer(analyzer=tokenize, sublinear_tf=True),
        TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(1, 4),
            sublinear_tf=True,
            min_df=2,
            preprocessor=normalize_text,
            max_features=400_000,
            dtype=np.float32,
        ),
    )


def _softmax(scores: np.ndarray, scale: float = 3.0) -> np.ndarray:
    z = scores * scale
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs


class Classifier:
    """Classifies texts into a taxonomy using a store's labelled records.

    Args:
        store: the record store (labelled records are the training data and the neighbours).
        taxonomy: the closed label sets.
        model: a chat model, or None for the no-LLM path.
    """

    def __init__(
        self, store: Store, taxonomy: Taxonomy, model: ChatModel | None = None, encoder: SentenceEncoder | None = None
    ) -> None:
        """Bind to a store, a taxonomy, an optional chat model and an optional sentence encoder.

        Training happens on first use. With an encoder, English texts also get its vectors as
        features (``agent.runtime.make_encoder`` gives the configured one).
        """
        self.store = store
        self.taxonomy = taxonomy
        self.model = model
        self.encoder = encoder
        self._trained: _Trained | None = None
        self._ids = {field: taxonomy.label_ids(field) for field in FIELDS}

    def with_model(self, model: ChatModel | None) -> Classifier:
        """A classifier sharing this one's fitted model, with another chat model (one per request)."""
        other = Classifier(self.store, self.taxonomy, model, self.encoder)
        other._trained = self._trained
        return other

    # ------------------------------------------------------------------ training
    def _fingerprint(self) -> str:
        tax = json.dumps(self.taxonomy.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        encoder = self.encoder.name if self.encoder else "-"
        key = (
            f"{MODEL_VERSION}|{tax}|{self.store.labels_version()}|{self.store.embedder.label}|{encoder}"
            f"|{shipped_data_version()}"
        )
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    def _training_rows(self) -> tuple[list[str], list[str], dict[str, list[str | None]]]:
        f = feedback_table.c
        trusted = [LabelSource.IMPORT.value, LabelSource.HUMAN.value]
        stmt = select(
            f.id, f.text, f.category, f.category_source, f.sentiment, f.sentiment_source, f.urgency, f.urgency_source
        ).where(or_(f.category_source.in_(trusted), f.sentiment_source.in_(trusted), f.urgency_source.in_(trusted)))
        ids: list[str] = []
        texts: list[str] = []
        labels: dict[str, list[str | None]] = {k: [] for k in FIELDS}
        with self.store.engine.connect() as conn:
            for row in conn.execute(stmt).mappings():
                ids.append(row["id"])
                texts.append(row["text"])
                for name in FIELDS:
                    value, source = row[name], row[f"{name}_source"]
                    ok = source in trusted and value in self._ids[name]
                    labels[name].append(value if ok else None)
        # With no labelled records of its own, the default taxonomy also learns from the sample
        # generator's templates (a test keeps them apart from the bundled eval set).
        cold = template_examples() if not any(v is not None for v in labels["category"]) else []
        for seed in load_seed_examples() + cold:
            ids.append(seed["id"])
            texts.append(seed["text"])
            for name in FIELDS:
                labels[name].append(seed[name] if seed[name] in self._ids[name] else None)
        # Polar words teach sentiment what praise sounds like: labelled records are mostly complaints.
        if {"positive", "negative"} <= set(self._ids["sentiment"]):
            for i, (word, sentiment) in enumerate(load_sentiment_lexicon()):
                ids.append(f"lexicon:{sentiment}:{i}")
                texts.append(word)
                for name in FIELDS:
                    labels[name].append(sentiment if name == "sentiment" else None)
        for name in FIELDS:
            for lab in self.taxonomy.labels_of(name):
                desc = " ".join(x for x in (lab.id.replace("_", " "), lab.name_zh, lab.name_en, lab.description) if x)
                ids.append(f"taxonomy:{name}:{lab.id}")
                texts.append(desc)
                for other in FIELDS:
                    labels[other].append(lab.id if other == name else None)
        return ids, texts, labels

    def trained(self) -> _Trained:
        """The fitted model, from the cache or trained now."""
        if self._trained is not None:
            return self._trained
        cache = self.store.home / "models" / f"classifier-{self._fingerprint()}.pkl"
        if cache.exists():
            try:
                with open(cache, "rb") as fh:
                    self._trained = pickle.load(fh)
                return self._trained
            except (pickle.UnpicklingError, EOFError, AttributeError, ImportError):
                cache.unlink(missing_ok=True)
        self._trained = self._train()
        cache.parent.mkdir(parents=True, exist_ok=True)
        # one file per writer: two `serve` workers starting together both fit and write the model,
        # and a shared name let the first rename take the second's file from under it
        tmp = cache.with_name(f"{cache.stem}.{os.getpid()}-{threading.get_ident()}.tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(self._trained, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(cache)
        for old in cache.parent.glob("classifier-*.pkl"):
            if old != cache:
                old.unlink(missing_ok=True)
        return self._trained

    def _train(self) -> _Trained:
        from sklearn.svm import LinearSVC

        ids, texts, labels = self._training_rows()
        masked = self._names()
        texts = [mask_names(t, masked) for t in texts]
        vec = _features()
        matrix = vec.fit_transform(texts)
        full = self._with_encoder(matrix, texts, remember=True)
        models: dict[str, Any] = {}
        for name in FIELDS:
            rows = [i for i, v in enumerate(labels[name]) if v is not None]
            y = [labels[name][i] for i in rows]
            if len(set(y)) < 2:
                models[name] = None
                continue
            models[name] = LinearSVC(C=0.5).fit(full[rows], y)
        return _Trained(vec, full, ids, texts, labels, models, self.encoder.name if self.encoder else None, masked)

    def _names(self) -> tuple[str, ...]:
        """The store's product and SKU names worth masking (3+ characters), longest first."""
        names = {
            v for facet in ("product", "sku") for v in self.store.facet_values(facet)[:5000] if len(v.strip()) >= 3
        }
        return tuple(sorted(names, key=lambda v: (-len(v), v)))

    def _with_encoder(self, matrix: Any, texts: list[str], remember: bool = False, words_only: bool = False) -> Any:
        """``matrix`` with the encoder's vectors of the English texts appended (zeros elsewhere).

        ``remember``: store new vectors in the cache (training texts; classified ones are only looked up).
        ``words_only``: zeros for every text, as for Chinese ones (a first pass the fill refines).
        """
        if self.encoder is None:
            return matrix
        from scipy import sparse

        english = [] if words_only else [i for i, text in enumerate(texts) if detect_language(text) == "en"]
        block = sparse.csr_matrix((len(texts), self.encoder.dim), dtype=np.float32)
        if english:
            cache = VectorCache(self.store.home / "models" / "vectors.sqlite3")
            vectors = cache.encode(self.encoder, [texts[i] for i in english], remember) * ENCODER_WEIGHT
            rows = np.repeat(np.asarray(english), self.encoder.dim)
            cols = np.tile(np.arange(self.encoder.dim), len(english))
            block = sparse.csr_matrix((vectors.ravel(), (rows, cols)), shape=block.shape, dtype=np.float32)
        return sparse.hstack([matrix, block], format="csr", dtype=np.float32)

    # ------------------------------------------------------------------ classify
    def classify(
        self, texts: list[str], ids: list[str | None] | None = None, *, words_only: bool = False
    ) -> list[Classification]:
        """Classify texts (batch); each result's labels are ids of the taxonomy. ``words_only``
        leaves the English sentence encoder out (the ingest's first pass; the fill refines it)."""
        ids = ids or [None] * len(texts)
        if not texts:
            return []
        t = self.trained()
        cleaned = [strip_instructions(text) for text in texts]
        clean_texts = [mask_names(c, t.masked) for c, _ in cleaned]
        x = t.vectorizer.transform(clean_texts)
        full = self._with_encoder(x, clean_texts, words_only=words_only) if t.encoder else x
        neighbours = self._neighbours(t, full, clean_texts)
        per_field: dict[str, tuple[list[str], np.ndarray]] = {}
        for name in FIELDS:
            clf = t.models[name]
            if clf is not None:
                probs = _softmax(
                    np.atleast_2d(clf.decision_function(full))
                    if len(clf.classes_) > 2
                    else _binary(clf.decision_function(full))
                )
                per_field[name] = ([str(c) for c in clf.classes_], probs)
        results = [
            self._one(i, text, rid, t, neighbours[i], per_field)
            for i, (text, rid) in enumerate(zip(texts, ids, strict=True))
        ]
        for r, (_, spans) in zip(results, cleaned, strict=True):
            if spans:
                r.reasons.append(f"ignored instruction-like text: {spans[0][:60]!r}")
        if self.model is not None:
            results = [self._with_llm(text, r, t) for text, r in zip(texts, results, strict=True)]
        return results

    def _neighbours(self, t: _Trained, x: Any, texts: list[str]) -> list[list[int]]:
        """Training-row indexes of each text's nearest labelled records (label descriptions and lexicon excluded)."""
        usable = [i for i, rid in enumerate(t.ids) if not rid.startswith(("taxonomy:", "lexicon:"))]
        if len(usable) <= EXACT_NEIGHBOR_ROWS:
            sims = (x @ t.matrix[usable].T).toarray() if usable else np.zeros((len(texts), 0))
            out = []
            for row in sims:
                top: Any = np.argpartition(-row, min(N_NEIGHBORS, len(row) - 1))[:N_NEIGHBORS] if len(row) else []
                out.append([usable[j] for j in sorted(top, key=lambda j: (-row[j], j))])
            return out
        index = {rid: i for i, rid in enumerate(t.ids)}
        vectors = embed(self.store.embedder, texts, [tokenize(tx) for tx in texts])
        hits = self.store.ann_batch("feedback", vectors, N_NEIGHBORS * 6)
        return [[index[h] for h, _ in row if h in index][:N_NEIGHBORS] for row in hits]

    def _one(
        self,
        row: int,
        text: str,
        rid: str | None,
        t: _Trained,
        neighbours: list[int],
        per_field: dict[str, tuple[list[str], np.ndarray]],
    ) -> Classification:
        out: dict[str, str] = {}
        conf: dict[str, float] = {}
        paths: dict[str, str] = {}
        reasons: list[str] = []
        for name in FIELDS:
            if name in per_field:
                classes, probs = per_field[name]
                best = int(np.argmax(probs[row]))
                out[name], conf[name], paths[name] = classes[best], float(probs[row][best]), "linear"
            else:
                votes = Counter(t.labels[name][i] for i in neighbours if t.labels[name][i] is not None)
                if votes:
                    label, n = votes.most_common(1)[0]
                    out[name], conf[name], paths[name] = str(label), n / max(sum(votes.values()), 1), "knn"
                else:
                    out[name], conf[name], paths[name] = self._default(name), 0.0, "default"
        rule = self._urgency_rule(strip_instructions(text)[0])
        if rule is not None and self._rank(rule) <= self._rank(out["urgency"]):
            # an unmistakable case is the rule's, even where the model agrees: its label says why
            out["urgency"], conf["urgency"], paths["urgency"] = rule[0], 0.9, "rules"
            reasons.append(f"urgency {rule[0]}: mentions {rule[1]!r}")
        # "呵呵" is as often a friendly laugh as a sneer (20 of 24 such hotel reviews were positive):
        # it flips sentiment only when the text is a complaint.
        not_complaints = {"praise", "suggestion", "other"}
        if (
            _SARCASM.search(text)
            and out["sentiment"] == "positive"
            and "negative" in self._ids["sentiment"]
            and not_complaints <= set(self._ids["category"])
            and out["category"] not in not_complaints
        ):
            out["sentiment"], paths["sentiment"] = "negative", "rules"
            reasons.append("sentiment negative: sarcasm marker in a complaint")
        return Classification(
            id=rid,
            category=out["category"],
            sentiment=out["sentiment"],
            urgency=out["urgency"],
            confidence=round(conf["category"], 4),
            confidences={k: round(v, 4) for k, v in conf.items()},
            language=detect_language(text),
            neighbors=[t.ids[i] for i in neighbours],
            path=paths["category"],
            paths=paths,
            reasons=reasons,
        )

    def _default(self, name: str) -> str:
        ids = self._ids[name]
        preferred = {"category": "other", "sentiment": "neutral", "urgency": "medium"}[name]
        return preferred if preferred in ids else ids[-1]

    def _rank(self, label: tuple[str, str] | str) -> int:
        ids = self._ids["urgency"]
        value = label[0] if isinstance(label, tuple) else label
        return ids.index(value) if value in ids else len(ids)

    def _urgency_rule(self, text: str) -> tuple[str, str] | None:
        low = normalize_text(text)
        for level in self.taxonomy.urgencies:  # ordered most urgent first
            for kw in level.keywords:
                k = kw.lower()
                if k.isascii() and k.isalpha():
                    if re.search(rf"\b{re.escape(k)}", low):
                        return level.id, kw
                elif k in low:
                    return level.id, kw
        return None

    # ------------------------------------------------------------------ LLM
    def _schema(self) -> type[BaseModel]:
        fields: dict[str, Any] = {
            name: (Literal[tuple(self._ids[name])], Field(description=f"One of the {name} ids.")) for name in FIELDS
        }
        fields["confidence"] = (float, Field(ge=0, le=1, description="How sure you are of the category."))
        return create_model("FeedbackLabels", __config__=ConfigDict(extra="forbid"), **fields)

    def _with_llm(self, text: str, base: Classification, t: _Trained) -> Classification:
        prompt = load_prompt("classify")
        labels = "\n".join(
            f"- {c.id}: {c.name_en or ''} {c.name_zh or ''} {(c.description or '')[:160]}".rstrip()
            for c in self.taxonomy.categories
        )
        examples = []
        for nid in base.neighbors:
            i = t.ids.index(nid)
            lab = {k: t.labels[k][i] for k in FIELDS if t.labels[k][i]}
            examples.append(f"{fence(t.texts[i], 'example')}\nlabels: {json.dumps(lab)}")
        schema = self._schema()
        rendered = prompt.render(
            categories=labels,
            sentiments=", ".join(self._ids["sentiment"]),
            urgencies=", ".join(self._ids["urgency"]),
            examples="\n\n".join(examples) or "(none)",
            schema=json.dumps(schema.model_json_schema(), ensure_ascii=False),
            data=fence(text),
        )
        assert self.model is not None
        try:
            got = complete_structured(
                self.model,
                [Message(role="user", content=rendered)],
                schema,
                prompt_version=prompt.ref,
                max_tokens=128,
            )
        except (OutputValidationError, AgentError) as exc:
            return base.model_copy(update={"fallback_reason": str(exc), "prompt_version": prompt.ref})
        v = got.value.model_dump()  # the schema is built from the taxonomy at run time
        return base.model_copy(
            update={
                "category": v["category"],
                "sentiment": v["sentiment"],
                "urgency": v["urgency"] if base.paths.get("urgency") != "rules" else base.urgency,
                "confidence": round(float(v["confidence"]), 4),
                "path": "llm",
                "paths": {
                    **base.paths,
                    "category": "llm",
                    "sentiment": "llm",
                    "urgency": base.paths.get("urgency") if base.paths.get("urgency") == "rules" else "llm",
                },
                "prompt_version": prompt.ref,
            }
        )

    # ------------------------------------------------------------------ ingest hook
    def labeler(self, records: list[Feedback], words_only: bool = False) -> list[Feedback]:
        """Fill missing labels of records with machine labels, keeping the rest: source ``rule`` with
        the rule that fired, or ``model`` with the neighbours it leaned on, as each label's basis."""
        todo = [i for i, r in enumerate(records) if any(getattr(r.labels, f) is None for f in FIELDS)]
        if not todo:
            return records
        # a batch repeats texts ("好评", the same complaint posted twice): each is classified once
        distinct = list(dict.fromkeys(records[i].text for i in todo))
        by_text = dict(zip(distinct, self.classify(distinct, words_only=words_only), strict=True))
        out = list(records)
        for i in todo:
            res = by_text[records[i].text]
            update = {f: machine_label(res, f) for f in FIELDS if getattr(records[i].labels, f) is None}
            out[i] = records[i].model_copy(update={"labels": records[i].labels.model_copy(update=update)})
        return out


def words_only_labeler(classifier: Classifier) -> Callable[[list[Feedback]], list[Feedback]]:
    """The ingest's first pass: labels from the words alone (the English encoder left for the fill)."""
    return lambda records: classifier.labeler(records, words_only=True)


def machine_label(res: Classification, name: str) -> LabelValue:
    """A field of a classification as a stored label, with its source and what it rests on."""
    value = getattr(res, name)
    if res.paths.get(name) == "rules":  # the reason: "urgency critical: mentions '12315'"
        why = next((r.split(": ", 1)[-1] for r in res.reasons if r.startswith(f"{name} ")), "rule")
        return LabelValue(value=value, source=LabelSource.RULE, basis=why)
    basis = f"neighbours {', '.join(res.neighbors[:3])}" if res.neighbors else res.paths.get(name)
    return LabelValue(value=value, source=LabelSource.MODEL, basis=basis)


def _binary(scores: np.ndarray) -> np.ndarray:
    """Two-class decision scores as a two-column matrix (negative class first)."""
    s = np.asarray(scores).reshape(-1, 1)
    return np.hstack([-s, s])
