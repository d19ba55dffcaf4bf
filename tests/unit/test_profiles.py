"""Events -> interests: weights, decay, windowing, clustering, determinism."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from recommender.profiles import (
    DEFAULT_EVENT_WEIGHTS,
    ProfileConfig,
    build_profile,
    choose_k,
    cluster_unit_vectors,
    farthest_point_seeds,
    fit_ratio,
    latest_events,
    leave_one_out_radius,
    net_item_weights,
    recency_decay,
    weighted_spherical_kmeans,
)
from recommender.types import Event, EventType

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
DIM = 32
DAY = 86_400.0


def event(item_id: str, event_type: EventType = EventType.CLICK, days_ago: float = 0.0, weight: float = 1.0) -> Event:
    return Event("u1", item_id, event_type, NOW - timedelta(days=days_ago), weight)


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def random_direction(rng: np.random.Generator) -> np.ndarray:
    return unit(rng.standard_normal(DIM))


def taste(rng: np.random.Generator, base: np.ndarray, n: int, spread: float = 0.5) -> list[np.ndarray]:
    """n unit vectors scattered around `base` (cosine to it about 1 / sqrt(1 + spread^2))."""
    noise = rng.standard_normal((n, DIM)) / np.sqrt(DIM)
    return [unit(base + spread * row).astype(np.float32) for row in noise]


def direction_at(base: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    other = rng.standard_normal(DIM)
    other = unit(other - (other @ base) * base)
    return cosine * base + np.sqrt(1 - cosine**2) * other


def two_taste_history(seed: int = 0):
    """Taste A: 7 purchased items (weight 35); taste B: 15 clicked items (weight 15).

    By weight 70/30, by item count the other way round, so an importance taken
    from counts instead of weights fails the test.
    """
    rng = np.random.default_rng(seed)
    base_a = random_direction(rng)
    base_b = direction_at(base_a, 0.2, rng)
    vectors, events = {}, []
    for i, vector in enumerate(taste(rng, base_a, 7)):
        vectors[f"a{i}"] = vector
        events.append(event(f"a{i}", EventType.PURCHASE, days_ago=0))
    for i, vector in enumerate(taste(rng, base_b, 15)):
        vectors[f"b{i}"] = vector
        events.append(event(f"b{i}", EventType.CLICK, days_ago=0))
    return base_a, base_b, vectors, events


# ---------------------------------------------------------------- weights and decay


def test_recency_decay_halves_at_each_half_life():
    half_life = 14 * DAY
    assert recency_decay(0.0, half_life) == 1.0
    assert recency_decay(half_life, half_life) == 0.5
    assert recency_decay(2 * half_life, half_life) == 0.25
    assert recency_decay(0.5 * half_life, half_life) == pytest.approx(2**-0.5)


def test_future_events_count_as_fresh_not_amplified():
    assert recency_decay(-5 * DAY, 14 * DAY) == 1.0


def test_recency_decay_rejects_a_non_positive_half_life():
    with pytest.raises(ValueError, match="half_life"):
        recency_decay(1.0, 0.0)


def test_default_weights_order_event_types_by_commitment():
    w = DEFAULT_EVENT_WEIGHTS
    assert w[EventType.PURCHASE] > w[EventType.ADD_TO_CART] > w[EventType.LIKE] > w[EventType.CLICK] > w[EventType.VIEW]
    assert w[EventType.DISLIKE] > w[EventType.SKIP] > 0


def test_item_weights_follow_type_weights_and_negatives_are_negative():
    events = [event(t.value, t) for t in EventType]
    weights = net_item_weights(events, NOW, ProfileConfig())
    positive_order = ["purchase", "add_to_cart", "like", "click", "view"]
    assert sorted(positive_order, key=lambda item: -weights[item]) == positive_order
    assert weights["dislike"] == -3.0
    assert weights["skip"] == -0.5
    assert weights["purchase"] == 5.0


def test_events_of_one_item_are_summed_with_their_own_decay():
    events = [event("x", EventType.VIEW, days_ago=d) for d in (0, 0, 14)] + [event("x", EventType.PURCHASE, 14)]
    assert net_item_weights(events, NOW, ProfileConfig())["x"] == pytest.approx(0.3 + 0.3 + 0.15 + 2.5)


def test_event_weight_field_scales_the_type_weight():
    weights = net_item_weights([event("x", EventType.CLICK, weight=4.0)], NOW, ProfileConfig())
    assert weights["x"] == 4.0


def test_mixed_evidence_is_netted_by_weight():
    events = [
        event("bought_then_skipped", EventType.PURCHASE, 1),
        event("bought_then_skipped", EventType.SKIP, 0),
        event("clicked_then_disliked", EventType.CLICK, 1),
        event("clicked_then_disliked", EventType.DISLIKE, 0),
    ]
    weights = net_item_weights(events, NOW, ProfileConfig(half_life_days=1e9))
    assert weights["bought_then_skipped"] == pytest.approx(4.5)
    assert weights["clicked_then_disliked"] == pytest.approx(-2.0)


def test_negatives_decay_too():
    rng = np.random.default_rng(1)
    vectors = {"fresh": random_direction(rng), "old": random_direction(rng)}
    fresh = build_profile("u1", [event("fresh", EventType.DISLIKE, 0)], vectors, NOW)
    old = build_profile("u1", [event("old", EventType.DISLIKE, 14)], vectors, NOW)
    assert fresh.negatives[0].weight == 3.0
    assert old.negatives[0].weight == 1.5
    assert not fresh.interests and not old.interests


# ---------------------------------------------------------------- window, seen, unknown items


def test_only_the_last_max_events_count_but_all_items_are_seen():
    rng = np.random.default_rng(2)
    base = random_direction(rng)
    vectors = {name: vector for name, vector in zip(["old", "n1", "n2", "n3"], taste(rng, base, 4, spread=0.1))}
    events = [event("old", EventType.PURCHASE, 30)] + [event(f"n{i}", EventType.CLICK, 3 - i) for i in (1, 2, 3)]
    profile = build_profile("u1", events, vectors, NOW, ProfileConfig(max_events=3))
    kept = {item for interest in profile.interests for item in interest.item_ids}
    assert kept == {"n1", "n2", "n3"}
    assert profile.seen_item_ids == frozenset({"old", "n1", "n2", "n3"})
    assert profile.event_count == 4


def test_latest_events_keeps_the_newest_whatever_the_input_order():
    events = [event(f"i{d}", days_ago=d) for d in range(10)]
    shuffled = events[:]
    random.Random(3).shuffle(shuffled)
    window = latest_events(shuffled, 4)
    assert [e.item_id for e in window] == ["i3", "i2", "i1", "i0"]


def test_unknown_items_are_skipped_but_counted_as_seen():
    rng = np.random.default_rng(4)
    vectors = {"known": random_direction(rng), "zero": np.zeros(DIM, dtype=np.float32)}
    events = [event("known", EventType.LIKE), event("ghost", EventType.PURCHASE), event("zero", EventType.PURCHASE)]
    profile = build_profile("u1", events, vectors, NOW)
    assert [list(i.item_ids) for i in profile.interests] == [["known"]]
    assert profile.interests[0].importance == 1.0
    assert profile.seen_item_ids == frozenset({"known", "ghost", "zero"})
    assert profile.event_count == 3


def test_no_history_gives_a_cold_profile():
    profile = build_profile("u1", [], {}, NOW)
    assert profile.is_cold and not profile.negatives and profile.event_count == 0


def test_profile_rejects_events_of_another_user_and_naive_times():
    with pytest.raises(ValueError, match="another|user"):
        build_profile("u2", [event("x")], {}, NOW)
    with pytest.raises(ValueError, match="timezone"):
        build_profile("u1", [event("x")], {}, NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="weight"):
        build_profile("u1", [event("x", weight=-1.0)], {}, NOW)


def test_config_rejects_missing_event_types_and_bad_numbers():
    partial = {t: w for t, w in DEFAULT_EVENT_WEIGHTS.items() if t is not EventType.SKIP}
    with pytest.raises(ValueError, match="skip"):
        ProfileConfig(event_weights=partial)
    with pytest.raises(ValueError, match="half_life_days"):
        ProfileConfig(half_life_days=0)
    with pytest.raises(ValueError, match="max_events"):
        ProfileConfig(max_events=0)


# ---------------------------------------------------------------- clustering building blocks


def test_choose_k_grows_with_history_and_is_capped():
    assert [choose_k(n, 5, 4) for n in (0, 1, 3, 4, 7, 8, 12, 19, 20, 500)] == [0, 1, 1, 1, 1, 2, 3, 4, 5, 5]
    assert choose_k(500, 3, 4) == 3


def test_seeds_start_from_the_heaviest_item_and_then_go_far():
    vectors = np.eye(3)[[0, 0, 1, 2]].astype(np.float64)
    vectors[1] = unit(np.array([1.0, 0.1, 0.0]))
    weights = np.array([1.0, 2.0, 1.0, 1.0])
    seeds = farthest_point_seeds(vectors, weights, 3)
    assert seeds[0] == 1
    assert set(seeds[1:].tolist()) == {2, 3}


def test_seeds_stop_when_only_duplicates_remain():
    vectors = np.tile(np.eye(4)[0], (5, 1))
    assert len(farthest_point_seeds(vectors, np.ones(5), 3)) == 1


def test_weighted_kmeans_pulls_the_centroid_towards_heavier_items():
    left, right = unit(np.array([1.0, 0.2, 0.0])), unit(np.array([1.0, -0.2, 0.0]))
    far = np.array([0.0, 0.0, 1.0])
    vectors = np.stack([left, right, far])
    labels, centroids = weighted_spherical_kmeans(vectors, np.array([3.0, 1.0, 1.0]), vectors[[0, 2]])
    assert labels.tolist() == [0, 0, 1]
    assert centroids[0] @ left > centroids[0] @ right
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0)


def test_leave_one_out_radius_sees_halves_of_one_taste_as_one():
    rng = np.random.default_rng(5)
    base = random_direction(rng)
    members = np.stack(taste(rng, base, 16)).astype(np.float64)
    weights = np.ones(16)
    half_a, half_b = members[:8], members[8:]
    centre_a, centre_b = unit(half_a.sum(0)), unit(half_b.sum(0))
    assert leave_one_out_radius(half_a[:1], weights[:1]) is None
    assert fit_ratio(half_a, weights[:8], centre_a, half_b, weights[8:], centre_b) < 1.5
    other = np.stack(taste(rng, direction_at(base, 0.2, rng), 8)).astype(np.float64)
    assert fit_ratio(half_a, weights[:8], centre_a, other, weights[:8], unit(other.sum(0))) > 3.0


def test_clustering_splits_distinct_tastes_and_keeps_one_taste_whole():
    rng = np.random.default_rng(6)
    base = random_direction(rng)
    one = np.stack(taste(rng, base, 40)).astype(np.float64)
    labels, centroids = cluster_unit_vectors(one, np.ones(40), k=5, merge_cosine=0.9, merge_fit_ratio=2.0)
    assert len(centroids) == 1 and set(labels.tolist()) == {0}
    two = np.concatenate([one[:20], np.stack(taste(rng, direction_at(base, 0.2, rng), 20))])
    labels, centroids = cluster_unit_vectors(two, np.ones(40), k=5, merge_cosine=0.9, merge_fit_ratio=2.0)
    assert len(centroids) == 2
    assert len(set(labels[:20].tolist())) == 1 and len(set(labels[20:].tolist())) == 1
    assert labels[0] != labels[20]


# ---------------------------------------------------------------- profiles


def test_one_taste_gives_one_interest_even_when_k_allows_five():
    rng = np.random.default_rng(7)
    types = [EventType.VIEW, EventType.CLICK, EventType.LIKE, EventType.PURCHASE]
    vectors = {f"i{j}": v for j, v in enumerate(taste(rng, random_direction(rng), 40))}
    events = [event(f"i{j}", types[j % 4], days_ago=j % 9) for j in range(40)]
    assert choose_k(40, ProfileConfig().max_interests, ProfileConfig().min_events_per_interest) == 5
    profile = build_profile("u1", events, vectors, NOW)
    assert len(profile.interests) == 1
    assert profile.interests[0].importance == pytest.approx(1.0)
    assert len(profile.interests[0].item_ids) == 40


def test_two_tastes_weighted_70_30_give_two_interests_with_those_importances():
    base_a, base_b, vectors, events = two_taste_history()
    profile = build_profile("u1", events, vectors, NOW)
    assert len(profile.interests) == 2
    major, minor = profile.interests
    assert major.importance == pytest.approx(0.7)
    assert minor.importance == pytest.approx(0.3)
    assert major.weight == pytest.approx(35.0) and minor.weight == pytest.approx(15.0)
    assert set(major.item_ids) == {f"a{i}" for i in range(7)}
    assert set(minor.item_ids) == {f"b{i}" for i in range(15)}
    assert float(major.centroid @ base_a) > 0.9 and float(minor.centroid @ base_b) > 0.9


def tight_tastes_history(n_tastes: int, items_per_taste: int, seed: int):
    rng = np.random.default_rng(seed)
    vectors, events = {}, []
    for t in range(n_tastes):
        for i, vector in enumerate(taste(rng, random_direction(rng), items_per_taste, spread=0.2)):
            vectors[f"t{t}_{i}"] = vector
            events.append(event(f"t{t}_{i}", EventType.LIKE))
    return vectors, events


def test_interest_count_is_capped_by_max_interests():
    vectors, events = tight_tastes_history(8, 3, seed=8)
    assert len(build_profile("u1", events, vectors, NOW).interests) == 5


def test_interest_count_grows_with_history():
    # Three clearly distinct tastes, but 6 items support only k = 6 // 4 = 1.
    vectors, events = tight_tastes_history(3, 2, seed=12)
    assert len(build_profile("u1", events, vectors, NOW).interests) == 1
    vectors, events = tight_tastes_history(3, 4, seed=12)
    assert len(build_profile("u1", events, vectors, NOW).interests) == 3


def test_centroids_are_unit_float32_and_importances_sum_to_one_in_order():
    _, _, vectors, events = two_taste_history(seed=9)
    profile = build_profile("u1", events, vectors, NOW)
    for interest in profile.interests:
        assert interest.centroid.dtype == np.float32
        assert float(np.linalg.norm(interest.centroid)) == pytest.approx(1.0, abs=1e-6)
    importances = [interest.importance for interest in profile.interests]
    assert sum(importances) == pytest.approx(1.0)
    assert importances == sorted(importances, reverse=True)


def test_item_ids_are_ordered_by_contribution_not_by_id():
    direction = unit(np.arange(1, DIM + 1, dtype=np.float64))
    vectors = {name: direction for name in ("a_click", "b_purchase", "c_cart")}
    events = [
        event("a_click", EventType.CLICK),
        event("b_purchase", EventType.PURCHASE),
        event("c_cart", EventType.ADD_TO_CART),
    ]
    profile = build_profile("u1", events, vectors, NOW)
    assert list(profile.interests[0].item_ids) == ["b_purchase", "c_cart", "a_click"]


def test_negative_items_form_their_own_clusters():
    rng = np.random.default_rng(10)
    liked, disliked = random_direction(rng), random_direction(rng)
    vectors = {}
    events = []
    for i, v in enumerate(taste(rng, liked, 6)):
        vectors[f"l{i}"] = v
        events.append(event(f"l{i}", EventType.LIKE))
    for i, v in enumerate(taste(rng, disliked, 4)):
        vectors[f"d{i}"] = v
        events.append(event(f"d{i}", EventType.DISLIKE))
    profile = build_profile("u1", events, vectors, NOW)
    assert [set(n.item_ids) for n in profile.negatives] == [{f"d{i}" for i in range(4)}]
    assert profile.negatives[0].importance == pytest.approx(1.0)
    assert float(profile.negatives[0].centroid @ disliked) > 0.9
    assert all(not item.startswith("d") for i in profile.interests for item in i.item_ids)


def test_profiles_are_bit_identical_for_shuffled_input():
    _, _, vectors, events = two_taste_history(seed=11)
    events = [replace(e, timestamp=e.timestamp - timedelta(hours=i)) for i, e in enumerate(events)]
    events.append(event("a0", EventType.DISLIKE, days_ago=0.5))
    reference = build_profile("u1", events, vectors, NOW)
    for seed in range(3):
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        other = build_profile("u1", shuffled, dict(reversed(list(vectors.items()))), NOW)
        assert len(other.interests) == len(reference.interests)
        for mine, theirs in zip(reference.interests + reference.negatives, other.interests + other.negatives):
            assert mine.centroid.tobytes() == theirs.centroid.tobytes()
            assert (mine.importance, mine.weight, tuple(mine.item_ids)) == (
                theirs.importance,
                theirs.weight,
                tuple(theirs.item_ids),
            )


def test_a_light_but_distinct_taste_keeps_its_own_interest():
    """Often viewed, never bought: 8% of the weight, yet a taste of its own,
    not to be folded into a heavier neighbour (it was, with seeds = k)."""
    rng = np.random.default_rng(42)
    directions = [random_direction(rng) for _ in range(3)]
    vectors, weights, truth = [], [], []
    for label, (direction, weight) in enumerate(zip(directions, (4.0, 13.0, 33.0))):
        for row in taste(rng, direction, 5, spread=0.6):
            vectors.append(row)
            weights.append(weight)
            truth.append(label)
    labels, centroids = cluster_unit_vectors(np.stack(vectors).astype(np.float64), np.asarray(weights), k=3,
                                             merge_cosine=0.9, merge_fit_ratio=2.0)
    assert len(centroids) == 3
    for label in range(3):
        members = {int(labels[i]) for i in range(len(truth)) if truth[i] == label}
        assert len(members) == 1


def test_strong_single_items_join_their_taste_so_the_profile_follows_the_weight():
    """30 views of one taste (weight 9) and 4 purchases of another (20): the purchases
    were four one-item interests beside the views, which looked like the main taste."""
    rng = np.random.default_rng(5)
    viewed, bought = random_direction(rng), random_direction(rng)
    vectors, events = {}, []
    for i, vector in enumerate(taste(rng, viewed, 25)):
        vectors[f"v{i}"] = vector
    for i, vector in enumerate(taste(rng, bought, 4)):
        vectors[f"p{i}"] = vector
        events.append(event(f"p{i}", EventType.PURCHASE))
    events += [event(f"v{n % 25}", EventType.VIEW, days_ago=0) for n in range(30)]

    profile = build_profile("u1", events, vectors, NOW)
    assert [sorted({item[0] for item in interest.item_ids}) for interest in profile.interests] == [["p"], ["v"]]
    assert profile.interests[0].importance == pytest.approx(20 / 29)


def test_a_strong_single_item_of_a_distinct_taste_keeps_its_own_interest():
    rng = np.random.default_rng(6)
    main, other = random_direction(rng), random_direction(rng)
    vectors = {f"m{i}": vector for i, vector in enumerate(taste(rng, main, 12))}
    vectors["lone"] = other.astype(np.float32)
    events = [event(f"m{i}", EventType.CLICK) for i in range(12)] + [event("lone", EventType.PURCHASE)]
    profile = build_profile("u1", events, vectors, NOW)
    assert sorted(tuple(interest.item_ids) == ("lone",) for interest in profile.interests) == [False, True]
