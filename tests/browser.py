"""Debian's Chromium for the browser tests: found, or the test fails saying how to install it."""

from __future__ import annotations

import shutil

import pytest

INSTALL = "apt-get install chromium (Debian; `make test` does it when run as root)"
# As root Chromium needs --no-sandbox; the rest keeps it from reaching for the network (Google's
# update, sync and field-trial hosts), which this machine refuses and the tests must not touch.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """The Chromium binary (fails the calling test when there is none)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        pytest.fail(f"no Chromium on this machine: {INSTALL}")
    return found
