"""Metrics scraped from a real HTTP endpoint, request log lines from a real server,
and the drain that no open health Watch can hold up."""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from service.api.lookalike.v1 import search_service_pb2 as search_pb, search_service_pb2_grpc as search_grpc
from service.client import LookalikeClient, NewItem, UserEvent
from service.observability import JsonFormatter
from tests.support import ServerThread, deps_with, settings_for

ROOT = Path(__file__).resolve().parents[2]


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample of the endpoint, keyed by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def observed(tmp_path, tiny_embedder):
    settings = settings_for(tmp_path, metrics_port=0, max_inflight=2)
    with ServerThread(settings, deps_with(settings, tiny_embedder)) as running:
        yield running


def test_metrics_endpoint_counts_calls_codes_work_and_health(observed):
    port = observed.server.metrics_endpoint.port
    assert value(scrape(port), "lookalike_health_serving") == 1
    with LookalikeClient(observed.target) as client:
        client.upsert([NewItem(id="a", text="red dress"), NewItem(id="b", text="blue hat"), NewItem(id="", text="x")])
        client.record_events([UserEvent("u", "a", "click"), UserEvent("u", "b", "view")])
        client.search(text="a red dress", target="text")
        with pytest.raises(grpc.RpcError):
            client.search(text="   ")
        client.embed(images=[], texts=["one", "two", "three"])

    samples = scrape(port)
    search = "lookalike.v1.SearchService/Search"
    assert value(samples, "lookalike_rpc_requests_total", method=search, code="OK") == 1
    assert value(samples, "lookalike_rpc_requests_total", method=search, code="INVALID_ARGUMENT") == 1
    assert value(samples, "lookalike_rpc_duration_seconds_count", method=search, code="OK") == 1
    assert value(samples, "lookalike_rpc_requests_total", method="lookalike.v1.CatalogService/UpsertItems",
                 code="OK") == 1
    assert value(samples, "lookalike_rpc_in_flight", method=search) == 0
    assert value(samples, "lookalike_items_upserted_total") == 2
    assert value(samples, "lookalike_events_recorded_total") == 2
    assert value(samples, "lookalike_catalog_duration_seconds_count", operation="search_by_vector",
                 outcome="ok") == 1
    assert value(samples, "lookalike_catalog_duration_seconds_count", operation="record_events", outcome="ok") == 1
    assert value(samples, "lookalike_inference_batch_size_sum", kind="text") >= 3 + 1
    assert value(samples, "lookalike_model_seconds_per_item_count", kind="text") >= 2
    assert value(samples, "lookalike_inference_queue_wait_seconds_count", kind="text") >= 2
    assert value(samples, "lookalike_inference_queued", kind="text") == 0
    assert ("lookalike_inference_queue_rejections_total", frozenset()) in samples


def test_admission_rejections_and_in_flight_are_counted(observed):
    port = observed.server.metrics_endpoint.port
    with LookalikeClient(observed.target) as client:
        inputs: list[queue.Queue] = [queue.Queue(), queue.Queue()]
        streams = [client.embed_stream(iter(feed.get, None)) for feed in inputs]
        for feed, stream in zip(inputs, streams):
            feed.put(("held", "keeps a slot busy"))
            assert next(stream)[0] == "held"
        assert value(scrape(port), "lookalike_rpc_in_flight", method="lookalike.v1.EmbeddingService/EmbedStream") == 2
        with pytest.raises(grpc.RpcError) as raised:
            client.embed(texts=["one too many"])
        assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        for feed in inputs:
            feed.put(None)
        for stream in streams:
            assert list(stream) == []
    samples = scrape(port)
    assert value(samples, "lookalike_admission_rejections_total", limit="in_flight") == 1
    assert value(samples, "lookalike_rpc_requests_total", method="lookalike.v1.EmbeddingService/Embed",
                 code="RESOURCE_EXHAUSTED") == 1


def test_servers_do_not_share_metrics(tmp_path, tiny_embedder, observed):
    settings = settings_for(tmp_path / "other", metrics_port=0)
    with ServerThread(settings, deps_with(settings, tiny_embedder)) as other:
        with LookalikeClient(observed.target) as client:
            client.search(text="only on the first server", target="text")
        method = "lookalike.v1.SearchService/Search"
        assert value(scrape(observed.server.metrics_endpoint.port), "lookalike_rpc_requests_total",
                     method=method, code="OK") == 1
        assert value(scrape(other.server.metrics_endpoint.port), "lookalike_rpc_requests_total",
                     method=method, code="OK") == 0


# -- request logs ----------------------------------------------------------------

def rpc_lines(caplog, expected: int = 1) -> list[logging.LogRecord]:
    """The request lines; a call's line is written just after its status reaches the client."""
    deadline = time.monotonic() + 10
    while True:
        lines = [record for record in caplog.records if record.name == "lookalike.rpc"]
        if len(lines) >= expected or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_one_log_line_per_request_with_the_request_id(server, caplog):
    caplog.set_level(logging.INFO, logger="lookalike.rpc")
    with grpc.insecure_channel(server.target) as channel:
        search = search_grpc.SearchServiceStub(channel)
        reply, call = search.Search.with_call(search_pb.SearchRequest(text="red", target=2),
                                              metadata=(("x-request-id", "req-42"),))
        assert dict(call.initial_metadata())["x-request-id"] == "req-42"
        with pytest.raises(grpc.RpcError) as raised:
            search.Search(search_pb.SearchRequest())
        generated = dict(raised.value.initial_metadata())["x-request-id"]
    assert len(generated) == 32

    lines = rpc_lines(caplog, expected=2)
    assert [(line.rpc["code"], line.rpc["request_id"]) for line in lines] == [
        ("OK", "req-42"), ("INVALID_ARGUMENT", generated)]
    ok, bad = lines
    assert ok.rpc["method"] == "/lookalike.v1.SearchService/Search" and ok.levelno == logging.INFO
    assert ok.rpc["peer"].startswith("ipv") and ok.rpc["duration_ms"] >= 0
    assert "request_id=req-42" in ok.getMessage()
    assert "query" in bad.rpc["detail"] and bad.exc_info is None
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_an_internal_error_logs_its_traceback_once_with_the_request_id(server, caplog, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the model path")

    # fault injection into the real server's engine
    monkeypatch.setattr(server.server.runtime.engine, "get_items", broken)
    caplog.set_level(logging.INFO)
    with LookalikeClient(server.target) as client, pytest.raises(grpc.RpcError) as raised:
        client.get(["a"])
    assert raised.value.code() is grpc.StatusCode.INTERNAL
    assert "a bug" not in raised.value.details(), "internals stay in the log"
    request_id = dict(raised.value.initial_metadata())["x-request-id"]
    assert request_id in raised.value.details()

    rpc_lines(caplog)
    with_traceback = [record for record in caplog.records if record.exc_info]
    assert len(with_traceback) == 1
    (line,) = with_traceback
    assert line.name == "lookalike.rpc" and line.levelno == logging.ERROR
    assert line.rpc["request_id"] == request_id and line.rpc["code"] == "INTERNAL"
    assert "a bug in the model path" in logging.Formatter().format(line)
    assert sum("a bug in the model path" in logging.Formatter().format(r) for r in caplog.records) == 1


def test_a_failed_model_batch_logs_its_traceback_once_naming_the_request(server, caplog, monkeypatch):
    def broken(tokens):
        raise RuntimeError("the text tower broke")

    # fault injection into the real server's model
    monkeypatch.setattr(server.server.runtime.embedder, "encode_texts", broken)
    caplog.set_level(logging.INFO)
    with LookalikeClient(server.target) as client, pytest.raises(grpc.RpcError) as raised:
        client.embed(texts=["doomed"])
    assert raised.value.code() is grpc.StatusCode.INTERNAL
    request_id = dict(raised.value.initial_metadata())["x-request-id"]
    assert request_id in raised.value.details() and "broke" not in raised.value.details()

    (line,) = rpc_lines(caplog)
    assert line.rpc["code"] == "INTERNAL" and line.rpc["request_id"] == request_id
    assert line.levelno == logging.ERROR and line.exc_info is None, "the batch's own line carries the traceback"
    (with_traceback,) = [record for record in caplog.records if record.exc_info]
    assert with_traceback.name == "service.embedding.batching" and request_id in with_traceback.getMessage()
    assert sum("the text tower broke" in logging.Formatter().format(r) for r in caplog.records) == 1


def test_an_undecodable_request_logs_a_warning_without_a_traceback(server, caplog):
    caplog.set_level(logging.INFO)
    with grpc.insecure_channel(server.target) as channel:
        raw = channel.unary_unary("/lookalike.v1.SearchService/Search")
        with pytest.raises(grpc.RpcError) as raised:
            raw(b"\xff\xff\xff\xff not protobuf")
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    lines = rpc_lines(caplog)
    assert [(line.levelno, line.rpc["code"]) for line in lines] == [(logging.WARNING, "INVALID_ARGUMENT")]
    assert not [record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]


def test_json_log_lines_carry_the_request_fields(server, caplog):
    caplog.set_level(logging.INFO, logger="lookalike.rpc")
    with LookalikeClient(server.target) as client:
        client.search(text="json please", target="text")
    (line,) = rpc_lines(caplog)
    entry = json.loads(JsonFormatter().format(line))
    assert entry["level"] == "INFO" and entry["logger"] == "lookalike.rpc"
    assert entry["method"] == "/lookalike.v1.SearchService/Search" and entry["code"] == "OK"
    assert {"request_id", "peer", "duration_ms", "time"} <= set(entry)


def test_the_offline_model_failure_is_logged_once(tmp_path):
    """`lookalike serve` with hub weights and no hub: one error line says why, then exit 2."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "LOOKALIKE_LOG_FORMAT": "json"}
    environment.pop("LOOKALIKE_AUTH_TOKENS", None)
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--port", "0", "--data-dir", str(tmp_path),
         "--model", "ViT-B-32", "--pretrained", "laion2b_s34b_b79k"],
        capture_output=True, text=True, timeout=300, env=environment, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert entries, result.stderr
    assert sum("laion2b_s34b_b79k" in entry.get("message", "") for entry in entries) == 1, result.stderr
    assert sum(entry["level"] == "ERROR" for entry in entries) == 2  # the reason, then "exiting"


# -- drain ----------------------------------------------------------------------------

def test_an_open_health_watch_does_not_hold_the_drain(tmp_path, tiny_embedder):
    settings = settings_for(tmp_path, grace_seconds=30)
    server_thread = ServerThread(settings, deps_with(settings, tiny_embedder))
    with server_thread as server, grpc.insecure_channel(server.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING

        started = time.monotonic()
        server.run(server.server.stop(), timeout=60)  # the configured 30 s grace
        elapsed = time.monotonic() - started
        server.server = None

        assert [reply.status for reply in watch] == [health_pb2.HealthCheckResponse.NOT_SERVING]
        assert elapsed < 10, f"stop took {elapsed:.1f}s: the Watch stream held the drain"
