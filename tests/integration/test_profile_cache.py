"""The per-user profile cache (recommender/profile_cache.py) on the real embedded engine.

Every check compares a cached engine with an engine over the same storage that keeps
no cache: what the cache returns must be what a fresh build returns, after every kind
of change a profile depends on (events, forgetting, item vectors, time).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from recommender.engine import Engine, open_engine
from recommender.filters import Filter, Match
from recommender.profile_cache import CHANGE_LOG_LENGTH
from recommender.profiles import ProfileConfig
from recommender.recommend import RecommenderConfig
from recommender.storage.edge import open_edge
from recommender.types import Event, EventType, Example, ItemInput, RecommendQuery, Strategy, UserProfile

DIM = 16
START = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
KINDS = 4
PER_KIND = 12
# Long, so that time passing shows decay being rescaled rather than entries expiring.
MAX_AGE = timedelta(days=60)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


@pytest.fixture
def world(tmp_path):
    """(cached engine, uncached engine, clock, storage) over one embedded store with a clustered catalog."""
    storage = open_edge(tmp_path, "items", "test-model", DIM, {"kind": "keyword"})
    clock = Clock()
    cached = open_engine(storage, RecommenderConfig(profile_cache_size=8, profile_cache_max_age=MAX_AGE), clock)
    fresh = open_engine(storage, RecommenderConfig(profile_cache_size=0), clock)
    rng = np.random.default_rng(0)
    directions = [unit(rng.standard_normal(DIM)) for _ in range(KINDS)]
    cached.upsert_items(list(enumerate(
        ItemInput(item_id=f"k{kind}-{i}", payload={"kind": f"k{kind}"},
                  image_vector=unit(directions[kind] + 0.3 * rng.standard_normal(DIM)).astype(np.float32))
        for kind in range(KINDS) for i in range(PER_KIND))))
    yield cached, fresh, clock, storage
    storage.close()


def history(user: str, kinds: list[int], seed: int) -> list[Event]:
    rng = np.random.default_rng(seed)
    types = [EventType.VIEW, EventType.CLICK, EventType.PURCHASE, EventType.LIKE, EventType.DISLIKE]
    return [Event(user, f"k{kinds[n % len(kinds)]}-{int(rng.integers(PER_KIND))}", types[int(rng.integers(5))],
                  START - timedelta(days=10, hours=-n)) for n in range(30)]


def assert_same_profile(mine: UserProfile, theirs: UserProfile) -> None:
    assert (mine.user_id, mine.seen_item_ids, mine.event_count) == (theirs.user_id, theirs.seen_item_ids,
                                                                    theirs.event_count)
    assert len(mine.interests) == len(theirs.interests) and len(mine.negatives) == len(theirs.negatives)
    for a, b in zip([*mine.interests, *mine.negatives], [*theirs.interests, *theirs.negatives]):
        assert tuple(a.item_ids) == tuple(b.item_ids)
        np.testing.assert_allclose(a.centroid, b.centroid, atol=1e-6)
        assert a.importance == pytest.approx(b.importance, rel=1e-9)
        assert a.weight == pytest.approx(b.weight, rel=1e-9)


def check(cached: Engine, fresh: Engine, user: str) -> UserProfile:
    profile = cached.profile(user)
    assert_same_profile(profile, fresh.profile(user))
    return profile


def test_a_returning_user_gets_the_fresh_profile_from_the_cache_as_time_passes(world):
    cached, fresh, clock, _ = world
    cached.record_events(history("ann", [0, 1], seed=1))
    first = check(cached, fresh, "ann")
    assert (cached.profile_cache.hits, cached.profile_cache.misses) == (0, 1)
    for hours in (0, 1, 30, 24 * 40):  # decay rescales every weight alike; the clustering stands
        clock.now = START + timedelta(hours=hours)
        again = check(cached, fresh, "ann")
    assert cached.profile_cache.hits == 4
    assert again.interests[0].weight < first.interests[0].weight
    single = cached.recommend(RecommendQuery("ann", limit=5, strategy=Strategy.SINGLE_CENTROID))
    assert single.items and cached.profile_cache.misses == 2, "an interest cap is a profile of its own"


def test_recommendations_from_a_cached_profile_are_those_of_a_fresh_one(world):
    cached, fresh, clock, _ = world
    cached.record_events(history("bea", [2, 3], seed=2))
    query = RecommendQuery("bea", limit=8, filter=Filter(must=(Match("kind", "k2"),)))
    cached.recommend(query)
    clock.now = START + timedelta(minutes=3)
    warm = cached.recommend(query)
    assert cached.profile_cache.hits == 1
    expected = fresh.recommend(query)
    assert [item.item_id for item in warm.items] == [item.item_id for item in expected.items]
    np.testing.assert_allclose([item.score for item in warm.items], [item.score for item in expected.items],
                               atol=1e-6)


def test_new_events_forgetting_and_other_writers_invalidate(world, tmp_path):
    cached, fresh, _, storage = world
    cached.record_events(history("cy", [0], seed=3))
    check(cached, fresh, "cy")
    cached.record_events([Event("cy", "k3-0", EventType.PURCHASE, START - timedelta(hours=1))])
    assert "k3-0" in check(cached, fresh, "cy").seen_item_ids
    # Another process on a shared Qdrant writes straight to the store: an old event, backfilled.
    storage.events.append([Event("cy", "k2-5", EventType.PURCHASE, START - timedelta(days=30))])
    assert "k2-5" in check(cached, fresh, "cy").seen_item_ids
    assert cached.profile_cache.hits == 0
    cached.forget_user("cy")
    assert len(cached.profile_cache) == 0, "nothing derived from a forgotten user stays in memory"
    assert check(cached, fresh, "cy").is_cold


def test_an_item_changed_or_deleted_rebuilds_the_profiles_built_on_it(world):
    cached, fresh, _, _ = world
    events = history("dee", [1], seed=4)
    cached.record_events(events + history("eve", [2], seed=5))
    before = check(cached, fresh, "dee")
    check(cached, fresh, "eve")
    moved = before.interests[0].item_ids[0]
    cached.upsert_items([(0, ItemInput(item_id=moved, payload={"kind": "k1"},
                                       image_vector=unit(np.arange(1.0, DIM + 1)).astype(np.float32)))])
    after = check(cached, fresh, "dee")
    assert not np.allclose(after.interests[0].centroid, before.interests[0].centroid)
    check(cached, fresh, "eve")
    assert cached.profile_cache.hits == 1, "eve's items did not change: her entry stands"
    cached.delete_items([events[1].item_id])
    check(cached, fresh, "dee")
    cached.delete_where(Filter(must=(Match("kind", "k2"),)))  # no ids known: every entry goes
    assert check(cached, fresh, "eve").is_cold
    assert cached.profile_cache.hits == 1


def test_an_entry_older_than_the_limit_or_than_the_change_log_is_rebuilt(world):
    cached, fresh, clock, _ = world
    cached.record_events(history("fay", [3], seed=6))
    check(cached, fresh, "fay")
    clock.now = START + MAX_AGE + timedelta(seconds=1)
    check(cached, fresh, "fay")
    assert cached.profile_cache.hits == 0
    for n in range(CHANGE_LOG_LENGTH + 1):  # writes elsewhere in the catalog, more than the log remembers
        cached.profile_cache.items_changed([f"elsewhere-{n}"])
    check(cached, fresh, "fay")
    assert cached.profile_cache.hits == 0
    check(cached, fresh, "fay")
    assert cached.profile_cache.hits == 1


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(world):
    cached, fresh, _, _ = world
    users = [f"u{n}" for n in range(10)]
    for n, user in enumerate(users):
        cached.record_events(history(user, [n % KINDS], seed=10 + n))
    for user in users:
        check(cached, fresh, user)
    assert len(cached.profile_cache) == 8
    check(cached, fresh, users[-1])
    assert cached.profile_cache.hits == 1
    check(cached, fresh, users[0])
    assert cached.profile_cache.hits == 1, "the oldest entry was evicted"


def test_concurrent_calls_and_writes_leave_every_profile_fresh(world):
    cached, fresh, clock, _ = world
    users = [f"w{n}" for n in range(6)]
    for n, user in enumerate(users):
        cached.record_events(history(user, [n % KINDS, (n + 1) % KINDS], seed=20 + n))
    errors: list[BaseException] = []

    def read(user: str) -> None:
        try:
            for _ in range(15):
                cached.profile(user)
                cached.recommend(RecommendQuery(user, limit=4))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    def write() -> None:
        try:
            for n in range(15):
                cached.record_events([Event(users[n % len(users)], f"k{n % KINDS}-{n % PER_KIND}", EventType.LIKE,
                                            START - timedelta(minutes=n))])
                cached.upsert_items([(0, ItemInput(item_id=f"k0-{n % PER_KIND}", payload={"kind": "k0"},
                                                   image_vector=unit(np.roll(np.arange(1.0, DIM + 1), n)).astype(
                                                       np.float32)))])
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=read, args=(user,)) for user in users] + [threading.Thread(target=write)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(cached.profile_cache) <= 8
    for user in users:
        check(cached, fresh, user)


def test_a_long_historys_seen_items_are_kept_until_its_count_or_window_changes(tmp_path):
    storage = open_edge(tmp_path, "items", "test-model", DIM)
    clock = Clock()
    short_window = ProfileConfig(max_events=8)
    config = RecommenderConfig(profile=short_window, profile_cache_size=2, profile_cache_max_age=MAX_AGE)
    cached = open_engine(storage, config, clock)
    fresh = open_engine(storage, replace(config, profile_cache_size=0), clock)
    try:
        rng = np.random.default_rng(1)
        cached.upsert_items([(n, ItemInput(item_id=f"i{n}", image_vector=unit(rng.standard_normal(DIM))))
                             for n in range(300)])
        long_history = [Event("hal", f"i{n}", EventType.CLICK, START - timedelta(hours=n)) for n in range(200)]
        cached.record_events(long_history)
        assert len(check(cached, fresh, "hal").seen_item_ids) == 200, "all of it, though the window holds 8"
        check(cached, fresh, "hal")
        assert (cached.profile_cache.seen_hits, cached.profile_cache.seen_misses) == (1, 1)
        # Another writer backfills an event older than the window: only the count tells.
        storage.events.append([Event("hal", "i250", EventType.VIEW, START - timedelta(days=30))])
        assert "i250" in check(cached, fresh, "hal").seen_item_ids
        assert cached.profile_cache.seen_misses == 2
        cached.record_events([Event("hal", "i251", EventType.VIEW, START - timedelta(minutes=1))])
        assert "i251" in check(cached, fresh, "hal").seen_item_ids
        assert cached.profile_cache.seen_misses == 3
        recommended = cached.recommend(RecommendQuery("hal", limit=20))
        assert not {item.item_id for item in recommended.items} & check(cached, fresh, "hal").seen_item_ids
        # Bounded by ids held: 2 entries x 250 ids; 202 + 299 do not fit, so the older goes.
        cached.record_events([Event("ida", f"i{n}", EventType.CLICK, START - timedelta(hours=n)) for n in range(299)])
        check(cached, fresh, "ida")
        misses = cached.profile_cache.seen_misses
        check(cached, fresh, "hal")
        assert cached.profile_cache.seen_misses == misses + 1
        cached.forget_user("hal")
        assert check(cached, fresh, "hal").is_cold
    finally:
        storage.close()


def test_requests_with_examples_are_not_cached(world):
    cached, fresh, _, _ = world
    cached.record_events(history("gil", [0], seed=7))
    query = RecommendQuery("gil", limit=5, examples=(Example(item_id="k3-1", weight=1.0),))
    assert [i.item_id for i in cached.recommend(query).items] == [i.item_id for i in fresh.recommend(query).items]
    assert len(cached.profile_cache) == 0, "examples make a profile of that request alone"
    cached.recommend(replace(query, examples=()))
    assert len(cached.profile_cache) == 1
