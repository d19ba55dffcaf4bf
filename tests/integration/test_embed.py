"""Embed and EmbedStream through a real server and channel."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest

from tests.conftest import png


def test_embed_texts_and_images_gives_unit_vectors_with_model_identity(client, tiny_embedder):
    reply = client.embed(texts=["a red circle", "a blue square"], images=[png("red"), png("blue")])

    assert np.asarray(reply.text_vectors).shape == (2, tiny_embedder.dim)
    assert np.asarray(reply.image_vectors).shape == (2, tiny_embedder.dim)
    assert reply.dim == tiny_embedder.dim
    assert reply.model == "lookalike-tiny/random-init(seed=0)"
    norms = np.linalg.norm(np.vstack([reply.text_vectors, reply.image_vectors]), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    assert not np.allclose(reply.text_vectors[0], reply.text_vectors[1])


def test_text_longer_than_the_context_is_truncated_not_rejected(client):
    long_text = "a very long description " * 200
    reply = client.embed(texts=[long_text])
    assert len(reply.text_vectors) == 1


def test_embed_matches_the_embedder_called_directly(client, tiny_embedder):
    reply = client.embed(texts=["green star"], images=[png("green")])
    np.testing.assert_allclose(reply.text_vectors[0], tiny_embedder.embed_texts(["green star"])[0], atol=1e-5)
    np.testing.assert_allclose(reply.image_vectors[0], tiny_embedder.embed_images([png("green")])[0], atol=1e-5)


@pytest.mark.parametrize("texts, images, field", [
    ([], [], "texts"),
    (["fine", "  "], [], "texts[1]"),
    (["fine"], [png("red"), b"not an image"], "images[1]"),
    ([], [b""], "images[0]"),
])
def test_bad_embed_input_is_invalid_argument_naming_the_field(client, texts, images, field):
    with pytest.raises(grpc.RpcError) as raised:
        client.embed(texts=texts, images=images)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(field)
    assert client.health() == "SERVING"


def test_embed_stream_answers_every_input_in_order(client, tiny_embedder):
    inputs = [("t1", "a red circle"), ("i1", png("red")), ("t2", "a blue square")]
    replies = list(client.embed_stream(inputs))

    assert [reply.key for reply in replies] == ["t1", "i1", "t2"]
    assert all(reply.model == "lookalike-tiny/random-init(seed=0)" for reply in replies)
    np.testing.assert_allclose(replies[1][1], tiny_embedder.embed_images([png("red")])[0], atol=1e-5)


def test_embed_stream_rejects_a_bad_image_and_the_server_stays_up(client):
    with pytest.raises(grpc.RpcError) as raised:
        list(client.embed_stream([("ok", "text"), ("broken", b"\x89PNG garbage")]))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "broken" in raised.value.details()
    assert len(client.embed(texts=["still here"]).text_vectors) == 1


def test_embed_stream_batches_a_bulk_stream_and_keeps_its_order(server, client, tiny_embedder):
    inputs = [(f"k{n}", f"caption number {n}" if n % 3 else png((n * 20 % 255, 90, 160))) for n in range(24)]
    batcher = server.server.runtime.batcher
    batches_before = sum(batcher.stats.batches.values())

    replies = list(client.embed_stream(inputs))

    assert [reply.key for reply in replies] == [key for key, _ in inputs]
    for (_, value), (_, vector, _) in zip(inputs, replies):
        want = (tiny_embedder.embed_texts([value]) if isinstance(value, str) else tiny_embedder.embed_images([value]))
        np.testing.assert_allclose(vector, want[0], atol=1e-5)
    assert sum(batcher.stats.batches.values()) - batches_before < len(inputs)


def test_concurrent_calls_share_batches_and_each_gets_its_own_vectors(server, client, tiny_embedder):
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"query {n} about a {'red' if n % 2 else 'blue'} thing" for n in range(16)]
    images = [png((n * 15, 255 - n * 15, 40)) for n in range(8)]
    batcher = server.server.runtime.batcher
    inputs_before = batcher.stats.inputs["text"]
    with ThreadPoolExecutor(16) as pool:
        text_replies = list(pool.map(lambda text: client.embed(texts=[text]).text_vectors[0], texts))
        image_replies = list(pool.map(lambda image: client.embed(images=[image]).image_vectors[0], images))

    np.testing.assert_allclose(np.vstack(text_replies), tiny_embedder.embed_texts(texts), atol=1e-5)
    np.testing.assert_allclose(np.vstack(image_replies), tiny_embedder.embed_images(images), atol=1e-5)
    assert batcher.stats.inputs["text"] - inputs_before == len(texts)


def test_a_full_batch_queue_answers_resource_exhausted_and_recovers(tmp_path, tiny_embedder):
    from concurrent.futures import ThreadPoolExecutor

    from service.client import LookalikeClient
    from tests.support import ServerThread, deps_with, inference_thread_held, settings_for

    settings = settings_for(tmp_path, max_queued_inputs=3)
    with ServerThread(settings, deps_with(settings, tiny_embedder)) as server, \
            LookalikeClient(server.target, timeout=30, retries=0) as client, ThreadPoolExecutor(2) as pool:
        batcher = server.server.runtime.batcher
        with inference_thread_held(server):
            # The first call's batch waits for the busy model; the next call's inputs stay queued.
            pacer = pool.submit(client.embed, texts=["pacer"])
            while not (batcher.outstanding("text") == 1 and batcher.queued() == 0):
                assert not pacer.done(), pacer.result()
                time.sleep(0.01)
            first = pool.submit(client.embed, texts=["one", "two", "three"])
            while batcher.queued("text") < 3:
                assert not first.done(), first.result()
                time.sleep(0.01)
            with pytest.raises(grpc.RpcError) as raised:
                client.embed(texts=["one too many"])
            assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit 3" in raised.value.details()

        assert len(pacer.result().text_vectors) == 1
        assert len(first.result().text_vectors) == 3
        assert len(client.embed(texts=["room again"]).text_vectors) == 1
        assert client.health() == "SERVING"
