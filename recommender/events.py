"""User events in Qdrant, append-only: one point per event.

Appending never reads or rewrites what is there, so concurrent writers (other
requests, other replicas) cannot lose each other's events. Profiles are
derived from these points on demand; nothing else holds user state.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Mapping, Sequence

from qdrant_client import QdrantClient, models

from recommender.collection_settings import CollectionLayout
from recommender.store_errors import translated
from recommender.types import Event, EventType

log = logging.getLogger(__name__)

USER_KEY = "user_id"
ITEM_KEY = "item_id"
TYPE_KEY = "event_type"
WEIGHT_KEY = "weight"
TIME_KEY = "timestamp"  # epoch seconds: range filters and ordering need a number
SCROLL_PAGE = 1000
# Events for a random event id: a retry that carries the same event_id lands on the same point.
EVENT_NAMESPACE = uuid.UUID("0b7e0a4e-4f2b-5c1e-8d8a-5e7e17ab1e00")


class EventStore:
    def __init__(self, client: QdrantClient, collection: str, location: str = "embedded",
                 layout: CollectionLayout | None = None) -> None:
        self._client = client
        self._collection = collection
        self._location = location
        self._layout = layout or CollectionLayout()

    def open(self) -> None:
        with translated(self._location):
            if not self._client.collection_exists(self._collection):
                # No vectors: events are looked up by payload only.
                self._client.create_collection(self._collection, vectors_config={}, **self._layout.create_arguments())
            if self._location != "embedded":
                for key, schema in ((USER_KEY, models.PayloadSchemaType.KEYWORD),
                                    (ITEM_KEY, models.PayloadSchemaType.KEYWORD),
                                    (TIME_KEY, models.PayloadSchemaType.FLOAT)):
                    self._client.create_payload_index(self._collection, key, schema)

    def append(self, events: Sequence[Event], event_ids: Sequence[str | None] | None = None) -> None:
        if not events:
            return
        ids = event_ids or [None] * len(events)
        points = [models.PointStruct(id=_point_id(event, event_id), vector={}, payload=_payload(event))
                  for event, event_id in zip(events, ids)]
        with translated(self._location):
            self._client.upsert(self._collection, points=points, wait=True)

    def for_user(self, user_id: str, limit: int) -> list[Event]:
        """The user's most recent `limit` events, oldest first, in one round trip."""
        with translated(self._location):
            records, _ = self._client.scroll(
                self._collection, scroll_filter=_user_filter(user_id), limit=limit, with_payload=True,
                with_vectors=False, order_by=models.OrderBy(key=TIME_KEY, direction=models.Direction.DESC))
        return [_event(record.payload) for record in reversed(records)]

    def delete_user(self, user_id: str) -> int:
        with translated(self._location):
            count = self._client.count(self._collection, count_filter=_user_filter(user_id), exact=True).count
            self._client.delete(self._collection, points_selector=models.FilterSelector(filter=_user_filter(user_id)),
                                wait=True)
        return count

    def popularity(self, since: datetime, weights: Mapping[EventType, float], max_events: int) -> Counter:
        """Positive event weight per item since `since`, over at most `max_events` events."""
        window = models.Filter(must=[models.FieldCondition(key=TIME_KEY, range=models.Range(gte=since.timestamp()))])
        scores: Counter = Counter()
        for payload in self._scroll(window, max_events):
            event_type = EventType(payload[TYPE_KEY])
            if not event_type.is_negative:
                scores[payload[ITEM_KEY]] += weights.get(event_type, 0.0) * payload.get(WEIGHT_KEY, 1.0)
        return scores

    def _scroll(self, filter_: models.Filter, max_points: int) -> list[dict]:
        payloads: list[dict] = []
        offset = None
        with translated(self._location):
            while len(payloads) < max_points:
                page, offset = self._client.scroll(self._collection, scroll_filter=filter_,
                                                   limit=min(SCROLL_PAGE, max_points - len(payloads)),
                                                   offset=offset, with_payload=True, with_vectors=False)
                payloads.extend(record.payload for record in page)
                if offset is None:
                    break
        return payloads


def _user_filter(user_id: str) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key=USER_KEY, match=models.MatchValue(value=user_id))])


def _point_id(event: Event, event_id: str | None) -> str:
    if event_id:
        return str(uuid.uuid5(EVENT_NAMESPACE, f"{event.user_id}\x00{event_id}"))
    return str(uuid.uuid4())


def _payload(event: Event) -> dict:
    return {USER_KEY: event.user_id, ITEM_KEY: event.item_id, TYPE_KEY: event.event_type.value,
            WEIGHT_KEY: event.weight, TIME_KEY: event.timestamp.timestamp()}


def _event(payload: Mapping) -> Event:
    return Event(user_id=payload[USER_KEY], item_id=payload[ITEM_KEY], event_type=EventType(payload[TYPE_KEY]),
                 timestamp=datetime.fromtimestamp(payload[TIME_KEY], tz=timezone.utc),
                 weight=float(payload.get(WEIGHT_KEY, 1.0)))
