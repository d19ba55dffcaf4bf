"""Simulated shoppers: latent tastes over item attributes and the event histories they produce."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

import numpy as np

from recommender.types import Event, EventType


@dataclass(frozen=True)
class Taste:
    """A latent taste: every item whose attributes carry all these values."""

    values: tuple[tuple[str, Any], ...]  # sorted (attribute, value) pairs

    @classmethod
    def of(cls, **values: Any) -> Taste:
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
        "mean_tastes": float(np.mean([len(user.tastes) for user in users])) if users else 0.0,
        "users_with_disliked_tastes": sum(1 for user in users if user.disliked),
    }
