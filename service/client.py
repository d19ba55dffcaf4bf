"""A small typed Python client over the gRPC API; the CLI and the tests use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

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
from service.convert import payload_from_struct

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
        message = catalog_pb.ItemInput(id=self.id, image=self.image, text=self.text)
        message.payload.update(dict(self.payload))
        if self.image_vector is not None:
            message.image_vector.values.extend(self.image_vector)
        if self.text_vector is not None:
            message.text_vector.values.extend(self.text_vector)
        return message


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any]
    text: str | None


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
        message = recommendation_pb.Event(user_id=self.user_id, item_id=self.item_id, type=EVENT_TYPES[self.type],
                                          weight=self.weight, event_id=self.event_id)
        if self.timestamp is not None:
            message.timestamp.FromDatetime(self.timestamp)
        return message


@dataclass(frozen=True)
class Recommended:
    id: str
    score: float
    payload: dict[str, Any]
    text: str | None
    interest_index: int | None
    because: list[str]


@dataclass(frozen=True)
class RecommendResult:
    items: list[Recommended]
    strategy: str
    cold_start: bool
    next_page_token: str

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]


@dataclass(frozen=True)
class UpsertSummary:
    upserted: int
    failed: int
    errors: list[tuple[int, str, str]]  # (index, id, message)


@dataclass(frozen=True)
class Embeddings:
    text_vectors: np.ndarray
    image_vectors: np.ndarray
    model: str
    dim: int


class LookalikeClient:
    def __init__(self, target: str, timeout: float | None = 60.0, max_message_mb: int = 64) -> None:
        size = max_message_mb * 1024 * 1024
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size)])
        self._timeout = timeout
        self._embedding = embedding_grpc.EmbeddingServiceStub(self._channel)
        self._catalog = catalog_grpc.CatalogServiceStub(self._channel)
        self._search = search_grpc.SearchServiceStub(self._channel)
        self._recommendation = recommendation_grpc.RecommendationServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def __enter__(self) -> "LookalikeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    # -- health ---------------------------------------------------------

    def health(self, service: str = "") -> str:
        reply = self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=self._timeout)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def wait_until_serving(self, timeout: float = 120.0) -> None:
        """Block until health says SERVING (the model loads after the port opens)."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)
        for reply in self._health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=timeout):
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return

    # -- embedding ------------------------------------------------------

    def embed(self, texts: Sequence[str] = (), images: Sequence[bytes] = ()) -> Embeddings:
        reply = self._embedding.Embed(embedding_pb.EmbedRequest(texts=texts, images=images), timeout=self._timeout)
        return Embeddings(_matrix(reply.text_vectors, reply.dim), _matrix(reply.image_vectors, reply.dim),
                          reply.model, reply.dim)

    def embed_stream(self, inputs: Iterable[tuple[str, str | bytes]]) -> Iterator[tuple[str, np.ndarray]]:
        """(key, text or image bytes) in, (key, vector) out, in order."""
        def requests() -> Iterator[embedding_pb.EmbedStreamRequest]:
            for key, value in inputs:
                if isinstance(value, bytes):
                    yield embedding_pb.EmbedStreamRequest(key=key, image=value)
                else:
                    yield embedding_pb.EmbedStreamRequest(key=key, text=value)

        for reply in self._embedding.EmbedStream(requests(), timeout=self._timeout):
            yield reply.key, np.asarray(reply.vector.values, dtype=np.float32)

    # -- catalog --------------------------------------------------------

    def upsert(self, items: Iterable[NewItem], batch_size: int = 32,
               on_batch: Callable[[int], None] | None = None) -> UpsertSummary:
        """Stream items in batches; `on_batch(n)` is called as each batch is sent."""
        def requests() -> Iterator[catalog_pb.UpsertItemsRequest]:
            batch: list[catalog_pb.ItemInput] = []
            for item in items:
                batch.append(item.to_proto())
                if len(batch) >= batch_size:
                    yield catalog_pb.UpsertItemsRequest(items=batch)
                    if on_batch:
                        on_batch(len(batch))
                    batch = []
            if batch:
                yield catalog_pb.UpsertItemsRequest(items=batch)
                if on_batch:
                    on_batch(len(batch))

        reply = self._catalog.UpsertItems(requests(), timeout=None)
        return UpsertSummary(reply.upserted, reply.failed, [(e.index, e.id, e.message) for e in reply.errors])

    def get(self, ids: Sequence[str], with_vectors: bool = False) -> catalog_pb.GetItemsResponse:
        return self._catalog.GetItems(catalog_pb.GetItemsRequest(ids=ids, with_vectors=with_vectors),
                                      timeout=self._timeout)

    def delete(self, ids: Sequence[str] = (), filter: types_pb.Filter | None = None) -> int:
        if filter is not None:
            request = catalog_pb.DeleteItemsRequest(filter=filter)
        else:
            request = catalog_pb.DeleteItemsRequest(ids=catalog_pb.ItemIds(ids=ids))
        return self._catalog.DeleteItems(request, timeout=self._timeout).deleted

    # -- search ---------------------------------------------------------

    def search(self, *, text: str | None = None, image: bytes | None = None, item_id: str | None = None,
               vector: Sequence[float] | None = None, target: str = "image", filter: types_pb.Filter | None = None,
               limit: int = 10, offset: int = 0, score_threshold: float | None = None) -> list[Hit]:
        request = search_pb.SearchRequest(target=TARGETS[target], filter=filter, limit=limit, offset=offset,
                                          score_threshold=score_threshold)
        if text is not None:
            request.text = text
        elif image is not None:
            request.image = image
        elif item_id is not None:
            request.item_id = item_id
        elif vector is not None:
            request.vector.values.extend(vector)
        return _hits(self._search.Search(request, timeout=self._timeout).results)

    def similar(self, item_id: str, *, target: str = "image", filter: types_pb.Filter | None = None,
                limit: int = 10, offset: int = 0, score_threshold: float | None = None, user_id: str = "",
                include_seen: bool = False) -> list[Hit]:
        request = search_pb.SimilarItemsRequest(item_id=item_id, target=TARGETS[target], filter=filter, limit=limit,
                                                offset=offset, score_threshold=score_threshold, user_id=user_id,
                                                include_seen=include_seen)
        return _hits(self._search.SimilarItems(request, timeout=self._timeout).results)

    # -- users ----------------------------------------------------------

    def record_events(self, events: Iterable[UserEvent]) -> recommendation_pb.RecordEventsResponse:
        request = recommendation_pb.RecordEventsRequest(events=[event.to_proto() for event in events])
        return self._recommendation.RecordEvents(request, timeout=self._timeout)

    def recommend(self, user_id: str, *, limit: int = 10, offset: int = 0, page_token: str = "",
                  filter: types_pb.Filter | None = None, diversity: float | None = None, include_seen: bool = False,
                  strategy: str = "multi_interest", explain: bool = False) -> RecommendResult:
        request = recommendation_pb.RecommendRequest(
            user_id=user_id, filter=filter, limit=limit, offset=offset, page_token=page_token, diversity=diversity,
            include_seen=include_seen, strategy=STRATEGIES[strategy], explain=explain)
        reply = self._recommendation.Recommend(request, timeout=self._timeout)
        names = {value: name for name, value in STRATEGIES.items()}
        return RecommendResult(
            items=[Recommended(id=r.id, score=r.score, payload=payload_from_struct(r.payload, "payload"),
                               text=r.text if r.HasField("text") else None,
                               interest_index=r.interest_index if r.HasField("interest_index") else None,
                               because=list(r.because_item_ids)) for r in reply.results],
            strategy=names[reply.strategy], cold_start=reply.cold_start, next_page_token=reply.next_page_token)

    def profile(self, user_id: str, with_centroids: bool = False) -> recommendation_pb.GetProfileResponse:
        request = recommendation_pb.GetProfileRequest(user_id=user_id, with_centroids=with_centroids)
        return self._recommendation.GetProfile(request, timeout=self._timeout)

    def forget_user(self, user_id: str) -> int:
        request = recommendation_pb.ForgetUserRequest(user_id=user_id)
        return self._recommendation.ForgetUser(request, timeout=self._timeout).deleted_events


def _matrix(vectors: Sequence[types_pb.Vector], dim: int) -> np.ndarray:
    if not vectors:
        return np.zeros((0, dim), dtype=np.float32)
    return np.asarray([list(vector.values) for vector in vectors], dtype=np.float32)


def _hits(results: Sequence[types_pb.ScoredItem]) -> list[Hit]:
    return [Hit(id=r.id, score=r.score, payload=payload_from_struct(r.payload, "payload"),
                text=r.text if r.HasField("text") else None) for r in results]
