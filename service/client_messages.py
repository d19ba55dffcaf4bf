"""The client's side of the wire: the plain types it takes and returns, and
their conversions to and from lookalike.v1 messages.

Pure functions over protobuf (no channel, no numpy), so the contract tests can
round-trip every message without a server. The server's side is service/convert.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, NamedTuple, Sequence

from service import wire
from service.api.lookalike.v1 import (
    catalog_service_pb2 as catalog_pb,
    embedding_service_pb2 as embedding_pb,
    recommendation_service_pb2 as recommendation_pb,
    search_service_pb2 as search_pb,
    types_pb2 as types_pb,
)
from service.filter_expr import parse_filter

EVENT_TYPES = {
    name: getattr(recommendation_pb, f"EVENT_TYPE_{name.upper()}")
    for name in ("view", "click", "add_to_cart", "purchase", "like", "dislike", "skip")
}
STRATEGIES = {
    name: getattr(recommendation_pb, f"RECOMMEND_STRATEGY_{name.upper()}")
    for name in ("multi_interest", "single_centroid", "qdrant_average", "qdrant_best_score", "popular")
}
TARGETS = {
    "image": types_pb.SEARCH_TARGET_IMAGE,
    "text": types_pb.SEARCH_TARGET_TEXT,
    "both": types_pb.SEARCH_TARGET_BOTH,
}
_STRATEGY_NAMES = {value: name for name, value in STRATEGIES.items()}

# A filter as the client takes it: a typed proto, or expressions like "color=red", "price<50".
FilterLike = types_pb.Filter | Sequence[str] | None


# -- what the client sends ----------------------------------------------------

@dataclass(frozen=True)
class NewItem:
    """An item to upsert. Give an image (encoded bytes), a text, or vectors."""

    id: str
    image: bytes = b""
    text: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    image_vector: Sequence[float] | None = None
    text_vector: Sequence[float] | None = None

    def to_proto(self) -> catalog_pb.ItemInput:
        message = catalog_pb.ItemInput(id=self.id, image=self.image, text=self.text,
                                       payload=wire.payload_to_struct(self.payload))
        if self.image_vector is not None:
            message.image_vector.values.extend(self.image_vector)
        if self.text_vector is not None:
            message.text_vector.values.extend(self.text_vector)
        return message


@dataclass(frozen=True)
class UserEvent:
    """A user's interaction; `type` is one of EVENT_TYPES' names."""

    user_id: str
    item_id: str
    type: str
    weight: float | None = None
    timestamp: datetime | None = None
    event_id: str = ""

    def to_proto(self) -> recommendation_pb.Event:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}: use one of {', '.join(EVENT_TYPES)}")
        message = recommendation_pb.Event(user_id=self.user_id, item_id=self.item_id, type=EVENT_TYPES[self.type],
                                          weight=self.weight, event_id=self.event_id)
        if self.timestamp is not None:
            message.timestamp.FromDatetime(self.timestamp)
        return message


@dataclass(frozen=True)
class Example:
    """An example for `recommend`: a catalog item or a raw vector. Weight 1 counts as much as
    a like, -1 as much as a dislike ("more like these, less like those")."""

    item_id: str | None = None
    vector: Sequence[float] | None = None
    weight: float = 1.0

    def to_proto(self) -> recommendation_pb.Example:
        if (self.item_id is None) == (self.vector is None):
            raise ValueError("an example is an item_id or a vector (exactly one)")
        message = recommendation_pb.Example(weight=self.weight)
        if self.item_id is not None:
            message.item_id = self.item_id
        else:
            message.vector.values.extend(self.vector)
        return message


ExampleLike = Example | str  # a bare string is an item example of weight 1


# -- what the client returns ----------------------------------------------------

@dataclass(frozen=True)
class Hit:
    """A search result."""

    id: str
    score: float
    payload: dict[str, Any]
    text: str | None


@dataclass(frozen=True)
class Item:
    """A stored item; vectors only when asked for."""

    id: str
    text: str | None
    payload: dict[str, Any]
    has_image: bool
    image_vector: list[float] | None = None
    text_vector: list[float] | None = None


@dataclass(frozen=True)
class ItemsFound:
    items: list[Item]
    missing_ids: list[str]


class ItemFailure(NamedTuple):
    """Why one upserted item was not stored; `index` counts from 0 over the whole stream."""

    index: int  # type: ignore[assignment]  # shadows tuple.index: the stream position reads best as `index`
    id: str
    message: str


@dataclass(frozen=True)
class UpsertSummary:
    """The outcome of a whole upsert stream, or (as UpsertAck) of one acknowledged batch."""

    upserted: int
    failed: int
    errors: list[ItemFailure]


UpsertAck = UpsertSummary


class StreamedVector(NamedTuple):
    """One reply of a bulk embedding stream."""

    key: str
    vector: list[float]
    model: str


@dataclass(frozen=True)
class Embeddings:
    """Unit vectors as lists of floats (`numpy.asarray(e.text_vectors)` gives a matrix)."""

    text_vectors: list[list[float]]
    image_vectors: list[list[float]]
    model: str
    dim: int


class EventFailure(NamedTuple):
    index: int  # type: ignore[assignment]  # shadows tuple.index: the request position reads best as `index`
    message: str


@dataclass(frozen=True)
class RecordSummary:
    recorded: int
    unknown_item_ids: list[str]
    errors: list[EventFailure]


@dataclass(frozen=True)
class Recommended:
    id: str
    score: float
    payload: dict[str, Any]
    text: str | None
    interest_index: int | None
    because: list[str]
    because_examples: list[int] = field(default_factory=list)  # positions in the request's examples


@dataclass(frozen=True)
class RecommendResult:
    items: list[Recommended]
    strategy: str
    cold_start: bool
    next_page_token: str
    unknown_example_ids: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]


@dataclass(frozen=True)
class InterestInfo:
    index: int
    importance: float
    weight: float
    item_ids: list[str]
    centroid: list[float] | None = None


@dataclass(frozen=True)
class Profile:
    user_id: str
    interests: list[InterestInfo]
    negatives: list[InterestInfo]
    event_count: int
    seen_count: int


# -- requests -------------------------------------------------------------------

def to_filter(filter: FilterLike) -> types_pb.Filter | None:
    if filter is None or isinstance(filter, types_pb.Filter):
        return filter
    if isinstance(filter, str):
        return parse_filter([filter])
    return parse_filter(list(filter))


def embed_request(texts: Sequence[str] = (), images: Sequence[bytes] = ()) -> embedding_pb.EmbedRequest:
    return embedding_pb.EmbedRequest(texts=list(texts), images=list(images))


def embed_stream_request(key: str, value: str | bytes) -> embedding_pb.EmbedStreamRequest:
    if isinstance(value, (bytes, bytearray)):
        return embedding_pb.EmbedStreamRequest(key=key, image=bytes(value))
    return embedding_pb.EmbedStreamRequest(key=key, text=value)


def upsert_request(items: Sequence[NewItem]) -> catalog_pb.UpsertItemsRequest:
    return catalog_pb.UpsertItemsRequest(items=[item.to_proto() for item in items])


def get_request(ids: Sequence[str], with_vectors: bool = False) -> catalog_pb.GetItemsRequest:
    return catalog_pb.GetItemsRequest(ids=list(ids), with_vectors=with_vectors)


def delete_request(ids: Sequence[str] = (), filter: FilterLike = None) -> catalog_pb.DeleteItemsRequest:
    converted = to_filter(filter)
    if converted is not None and ids:
        raise ValueError("delete by ids or by filter, not both")
    if converted is not None:
        return catalog_pb.DeleteItemsRequest(filter=converted)
    return catalog_pb.DeleteItemsRequest(ids=catalog_pb.ItemIds(ids=list(ids)))


def search_request(*, text: str | None = None, image: bytes | None = None, item_id: str | None = None,
                   vector: Sequence[float] | None = None, target: str = "image", filter: FilterLike = None,
                   limit: int = 10, offset: int = 0,
                   score_threshold: float | None = None) -> search_pb.SearchRequest:
    given = [name for name, value in (("text", text), ("image", image), ("item_id", item_id), ("vector", vector))
             if value is not None]
    if len(given) > 1:
        raise ValueError(f"give one query, not {' and '.join(given)}")
    request = search_pb.SearchRequest(target=_target(target), filter=to_filter(filter), limit=limit, offset=offset,
                                      score_threshold=score_threshold)
    if text is not None:
        request.text = text
    elif image is not None:
        request.image = image
    elif item_id is not None:
        request.item_id = item_id
    elif vector is not None:
        request.vector.values.extend(vector)
    return request


def similar_request(item_id: str, *, target: str = "image", filter: FilterLike = None, limit: int = 10,
                    offset: int = 0, score_threshold: float | None = None, user_id: str = "",
                    include_seen: bool = False) -> search_pb.SimilarItemsRequest:
    return search_pb.SimilarItemsRequest(item_id=item_id, target=_target(target), filter=to_filter(filter),
                                         limit=limit, offset=offset, score_threshold=score_threshold,
                                         user_id=user_id, include_seen=include_seen)


def record_events_request(events: Sequence[UserEvent]) -> recommendation_pb.RecordEventsRequest:
    return recommendation_pb.RecordEventsRequest(events=[event.to_proto() for event in events])


def recommend_request(user_id: str | None = None, *, limit: int = 10, offset: int = 0, page_token: str = "",
                      filter: FilterLike = None, diversity: float | None = None, include_seen: bool = False,
                      strategy: str = "multi_interest", explain: bool = False,
                      examples: Sequence[ExampleLike] = ()) -> recommendation_pb.RecommendRequest:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    return recommendation_pb.RecommendRequest(
        user_id=user_id or "", filter=to_filter(filter), limit=limit, offset=offset, page_token=page_token,
        diversity=diversity, include_seen=include_seen, strategy=STRATEGIES[strategy], explain=explain,
        examples=[(Example(item_id=e) if isinstance(e, str) else e).to_proto() for e in examples])


def profile_request(user_id: str, with_centroids: bool = False) -> recommendation_pb.GetProfileRequest:
    return recommendation_pb.GetProfileRequest(user_id=user_id, with_centroids=with_centroids)


def forget_request(user_id: str) -> recommendation_pb.ForgetUserRequest:
    return recommendation_pb.ForgetUserRequest(user_id=user_id)


def _target(name: str) -> types_pb.SearchTarget:
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}: use one of {', '.join(TARGETS)}")
    return TARGETS[name]


# -- replies --------------------------------------------------------------------

def parse_embed(reply: embedding_pb.EmbedResponse) -> Embeddings:
    return Embeddings(text_vectors=[list(v.values) for v in reply.text_vectors],
                      image_vectors=[list(v.values) for v in reply.image_vectors], model=reply.model, dim=reply.dim)


def parse_embed_stream(reply: embedding_pb.EmbedStreamResponse) -> StreamedVector:
    return StreamedVector(reply.key, list(reply.vector.values), reply.model)


def parse_upsert(reply: catalog_pb.UpsertItemsResponse) -> UpsertSummary:
    return UpsertSummary(reply.upserted, reply.failed, [ItemFailure(e.index, e.id, e.message) for e in reply.errors])


def parse_item(message: types_pb.Item) -> Item:
    return Item(id=message.id, text=message.text if message.HasField("text") else None,
                payload=wire.payload_from_struct(message.payload), has_image=message.has_image,
                image_vector=list(message.image_vector.values) if message.HasField("image_vector") else None,
                text_vector=list(message.text_vector.values) if message.HasField("text_vector") else None)


def parse_get(reply: catalog_pb.GetItemsResponse) -> ItemsFound:
    return ItemsFound(items=[parse_item(item) for item in reply.items], missing_ids=list(reply.missing_ids))


def parse_delete(reply: catalog_pb.DeleteItemsResponse) -> int:
    return reply.deleted


def parse_hit(message: types_pb.ScoredItem) -> Hit:
    return Hit(id=message.id, score=message.score, payload=wire.payload_from_struct(message.payload),
               text=message.text if message.HasField("text") else None)


def parse_search(reply: search_pb.SearchResponse | search_pb.SimilarItemsResponse) -> list[Hit]:
    return [parse_hit(hit) for hit in reply.results]


def parse_record(reply: recommendation_pb.RecordEventsResponse) -> RecordSummary:
    return RecordSummary(recorded=reply.recorded, unknown_item_ids=list(reply.unknown_item_ids),
                         errors=[EventFailure(e.index, e.message) for e in reply.errors])


def parse_recommend(reply: recommendation_pb.RecommendResponse) -> RecommendResult:
    return RecommendResult(
        items=[Recommended(id=r.id, score=r.score, payload=wire.payload_from_struct(r.payload),
                           text=r.text if r.HasField("text") else None,
                           interest_index=r.interest_index if r.HasField("interest_index") else None,
                           because=list(r.because_item_ids), because_examples=list(r.because_examples))
               for r in reply.results],
        strategy=_STRATEGY_NAMES.get(reply.strategy, "multi_interest"), cold_start=reply.cold_start,
        next_page_token=reply.next_page_token, unknown_example_ids=list(reply.unknown_example_ids))


def _parse_interest(message: recommendation_pb.Interest) -> InterestInfo:
    return InterestInfo(index=message.index, importance=message.importance, weight=message.weight,
                        item_ids=list(message.item_ids),
                        centroid=list(message.centroid.values) if message.HasField("centroid") else None)


def parse_profile(reply: recommendation_pb.GetProfileResponse) -> Profile:
    return Profile(user_id=reply.user_id, interests=[_parse_interest(i) for i in reply.interests],
                   negatives=[_parse_interest(i) for i in reply.negatives], event_count=reply.event_count,
                   seen_count=reply.seen_count)


def parse_forget(reply: recommendation_pb.ForgetUserResponse) -> int:
    return reply.deleted_events
