"""Search and SimilarItems: every query kind, every filter kind, paging, errors.

Rankings are checked against brute-force cosine over the vectors the service
stored, so the tests hold for any model, random weights included.
"""

from __future__ import annotations

from datetime import datetime, timezone

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from service.api.lookalike.v1 import types_pb2 as t
from service.client import NewItem
from tests.conftest import png

COLORS = ["red", "blue", "green", "yellow", "purple", "orange"]
SHAPES = ["circle", "square"]


@pytest.fixture
def catalog(client):
    """24 items with images, texts and payloads of every filterable kind."""
    items = []
    for index in range(24):
        color, shape = COLORS[index % len(COLORS)], SHAPES[index % 2]
        payload = {
            "color": color, "shape": shape, "price": 5 + index * 2.5, "stock": index % 4,
            "in_stock": index % 3 != 0, "created_at": f"2026-01-{index + 1:02d}T00:00:00Z",
            "variants": [{"size": "S" if index % 2 else "L", "count": index}],
        }
        if index % 5 == 0:
            payload["discount"] = None
        elif index % 5 == 1:
            payload["discount"] = 10
        items.append(NewItem(id=f"item-{index:02d}", image=png(color, size=(40 + index, 40), shape=shape),
                             text=f"a {color} {shape} number {index}",
                             payload=payload))
    assert client.upsert(items, batch_size=7).upserted == 24
    stored = client.get([item.id for item in items], with_vectors=True).items
    return {item.id: item for item in stored}


class Ranking(list):
    """Expected ids best first; equality tolerates reordering among near-ties.

    Equal scores may come back in any order (it differs between CPUs and
    thread counts), so a list of ids equals a Ranking when every id is a known
    one and the scores, read in the order given, match the expected scores.
    """

    def __init__(self, scored: list[tuple[float, str]]) -> None:
        super().__init__(item_id for _, item_id in scored)
        self.scores = {item_id: score for score, item_id in scored}

    @classmethod
    def of(cls, hits) -> Ranking:
        """The ranking a result list stands for, each hit with the score it came with."""
        return cls([(hit.score, hit.id) for hit in hits])

    def __getitem__(self, index):
        if isinstance(index, slice):
            result = Ranking([])
            result.extend(list.__getitem__(self, index))
            result.scores = self.scores
            return result
        return list.__getitem__(self, index)

    def __eq__(self, other) -> bool:
        if len(other) != len(self) or len(set(other)) != len(other):
            return False
        if any(item_id not in self.scores for item_id in other):
            return False
        got = [self.scores[item_id] for item_id in other]
        expected = [self.scores[item_id] for item_id in self]
        return bool(np.allclose(got, expected, atol=1e-5))

    __hash__ = None


def brute_force(catalog, query: np.ndarray, space: str, keep=lambda item: True) -> Ranking:
    scored = [(float(np.dot(query, np.asarray(getattr(item, f"{space}_vector")))), item_id)
              for item_id, item in catalog.items() if keep(item)]
    return Ranking(sorted(scored, reverse=True))


def field(key: str, **match) -> t.Condition:
    return t.Condition(field=t.FieldCondition(key=key, **match))


def ids(hits) -> list[str]:
    return [hit.id for hit in hits]


def test_text_to_image_ranks_by_cosine_to_the_image_vectors(client, catalog, tiny_embedder):
    query = tiny_embedder.embed_texts(["a red circle"])[0]
    hits = client.search(text="a red circle", limit=24)
    assert ids(hits) == brute_force(catalog, query, "image")
    assert hits[0].score >= hits[-1].score
    assert hits[0].text.startswith("a ") and "color" in hits[0].payload


def test_image_to_image_and_image_to_text(client, catalog, tiny_embedder):
    query = tiny_embedder.embed_images([png("blue", shape="circle")])[0]
    assert ids(client.search(image=png("blue", shape="circle"), limit=5)) == brute_force(catalog, query, "image")[:5]
    assert ids(client.search(image=png("blue", shape="circle"), target="text", limit=5)) == \
        brute_force(catalog, query, "text")[:5]


def test_vector_query_and_item_query(client, catalog):
    anchor = np.asarray(catalog["item-03"].image_vector)
    assert ids(client.search(vector=anchor.tolist(), limit=3)) == brute_force(catalog, anchor, "image")[:3]
    by_item = ids(client.search(item_id="item-03", limit=3))
    assert "item-03" not in by_item
    assert by_item == brute_force(catalog, anchor, "image", lambda it: it.id != "item-03")[:3]


def test_similar_items_excludes_the_item_and_honours_filters(client, catalog):
    anchor = np.asarray(catalog["item-04"].image_vector)
    red = t.Filter(must=[field("color", keyword="red")])
    hits = client.similar("item-04", filter=red, limit=10)
    expected = brute_force(catalog, anchor, "image",
                           lambda it: it.payload["color"] == "red" and it.id != "item-04")
    assert ids(hits) == expected


def test_both_targets_fuse_image_and_text_rankings(client, catalog, tiny_embedder):
    hits = client.search(text="a green square", target="both", limit=24)
    assert len(hits) == 24 and len(set(ids(hits))) == 24
    query = tiny_embedder.embed_texts(["a green square"])[0]
    image, text = brute_force(catalog, query, "image"), brute_force(catalog, query, "text")
    # Whichever items tie for first place in either list.
    leaders = {item_id for ranking in (image, text) for item_id, score in ranking.scores.items()
               if score >= ranking.scores[ranking[0]] - 1e-5}
    assert leaders & set(ids(hits[:2]))


def test_pages_concatenate_to_the_full_ranking(client, catalog):
    full = client.search(text="a yellow circle", limit=24)
    pages = [ids(client.search(text="a yellow circle", limit=5, offset=offset)) for offset in range(0, 24, 5)]
    assert [hit for page in pages for hit in page] == Ranking.of(full)
    assert client.search(text="a yellow circle", limit=5, offset=30) == []


def test_score_threshold_drops_weaker_hits(client, catalog):
    hits = client.search(text="a purple square", limit=24)
    # Cut in the widest gap so float32 rounding of the threshold cannot matter.
    gap = max(range(3, 20), key=lambda i: hits[i].score - hits[i + 1].score)
    cut = (hits[gap].score + hits[gap + 1].score) / 2
    kept = client.search(text="a purple square", limit=24, score_threshold=cut)
    # Two catalog images can tie (0.21478 here): their order is not part of the contract.
    assert ids(kept) == Ranking.of(hits[:gap + 1])


def ts(day: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime(2026, 1, day, tzinfo=timezone.utc))
    return stamp


FILTER_CASES = {
    "keyword": (t.Filter(must=[field("color", keyword="red")]), lambda p: p["color"] == "red"),
    "integer": (t.Filter(must=[field("stock", integer=2)]), lambda p: p["stock"] == 2),
    "boolean": (t.Filter(must=[field("in_stock", boolean=False)]), lambda p: not p["in_stock"]),
    "any_keyword": (t.Filter(must=[field("color", any_keyword=t.KeywordList(values=["red", "blue"]))]),
                    lambda p: p["color"] in ("red", "blue")),
    "any_integer": (t.Filter(must=[field("stock", any_integer=t.IntegerList(values=[0, 3]))]),
                    lambda p: p["stock"] in (0, 3)),
    "except_keyword": (t.Filter(must=[field("shape", except_keyword=t.KeywordList(values=["circle"]))]),
                       lambda p: p["shape"] != "circle"),
    "range": (t.Filter(must=[field("price", range=t.Range(gte=20, lt=40))]), lambda p: 20 <= p["price"] < 40),
    "datetime_range": (t.Filter(must=[field("created_at", datetime_range=t.DatetimeRange(gt=ts(10), lte=ts(15)))]),
                       lambda p: "2026-01-10T00:00:00Z" < p["created_at"] <= "2026-01-15T00:00:00Z"),
    "is_empty": (t.Filter(must=[t.Condition(is_empty=t.IsEmptyCondition(key="discount"))]),
                 lambda p: p.get("discount") is None),
    "has_id": (t.Filter(must=[t.Condition(has_id=t.HasIdCondition(item_ids=["item-01", "item-07"]))]),
               None),
    "nested": (t.Filter(must=[t.Condition(nested=t.NestedCondition(key="variants", filter=t.Filter(must=[
        field("size", keyword="S"), field("count", range=t.Range(lt=10))])))]),
        lambda p: p["variants"][0]["size"] == "S" and p["variants"][0]["count"] < 10),
    "should": (t.Filter(should=[field("color", keyword="green"), field("stock", integer=1)]),
               lambda p: p["color"] == "green" or p["stock"] == 1),
    "must_not": (t.Filter(must_not=[field("shape", keyword="square")]), lambda p: p["shape"] != "square"),
    "sub_filter": (t.Filter(must=[field("in_stock", boolean=True), t.Condition(filter=t.Filter(
        should=[field("color", keyword="red"), field("color", keyword="blue")]))]),
        lambda p: p["in_stock"] and p["color"] in ("red", "blue")),
}


@pytest.mark.parametrize("case", sorted(FILTER_CASES))
def test_every_filter_kind_returns_exactly_the_matching_items(client, catalog, case):
    filter_, predicate = FILTER_CASES[case]
    if predicate is None:
        expected = {"item-01", "item-07"}
    else:
        expected = {item_id for item_id, item in catalog.items() if predicate(item.payload)}
    assert expected and len(expected) < len(catalog), "the case must actually filter"
    assert set(ids(client.search(text="anything", filter=filter_, limit=100))) == expected




@pytest.mark.parametrize("kwargs, code, needle", [
    (dict(text="   "), grpc.StatusCode.INVALID_ARGUMENT, "query.text"),
    (dict(), grpc.StatusCode.INVALID_ARGUMENT, "empty query"),
    (dict(image=b"definitely not an image"), grpc.StatusCode.INVALID_ARGUMENT, "query.image"),
    (dict(vector=[0.5, 0.5]), grpc.StatusCode.INVALID_ARGUMENT, "query.vector: has 2 values"),
    (dict(item_id="does-not-exist"), grpc.StatusCode.NOT_FOUND, "does-not-exist"),
    (dict(text="ok", limit=5000), grpc.StatusCode.INVALID_ARGUMENT, "limit"),
    (dict(text="ok", filter=t.Filter(must=[t.Condition(field=t.FieldCondition(key="price"))])),
     grpc.StatusCode.INVALID_ARGUMENT, "filter.must[0].field"),
    (dict(text="ok", filter=t.Filter(must=[field("price", range=t.Range())])),
     grpc.StatusCode.INVALID_ARGUMENT, "filter.must[0].field.range"),
    (dict(text="ok", filter=t.Filter(must=[field("", keyword="x")])),
     grpc.StatusCode.INVALID_ARGUMENT, "filter.must[0].field.key"),
    (dict(text="ok", filter=t.Filter(must=[t.Condition(nested=t.NestedCondition(key="variants", filter=t.Filter(
        must=[t.Condition(has_id=t.HasIdCondition(item_ids=["x"]))])))])),
     grpc.StatusCode.INVALID_ARGUMENT, "nested"),
])
def test_bad_search_requests_get_a_clear_status_and_the_server_stays_up(client, catalog, kwargs, code, needle):
    with pytest.raises(grpc.RpcError) as raised:
        client.search(**kwargs)
    assert raised.value.code() is code
    assert needle in raised.value.details()
    assert len(client.search(text="still serving", limit=3)) == 3


def test_nan_in_a_query_vector_is_invalid(client, catalog, tiny_embedder):
    vector = [float("nan")] * tiny_embedder.dim
    with pytest.raises(grpc.RpcError) as raised:
        client.search(vector=vector)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "NaN" in raised.value.details()


def test_similar_items_of_an_unknown_item_is_not_found(client, catalog):
    with pytest.raises(grpc.RpcError) as raised:
        client.similar("ghost")
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
