"""The record of the call being served, shared by the layers inside it."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass
class CallRecord:
    """What the layers inside a call learn, for the one log line written at its end."""

    method: str
    request_id: str
    error: BaseException | None = None  # the unexpected exception behind an INTERNAL
    undecodable: bool = False


class AlreadyLogged(Exception):
    """An unexpected failure whose traceback is already in the log, under the request ids it names
    (a model batch fails every call in it, and is logged once for all of them): a call failing
    with it reports INTERNAL without logging the traceback again."""


current_call: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar("lookalike_call", default=None)
