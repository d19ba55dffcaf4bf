"""The service's Prometheus metrics, served over HTTP on a port of their own.

Every server owns its metrics (a CollectorRegistry per instance, no module
globals), so tests and in-process servers never share counters. No grpc here:
the use cases and the runtime count through this module too.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


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
            "lookalike_admission_rejections",
            "Calls refused with RESOURCE_EXHAUSTED, by the limit they hit (in_flight calls; inference_queue "
            "inputs are counted by lookalike_inference_queue_rejections).", ["limit"], registry=r)
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

    def watch_batcher(self, batcher) -> None:
        """Report every model batch of the batching scheduler, and its queue."""
        batcher.observers.append(lambda tower, size, waited, ran: self.observe_inference(tower, size, ran, waited))
        self.registry.register(_QueueCollector(batcher))

    def watch_embedder(self, embedder) -> None:
        """Count model batches by the runtime that ran them (runtime hybrid picks one per batch)."""
        self.registry.register(_BatchRuntimeCollector(embedder))

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
    _server: WSGIServer
    _thread: threading.Thread

    @classmethod
    def start(cls, metrics: Metrics, host: str, port: int) -> MetricsEndpoint:
        try:
            server, thread = start_http_server(port, addr=host, registry=metrics.registry)
        except OSError as error:
            raise OSError(f"cannot serve metrics on {host}:{port}: {error.strerror or error}") from None
        return cls(server.server_address[1], server, thread)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _QueueCollector(Collector):
    """The scheduler's queue, read at scrape time."""

    def __init__(self, batcher) -> None:
        self._batcher = batcher

    def collect(self):
        queued = GaugeMetricFamily("lookalike_inference_queued", "Inputs waiting for the model, by tower.",
                                   labels=["kind"])
        for tower in ("image", "text"):
            queued.add_metric([tower], self._batcher.queued(tower))
        yield queued
        yield CounterMetricFamily("lookalike_inference_queue_rejections",
                                  "Calls refused because the inference queue was full.",
                                  value=self._batcher.stats.rejected)


class _BatchRuntimeCollector(Collector):
    """The embedder's model batches by kind and runtime, read at scrape time."""

    def __init__(self, embedder) -> None:
        self._embedder = embedder

    def collect(self):
        batches = CounterMetricFamily("lookalike_model_batches", "Model batches by kind and the runtime that ran them.",
                                      labels=["kind", "runtime"])
        for (kind, runtime), count in sorted(dict(self._embedder.batches).items()):
            batches.add_metric([kind, runtime], count)
        yield batches
