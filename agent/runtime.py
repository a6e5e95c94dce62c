"""Build what a command needs (store, embedder, taxonomy, zone) from one Settings object."""

from __future__ import annotations

from datetime import tzinfo

from agent.config import Settings
from agent.errors import ConfigError
from retrieval.records import get_zone
from retrieval.store import Store
from retrieval.taxonomy import Taxonomy, load_taxonomy
from retrieval.text import Embedder, HashEmbedding, OpenAIEndpointEmbedding


def make_embedder(settings: Settings) -> Embedder:
    """The configured embedding function (local hash by default)."""
    if settings.embedding == "openai":
        return OpenAIEndpointEmbedding(model=settings.embedding_model, base_url=settings.embedding_base_url)
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


def zone_of(settings: Settings) -> tzinfo:
    """The zone naive timestamps take."""
    try:
        return get_zone(settings.timezone)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
