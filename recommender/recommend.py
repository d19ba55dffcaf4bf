"""Recommendations: a user's events -> interests -> batched neighbour queries -> ranking.

Round trips per call, whatever the history size: one indexed, time-ordered
read of the user's latest events (a second one, item ids only, when the history
is longer than the profile window), one fetch of their items' vectors, one
batched query for all interests. Popularity is counted by the store (facets
over the indexed item id), cached per process, never a scan of events here.
Events stamped after the engine clock's `now` are invisible.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Callable, Mapping, Sequence

import numpy as np

from recommender.filters import Filter, HasId
from recommender.profile_cache import CachedProfile, ProfileCache
from recommender.profiles import ProfileConfig, build_profile
from recommender.ranking import Candidate, rank
from recommender.storage import Catalog, EventStore
from recommender.types import (
    Event,
    EventType,
    Interest,
    Recommendation,
    Recommendations,
    RecommendQuery,
    Scored,
    SearchParams,
    StoredItem,
    Strategy,
    UserProfile,
    VectorSpace,
)

# The seen items kept for long histories hold at most this many item ids per profile cache
# entry in all (about 40 MB at the default size): a user with 10,000 seen items takes 40 entries' share.
SEEN_IDS_PER_ENTRY = 250
# A vector example joins the profile under a key no catalog item has.
_VECTOR_EXAMPLE_KEY = "\x00example[{}]"


@dataclass(frozen=True)
class RecommenderConfig:
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    # Seen items (excluded from results) come from this many latest events; the profile
    # uses profile.max_events of them. Longer histories exclude only their latest items.
    seen_window_events: int = 10_000
    # Candidates fetched per result slot, shared among interests, so MMR has room to choose.
    candidates_per_slot: int = 4
    space: VectorSpace = VectorSpace.IMAGE
    popularity_window: timedelta = timedelta(days=30)
    # Each positive event type contributes its this-many most frequent items.
    popularity_max_items: int = 1000
    # Popularity is counted by the store: computed at most this often per process.
    popularity_ttl: timedelta = timedelta(seconds=60)
    native_max_examples: int = 64
    explain_items: int = 3
    # Built profiles kept per user (recommender/profile_cache.py); 0 keeps none.
    profile_cache_size: int = 2000
    # The longest an entry is reused: bounds how long item changes written by another
    # process (a shared Qdrant) go unseen. Changes through this engine are seen at once.
    profile_cache_max_age: timedelta = timedelta(seconds=300)


@dataclass(frozen=True)
class History:
    events: list[Event]  # the latest profile.max_events, oldest first
    vectors: dict[str, np.ndarray]  # read only when a profile is built from them
    seen: frozenset[str]  # items of the latest seen_window_events
    event_count: int  # events read, at most seen_window_events


@dataclass(frozen=True)
class Examples:
    """A request's examples, ready to join a profile: signed weights and vectors by key
    (an item id, or a reserved key for a raw vector) and each key's example positions."""

    weights: dict[str, float] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    positions: dict[str, tuple[int, ...]] = field(default_factory=dict)
    unknown_ids: tuple[str, ...] = ()

    @property
    def item_ids(self) -> frozenset[str]:
        return frozenset(key for key in self.weights if not key.startswith("\x00"))


class Recommender:
    def __init__(self, catalog: Catalog, events: EventStore, config: RecommenderConfig,
                 clock: Callable[[], datetime]) -> None:
        self._catalog = catalog
        self._events = events
        self._config = config
        self._clock = clock
        self._popularity: tuple[datetime, Counter] | None = None
        self.profile_cache = ProfileCache(config.profile_cache_size, config.profile_cache_max_age,
                                          config.profile.half_life_seconds,
                                          max_seen_ids=config.profile_cache_size * SEEN_IDS_PER_ENTRY)

    # -- profiles -------------------------------------------------------

    def history(self, user_id: str, now: datetime) -> History:
        """The user's latest events and seen items; no vectors yet (`_with_vectors`)."""
        window = self._config.profile.max_events
        events = self._events.for_user(user_id, window, until=now)
        if len(events) < window:  # the whole history is here
            seen, count = frozenset(event.item_id for event in events), len(events)
        else:
            seen, count = self._seen_of_long_history(user_id, events, now)
        return History(events, {}, seen, count)

    def _seen_of_long_history(self, user_id: str, window: list[Event], now: datetime) -> tuple[frozenset[str], int]:
        """The second, longer read, or what it gave last time: the store counts the user's
        events (over its index, nothing read), and the same count with the same latest
        events is the same append-only history."""
        cache = self.profile_cache
        if not cache.enabled:
            return self._seen(user_id, now)
        count = self._events.count_for_user(user_id, until=now)  # before the read: a later event counts against it
        kept = cache.seen(user_id, count, window, now)
        if kept is not None:
            return kept
        seen = self._seen(user_id, now)
        cache.keep_seen(user_id, count, window, now, *seen)
        return seen

    def _with_vectors(self, history: History) -> History:
        recent_ids = list(dict.fromkeys(event.item_id for event in history.events))
        stored = self._catalog.get(recent_ids, with_vectors=True) if recent_ids else {}
        vectors = {item_id: vector for item_id, item in stored.items()
                   if (vector := _item_vector(item, self._config.space)) is not None}
        return replace(history, vectors=vectors)

    def seen_item_ids(self, user_id: str) -> frozenset[str]:
        """Items with any of the user's latest events: item ids only, no vectors, no clustering."""
        return self._seen(user_id, self._clock())[0]

    def _seen(self, user_id: str, now: datetime) -> tuple[frozenset[str], int]:
        item_ids = self._events.recent_item_ids(user_id, self._config.seen_window_events, until=now)
        return frozenset(item_ids), len(item_ids)

    def profile(self, user_id: str, max_interests: int | None = None, examples: Examples | None = None,
                with_vectors: bool = False) -> tuple[UserProfile, History]:
        """The user's profile (none for an anonymous session: empty user_id), with the examples joined in,
        and the history it came from. The history's vectors are read when the profile is built here,
        or always with `with_vectors`; a profile from the cache needs neither them nor clustering."""
        examples = examples or Examples()
        generation = self.profile_cache.generation  # before any read: a change during them counts
        now = self._clock()
        history = self.history(user_id, now) if user_id else History([], {}, frozenset(), 0)
        # A request's examples make a profile of that request alone; no events, nothing to save.
        cacheable = bool(history.events) and not examples.weights
        cached = self.profile_cache.get(user_id, max_interests, history.events, now) if cacheable else None
        if cached is None or with_vectors:
            history = self._with_vectors(history)
        if cached is None:
            config = self._config.profile
            if max_interests is not None:
                config = replace(config, max_interests=max_interests)
            built = build_profile(user_id, history.events, {**history.vectors, **examples.vectors}, now, config,
                                  extra_weights=examples.weights)
            cached = CachedProfile(tuple(built.interests), tuple(built.negatives))
            if cacheable:
                self.profile_cache.put(user_id, max_interests, history.events, now, generation, cached)
        seen = history.seen | frozenset(event.item_id for event in history.events)
        profile = UserProfile(user_id=user_id, interests=cached.interests, negatives=cached.negatives,
                              seen_item_ids=seen, event_count=max(history.event_count, len(history.events)))
        return profile, history

    def catalog_changed(self, item_ids: Sequence[str] | None) -> None:
        """Items were upserted or deleted (None: by a filter, ids unknown); profiles built on them are stale."""
        self.profile_cache.items_changed(item_ids)

    def forget(self, user_id: str) -> None:
        self.profile_cache.forget(user_id)

    def examples(self, query: RecommendQuery) -> Examples:
        """The query's examples as profile weights: an item example takes the item's vector (one
        catalog round trip for all of them), a weight of 1 counts as a like and -1 as a dislike."""
        if not query.examples:
            return Examples()
        ids = list(dict.fromkeys(example.item_id for example in query.examples if example.item_id is not None))
        stored = self._catalog.get(ids, with_vectors=True) if ids else {}
        scale = self._config.profile.event_weights
        found = Examples()
        unknown = []
        for index, example in enumerate(query.examples):
            if example.item_id is not None:
                item = stored.get(example.item_id)
                vector = _item_vector(item, self._config.space) if item is not None else None
                if vector is None:
                    unknown.append(example.item_id)
                    continue
                key = example.item_id
            elif example.vector is not None:
                key, vector = _VECTOR_EXAMPLE_KEY.format(index), example.vector
            else:  # validation admits none such; an empty example adds nothing
                continue
            unit = scale[EventType.LIKE] if example.weight > 0 else abs(scale[EventType.DISLIKE])
            found.weights[key] = found.weights.get(key, 0.0) + example.weight * unit
            found.vectors[key] = vector
            found.positions[key] = found.positions.get(key, ()) + (index,)
        return replace(found, unknown_ids=tuple(dict.fromkeys(unknown)))

    # -- recommendations --------------------------------------------------

    def recommend(self, query: RecommendQuery) -> Recommendations:
        """Each strategy does only the profile work it uses: popularity reads the seen
        items and nothing more; single_centroid clusters once, into one interest."""
        # One more than the page: a next page is announced only when it has an item.
        wanted = query.offset + query.limit + 1
        examples = self.examples(query)
        page = partial(_page, query=query, unknown=examples.unknown_ids)
        if query.strategy is Strategy.POPULAR:
            seen = (self.seen_item_ids(query.user_id) if query.user_id else frozenset()) | examples.item_ids
            items = self._popular(query, sorted(seen) if query.exclude_seen else [], wanted)
            # Without a profile, "too little history" can only mean none at all.
            return page(items, strategy=Strategy.POPULAR, cold_start=not seen)
        max_interests = 1 if query.strategy is Strategy.SINGLE_CENTROID else None
        native = query.strategy in (Strategy.QDRANT_AVERAGE, Strategy.QDRANT_BEST_SCORE)
        profile, history = self.profile(query.user_id, max_interests, examples, with_vectors=native)
        # Example items count as seen: "more like these" should not answer with these.
        excluded = sorted(profile.seen_item_ids | examples.item_ids) if query.exclude_seen else []
        if profile.is_cold:
            return page(self._popular(query, excluded, wanted), strategy=Strategy.POPULAR, cold_start=True)
        if native:
            items = self._native(query, profile, {**history.vectors, **examples.vectors}, excluded, wanted)
        else:
            items = self._from_interests(query, profile, excluded, wanted, examples)
        return page(items, strategy=query.strategy, cold_start=False)

    def _from_interests(self, query: RecommendQuery, profile: UserProfile, excluded: Sequence[str],
                        wanted: int, examples: Examples | None = None) -> list[Recommendation]:
        interests = list(profile.interests)
        importances = [interest.importance for interest in interests]
        counts = _candidate_counts(importances, wanted, self._config.candidates_per_slot)
        hits = self._catalog.search_many([interest.centroid for interest in interests], counts, self._config.space,
                                         query.filter, excluded)
        by_id: dict[str, Scored] = {}
        per_interest = []
        for index, interest_hits in enumerate(hits):
            per_interest.append([Candidate(hit.item_id, hit.score, hit.vector, index)
                                 for hit in interest_hits if hit.vector is not None])
            for hit in interest_hits:
                by_id.setdefault(hit.item_id, hit)
        ranked = rank(per_interest, importances, profile.negatives, k=wanted, diversity=query.diversity)
        explained = [_because(interest, query, self._config.explain_items, examples or Examples())
                     for interest in interests]
        return [_recommendation(by_id[entry.item_id], entry.score, entry.interest_index,
                                *explained[entry.interest_index]) for entry in ranked]

    def _native(self, query: RecommendQuery, profile: UserProfile, vectors: Mapping[str, np.ndarray],
                excluded: Sequence[str], wanted: int) -> list[Recommendation]:
        """Qdrant's recommend, given the examples' vectors rather than their ids: by ids it
        would always leave the examples out, and include_seen could not bring them back."""
        limit = self._config.native_max_examples
        positives = [vectors[item_id] for item_id in _strongest_items(profile.interests, limit)]
        negatives = [vectors[item_id] for item_id in _strongest_items(profile.negatives, limit)]
        hits = self._catalog.recommend_native(
            positives, negatives, best_score=query.strategy is Strategy.QDRANT_BEST_SCORE, space=self._config.space,
            filter_=query.filter, params=SearchParams(limit=wanted), exclude_ids=excluded)
        return [_recommendation(hit, hit.score, None, ()) for hit in hits]

    def _popular(self, query: RecommendQuery, excluded: Sequence[str], wanted: int) -> list[Recommendation]:
        """Most-interacted items within the filter; items nobody touched yet fill the rest."""
        counts = self._popularity_counts()
        skip = set(excluded)
        # Ties by item id: the store returns events in no stable order.
        ranked_ids = [item_id for item_id, _ in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
                      if item_id not in skip]
        shortlist = ranked_ids[: wanted * 4]
        matching = {hit.item_id: hit for hit in self._catalog.scroll(query.filter, len(shortlist), shortlist)}
        top = max(counts.values(), default=1.0) or 1.0
        items = [_recommendation(matching[item_id], counts[item_id] / top, None, ())
                 for item_id in shortlist if item_id in matching][:wanted]
        if len(items) < wanted:
            taken = skip | {item.item_id for item in items}
            # The exclusion runs in the store: a heavy user's seen items are never scrolled past here.
            unseen = (query.filter or Filter()).excluding(HasId(tuple(sorted(taken)))) if taken else query.filter
            filler = self._catalog.scroll(unseen, wanted - len(items))
            items += [_recommendation(hit, 0.0, None, ()) for hit in filler if hit.item_id not in taken]
        return items[:wanted]


    def _popularity_counts(self) -> Counter:
        now = self._clock()
        cached = self._popularity
        if cached is not None and timedelta(0) <= now - cached[0] < self._config.popularity_ttl:
            return cached[1]
        counts = self._events.popularity(now - self._config.popularity_window, now,
                                         self._config.profile.event_weights, self._config.popularity_max_items)
        self._popularity = (now, counts)  # one reference swap: safe for concurrent callers
        return counts


def _candidate_counts(importances: Sequence[float], wanted: int, per_slot: int) -> list[int]:
    """Each interest fetches enough to fill its proportional share several times over,
    and at least `wanted`, so a small interest can still fill the page if others run dry."""
    return [max(wanted, int(np.ceil(importance * wanted * per_slot))) for importance in importances]


def _strongest_items(interests: Sequence[Interest], limit: int) -> list[str]:
    """Items (and vector examples' keys) by interest weight, then by their order of contribution within the interest."""
    ordered = sorted(interests, key=lambda interest: -interest.weight)
    items = [item_id for interest in ordered for item_id in interest.item_ids]
    return list(dict.fromkeys(items))[:limit]


def _item_vector(item: StoredItem, space: VectorSpace) -> np.ndarray | None:
    vector = item.vector(space)
    if vector is None:  # one CLIP space: a text-only item still places the user
        vector = item.vector(VectorSpace.TEXT if space is VectorSpace.IMAGE else VectorSpace.IMAGE)
    return vector


def _because(interest: Interest, query: RecommendQuery, count: int,
             examples: Examples) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The strongest catalog items of the interest (history or examples), and every example in it."""
    if not query.explain:
        return (), ()
    items = tuple(key for key in interest.item_ids if not key.startswith("\x00"))[:count]
    cited = sorted(index for key in interest.item_ids for index in examples.positions.get(key, ()))
    return items, tuple(cited)


def _recommendation(hit: Scored, score: float, interest_index: int | None, because: tuple[str, ...],
                    because_examples: tuple[int, ...] = ()) -> Recommendation:
    return Recommendation(item_id=hit.item_id, score=float(score), payload=hit.payload, text=hit.text,
                          interest_index=interest_index, because=because, because_examples=because_examples)


def _page(items: list[Recommendation], *, query: RecommendQuery, strategy: Strategy, cold_start: bool,
          unknown: tuple[str, ...] = ()) -> Recommendations:
    page = items[query.offset: query.offset + query.limit]
    return Recommendations(items=page, strategy=strategy, cold_start=cold_start,
                           has_more=len(items) > query.offset + query.limit, unknown_example_ids=unknown)
