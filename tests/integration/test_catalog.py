"""UpsertItems, GetItems, DeleteItems through a real server on embedded Qdrant."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from service.api.lookalike.v1 import types_pb2 as t
from service.client import NewItem
from tests.conftest import png


def unit(seed: int, dim: int) -> list[float]:
    vector = np.random.default_rng(seed).normal(size=dim)
    return (vector / np.linalg.norm(vector)).tolist()


def test_upsert_embeds_images_and_texts_and_get_returns_them(client, tiny_embedder):
    summary = client.upsert([
        NewItem(id="photo", image=png("red"), payload={"color": "red", "price": 12, "tags": ["a", "b"]}),
        NewItem(id="caption", text="a blue square", payload={"color": "blue"}),
        NewItem(id="both", image=png("green"), text="a green thing"),
    ])
    assert (summary.upserted, summary.failed) == (3, 0)

    reply = client.get(["both", "photo", "caption", "nope"], with_vectors=True)
    by_id = {item.id: item for item in reply.items}
    assert [item.id for item in reply.items] == ["both", "photo", "caption"]
    assert list(reply.missing_ids) == ["nope"]
    assert by_id["photo"].has_image and by_id["photo"].text is None
    assert by_id["photo"].payload["price"] == 12 and list(by_id["photo"].payload["tags"]) == ["a", "b"]
    assert not by_id["caption"].has_image and by_id["caption"].text == "a blue square"
    assert by_id["caption"].image_vector is None
    np.testing.assert_allclose(by_id["photo"].image_vector, tiny_embedder.embed_images([png("red")])[0],
                               atol=1e-5)
    np.testing.assert_allclose(by_id["both"].text_vector, tiny_embedder.embed_texts(["a green thing"])[0],
                               atol=1e-5)


def test_get_without_vectors_leaves_them_out(client):
    client.upsert([NewItem(id="x", text="hello")])
    item = client.get(["x"]).items[0]
    assert item.text_vector is None and item.image_vector is None


def test_reupserting_an_id_replaces_the_item_instead_of_adding_one(client):
    client.upsert([NewItem(id="same", text="first", payload={"version": 1})])
    client.upsert([NewItem(id="same", text="second", payload={"version": 2})])
    client.upsert([NewItem(id="same", text="second", payload={"version": 2})])

    reply = client.get(["same"])
    assert len(reply.items) == 1
    assert reply.items[0].text == "second" and reply.items[0].payload["version"] == 2
    assert len(client.search(text="second", target="text", limit=50)) == 1


def test_precomputed_vectors_are_stored_as_given(client, tiny_embedder):
    vector = unit(7, tiny_embedder.dim)
    client.upsert([NewItem(id="vec", image_vector=vector, text="words are not embedded when a vector is given",
                           text_vector=vector)])
    item = client.get(["vec"], with_vectors=True).items[0]
    np.testing.assert_allclose(item.image_vector, vector, atol=1e-6)
    np.testing.assert_allclose(item.text_vector, vector, atol=1e-6)


def test_one_bad_item_never_sinks_the_batch_and_each_error_names_the_item(client, tiny_embedder):
    dim = tiny_embedder.dim
    items = [
        NewItem(id="good-1", text="fine"),
        NewItem(id="", text="no id"),
        NewItem(id="empty"),
        NewItem(id="short", image_vector=[0.1] * (dim - 1)),
        NewItem(id="nan", text_vector=[float("nan")] + [0.1] * (dim - 1)),
        NewItem(id="broken-image", image=b"GIF89a-but-not-really"),
        NewItem(id="good-2", image=png("blue")),
    ]
    summary = client.upsert(items, batch_size=3)

    assert (summary.upserted, summary.failed) == (2, 5)
    errors = {index: (item_id, message) for index, item_id, message in summary.errors}
    assert sorted(errors) == [1, 2, 3, 4, 5]
    assert "items[1].id" in errors[1][1]
    assert "neither an image, a text nor a vector" in errors[2][1]
    assert f"has {dim - 1} values" in errors[3][1] and "items[3].image_vector" in errors[3][1]
    assert "NaN" in errors[4][1]
    assert errors[5][0] == "broken-image" and "items[5].image" in errors[5][1]
    assert {item.id for item in client.get(["good-1", "good-2"]).items} == {"good-1", "good-2"}


def test_delete_by_ids_reports_how_many_existed(client):
    client.upsert([NewItem(id=f"d{i}", text=f"item {i}") for i in range(4)])
    assert client.delete(ids=["d0", "d1", "unknown"]) == 2
    assert sorted(client.get(["d0", "d1", "d2", "d3"]).missing_ids) == ["d0", "d1"]


def test_delete_by_filter_removes_exactly_the_matching_items(client):
    client.upsert([NewItem(id=f"f{i}", text=f"item {i}", payload={"color": "red" if i % 2 else "blue"})
                   for i in range(6)])
    red = t.Filter(must=[t.Condition(field=t.FieldCondition(key="color", keyword="red"))])

    assert client.delete(filter=red) == 3
    reply = client.get([f"f{i}" for i in range(6)])
    assert sorted(item.id for item in reply.items) == ["f0", "f2", "f4"]


@pytest.mark.parametrize("call, code, needle", [
    (lambda c: c.get([]), grpc.StatusCode.INVALID_ARGUMENT, "ids"),
    (lambda c: c.get(["ok", ""]), grpc.StatusCode.INVALID_ARGUMENT, "ids[1]"),
    (lambda c: c.delete(ids=[]), grpc.StatusCode.INVALID_ARGUMENT, "ids"),
    (lambda c: c.delete(filter=t.Filter()), grpc.StatusCode.INVALID_ARGUMENT, "empty filter"),
    (lambda c: c.delete(filter=t.Filter(must=[t.Condition()])), grpc.StatusCode.INVALID_ARGUMENT,
     "filter.must[0]"),
])
def test_bad_catalog_requests_get_a_clear_status(client, call, code, needle):
    client.upsert([NewItem(id="survivor", text="still here")])
    with pytest.raises(grpc.RpcError) as raised:
        call(client)
    assert raised.value.code() is code
    assert needle in raised.value.details()
    assert [item.id for item in client.get(["survivor"]).items] == ["survivor"]


def test_one_stream_that_sends_an_id_twice_ends_with_the_later_version(client):
    items = [NewItem(id=f"item-{n}", text=f"text {n}", payload={"version": 1}) for n in range(6)]
    items.append(NewItem(id="item-0", text="rewritten", payload={"version": 2}))
    summary = client.upsert(items, batch_size=2)  # four messages, embedded ahead of their writes
    assert summary.upserted == 7 and summary.failed == 0
    assert client.get(["item-0"]).items[0].payload == {"version": 2}
