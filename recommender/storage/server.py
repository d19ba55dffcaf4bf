"""qdrant-client against a Qdrant server or cluster (or its local mode, in tests).

Two collections: `<collection>` (items) and `<collection>_events`. Several
service replicas may start at once against one cluster, so collections are
created if missing, a racing replica's "already exists" is tolerated, and the
model metadata is read back after creation rather than assumed.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from recommender.collection_settings import CollectionLayout
from recommender.filters import Filter
from recommender.ids import event_point_ids, point_id
from recommender.storage.base import (
    EVENT_INDEXES,
    EVENT_LAYOUT,
    FUSION_DEPTH,
    ITEM_ID_KEY,
    PAYLOAD_KEY,
    POPULARITY_FACET_LIMIT,
    RRF_K,
    TIME_KEY,
    TYPED_ITEM_KEY,
    USER_KEY,
    V1_EVENT_INDEXES,
    Catalog,
    EventStore,
    Storage,
    epoch_us,
    event_from_payload,
    event_payload,
    excluding,
    fetch_depth,
    first_seen,
    is_v1_event,
    item_of,
    item_payload,
    item_vectors,
    page,
    popularity_from_counts,
    require_condition,
    restricted,
    scored,
    stored_item,
    upgraded_event_payload,
)
from recommender.storage.server_errors import translated
from recommender.storage.server_filters import to_qdrant
from recommender.types import Event, EventType, ItemInput, Scored, SearchParams, StoredItem, VectorSpace

log = logging.getLogger(__name__)

MODEL_METADATA_KEY = "lookalike_model"
DIM_METADATA_KEY = "lookalike_dim"
EVENT_LAYOUT_METADATA_KEY = "lookalike_events_layout"  # absent: layout 1

_SCHEMAS: dict[str, Any] = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
    "bool": models.PayloadSchemaType.BOOL,
    "datetime": models.PayloadSchemaType.DATETIME,
    "text": models.PayloadSchemaType.TEXT,
    "uuid": models.PayloadSchemaType.UUID,
    # events' time: ranges and order only (see storage/base.py)
    "integer_range": models.IntegerIndexParams(type=models.IntegerIndexType.INTEGER, lookup=False, range=True),
}


class ServerCatalog(Catalog):
    def __init__(self, client: QdrantClient, collection: str, model_identity: str, dim: int, location: str) -> None:
        super().__init__(model_identity, dim)
        self._client = client
        self._collection = collection
        self._location = location

    def check_model(self) -> None:
        with translated(self._location):
            metadata = self._client.get_collection(self._collection).config.metadata or {}
        self._guard(f"collection {self._collection!r}", metadata.get(MODEL_METADATA_KEY),
                    metadata.get(DIM_METADATA_KEY))

    def ping(self) -> None:
        with translated(self._location):
            self._client.get_collection(self._collection)

    def upsert(self, items: Sequence[ItemInput]) -> None:
        self.require_same_model()
        if not items:
            return
        points = [models.PointStruct(id=point_id(item.item_id), vector=item_vectors(item), payload=item_payload(item))
                  for item in items]
        with translated(self._location):
            self._client.upsert(self._collection, points=points, wait=True)

    def get(self, item_ids: Sequence[str], with_vectors: bool = False) -> dict[str, StoredItem]:
        if not item_ids:
            return {}
        with translated(self._location):
            records = self._client.retrieve(self._collection, ids=[point_id(i) for i in first_seen(item_ids)],
                                            with_payload=True, with_vectors=with_vectors)
        items = (stored_item(record.payload or {}, record.vector if with_vectors and isinstance(record.vector, dict)
                             else None) for record in records)
        return {item.item_id: item for item in items}

    def present(self, item_ids: Sequence[str]) -> set[str]:
        by_point = {point_id(i): i for i in item_ids}
        if not by_point:
            return set()
        with translated(self._location):
            records = self._client.retrieve(self._collection, ids=list(by_point), with_payload=False,
                                            with_vectors=False)
        return {by_point[str(record.id)] for record in records}

    def delete(self, item_ids: Sequence[str]) -> int:
        present = self.get(item_ids)
        if present:
            with translated(self._location):
                self._client.delete(self._collection, points_selector=[point_id(i) for i in present], wait=True)
        return len(present)

    def delete_where(self, filter_: Filter) -> int:
        condition = to_qdrant(require_condition(filter_))
        with translated(self._location):
            matched = self._client.count(self._collection, count_filter=condition, exact=True).count
            self._client.delete(self._collection, points_selector=models.FilterSelector(filter=condition), wait=True)
        return matched

    def count(self) -> int:
        with translated(self._location):
            return self._client.count(self._collection, exact=True).count

    def search(self, vector: np.ndarray, space: VectorSpace, filter_: Filter | None, params: SearchParams,
               exclude_ids: Sequence[str] = ()) -> list[Scored]:
        with translated(self._location):
            response = self._client.query_points(
                self._collection, query=vector.tolist(), using=space.value,
                query_filter=to_qdrant(excluding(filter_, exclude_ids)), limit=fetch_depth(params),
                score_threshold=params.score_threshold, with_payload=True)
        return page([scored(point.payload, point.score) for point in response.points], params)

    def search_fused(self, vectors: Mapping[VectorSpace, np.ndarray], filter_: Filter | None, params: SearchParams,
                     exclude_ids: Sequence[str] = ()) -> list[Scored]:
        condition = to_qdrant(excluding(filter_, exclude_ids))
        depth = max(FUSION_DEPTH, fetch_depth(params))
        prefetch = [models.Prefetch(query=vector.tolist(), using=space.value, filter=condition, limit=depth)
                    for space, vector in vectors.items()]
        with translated(self._location):
            response = self._client.query_points(
                self._collection, prefetch=prefetch, query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
                limit=fetch_depth(params), score_threshold=params.score_threshold, with_payload=True)
        return page([scored(point.payload, point.score) for point in response.points], params)

    def search_many(self, vectors: Sequence[np.ndarray], limits: Sequence[int], space: VectorSpace,
                    filter_: Filter | None, exclude_ids: Sequence[str] = ()) -> list[list[Scored]]:
        if not vectors:
            return []
        condition = to_qdrant(excluding(filter_, exclude_ids))
        requests = [models.QueryRequest(query=vector.tolist(), using=space.value, filter=condition, limit=limit,
                                        with_payload=True, with_vector=[space.value])
                    for vector, limit in zip(vectors, limits)]
        with translated(self._location):
            responses = self._client.query_batch_points(self._collection, requests=requests)
        return [[scored(point.payload, point.score, point.vector, space) for point in response.points]
                for response in responses]

    def recommend_native(self, positives: Sequence[np.ndarray], negatives: Sequence[np.ndarray], best_score: bool,
                         space: VectorSpace, filter_: Filter | None, params: SearchParams,
                         exclude_ids: Sequence[str] = ()) -> list[Scored]:
        if not positives:
            return []
        strategy = models.RecommendStrategy.BEST_SCORE if best_score else models.RecommendStrategy.AVERAGE_VECTOR
        query = models.RecommendQuery(recommend=models.RecommendInput(
            positive=[vector.tolist() for vector in positives],
            negative=[vector.tolist() for vector in negatives] or None, strategy=strategy))
        with translated(self._location):
            response = self._client.query_points(
                self._collection, query=query, using=space.value,
                query_filter=to_qdrant(excluding(filter_, exclude_ids)), limit=params.limit, offset=params.offset,
                with_payload=True)
        return [scored(point.payload, point.score) for point in response.points]

    def scroll(self, filter_: Filter | None, limit: int, only_ids: Sequence[str] | None = None) -> list[Scored]:
        if only_ids is not None:
            if not only_ids:
                return []
            filter_ = restricted(filter_, only_ids)
        if limit <= 0:
            return []
        with translated(self._location):
            records, _ = self._client.scroll(self._collection, scroll_filter=to_qdrant(filter_), limit=limit,
                                             with_payload=True, with_vectors=False)
        return [scored(record.payload, 0.0) for record in records]


class ServerEventStore(EventStore):
    def __init__(self, client: QdrantClient, collection: str, location: str) -> None:
        self._client = client
        self._collection = collection
        self._location = location

    def append(self, events: Sequence[Event], event_ids: Sequence[str | None] | None = None) -> None:
        if not events:
            return
        ids = event_point_ids([event.user_id for event in events], event_ids)
        points = [models.PointStruct(id=point, vector={}, payload=event_payload(event))
                  for point, event in zip(ids, events)]
        with translated(self._location):
            self._client.upsert(self._collection, points=points, wait=True)

    def for_user(self, user_id: str, limit: int, until: datetime | None = None) -> list[Event]:
        records = self._latest(user_id, limit, until, with_payload=True)
        return [event_from_payload(record.payload) for record in reversed(records)]

    def recent_item_ids(self, user_id: str, limit: int, until: datetime | None = None) -> list[str]:
        records = self._latest(user_id, limit, until, with_payload=[TYPED_ITEM_KEY])
        return [item_of(record.payload[TYPED_ITEM_KEY]) for record in records]

    def count_for_user(self, user_id: str, until: datetime | None = None) -> int:
        with translated(self._location):
            return self._client.count(self._collection, count_filter=_user_filter(user_id, until), exact=True).count

    def _latest(self, user_id: str, limit: int, until: datetime | None, with_payload) -> list:
        if limit <= 0:
            return []
        with translated(self._location):
            records, _ = self._client.scroll(
                self._collection, scroll_filter=_user_filter(user_id, until), limit=limit, with_payload=with_payload,
                with_vectors=False, order_by=models.OrderBy(key=TIME_KEY, direction=models.Direction.DESC))
        return records

    def delete_user(self, user_id: str) -> int:
        condition = _user_filter(user_id, None)
        with translated(self._location):
            count = self._client.count(self._collection, count_filter=condition, exact=True).count
            self._client.delete(self._collection, points_selector=models.FilterSelector(filter=condition), wait=True)
        return count

    def popularity(self, since: datetime, until: datetime, weights: Mapping[EventType, float],
                   max_items: int) -> Counter:
        window = models.FieldCondition(key=TIME_KEY, range=models.Range(gte=epoch_us(since), lte=epoch_us(until)))
        with translated(self._location):
            response = self._client.facet(self._collection, key=TYPED_ITEM_KEY, limit=POPULARITY_FACET_LIMIT,
                                          exact=False, facet_filter=models.Filter(must=[window]))
        return popularity_from_counts(((str(hit.value), hit.count) for hit in response.hits), weights, max_items)

    def upgrade(self) -> int:
        """Layout 1 -> 2 in place (same ids), once per collection: its metadata records the layout.
        Replicas racing through it write the same points. Returns how many events were rewritten."""
        with translated(self._location):
            metadata = self._client.get_collection(self._collection).config.metadata or {}
            if int(metadata.get(EVENT_LAYOUT_METADATA_KEY, 1)) >= EVENT_LAYOUT:
                return 0
            old = models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key=TIME_KEY))])
            upgraded, offset = 0, None
            while True:
                records, offset = self._client.scroll(self._collection, scroll_filter=old, limit=512, offset=offset,
                                                      with_payload=True, with_vectors=False)
                points = [models.PointStruct(id=record.id, vector={}, payload=upgraded_event_payload(record.payload))
                          for record in records if record.payload and is_v1_event(record.payload)]
                if points:
                    self._client.upsert(self._collection, points=points, wait=True)
                    upgraded += len(points)
                if offset is None:
                    break
            for key in V1_EVENT_INDEXES:
                if key not in EVENT_INDEXES:
                    with contextlib.suppress(Exception):  # never indexed, or a racing replica dropped it first
                        self._client.delete_payload_index(self._collection, key, wait=True)
            self._client.update_collection(self._collection,
                                           metadata={**metadata, EVENT_LAYOUT_METADATA_KEY: EVENT_LAYOUT})
        if upgraded:
            log.info("events of %s upgraded to layout %d: %d rewritten", self._collection, EVENT_LAYOUT, upgraded)
        return upgraded


class ServerStorage(Storage):
    def __init__(self, client: QdrantClient, catalog: ServerCatalog, events: ServerEventStore, location: str,
                 close_client: bool) -> None:
        self.location = location
        self.catalog = catalog
        self.events = events
        self._client = client
        self._close_client = close_client

    def close(self) -> None:
        if self._close_client:
            self._client.close()


def open_server(client: QdrantClient, collection: str, model_identity: str, dim: int,
                payload_indexes: Mapping[str, str] | None = None, location: str = "qdrant",
                layout: CollectionLayout | None = None, close_client: bool = True) -> ServerStorage:
    """Create both collections if missing (tolerating a racing replica), index them, check the model."""
    layout = layout or CollectionLayout()
    space = models.VectorParams(size=dim, distance=models.Distance.COSINE)
    with translated(location):
        created = create_if_missing(client, collection, lambda: client.create_collection(
            collection, vectors_config={VectorSpace.IMAGE.value: space, VectorSpace.TEXT.value: space},
            metadata={MODEL_METADATA_KEY: model_identity, DIM_METADATA_KEY: dim}, **layout.create_arguments()))
        if created:
            log.info("created collection %s for model %s (dim %d)", collection, model_identity, dim)
        _index(client, collection, {ITEM_ID_KEY: "keyword",
                                    **{f"{PAYLOAD_KEY}.{key}": kind for key, kind in (payload_indexes or {}).items()}})
        events_collection = f"{collection}_events"
        # No vectors: events are looked up by payload only.
        events_created = create_if_missing(client, events_collection, lambda: client.create_collection(
            events_collection, vectors_config={}, metadata={EVENT_LAYOUT_METADATA_KEY: EVENT_LAYOUT},
            **layout.create_arguments()))
        _index(client, events_collection, EVENT_INDEXES)
    catalog = ServerCatalog(client, collection, model_identity, dim, location)
    catalog.check_model()  # read back: a racing replica may have created it with another model
    if catalog.mismatch:
        log.error("%s", catalog.mismatch)
    events = ServerEventStore(client, events_collection, location)
    if not events_created:
        events.upgrade()
    return ServerStorage(client, catalog, events, location, close_client)


def create_if_missing(client: QdrantClient, name: str, create: Callable[[], object]) -> bool:
    """True when this call created the collection; False when it existed or another replica won the race."""
    if client.collection_exists(name):
        return False
    try:
        create()
        return True
    except Exception as error:  # noqa: BLE001 - re-raised unless the collection now exists
        if _already_exists(error) and client.collection_exists(name):
            log.info("collection %s was created concurrently by another replica", name)
            return False
        raise


def _already_exists(error: Exception) -> bool:
    if isinstance(error, UnexpectedResponse):
        return error.status_code == 409 or "already exists" in str(error)
    # gRPC transport: recognised by module and status name, so the domain never imports grpc.
    code_of = getattr(error, "code", None)
    if type(error).__module__.split(".")[0] == "grpc" and callable(code_of):
        return getattr(code_of(), "name", None) == "ALREADY_EXISTS"
    return "already exists" in str(error)


def _index(client: QdrantClient, collection: str, indexes: Mapping[str, str]) -> None:
    for key, kind in indexes.items():
        client.create_payload_index(collection, key, _SCHEMAS[kind], wait=True)


def _user_filter(user_id: str, until: datetime | None) -> models.Filter:
    conditions: list = [models.FieldCondition(key=USER_KEY, match=models.MatchValue(value=user_id))]
    if until is not None:
        conditions.append(models.FieldCondition(key=TIME_KEY, range=models.Range(lte=epoch_us(until))))
    return models.Filter(must=conditions)
