"""Events -> weighted, time-decayed, clustered interest centroids (DESIGN §5, steps 1, 2 and 4).

A history becomes several interests rather than one average: the mean of "red
dresses" and "hiking boots" is a vector near neither, so a query from it finds
neither (PinnerSage, ComiRec). Negative evidence (dislike, skip) is clustered
the same way, so ranking can push candidates away from what the user rejected.

Pure numpy and deterministic: the same events give bit-identical profiles in
whatever order they arrive, because events and items are put in a canonical
order before any floating-point sum is taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np

from recommender.types import Event, EventType, Interest, UserProfile

SECONDS_PER_DAY = 86_400.0

# Magnitudes only; EventType.is_negative gives the sign. A purchase costs the
# user money, a cart add intent, a like only a tap; a view is mostly browsing
# noise, so it needs several to matter. A dislike is explicit and strong, a skip
# is cheap and ambiguous (not now / not seen properly), so it counts little.
DEFAULT_EVENT_WEIGHTS: Mapping[EventType, float] = MappingProxyType(
    {
        EventType.PURCHASE: 5.0,
        EventType.ADD_TO_CART: 3.0,
        EventType.LIKE: 2.5,
        EventType.CLICK: 1.0,
        EventType.VIEW: 0.3,
        EventType.DISLIKE: 3.0,
        EventType.SKIP: 0.5,
    }
)

# Below this norm a weighted vector sum carries no direction (antipodal items
# cancelling out); a centroid from it would be numerical noise.
_MIN_DIRECTION_NORM = 1e-12
# Below this share of |T|^2, |T - w x|^2 computed by expansion has lost too many digits
# to cancellation (about 1e-16 / this, relative); such rows are computed directly.
_CANCELLATION = 1e-4
# How many more seeds than interests clustering starts from.
OVERSEED = 3
# Clusters lighter than this share of the weight are folded into a neighbour.
MIN_INTEREST_SHARE = 0.05


@dataclass(frozen=True)
class ProfileConfig:
    """How events become interests.

    `min_events_per_interest` counts distinct items (clustering runs on items,
    after all events of an item are summed): k <= n_items // it.

    `merge_cosine`: two clusters whose centroids are at least this close always
    merge. At 0.9 the merged centroid stays within cosine sqrt((1 + 0.9) / 2) =
    0.975 of both, so one nearest-neighbour query from it retrieves what the two
    would have; different products of one category sit around 0.7-0.85 in CLIP
    space, so a lower fixed bar would start merging tastes the user keeps apart.

    `merge_fit_ratio`: below that fixed bar, clusters also merge relative to
    their own spread (see `fit_ratio`), because k-means with k > 1 always cuts
    one broad taste into pieces. Halves of one taste score about 1; on synthetic
    tastes in 16-128 dimensions, distinct tastes score 2.5 and more, and 2.0 kept
    one-taste histories at one interest in every case tried while still
    separating a 10% taste whose items sit at cosine 0.3 from the main one.
    """

    event_weights: Mapping[EventType, float] = field(default_factory=lambda: DEFAULT_EVENT_WEIGHTS)
    half_life_days: float = 14.0
    max_events: int = 500
    max_interests: int = 5
    max_negative_interests: int = 3
    min_events_per_interest: int = 4
    merge_cosine: float = 0.9
    merge_fit_ratio: float = 2.0
    max_kmeans_iterations: int = 50

    def __post_init__(self) -> None:
        missing = sorted(t.value for t in EventType if t not in self.event_weights)
        if missing:
            raise ValueError(f"event_weights has no weight for event types {missing}")
        for event_type, weight in self.event_weights.items():
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(
                    f"event_weights[{EventType(event_type).value}] must be a finite number >= 0 "
                    f"(the sign comes from the event type), got {weight}"
                )
        if not (math.isfinite(self.half_life_days) and self.half_life_days > 0):
            raise ValueError(f"half_life_days must be a finite number > 0, got {self.half_life_days}")
        _require_at_least("max_events", self.max_events, 1)
        _require_at_least("max_interests", self.max_interests, 1)
        _require_at_least("max_negative_interests", self.max_negative_interests, 0)
        _require_at_least("min_events_per_interest", self.min_events_per_interest, 1)
        _require_at_least("max_kmeans_iterations", self.max_kmeans_iterations, 1)
        if not -1.0 <= self.merge_cosine <= 1.0:
            raise ValueError(f"merge_cosine must lie in [-1, 1], got {self.merge_cosine}")
        if not self.merge_fit_ratio >= 0:
            raise ValueError(f"merge_fit_ratio must be >= 0, got {self.merge_fit_ratio}")
        # A caller's dict could be mutated after the config is built; the config
        # is shared by every profile build, so it keeps a read-only copy.
        object.__setattr__(self, "event_weights", MappingProxyType(dict(self.event_weights)))

    @property
    def half_life_seconds(self) -> float:
        return self.half_life_days * SECONDS_PER_DAY


def _require_at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


# ---------------------------------------------------------------- weights


def recency_decay(age_seconds: float, half_life_seconds: float) -> float:
    """exp(-ln2 * age / half_life), written as 0.5 ** (age / half_life) so one
    half-life gives exactly 0.5. Events from the future (client clock skew)
    count as fresh rather than being amplified above 1."""
    if not (math.isfinite(half_life_seconds) and half_life_seconds > 0):
        raise ValueError(f"half_life_seconds must be a finite number > 0, got {half_life_seconds}")
    return 0.5 ** (max(age_seconds, 0.0) / half_life_seconds)


def event_weight(event: Event, now: datetime, config: ProfileConfig) -> float:
    """Signed weight of one event: type weight x event.weight x recency decay,
    negative for dislike and skip."""
    event_type = EventType(event.event_type)
    age = (now - event.timestamp).total_seconds()
    magnitude = config.event_weights[event_type] * event.weight * recency_decay(age, config.half_life_seconds)
    return -magnitude if event_type.is_negative else magnitude


def latest_events(events: Sequence[Event], max_events: int) -> list[Event]:
    """The last `max_events` events, oldest first, in a canonical order.

    Ties on timestamp are broken by the event's other fields, so the window and
    every later floating-point sum are the same whatever order the events came in.
    """
    return sorted(events, key=_canonical_event_key)[-max_events:] if max_events > 0 else []


def _canonical_event_key(event: Event) -> tuple:
    return (event.timestamp, event.item_id, EventType(event.event_type).value, event.weight, event.user_id)


def net_item_weights(events: Sequence[Event], now: datetime, config: ProfileConfig) -> dict[str, float]:
    """Signed, decayed evidence per item: > 0 liked, < 0 rejected, 0 neutral.

    An item with both kinds of events is netted by decayed weight rather than
    decided by its latest event: netting is independent of event order, lets a
    cheap skip after a purchase leave the purchase standing (5 - 0.5) while a
    dislike after a click flips the item to negative (1 - 3), and recency still
    matters because older evidence has decayed by the time it is netted.
    """
    totals: dict[str, float] = {}
    for event in sorted(events, key=_canonical_event_key):
        totals[event.item_id] = totals.get(event.item_id, 0.0) + event_weight(event, now, config)
    return totals


# ---------------------------------------------------------------- clustering


def choose_k(n_items: int, max_k: int, min_items_per_cluster: int) -> int:
    """How many clusters a history of `n_items` distinct items supports.

    Grows with history (one cluster per `min_items_per_cluster` items, so a
    cluster is never fitted to one or two stray items) and is capped at `max_k`;
    any non-empty history gets at least one.
    """
    if n_items < 0 or max_k < 0 or min_items_per_cluster < 1:
        raise ValueError(
            f"need n_items >= 0, max_k >= 0, min_items_per_cluster >= 1; "
            f"got {n_items}, {max_k}, {min_items_per_cluster}"
        )
    if n_items == 0 or max_k == 0:
        return 0
    return max(1, min(max_k, n_items // min_items_per_cluster))


def farthest_point_seeds(vectors: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Indices of up to k initial centroids: the heaviest item first, then each
    time the item with the largest weight x cosine distance to the seeds so far.

    Weighting the distance keeps a single far-away view from becoming a seed
    ahead of a heavily purchased region; stopping when nothing is left at any
    distance avoids duplicate seeds. Ties go to the lowest index, so the result
    is deterministic.
    """
    if k <= 0 or len(vectors) == 0:
        return np.empty(0, dtype=np.intp)
    seeds = [int(np.argmax(weights))]
    closest = vectors @ vectors[seeds[0]]
    while len(seeds) < k:
        spread = weights * (1.0 - closest)
        spread[seeds] = -np.inf
        best = int(np.argmax(spread))
        if not spread[best] > 0:
            break
        seeds.append(best)
        closest = np.maximum(closest, vectors @ vectors[best])
    return np.asarray(seeds, dtype=np.intp)


def weighted_spherical_kmeans(
    vectors: np.ndarray, weights: np.ndarray, initial_centroids: np.ndarray, max_iterations: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted k-means on the unit sphere: assign each unit vector to the most
    similar centroid, move each centroid to the normalised weighted sum of its
    members, until assignments stop changing.

    This maximises sum(w_i * cos(x_i, c(x_i))), the same objective the interest
    queries are scored by. Clusters left empty are dropped, so the result may
    have fewer centroids than it started with; labels are 0..k'-1.
    Returns (labels, unit centroids).
    """
    fit = _kmeans(vectors, weights, np.asarray(initial_centroids, dtype=np.float64), max_iterations)
    return fit.labels, fit.centroids


@dataclass(frozen=True)
class _Clusters:
    """One clustering: labels 0..m-1, each cluster's weighted vector sum, weight and unit centroid."""

    labels: np.ndarray
    totals: np.ndarray
    masses: np.ndarray
    centroids: np.ndarray


def _kmeans(vectors: np.ndarray, weights: np.ndarray, centroids: np.ndarray, max_iterations: int) -> _Clusters:
    labels = np.full(len(vectors), -1, dtype=np.intp)
    fit = None
    for _ in range(max_iterations):
        new_labels = np.argmax(vectors @ centroids.T, axis=1)
        if fit is not None and np.array_equal(new_labels, labels):
            break
        fit = _recentre(vectors, weights, new_labels, len(centroids))
        labels, centroids = fit.labels, fit.centroids
    assert fit is not None, "max_iterations >= 1"
    return fit


def _recentre(vectors: np.ndarray, weights: np.ndarray, labels: np.ndarray, k: int) -> _Clusters:
    """Centroids of the non-empty clusters, with labels renumbered to match.

    All clusters' weighted sums come from one matrix product (weights spread
    into one column per cluster) rather than one product per cluster: merge
    rounds call this a few hundred times per profile.
    """
    occupied = np.unique(labels)
    renumber = np.full(k, -1, dtype=np.intp)
    renumber[occupied] = np.arange(len(occupied))
    labels = renumber[labels]
    spread = np.zeros((len(occupied), len(vectors)))
    spread[labels, np.arange(len(vectors))] = weights
    totals = spread @ vectors
    norms = np.linalg.norm(totals, axis=1)
    centroids = totals / np.where(norms < _MIN_DIRECTION_NORM, 1.0, norms)[:, None]
    for c in np.flatnonzero(norms < _MIN_DIRECTION_NORM):
        centroids[c] = _cluster_direction(vectors, weights, labels == c)
    return _Clusters(labels, totals, np.bincount(labels, weights=weights, minlength=len(occupied)), centroids)


def _cluster_direction(vectors: np.ndarray, weights: np.ndarray, members: np.ndarray) -> np.ndarray:
    weighted_sum = weights[members] @ vectors[members]
    norm = np.linalg.norm(weighted_sum)
    if norm < _MIN_DIRECTION_NORM:
        # Members cancel out; the heaviest one at least is a real taste.
        return vectors[members][int(np.argmax(weights[members]))]
    return weighted_sum / norm


def leave_one_out_radius(vectors: np.ndarray, weights: np.ndarray) -> float | None:
    """How far a cluster's members lie from its centre: the weighted mean of
    1 - cos(x_i, centroid of the other members), or None under two members.

    Leaving each member out of its own centroid matters: with few members in a
    high-dimensional space each member pulls the centroid towards itself, so
    in-sample distances make any random half of a taste look tighter than it is.
    """
    if len(vectors) < 2:
        return None
    total = weights @ vectors
    others = total[None, :] - weights[:, None] * vectors
    lengths = np.linalg.norm(others, axis=1)
    cosines = np.divide(vectors @ total - weights, lengths, out=np.zeros_like(lengths), where=lengths > 0)
    return float(weights @ (1.0 - cosines) / weights.sum())


def mean_distance(vectors: np.ndarray, weights: np.ndarray, centroid: np.ndarray) -> float:
    """Weighted mean of 1 - cos(x_i, centroid)."""
    return float(weights @ (1.0 - vectors @ centroid) / weights.sum())


def fit_ratio(
    members_a: np.ndarray, weights_a: np.ndarray, centroid_a: np.ndarray,
    members_b: np.ndarray, weights_b: np.ndarray, centroid_b: np.ndarray,
    fallback_radius: float | None = None,
) -> float:
    """How many times further one cluster's members lie from the other's centre
    than that cluster's own members do (the smaller of the two directions).

    About 1 means the two are halves of one taste, or a stray item on its
    edge; distinct tastes score several times that. A one-item cluster has no
    radius of its own; it is measured with `fallback_radius` (the user's
    typical taste radius), or not at all when that is None (inf if neither
    side can be measured).
    """
    ratios = [np.inf]
    for inside, inside_weights, centre, outside, outside_weights in (
        (members_a, weights_a, centroid_a, members_b, weights_b),
        (members_b, weights_b, centroid_b, members_a, weights_a),
    ):
        radius = leave_one_out_radius(inside, inside_weights)
        if radius is None:
            radius = fallback_radius
        if radius is None:
            continue
        distance = mean_distance(outside, outside_weights, centre)
        ratios.append(distance / radius if radius > 0 else (0.0 if distance <= 0 else np.inf))
    return min(ratios)


def should_merge(centroid_cosine: float, ratio: float, merge_cosine: float, merge_fit_ratio: float) -> bool:
    """Two clusters are one interest when one query covers both (centroids at
    least `merge_cosine` alike) or when one's members sit about as close to the
    other's centre as that cluster's own members do (`fit_ratio` at most
    `merge_fit_ratio`): k-means cut a broad taste in two, or seeded a cluster
    with an item on a taste's edge."""
    return centroid_cosine >= merge_cosine or ratio <= merge_fit_ratio


def cluster_unit_vectors(
    vectors: np.ndarray,
    weights: np.ndarray,
    k: int,
    merge_cosine: float,
    merge_fit_ratio: float,
    max_iterations: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic weighted clustering of unit vectors into at most k clusters.

    Over-cluster, then merge: farthest-point seeds (up to OVERSEED x k) and
    weighted spherical k-means, then repeatedly merge the pair that is most
    clearly one taste (`should_merge`), and, while more than k clusters remain,
    the pair whose merge costs the least weighted distortion (Ward's criterion,
    as in PinnerSage). Seeding only k lets a light but distinct taste (often
    viewed, rarely bought) lose every seed to a heavy taste's spread, and
    k-means then folds it into a neighbour for good; over-seeding gives it a
    cluster, and Ward's cost folds stray light items, not real tastes, first. Each merge re-runs k-means from
    the merged centroids. Returns (labels 0..k'-1, unit centroids).
    """
    if len(vectors) == 0 or k <= 0:
        return np.empty(0, dtype=np.intp), np.empty((0, vectors.shape[-1]))
    seeds = farthest_point_seeds(vectors, weights, min(len(vectors), OVERSEED * k))
    fit = _kmeans(vectors, weights, vectors[seeds], max_iterations)
    while len(fit.centroids) > 1:
        pair = _most_mergeable_pair(vectors, weights, fit, merge_cosine, merge_fit_ratio)
        if pair is None:
            pair = _forced_pair(fit.masses, fit.centroids, k)
        if pair is None:
            break
        merged = _merge_centroids(vectors, weights, fit.labels, fit.centroids, pair)
        fit = _kmeans(vectors, weights, merged, max_iterations)
    return fit.labels, fit.centroids


def _forced_pair(mass: np.ndarray, centroids: np.ndarray, k: int) -> tuple[int, int] | None:
    """A merge the count or a negligible cluster demands, even though no pair looks like one taste.

    Over k clusters: the pair cheapest by Ward's cost. A cluster under
    MIN_INTEREST_SHARE of the weight (a stray item or two on a taste's edge) is
    no interest to spend a query on: it joins its Ward-cheapest partner.
    """
    pairs = [(a, b) for a in range(len(centroids)) for b in range(a + 1, len(centroids))]
    if len(centroids) <= k:
        negligible = mass / mass.sum() < MIN_INTEREST_SHARE
        pairs = [(a, b) for a, b in pairs if negligible[a] or negligible[b]]
    if not pairs:
        return None

    def ward_cost(pair: tuple[int, int]) -> float:
        a, b = pair
        return mass[a] * mass[b] / (mass[a] + mass[b]) * float(np.sum((centroids[a] - centroids[b]) ** 2))

    return min(pairs, key=ward_cost)


def _most_mergeable_pair(
    vectors: np.ndarray, weights: np.ndarray, fit: _Clusters, merge_cosine: float, merge_fit_ratio: float
) -> tuple[int, int] | None:
    """The pair `should_merge` accepts that is most clearly one taste: pairs merged for
    closeness alone rank by closeness, ahead of any by fit; ties go to the first pair
    (a, b), a < b, in order.

    `fit_ratio` and `typical_radius` for every pair at once: a cluster's radius does
    not depend on its partner, and the weighted mean distance of b's members to a's
    centre is 1 - (b's weighted sum . a's centroid) / b's weight, so one product of the
    clusters' sums with the centroids replaces a pass over the members per pair.
    """
    radii = _leave_one_out_radii(vectors, weights, fit)
    has_radius = ~np.isnan(radii)
    typical = float(np.dot(radii[has_radius], fit.masses[has_radius]) / fit.masses[has_radius].sum()) \
        if has_radius.any() else np.nan
    radius = np.where(has_radius, radii, typical)  # fallback_radius for one-item clusters
    # distance[a, b]: b's members from a's centre (a on the inside).
    distance = 1.0 - (fit.centroids @ fit.totals.T) / fit.masses[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(radius[:, None] > 0, distance / radius[:, None], np.where(distance <= 0, 0.0, np.inf))
    ratio = np.where(np.isnan(radius)[:, None], np.inf, ratio)
    ratio = np.minimum(ratio, ratio.T)
    similarity = fit.centroids @ fit.centroids.T
    close = similarity >= merge_cosine
    key = np.where(close, -1.0 - similarity, ratio)
    candidates = (close | (ratio <= merge_fit_ratio)) & (key < np.inf)
    candidates &= np.triu(np.ones_like(candidates), k=1)
    if not candidates.any():
        return None
    best = int(np.argmin(np.where(candidates, key, np.inf)))
    a, b = divmod(best, len(fit.centroids))
    return a, b


def _leave_one_out_radii(vectors: np.ndarray, weights: np.ndarray, fit: _Clusters) -> np.ndarray:
    """`leave_one_out_radius` of every cluster at once; NaN under two members.

    |sum of the others|^2 = |T|^2 - 2 w x.T + w^2 |x|^2 needs only each member's dot with its
    cluster's sum (one n x m product) instead of an n x d difference; where that subtraction
    cancels (a member carrying nearly all of its cluster's weight, so the others are tiny
    beside it) the member's length is taken directly, as `leave_one_out_radius` does.
    """
    rows = np.arange(len(vectors))
    along_total = (vectors @ fit.totals.T)[rows, fit.labels]
    total_sq = np.einsum("ij,ij->i", fit.totals, fit.totals)[fit.labels]
    squared = total_sq - 2.0 * weights * along_total + weights * weights * np.einsum("ij,ij->i", vectors, vectors)
    lengths = np.sqrt(np.maximum(squared, 0.0))
    cancelled = np.flatnonzero(squared < _CANCELLATION * total_sq)
    if len(cancelled):
        lengths[cancelled] = np.linalg.norm(
            fit.totals[fit.labels[cancelled]] - weights[cancelled, None] * vectors[cancelled], axis=1)
    along = along_total - weights
    cosines = np.divide(along, lengths, out=np.zeros_like(lengths), where=lengths > 0)
    m = len(fit.centroids)
    spread = np.bincount(fit.labels, weights=weights * (1.0 - cosines), minlength=m)
    sizes = np.bincount(fit.labels, minlength=m)
    return np.where(sizes >= 2, spread / fit.masses, np.nan)


def typical_radius(vectors: np.ndarray, weights: np.ndarray, members: Sequence[np.ndarray]) -> float | None:
    """The weight-averaged radius of the clusters that have one (two members or more).

    Strong single items (a few purchases, each far heavier than a view) seed
    one-item clusters that have no radius to judge a merge by; without one, four
    purchases of one taste stayed four interests beside one of thirty views,
    and the views looked like the main taste though the purchases carried 0.68
    of the weight. Measured against how spread this user's other tastes are,
    such items join each other, or the taste they sit in, like any cluster.
    """
    radii, masses = [], []
    for member in members:
        radius = leave_one_out_radius(vectors[member], weights[member])
        if radius is not None:
            radii.append(radius)
            masses.append(float(weights[member].sum()))
    if not radii:
        return None
    return float(np.dot(radii, masses) / sum(masses))


def _merge_centroids(
    vectors: np.ndarray, weights: np.ndarray, labels: np.ndarray, centroids: np.ndarray, pair: tuple[int, int]
) -> np.ndarray:
    a, b = pair
    merged = _cluster_direction(vectors, weights, (labels == a) | (labels == b))
    kept = [centroids[c] for c in range(len(centroids)) if c not in pair]
    return np.stack(kept + [merged])


# ---------------------------------------------------------------- profile


def build_profile(
    user_id: str,
    events: Sequence[Event],
    item_vectors: Mapping[str, np.ndarray],
    now: datetime,
    config: ProfileConfig = ProfileConfig(),
    extra_weights: Mapping[str, float] | None = None,
) -> UserProfile:
    """A user's interests and negatives from their events.

    Only the last `config.max_events` events are weighed; `seen_item_ids` holds
    every item of every event given, so recommendations never repeat one even
    when it fell out of the window or has no vector (deleted from the catalog).
    `extra_weights` are signed, already-decayed weights of more items (a
    request's examples), added to what the events give before clustering; their
    vectors come in `item_vectors` like the history's.
    """
    _check_inputs(user_id, events, now)
    net = dict(net_item_weights(latest_events(events, config.max_events), now, config))
    for item_id, weight in (extra_weights or {}).items():
        net[item_id] = net.get(item_id, 0.0) + weight
    liked = {item_id: w for item_id, w in net.items() if w > 0}
    rejected = {item_id: -w for item_id, w in net.items() if w < 0}
    return UserProfile(
        user_id=user_id,
        interests=tuple(_interests(liked, item_vectors, config.max_interests, config)),
        negatives=tuple(_interests(rejected, item_vectors, config.max_negative_interests, config)),
        seen_item_ids=frozenset(event.item_id for event in events),
        event_count=len(events),
    )


def _check_inputs(user_id: str, events: Sequence[Event], now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (event timestamps are)")
    for event in events:
        if event.user_id != user_id:
            raise ValueError(f"event for user {event.user_id!r} given while building the profile of {user_id!r}")
        if event.timestamp.tzinfo is None:
            raise ValueError(
                f"event on item {event.item_id!r} has a naive timestamp; timestamps must be timezone-aware"
            )
        if not (math.isfinite(event.weight) and event.weight >= 0):
            raise ValueError(
                f"event on item {event.item_id!r} has weight {event.weight}; weights must be finite and >= 0 "
                "(use a dislike or skip event for negative evidence)"
            )


def _interests(
    item_weights: Mapping[str, float], item_vectors: Mapping[str, np.ndarray], max_k: int, config: ProfileConfig
) -> list[Interest]:
    item_ids, vectors = _unit_vectors(sorted(item_weights), item_vectors)
    if not item_ids:
        return []
    weights = np.array([item_weights[item_id] for item_id in item_ids], dtype=np.float64)
    k = choose_k(len(item_ids), max_k, config.min_events_per_interest)
    labels, _ = cluster_unit_vectors(
        vectors, weights, k, config.merge_cosine, config.merge_fit_ratio, config.max_kmeans_iterations
    )
    total = float(weights.sum())
    interests = [
        _interest(item_ids, vectors, weights, np.flatnonzero(labels == c), total) for c in range(int(labels.max()) + 1)
    ]
    return sorted(interests, key=lambda interest: (-interest.weight, interest.item_ids[0]))


def _unit_vectors(item_ids: Sequence[str], item_vectors: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """The items that have a usable vector, and those vectors normalised (float64).

    Items without one (unknown, deleted, or a zero / non-finite vector) cannot
    be placed in the space, so they are left out rather than failing the user.
    """
    kept_ids: list[str] = []
    rows: list[np.ndarray] = []
    for item_id in item_ids:
        raw = item_vectors.get(item_id)
        if raw is None:
            continue
        vector = np.asarray(raw, dtype=np.float64)
        if vector.ndim != 1 or (rows and vector.shape != rows[0].shape):
            raise ValueError(
                f"vector of item {item_id!r} has shape {vector.shape}; all item vectors must be 1-D of one length"
            )
        norm = np.linalg.norm(vector)
        if not (math.isfinite(norm) and norm > 0):
            continue
        kept_ids.append(item_id)
        rows.append(vector / norm)
    return kept_ids, (np.stack(rows) if rows else np.empty((0, 0)))


def _interest(
    item_ids: Sequence[str], vectors: np.ndarray, weights: np.ndarray, members: np.ndarray, total_weight: float
) -> Interest:
    centroid = _cluster_direction(vectors, weights, np.isin(np.arange(len(vectors)), members))
    # An item's contribution is its projection onto the centroid, w * cos: these
    # sum to the length of the weighted sum, so they say which items the
    # centroid is really made of (and explain a recommendation by them).
    contribution = weights[members] * (vectors[members] @ centroid)
    order = sorted(range(len(members)), key=lambda i: (-contribution[i], item_ids[int(members[i])]))
    weight = float(weights[members].sum())
    return Interest(
        centroid=(centroid / np.linalg.norm(centroid)).astype(np.float32),
        importance=weight / total_weight,
        weight=weight,
        item_ids=tuple(item_ids[members[i]] for i in order),
    )
