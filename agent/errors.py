"""Errors raised by agent code. Only cli.py (and later the HTTP service) maps them to exit codes."""

from retrieval.errors import RetrievalError


class AgentError(Exception):
    """Base class for errors shown to the user as one line."""


class ConfigError(AgentError):
    """A setting is invalid or missing."""


# Data-layer errors are shown the same way; cli.py catches both bases.
USER_ERRORS: tuple[type[Exception], ...] = (AgentError, RetrievalError)
