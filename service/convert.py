"""Protobuf <-> domain: the only module that knows both.

Wire conventions (0 means default, unset oneofs, Struct's float-only numbers)
are settled here, so nothing past this point sees a protobuf message. It only
decodes: it refuses what cannot be read (an unset oneof, an unknown enum, a
foreign page token); every check on values is in service/validation.py.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

import numpy as np
from google.protobuf import struct_pb2, timestamp_pb2

from recommender import filters as f
from recommender.errors import InvalidArgument
from recommender.types import (
    Event,
    EventType,
    Example,
    Interest,
    ItemError,
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
from service import validation, wire
from service.api.lookalike.v1 import (
    catalog_service_pb2 as catalog_pb,
    embedding_service_pb2 as embedding_pb,
    recommendation_service_pb2 as recommendation_pb,
    search_service_pb2 as search_pb,
    types_pb2 as types_pb,
)
from service.requests import EventBatch, ImageQuery, ItemQuery, Query, RawItem, SearchSpec, TextQuery, VectorQuery

DEFAULT_LIMIT = 10
DEFAULT_DIVERSITY = 0.2

# google.protobuf.Timestamp's own range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799

_TARGETS: dict[int, SearchTarget] = {
    types_pb.SEARCH_TARGET_UNSPECIFIED: SearchTarget.IMAGE,
    types_pb.SEARCH_TARGET_IMAGE: SearchTarget.IMAGE,
    types_pb.SEARCH_TARGET_TEXT: SearchTarget.TEXT,
    types_pb.SEARCH_TARGET_BOTH: SearchTarget.BOTH,
}


# -- queries -----------------------------------------------------------------

def search_from_proto(request: search_pb.SearchRequest) -> SearchSpec:
    kind = request.WhichOneof("query")
    if kind is None:
        raise InvalidArgument("query", "empty query: set one of text, image, item_id or vector")
    if kind == "text":
        query: Query = TextQuery(request.text)
    elif kind == "image":
        query = ImageQuery(request.image)
    elif kind == "item_id":
        query = ItemQuery(request.item_id)
    else:
        query = VectorQuery(vector_from_proto(request.vector))
    return SearchSpec(query=query, target=target_from_proto(request.target),
                      filter=filter_from_proto(request.filter if request.HasField("filter") else None),
                      params=params_from_proto(request))


def similar_from_proto(request: search_pb.SimilarItemsRequest) -> SearchSpec:
    return SearchSpec(query=ItemQuery(request.item_id), target=target_from_proto(request.target),
                      filter=filter_from_proto(request.filter if request.HasField("filter") else None),
                      params=params_from_proto(request), user_id=request.user_id or None,
                      exclude_seen=not request.include_seen)


def params_from_proto(request: search_pb.SearchRequest | search_pb.SimilarItemsRequest) -> SearchParams:
    threshold = request.score_threshold if request.HasField("score_threshold") else None
    return SearchParams(limit=request.limit or DEFAULT_LIMIT, offset=request.offset, score_threshold=threshold)


def target_from_proto(value: int) -> SearchTarget:
    try:
        return _TARGETS[value]
    except KeyError:
        raise InvalidArgument("target", f"unknown search target {value}") from None


def search_response(results: Sequence[Scored]) -> search_pb.SearchResponse:
    return search_pb.SearchResponse(results=[scored_to_proto(hit) for hit in results])


def similar_response(results: Sequence[Scored]) -> search_pb.SimilarItemsResponse:
    return search_pb.SimilarItemsResponse(results=[scored_to_proto(hit) for hit in results])


def scored_to_proto(hit: Scored) -> types_pb.ScoredItem:
    return types_pb.ScoredItem(id=hit.item_id, score=hit.score, payload=payload_to_struct(hit.payload),
                               text=hit.text)


# -- vectors -----------------------------------------------------------------

def vector_from_proto(vector: types_pb.Vector) -> np.ndarray:
    return np.asarray(vector.values, dtype=np.float32)


def vector_to_proto(vector: np.ndarray) -> types_pb.Vector:
    return types_pb.Vector(values=vector.tolist())


def embed_inputs(request: embedding_pb.EmbedRequest) -> tuple[list[str], list[bytes]]:
    return list(request.texts), list(request.images)


def embed_response(text_vectors: np.ndarray, image_vectors: np.ndarray, model: str,
                   dim: int) -> embedding_pb.EmbedResponse:
    return embedding_pb.EmbedResponse(
        text_vectors=[vector_to_proto(v) for v in text_vectors],
        image_vectors=[vector_to_proto(v) for v in image_vectors], model=model, dim=dim)


def embed_stream_input(request: embedding_pb.EmbedStreamRequest) -> TextQuery | ImageQuery:
    kind = request.WhichOneof("input")
    if kind == "text":
        return TextQuery(request.text)
    if kind == "image":
        return ImageQuery(request.image)
    raise InvalidArgument(f"input[{validation.shown(request.key)}]", "stream message has no input: set text or image")


def embed_stream_response(key: str, vector: np.ndarray, model: str) -> embedding_pb.EmbedStreamResponse:
    return embedding_pb.EmbedStreamResponse(key=key, vector=vector_to_proto(vector), model=model)


# -- items -------------------------------------------------------------------

def items_from_proto(items: Iterable[catalog_pb.ItemInput], first_index: int) -> tuple[list[RawItem], list[ItemError]]:
    """Each item converts on its own: a malformed one becomes an error, not an abort."""
    raws, errors = [], []
    for index, item in enumerate(items, start=first_index):
        try:
            raws.append(RawItem(
                index=index, item_id=item.id, image=item.image,
                text=item.text if item.HasField("text") else None,
                payload=payload_from_struct(item.payload, f"items[{index}].payload"),
                image_vector=list(item.image_vector.values) if item.HasField("image_vector") else None,
                text_vector=list(item.text_vector.values) if item.HasField("text_vector") else None,
            ))
        except InvalidArgument as error:
            errors.append(ItemError(index, item.id, str(error)))
    return raws, errors


def upsert_response(outcome: UpsertOutcome) -> catalog_pb.UpsertItemsResponse:
    """The acknowledgement of one request message: its items stored, and the others with why."""
    return catalog_pb.UpsertItemsResponse(
        upserted=outcome.upserted, failed=len(outcome.errors),
        errors=[catalog_pb.ItemError(id=_echoed_id(e.item_id), index=e.index, message=e.message)
                for e in outcome.errors])


def _echoed_id(item_id: str) -> str:
    """An over-long id comes back shortened: echoing 10 KB per failed item helps nobody."""
    return item_id if len(item_id) <= validation.MAX_ID_LENGTH else validation.shown(item_id)


def item_to_proto(item: StoredItem, with_vectors: bool) -> types_pb.Item:
    message = types_pb.Item(id=item.item_id, text=item.text, payload=payload_to_struct(item.payload),
                            has_image=item.has_image)
    if with_vectors and item.image_vector is not None:
        message.image_vector.CopyFrom(vector_to_proto(item.image_vector))
    if with_vectors and item.text_vector is not None:
        message.text_vector.CopyFrom(vector_to_proto(item.text_vector))
    return message


def get_items_from_proto(request: catalog_pb.GetItemsRequest) -> tuple[list[str], bool]:
    """(ids, with_vectors)."""
    return list(request.ids), request.with_vectors


def get_items_response(items: Sequence[StoredItem], missing: Sequence[str],
                       with_vectors: bool) -> catalog_pb.GetItemsResponse:
    return catalog_pb.GetItemsResponse(items=[item_to_proto(item, with_vectors) for item in items],
                                       missing_ids=missing)


def delete_selector(request: catalog_pb.DeleteItemsRequest) -> list[str] | f.Filter:
    kind = request.WhichOneof("selector")
    if kind == "ids":
        return list(request.ids.ids)
    if kind == "filter":
        return filter_from_proto(request.filter) or f.Filter()
    raise InvalidArgument("selector", "set ids or filter")


def delete_response(deleted: int) -> catalog_pb.DeleteItemsResponse:
    return catalog_pb.DeleteItemsResponse(deleted=deleted)


# -- payloads ----------------------------------------------------------------

def payload_from_struct(struct: struct_pb2.Struct, field: str) -> dict[str, Any]:
    """Struct numbers are all doubles; whole ones become ints so integer matches work."""
    try:
        return wire.payload_from_struct(struct, field)
    except wire.NonFiniteNumber as error:
        raise InvalidArgument(error.field, "numbers must be finite") from None


payload_to_struct = wire.payload_to_struct


# -- filters -----------------------------------------------------------------

def filter_from_proto(message: types_pb.Filter | None, field: str = "filter") -> f.Filter | None:
    """An empty filter on the wire means no filter."""
    if message is None:
        return None
    converted = _filter(message, field)
    return None if converted.is_empty else converted


def _filter(message: types_pb.Filter, field: str) -> f.Filter:
    return f.Filter(
        must=tuple(_condition(c, f"{field}.must[{i}]") for i, c in enumerate(message.must)),
        should=tuple(_condition(c, f"{field}.should[{i}]") for i, c in enumerate(message.should)),
        must_not=tuple(_condition(c, f"{field}.must_not[{i}]") for i, c in enumerate(message.must_not)),
    )


def _condition(message: types_pb.Condition, field: str) -> f.Condition:
    kind = message.WhichOneof("condition")
    if kind == "field":
        return _field_condition(message.field, f"{field}.field")
    if kind == "is_empty":
        return f.IsEmpty(message.is_empty.key)
    if kind == "has_id":
        return f.HasId(tuple(message.has_id.item_ids))
    if kind == "nested":
        return f.Nested(message.nested.key, _filter(message.nested.filter, f"{field}.nested.filter"))
    if kind == "filter":
        return _filter(message.filter, f"{field}.filter")
    raise InvalidArgument(field, "condition is empty: set field, is_empty, has_id, nested or filter")


def _field_condition(message: types_pb.FieldCondition, field: str) -> f.Condition:
    key = message.key
    kind = message.WhichOneof("match")
    if kind == "keyword":
        return f.Match(key, message.keyword)
    if kind == "integer":
        return f.Match(key, message.integer)
    if kind == "boolean":
        return f.Match(key, message.boolean)
    if kind in ("any_keyword", "any_integer", "except_keyword"):
        values = tuple(getattr(message, kind).values)
        return (f.MatchExcept if kind == "except_keyword" else f.MatchAny)(key, values)
    if kind == "range":
        bounds = {name: getattr(message.range, name) for name in ("gt", "gte", "lt", "lte")
                  if message.range.HasField(name)}
        return f.Range(key, **bounds)
    if kind == "datetime_range":
        bounds = {name: timestamp_from_proto(getattr(message.datetime_range, name), f"{field}.datetime_range.{name}")
                  for name in ("gt", "gte", "lt", "lte") if message.datetime_range.HasField(name)}
        return f.DatetimeRange(key, **bounds)
    raise InvalidArgument(field, f"field condition on {key!r} has no match: set keyword, integer, boolean, "
                                 "any_keyword, any_integer, except_keyword, range or datetime_range")


def timestamp_from_proto(message: timestamp_pb2.Timestamp, field: str) -> datetime:
    """A Timestamp as an aware datetime; one outside what a Timestamp may hold cannot be read."""
    if not (MIN_TIMESTAMP_SECONDS <= message.seconds <= MAX_TIMESTAMP_SECONDS and 0 <= message.nanos < 10**9):
        raise InvalidArgument(field, "not a valid Timestamp: seconds must fall in years 1 to 9999 and nanos in "
                                     "0..999999999")
    # Timestamp.ToDatetime is the same sum, at ~10 us a call: most of a bulk RecordEvents' conversion.
    return _EPOCH + timedelta(seconds=message.seconds, microseconds=message.nanos // 1000)


# -- events and recommendations ---------------------------------------------

_EVENT_TYPES = {
    recommendation_pb.EVENT_TYPE_VIEW: EventType.VIEW,
    recommendation_pb.EVENT_TYPE_CLICK: EventType.CLICK,
    recommendation_pb.EVENT_TYPE_ADD_TO_CART: EventType.ADD_TO_CART,
    recommendation_pb.EVENT_TYPE_PURCHASE: EventType.PURCHASE,
    recommendation_pb.EVENT_TYPE_LIKE: EventType.LIKE,
    recommendation_pb.EVENT_TYPE_DISLIKE: EventType.DISLIKE,
    recommendation_pb.EVENT_TYPE_SKIP: EventType.SKIP,
}
_STRATEGIES = {
    recommendation_pb.RECOMMEND_STRATEGY_UNSPECIFIED: Strategy.MULTI_INTEREST,
    recommendation_pb.RECOMMEND_STRATEGY_MULTI_INTEREST: Strategy.MULTI_INTEREST,
    recommendation_pb.RECOMMEND_STRATEGY_SINGLE_CENTROID: Strategy.SINGLE_CENTROID,
    recommendation_pb.RECOMMEND_STRATEGY_QDRANT_AVERAGE: Strategy.QDRANT_AVERAGE,
    recommendation_pb.RECOMMEND_STRATEGY_QDRANT_BEST_SCORE: Strategy.QDRANT_BEST_SCORE,
    recommendation_pb.RECOMMEND_STRATEGY_POPULAR: Strategy.POPULAR,
}
_STRATEGY_ENUMS = {strategy: value for value, strategy in _STRATEGIES.items()
                   if value != recommendation_pb.RECOMMEND_STRATEGY_UNSPECIFIED}


def events_from_proto(request: recommendation_pb.RecordEventsRequest, now: datetime) -> EventBatch:
    batch = EventBatch([], [], [], [])
    for index, message in enumerate(request.events):
        field = f"events[{index}]"
        event_type = _EVENT_TYPES.get(message.type)
        if event_type is None:
            batch.errors.append((index, f"{field}.type: set an event type (view, click, add_to_cart, purchase, "
                                        "like, dislike, skip)"))
            continue
        try:
            timestamp = timestamp_from_proto(message.timestamp, f"{field}.timestamp") \
                if message.HasField("timestamp") else now
        except InvalidArgument as error:
            batch.errors.append((index, str(error)))
            continue
        weight = message.weight if message.HasField("weight") else 1.0
        batch.events.append(Event(user_id=message.user_id, item_id=message.item_id, event_type=event_type,
                                  timestamp=timestamp, weight=weight))
        batch.event_ids.append(message.event_id or None)
        batch.positions.append(index)
    return batch


def record_response(outcome: RecordOutcome, batch: EventBatch) -> recommendation_pb.RecordEventsResponse:
    errors = sorted(batch.errors + [(error.index, error.message) for error in outcome.errors])
    return recommendation_pb.RecordEventsResponse(
        recorded=outcome.recorded, unknown_item_ids=outcome.unknown_item_ids,
        errors=[recommendation_pb.EventError(index=index, message=message) for index, message in errors])


def recommend_from_proto(request: recommendation_pb.RecommendRequest) -> RecommendQuery:
    strategy = _STRATEGIES.get(request.strategy)
    if strategy is None:
        raise InvalidArgument("strategy", f"unknown strategy {request.strategy}")
    offset = _offset_from_token(request.page_token) if request.page_token else request.offset
    diversity = request.diversity if request.HasField("diversity") else DEFAULT_DIVERSITY
    return RecommendQuery(
        user_id=request.user_id, limit=request.limit or DEFAULT_LIMIT, offset=offset,
        filter=filter_from_proto(request.filter if request.HasField("filter") else None), diversity=diversity,
        exclude_seen=not request.include_seen, strategy=strategy, explain=request.explain,
        examples=tuple(_example(example, f"examples[{index}]") for index, example in enumerate(request.examples)))


def _example(message: recommendation_pb.Example, field: str) -> Example:
    weight = message.weight if message.HasField("weight") else 1.0
    kind = message.WhichOneof("example")
    if kind == "item_id":
        return Example(item_id=message.item_id, weight=weight)
    if kind == "vector":
        return Example(vector=vector_from_proto(message.vector), weight=weight)
    raise InvalidArgument(field, "example is empty: set item_id or vector")


def recommend_response(result: Recommendations, query: RecommendQuery) -> recommendation_pb.RecommendResponse:
    next_token = _token_for_offset(query.offset + query.limit) if result.has_more else ""
    return recommendation_pb.RecommendResponse(
        results=[recommendation_pb.Recommendation(
            id=item.item_id, score=item.score, payload=payload_to_struct(item.payload), text=item.text,
            interest_index=item.interest_index, because_item_ids=item.because,
            because_examples=item.because_examples) for item in result.items],
        strategy=_STRATEGY_ENUMS[result.strategy], cold_start=result.cold_start, next_page_token=next_token,
        unknown_example_ids=result.unknown_example_ids)


def _token_for_offset(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset_from_token(token: str) -> int:
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind == "offset" and value.isdigit():
            return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise InvalidArgument("page_token", "not a token this server issued; pass next_page_token unchanged")


def profile_from_proto(request: recommendation_pb.GetProfileRequest) -> tuple[str, bool]:
    """(user_id, with_centroids)."""
    return request.user_id, request.with_centroids


def forget_from_proto(request: recommendation_pb.ForgetUserRequest) -> str:
    return request.user_id


def profile_response(profile: UserProfile, with_centroids: bool) -> recommendation_pb.GetProfileResponse:
    def interests(group) -> list[recommendation_pb.Interest]:
        return [_interest_to_proto(index, interest, with_centroids) for index, interest in enumerate(group)]

    return recommendation_pb.GetProfileResponse(
        user_id=profile.user_id, interests=interests(profile.interests), negatives=interests(profile.negatives),
        event_count=profile.event_count, seen_count=len(profile.seen_item_ids))


def _interest_to_proto(index: int, interest: Interest, with_centroid: bool) -> recommendation_pb.Interest:
    message = recommendation_pb.Interest(index=index, importance=interest.importance, weight=interest.weight,
                                         item_ids=list(interest.item_ids))
    if with_centroid:
        message.centroid.CopyFrom(vector_to_proto(np.asarray(interest.centroid, dtype=np.float32)))
    return message


def forget_response(deleted: int) -> recommendation_pb.ForgetUserResponse:
    return recommendation_pb.ForgetUserResponse(deleted_events=deleted)
