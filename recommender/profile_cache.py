"""Built profiles kept per user, so a returning user skips the vector fetch and the clustering.

What a profile is a function of, and how each input is tracked:

- **the user's events** (the profile window): an entry holds a fingerprint of the
  exact events it was built from, and the caller reads the window again on every
  call (one indexed read) and compares. Any change (RecordEvents, ForgetUser, a
  backfilled old event, an event stamped ahead that the clock has now reached,
  a write by another server process on the same Qdrant) gives other events, so
  a different fingerprint and a rebuild. The store is append-only, so this is
  the whole history's identity, not an approximation of it.
- **`now`, through recency decay**: every event's weight is multiplied by the same
  factor 0.5 ** (elapsed / half-life) as time passes (the events read are never
  younger than the clock, so no clamping breaks this), and the clustering is
  invariant to scaling all weights by one positive factor (assignments,
  centroids, radii, fit ratios and importances are ratios of weights; Ward's
  cost scales alike for every pair). So an entry is reused at any later `now`
  with its interests' absolute weights rescaled by that factor: the same profile
  as a fresh build, up to floating-point rounding.
- **item vectors**: items re-upserted or deleted through this process are
  reported with `items_changed`, and an entry built before a change to one of
  its window's items is rebuilt (a filter delete, which names no ids, drops every
  entry). Writes by other processes to a shared Qdrant are not seen here: they
  are bounded by `max_age`, after which an entry is rebuilt whatever it holds.

The seen items of a long history (more events than the profile window, read by a
second, longer read) are kept too, per user, checked by the user's event count
(counted by the store's index, nothing read) with the window: an append-only
history with the same count and the same latest events is the same history.
They are bounded apart, by the item ids held in all (`max_seen_ids`).

Bounded (least recently used beyond `max_entries`) and safe under concurrent
callers (one lock around dictionary operations; two concurrent misses for one
user both build, and the later write wins, both being correct).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Hashable, Iterable, Sequence

from recommender.types import Event, Interest

# Catalog changes remembered, so an older entry can still prove none touched it; beyond
# this many writes since an entry was built, the entry is simply rebuilt.
CHANGE_LOG_LENGTH = 256


def fingerprint(events: Sequence[Event]) -> tuple:
    """The identity of a window of events (as read: oldest first): count, newest, and a hash of all."""
    return (len(events), events[-1] if events else None, hash(tuple(events)))


@dataclass(frozen=True)
class CachedProfile:
    interests: tuple[Interest, ...]
    negatives: tuple[Interest, ...]


@dataclass(frozen=True)
class _Seen:
    count: int
    fingerprint: tuple
    built_at: datetime
    item_ids: frozenset[str]
    event_count: int


@dataclass
class _Entry:
    fingerprint: tuple
    built_at: datetime
    generation: int
    item_ids: frozenset[str]
    profile: CachedProfile


class ProfileCache:
    def __init__(self, max_entries: int, max_age: timedelta, half_life_seconds: float,
                 max_seen_ids: int = 0) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self.max_seen_ids = max_seen_ids
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._seen_ids_held = 0
        self.seen_hits = 0
        self.seen_misses = 0
        self.max_age = max_age
        self._half_life_seconds = half_life_seconds
        self._entries: OrderedDict[tuple[str, Hashable], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0
        self._changes: deque[tuple[int, frozenset[str] | None]] = deque(maxlen=CHANGE_LOG_LENGTH)
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    @property
    def generation(self) -> int:
        """Read before the reads a profile is built from: a change after it counts against the entry."""
        return self._generation

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: str, variant: Hashable, events: Sequence[Event], now: datetime) -> CachedProfile | None:
        """The profile built from exactly these events, as it stands at `now`; None if none is valid.

        `variant`: what else the profile was built with (e.g. an interest cap), part of the key."""
        if not self.enabled:
            return None
        key = (user_id, variant)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and not self._still_valid(entry, events, now):
                del self._entries[key]
                entry = None
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        factor = 0.5 ** ((now - entry.built_at).total_seconds() / self._half_life_seconds)
        if factor == 1.0:
            return entry.profile
        return CachedProfile(_rescaled(entry.profile.interests, factor), _rescaled(entry.profile.negatives, factor))

    def put(self, user_id: str, variant: Hashable, events: Sequence[Event], built_at: datetime, generation: int,
            profile: CachedProfile) -> None:
        """Keep the profile built at `built_at` from `events`; `generation` as read before the reads."""
        if not self.enabled:
            return
        key = (user_id, variant)
        entry = _Entry(fingerprint(events), built_at, generation, frozenset(event.item_id for event in events),
                       profile)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def items_changed(self, item_ids: Iterable[str] | None) -> None:
        """These items' vectors changed (upserted or deleted); None: any item may have."""
        changed = None if item_ids is None else frozenset(item_ids)
        with self._lock:
            self._generation += 1
            self._changes.append((self._generation, changed))

    def forget(self, user_id: str) -> None:
        """Drop the user's entries (ForgetUser: nothing derived from their events stays in memory)."""
        with self._lock:
            for key in [key for key in self._entries if key[0] == user_id]:
                del self._entries[key]
            self._drop_seen(user_id)

    def seen(self, user_id: str, count: int, events: Sequence[Event],
             now: datetime) -> tuple[frozenset[str], int] | None:
        """The seen items (and events counted) kept for a user who has `count` events at `now`
        and these latest ones; None if none are kept for exactly that history."""
        if not self.enabled:
            return None
        with self._lock:
            entry = self._seen.get(user_id)
            if entry is not None and (entry.count != count or entry.fingerprint != fingerprint(events)
                                      or abs(now - entry.built_at) > self.max_age):
                self._drop_seen(user_id)
                entry = None
            if entry is None:
                self.seen_misses += 1
                return None
            self._seen.move_to_end(user_id)
            self.seen_hits += 1
            return entry.item_ids, entry.event_count

    def keep_seen(self, user_id: str, count: int, events: Sequence[Event], now: datetime,
                  item_ids: frozenset[str], event_count: int) -> None:
        """Keep what `seen` returns; `count` as counted before the seen items were read."""
        if not self.enabled or len(item_ids) > self.max_seen_ids:
            return
        entry = _Seen(count, fingerprint(events), now, item_ids, event_count)
        with self._lock:
            self._drop_seen(user_id)
            self._seen[user_id] = entry
            self._seen_ids_held += len(item_ids)
            while self._seen_ids_held > self.max_seen_ids:
                self._drop_seen(next(iter(self._seen)))

    def _drop_seen(self, user_id: str) -> None:
        entry = self._seen.pop(user_id, None)
        if entry is not None:
            self._seen_ids_held -= len(entry.item_ids)

    def _still_valid(self, entry: _Entry, events: Sequence[Event], now: datetime) -> bool:
        if abs(now - entry.built_at) > self.max_age or entry.fingerprint != fingerprint(events):
            return False
        if entry.generation == self._generation:
            return True
        later = [changed for generation, changed in self._changes if generation > entry.generation]
        if len(later) < self._generation - entry.generation:  # some fell off the log: unknown, so rebuild
            return False
        if any(changed is None or not entry.item_ids.isdisjoint(changed) for changed in later):
            return False
        entry.generation = self._generation  # checked up to here; later lookups start from now
        return True


def _rescaled(interests: tuple[Interest, ...], factor: float) -> tuple[Interest, ...]:
    return tuple(replace(interest, weight=interest.weight * factor) for interest in interests)
