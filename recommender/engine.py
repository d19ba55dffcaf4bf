"""The facade the service calls: validated domain operations over the catalog."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping, Sequence

import numpy as np
from qdrant_client import QdrantClient

from recommender.catalog import Catalog
from recommender.collection_settings import CollectionLayout
from recommender.errors import InvalidArgument, LookalikeError, NotFound
from recommender.events import EventStore
from recommender.filters import Filter
from recommender.recommend import Recommender, RecommenderConfig
from recommender.types import (
    Event, EventError, ItemError, ItemInput, RecommendQuery, Recommendations, RecordOutcome, Scored, SearchParams, SearchTarget,
    StoredItem, UpsertOutcome, UserProfile, VectorSpace,
)
from recommender.vectors import checked_vector

MAX_LIMIT = 1000
MAX_OFFSET = 100_000
MAX_ITEM_ID_LENGTH = 512
MAX_USER_ID_LENGTH = 512
# Clocks drift; an event stamped further ahead than this is a caller bug.
MAX_FUTURE_SKEW = timedelta(days=1)


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
        """Store the valid items; report the others by their position in the stream.

        `items` pairs each item with its index in the caller's whole stream.
        """
        self._catalog.require_same_model()
        outcome = UpsertOutcome()
        valid = []
        for index, item in items:
            try:
                valid.append(self._validated(item, f"items[{index}]"))
            except InvalidArgument as error:
                outcome.errors.append(ItemError(index, item.item_id, str(error)))
        # The last copy of an id within one batch wins, as it would across batches.
        deduplicated = list({item.item_id: item for item in valid}.values())
        self._catalog.upsert(deduplicated)
        outcome.upserted = len(valid)
        return outcome

    def _validated(self, item: ItemInput, field_name: str) -> ItemInput:
        check_item_id(item.item_id, f"{field_name}.id")
        if item.image_vector is None and item.text_vector is None:
            raise InvalidArgument(field_name, "has neither an image, a text nor a vector: give at least one")
        vectors = {
            name: None if vector is None else checked_vector(vector, self.dim, f"{field_name}.{name}")
            for name, vector in (("image_vector", item.image_vector), ("text_vector", item.text_vector))
        }
        return replace(item, **vectors)

    def get_items(self, item_ids: Sequence[str], with_vectors: bool = False) -> tuple[list[StoredItem], list[str]]:
        for index, item_id in enumerate(item_ids):
            check_item_id(item_id, f"ids[{index}]")
        found = self._catalog.get(item_ids, with_vectors=with_vectors)
        ordered = [found[item_id] for item_id in dict.fromkeys(item_ids) if item_id in found]
        missing = [item_id for item_id in dict.fromkeys(item_ids) if item_id not in found]
        return ordered, missing

    def delete_items(self, item_ids: Sequence[str]) -> int:
        for index, item_id in enumerate(item_ids):
            check_item_id(item_id, f"ids[{index}]")
        return self._catalog.delete(list(dict.fromkeys(item_ids)))

    def delete_where(self, filter_: Filter) -> int:
        return self._catalog.delete_where(filter_)

    # -- search ---------------------------------------------------------

    def search_by_vector(self, vector: np.ndarray, target: SearchTarget, filter_: Filter | None,
                         params: SearchParams, *, made_by_model: bool) -> list[Scored]:
        """`made_by_model`: the vector came from this server's model, not from the caller."""
        check_params(params)
        if made_by_model:
            self._catalog.require_same_model()
        else:
            vector = checked_vector(vector, self.dim, "query.vector")
        spaces = _spaces(target)
        if len(spaces) == 1:
            return self._catalog.search(vector, spaces[0], filter_, params)
        return self._catalog.search_fused({space: vector for space in spaces}, filter_, params)

    def similar_items(self, item_id: str, target: SearchTarget, filter_: Filter | None,
                      params: SearchParams, user_id: str | None = None, exclude_seen: bool = True) -> list[Scored]:
        """Neighbours of a stored item, from its own vectors; the item itself is left out,
        and so are the items `user_id` has interacted with (unless exclude_seen is off)."""
        check_item_id(item_id, "item_id")
        check_params(params)
        item = self._catalog.get([item_id], with_vectors=True).get(item_id)
        if item is None:
            raise NotFound(f"item {item_id!r} is not in the catalog")
        excluded = [item_id]
        if user_id and exclude_seen:
            check_user_id(user_id)
            excluded += sorted(self._recommender.seen_item_ids(user_id) - {item_id})
        queries = {space: _own_vector(item, space) for space in _spaces(target)}
        if len(queries) == 1:
            (space, vector), = queries.items()
            return self._catalog.search(vector, space, filter_, params, exclude_ids=excluded)
        return self._catalog.search_fused(queries, filter_, params, exclude_ids=excluded)

    # -- users ----------------------------------------------------------

    def record_events(self, events: Sequence[Event], event_ids: Sequence[str | None] | None = None,
                      positions: Sequence[int] | None = None) -> RecordOutcome:
        """Append the valid events; unknown items are recorded too, and reported.

        `positions` are the events' indices in the caller's request, used in error reports.
        """
        outcome = RecordOutcome()
        ids = list(event_ids) if event_ids is not None else [None] * len(events)
        positions = list(positions) if positions is not None else list(range(len(events)))
        valid, valid_ids = [], []
        now = self._clock()
        for index, event, event_id in zip(positions, events, ids):
            try:
                _check_event(event, f"events[{index}]", now)
            except InvalidArgument as error:
                outcome.errors.append(EventError(index, str(error)))
                continue
            valid.append(event)
            valid_ids.append(event_id)
        item_ids = list(dict.fromkeys(event.item_id for event in valid))
        known = self._catalog.get(item_ids)
        outcome.unknown_item_ids = [item_id for item_id in item_ids if item_id not in known]
        self._events.append(valid, valid_ids)
        outcome.recorded = len(valid)
        return outcome

    def recommend(self, query: RecommendQuery) -> Recommendations:
        return self._recommender.recommend(query)

    def profile(self, user_id: str) -> UserProfile:
        check_user_id(user_id)
        return self._recommender.profile(user_id)

    def forget_user(self, user_id: str) -> int:
        """Delete every event of the user; profiles are derived, so nothing else remains."""
        check_user_id(user_id)
        return self._events.delete_user(user_id)


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


def open_engine(client: QdrantClient, collection: str, model_identity: str, dim: int,
                payload_indexes: Mapping[str, str] | None = None, location: str = "embedded",
                config: RecommenderConfig | None = None, clock: Callable[[], datetime] = now_utc,
                layout: CollectionLayout | None = None) -> Engine:
    """The catalog and the event store on one Qdrant client, both created if missing."""
    catalog = Catalog(client, collection, model_identity, dim, payload_indexes, location=location, layout=layout)
    catalog.open()
    events = EventStore(client, f"{collection}_events", location=location, layout=layout)
    events.open()
    return Engine(catalog, events, config, clock)


def _check_event(event: Event, field_name: str, now: datetime) -> None:
    check_user_id(event.user_id, f"{field_name}.user_id")
    check_item_id(event.item_id, f"{field_name}.item_id")
    if not math.isfinite(event.weight) or event.weight < 0:
        raise InvalidArgument(f"{field_name}.weight", f"must be a finite number >= 0, got {event.weight}")
    if event.timestamp.tzinfo is None:
        raise InvalidArgument(f"{field_name}.timestamp", "needs a time zone")
    if event.timestamp - now > MAX_FUTURE_SKEW:
        raise InvalidArgument(f"{field_name}.timestamp", f"{event.timestamp.isoformat()} is in the future")


def check_user_id(user_id: str, field_name: str = "user_id") -> None:
    if not user_id or not user_id.strip():
        raise InvalidArgument(field_name, "user id is empty")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise InvalidArgument(field_name, f"user id is longer than {MAX_USER_ID_LENGTH} characters")


def check_item_id(item_id: str, field_name: str) -> None:
    if not item_id or not item_id.strip():
        raise InvalidArgument(field_name, "item id is empty")
    if len(item_id) > MAX_ITEM_ID_LENGTH:
        raise InvalidArgument(field_name, f"item id is longer than {MAX_ITEM_ID_LENGTH} characters")


def check_params(params: SearchParams) -> None:
    if not 1 <= params.limit <= MAX_LIMIT:
        raise InvalidArgument("limit", f"must be between 1 and {MAX_LIMIT}, got {params.limit}")
    if not 0 <= params.offset <= MAX_OFFSET:
        raise InvalidArgument("offset", f"must be between 0 and {MAX_OFFSET}, got {params.offset}")
    if params.score_threshold is not None and not np.isfinite(params.score_threshold):
        raise InvalidArgument("score_threshold", "must be a finite number")
