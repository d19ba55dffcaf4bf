"""Per-interest candidates -> one ranked list (DESIGN §5, steps 3-5).

Calibration is the hard part. Each candidate's score is its cosine to the
centroid of the interest that retrieved it, and those scales differ: a tight
interest (one product line) returns neighbours at 0.9, a broad one (a style)
at 0.6. Merging by raw score would hand a 30% interest all of the top K just
because it is tighter. `MergeStrategy.PROPORTIONAL` therefore decides *whose
turn it is* by importance (Sainte-Lague apportionment, so every prefix of the
list is as close to the importance mix as whole items allow) and decides
*which item* by MMR within that interest, redundancy measured against
everything already picked. Scores are only ever compared within one interest,
where they are on one scale. `MergeStrategy.SCORE` (one pool by raw score, then
MMR) is kept as the baseline for offline evaluation.

Vectors are unit float32 rows; all arithmetic here runs in float64.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from recommender.types import Interest


@dataclass(frozen=True)
class Candidate:
    """A neighbour of one interest; `score` is its cosine to that interest's centroid
    (after `negative_penalties`, minus the penalty)."""

    item_id: str
    score: float
    vector: np.ndarray
    interest_index: int


@dataclass(frozen=True)
class Ranked:
    """One recommendation. The list order is the ranking; `score` is the
    candidate's similarity to its own interest and is not comparable across
    interests (see the module docstring)."""

    item_id: str
    score: float
    interest_index: int


class MergeStrategy(str, enum.Enum):
    PROPORTIONAL = "proportional"  # importance decides the turn, MMR picks within the interest
    SCORE = "score"  # one pool by raw cosine, then MMR: the uncalibrated baseline


def _checked_importances(importances: Sequence[float]) -> list[float]:
    values = [float(value) for value in importances]
    for value in values:
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"importances must be finite and >= 0, got {value}")
    return values


# ---------------------------------------------------------------- merge and negatives


def merge_candidates(per_interest: Sequence[Sequence[Candidate]]) -> list[Candidate]:
    """One pool: each item once, with its best score (and the interest that gave
    it), ordered by score descending, ties by item id."""
    best: dict[str, Candidate] = {}
    for candidates in per_interest:
        for candidate in candidates:
            held = best.get(candidate.item_id)
            if held is None or _beats(candidate, held):
                best[candidate.item_id] = candidate
    return sorted(best.values(), key=_by_score)


def _beats(challenger: Candidate, held: Candidate) -> bool:
    # Equal scores go to the lower interest index (the more important interest),
    # so the result does not depend on the order the lists were given in.
    return (challenger.score, -challenger.interest_index) > (held.score, -held.interest_index)


def _by_score(candidate: Candidate) -> tuple[float, str]:
    return (-candidate.score, candidate.item_id)


def negative_penalties(
    vectors: np.ndarray,
    negatives: Sequence[Interest],
    strength: float = 1.0,
    margin: float = 0.5,
    evidence_half_weight: float = 1.0,
) -> np.ndarray:
    """Penalty per row of `vectors`, for candidates near what the user rejected:

        penalty = strength * max_j [ w_j / (w_j + h) * clip((cos(v, n_j) - margin) / (1 - margin), 0, 1) ]

    n_j is a negative centroid, w_j its absolute decayed weight, h
    `evidence_half_weight`. Nothing below `margin` is touched, so a dislike does
    not sink its whole category; the penalty rises linearly to its full size at
    the centroid itself. The full size, `strength` (1.0) x confidence, is of the
    order of the whole span of candidate cosines, which is what puts a near
    duplicate of a disliked item below the rest rather than a few places down.

    The evidence term uses the absolute weight, not the importance share:
    importance divides one user's negatives among themselves, so a third dislike
    would halve the effect of the first. One fresh dislike (w = 3) gives
    confidence 0.75, one skip (0.5) 0.33, and old evidence fades as it decays.
    The max over centroids (not a sum) keeps two nearby negative clusters from
    counting the same rejection twice.
    """
    if strength < 0 or not -1.0 <= margin < 1.0 or evidence_half_weight <= 0:
        raise ValueError(
            f"need strength >= 0, -1 <= margin < 1, evidence_half_weight > 0; "
            f"got {strength}, {margin}, {evidence_half_weight}"
        )
    vectors = _unit_rows(vectors)
    if not negatives or len(vectors) == 0:
        return np.zeros(len(vectors))
    centroids = _unit_rows(np.stack([np.asarray(n.centroid, dtype=np.float64) for n in negatives]))
    weights = np.array([n.weight for n in negatives], dtype=np.float64)
    confidence = weights / (weights + evidence_half_weight)
    closeness = np.clip((vectors @ centroids.T - margin) / (1.0 - margin), 0.0, 1.0)
    return strength * np.max(confidence * closeness, axis=1)


def _with_penalties(
    candidates: Sequence[Candidate],
    negatives: Sequence[Interest],
    strength: float,
    margin: float = 0.5,
    evidence_half_weight: float = 1.0,
) -> list[tuple[Candidate, float]]:
    """Each candidate with its score lowered by its penalty, and the penalty."""
    if not candidates:
        return []
    vectors = np.stack([np.asarray(c.vector, dtype=np.float64) for c in candidates])
    penalties = negative_penalties(vectors, negatives, strength, margin, evidence_half_weight)
    return [
        (replace(candidate, score=float(candidate.score - penalty)) if penalty > 0 else candidate, float(penalty))
        for candidate, penalty in zip(candidates, penalties)
    ]


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {rows.shape}")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    # A zero vector has no direction: it is similar to nothing rather than NaN.
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


# ---------------------------------------------------------------- diversification


class _Redundancy:
    """Running max cosine of every candidate to the items picked so far."""

    def __init__(self, vectors: np.ndarray) -> None:
        self._vectors = _unit_rows(vectors)
        self._max_similarity = np.zeros(len(self._vectors))
        self._any_picked = False

    def of(self, indices: np.ndarray) -> np.ndarray:
        # Before the first pick nothing is redundant, so the first item is the
        # most relevant one at any diversity.
        return self._max_similarity[indices] if self._any_picked else np.zeros(len(indices))

    def record(self, index: int) -> None:
        similarity = self._vectors @ self._vectors[index]
        self._max_similarity = similarity if not self._any_picked else np.maximum(self._max_similarity, similarity)
        self._any_picked = True


def _mmr_choice(
    indices: np.ndarray, scores: np.ndarray, id_ranks: np.ndarray, redundancy: _Redundancy, diversity: float
) -> int:
    """Position in `indices` of the best MMR value (1 - d) * score - d * redundancy;
    ties by higher score, then by item id, so the pick is deterministic."""
    value = (1.0 - diversity) * scores - diversity * redundancy.of(indices)
    return int(np.lexsort((id_ranks[indices], -scores, -value))[0])


def _check_selection(k: int, diversity: float) -> None:
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must lie in [0, 1] (0 = pure relevance), got {diversity}")


def mmr(candidates: Sequence[Candidate], k: int, diversity: float) -> list[Candidate]:
    """Maximal Marginal Relevance: greedily pick the candidate maximising
    (1 - diversity) * score - diversity * max cosine to the ones already picked.

    diversity 0 is plain score order, 1 picks by novelty alone (after the most
    relevant first item). Duplicate item ids are collapsed to their best-scored
    candidate first.
    """
    _check_selection(k, diversity)
    pool = merge_candidates([candidates])
    if not pool or k == 0:
        return []
    scores = np.array([c.score for c in pool], dtype=np.float64)
    id_ranks = _id_ranks([c.item_id for c in pool])
    redundancy = _Redundancy(np.stack([c.vector for c in pool]))
    remaining = np.arange(len(pool))
    picked: list[Candidate] = []
    while remaining.size and len(picked) < k:
        chosen = remaining[_mmr_choice(remaining, scores[remaining], id_ranks, redundancy, diversity)]
        picked.append(pool[chosen])
        redundancy.record(chosen)
        remaining = remaining[remaining != chosen]
    return picked


def _id_ranks(item_ids: Sequence[str]) -> np.ndarray:
    ranks = np.empty(len(item_ids), dtype=np.intp)
    ranks[sorted(range(len(item_ids)), key=item_ids.__getitem__)] = np.arange(len(item_ids))
    return ranks


def proportional_mmr(
    per_interest: Sequence[Sequence[Candidate]], importances: Sequence[float], k: int, diversity: float
) -> list[Candidate]:
    """Top k in which each interest's share follows its importance at every prefix.

    Turns go by Sainte-Lague: the next item comes from the interest with the
    largest importance / (2 * picked_so_far + 1), ties to the lower index. It is
    the apportionment rule least biased against small parties: a 10% interest
    gets its first slot at about position 5, not 10 as with D'Hondt. The
    interest on turn picks its best MMR candidate, redundancy measured against
    every item already picked from any interest. An interest that runs out of
    candidates drops out and the others fill its slots. An item retrieved
    by several interests is taken once, by whichever interest reaches it first.
    """
    _check_selection(k, diversity)
    shares = _checked_importances(importances)
    if len(shares) != len(per_interest):
        raise ValueError(f"{len(per_interest)} candidate lists but {len(shares)} importances")
    if sum(shares) == 0:
        shares = [1.0] * len(shares)
    pools = [merge_candidates([candidates]) for candidates in per_interest]
    universe = sorted({c.item_id for pool in pools for c in pool})
    position = {item_id: i for i, item_id in enumerate(universe)}
    if not universe or k == 0:
        return []
    redundancy = _Redundancy(_universe_vectors(pools, position))
    id_ranks = np.arange(len(universe))  # the universe is already in item id order
    pool_indices = [np.array([position[c.item_id] for c in pool], dtype=np.intp) for pool in pools]
    pool_scores = [np.array([c.score for c in pool], dtype=np.float64) for pool in pools]
    taken = np.zeros(len(universe), dtype=bool)
    picks_per_interest = [0] * len(pools)
    picked: list[Candidate] = []
    while len(picked) < k:
        open_slots = [i for i in range(len(pools)) if not taken[pool_indices[i]].all()]
        if not open_slots:
            break
        turn = max(open_slots, key=lambda i: (shares[i] / (2 * picks_per_interest[i] + 1), -i))
        available = np.flatnonzero(~taken[pool_indices[turn]])
        choice = available[
            _mmr_choice(pool_indices[turn][available], pool_scores[turn][available], id_ranks, redundancy, diversity)
        ]
        picked.append(pools[turn][choice])
        taken[pool_indices[turn][choice]] = True
        redundancy.record(int(pool_indices[turn][choice]))
        picks_per_interest[turn] += 1
    return picked


def _universe_vectors(pools: Sequence[Sequence[Candidate]], position: dict[str, int]) -> np.ndarray:
    vectors: list[np.ndarray | None] = [None] * len(position)
    for pool in pools:
        for candidate in pool:
            if vectors[position[candidate.item_id]] is None:
                vectors[position[candidate.item_id]] = np.asarray(candidate.vector, dtype=np.float64)
    return np.stack([vector for vector in vectors if vector is not None])  # every position is filled


# ---------------------------------------------------------------- the whole step


def rank(
    per_interest: Sequence[Sequence[Candidate]],
    importances: Sequence[float],
    negatives: Sequence[Interest],
    k: int,
    diversity: float,
    strategy: MergeStrategy = MergeStrategy.PROPORTIONAL,
    negative_strength: float = 1.0,
    reject_penalty: float = 0.5,
) -> list[Ranked]:
    """Penalise, merge, diversify: the final top k.

    Candidates whose negative penalty reaches `reject_penalty` are held back
    and only fill slots nothing else can. A lower score alone is not enough:
    a near copy of a disliked item is, by being unlike the liked items, exactly
    what MMR's diversity term rewards, and an interest's quota could also reach
    down to it. With the defaults a fresh dislike (confidence 0.75) holds back
    items within cosine ~0.83 of it, while skips (confidence at most 0.33 for
    one) only demote.
    """
    strategy = MergeStrategy(strategy)
    accepted: list[list[Candidate]] = []
    held_back: list[list[Candidate]] = []
    for candidates in per_interest:
        kept, rejected = _split_by_penalty(candidates, negatives, negative_strength, reject_penalty)
        accepted.append(kept)
        held_back.append(rejected)
    chosen = _select(accepted, importances, k, diversity, strategy)
    if len(chosen) < k:
        chosen_ids = {c.item_id for c in chosen}
        leftovers = [[c for c in candidates if c.item_id not in chosen_ids] for candidates in held_back]
        chosen += _select(leftovers, importances, k - len(chosen), diversity=0.0, strategy=MergeStrategy.SCORE)
    return [Ranked(item_id=c.item_id, score=c.score, interest_index=c.interest_index) for c in chosen]


def _split_by_penalty(
    candidates: Sequence[Candidate], negatives: Sequence[Interest], strength: float, reject_penalty: float
) -> tuple[list[Candidate], list[Candidate]]:
    """(kept, held back) candidates, both with penalised scores."""
    kept: list[Candidate] = []
    held_back: list[Candidate] = []
    for candidate, penalty in _with_penalties(candidates, negatives, strength):
        (held_back if penalty >= reject_penalty else kept).append(candidate)
    return kept, held_back


def _select(
    per_interest: Sequence[Sequence[Candidate]],
    importances: Sequence[float],
    k: int,
    diversity: float,
    strategy: MergeStrategy,
) -> list[Candidate]:
    if strategy is MergeStrategy.PROPORTIONAL:
        return proportional_mmr(per_interest, importances, k, diversity)
    return mmr(merge_candidates(per_interest), k, diversity)
