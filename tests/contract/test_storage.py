"""One contract, two storage implementations: Qdrant Edge in-process and qdrant-client.

No Qdrant server can run on these machines, so the qdrant-client side runs
against qdrant-client's local mode (`QdrantClient(path=...)`), which implements
the server's client API in-process: the same calls, the same models. What only
a real server adds (payload indexes taking effect, replicas racing) is covered
where it can be: the index requests are recorded, the race is replayed.

Expected results come from brute force over the stored vectors and from
predicates over the payloads, never from one engine checked against the other,
and orders among equal scores are never asserted.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from recommender import filters as f
from recommender.errors import ModelMismatch
from recommender.storage.base import EVENT_INDEXES, Storage
from recommender.types import Event, EventType, ItemInput, SearchParams, VectorSpace

DIM = 8
MODEL = "test-model(seed=0)"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
ENGINES = ["edge", "server"]
# Local mode says it keeps no payload indexes; that is known, and covered by RecordingClient.
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")


class RecordingClient(QdrantClient):
    """qdrant-client's local mode, remembering which payload indexes were asked for
    (local mode accepts them but does not keep them)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.index_requests: list[tuple[str, str]] = []

    def create_payload_index(self, collection_name, field_name, *args, **kwargs):
        self.index_requests.append((collection_name, field_name))
        return super().create_payload_index(collection_name, field_name, *args, **kwargs)


def open_storage(engine: str, folder: Path, model: str = MODEL, dim: int = DIM,
                 payload_indexes: dict | None = None) -> Storage:
    if engine == "edge":
        from recommender.storage.edge import open_edge

        return open_edge(folder, "items", model, dim, payload_indexes)
    from recommender.storage.server import open_server

    client = RecordingClient(path=str(folder / "qdrant-local"))
    return open_server(client, "items", model, dim, payload_indexes, location="qdrant-client local mode")


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture
def storage(engine, tmp_path):
    opened = open_storage(engine, tmp_path, payload_indexes={"color": "keyword", "price": "float"})
    yield opened
    opened.close()


def unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def make_items(count: int = 30, seed: int = 0) -> list[ItemInput]:
    rng = np.random.default_rng(seed)
    colors = ["red", "green", "blue"]
    items = []
    for index in range(count):
        payload = {"color": colors[index % 3], "price": float(index), "rank": index, "in_stock": index % 2 == 0,
                   "created_at": f"2026-01-{index % 28 + 1:02d}T00:00:00Z",
                   "variants": [{"size": "S" if index % 4 == 0 else "L", "count": index % 5}]}
        if index % 7 == 0:
            payload["discount"] = 10
        text_vector = unit(rng.normal(size=DIM)) if index % 5 != 4 else None
        items.append(ItemInput(item_id=f"item-{index:02d}", payload=payload, text=f"item {index}",
                               image_vector=unit(rng.normal(size=DIM)), text_vector=text_vector))
    return items


@pytest.fixture
def items(storage) -> dict[str, ItemInput]:
    made = make_items()
    storage.catalog.upsert(made)
    return {item.item_id: item for item in made}


def brute_force(items: dict[str, ItemInput], query: np.ndarray, space: VectorSpace,
                keep=lambda item: True) -> list[tuple[str, float]]:
    scores = []
    for item in items.values():
        vector = item.image_vector if space is VectorSpace.IMAGE else item.text_vector
        if vector is not None and keep(item):
            scores.append((item.item_id, float(np.dot(unit(vector), unit(query)))))
    return sorted(scores, key=lambda pair: -pair[1])


def assert_same_ranking(hits, expected: list[tuple[str, float]]) -> None:
    """Scores equal position by position; ids equal except where scores tie."""
    assert [hit.score for hit in hits] == pytest.approx([score for _, score in expected], abs=1e-5)
    for hit, (_, score) in zip(hits, expected):
        tied = {i for i, s in expected if abs(s - score) < 1e-5}
        assert hit.item_id in tied


# -- items ----------------------------------------------------------------------

def test_items_round_trip_with_payload_text_and_vectors(storage, items):
    stored = storage.catalog.get(["item-00", "item-04", "missing"], with_vectors=True)
    assert set(stored) == {"item-00", "item-04"}
    first = stored["item-00"]
    assert first.payload == items["item-00"].payload and first.text == "item 0" and first.has_image
    np.testing.assert_allclose(first.image_vector, items["item-00"].image_vector, atol=1e-6)
    assert stored["item-04"].text_vector is None, "an item without a text vector has none"
    assert storage.catalog.get(["item-00"])["item-00"].image_vector is None, "vectors only when asked"


def test_presence_reads_ids_only(storage, items):
    assert storage.catalog.present(["item-03", "nope", "item-07", "item-03"]) == {"item-03", "item-07"}
    assert storage.catalog.present([]) == set()


def test_upsert_is_idempotent_by_id_and_the_last_copy_wins(storage, items):
    changed = ItemInput(item_id="item-01", payload={"color": "black"}, image_vector=unit(np.ones(DIM)))
    storage.catalog.upsert([changed])
    assert storage.catalog.count() == len(items)
    assert storage.catalog.get(["item-01"])["item-01"].payload == {"color": "black"}


def test_delete_by_ids_and_by_filter_count_what_existed(storage, items):
    assert storage.catalog.delete(["item-00", "item-01", "never-there"]) == 2
    red = {i for i, item in items.items() if item.payload["color"] == "red"} - {"item-00"}
    assert storage.catalog.delete_where(f.Filter(must=(f.Match("color", "red"),))) == len(red)
    assert storage.catalog.count() == len(items) - 2 - len(red)
    with pytest.raises(ValueError):  # validation refuses it first; the store never deletes everything
        storage.catalog.delete_where(f.Filter())


@pytest.mark.parametrize("space", [VectorSpace.IMAGE, VectorSpace.TEXT])
def test_search_ranks_as_brute_force_does(storage, items, space):
    query = unit(np.arange(DIM) - 3.5)
    hits = storage.catalog.search(query, space, None, SearchParams(limit=10))
    assert_same_ranking(hits, brute_force(items, query, space)[:10])


def test_search_pages_thresholds_and_exclusions(storage, items):
    query = unit(np.linspace(-1, 1, DIM))
    expected = brute_force(items, query, VectorSpace.IMAGE)
    page = storage.catalog.search(query, VectorSpace.IMAGE, None, SearchParams(limit=5, offset=5))
    assert_same_ranking(page, expected[5:10])
    threshold = (expected[7][1] + expected[8][1]) / 2  # between two scores: no float boundary case
    above = storage.catalog.search(query, VectorSpace.IMAGE, None, SearchParams(limit=30, score_threshold=threshold))
    assert {hit.item_id for hit in above} == {item_id for item_id, _ in expected[:8]}
    excluded = [item_id for item_id, _ in expected[:3]]
    rest = storage.catalog.search(query, VectorSpace.IMAGE, None, SearchParams(limit=5), exclude_ids=excluded)
    assert_same_ranking(rest, expected[3:8])


FILTER_CASES = {
    "keyword": (f.Filter(must=(f.Match("color", "green"),)), lambda p: p["color"] == "green"),
    "integer": (f.Filter(must=(f.Match("rank", 7),)), lambda p: p["rank"] == 7),
    "boolean": (f.Filter(must=(f.Match("in_stock", True),)), lambda p: p["in_stock"]),
    "boolean_false": (f.Filter(must=(f.Match("in_stock", False),)), lambda p: not p["in_stock"]),
    "any": (f.Filter(must=(f.MatchAny("color", ("red", "blue")),)), lambda p: p["color"] in ("red", "blue")),
    "except": (f.Filter(must=(f.MatchExcept("color", ("red",)),)), lambda p: p["color"] != "red"),
    "range": (f.Filter(must=(f.Range("price", gte=5, lt=12),)), lambda p: 5 <= p["price"] < 12),
    "datetime": (f.Filter(must=(f.DatetimeRange("created_at", gte=datetime(2026, 1, 10, tzinfo=timezone.utc)),)),
                 lambda p: p["created_at"] >= "2026-01-10"),
    "is_empty": (f.Filter(must=(f.IsEmpty("discount"),)), lambda p: "discount" not in p),
    "nested": (f.Filter(must=(f.Nested("variants", f.Filter(must=(f.Match("size", "S"), f.Range("count", gte=2)))),)),
               lambda p: any(v["size"] == "S" and v["count"] >= 2 for v in p["variants"])),
    "should": (f.Filter(should=(f.Match("color", "red"), f.Range("price", gt=25))),
               lambda p: p["color"] == "red" or p["price"] > 25),
    "must_not": (f.Filter(must_not=(f.Match("color", "red"),)), lambda p: p["color"] != "red"),
    "sub_filter": (f.Filter(must=(f.Match("in_stock", True), f.Filter(should=(f.Match("color", "red"),
                                                                              f.Match("color", "blue"))))),
                   lambda p: p["in_stock"] and p["color"] in ("red", "blue")),
}


@pytest.mark.parametrize("case", sorted(FILTER_CASES))
def test_every_filter_kind_selects_exactly_the_matching_items(storage, items, case):
    filter_, predicate = FILTER_CASES[case]
    expected = {item_id for item_id, item in items.items() if predicate(item.payload)}
    assert expected and len(expected) < len(items), "the case must actually filter"
    hits = storage.catalog.search(unit(np.ones(DIM)), VectorSpace.IMAGE, filter_, SearchParams(limit=100))
    assert {hit.item_id for hit in hits} == expected
    assert {hit.item_id for hit in storage.catalog.scroll(filter_, 100)} == expected


def test_has_id_restricts(storage, items):
    only = f.Filter(must=(f.HasId(("item-03", "item-05", "nope")),))
    assert {hit.item_id for hit in storage.catalog.scroll(only, 100)} == {"item-03", "item-05"}


def test_scroll_restricted_to_ids_honours_the_filter(storage, items):
    green = f.Filter(must=(f.Match("color", "green"),))
    hits = storage.catalog.scroll(green, 10, only_ids=["item-01", "item-02", "item-04"])
    assert {hit.item_id for hit in hits} == {"item-01", "item-04"}
    assert storage.catalog.scroll(None, 10, only_ids=[]) == []


def test_fused_search_is_reciprocal_rank_fusion_of_both_spaces(storage, items):
    query = unit(np.cos(np.arange(DIM)))
    image = [item_id for item_id, _ in brute_force(items, query, VectorSpace.IMAGE)]
    text = [item_id for item_id, _ in brute_force(items, query, VectorSpace.TEXT)]
    fused: dict[str, float] = Counter()  # type: ignore[assignment]  # float scores
    for ranking in (image, text):
        for rank, item_id in enumerate(ranking):
            fused[item_id] += 1.0 / (rank + 2)  # Qdrant's RRF: 1 / (rank + k), k = 2, rank from 1
    expected = sorted(fused.items(), key=lambda pair: -pair[1])[:8]
    hits = storage.catalog.search_fused({VectorSpace.IMAGE: query, VectorSpace.TEXT: query}, None,
                                        SearchParams(limit=8))
    assert_same_ranking(hits, expected)


def test_batched_searches_carry_their_vectors_and_limits(storage, items):
    queries = [unit(np.eye(DIM)[0]), unit(np.eye(DIM)[1])]
    results = storage.catalog.search_many(queries, [3, 5], VectorSpace.IMAGE, None, exclude_ids=["item-00"])
    assert [len(hits) for hits in results] == [3, 5]
    for query, hits in zip(queries, results):
        keep = lambda item: item.item_id != "item-00"  # noqa: E731
        assert_same_ranking(hits, brute_force(items, query, VectorSpace.IMAGE, keep)[:len(hits)])
        for hit in hits:
            np.testing.assert_allclose(hit.vector, items[hit.item_id].image_vector, atol=1e-6)


@pytest.mark.parametrize("best_score", [False, True])
def test_native_recommend_from_example_vectors_leaves_out_only_the_excluded(storage, items, best_score):
    positives = [items["item-01"].image_vector, items["item-02"].image_vector]
    negatives = [items["item-03"].image_vector]
    hits = storage.catalog.recommend_native(positives, negatives, best_score, VectorSpace.IMAGE, None,
                                            SearchParams(limit=10), exclude_ids=["item-05"])
    assert len(hits) == 10 and "item-05" not in {hit.item_id for hit in hits}
    if best_score:  # every positive example is its own best match
        assert {"item-01", "item-02"} <= {hit.item_id for hit in hits}
    else:  # average_vector: a plain nearest-neighbour query from avg(pos) + avg(pos) - avg(neg)
        mean = (positives[0] + positives[1]) / 2
        keep = lambda item: item.item_id != "item-05"  # noqa: E731
        assert_same_ranking(hits, brute_force(items, mean + mean - negatives[0], VectorSpace.IMAGE, keep)[:10])
    assert storage.catalog.recommend_native([], negatives, best_score, VectorSpace.IMAGE, None,
                                            SearchParams(limit=10)) == []


# -- the model guard, creation and persistence -------------------------------------------

def test_data_persists_and_another_model_may_read_but_not_write(engine, tmp_path):
    first = open_storage(engine, tmp_path)
    first.catalog.upsert(make_items(5))
    first.catalog.require_same_model()
    first.close()

    again = open_storage(engine, tmp_path)
    assert again.catalog.count() == 5 and again.catalog.mismatch is None
    again.close()

    other = open_storage(engine, tmp_path, model="another-model")
    try:
        with pytest.raises(ModelMismatch) as raised:
            other.catalog.upsert(make_items(1))
        assert MODEL in str(raised.value) and "another-model" in str(raised.value)
        assert other.catalog.count() == 5, "reads still work"
    finally:
        other.close()


def test_events_are_indexed_by_user_item_type_and_time(engine, tmp_path):
    storage = open_storage(engine, tmp_path, payload_indexes={"color": "keyword"})
    try:
        if engine == "edge":
            items_schema = storage.catalog._shard.shard.info().payload_schema
            events_schema = storage.events._shard.shard.info().payload_schema
        else:
            requested = storage.catalog._client.index_requests
            items_schema = {field for collection, field in requested if collection == "items"}
            events_schema = {field for collection, field in requested if collection == "items_events"}
        assert set(EVENT_INDEXES) <= set(events_schema)
        assert "payload.color" in set(items_schema)
    finally:
        storage.close()


# -- events ---------------------------------------------------------------------

def event(user: str, item: str, minutes_ago: float, kind: EventType = EventType.VIEW) -> Event:
    return Event(user, item, kind, NOW - timedelta(minutes=minutes_ago))


def test_a_users_history_is_the_latest_events_oldest_first_and_stops_at_until(storage):
    history = [event("ann", f"item-{n:02d}", minutes_ago=100 - n) for n in range(20)]
    later = [event("ann", "item-future", minutes_ago=-30)]
    storage.events.append(history + later + [event("bob", "item-99", minutes_ago=1)])

    latest = storage.events.for_user("ann", 5, until=NOW)
    assert [e.item_id for e in latest] == [f"item-{n:02d}" for n in range(15, 20)]
    assert all(e.user_id == "ann" and e.timestamp <= NOW for e in latest)
    assert latest[-1] == history[-1], "events come back whole"
    weighted = Event("ann", "item-w", EventType.LIKE, NOW - timedelta(minutes=200), weight=2.5)
    storage.events.append([weighted])
    assert storage.events.for_user("ann", 100, until=NOW)[0] == weighted, "a weight other than 1 is kept"
    assert storage.events.for_user("ann", 5)[-1].item_id == "item-future", "no bound: everything"
    assert storage.events.recent_item_ids("ann", 3, until=NOW) == ["item-19", "item-18", "item-17"]
    assert storage.events.for_user("nobody", 5, until=NOW) == []
    assert storage.events.count_for_user("ann", until=NOW) == 21, "the 20, the weighted one, not the future one"
    assert storage.events.count_for_user("ann") == 22
    assert storage.events.count_for_user("nobody", until=NOW) == 0


def test_an_event_id_lands_once_however_often_it_is_sent(storage):
    once = event("cy", "item-01", minutes_ago=5, kind=EventType.LIKE)
    storage.events.append([once, once], ["evt-1", "evt-1"])
    storage.events.append([once], ["evt-1"])
    storage.events.append([once])  # no id: a new event each time
    assert len(storage.events.for_user("cy", 10, until=NOW)) == 2
    assert storage.events.count_for_user("cy", until=NOW) == 2


def test_forgetting_a_user_removes_only_their_events(storage):
    storage.events.append([event("dee", "item-01", 3), event("dee", "item-02", 2), event("eve", "item-01", 1)])
    assert storage.events.delete_user("dee") == 2
    assert storage.events.for_user("dee", 10) == []
    assert len(storage.events.for_user("eve", 10)) == 1


def test_popularity_counts_positive_events_by_type_weight_within_the_window(storage):
    weights = {EventType.VIEW: 1.0, EventType.PURCHASE: 5.0, EventType.LIKE: 2.0, EventType.DISLIKE: 3.0}
    storage.events.append([
        event("u1", "a", 10, EventType.PURCHASE), event("u2", "a", 20, EventType.VIEW),
        event("u1", "b", 10, EventType.VIEW), event("u2", "b", 11, EventType.VIEW),
        event("u3", "b", 12, EventType.LIKE),
        event("u1", "c", 10, EventType.DISLIKE), event("u1", "c", 60 * 24 * 40, EventType.PURCHASE),
        event("u4", "d", -10, EventType.PURCHASE),  # after `until`: not yet happened
    ])
    scores = storage.events.popularity(NOW - timedelta(days=30), NOW, weights, max_items=100)
    assert scores == Counter({"a": 6.0, "b": 4.0})


def test_popularity_takes_each_types_most_frequent_items_then_weighs_them(storage):
    views = [event(f"v{n}", "a", 5) for n in range(3)] + [event(f"v{n}", "b", 5) for n in range(2)]
    purchases = [event("p1", "c", 5, EventType.PURCHASE), event("p2", "b", 5, EventType.PURCHASE)]
    storage.events.append(views + purchases)
    weights = {EventType.VIEW: 1.0, EventType.PURCHASE: 5.0}
    top_one = storage.events.popularity(NOW - timedelta(days=1), NOW, weights, max_items=1)
    assert top_one == Counter({"a": 3.0, "b": 5.0}), "views: a (3); purchases: b and c tie at 1, b by id"
    everything = storage.events.popularity(NOW - timedelta(days=1), NOW, weights, max_items=10)
    assert everything == Counter({"a": 3.0, "b": 7.0, "c": 5.0})


def test_item_ids_with_colons_and_microsecond_times_come_back_exactly(storage):
    """The stored event packs its type before its item ("like:view:x") and its time in whole microseconds."""
    moment = NOW - timedelta(minutes=3, microseconds=123_457)
    tricky = [Event("fay", "view:x", EventType.LIKE, moment), Event("fay", ":", EventType.VIEW, moment)]
    storage.events.append(tricky)
    assert sorted(storage.events.for_user("fay", 10), key=lambda e: e.item_id) == sorted(tricky,
                                                                                        key=lambda e: e.item_id)
    assert storage.events.for_user("fay", 10, until=moment - timedelta(microseconds=1)) == []
    assert len(storage.events.for_user("fay", 10, until=moment)) == 2, "until is inclusive, to the microsecond"
    assert sorted(storage.events.recent_item_ids("fay", 10)) == [":", "view:x"]
    scores = storage.events.popularity(NOW - timedelta(days=1), NOW, {EventType.VIEW: 1.0, EventType.LIKE: 2.0}, 10)
    assert scores == Counter({"view:x": 2.0, ":": 1.0}), "a like of item 'view:x' is not a view of item 'x'"


V1_EVENTS = [  # (point id, payload) as layout 1 stored them: four keys, time in float seconds
    ("0b7e0a4e-4f2b-5c1e-8d8a-000000000001", {"user_id": "old", "item_id": "a", "event_type": "purchase",
                                             "timestamp": (NOW - timedelta(hours=2)).timestamp()}),
    ("0b7e0a4e-4f2b-5c1e-8d8a-000000000002", {"user_id": "old", "item_id": "b", "event_type": "like",
                                             "timestamp": (NOW - timedelta(hours=1)).timestamp(), "weight": 2.5}),
    ("0b7e0a4e-4f2b-5c1e-8d8a-000000000003", {"user_id": "other", "item_id": "a", "event_type": "view",
                                             "timestamp": (NOW - timedelta(hours=3)).timestamp()}),
]


def write_v1_events(engine: str, folder: Path) -> None:
    """What a Lookalike with event layout 1 left behind, written as it wrote it."""
    storage = open_storage(engine, folder)
    try:
        if engine == "edge":
            import qdrant_edge as edge

            from recommender.storage.edge import _SCHEMAS

            shard = storage.events._shard
            for key, kind in {"item_id": "keyword", "event_type": "keyword", "timestamp": "float"}.items():
                shard.update(edge.UpdateOperation.create_field_index(key, _SCHEMAS[kind]))
            shard.update(edge.UpdateOperation.upsert_points([edge.Point(i, {}, p) for i, p in V1_EVENTS]))
        else:
            from qdrant_client import models

            client = storage.events._client
            client.upsert("items_events", [models.PointStruct(id=i, vector={}, payload=p) for i, p in V1_EVENTS])
            client.update_collection("items_events", metadata={"lookalike_events_layout": 1})
    finally:
        storage.close()
    if engine == "edge":
        (folder / "storage" / "LAYOUT").write_text('{"layout_version": 1, "engine": "qdrant-edge"}\n')


def test_events_of_layout_1_are_upgraded_in_place_on_open(engine, tmp_path):
    write_v1_events(engine, tmp_path)
    storage = open_storage(engine, tmp_path)
    try:
        history = storage.events.for_user("old", 10, until=NOW)
        assert [(e.item_id, e.event_type, e.weight) for e in history] == [
            ("a", EventType.PURCHASE, 1.0), ("b", EventType.LIKE, 2.5)]
        assert history[0].timestamp == NOW - timedelta(hours=2)
        assert storage.events.recent_item_ids("other", 10, until=NOW) == ["a"]
        weights = {EventType.VIEW: 1.0, EventType.PURCHASE: 5.0, EventType.LIKE: 2.0}
        assert storage.events.popularity(NOW - timedelta(days=1), NOW, weights, 10) == Counter({"a": 6.0, "b": 2.0})
        storage.events.append([Event("old", "c", EventType.VIEW, NOW - timedelta(minutes=1))], ["retry-1"])
        assert storage.events.delete_user("old") == 3
        if engine == "edge":
            import json

            schema = storage.events._shard.shard.info().payload_schema
            assert set(schema) == set(EVENT_INDEXES), "layout 1's indexes are dropped"
            layout = json.loads((tmp_path / "storage" / "LAYOUT").read_text())
            assert layout["layout_version"] == 2
            records, _ = storage.events._shard.shard.scroll(__import__("qdrant_edge").ScrollRequest(
                limit=10, with_payload=True))
        else:
            records, _ = storage.events._client.scroll("items_events", limit=10, with_payload=True)
        assert [sorted(r.payload) for r in records] == [["time_us", "typed_item", "user_id"]], "old keys are gone"
    finally:
        storage.close()
    open_storage(engine, tmp_path).close()  # the second open finds nothing left to upgrade
