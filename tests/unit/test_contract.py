"""The lookalike.v1 contract, message by message (as qdrant-client tests its REST<->gRPC conversions).

Every request message is built by the client's builder (service/client_messages.py) with every
field set, and decoded by the server (service/convert.py) into domain values; every response
message is encoded by the server from domain values with every field set, and parsed by the
client. Each side is compared field by field with what it should be, and then every field is
changed one at a time: the decoded (or parsed) value must change too, so a field that one side
writes and the other ignores fails here. A field added to a .proto fails the coverage test until
a fixture sets it, which needs both conversions to handle it.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import numpy as np
import pytest
from google.protobuf import message as pb_message
from google.protobuf.descriptor import FieldDescriptor

from recommender import filters as f
from recommender.types import (
    Event,
    EventError,
    EventType,
    Example,
    Interest,
    ItemError,
    Recommendation,
    Recommendations,
    RecommendQuery,
    RecordOutcome,
    Scored,
    SearchParams,
    SearchTarget,
    StoredItem,
    Strategy,
    UpsertOutcome,
    UserProfile,
)
from service import client_messages as m, convert
from service.api.lookalike.v1 import (
    catalog_service_pb2,
    embedding_service_pb2,
    recommendation_service_pb2,
    search_service_pb2,
    types_pb2 as t,
)
from service.requests import EventBatch, ImageQuery, ItemQuery, RawItem, SearchSpec, TextQuery, VectorQuery

MODULES = (t, embedding_service_pb2, catalog_service_pb2, search_service_pb2, recommendation_service_pb2)
UTC = timezone.utc
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
DAY = datetime(2026, 1, 2, tzinfo=UTC)
# Values a float32 holds exactly, so round trips compare exactly.
V1, V2 = [0.5, -0.25, 0.125], [0.25, 0.5, -0.75]


def cond(**kind) -> t.Condition:
    return t.Condition(**kind)


def fc(key: str, **match) -> t.Condition:
    return cond(field=t.FieldCondition(key=key, **match))


def timestamp(when: datetime):
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


# Every condition kind and every match kind, each once.
FILTER = t.Filter(
    must=[fc("color", keyword="red"), fc("stock", integer=3), fc("new", boolean=True),
          fc("size", any_keyword=t.KeywordList(values=["s", "m"])), fc("n", any_integer=t.IntegerList(values=[1, 2])),
          fc("price", range=t.Range(gt=1.5, gte=2.5, lt=10.5, lte=9.5)),
          fc("when", datetime_range=t.DatetimeRange(gt=timestamp(DAY), gte=timestamp(DAY + timedelta(days=1)),
                                                    lt=timestamp(DAY + timedelta(days=3)),
                                                    lte=timestamp(DAY + timedelta(days=2))))],
    should=[cond(is_empty=t.IsEmptyCondition(key="gone")), cond(has_id=t.HasIdCondition(item_ids=["a", "b"])),
            cond(nested=t.NestedCondition(key="variants", filter=t.Filter(must=[fc("sku", keyword="x")])))],
    must_not=[fc("shape", except_keyword=t.KeywordList(values=["circle"])),
              cond(filter=t.Filter(must_not=[fc("brand", keyword="acme")]))],
)
DOMAIN_FILTER = f.Filter(
    must=(f.Match("color", "red"), f.Match("stock", 3), f.Match("new", True), f.MatchAny("size", ("s", "m")),
          f.MatchAny("n", (1, 2)), f.Range("price", gt=1.5, gte=2.5, lt=10.5, lte=9.5),
          f.DatetimeRange("when", gt=DAY, gte=DAY + timedelta(days=1), lt=DAY + timedelta(days=3),
                          lte=DAY + timedelta(days=2))),
    should=(f.IsEmpty("gone"), f.HasId(("a", "b")), f.Nested("variants", f.Filter(must=(f.Match("sku", "x"),)))),
    must_not=(f.MatchExcept("shape", ("circle",)), f.Filter(must_not=(f.Match("brand", "acme"),))),
)
PAYLOAD = {"color": "red", "n": 3, "price": 2.5, "tags": ["a", "b"], "brand": {"name": "acme"}, "new": True}


@dataclass(frozen=True)
class RequestCase:
    name: str
    build: Callable[[], pb_message.Message]  # the client's builder
    decode: Callable[[Any], Any]  # the server's decoder
    expected: Any  # the domain value the server must see


def _params(limit: int, offset: int, threshold: float | None) -> SearchParams:
    return SearchParams(limit=limit, offset=offset, score_threshold=threshold)


SEARCH_KW = dict(filter=FILTER, limit=5, offset=2, score_threshold=0.25)
REQUESTS = [
    RequestCase("Embed", lambda: m.embed_request(texts=["a red dress"], images=[b"\x89PNG-bytes"]),
                convert.embed_inputs, (["a red dress"], [b"\x89PNG-bytes"])),
    RequestCase("EmbedStream text", lambda: m.embed_stream_request("k1", "a red dress"),
                lambda r: (r.key, convert.embed_stream_input(r)), ("k1", TextQuery("a red dress"))),
    RequestCase("EmbedStream image", lambda: m.embed_stream_request("k2", b"\x89PNG-bytes"),
                lambda r: (r.key, convert.embed_stream_input(r)), ("k2", ImageQuery(b"\x89PNG-bytes"))),
    RequestCase("UpsertItems",
                lambda: m.upsert_request([m.NewItem(id="sku-1", image=b"img", text="red dress", payload=PAYLOAD,
                                                    image_vector=V1, text_vector=V2)]),
                lambda r: convert.items_from_proto(r.items, 7),
                ([RawItem(index=7, item_id="sku-1", image=b"img", text="red dress", payload=PAYLOAD,
                          image_vector=V1, text_vector=V2)], [])),
    RequestCase("GetItems", lambda: m.get_request(["a", "b"], with_vectors=True), convert.get_items_from_proto,
                (["a", "b"], True)),
    RequestCase("DeleteItems ids", lambda: m.delete_request(ids=["a", "b"]), convert.delete_selector, ["a", "b"]),
    RequestCase("DeleteItems filter", lambda: m.delete_request(filter=FILTER), convert.delete_selector,
                DOMAIN_FILTER),
    RequestCase("Search text", lambda: m.search_request(text="red", target="text", **SEARCH_KW),
                convert.search_from_proto,
                SearchSpec(TextQuery("red"), SearchTarget.TEXT, DOMAIN_FILTER, _params(5, 2, 0.25))),
    RequestCase("Search image", lambda: m.search_request(image=b"img", target="both", **SEARCH_KW),
                convert.search_from_proto,
                SearchSpec(ImageQuery(b"img"), SearchTarget.BOTH, DOMAIN_FILTER, _params(5, 2, 0.25))),
    RequestCase("Search item", lambda: m.search_request(item_id="sku-1", target="image", **SEARCH_KW),
                convert.search_from_proto,
                SearchSpec(ItemQuery("sku-1"), SearchTarget.IMAGE, DOMAIN_FILTER, _params(5, 2, 0.25))),
    RequestCase("Search vector", lambda: m.search_request(vector=V1, target="text", **SEARCH_KW),
                convert.search_from_proto,
                SearchSpec(VectorQuery(np.asarray(V1, dtype=np.float32)), SearchTarget.TEXT, DOMAIN_FILTER,
                           _params(5, 2, 0.25))),
    RequestCase("SimilarItems", lambda: m.similar_request("sku-1", target="text", user_id="u1", include_seen=True,
                                                          **SEARCH_KW),
                convert.similar_from_proto,
                SearchSpec(ItemQuery("sku-1"), SearchTarget.TEXT, DOMAIN_FILTER, _params(5, 2, 0.25),
                           user_id="u1", exclude_seen=False)),
    RequestCase("RecordEvents",
                lambda: m.record_events_request([m.UserEvent("u1", "sku-1", "purchase", weight=2.5, timestamp=DAY,
                                                             event_id="e-1")]),
                lambda r: convert.events_from_proto(r, NOW),
                EventBatch([Event("u1", "sku-1", EventType.PURCHASE, DAY, 2.5)], ["e-1"], [0], [])),
    RequestCase("Recommend offset",
                lambda: m.recommend_request("u1", limit=5, offset=3, filter=FILTER, diversity=0.5,
                                            include_seen=True, strategy="single_centroid", explain=True,
                                            examples=[m.Example("sku-1", weight=2.5),
                                                      m.Example(vector=V1, weight=-1.5)]),
                convert.recommend_from_proto,
                RecommendQuery(user_id="u1", limit=5, offset=3, filter=DOMAIN_FILTER, diversity=0.5,
                               exclude_seen=False, strategy=Strategy.SINGLE_CENTROID, explain=True,
                               examples=(Example(item_id="sku-1", weight=2.5),
                                         Example(vector=np.asarray(V1, dtype=np.float32), weight=-1.5)))),
    RequestCase("Recommend page token",
                lambda: m.recommend_request("u1", limit=5, page_token=convert._token_for_offset(20), filter=FILTER,
                                            diversity=0.5, strategy="qdrant_best_score"),
                convert.recommend_from_proto,
                RecommendQuery(user_id="u1", limit=5, offset=20, filter=DOMAIN_FILTER, diversity=0.5,
                               strategy=Strategy.QDRANT_BEST_SCORE)),
    RequestCase("GetProfile", lambda: m.profile_request("u1", with_centroids=True), convert.profile_from_proto,
                ("u1", True)),
    RequestCase("ForgetUser", lambda: m.forget_request("u1"), convert.forget_from_proto, "u1"),
]


@dataclass(frozen=True)
class ResponseCase:
    name: str
    encode: Callable[[], pb_message.Message]  # the server's encoder, from domain values
    parse: Callable[[Any], Any]  # the client's parser
    expected: Any  # what the client must return


INTEREST = Interest(centroid=np.asarray(V1, dtype=np.float32), importance=0.75, weight=3.5, item_ids=("a", "b"))
SECOND = Interest(centroid=np.asarray(V2, dtype=np.float32), importance=0.25, weight=1.5, item_ids=("c",))
NEGATIVE = Interest(centroid=np.asarray(V2, dtype=np.float32), importance=1.0, weight=0.5, item_ids=("z",))
QUERY = RecommendQuery(user_id="u1", limit=5, offset=10)
RESPONSES = [
    ResponseCase("EmbedResponse",
                 lambda: convert.embed_response(np.asarray([V1]), np.asarray([V2]), "model-x", 3), m.parse_embed,
                 m.Embeddings([V1], [V2], "model-x", 3)),
    ResponseCase("EmbedStreamResponse",
                 lambda: convert.embed_stream_response("k1", np.asarray(V1, dtype=np.float32), "model-x"),
                 m.parse_embed_stream, m.StreamedVector("k1", V1, "model-x")),
    ResponseCase("UpsertItemsResponse",
                 lambda: convert.upsert_response(UpsertOutcome(2, [ItemError(3, "bad", "items[3].id: empty")])),
                 m.parse_upsert, m.UpsertSummary(2, 1, [m.ItemFailure(3, "bad", "items[3].id: empty")])),
    ResponseCase("GetItemsResponse",
                 lambda: convert.get_items_response(
                     [StoredItem("sku-1", PAYLOAD, "red dress", True, np.asarray(V1), np.asarray(V2))], ["gone"],
                     with_vectors=True),
                 m.parse_get,
                 m.ItemsFound([m.Item("sku-1", "red dress", PAYLOAD, True, V1, V2)], ["gone"])),
    ResponseCase("DeleteItemsResponse", lambda: convert.delete_response(4), m.parse_delete, 4),
    ResponseCase("SearchResponse",
                 lambda: convert.search_response([Scored("sku-1", 0.75, PAYLOAD, "red dress")]), m.parse_search,
                 [m.Hit("sku-1", 0.75, PAYLOAD, "red dress")]),
    ResponseCase("SimilarItemsResponse",
                 lambda: convert.similar_response([Scored("sku-2", 0.5, PAYLOAD, "blue dress")]), m.parse_search,
                 [m.Hit("sku-2", 0.5, PAYLOAD, "blue dress")]),
    ResponseCase("RecordEventsResponse",
                 lambda: convert.record_response(RecordOutcome(2, ["ghost"], [EventError(2, "events[2].weight: bad")]),
                                                 EventBatch([], [], [], [(1, "events[1].type: unset")])),
                 m.parse_record,
                 m.RecordSummary(2, ["ghost"], [m.EventFailure(1, "events[1].type: unset"),
                                                m.EventFailure(2, "events[2].weight: bad")])),
    ResponseCase("RecommendResponse",
                 lambda: convert.recommend_response(Recommendations(
                     items=[Recommendation("sku-1", 0.75, PAYLOAD, "red dress", interest_index=1, because=("a", "b"),
                                           because_examples=(0, 2))],
                     strategy=Strategy.SINGLE_CENTROID, cold_start=True, has_more=True,
                     unknown_example_ids=("ghost",)), QUERY),
                 m.parse_recommend,
                 m.RecommendResult([m.Recommended("sku-1", 0.75, PAYLOAD, "red dress", 1, ["a", "b"], [0, 2])],
                                   "single_centroid", True, convert._token_for_offset(15), ["ghost"])),
    ResponseCase("GetProfileResponse",
                 lambda: convert.profile_response(UserProfile("u1", [INTEREST, SECOND], [NEGATIVE],
                                                              frozenset({"a", "b", "c", "z"}), event_count=9),
                                                  with_centroids=True),
                 m.parse_profile,
                 m.Profile("u1", [m.InterestInfo(0, 0.75, 3.5, ["a", "b"], V1),
                                  m.InterestInfo(1, 0.25, 1.5, ["c"], V2)],
                           [m.InterestInfo(0, 1.0, 0.5, ["z"], V2)], event_count=9, seen_count=4)),
    ResponseCase("ForgetUserResponse", lambda: convert.forget_response(7), m.parse_forget, 7),
]


# -- comparing values -------------------------------------------------------------------

def plain(value: Any) -> Any:
    """A comparable form of domain and client values: dataclasses, arrays, enums and floats alike."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, {field.name: plain(getattr(value, field.name))
                                       for field in dataclasses.fields(value)})
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, np.ndarray):
        return [round(float(x), 5) for x in value.ravel()]
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, (list, tuple, frozenset, set)):
        items = [plain(item) for item in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def outcome(function: Callable[[Any], Any], message: pb_message.Message) -> Any:
    try:
        return plain(function(message))
    except Exception as error:  # noqa: BLE001 - a refusal is an outcome too, and differs from a value
        return ("raised", type(error).__name__, str(error))


# -- walking messages ----------------------------------------------------------------------

def is_leaf_message(descriptor) -> bool:
    """Well-known types are values (a payload, a time), not messages of this contract."""
    return descriptor.full_name.startswith("google.protobuf.")


def set_fields(message: pb_message.Message) -> set[tuple[str, str]]:
    """(message type, field) for every field set anywhere in `message`."""
    found = set()
    for field, value in message.ListFields():
        found.add((message.DESCRIPTOR.full_name, field.name))
        if field.type == FieldDescriptor.TYPE_MESSAGE and not is_leaf_message(field.message_type):
            for inner in (value if field.is_repeated else [value]):
                found |= set_fields(inner)
    return found


def leaf_paths(message: pb_message.Message, prefix: tuple = ()) -> list[tuple]:
    """Paths (field name, or (field name, index)) to every set scalar or well-known value."""
    paths = []
    for field, value in message.ListFields():
        repeated = field.is_repeated
        nested = field.type == FieldDescriptor.TYPE_MESSAGE and not is_leaf_message(field.message_type)
        if not nested:
            paths.append(prefix + (field.name,))
        elif repeated:
            for index, inner in enumerate(value):
                paths += leaf_paths(inner, prefix + ((field.name, index),))
                paths.append(prefix + (field.name, "drop", index))
        else:
            paths += leaf_paths(value, prefix + (field.name,)) or [prefix + (field.name,)]
    return paths


def mutated(message: pb_message.Message, path: tuple) -> pb_message.Message:
    copy = type(message)()
    copy.CopyFrom(message)
    if len(path) >= 3 and path[-2] == "drop":
        del getattr(_walk(copy, path[:-3]), path[-3])[path[-1]]
    else:
        target = _walk(copy, path[:-1])
        _change(target, target.DESCRIPTOR.fields_by_name[path[-1]])
    return copy


def _walk(message: pb_message.Message, steps: tuple) -> pb_message.Message:
    for step in steps:
        message = getattr(message, step[0])[step[1]] if isinstance(step, tuple) else getattr(message, step)
    return message


def _change(message: pb_message.Message, field) -> None:
    value = getattr(message, field.name)
    if field.type == FieldDescriptor.TYPE_MESSAGE:  # a well-known value
        name = field.message_type.full_name
        for item in (value if field.is_repeated else [value]):
            if name == "google.protobuf.Struct":
                item.update({"zz_added": 1})
            elif name == "google.protobuf.Timestamp":
                item.seconds += 3600
            else:
                raise AssertionError(f"no change defined for {name}")
        return
    if field.is_repeated:
        value[0] = _other(field, value[0])
    else:
        setattr(message, field.name, _other(field, value))


def _other(field, value):
    if field.type == FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values if v.number not in (0, value)]
        return numbers[0]
    if field.type == FieldDescriptor.TYPE_BOOL:
        return not value
    if field.type == FieldDescriptor.TYPE_STRING:
        # a page token must stay one the server issued, to change what it says rather than be refused
        return convert._token_for_offset(40) if field.name == "page_token" else value + "-changed"
    if field.type == FieldDescriptor.TYPE_BYTES:
        return value + b"-changed"
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return value + 0.5
    return value + 1


def all_fields() -> set[tuple[str, str]]:
    return {(message.full_name, field.name) for module in MODULES
            for message in module.DESCRIPTOR.message_types_by_name.values() for field in message.fields}


# -- the tests ------------------------------------------------------------------------------

def test_the_fixtures_set_every_field_of_every_message():
    """A new field fails here until a fixture sets it: through the client's builder for requests,
    through the server's encoder for responses, so both sides must handle it."""
    covered = set()
    for case in REQUESTS:
        covered |= set_fields(case.build())
    for response in RESPONSES:
        covered |= set_fields(response.encode())
    missing = sorted(f"{message}.{field}" for message, field in all_fields() - covered)
    assert not missing, f"no fixture sets: {missing}"


def test_every_rpc_has_its_request_and_response_fixture():
    named = {case.build().DESCRIPTOR.name for case in REQUESTS} | {case.encode().DESCRIPTOR.name for case in RESPONSES}
    for module in MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert {method.input_type.name, method.output_type.name} <= named, method.full_name


@pytest.mark.parametrize("case", REQUESTS, ids=lambda case: case.name)
def test_a_request_the_client_builds_decodes_to_what_it_says(case):
    assert outcome(case.decode, case.build()) == plain(case.expected)


@pytest.mark.parametrize("case", RESPONSES, ids=lambda case: case.name)
def test_a_response_the_server_encodes_parses_to_what_it_says(case):
    message = case.encode()
    assert outcome(case.parse, message) == plain(case.expected)
    # and it survives the wire
    assert outcome(case.parse, type(message).FromString(message.SerializeToString())) == plain(case.expected)


def _ignored_fields(cases, message_of, read) -> list[str]:
    """Fields whose change leaves `read`'s outcome unchanged in every case that sets them."""
    seen: dict[str, bool] = {}
    for case in cases:
        message = message_of(case)
        before = outcome(read(case), message)
        for path in leaf_paths(message):
            changed = mutated(message, path)
            name = _field_name(message, path)
            seen[name] = seen.get(name, False) or outcome(read(case), changed) != before
    return sorted(name for name, differs in seen.items() if not differs)


def _field_name(message: pb_message.Message, path: tuple) -> str:
    descriptor = message.DESCRIPTOR
    steps = [step for step in path if step != "drop" and not isinstance(step, int)]
    for step in steps[:-1]:
        name = step[0] if isinstance(step, tuple) else step
        descriptor = descriptor.fields_by_name[name].message_type
    last = steps[-1][0] if isinstance(steps[-1], tuple) else steps[-1]
    return f"{descriptor.full_name}.{last}"


def test_the_server_reads_every_request_field():
    ignored = _ignored_fields(REQUESTS, lambda case: case.build(), lambda case: case.decode)
    assert not ignored, f"changing these request fields changes nothing the server decodes: {ignored}"


def test_the_client_reads_every_response_field():
    ignored = _ignored_fields(RESPONSES, lambda case: case.encode(), lambda case: case.parse)
    assert not ignored, f"changing these response fields changes nothing the client returns: {ignored}"


def test_the_mutation_check_catches_an_ignored_field():
    """The check itself can fail: a parser that drops `text` is caught."""
    case = next(case for case in RESPONSES if case.name == "SearchResponse")
    careless = dataclasses.replace(case, parse=lambda reply: [(hit.id, hit.score) for hit in reply.results])
    assert "lookalike.v1.ScoredItem.text" in _ignored_fields([careless], lambda c: c.encode(), lambda c: c.parse)
