"""Offline evaluation of recommendation strategies on simulated users.

Simulated users have a few latent tastes -- attribute combinations such as
(colour, shape) -- that the recommender never sees: it only gets their events,
as a real one would. Because the tastes are known, the evaluation can ask
questions a logged dataset cannot answer: did a list cover every taste, and
did it show items of a taste the user rejected?

The split is one global point in time (Ji et al., "A Critical Study on Data
Leakage in Recommender System Offline Evaluation", 2023): everything before it
is training history, the new items users engaged with afterwards are the test
set. A per-user split would let one user's future leak into another's
recommendations through shared signals such as popularity, and the engine's
clock -- which its recency decay is measured from -- could not be one value.

Pure numpy: no model, no vector store. Recommendations come in through a
callable, so the same code measures an in-process engine or a remote one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np

from recommender.types import Event, EventType

# -- simulation ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Taste:
    """A latent taste: every item whose attributes carry all these values."""

    values: tuple[tuple[str, Any], ...]  # sorted (attribute, value) pairs

    @classmethod
    def of(cls, **values: Any) -> "Taste":
        return cls(tuple(sorted(values.items())))

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        return all(attributes.get(name) == value for name, value in self.values)

    @property
    def label(self) -> str:
        return " ".join(str(value) for _, value in self.values)


@dataclass(frozen=True)
class SimulationConfig:
    """How simulated users behave. The defaults aim at plausible e-commerce browsing.

    Funnel rates are conditional on the step before (a like or a cart add needs
    a click, a purchase a cart add), which gives views >> clicks > carts > likes
    ~ purchases, the usual shape of shop logs. Noise interactions (random catalog
    items, whatever their taste) mostly stay at a view: people glance at odd things but
    rarely buy them. Taste popularity follows a mild power law, so popularity
    is a real, not a straw-man, baseline.

    `taste_axes`: a taste only tests a recommender if the item vectors can tell
    it apart; otherwise the run measures the model, not the strategies.
    `taste_agreement` checks that for whichever axes a run uses (numbers for
    the demo model in docs/evaluation.md).
    """

    taste_axes: tuple[str, ...] = ("color", "shape")
    min_taste_items: int = 8
    taste_count_probabilities: tuple[float, ...] = (0.2, 0.35, 0.3, 0.15)  # 1, 2, 3, 4 tastes
    disliked_count_probabilities: tuple[float, ...] = (0.5, 0.3, 0.2)  # 0, 1, 2 disliked tastes
    # A disliked taste usually differs from a liked one in one attribute ("red
    # circles yes, red stars no"): that is where a recommender is tempted to go.
    near_miss_dislike_probability: float = 0.7
    taste_popularity_exponent: float = 0.6
    item_appeal_sigma: float = 0.6  # lognormal spread of how attractive items within a taste are
    span_days: float = 56.0
    sessions: tuple[int, int] = (3, 10)  # inclusive range per user
    interactions_per_session: tuple[int, int] = (3, 8)
    noise_probability: float = 0.1
    revisit_probability: float = 0.15
    click_probability: float = 0.45
    like_probability: float = 0.12
    cart_probability: float = 0.3
    purchase_probability: float = 0.5
    noise_click_probability: float = 0.1
    negatives_per_disliked_taste: tuple[int, int] = (2, 5)
    dislike_share: float = 0.5  # of negative events on disliked tastes; the rest are skips
    random_skip_probability: float = 0.3  # per session: one skip of an arbitrary item

    def __post_init__(self) -> None:
        for name in ("taste_count_probabilities", "disliked_count_probabilities"):
            values = getattr(self, name)
            if not values or any(p < 0 for p in values) or not math.isclose(sum(values), 1.0):
                raise ValueError(f"{name} must be non-negative and sum to 1, got {values}")
        for name in ("sessions", "interactions_per_session", "negatives_per_disliked_taste"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be a range (low, high) with 0 <= low <= high, got {(low, high)}")
        if self.span_days <= 0:
            raise ValueError(f"span_days must be > 0, got {self.span_days}")
        if not self.taste_axes:
            raise ValueError("taste_axes must name at least one attribute")


@dataclass(frozen=True)
class SimulatedUser:
    user_id: str
    tastes: tuple[Taste, ...]
    taste_weights: tuple[float, ...]  # sums to 1, heaviest first
    disliked: tuple[Taste, ...]
    events: tuple[Event, ...]  # the whole history, oldest first


@dataclass(frozen=True)
class _World:
    """The catalog as the simulation sees it: tastes, their items, and item appeal."""

    item_ids: tuple[str, ...]
    tastes: tuple[Taste, ...]  # most popular first
    taste_popularity: np.ndarray
    taste_items: Mapping[Taste, np.ndarray]  # indices into item_ids
    appeal: np.ndarray


def simulate_users(
    items: Mapping[str, Mapping[str, Any]],
    n_users: int,
    seed: int,
    start: datetime,
    config: SimulationConfig = SimulationConfig(),
) -> list[SimulatedUser]:
    """`n_users` users with histories from `start` to `start + config.span_days`.

    Deterministic by seed. User i depends only on (items, seed, i), so a run
    with more users keeps the first ones unchanged.
    """
    if n_users < 0:
        raise ValueError(f"n_users must be >= 0, got {n_users}")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (event timestamps are)")
    world = _world(items, seed, config)
    return [_simulate_user(index, world, np.random.default_rng([seed, 1, index]), start, config)
            for index in range(n_users)]


def _world(items: Mapping[str, Mapping[str, Any]], seed: int, config: SimulationConfig) -> _World:
    item_ids = tuple(sorted(items))
    members: dict[Taste, list[int]] = {}
    for index, item_id in enumerate(item_ids):
        attributes = items[item_id]
        taste = taste_of(attributes, config.taste_axes)
        if taste is not None:
            members.setdefault(taste, []).append(index)
    usable = sorted((taste for taste, indices in members.items() if len(indices) >= config.min_taste_items),
                    key=lambda taste: taste.values)
    if len(usable) < 2:
        raise ValueError(f"the catalog has {len(usable)} tastes over {config.taste_axes} with at least "
                         f"{config.min_taste_items} items; the simulation needs at least 2")
    rng = np.random.default_rng([seed, 0])
    order = rng.permutation(len(usable))
    tastes = tuple(usable[i] for i in order)
    popularity = np.arange(1, len(tastes) + 1, dtype=np.float64) ** -config.taste_popularity_exponent
    return _World(
        item_ids=item_ids,
        tastes=tastes,
        taste_popularity=popularity / popularity.sum(),
        taste_items={taste: np.asarray(members[taste]) for taste in tastes},
        appeal=rng.lognormal(0.0, config.item_appeal_sigma, size=len(item_ids)),
    )


def _simulate_user(index: int, world: _World, rng: np.random.Generator, start: datetime,
                   config: SimulationConfig) -> SimulatedUser:
    user_id = f"user-{index:05d}"
    tastes, weights = _draw_tastes(world, rng, config)
    disliked = _draw_disliked(world, tastes, rng, config)
    events = _history(user_id, world, tastes, weights, disliked, rng, start, config)
    return SimulatedUser(user_id, tastes, weights, disliked, events)


def _draw_tastes(world: _World, rng: np.random.Generator,
                 config: SimulationConfig) -> tuple[tuple[Taste, ...], tuple[float, ...]]:
    count = min(1 + _draw_index(rng, config.taste_count_probabilities), len(world.tastes))
    chosen = rng.choice(len(world.tastes), size=count, replace=False, p=world.taste_popularity)
    # Dirichlet(1) weights are unequal without being degenerate; the floor keeps a
    # minor taste frequent enough to appear in a few sessions.
    weights = np.maximum(rng.dirichlet(np.ones(count)), 0.1)
    weights = np.sort(weights / weights.sum())[::-1]
    return tuple(world.tastes[i] for i in chosen), tuple(float(w) for w in weights)


def _draw_disliked(world: _World, liked: Sequence[Taste], rng: np.random.Generator,
                   config: SimulationConfig) -> tuple[Taste, ...]:
    count = _draw_index(rng, config.disliked_count_probabilities)
    others = [taste for taste in world.tastes if taste not in liked]
    near = [taste for taste in others if any(_shares_a_value(taste, mine) for mine in liked)]
    disliked: list[Taste] = []
    for _ in range(count):
        pool = near if near and rng.random() < config.near_miss_dislike_probability else others
        pool = [taste for taste in pool if taste not in disliked]
        if pool:
            disliked.append(pool[int(rng.integers(len(pool)))])
    return tuple(disliked)


def _shares_a_value(a: Taste, b: Taste) -> bool:
    return bool(set(a.values) & set(b.values))


def _draw_index(rng: np.random.Generator, probabilities: Sequence[float]) -> int:
    return int(rng.choice(len(probabilities), p=np.asarray(probabilities) / sum(probabilities)))


def _draw_between(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _history(user_id: str, world: _World, tastes: Sequence[Taste], weights: Sequence[float],
             disliked: Sequence[Taste], rng: np.random.Generator, start: datetime,
             config: SimulationConfig) -> tuple[Event, ...]:
    """Sessions spread over the span; each session follows one taste, as people
    shop for one thing at a time, with noise, revisits and skips mixed in."""
    span_s = config.span_days * 86_400.0
    session_starts = np.sort(rng.uniform(0.0, span_s, size=_draw_between(rng, config.sessions)))
    touched: dict[Taste, list[int]] = {taste: [] for taste in tastes}
    events: list[Event] = []
    for session_start in session_starts:
        taste = tastes[int(rng.choice(len(tastes), p=weights))]
        at = start + timedelta(seconds=float(session_start))
        for _ in range(_draw_between(rng, config.interactions_per_session)):
            at += timedelta(seconds=float(rng.uniform(30, 240)))
            if rng.random() < config.noise_probability:
                events += _noise_interaction(user_id, world, rng, at, config)
                continue
            item = _pick_taste_item(world, taste, touched[taste], rng, config)
            touched[taste].append(item)
            events += _funnel(user_id, world.item_ids[item], rng, at, config)
        if rng.random() < config.random_skip_probability:
            at += timedelta(seconds=float(rng.uniform(5, 60)))
            events.append(Event(user_id, world.item_ids[int(rng.integers(len(world.item_ids)))], EventType.SKIP, at))
    events += _negative_events(user_id, world, disliked, rng, start, span_s, config)
    return tuple(sorted(events, key=lambda e: (e.timestamp, e.item_id, e.event_type.value)))


def _pick_taste_item(world: _World, taste: Taste, touched: Sequence[int], rng: np.random.Generator,
                     config: SimulationConfig) -> int:
    if touched and rng.random() < config.revisit_probability:
        return int(touched[int(rng.integers(len(touched)))])
    members = world.taste_items[taste]
    appeal = world.appeal[members]
    return int(members[rng.choice(len(members), p=appeal / appeal.sum())])


def _funnel(user_id: str, item_id: str, rng: np.random.Generator, at: datetime,
            config: SimulationConfig) -> list[Event]:
    steps = [EventType.VIEW]
    if rng.random() < config.click_probability:
        steps.append(EventType.CLICK)
        if rng.random() < config.like_probability:
            steps.append(EventType.LIKE)
        if rng.random() < config.cart_probability:
            steps.append(EventType.ADD_TO_CART)
            if rng.random() < config.purchase_probability:
                steps.append(EventType.PURCHASE)
    return [Event(user_id, item_id, step, at + timedelta(seconds=5 * offset)) for offset, step in enumerate(steps)]


def _noise_interaction(user_id: str, world: _World, rng: np.random.Generator, at: datetime,
                       config: SimulationConfig) -> list[Event]:
    item_id = world.item_ids[int(rng.integers(len(world.item_ids)))]
    events = [Event(user_id, item_id, EventType.VIEW, at)]
    if rng.random() < config.noise_click_probability:
        events.append(Event(user_id, item_id, EventType.CLICK, at + timedelta(seconds=5)))
    return events


def _negative_events(user_id: str, world: _World, disliked: Sequence[Taste], rng: np.random.Generator,
                     start: datetime, span_s: float, config: SimulationConfig) -> list[Event]:
    events = []
    for taste in disliked:
        members = world.taste_items[taste]
        for _ in range(_draw_between(rng, config.negatives_per_disliked_taste)):
            kind = EventType.DISLIKE if rng.random() < config.dislike_share else EventType.SKIP
            at = start + timedelta(seconds=float(rng.uniform(0.0, span_s)))
            events.append(Event(user_id, world.item_ids[int(members[int(rng.integers(len(members)))])], kind, at))
    return events


def taste_of(attributes: Mapping[str, Any], axes: Sequence[str]) -> Taste | None:
    if not all(axis in attributes for axis in axes):
        return None
    return Taste(tuple(sorted((axis, attributes[axis]) for axis in axes)))


def taste_agreement(item_vectors: Mapping[str, np.ndarray], attributes: Mapping[str, Mapping[str, Any]],
                    axes: Sequence[str], k: int = 10) -> tuple[float, float]:
    """(share of each item's k nearest neighbours that share its taste, the same
    share for random neighbours). Near chance, the vectors cannot see the tastes
    and no content-based strategy can follow them; the run says so rather than
    blaming the strategies."""
    item_ids = sorted(item_id for item_id in item_vectors if item_id in attributes)
    if len(item_ids) <= k:
        raise ValueError(f"need more than k={k} items with vectors and attributes, got {len(item_ids)}")
    numbering: dict[Any, int] = {}
    # An item outside every taste agrees with nobody: it gets a label of its own.
    codes = np.array([numbering.setdefault(taste_of(attributes[item_id], axes) or ("no taste", item_id), len(numbering))
                      for item_id in item_ids])
    rows = np.stack([np.asarray(item_vectors[item_id], dtype=np.float32) for item_id in item_ids])
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    agreeing = 0
    for start in range(0, len(rows), 512):  # blocks keep memory at 512 x n
        similarity = rows[start:start + 512] @ rows.T
        similarity[np.arange(len(similarity)), np.arange(start, start + len(similarity))] = -np.inf
        neighbours = np.argpartition(-similarity, k, axis=1)[:, :k]
        agreeing += int((codes[neighbours] == codes[start:start + len(similarity), None]).sum())
    sizes = np.bincount(codes)
    chance = float(((sizes * (sizes - 1)).sum()) / (len(codes) * (len(codes) - 1)))
    return agreeing / (len(rows) * k), chance


def taste_oracle(split: "TemporalSplit", attributes: Mapping[str, Mapping[str, Any]], seed: int) -> "Recommend":
    """A reference, not a strategy: it knows each user's true tastes and weights,
    gives them slots in proportion (Sainte-Lague) and fills each with unseen
    items of that taste in random order. No item-level signal exists within a
    taste (which item a user picks depends on appeal, which vectors do not
    show), so this is about the best any content-based recommender can do here."""
    by_user = {user.user_id: (index, user) for index, user in enumerate(split.users)}
    item_ids = sorted(attributes)

    def recommend(user_id: str, strategy: Any, k: int) -> list[str]:
        index, user = by_user[user_id]
        rng = np.random.default_rng([seed, 2, index])
        seen = {event.item_id for event in user.train_events}
        pools = [[i for i in item_ids if taste.matches(attributes[i]) and i not in seen] for taste in user.user.tastes]
        pools = [list(rng.permutation(pool)) for pool in pools]
        picked, turns = [], [0] * len(pools)
        while len(picked) < k and any(pools):
            turn = max((i for i, pool in enumerate(pools) if pool),
                       key=lambda i: (user.user.taste_weights[i] / (2 * turns[i] + 1), -i))
            picked.append(str(pools[turn].pop()))
            turns[turn] += 1
        return picked

    return recommend


# -- split --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserSplit:
    user: SimulatedUser
    train_events: tuple[Event, ...]  # every event before the split time, negatives included
    test_item_ids: frozenset[str]  # positive after the split, never touched before it

    @property
    def user_id(self) -> str:
        return self.user.user_id


@dataclass(frozen=True)
class TemporalSplit:
    split_time: datetime
    users: tuple[UserSplit, ...]  # users with both training history and test items

    @property
    def train_events(self) -> list[Event]:
        return [event for user in self.users for event in user.train_events]


def split_time_at(users: Iterable[SimulatedUser], test_fraction: float) -> datetime:
    """The time before which (1 - test_fraction) of all positive events happened."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    times = sorted(event.timestamp for user in users for event in user.events if not event.event_type.is_negative)
    if not times:
        raise ValueError("no positive events to split")
    return times[min(len(times) - 1, int(len(times) * (1.0 - test_fraction)))]


def split_user(user: SimulatedUser, split_time: datetime) -> UserSplit:
    """Events strictly before `split_time` train; items first engaged with at or
    after it are the test set. An item touched before the split in any way (a
    view, a skip) is left out of the test: the engine excludes seen items, so
    counting it would measure nothing but that exclusion."""
    train = tuple(event for event in user.events if event.timestamp < split_time)
    seen = {event.item_id for event in train}
    test = frozenset(event.item_id for event in user.events
                     if event.timestamp >= split_time and not event.event_type.is_negative
                     and event.item_id not in seen)
    return UserSplit(user, train, test)


def temporal_split(users: Sequence[SimulatedUser], test_fraction: float = 0.2) -> TemporalSplit:
    """One global split time; users left with no positive history or no test item are dropped."""
    split_time = split_time_at(users, test_fraction)
    kept = []
    for user in users:
        split = split_user(user, split_time)
        if split.test_item_ids and any(not event.event_type.is_negative for event in split.train_events):
            kept.append(split)
    return TemporalSplit(split_time, tuple(kept))


# -- metrics ------------------------------------------------------------------------------------------------------


def hit_rate_at_k(recommended: Sequence[str], relevant: Iterable[str], k: int) -> float:
    relevant = set(relevant)
    return 1.0 if any(item_id in relevant for item_id in recommended[:k]) else 0.0


def recall_at_k(recommended: Sequence[str], relevant: Iterable[str], k: int) -> float:
    relevant = set(relevant)
    if not relevant:
        raise ValueError("recall is undefined without relevant items")
    return len(relevant.intersection(recommended[:k])) / len(relevant)


def ndcg_at_k(recommended: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """Binary-relevance NDCG: gain 1 / log2(rank + 1) per relevant item, over the
    best achievable with min(k, |relevant|) relevant items at the top."""
    relevant = set(relevant)
    if not relevant:
        raise ValueError("NDCG is undefined without relevant items")
    top = _distinct(recommended)[:k]
    dcg = sum(1.0 / math.log2(rank + 2) for rank, item_id in enumerate(top) if item_id in relevant)
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return dcg / ideal


def catalog_coverage(recommendation_lists: Iterable[Sequence[str]], catalog_size: int, k: int) -> float:
    """Distinct items in anyone's top k, as a share of the catalog."""
    if catalog_size <= 0:
        raise ValueError(f"catalog_size must be > 0, got {catalog_size}")
    shown = {item_id for recommended in recommendation_lists for item_id in recommended[:k]}
    return len(shown) / catalog_size


def intra_list_diversity(vectors: Sequence[np.ndarray]) -> float | None:
    """1 - mean pairwise cosine of a list's item vectors; None under two items."""
    if len(vectors) < 2:
        return None
    rows = np.stack([np.asarray(vector, dtype=np.float64) for vector in vectors])
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    rows = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    similarity = rows @ rows.T
    n = len(rows)
    mean_pairwise = (similarity.sum() - np.trace(similarity)) / (n * (n - 1))
    return float(1.0 - mean_pairwise)


def taste_share(recommended: Sequence[str], attributes: Mapping[str, Mapping[str, Any]],
                tastes: Sequence[Taste]) -> float | None:
    """Share of the list matching any of `tastes`; None for an empty list."""
    if not recommended:
        return None
    return _count_matching(recommended, attributes, tastes) / len(recommended)


def _count_matching(item_ids: Sequence[str], attributes: Mapping[str, Mapping[str, Any]],
                    tastes: Sequence[Taste]) -> int:
    return sum(1 for item_id in item_ids if any(taste.matches(attributes.get(item_id, {})) for taste in tastes))


def tastes_covered(recommended: Sequence[str], attributes: Mapping[str, Mapping[str, Any]],
                   tastes: Sequence[Taste]) -> float:
    """Share of the user's tastes with at least one item in the list."""
    if not tastes:
        raise ValueError("no tastes to cover")
    covered = sum(1 for taste in tastes if any(taste.matches(attributes.get(item_id, {})) for item_id in recommended))
    return covered / len(tastes)


def _distinct(item_ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(item_ids))


# -- evaluation ---------------------------------------------------------------------------------------------------

Recommend = Callable[[str, Any, int], Sequence[str]]

HIT_K = 10
RECALL_K = 20
# What each metric is called in results, in the order tables show them.
METRIC_NAMES: tuple[str, ...] = (
    "hit_rate@10", "recall@20", "ndcg@10", "taste_hit@10", "taste_coverage@10", "coverage@10",
    "diversity@10", "disliked_share@10", "ms_per_call",
)


@dataclass
class StrategyResult:
    strategy: str
    metrics: dict[str, float]
    users: int
    users_with_dislikes: int
    empty_lists: int
    user_hits: list[float] = field(default_factory=list)  # hit@10 per user, in split order (for paired tests)


@dataclass
class EvaluationResult:
    split_time: datetime
    catalog_size: int
    strategies: list[StrategyResult] = field(default_factory=list)

    def by_strategy(self) -> dict[str, StrategyResult]:
        return {result.strategy: result for result in self.strategies}


def strategy_name(strategy: Hashable) -> str:
    return str(getattr(strategy, "value", strategy))


def evaluate(
    split: TemporalSplit,
    recommend: Recommend,
    strategies: Sequence[Hashable],
    attributes: Mapping[str, Mapping[str, Any]],
    item_vectors: Mapping[str, np.ndarray],
    catalog_size: int,
    on_user: Callable[[], None] | None = None,
) -> EvaluationResult:
    """Ask `recommend(user_id, strategy, RECALL_K)` for every user and strategy
    and score the lists against the held-out items and the latent tastes.

    Accuracy metrics are means over users; disliked_share pools the top-10
    items of the users who have a disliked taste (for the others it is 0 by
    construction and would only dilute it). `on_user` is called after each
    list, for progress reporting.
    """
    result = EvaluationResult(split.split_time, catalog_size)
    for strategy in strategies:
        lists, seconds = [], 0.0
        for user in split.users:
            started = time.perf_counter()
            lists.append(_distinct(recommend(user.user_id, strategy, RECALL_K)))
            seconds += time.perf_counter() - started
            if on_user is not None:
                on_user()
        result.strategies.append(_score(strategy_name(strategy), split.users, lists, attributes, item_vectors,
                                        catalog_size, seconds))
    return result


def _score(name: str, users: Sequence[UserSplit], lists: Sequence[list[str]],
           attributes: Mapping[str, Mapping[str, Any]], item_vectors: Mapping[str, np.ndarray],
           catalog_size: int, seconds: float) -> StrategyResult:
    tops = [recommended[:HIT_K] for recommended in lists]
    diversities = [intra_list_diversity([item_vectors[i] for i in top if i in item_vectors]) for top in tops]
    taste_hits = [taste_share(top, attributes, user.user.tastes) for user, top in zip(users, tops)]
    with_dislikes = [(user, top) for user, top in zip(users, tops) if user.user.disliked]
    disliked_items = sum(_count_matching(top, attributes, user.user.disliked) for user, top in with_dislikes)
    shown_to_dislikers = sum(len(top) for _, top in with_dislikes)
    hits = [hit_rate_at_k(r, u.test_item_ids, HIT_K) for u, r in zip(users, lists)]
    metrics = {
        "hit_rate@10": _mean(hits),
        "recall@20": _mean(recall_at_k(r, u.test_item_ids, RECALL_K) for u, r in zip(users, lists)),
        "ndcg@10": _mean(ndcg_at_k(r, u.test_item_ids, HIT_K) for u, r in zip(users, lists)),
        # An empty list hit no taste: counting it as 0 rather than skipping it keeps failures visible.
        "taste_hit@10": _mean(0.0 if share is None else share for share in taste_hits),
        "taste_coverage@10": _mean(tastes_covered(top, attributes, u.user.tastes) for u, top in zip(users, tops)),
        "coverage@10": catalog_coverage(tops, catalog_size, HIT_K),
        "diversity@10": _mean(d for d in diversities if d is not None),
        "disliked_share@10": disliked_items / shown_to_dislikers if shown_to_dislikers else 0.0,
        "ms_per_call": 1000.0 * seconds / len(users) if users else 0.0,
    }
    return StrategyResult(name, metrics, users=len(users), users_with_dislikes=len(with_dislikes),
                          empty_lists=sum(1 for top in tops if not top), user_hits=hits)


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else 0.0


# -- targets and formatting ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetCheck:
    """One bar. For ratio targets `value` is ours / baseline and `interval` its
    95% paired-bootstrap interval over users; for the disliked share, the share."""

    description: str
    value: float
    threshold: float
    met: bool
    interval: tuple[float, float] | None = None


# (baseline, minimum ratio of multi-interest's hit_rate@10 to the baseline's)
HIT_RATE_TARGETS: tuple[tuple[str, float], ...] = (("single_centroid", 1.15), ("qdrant_best_score", 1.0),
                                                   ("popular", 3.0))
MAX_DISLIKED_SHARE = 0.05


def check_targets(result: EvaluationResult) -> list[TargetCheck]:
    """The bars multi-interest must clear (docs/evaluation.md); missing strategies are skipped."""
    by_name = result.by_strategy()
    ours = by_name.get("multi_interest")
    if ours is None:
        return []
    checks = []
    for baseline_name, factor in HIT_RATE_TARGETS:
        baseline = by_name.get(baseline_name)
        if baseline is None:
            continue
        ratio = _ratio(np.mean(ours.user_hits) if ours.user_hits else 0.0,
                       np.mean(baseline.user_hits) if baseline.user_hits else 0.0)
        checks.append(TargetCheck(f"multi_interest hit_rate@10 >= {factor:g} x {baseline_name}", ratio, factor,
                                  ratio >= factor, paired_ratio_interval(ours.user_hits, baseline.user_hits)))
    disliked = ours.metrics["disliked_share@10"]
    checks.append(TargetCheck(f"multi_interest disliked_share@10 < {MAX_DISLIKED_SHARE:.0%}", disliked,
                              MAX_DISLIKED_SHARE, disliked < MAX_DISLIKED_SHARE))
    return checks


def paired_ratio_interval(ours: Sequence[float], baseline: Sequence[float], level: float = 0.95,
                          draws: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of mean(ours) / mean(baseline), resampling
    users (both strategies answered the same users, so they are resampled together)."""
    if len(ours) != len(baseline):
        raise ValueError(f"paired samples differ in length: {len(ours)} and {len(baseline)}")
    if len(ours) < 2:
        return None
    ours_array, baseline_array = np.asarray(ours, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    samples = np.random.default_rng(seed).integers(0, len(ours_array), size=(draws, len(ours_array)))
    ratios = [_ratio(a, b) for a, b in zip(ours_array[samples].mean(axis=1), baseline_array[samples].mean(axis=1))]
    tail = 100.0 * (1.0 - level) / 2.0
    # No interpolation: resamples where the baseline never hits give an infinite ratio.
    low, high = np.percentile(ratios, [tail, 100.0 - tail], method="inverted_cdf")
    return float(low), float(high)


def _ratio(ours: float, baseline: float) -> float:
    if baseline > 0:
        return float(ours / baseline)
    return math.inf if ours > 0 else 0.0


def format_table(result: EvaluationResult) -> str:
    """A fixed-width table, one row per strategy."""
    header = ["strategy", *METRIC_NAMES]
    rows = [[r.strategy, *(_cell(name, r.metrics[name]) for name in METRIC_NAMES)] for r in result.strategies]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(row, widths))) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_markdown(result: EvaluationResult) -> str:
    header = ["strategy", *METRIC_NAMES]
    rows = [[f"`{r.strategy}`", *(_cell(name, r.metrics[name]) for name in METRIC_NAMES)] for r in result.strategies]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(METRIC_NAMES)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_targets(checks: Sequence[TargetCheck]) -> str:
    return "\n".join(_target_line(check) for check in checks)


def _target_line(check: TargetCheck) -> str:
    status = "met" if check.met else "MISSED"
    if check.interval is None:
        return f"[{status}] {check.description}: {check.value:.3f}"
    low, high = check.interval
    return f"[{status}] {check.description}: ratio {check.value:.2f} (95% CI {low:.2f}-{high:.2f})"


def _cell(name: str, value: float) -> str:
    return f"{value:.1f}" if name == "ms_per_call" else f"{value:.3f}"


def to_json(result: EvaluationResult, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-able record of one run: what was run, per-strategy metrics, the targets."""
    return {
        "settings": dict(settings or {}),
        "split_time": result.split_time.isoformat(),
        "catalog_size": result.catalog_size,
        "strategies": {
            r.strategy: {"metrics": {name: round(value, 6) for name, value in r.metrics.items()},
                         "users": r.users, "users_with_dislikes": r.users_with_dislikes,
                         "empty_lists": r.empty_lists,
                         # Per user, in one order across strategies: lets runs be pooled and compared pairwise.
                         "user_hits@10": [int(hit) for hit in r.user_hits]}
            for r in result.strategies
        },
        "targets": [{"description": c.description, "value": _finite(c.value), "threshold": c.threshold,
                     "met": c.met, "interval": None if c.interval is None else [_finite(v) for v in c.interval]}
                    for c in check_targets(result)],
    }


def _finite(value: float) -> float | None:
    """JSON has no infinity: a ratio over a zero baseline is written as null."""
    return round(value, 6) if math.isfinite(value) else None


def describe_users(users: Sequence[SimulatedUser]) -> dict[str, Any]:
    """Summary statistics of a simulated population, to print next to results."""
    counts: dict[str, int] = {kind.value: 0 for kind in EventType}
    for user in users:
        for event in user.events:
            counts[event.event_type.value] += 1
    return {
        "users": len(users),
        "events": sum(counts.values()),
        "events_by_type": counts,
        "mean_tastes": _mean(len(user.tastes) for user in users),
        "users_with_disliked_tastes": sum(1 for user in users if user.disliked),
    }
