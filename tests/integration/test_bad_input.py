"""No bad input sinks good input: each case the production review found, through a
real server. Bad elements of batch RPCs become per-element errors next to the
stored good ones; bad single requests get INVALID_ARGUMENT naming the field,
also as a google.rpc.BadRequest detail; nothing is INTERNAL or UNKNOWN."""

from __future__ import annotations

import io
import struct

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from service import validation
from service.api.lookalike.v1 import (
    catalog_service_pb2 as catalog_pb,
    catalog_service_pb2_grpc as catalog_grpc,
    embedding_service_pb2 as embedding_pb,
    embedding_service_pb2_grpc as embedding_grpc,
    recommendation_service_pb2 as recommendation_pb,
    recommendation_service_pb2_grpc as recommendation_grpc,
    search_service_pb2 as search_pb,
    search_service_pb2_grpc as search_grpc,
    types_pb2 as types_pb,
)
from tests.conftest import png

# grpc's default soft limit on received metadata; a status message is metadata.
METADATA_SOFT_LIMIT = 8 * 1024


def corrupt_png() -> bytes:
    """A PNG whose IDAT chunk claims length 0: Pillow raises SyntaxError, not OSError."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, "PNG")
    data = buffer.getvalue()
    at = data.index(b"IDAT")
    return data[:at - 4] + struct.pack(">I", 0) + data[at:]


@pytest.fixture
def stubs(server):
    with grpc.insecure_channel(server.target) as channel:
        yield {
            "embedding": embedding_grpc.EmbeddingServiceStub(channel),
            "catalog": catalog_grpc.CatalogServiceStub(channel),
            "search": search_grpc.SearchServiceStub(channel),
            "users": recommendation_grpc.RecommendationServiceStub(channel),
            "channel": channel,
        }


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def assert_invalid(error: grpc.RpcError, field: str) -> None:
    """INVALID_ARGUMENT naming `field` in the text and in a BadRequest detail; short enough to travel."""
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    assert field in error.details()
    assert len(error.details()) < 2000
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status in the trailers"
    violations = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            violations += [violation.field for violation in bad_request.field_violations]
    assert any(field in violation for violation in violations), violations


def upsert(stubs, *items: catalog_pb.ItemInput) -> catalog_pb.UpsertItemsResponse:
    (acknowledgement,) = stubs["catalog"].UpsertItems(iter([catalog_pb.UpsertItemsRequest(items=list(items))]))
    return acknowledgement


def field_filter(key: str, **match) -> types_pb.Filter:
    return types_pb.Filter(must=[types_pb.Condition(field=types_pb.FieldCondition(key=key, **match))])


# -- images --------------------------------------------------------------------

def test_a_corrupt_png_is_the_callers_error_and_spares_the_good_item(stubs):
    bad = corrupt_png()
    assert_invalid(refused(lambda: stubs["embedding"].Embed(embedding_pb.EmbedRequest(images=[png("red"), bad]))),
                   "images[1]")
    assert_invalid(refused(lambda: stubs["search"].Search(search_pb.SearchRequest(image=bad))), "query.image")
    stream = stubs["embedding"].EmbedStream(iter([embedding_pb.EmbedStreamRequest(key="k", image=bad)]))
    assert_invalid(refused(lambda: list(stream)), "input[k]")

    reply = upsert(stubs, catalog_pb.ItemInput(id="good", image=png("blue")),
                   catalog_pb.ItemInput(id="bad", image=bad))
    assert reply.upserted == 1
    assert [(error.index, error.id) for error in reply.errors] == [(1, "bad")]
    assert "items[1].image" in reply.errors[0].message
    stored = stubs["catalog"].GetItems(catalog_pb.GetItemsRequest(ids=["good", "bad"]))
    assert [item.id for item in stored.items] == ["good"] and list(stored.missing_ids) == ["bad"]


# -- events ----------------------------------------------------------------------

def test_an_unrepresentable_event_time_is_that_events_error(stubs):
    def event(item: str, **timestamp) -> recommendation_pb.Event:
        message = recommendation_pb.Event(user_id="u", item_id=item, type=recommendation_pb.EVENT_TYPE_CLICK)
        if timestamp:
            message.timestamp.CopyFrom(timestamp_pb2.Timestamp(**timestamp))
        return message

    reply = stubs["users"].RecordEvents(recommendation_pb.RecordEventsRequest(events=[
        event("good"),
        event("year-10000", seconds=253_402_300_800),
        event("negative-nanos", seconds=1_700_000_000, nanos=-1),
        event("year-0", seconds=-62_135_596_801),
        event("also-good", seconds=1_700_000_000),
    ]))
    assert reply.recorded == 2
    assert [error.index for error in reply.errors] == [1, 2, 3]
    assert all("timestamp" in error.message for error in reply.errors)
    profile = stubs["users"].GetProfile(recommendation_pb.GetProfileRequest(user_id="u"))
    assert profile.event_count == 2


# -- filters ---------------------------------------------------------------------

@pytest.mark.parametrize("key", ["a[", "a..b", "a]", ".a", "a.", "a[x]", "a b", 'a"b'])
def test_a_malformed_filter_key_is_invalid_argument(stubs, key):
    request = search_pb.SearchRequest(vector=types_pb.Vector(values=[1.0] * 32),
                                      filter=field_filter(key, keyword="x"))
    assert_invalid(refused(lambda: stubs["search"].Search(request)), "filter.must[0].field.key")
    recommend = recommendation_pb.RecommendRequest(user_id="u", filter=field_filter(key, keyword="x"))
    assert_invalid(refused(lambda: stubs["users"].Recommend(recommend)), "filter.must[0].field.key")
    delete = catalog_pb.DeleteItemsRequest(filter=field_filter(key, keyword="x"))
    assert_invalid(refused(lambda: stubs["catalog"].DeleteItems(delete)), "filter.must[0].field.key")


def test_well_formed_keys_still_filter(stubs):
    upsert(stubs, catalog_pb.ItemInput(id="a", text="a", payload=struct_from(
        {"brand": {"name": "acme"}, "tags": ["x", "y"], "snake_case-key": 1})))
    for key, match in (("brand.name", {"keyword": "acme"}), ("tags[]", {"keyword": "y"}),
                       ("tags", {"keyword": "x"}), ("snake_case-key", {"integer": 1})):
        request = search_pb.SearchRequest(text="a", target=types_pb.SEARCH_TARGET_TEXT,
                                          filter=field_filter(key, **match))
        assert [hit.id for hit in stubs["search"].Search(request).results] == ["a"], key


@pytest.mark.parametrize("bound", [dict(seconds=253_402_300_800), dict(seconds=-62_135_596_801),
                                   dict(seconds=0, nanos=-5), dict(seconds=0, nanos=1_000_000_000)])
def test_an_out_of_range_datetime_bound_is_invalid_argument(stubs, bound):
    condition = field_filter("when", datetime_range=types_pb.DatetimeRange(gt=timestamp_pb2.Timestamp(**bound)))
    request = search_pb.SearchRequest(vector=types_pb.Vector(values=[1.0] * 32), filter=condition)
    assert_invalid(refused(lambda: stubs["search"].Search(request)), "filter.must[0].field.datetime_range.gt")


def test_extreme_but_valid_datetime_bounds_work(stubs):
    for seconds in (-62_135_596_800, 253_402_300_799):  # 0001-01-01, 9999-12-31
        condition = field_filter("when", datetime_range=types_pb.DatetimeRange(
            gte=timestamp_pb2.Timestamp(seconds=seconds)))
        request = search_pb.SearchRequest(vector=types_pb.Vector(values=[1.0] * 32), filter=condition)
        assert list(stubs["search"].Search(request).results) == []


# -- deep structures ---------------------------------------------------------------

def nested_struct(depth: int, root: struct_pb2.Struct | None = None) -> struct_pb2.Struct:
    """Built top-down in place: copying a deep message parses it, and parsers stop at depth 100."""
    root = struct_pb2.Struct() if root is None else root
    level = root
    for _ in range(depth - 1):
        level = level.fields["a"].struct_value
    level.fields["leaf"].string_value = "x"
    return root


def struct_from(values: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def nested_filter(depth: int, root: types_pb.Filter | None = None) -> types_pb.Filter:
    root = types_pb.Filter() if root is None else root
    level = root
    for _ in range(depth - 1):
        level = level.must.add().filter
    level.must.add().field.CopyFrom(types_pb.FieldCondition(key="k", keyword="v"))
    return root


def test_a_struct_nested_200_deep_is_invalid_argument(stubs):
    upload = catalog_pb.UpsertItemsRequest()
    item = upload.items.add(id="deep", text="x")
    nested_struct(200, item.payload)
    assert_invalid(refused(lambda: list(stubs["catalog"].UpsertItems(iter([upload])))), "request")
    search = search_pb.SearchRequest(text="x")
    nested_filter(200, search.filter)
    assert_invalid(refused(lambda: stubs["search"].Search(search)), "request")


def test_a_payload_deeper_than_the_cap_is_that_items_error(stubs):
    reply = upsert(stubs, catalog_pb.ItemInput(id="ok", text="x", payload=nested_struct(3)),
                   catalog_pb.ItemInput(id="deep", text="x", payload=nested_struct(validation.MAX_PAYLOAD_DEPTH + 1)))
    assert reply.upserted == 1
    assert [error.id for error in reply.errors] == ["deep"] and "items[1].payload" in reply.errors[0].message


def test_a_filter_deeper_than_the_cap_names_the_field(stubs):
    request = search_pb.SearchRequest(text="x", filter=nested_filter(validation.MAX_FILTER_DEPTH + 3))
    assert_invalid(refused(lambda: stubs["search"].Search(request)), "filter.must[0].filter")


# -- undecodable messages ------------------------------------------------------------

UNARY_METHODS = ["/lookalike.v1.EmbeddingService/Embed", "/lookalike.v1.SearchService/Search",
                 "/lookalike.v1.SearchService/SimilarItems", "/lookalike.v1.CatalogService/GetItems",
                 "/lookalike.v1.CatalogService/DeleteItems", "/lookalike.v1.RecommendationService/RecordEvents",
                 "/lookalike.v1.RecommendationService/Recommend", "/lookalike.v1.RecommendationService/GetProfile",
                 "/lookalike.v1.RecommendationService/ForgetUser"]
GARBAGE = b"\x0a\xff\xff\xff\xff\x0f"  # field 1, a length far past the end


@pytest.mark.parametrize("method", UNARY_METHODS)
def test_an_undecodable_unary_request_is_invalid_argument(stubs, method):
    assert_invalid(refused(lambda: stubs["channel"].unary_unary(method)(GARBAGE)), "request")


def test_an_undecodable_stream_message_is_invalid_argument(stubs):
    channel = stubs["channel"]
    upload = channel.stream_stream("/lookalike.v1.CatalogService/UpsertItems")
    assert_invalid(refused(lambda: list(upload(iter([GARBAGE])))), "request")
    stream = channel.stream_stream("/lookalike.v1.EmbeddingService/EmbedStream")
    assert_invalid(refused(lambda: list(stream(iter([GARBAGE])))), "request")


# -- lengths and caps ----------------------------------------------------------------

LONG = "x" * 10_000


def test_long_ids_and_keys_are_refused_without_echoing_them_whole(stubs):
    cases = [
        (lambda: stubs["users"].Recommend(recommendation_pb.RecommendRequest(user_id=LONG)), "user_id"),
        (lambda: stubs["users"].GetProfile(recommendation_pb.GetProfileRequest(user_id=LONG)), "user_id"),
        (lambda: stubs["search"].SimilarItems(search_pb.SimilarItemsRequest(item_id=LONG)), "item_id"),
        (lambda: stubs["search"].Search(search_pb.SearchRequest(item_id=LONG)), "item_id"),
        (lambda: list(stubs["embedding"].EmbedStream(iter([embedding_pb.EmbedStreamRequest(key=LONG, text="t")]))),
         "key"),
        (lambda: list(stubs["embedding"].EmbedStream(iter([embedding_pb.EmbedStreamRequest(key=LONG)]))),
         "input[xxx"),
        (lambda: stubs["search"].Search(search_pb.SearchRequest(text="x", filter=field_filter(LONG, keyword="v"))),
         "filter.must[0].field.key"),
    ]
    for call, field in cases:
        error = refused(call)
        assert_invalid(error, field)
        assert len(error.details()) < METADATA_SOFT_LIMIT // 4


def test_a_long_id_in_a_batch_is_that_items_error_and_echoed_short(stubs):
    reply = upsert(stubs, catalog_pb.ItemInput(id=LONG, text="x"), catalog_pb.ItemInput(id="fine", text="y"))
    assert reply.upserted == 1 and reply.errors[0].index == 0
    assert len(reply.errors[0].id) <= validation.MAX_ID_LENGTH + 10 and len(reply.errors[0].message) < 1000


def test_per_call_caps_on_events_and_items(stubs):
    click = recommendation_pb.Event(user_id="u", item_id="i", type=recommendation_pb.EVENT_TYPE_CLICK)
    too_many = recommendation_pb.RecordEventsRequest(events=[click] * (validation.MAX_EVENTS_PER_CALL + 1))
    assert_invalid(refused(lambda: stubs["users"].RecordEvents(too_many)), "events")
    items = [catalog_pb.ItemInput(id=f"i{n}", text_vector=types_pb.Vector(values=[1.0] * 32))
             for n in range(validation.MAX_ITEMS_PER_MESSAGE + 1)]
    assert_invalid(refused(lambda: upsert(stubs, *items)), "items")
    assert upsert(stubs, *items[:validation.MAX_ITEMS_PER_MESSAGE]).upserted == validation.MAX_ITEMS_PER_MESSAGE


# -- valid requests that used to fail --------------------------------------------------

@pytest.mark.parametrize("strategy", [recommendation_pb.RECOMMEND_STRATEGY_QDRANT_AVERAGE,
                                      recommendation_pb.RECOMMEND_STRATEGY_QDRANT_BEST_SCORE])
def test_native_strategies_serve_a_history_with_a_text_only_item(stubs, strategy):
    upsert(stubs, catalog_pb.ItemInput(id="picture", image=png("red")),
           catalog_pb.ItemInput(id="words", text="a red square"),
           catalog_pb.ItemInput(id="other", image=png("blue")))
    stubs["users"].RecordEvents(recommendation_pb.RecordEventsRequest(events=[
        recommendation_pb.Event(user_id="u", item_id=item, type=recommendation_pb.EVENT_TYPE_LIKE)
        for item in ("picture", "words")]))
    reply = stubs["users"].Recommend(recommendation_pb.RecommendRequest(user_id="u", strategy=strategy))
    assert reply.strategy == strategy and not reply.cold_start
    assert {result.id for result in reply.results} <= {"other"}
