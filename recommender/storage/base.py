"""The storage interface: the item catalog and the event log, engine-agnostic.

Two implementations follow it: Qdrant Edge in-process (edge.py, the embedded
default) and qdrant-client against a Qdrant server or cluster (server.py).
Both keep the same data model, so what is said here holds for both:

- items: one point per item, id = uuid5(item id), named vectors `image` and
  `text`, the item id and the caller's payload (under PAYLOAD_KEY) in the payload;
- events: one point per event, append-only, three payload keys, each indexed:
  the user id, the event's type and item in one keyword ("purchase:sku-1": one
  facet counts every type's items at once), and the time in
  epoch microseconds (an integer range index: the history's order and bound).
  A user's history is an indexed, ordered read and never a scan of all events.
  Few keys because each costs the embedded engine ~5 us per event to take in and
  each index ~5 us more to update (layout 2; layout 1 had user, item, type and
  float seconds in four keys, and is upgraded in place on open);
- the catalog records which model made its vectors; a mismatch refuses writes.
"""

from __future__ import annotations

import abc
import heapq
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from recommender.errors import ModelMismatch
from recommender.filters import Filter, HasId
from recommender.types import Event, EventType, ItemInput, Scored, SearchParams, StoredItem, VectorSpace

# -- the data model, shared by both engines ------------------------------------

ITEM_ID_KEY = "item_id"
TEXT_KEY = "text"
HAS_IMAGE_KEY = "has_image"
# Caller payloads live under one reserved key so they never clash with the fields above.
PAYLOAD_KEY = "payload"
# Reciprocal rank fusion of the image and text lists reads this many from each.
FUSION_DEPTH = 100
# Qdrant's default RRF constant, so both engines fuse identically.
RRF_K = 2
# Pages are cut from a little more than they need, in one total order (score, then item id):
# engines order equal scores however their heaps fall, which differs with the limit, so
# without this an item tied across a page boundary could show on two pages or on none.
TIE_SLACK = 8

USER_KEY = "user_id"
TYPED_ITEM_KEY = "typed_item"  # "<event type>:<item id>"; type names hold no ":", item ids may
TIME_KEY = "time_us"  # epoch microseconds: exact for datetimes, ordered and ranged by an integer index
WEIGHT_KEY = "weight"  # only when not 1.0

PAYLOAD_INDEX_KINDS = ("keyword", "integer", "float", "bool", "datetime", "text", "uuid")
# Event fields and the kind of index each gets on both engines ("integer_range" only for events).
EVENT_INDEXES = {USER_KEY: "keyword", TYPED_ITEM_KEY: "keyword", TIME_KEY: "integer_range"}
EVENT_LAYOUT = 2  # recorded by each engine (Edge: the folder's LAYOUT; server: the events collection's metadata)
# Layout 1's event keys, read only to upgrade old events (base.upgraded_event_payload).
V1_EVENT_INDEXES = ("item_id", "event_type", "timestamp")


class Catalog(abc.ABC):
    """Items with their vectors and payloads, searchable by vector with filters."""

    dim: int

    def __init__(self, model_identity: str, dim: int) -> None:
        self.model_identity = model_identity
        self.dim = dim
        self._mismatch: str | None = None

    # -- model guard ------------------------------------------------------

    def require_same_model(self) -> None:
        """Called before any write, and before comparing model-made vectors with stored ones."""
        if self._mismatch:
            raise ModelMismatch(self._mismatch)

    def _guard(self, where: str, stored_model: str | None, stored_dim: int | None) -> None:
        if stored_model == self.model_identity and stored_dim == self.dim:
            self._mismatch = None
            return
        made_by = f"model {stored_model!r}" if stored_model else "an unknown model (no Lookalike metadata)"
        self._mismatch = (
            f"{where} holds vectors made by {made_by}, but this server runs {self.model_identity!r} "
            f"(dim {self.dim}): vectors of different models cannot be compared. Serve a new collection "
            "(--collection / LOOKALIKE_COLLECTION) and re-ingest, or start the server with the model that built it.")

    @property
    def mismatch(self) -> str | None:
        return self._mismatch

    # -- operations ---------------------------------------------------------

    @abc.abstractmethod
    def ping(self) -> None: ...

    @abc.abstractmethod
    def upsert(self, items: Sequence[ItemInput]) -> None: ...

    @abc.abstractmethod
    def get(self, item_ids: Sequence[str], with_vectors: bool = False) -> dict[str, StoredItem]: ...

    @abc.abstractmethod
    def present(self, item_ids: Sequence[str]) -> set[str]:
        """Which of these items exist: ids only, no payloads or vectors read."""

    @abc.abstractmethod
    def delete(self, item_ids: Sequence[str]) -> int:
        """Delete these items; returns how many existed."""

    @abc.abstractmethod
    def delete_where(self, filter_: Filter) -> int:
        """Delete the items matching a non-empty filter; returns how many matched."""

    @abc.abstractmethod
    def count(self) -> int: ...

    @abc.abstractmethod
    def search(self, vector: np.ndarray, space: VectorSpace, filter_: Filter | None, params: SearchParams,
               exclude_ids: Sequence[str] = ()) -> list[Scored]: ...

    @abc.abstractmethod
    def search_fused(self, vectors: Mapping[VectorSpace, np.ndarray], filter_: Filter | None, params: SearchParams,
                     exclude_ids: Sequence[str] = ()) -> list[Scored]:
        """One ranking from several vector spaces, by reciprocal rank fusion (k = RRF_K)."""

    @abc.abstractmethod
    def search_many(self, vectors: Sequence[np.ndarray], limits: Sequence[int], space: VectorSpace,
                    filter_: Filter | None, exclude_ids: Sequence[str] = ()) -> list[list[Scored]]:
        """Several nearest-neighbour queries in one round trip, hits carrying their vectors."""

    @abc.abstractmethod
    def recommend_native(self, positives: Sequence[np.ndarray], negatives: Sequence[np.ndarray], best_score: bool,
                         space: VectorSpace, filter_: Filter | None, params: SearchParams,
                         exclude_ids: Sequence[str] = ()) -> list[Scored]:
        """Qdrant's own recommend (average_vector or best_score) from example vectors: a baseline to
        measure against. Only `exclude_ids` are left out (by ids Qdrant would drop the examples too)."""

    @abc.abstractmethod
    def scroll(self, filter_: Filter | None, limit: int, only_ids: Sequence[str] | None = None) -> list[Scored]:
        """Items matching a filter, no ranking (score 0); `only_ids` restricts to those items."""


class EventStore(abc.ABC):
    """Append-only user events. Reads go through payload indexes, never a scan of all events."""

    @abc.abstractmethod
    def append(self, events: Sequence[Event], event_ids: Sequence[str | None] | None = None) -> None:
        """Store events; an event with an id lands on the same point when retried."""

    @abc.abstractmethod
    def for_user(self, user_id: str, limit: int, until: datetime | None = None) -> list[Event]:
        """The user's latest `limit` events at or before `until`, oldest first: one indexed, ordered read."""

    @abc.abstractmethod
    def recent_item_ids(self, user_id: str, limit: int, until: datetime | None = None) -> list[str]:
        """The item of each of the user's latest `limit` events at or before `until`, newest first;
        the same indexed read as for_user, but only the item id of each event comes back."""

    @abc.abstractmethod
    def count_for_user(self, user_id: str, until: datetime | None = None) -> int:
        """How many events the user has at or before `until`: counted by the engine over the
        indexed user id, nothing read. With the latest events, the identity of an append-only history."""

    @abc.abstractmethod
    def delete_user(self, user_id: str) -> int: ...

    @abc.abstractmethod
    def popularity(self, since: datetime, until: datetime, weights: Mapping[EventType, float],
                   max_items: int) -> Counter:
        """Positive events per item in [since, until], each weighted by its type's weight.

        Counted by the engine (a facet per positive type over the indexed item id),
        never by reading events into Python; each type contributes its `max_items`
        most frequent items."""


class Storage(abc.ABC):
    """An opened engine: one catalog and one event store."""

    location: str
    catalog: Catalog
    events: EventStore

    @abc.abstractmethod
    def close(self) -> None: ...

    def optimize(self) -> bool:
        """Build indexes the engine does not build by itself (Edge's HNSW); False when nothing to do."""
        return False


# -- helpers both implementations use ----------------------------------------------

def item_payload(item: ItemInput) -> dict[str, Any]:
    return {ITEM_ID_KEY: item.item_id, TEXT_KEY: item.text, HAS_IMAGE_KEY: item.image_vector is not None,
            PAYLOAD_KEY: dict(item.payload)}


def item_vectors(item: ItemInput) -> dict[str, Any]:
    vectors: dict[str, Any] = {}
    if item.image_vector is not None:
        vectors[VectorSpace.IMAGE.value] = item.image_vector.tolist()
    if item.text_vector is not None:
        vectors[VectorSpace.TEXT.value] = item.text_vector.tolist()
    return vectors


def stored_item(payload: Mapping, vectors: Mapping | None) -> StoredItem:
    vectors = vectors or {}

    def as_array(space: VectorSpace) -> np.ndarray | None:
        values = vectors.get(space.value)
        return None if values is None else np.asarray(values, dtype=np.float32)

    return StoredItem(item_id=payload[ITEM_ID_KEY], payload=payload.get(PAYLOAD_KEY) or {},
                      text=payload.get(TEXT_KEY), has_image=bool(payload.get(HAS_IMAGE_KEY)),
                      image_vector=as_array(VectorSpace.IMAGE), text_vector=as_array(VectorSpace.TEXT))


def scored(payload: Mapping | None, score: float | None, vectors: Any = None,
           space: VectorSpace | None = None) -> Scored:
    payload = payload or {}
    vector = None
    if space is not None and isinstance(vectors, dict) and vectors.get(space.value) is not None:
        vector = np.asarray(vectors[space.value], dtype=np.float32)
    return Scored(item_id=payload[ITEM_ID_KEY], score=float(score or 0.0), payload=payload.get(PAYLOAD_KEY) or {},
                  text=payload.get(TEXT_KEY), vector=vector)


def fetch_depth(params: SearchParams) -> int:
    """How many hits to ask the engine for (from offset 0) to cut `params`' page with `page`."""
    return params.offset + params.limit + TIE_SLACK


def page(hits: Sequence[Scored], params: SearchParams) -> list[Scored]:
    ordered = sorted(hits, key=lambda hit: (-round(hit.score, 6), hit.item_id))
    return ordered[params.offset: params.offset + params.limit]


def excluding(filter_: Filter | None, item_ids: Sequence[str]) -> Filter | None:
    if not item_ids:
        return filter_
    return (filter_ or Filter()).excluding(HasId(tuple(item_ids)))


def restricted(filter_: Filter | None, only_ids: Sequence[str]) -> Filter:
    return (filter_ or Filter()).and_also(HasId(tuple(only_ids)))


def require_condition(filter_: Filter | None) -> Filter:
    if filter_ is None or filter_.is_empty:  # refused by service/validation.py; this would delete every item
        raise ValueError("delete_where needs a non-empty filter")
    return filter_


def average_vector_query(positives: Sequence[np.ndarray], negatives: Sequence[np.ndarray]) -> np.ndarray:
    """Qdrant's average_vector recommend: avg(pos) + (avg(pos) - avg(neg)) when negatives exist."""
    positive = np.mean(np.stack(positives), axis=0)
    if not negatives:
        return positive
    return positive + positive - np.mean(np.stack(negatives), axis=0)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_TYPE_PREFIX = {event_type: f"{event_type.value}:" for event_type in EventType}
_TYPE_BY_NAME = {event_type.value: event_type for event_type in EventType}


def epoch_us(moment: datetime) -> int:
    """Exact (a float of seconds would round a datetime's microseconds)."""
    return (moment - _EPOCH) // _MICROSECOND


def event_payload(event: Event) -> dict[str, Any]:
    payload = {USER_KEY: event.user_id, TYPED_ITEM_KEY: _TYPE_PREFIX[event.event_type] + event.item_id,
               TIME_KEY: epoch_us(event.timestamp)}
    if event.weight != 1.0:  # the usual weight is left out: every key costs the engine per event
        payload[WEIGHT_KEY] = event.weight
    return payload


def split_typed_item(value: str) -> tuple[EventType, str]:
    kind, _, item_id = value.partition(":")
    return EventType(kind), item_id


def item_of(typed_item: str) -> str:
    return typed_item.partition(":")[2]


def event_from_payload(payload: Mapping) -> Event:
    event_type, item_id = split_typed_item(payload[TYPED_ITEM_KEY])
    return Event(user_id=payload[USER_KEY], item_id=item_id, event_type=event_type,
                 timestamp=_EPOCH + payload[TIME_KEY] * _MICROSECOND, weight=float(payload.get(WEIGHT_KEY, 1.0)))


def is_v1_event(payload: Mapping) -> bool:
    return TIME_KEY not in payload and "timestamp" in payload


def upgraded_event_payload(payload: Mapping) -> dict[str, Any]:
    """A layout-1 event's payload in layout 2 (the same event, same weight)."""
    return event_payload(Event(user_id=payload[USER_KEY], item_id=payload["item_id"],
                               event_type=EventType(payload["event_type"]),
                               timestamp=datetime.fromtimestamp(payload["timestamp"], tz=timezone.utc),
                               weight=float(payload.get(WEIGHT_KEY, 1.0))))


# Popularity counts every (type, item) pair of the window in one facet and ranks each type's items
# here: a facet filtered by a type prefix took Edge minutes (69 s over 20k events). Not `exact`: on
# these single-valued keys its counts came out identical to the exact ones (every pair, 28k pairs
# over a half window of 60k events) at 1/13 of the time; at 200k events the one facet took 0.5 s
# against 8.4 s for layout 1's five exact ones. Pairs past this many, the least frequent, are left out.
POPULARITY_FACET_LIMIT = 1_000_000


def popularity_from_counts(counts: Iterable[tuple[str, int]], weights: Mapping[EventType, float],
                           max_items: int) -> Counter:
    """Weighted popularity from (typed_item, count) pairs: each positive type's `max_items` most
    frequent items (ties by item id), each count times its type's weight."""
    wanted = dict(positive_types(weights))
    by_type: dict[EventType, list[tuple[int, str]]] = {event_type: [] for event_type in wanted}
    for typed_item, count in counts:
        kind, _, item_id = typed_item.partition(":")
        event_type = _TYPE_BY_NAME.get(kind)
        if event_type in by_type:
            by_type[event_type].append((count, item_id))
    scores: Counter = Counter()
    for event_type, pairs in by_type.items():
        for count, item_id in heapq.nsmallest(max_items, pairs, key=lambda pair: (-pair[0], pair[1])):
            scores[item_id] += wanted[event_type] * count  # type: ignore[assignment]  # float weights
    return scores


def positive_types(weights: Mapping[EventType, float]) -> list[tuple[EventType, float]]:
    return [(event_type, weights.get(event_type, 0.0)) for event_type in EventType
            if not event_type.is_negative and weights.get(event_type, 0.0) > 0]


def first_seen(item_ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(item_ids))
