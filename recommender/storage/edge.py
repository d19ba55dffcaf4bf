"""Qdrant Edge in-process: the embedded default.

Qdrant's own Rust engine runs inside this process: payload indexes, filtered
search, ordered scrolls and facets, with no server to run. Reads release the
GIL, so several catalog threads really run in parallel. One Edge shard holds
one collection, so a Lookalike collection is two shards (items, events) in
the locked data folder (folder.py); the model identity lives in a file there.

Edge builds HNSW graphs only when asked (`optimize`, synchronous, holding the
GIL for its whole run), so serving never triggers it: until an operator runs
`lookalike optimize`, searches are exact over the vectors, pre-filtered by the
payload indexes.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence, cast

import numpy as np
import qdrant_edge as edge

from recommender.errors import StorageFull
from recommender.filters import Filter
from recommender.ids import event_point_ids, point_id
from recommender.storage.base import (
    EVENT_INDEXES,
    FUSION_DEPTH,
    ITEM_ID_KEY,
    PAYLOAD_KEY,
    POPULARITY_FACET_LIMIT,
    RRF_K,
    TIME_KEY,
    TYPED_ITEM_KEY,
    USER_KEY,
    Catalog,
    EventStore,
    Storage,
    average_vector_query,
    epoch_us,
    event_from_payload,
    event_payload,
    excluding,
    fetch_depth,
    first_seen,
    item_of,
    item_payload,
    item_vectors,
    page,
    popularity_from_counts,
    require_condition,
    restricted,
    scored,
    stored_item,
)
from recommender.storage.edge_filters import to_edge
from recommender.storage.folder import DataFolder, StorageError, old_layout_message
from recommender.storage.migrate import upgrade_folder
from recommender.types import Event, EventType, ItemInput, Scored, SearchParams, StoredItem, VectorSpace

log = logging.getLogger(__name__)

_SCHEMAS: dict[str, Any] = {
    "keyword": edge.PayloadSchemaType.Keyword,
    "integer": edge.PayloadSchemaType.Integer,
    "float": edge.PayloadSchemaType.Float,
    "bool": edge.PayloadSchemaType.Bool,
    "datetime": edge.PayloadSchemaType.Datetime,
    "text": edge.PayloadSchemaType.Text,
    "uuid": edge.PayloadSchemaType.Uuid,
    # events' time: ranges and order only, no lookup map to keep
    "integer_range": edge.IntegerIndexParams(lookup=False, range=True),
}
# Events per EdgeShard.update call: ~3-5 ms of held GIL on a quiet core.
POINTS_PER_UPDATE = 128
# Edge wants at least one vector per shard; events have none, so an unused sparse one.
_NO_VECTORS = {"unused": edge.EdgeSparseVectorParams()}


class FreeSpaceGuard:
    """Refuses writes while the data dir's filesystem has less than `min_free_bytes` free.

    Edge writes through memory-mapped files: a write that finds the disk full kills the
    whole process with SIGBUS (measured), so the only safe refusal is one made before."""

    def __init__(self, path: Path, min_free_bytes: int) -> None:
        self.path = path
        self.min_free_bytes = min_free_bytes

    def check(self) -> None:
        if self.min_free_bytes <= 0:
            return
        stats = os.statvfs(self.path)
        free = stats.f_bavail * stats.f_frsize
        if free < self.min_free_bytes:
            raise StorageFull(
                f"the embedded store's disk is nearly full: {free:,} bytes free on the filesystem of {self.path}, "
                f"under the {self.min_free_bytes:,} kept free (min_free_bytes, LOOKALIKE_MIN_FREE_BYTES). "
                "Writes are refused until space is freed; reads still work")


class _Shard:
    """One Edge shard. Writes are serialised here, after the free-space check; reads run concurrently."""

    def __init__(self, path: Path, config: edge.EdgeConfig, guard: FreeSpaceGuard | None = None) -> None:
        self.path = path
        if (path / "edge_config.json").exists():
            self.shard = edge.EdgeShard.load(str(path))
        else:
            self.shard = edge.EdgeShard.create(str(path), config)
        self._write_lock = threading.Lock()
        self._guard = guard

    def update(self, operation: edge.UpdateOperation) -> None:
        if self._guard is not None:
            self._guard.check()
        with self._write_lock:
            self.shard.update(operation)

    def ensure_indexes(self, indexes: Mapping[str, str]) -> None:
        """Unguarded: index definitions are tiny, and a server must open to serve reads on a full disk."""
        present = self.shard.info().payload_schema
        for key, kind in indexes.items():
            if key not in present:
                with self._write_lock:
                    self.shard.update(edge.UpdateOperation.create_field_index(key, _SCHEMAS[kind]))

    def close(self) -> None:
        with self._write_lock:
            self.shard.flush()
            self.shard.close()


class EdgeCatalog(Catalog):
    def __init__(self, shard: _Shard, model_identity: str, dim: int, where: str,
                 stored_model: str | None, stored_dim: int | None) -> None:
        super().__init__(model_identity, dim)
        self._shard = shard
        self._guard(where, stored_model, stored_dim)

    def ping(self) -> None:
        self._shard.shard.info()

    def upsert(self, items: Sequence[ItemInput]) -> None:
        self.require_same_model()
        if not items:
            return
        points = [edge.Point(point_id(item.item_id), item_vectors(item), item_payload(item)) for item in items]
        self._shard.update(edge.UpdateOperation.upsert_points(points))

    def get(self, item_ids: Sequence[str], with_vectors: bool = False) -> dict[str, StoredItem]:
        if not item_ids:
            return {}
        records = self._shard.shard.retrieve([point_id(i) for i in first_seen(item_ids)], with_payload=True,
                                             with_vector=with_vectors)
        items = (stored_item(record.payload or {}, record.vector if with_vectors and isinstance(record.vector, dict)
                             else None) for record in records)
        return {item.item_id: item for item in items}

    def present(self, item_ids: Sequence[str]) -> set[str]:
        by_point = {point_id(i): i for i in item_ids}
        records = self._shard.shard.retrieve(list(by_point), with_payload=False, with_vector=False)
        if len(records) == len(by_point):  # the usual case; reading each record's id costs ~3 us
            return set(by_point.values())
        return {by_point[str(record.id)] for record in records}

    def delete(self, item_ids: Sequence[str]) -> int:
        present = self.get(item_ids)
        if present:
            self._shard.update(edge.UpdateOperation.delete_points([point_id(i) for i in present]))
        return len(present)

    def delete_where(self, filter_: Filter) -> int:
        condition = to_edge(require_condition(filter_))
        assert condition is not None, "require_condition refuses an empty filter"
        matched = self._shard.shard.count(edge.CountRequest(exact=True, filter=condition))
        self._shard.update(edge.UpdateOperation.delete_points_by_filter(condition))
        return matched

    def count(self) -> int:
        return self._shard.shard.count(edge.CountRequest(exact=True))

    def search(self, vector: np.ndarray, space: VectorSpace, filter_: Filter | None, params: SearchParams,
               exclude_ids: Sequence[str] = ()) -> list[Scored]:
        hits = self._shard.shard.query(edge.QueryRequest(
            limit=fetch_depth(params), query=edge.Query.Nearest(vector.tolist(), using=space.value),
            filter=to_edge(excluding(filter_, exclude_ids)), score_threshold=params.score_threshold,
            with_payload=True))
        return page([scored(hit.payload, hit.score) for hit in hits], params)

    def search_fused(self, vectors: Mapping[VectorSpace, np.ndarray], filter_: Filter | None, params: SearchParams,
                     exclude_ids: Sequence[str] = ()) -> list[Scored]:
        condition = to_edge(excluding(filter_, exclude_ids))
        depth = max(FUSION_DEPTH, fetch_depth(params))
        prefetches = [edge.Prefetch(limit=depth, query=edge.Query.Nearest(vector.tolist(), using=space.value),
                                    filter=condition) for space, vector in vectors.items()]
        hits = self._shard.shard.query(edge.QueryRequest(
            # cast: the stubs type Fusion.Rrf apart from the queries QueryRequest accepts
            limit=fetch_depth(params), prefetches=prefetches, query=cast(Any, edge.Fusion.Rrf(k=RRF_K)),
            score_threshold=params.score_threshold, with_payload=True))
        return page([scored(hit.payload, hit.score) for hit in hits], params)

    def search_many(self, vectors: Sequence[np.ndarray], limits: Sequence[int], space: VectorSpace,
                    filter_: Filter | None, exclude_ids: Sequence[str] = ()) -> list[list[Scored]]:
        if not vectors:
            return []
        condition = to_edge(excluding(filter_, exclude_ids))
        requests = [edge.QueryRequest(limit=limit, query=edge.Query.Nearest(vector.tolist(), using=space.value),
                                      filter=condition, with_payload=True, with_vector=[space.value])
                    for vector, limit in zip(vectors, limits)]
        batches = self._shard.shard.query_batch(edge.QueryBatchRequest(requests))
        return [[scored(hit.payload, hit.score, hit.vector, space) for hit in hits] for hits in batches]

    def recommend_native(self, positives: Sequence[np.ndarray], negatives: Sequence[np.ndarray], best_score: bool,
                         space: VectorSpace, filter_: Filter | None, params: SearchParams,
                         exclude_ids: Sequence[str] = ()) -> list[Scored]:
        if not positives:
            return []
        if best_score:
            query = edge.Query.RecommendBestScore(
                edge.RecommendQuery([v.tolist() for v in positives], [v.tolist() for v in negatives]),
                using=space.value)
        else:  # Edge has no average_vector strategy: the same query vector, made here
            query = edge.Query.Nearest(average_vector_query(positives, negatives).tolist(), using=space.value)
        hits = self._shard.shard.query(edge.QueryRequest(
            limit=params.limit, offset=params.offset, query=query, filter=to_edge(excluding(filter_, exclude_ids)),
            with_payload=True))
        return [scored(hit.payload, hit.score) for hit in hits]

    def scroll(self, filter_: Filter | None, limit: int, only_ids: Sequence[str] | None = None) -> list[Scored]:
        if only_ids is not None:
            if not only_ids:
                return []
            filter_ = restricted(filter_, only_ids)
        if limit <= 0:
            return []
        records, _ = self._shard.shard.scroll(edge.ScrollRequest(limit=limit, filter=to_edge(filter_),
                                                                 with_payload=True, with_vector=False))
        return [scored(record.payload, 0.0) for record in records]


class EdgeEventStore(EventStore):
    def __init__(self, shard: _Shard) -> None:
        self._shard = shard

    def append(self, events: Sequence[Event], event_ids: Sequence[str | None] | None = None) -> None:
        if not events:
            return
        ids = event_point_ids([event.user_id for event in events], event_ids)
        # EdgeShard.update holds the GIL throughout: a few small updates instead of one large
        # one let the event loop and other catalog threads in between (same events/s).
        for start in range(0, len(events), POINTS_PER_UPDATE):
            points = [edge.Point(point, {}, event_payload(event))
                      for point, event in zip(ids[start:start + POINTS_PER_UPDATE],
                                              events[start:start + POINTS_PER_UPDATE])]
            self._shard.update(edge.UpdateOperation.upsert_points(points))

    def for_user(self, user_id: str, limit: int, until: datetime | None = None) -> list[Event]:
        records = self._latest(user_id, limit, until, with_payload=True)
        return [event_from_payload(record.payload) for record in reversed(records)]

    def recent_item_ids(self, user_id: str, limit: int, until: datetime | None = None) -> list[str]:
        records = self._latest(user_id, limit, until, with_payload=edge.PayloadSelector.Include([TYPED_ITEM_KEY]))
        return [item_of(record.payload[TYPED_ITEM_KEY]) for record in records]

    def count_for_user(self, user_id: str, until: datetime | None = None) -> int:
        return self._shard.shard.count(edge.CountRequest(exact=True, filter=_user_filter(user_id, until)))

    def _latest(self, user_id: str, limit: int, until: datetime | None, with_payload) -> list:
        if limit <= 0:
            return []
        records, _ = self._shard.shard.scroll(edge.ScrollRequest(
            limit=limit, filter=_user_filter(user_id, until), with_payload=with_payload, with_vector=False,
            order_by=edge.OrderBy(TIME_KEY, direction=edge.Direction.Desc)))
        return records

    def delete_user(self, user_id: str) -> int:
        condition = _user_filter(user_id, None)
        count = self._shard.shard.count(edge.CountRequest(exact=True, filter=condition))
        self._shard.update(edge.UpdateOperation.delete_points_by_filter(condition))
        return count

    def popularity(self, since: datetime, until: datetime, weights: Mapping[EventType, float],
                   max_items: int) -> Counter:
        window = edge.FieldCondition(key=TIME_KEY, range=edge.RangeFloat(gte=epoch_us(since), lte=epoch_us(until)))
        response = self._shard.shard.facet(edge.FacetRequest(TYPED_ITEM_KEY, limit=POPULARITY_FACET_LIMIT, exact=False,
                                                             filter=edge.Filter(must=[window])))
        return popularity_from_counts(((str(hit.value), hit.count) for hit in response.hits), weights, max_items)


class EdgeStorage(Storage):
    """A collection's two Edge shards in a locked data folder."""

    def __init__(self, folder: DataFolder, items: _Shard, events: _Shard, catalog: EdgeCatalog) -> None:
        self.location = f"embedded Qdrant Edge in {folder.path}"
        self._folder = folder
        self._items = items
        self._events = events
        self.catalog = catalog
        self.events = EdgeEventStore(events)

    def import_items(self, points: list[edge.Point]) -> None:
        """Points as they are (ids, vectors, payloads): for migrations only."""
        self._items.update(edge.UpdateOperation.upsert_points(points))

    def import_events(self, points: list[edge.Point]) -> None:
        self._events.update(edge.UpdateOperation.upsert_points(points))

    def optimize(self) -> bool:
        """Build HNSW graphs and merge segments. Blocks the whole process while it runs:
        an offline maintenance step (`lookalike optimize`), never run while serving."""
        changed_items = self._items.shard.optimize()
        changed_events = self._events.shard.optimize()
        return changed_items or changed_events

    def close(self) -> None:
        try:
            self._items.close()
            self._events.close()
        finally:
            self._folder.close()


DEFAULT_MIN_FREE_BYTES = 256 * 1024 * 1024  # service/config.py's default too


def open_edge(data_dir: Path, collection: str, model_identity: str, dim: int,
              payload_indexes: Mapping[str, str] | None = None, migrating: bool = False,
              min_free_bytes: int = DEFAULT_MIN_FREE_BYTES) -> EdgeStorage:
    """Lock the folder, then open (or create) the collection's shards and check its model.

    `migrating`: create the collection even though the old embedded folder holds one
    of that name (recommender/storage/migrate.py is copying it over). `min_free_bytes`:
    writes are refused (StorageFull) while the folder's filesystem has less free."""
    folder = DataFolder.open(data_dir)
    guard = FreeSpaceGuard(folder.path, min_free_bytes)
    shards: list[_Shard] = []
    try:
        upgrade_folder(folder, guard)
        path = folder.collection(collection)
        metadata = folder.read_metadata(collection)
        if metadata is None:
            message = None if migrating else old_layout_message(data_dir, collection)
            if message:
                raise StorageError(message)
            metadata = {"model": model_identity, "dim": dim}
            folder.write_metadata(collection, metadata)
            log.info("created collection %s for model %s (dim %d) in %s", collection, model_identity, dim, path)
        stored_dim = metadata.get("dim")
        space = edge.EdgeVectorParams(size=int(stored_dim or dim), distance=edge.Distance.Cosine)
        items = _Shard(path / "items", edge.EdgeConfig(
            vectors={VectorSpace.IMAGE.value: space, VectorSpace.TEXT.value: space}), guard)
        shards.append(items)
        items.ensure_indexes({ITEM_ID_KEY: "keyword",
                              **{f"{PAYLOAD_KEY}.{key}": kind for key, kind in (payload_indexes or {}).items()}})
        events = events_shard(path / "events", guard)
        shards.append(events)
        events.ensure_indexes(EVENT_INDEXES)
        catalog = EdgeCatalog(items, model_identity, dim, f"collection {collection!r} in {path}",
                              metadata.get("model"), stored_dim)
        if catalog.mismatch:
            log.error("%s", catalog.mismatch)
        return EdgeStorage(folder, items, events, catalog)
    except BaseException:
        for shard in shards:  # an open shard would keep its WAL locked against the next opener
            shard.close()
        folder.close()
        raise


def events_shard(path: Path, guard: FreeSpaceGuard | None = None) -> _Shard:
    return _Shard(path, edge.EdgeConfig(sparse_vectors=_NO_VECTORS), guard)


def open_existing(data_dir: Path, collection: str) -> EdgeStorage:
    """An existing collection with the model it records, for maintenance (optimize)."""
    folder = DataFolder.open(data_dir)
    try:
        metadata = folder.read_metadata(collection)
    finally:
        folder.close()
    if metadata is None:
        raise StorageError(f"no collection {collection!r} in {Path(data_dir) / 'storage'}")
    return open_edge(data_dir, collection, metadata["model"], int(metadata["dim"]))


def _user_filter(user_id: str, until: datetime | None) -> edge.Filter:
    conditions: list[Any] = [edge.FieldCondition(key=USER_KEY, match=edge.MatchValue(user_id))]
    if until is not None:
        conditions.append(edge.FieldCondition(key=TIME_KEY, range=edge.RangeFloat(lte=epoch_us(until))))
    return edge.Filter(must=conditions)
