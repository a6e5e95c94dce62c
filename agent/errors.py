"""Errors raised by agent code. Only cli.py (and later the HTTP service) maps them to exit codes."""

from retrieval.errors import RetrievalError


class AgentError(Exception):
    """Base class for errors shown to the user as one line."""


class ConfigError(AgentError):
    """A setting is invalid or missing."""


class ProviderError(AgentError):
    """The chat endpoint failed (HTTP status when known; retryable ones were retried)."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False) -> None:
        """Record the status and whether a retry could help."""
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class CircuitOpenError(ProviderError):
    """The endpoint failed repeatedly; calls are refused for a cool-down instead of retried."""


class DeadlineExceeded(ProviderError):
    """The command's overall LLM time budget is spent."""


class OutputValidationError(AgentError):
    """The model's answer did not validate against the schema after the allowed re-asks."""

    def __init__(self, message: str, attempts: int, raw: str | None) -> None:
        """Keep the attempts made and the last raw answer for the fallback reason."""
        super().__init__(message)
        self.attempts = attempts
        self.raw = raw


class UnexpectedModelCall(AgentError):
    """FakeChatModel was called with no queued reply."""


class UnconsumedModelSteps(AgentError):
    """FakeChatModel still holds queued replies when the test ends."""


# Data-layer errors are shown the same way; cli.py catches both bases.
USER_ERRORS: tuple[type[Exception], ...] = (AgentError, RetrievalError)
