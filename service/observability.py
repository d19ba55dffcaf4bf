"""What a running server tells its operator about each call: metrics by method
and status (service/metrics.py), and one log line per request (text or JSON)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import traceback
import uuid
from typing import AsyncIterator

import grpc

from service.calls import CallRecord, current_call
from service.handlers import wrap_behaviour
from service.metrics import Metrics

log = logging.getLogger(__name__)
request_log = logging.getLogger("lookalike.rpc")

REQUEST_ID_KEY = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
# Probes call these every few seconds: their successes are not worth an INFO line.
QUIET_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
MAX_LOGGED_DETAIL = 300


# -- the per-request interceptor ----------------------------------------------

class RequestObserver(grpc.aio.ServerInterceptor):
    """Times, counts and logs every call once: method, status, duration, request id, peer.

    The request id comes from `x-request-id` metadata or is made here, and goes
    back to the caller in the initial metadata. INTERNAL lines carry the
    traceback (once, here, nowhere else); undecodable requests log at WARNING
    with no traceback.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        request_id = _request_id(details.invocation_metadata or ())

        @contextlib.asynccontextmanager
        async def observed(context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
            record = CallRecord(method, request_id)
            reset = current_call.set(record)
            label = method.lstrip("/")
            in_flight = self._metrics.rpc_in_flight.labels(label)
            in_flight.inc()
            start = time.perf_counter()
            code = grpc.StatusCode.UNKNOWN
            # Read now: once a streaming call has ended, peer() reaches into a freed core call (a segfault).
            peer = context.peer()
            try:
                await context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
                yield
                code = _code(context) or grpc.StatusCode.OK
            except grpc.aio.AbortError:
                code = _code(context) or grpc.StatusCode.UNKNOWN
                raise
            except BaseException as error:  # cancelled by the client, or a failure grpc reports as UNKNOWN
                code = grpc.StatusCode.CANCELLED if _is_cancel(error) else grpc.StatusCode.UNKNOWN
                if code is grpc.StatusCode.UNKNOWN:
                    record.error = error
                raise
            finally:
                seconds = time.perf_counter() - start
                in_flight.dec()
                self._metrics.rpc_requests.labels(label, code.name).inc()
                self._metrics.rpc_duration.labels(label, code.name).observe(seconds)
                _log_call(record, code, seconds, context, peer)
                with contextlib.suppress(ValueError):  # an async generator may finish in another context
                    current_call.reset(reset)

        return wrap_behaviour(handler, observed)


def _request_id(metadata) -> str:
    for key, value in metadata:
        if key == REQUEST_ID_KEY and isinstance(value, str) and _REQUEST_ID.fullmatch(value):
            return value
    return uuid.uuid4().hex


def _code(context: grpc.aio.ServicerContext) -> grpc.StatusCode | None:
    code = context.code()
    if code is None or isinstance(code, grpc.StatusCode):
        return code
    return next((status for status in grpc.StatusCode if status.value[0] == code), None)


def _is_cancel(error: BaseException) -> bool:
    import asyncio

    return isinstance(error, (asyncio.CancelledError, GeneratorExit))


def _log_call(record: CallRecord, code: grpc.StatusCode, seconds: float, context: grpc.aio.ServicerContext,
              peer: str) -> None:
    detail = "" if code is grpc.StatusCode.OK else (context.details() or "")
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    fields = {"method": record.method, "code": code.name, "duration_ms": round(seconds * 1000, 2),
              "request_id": record.request_id, "peer": peer}
    if detail:
        fields["detail"] = detail[:MAX_LOGGED_DETAIL]
    exc_info = None
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) and record.error is not None:
        level, exc_info = logging.ERROR, record.error
    elif code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS):
        level = logging.ERROR
    elif record.undecodable or code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        grpc.StatusCode.DEADLINE_EXCEEDED):
        level = logging.WARNING
    elif code is grpc.StatusCode.OK and record.method.startswith(QUIET_SERVICES):
        level = logging.DEBUG
    else:
        level = logging.INFO
    if not request_log.isEnabledFor(level):
        return
    text = " ".join(f"{key}={_quoted(value)}" for key, value in fields.items())
    request_log.log(level, "rpc %s", text, exc_info=exc_info, extra={"rpc": fields})


def _quoted(value) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c in '"=' for c in text) else text


# -- logging setup ------------------------------------------------------------

class JsonFormatter(logging.Formatter):
    """One JSON object a line; request lines carry their fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
                 "level": record.levelname, "logger": record.name}
        fields = getattr(record, "rpc", None)
        if fields:
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(entry, default=str)


def _library_noise(record: logging.LogRecord) -> bool:
    # open_clip narrates every load on the root logger at INFO, and logs a failed
    # weight download at ERROR before raising it: the server reports that error
    # itself, once. Its warnings pass.
    if record.name != "root":
        return True
    if "open_clip" in record.pathname:
        return logging.WARNING <= record.levelno < logging.ERROR
    return record.levelno >= logging.WARNING


def configure_logging(level: str, log_format: str = "text") -> None:
    """For the `serve` process: level, text or JSON lines, third-party noise filtered."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_library_noise)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
