"""Domain errors to gRPC status codes: the one table."""

from __future__ import annotations

import logging

import grpc

from recommender.errors import InvalidArgument, LookalikeError, ModelMismatch, NotFound, Overloaded, Unavailable
from service.handlers import current_call

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[LookalikeError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    ModelMismatch: grpc.StatusCode.FAILED_PRECONDITION,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The code and message a caller sees; unexpected errors hide their details.

    An unexpected error is a bug: its traceback goes to the call's log line (once,
    with the request id, written by service/observability.py), or straight to the
    log when no call is being observed.
    """
    for error_type in type(error).__mro__:
        if error_type in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[error_type], str(error)
    call = current_call.get()
    if call is None:
        log.error("unexpected error while serving a request", exc_info=error)
        return grpc.StatusCode.INTERNAL, "internal error; the server logged the details"
    call.error = error
    return grpc.StatusCode.INTERNAL, f"internal error; the server logged the details under request id {call.request_id}"
