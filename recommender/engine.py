"""The facade the service calls: domain operations over the catalog and the events.

Inputs are checked once, on the way in (service/validation.py); the engine trusts them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Sequence

import numpy as np

from recommender.errors import LookalikeError, NotFound
from recommender.filters import Filter
from recommender.profile_cache import ProfileCache
from recommender.recommend import Recommender, RecommenderConfig
from recommender.storage import Catalog, EventStore, Storage
from recommender.types import (
    Event,
    ItemInput,
    Recommendations,
    RecommendQuery,
    RecordOutcome,
    Scored,
    SearchParams,
    SearchTarget,
    StoredItem,
    UpsertOutcome,
    UserProfile,
    VectorSpace,
)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


class Engine:
    def __init__(self, catalog: Catalog, events: EventStore, config: RecommenderConfig | None = None,
                 clock: Callable[[], datetime] = now_utc) -> None:
        self._catalog = catalog
        self._events = events
        self._clock = clock
        self._recommender = Recommender(catalog, events, config or RecommenderConfig(), clock)

    @property
    def dim(self) -> int:
        return self._catalog.dim

    def ping(self) -> None:
        self._catalog.ping()

    # -- items ----------------------------------------------------------

    def upsert_items(self, items: Sequence[tuple[int, ItemInput]]) -> UpsertOutcome:
        """Store the items; `items` pairs each with its index in the caller's whole stream."""
        self._catalog.require_same_model()
        # The last copy of an id within one batch wins, as it would across batches.
        deduplicated = list({item.item_id: item for _, item in items}.values())
        try:
            self._catalog.upsert(deduplicated)
        finally:  # after the write (a profile built meanwhile read the old vectors), and even a failed one
            self._recommender.catalog_changed([item.item_id for item in deduplicated])
        return UpsertOutcome(upserted=len(items))

    def get_items(self, item_ids: Sequence[str], with_vectors: bool = False) -> tuple[list[StoredItem], list[str]]:
        found = self._catalog.get(item_ids, with_vectors=with_vectors)
        ordered = [found[item_id] for item_id in dict.fromkeys(item_ids) if item_id in found]
        missing = [item_id for item_id in dict.fromkeys(item_ids) if item_id not in found]
        return ordered, missing

    def delete_items(self, item_ids: Sequence[str]) -> int:
        unique = list(dict.fromkeys(item_ids))
        try:
            return self._catalog.delete(unique)
        finally:
            self._recommender.catalog_changed(unique)

    def delete_where(self, filter_: Filter) -> int:
        try:
            return self._catalog.delete_where(filter_)
        finally:
            self._recommender.catalog_changed(None)

    # -- search ---------------------------------------------------------

    def search_by_vector(self, vector: np.ndarray, target: SearchTarget, filter_: Filter | None,
                         params: SearchParams, *, made_by_model: bool) -> list[Scored]:
        """`made_by_model`: the vector came from this server's model, not from the caller."""
        if made_by_model:
            self._catalog.require_same_model()
        spaces = _spaces(target)
        if len(spaces) == 1:
            return self._catalog.search(vector, spaces[0], filter_, params)
        return self._catalog.search_fused({space: vector for space in spaces}, filter_, params)

    def similar_items(self, item_id: str, target: SearchTarget, filter_: Filter | None,
                      params: SearchParams, user_id: str | None = None, exclude_seen: bool = True) -> list[Scored]:
        """Neighbours of a stored item, from its own vectors; the item itself is left out,
        and so are the items `user_id` has interacted with (unless exclude_seen is off)."""
        item = self._catalog.get([item_id], with_vectors=True).get(item_id)
        if item is None:
            raise NotFound(f"item {item_id!r} is not in the catalog")
        excluded = [item_id]
        if user_id and exclude_seen:
            excluded += sorted(self._recommender.seen_item_ids(user_id) - {item_id})
        queries = {space: _own_vector(item, space) for space in _spaces(target)}
        if len(queries) == 1:
            (space, vector), = queries.items()
            return self._catalog.search(vector, space, filter_, params, exclude_ids=excluded)
        return self._catalog.search_fused(queries, filter_, params, exclude_ids=excluded)

    # -- users ----------------------------------------------------------

    def record_events(self, events: Sequence[Event], event_ids: Sequence[str | None] | None = None) -> RecordOutcome:
        """Append the events; unknown items are recorded too, and reported."""
        item_ids = list(dict.fromkeys(event.item_id for event in events))
        known = self._catalog.present(item_ids)
        self._events.append(events, event_ids)
        return RecordOutcome(recorded=len(events),
                             unknown_item_ids=[item_id for item_id in item_ids if item_id not in known])

    def recommend(self, query: RecommendQuery) -> Recommendations:
        return self._recommender.recommend(query)

    def profile(self, user_id: str) -> UserProfile:
        return self._recommender.profile(user_id)[0]

    @property
    def profile_cache(self) -> ProfileCache:
        return self._recommender.profile_cache

    def forget_user(self, user_id: str) -> int:
        """Delete every event of the user, and their cached profile: nothing derived from them remains."""
        try:
            return self._events.delete_user(user_id)
        finally:
            self._recommender.forget(user_id)


def _spaces(target: SearchTarget) -> list[VectorSpace]:
    if target is SearchTarget.BOTH:
        return [VectorSpace.IMAGE, VectorSpace.TEXT]
    return [VectorSpace(target.value)]


def _own_vector(item: StoredItem, space: VectorSpace) -> np.ndarray:
    """The item's vector in `space`, or its other one: CLIP puts both in one space."""
    other = VectorSpace.TEXT if space is VectorSpace.IMAGE else VectorSpace.IMAGE
    vector = item.vector(space)
    if vector is None:
        vector = item.vector(other)
    if vector is None:
        raise LookalikeError(f"item {item.item_id!r} has no stored vector")
    return vector


def open_engine(storage: Storage, config: RecommenderConfig | None = None,
                clock: Callable[[], datetime] = now_utc) -> Engine:
    """The engine over an opened storage (recommender.storage.edge.open_edge or .server.open_server)."""
    return Engine(storage.catalog, storage.events, config, clock)

