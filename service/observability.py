"""What a running server tells its operator: Prometheus metrics on their own HTTP
port, and one log line per request (text or JSON).

Every server owns its metrics (a CollectorRegistry per instance, no module
globals), so tests and in-process servers never share counters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import AsyncIterator, Iterator

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from service.handlers import CallRecord, current_call, wrap_behaviour

log = logging.getLogger(__name__)
request_log = logging.getLogger("lookalike.rpc")

REQUEST_ID_KEY = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Probes call these every few seconds: their successes are not worth an INFO line.
QUIET_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
MAX_LOGGED_DETAIL = 300


class Metrics:
    """The service's metrics, on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.rpc_requests = Counter("lookalike_rpc_requests", "Finished RPCs by method and status code.",
                                    ["method", "code"], registry=r)
        self.rpc_duration = Histogram("lookalike_rpc_duration_seconds", "RPC wall time by method and status code.",
                                      ["method", "code"], buckets=LATENCY_BUCKETS, registry=r)
        self.rpc_in_flight = Gauge("lookalike_rpc_in_flight", "RPCs being served now.", ["method"], registry=r)
        self.admission_rejections = Counter(
            "lookalike_admission_rejections", "Calls refused with RESOURCE_EXHAUSTED over the in-flight limit.",
            registry=r)
        self.inference_batch_size = Histogram("lookalike_inference_batch_size", "Inputs per model batch.",
                                              ["kind"], buckets=BATCH_BUCKETS, registry=r)
        self.inference_queue_wait = Histogram(
            "lookalike_inference_queue_wait_seconds", "Time inputs wait before the model starts on them.",
            ["kind"], buckets=LATENCY_BUCKETS, registry=r)
        self.model_seconds_per_item = Histogram(
            "lookalike_model_seconds_per_item", "Model time per input (batch time / batch size).",
            ["kind"], buckets=LATENCY_BUCKETS, registry=r)
        self.catalog_duration = Histogram("lookalike_catalog_duration_seconds",
                                          "Vector store calls by operation.", ["operation", "outcome"],
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.items_upserted = Counter("lookalike_items_upserted", "Items stored by UpsertItems.", registry=r)
        self.events_recorded = Counter("lookalike_events_recorded", "Events stored by RecordEvents.", registry=r)
        self.health_serving = Gauge("lookalike_health_serving", "1 while health says SERVING, else 0.", registry=r)

    def observe_inference(self, kind: str, batch_size: int, seconds: float, queue_wait: float | None = None) -> None:
        """One model batch: `kind` is image or text. The batching scheduler reports here."""
        if batch_size <= 0:
            return
        self.inference_batch_size.labels(kind).observe(batch_size)
        self.model_seconds_per_item.labels(kind).observe(seconds / batch_size)
        if queue_wait is not None:
            self.inference_queue_wait.labels(kind).observe(queue_wait)

    @contextlib.contextmanager
    def catalog_call(self, operation: str) -> Iterator[None]:
        start = time.perf_counter()
        outcome = "error"
        try:
            yield
            outcome = "ok"
        finally:
            self.catalog_duration.labels(operation, outcome).observe(time.perf_counter() - start)


@dataclass
class MetricsEndpoint:
    """Prometheus /metrics over HTTP on a thread of its own."""

    port: int
    _server: object
    _thread: object

    @classmethod
    def start(cls, metrics: Metrics, host: str, port: int) -> "MetricsEndpoint":
        try:
            server, thread = start_http_server(port, addr=host, registry=metrics.registry)
        except OSError as error:
            raise OSError(f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from None
        return cls(server.server_address[1], server, thread)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


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
                _log_call(record, code, seconds, context)
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


def _log_call(record: CallRecord, code: grpc.StatusCode, seconds: float, context: grpc.aio.ServicerContext) -> None:
    detail = "" if code is grpc.StatusCode.OK else (context.details() or "")
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    fields = {"method": record.method, "code": code.name, "duration_ms": round(seconds * 1000, 2),
              "request_id": record.request_id, "peer": context.peer()}
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
