"""Server lifecycle: health transitions, reflection, outages, model guard, overload, drain."""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
import time

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from service.client import LookalikeClient, NewItem
from service.embedding import ModelSpec, load_embedder
from service.runtime import Dependencies
from tests.support import ServerThread, deps_with, settings_for


def test_health_is_not_serving_until_the_model_is_loaded(tmp_path, tiny_embedder):
    settings = settings_for(tmp_path)
    release = threading.Event()

    def slow_load():
        release.wait(30)  # the real model, held back so the loading phase can be observed
        return tiny_embedder

    real = deps_with(settings, tiny_embedder)
    deps = Dependencies(slow_load, real.open_storage, real.storage_location)
    with ServerThread(settings, deps, wait_ready=False) as server, LookalikeClient(server.target) as client:
        assert client.health() == "NOT_SERVING"
        assert client.health("lookalike.v1.SearchService") == "NOT_SERVING"
        with pytest.raises(grpc.RpcError) as raised:
            client.search(text="too early")
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "starting" in raised.value.details()

        release.set()
        client.wait_until_serving(timeout=30)
        assert client.health() == "SERVING"
        assert client.health("lookalike.v1.CatalogService") == "SERVING"
        assert client.search(text="now it works") == []


def test_reflection_lists_the_lookalike_services(client):
    channel = grpc.insecure_channel(client_target(client))
    try:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    finally:
        channel.close()
    assert {"lookalike.v1.EmbeddingService", "lookalike.v1.CatalogService", "lookalike.v1.SearchService",
            "grpc.health.v1.Health"} <= services


def client_target(client: LookalikeClient) -> str:
    return client._channel._channel.target().decode()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_an_unreachable_vector_store_means_unavailable_not_a_crash(tmp_path, tiny_embedder, scheme):
    port = closed_port()
    settings = settings_for(tmp_path, qdrant_url=f"{scheme}://127.0.0.1:{port}", qdrant_timeout_s=2)
    with ServerThread(settings, deps_with(settings, tiny_embedder), wait_ready=False) as server, \
            LookalikeClient(server.target) as client:
        time.sleep(1.0)  # let startup try (and fail) to reach the store
        assert client.health() == "NOT_SERVING"
        with pytest.raises(grpc.RpcError) as raised:
            client.search(text="anyone there?")
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        assert server.server.runtime.startup_error is None, "an outage is retried, never fatal"


def test_a_collection_made_by_another_model_refuses_writes(tmp_path, tiny_embedder):
    settings = settings_for(tmp_path)
    with ServerThread(settings, deps_with(settings, tiny_embedder)) as server, \
            LookalikeClient(server.target) as client:
        client.upsert([NewItem(id="old", text="made by seed 0")])

    other_model = load_embedder(ModelSpec.parse("lookalike-tiny", "none"), seed=1)
    assert other_model.identity != tiny_embedder.identity
    with ServerThread(settings, deps_with(settings, other_model)) as server, \
            LookalikeClient(server.target) as client:
        for write in (lambda: client.upsert([NewItem(id="new", text="made by seed 1")]),
                      lambda: client.search(text="compare across models")):
            with pytest.raises(grpc.RpcError) as raised:
                write()
            assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert "random-init(seed=0)" in raised.value.details()
            assert "new collection" in raised.value.details()
        assert [item.id for item in client.get(["old"]).items] == ["old"], "reads of stored data still work"


def test_requests_beyond_the_inflight_limit_are_refused_then_served_again(tmp_path, tiny_embedder):
    settings = settings_for(tmp_path, max_inflight=1)
    with ServerThread(settings, deps_with(settings, tiny_embedder)) as server, \
            LookalikeClient(server.target) as client:
        inputs: queue.Queue = queue.Queue()
        stream = client.embed_stream(iter(inputs.get, None))
        inputs.put(("held", "keeps the only slot busy"))
        assert next(stream)[0] == "held"

        with pytest.raises(grpc.RpcError) as raised:
            client.embed(texts=["one too many"])
        assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit 1" in raised.value.details()

        inputs.put(None)
        assert list(stream) == []
        assert len(client.embed(texts=["room again"]).text_vectors) == 1


def test_stop_drains_in_flight_calls_and_refuses_new_ones(tmp_path, tiny_embedder):
    settings = settings_for(tmp_path)
    server_thread = ServerThread(settings, deps_with(settings, tiny_embedder))
    with server_thread as server, LookalikeClient(server.target) as client:
        inputs: queue.Queue = queue.Queue()
        stream = client.embed_stream(iter(inputs.get, None))
        inputs.put(("before", "first"))
        assert next(stream)[0] == "before"

        stopping = asyncio.run_coroutine_threadsafe(server.server.stop(grace=10), server.loop)
        time.sleep(0.5)
        with pytest.raises(grpc.RpcError) as raised:
            LookalikeClient(server.target, timeout=5).embed(texts=["new call during drain"])
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE

        inputs.put(("during", "second"))
        assert next(stream)[0] == "during", "the in-flight stream keeps being served while draining"
        inputs.put(None)
        assert list(stream) == []
        stopping.result(timeout=15)
        server.server = None  # already stopped
