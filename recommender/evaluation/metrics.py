"""Per-list measures and `evaluate`, which asks a recommender for every user and strategy."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np

from recommender.evaluation.simulate import Taste
from recommender.evaluation.split import TemporalSplit, UserSplit


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
