"""Domain errors to gRPC status codes: the one table."""

from __future__ import annotations

import logging

import grpc

from recommender.errors import InvalidArgument, LookalikeError, ModelMismatch, NotFound, Overloaded, Unavailable

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[LookalikeError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    ModelMismatch: grpc.StatusCode.FAILED_PRECONDITION,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The code and message a caller sees; unexpected errors hide their details."""
    for error_type in type(error).__mro__:
        if error_type in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[error_type], str(error)
    log.exception("unexpected error while serving a request", exc_info=error)
    return grpc.StatusCode.INTERNAL, "internal error; the server logged the details"
