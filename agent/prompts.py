"""Versioned prompt files: ``prompts/<task>.v<N>.md`` with optional YAML front matter.

A prompt is never edited after it ships; a change is a new version file. Every LLM-backed result
records the ``task@vN`` it used. Untrusted text (feedback, resolutions, questions) enters a prompt
only through :func:`fence`, which labels it as data and neutralises anything that could close the
fence early.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from agent.errors import ConfigError

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
DATA_DIR = Path(__file__).resolve().parent / "data"
_NAME = re.compile(r"^(?P<task>[a-z0-9_]+)\.v(?P<version>\d+)\.md$")
FENCE_OPEN = "<<<UNTRUSTED_DATA"
FENCE_CLOSE = "UNTRUSTED_DATA>>>"


@dataclass(frozen=True)
class Prompt:
    """One prompt version."""

    task: str
    version: int
    description: str
    variables: tuple[str, ...]
    template: str

    @property
    def ref(self) -> str:
        """``task@vN``, recorded with every result."""
        return f"{self.task}@v{self.version}"

    def render(self, **values: Any) -> str:
        """Fill ``$variables``; a missing or unexpected variable is an error, not a blank."""
        missing = [v for v in self.variables if v not in values]
        extra = [k for k in values if k not in self.variables]
        if missing or extra:
            raise ConfigError(f"prompt {self.ref}: missing variables {missing}, unexpected {extra}")
        return string.Template(self.template).substitute({k: str(v) for k, v in values.items()})


def fence(text: str, label: str = "feedback") -> str:
    """Wrap untrusted text as labelled data that cannot end the fence or fake a new one."""
    cleaned = text.replace(FENCE_OPEN, "<<< UNTRUSTED_DATA").replace(FENCE_CLOSE, "UNTRUSTED_DATA >>>")
    return f"{FENCE_OPEN} kind={label}\n{cleaned}\n{FENCE_CLOSE}"


def _parse(path: Path) -> Prompt:
    match = _NAME.match(path.name)
    if match is None:
        raise ConfigError(f"prompt file {path.name} must be named <task>.v<N>.md")
    raw = path.read_text(encoding="utf-8")
    meta: dict[str, Any] = {}
    if raw.startswith("---\n"):
        head, _, raw = raw[4:].partition("\n---\n")
        meta = yaml.safe_load(head) or {}
    declared = tuple(meta.get("variables", ()))
    used = tuple(
        dict.fromkeys(
            m.group("named") or m.group("braced")
            for m in string.Template.pattern.finditer(raw)
            if m.group("named") or m.group("braced")
        )
    )
    if set(declared) != set(used):
        raise ConfigError(
            f"prompt {path.name}: front matter declares {sorted(declared)} but the text uses {sorted(used)}"
        )
    return Prompt(match["task"], int(match["version"]), str(meta.get("description", "")), used, raw.strip() + "\n")


@cache
def all_prompts(directory: Path = PROMPTS_DIR) -> dict[tuple[str, int], Prompt]:
    """Every prompt file, by (task, version)."""
    return {(p.task, p.version): p for p in map(_parse, sorted(directory.glob("*.v*.md")))}


def load_prompt(task: str, version: int | None = None, directory: Path = PROMPTS_DIR) -> Prompt:
    """The given version of a task's prompt, or its latest."""
    versions = {v: p for (t, v), p in all_prompts(directory).items() if t == task}
    if not versions:
        raise ConfigError(f"no prompt files for task {task!r} in {directory}")
    if version is None:
        return versions[max(versions)]
    if version not in versions:
        raise ConfigError(f"prompt {task}@v{version} does not exist; have {sorted(versions)}")
    return versions[version]


@cache
def load_data(name: str) -> dict[str, Any]:
    """A wording or cue file of ``agent/data`` (``reply``, ``ask``), read once per process."""
    data: dict[str, Any] = yaml.safe_load((DATA_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    return data
