"""Embed and EmbedStream through a real server and channel."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from tests.conftest import png


def test_embed_texts_and_images_gives_unit_vectors_with_model_identity(client, tiny_embedder):
    reply = client.embed(texts=["a red circle", "a blue square"], images=[png("red"), png("blue")])

    assert reply.text_vectors.shape == (2, tiny_embedder.dim)
    assert reply.image_vectors.shape == (2, tiny_embedder.dim)
    assert reply.dim == tiny_embedder.dim
    assert reply.model == "lookalike-tiny/random-init(seed=0)"
    norms = np.linalg.norm(np.vstack([reply.text_vectors, reply.image_vectors]), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    assert not np.allclose(reply.text_vectors[0], reply.text_vectors[1])


def test_text_longer_than_the_context_is_truncated_not_rejected(client):
    long_text = "a very long description " * 200
    reply = client.embed(texts=[long_text])
    assert reply.text_vectors.shape[0] == 1


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

    assert [key for key, _ in replies] == ["t1", "i1", "t2"]
    np.testing.assert_allclose(replies[1][1], tiny_embedder.embed_images([png("red")])[0], atol=1e-5)


def test_embed_stream_rejects_a_bad_image_and_the_server_stays_up(client):
    with pytest.raises(grpc.RpcError) as raised:
        list(client.embed_stream([("ok", "text"), ("broken", b"\x89PNG garbage")]))
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "broken" in raised.value.details()
    assert client.embed(texts=["still here"]).text_vectors.shape[0] == 1
