"""Domain errors. The transport maps each class to a status code in one table
(service/errors.py); messages are written for the caller and say what to fix."""

from __future__ import annotations


class LookalikeError(Exception):
    """Base of every error the service reports to its callers."""


class InvalidArgument(LookalikeError):
    """The request itself is wrong; `field` names the part to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFound(LookalikeError):
    """A referenced item (or user) does not exist."""


class ModelMismatch(LookalikeError):
    """The stored vectors were made by another model than the one running."""


class Unavailable(LookalikeError):
    """A dependency (the vector store, the model) cannot answer right now."""


class Overloaded(LookalikeError):
    """Too much work in flight; the caller should back off and retry."""


class StorageFull(LookalikeError):
    """The store's disk has less free space than it keeps in reserve: writes are refused, reads still work."""
