"""Domain errors to gRPC status codes: the one table.

A field error travels twice: in the status message (`items[3].image: ...`) and
as a google.rpc.BadRequest detail, so clients can read the field without
parsing text. Messages are capped: a status message is metadata, and an echoed
10 KB value would break the client's metadata limit.
"""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from recommender.errors import (
    InvalidArgument,
    LookalikeError,
    ModelMismatch,
    NotFound,
    Overloaded,
    StorageFull,
    Unavailable,
)
from service.calls import AlreadyLogged, current_call

log = logging.getLogger(__name__)

MAX_MESSAGE = 1000
MAX_FIELD = 200

STATUS_BY_ERROR: dict[type[LookalikeError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    ModelMismatch: grpc.StatusCode.FAILED_PRECONDITION,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    StorageFull: grpc.StatusCode.RESOURCE_EXHAUSTED,  # gRPC's own example: "the entire file system is out of space"
}


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The code and message a caller sees; unexpected errors hide their details.

    An unexpected error is a bug: its traceback goes to the call's log line (once,
    with the request id, written by service/observability.py), or straight to the
    log when no call is being observed; unless it is AlreadyLogged (a failed model
    batch, logged once by the scheduler with the request ids of all its calls).
    """
    for error_type in type(error).__mro__:
        if error_type in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[error_type], clip(str(error), MAX_MESSAGE)
    call = current_call.get()
    if call is None:
        if not isinstance(error, AlreadyLogged):
            log.error("unexpected error while serving a request", exc_info=error)
        return grpc.StatusCode.INTERNAL, "internal error; the server logged the details"
    if not isinstance(error, AlreadyLogged):
        call.error = error
    return grpc.StatusCode.INTERNAL, f"internal error; the server logged the details under request id {call.request_id}"


def rich_status(error: BaseException) -> grpc.Status:
    """The status for `error`, with a BadRequest detail when it names a field."""
    code, message = status_for(error)
    field = getattr(error, "field", None) if isinstance(error, InvalidArgument) else None
    return bad_request(message, field) if field else _status(code, message, [])


def bad_request(message: str, field: str) -> grpc.Status:
    violation = error_details_pb2.BadRequest.FieldViolation(field=clip(field, MAX_FIELD),
                                                            description=clip(message, MAX_MESSAGE))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    return _status(grpc.StatusCode.INVALID_ARGUMENT, clip(message, MAX_MESSAGE), [detail])


def _status(code: grpc.StatusCode, message: str, details: list[any_pb2.Any]) -> grpc.Status:
    return rpc_status.to_status(status_pb2.Status(code=getattr(code_pb2, code.name), message=message,
                                                  details=details))


def clip(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with a note of how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"
