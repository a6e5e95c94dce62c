"""Errors raised by the data layer. Each message is one line a user can act on."""


class RetrievalError(Exception):
    """Base class for storage, ingestion and search errors."""


class TaxonomyError(RetrievalError):
    """A taxonomy file is missing or malformed."""


class InputFileError(RetrievalError):
    """An input file is unusable as a whole (missing, unreadable, no text column)."""


class StoreError(RetrievalError):
    """The store (Chroma or the SQL mirror) cannot be reached or is inconsistent."""


class RowError(ValueError):
    """One input row is invalid; the message is the reason written to the rejects file."""
