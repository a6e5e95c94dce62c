"""The label sets: categories, sentiments and urgencies, loaded from a data file.

The default taxonomy ships as ``retrieval/data/taxonomy.yaml``. A user file (YAML or JSON) may be
as small as ``{"categories": [{"id": "card_arrival"}]}``; sentiments and urgencies then fall back
to the defaults. Imported labels are matched by id, Chinese name or English name, case-insensitive.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from retrieval.errors import TaxonomyError

DEFAULT_TAXONOMY_PATH = Path(__file__).parent / "data" / "taxonomy.yaml"
# Record field -> the taxonomy's label set for it.
LABEL_SETS = {"category": "categories", "sentiment": "sentiments", "urgency": "urgencies"}


class Label(BaseModel):
    """One label of a closed set."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1, description="Stable label id; every output uses it.")
    name_zh: str | None = None
    name_en: str | None = None
    description: str | None = None
    keywords: tuple[str, ...] = ()

    @field_validator("id", mode="before")
    @classmethod
    def _strip_id(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value.strip() if isinstance(value, str) else value

    @field_validator("keywords", mode="before")
    @classmethod
    def _keywords_as_text(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        return value

    @property
    def aliases(self) -> list[str]:
        """Spellings accepted for this label in imported data."""
        return [a for a in (self.id, self.name_zh, self.name_en) if a]


class Taxonomy(BaseModel):
    """A closed label set for category, sentiment and urgency."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = "custom"
    version: int | str = 1
    categories: tuple[Label, ...] = Field(min_length=1)
    sentiments: tuple[Label, ...] = ()
    urgencies: tuple[Label, ...] = ()

    @field_validator("categories", "sentiments", "urgencies")
    @classmethod
    def _unique_ids(cls, labels: tuple[Label, ...]) -> tuple[Label, ...]:
        seen: set[str] = set()
        for label in labels:
            if label.id in seen:
                raise ValueError(f"duplicate label id {label.id!r}")
            seen.add(label.id)
        return labels

    @cached_property
    def _alias_maps(self) -> dict[str, dict[str, str]]:
        maps: dict[str, dict[str, str]] = {}
        for field in ("categories", "sentiments", "urgencies"):
            mapping: dict[str, str] = {}
            for label in getattr(self, field):
                for alias in label.aliases:
                    mapping.setdefault(alias.strip().casefold(), label.id)
            maps[field] = mapping
        return maps

    def category_ids(self) -> list[str]:
        """Category ids in file order."""
        return self.label_ids("category")

    def labels_of(self, field: str) -> tuple[Label, ...]:
        """The labels a record field (category, sentiment, urgency) takes."""
        return getattr(self, LABEL_SETS[field])  # type: ignore[no-any-return]

    def label_ids(self, field: str) -> list[str]:
        """The ids a record field takes, in file order."""
        return [label.id for label in self.labels_of(field)]

    def normalize(self, field: str, value: str) -> str | None:
        """Map an imported spelling (id, Chinese or English name) to a label id, or None."""
        return self._alias_maps[field].get(value.strip().casefold())


def _with_defaults(data: dict[str, object], default: dict[str, object]) -> dict[str, object]:
    for key in ("sentiments", "urgencies"):
        if not data.get(key):
            data[key] = default[key]
    return data


def _read_mapping(path: Path) -> dict[str, object]:
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TaxonomyError(f"taxonomy file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaxonomyError(f"cannot read taxonomy file {path}: {exc}") from None
    try:
        data = json.loads(raw) if path.suffix.lower() == ".json" else yaml.safe_load(raw)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TaxonomyError(f"taxonomy file {path} is not valid {path.suffix[1:] or 'YAML'}: {first}") from None
    if not isinstance(data, dict):
        raise TaxonomyError(f"taxonomy file {path} must hold a mapping with a 'categories' list")
    return data


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load a taxonomy file, or the shipped default when ``path`` is None.

    Raises:
        TaxonomyError: one line naming the file and the problem.
    """
    default = _read_mapping(DEFAULT_TAXONOMY_PATH)
    if path is None:
        return Taxonomy.model_validate(default)
    p = Path(path)
    data = _with_defaults(_read_mapping(p), default)
    if "name" not in data:
        data["name"] = p.stem
    try:
        return Taxonomy.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise TaxonomyError(f"taxonomy file {p}: {where}: {err['msg']}") from None
