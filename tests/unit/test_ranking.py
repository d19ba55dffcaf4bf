"""Merging per-interest candidates: budgets, negatives, MMR, proportional mixes."""

from __future__ import annotations

import random
import zlib
from collections import Counter

import numpy as np
import pytest

from recommender.ranking import (
    Candidate,
    MergeStrategy,
    Ranked,
    merge_candidates,
    mmr,
    negative_penalties,
    proportional_mmr,
    rank,
)
from recommender.types import Interest

DIM = 32


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def near(base: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    other = rng.standard_normal(DIM)
    other = other - (other @ base) * base / (base @ base)
    return unit(cosine * unit(base) + np.sqrt(1 - cosine**2) * unit(other))


def candidate(item_id: str, score: float, vector: np.ndarray | None = None, interest: int = 0) -> Candidate:
    if vector is None:
        vector = unit(np.random.default_rng(zlib.crc32(item_id.encode())).standard_normal(DIM))
    return Candidate(item_id, score, vector, interest)


def negative(centroid: np.ndarray, weight: float = 3.0, importance: float = 1.0) -> Interest:
    return Interest(centroid=unit(centroid), importance=importance, weight=weight, item_ids=("disliked",))


def ids(candidates) -> list[str]:
    return [c.item_id for c in candidates]


def cluster_candidates(rng, prefix: str, centre: np.ndarray, scores, interest: int = 0, cosine: float = 0.95):
    return [candidate(f"{prefix}{i:02d}", s, near(centre, cosine, rng), interest) for i, s in enumerate(scores)]


# ---------------------------------------------------------------- merge_candidates


def test_merge_keeps_the_best_score_and_its_interest_and_orders_by_score_then_id():
    merged = merge_candidates(
        [
            [candidate("x", 0.5, interest=0), candidate("y", 0.8, interest=0)],
            [candidate("x", 0.9, interest=1), candidate("a", 0.8, interest=1)],
        ]
    )
    assert [(c.item_id, c.score, c.interest_index) for c in merged] == [
        ("x", 0.9, 1),
        ("a", 0.8, 1),
        ("y", 0.8, 0),
    ]


def test_merge_breaks_equal_scores_to_the_earlier_interest_whatever_the_list_order():
    first = [candidate("x", 0.5, interest=0)]
    second = [candidate("x", 0.5, interest=1)]
    assert merge_candidates([first, second])[0].interest_index == 0
    assert merge_candidates([second, first])[0].interest_index == 0


# ---------------------------------------------------------------- negatives


def test_an_item_near_a_disliked_centroid_falls_below_all_others():
    rng = np.random.default_rng(0)
    disliked = unit(rng.standard_normal(DIM))
    copy = candidate("copy_of_disliked", 0.95, near(disliked, 0.98, rng))
    others = [candidate(f"o{i}", s, near(disliked, 0.2, rng)) for i, s in enumerate([0.7, 0.6, 0.5, 0.4, 0.35])]
    penalties = negative_penalties(np.stack([c.vector for c in [copy] + others]), [negative(disliked)])
    assert copy.score - penalties[0] < min(c.score for c in others) - 0.1
    # Below the margin nothing changes.
    assert penalties[1:].tolist() == [0.0] * len(others)


def test_penalty_formula_at_the_centroid_and_below_the_margin():
    centroid = unit(np.arange(1.0, DIM + 1))
    rng = np.random.default_rng(1)
    vectors = np.stack([centroid, near(centroid, 0.75, rng), near(centroid, 0.4, rng)])
    penalties = negative_penalties(vectors, [negative(centroid, weight=3.0)], strength=1.0, margin=0.5)
    # confidence 3 / (3 + 1) = 0.75; closeness 1, (0.75 - 0.5) / 0.5 = 0.5, and 0.
    np.testing.assert_allclose(penalties, [0.75, 0.375, 0.0], atol=1e-6)


def test_weaker_and_older_evidence_penalises_less():
    centroid = unit(np.arange(1.0, DIM + 1))
    vectors = centroid[None, :]
    dislike = negative_penalties(vectors, [negative(centroid, weight=3.0)])[0]
    skip = negative_penalties(vectors, [negative(centroid, weight=0.5)])[0]
    assert dislike > skip > 0


def test_more_negatives_do_not_dilute_an_existing_one():
    rng = np.random.default_rng(2)
    disliked = unit(rng.standard_normal(DIM))
    elsewhere = [unit(rng.standard_normal(DIM)) for _ in range(3)]
    vectors = near(disliked, 0.97, rng)[None, :]
    alone = negative_penalties(vectors, [negative(disliked, importance=1.0)])
    many = [negative(disliked, importance=0.25)] + [negative(e, importance=0.25) for e in elsewhere]
    among_many = negative_penalties(vectors, many)
    np.testing.assert_allclose(among_many, alone, rtol=1e-12)


def test_no_negatives_leaves_candidates_as_they_are():
    cands = [candidate("b", 0.4), candidate("a", 0.9)]
    assert negative_penalties(np.stack([c.vector for c in cands]), []).tolist() == [0.0, 0.0]
    assert [(r.item_id, r.score) for r in rank([cands], [1.0], [], k=2, diversity=0.0)] == [("a", 0.9), ("b", 0.4)]


# ---------------------------------------------------------------- mmr


def three_clusters(rng):
    centres = [unit(rng.standard_normal(DIM)) for _ in range(3)]
    return (
        centres,
        cluster_candidates(rng, "a", centres[0], [0.90, 0.89, 0.88, 0.87])
        + cluster_candidates(rng, "b", centres[1], [0.70, 0.69])
        + cluster_candidates(rng, "c", centres[2], [0.60, 0.59]),
    )


def test_mmr_without_diversity_is_score_order_with_ties_by_id():
    cands = [candidate("c", 0.5), candidate("b", 0.9), candidate("a", 0.5), candidate("d", 0.7)]
    assert ids(mmr(cands, 4, diversity=0.0)) == ["b", "d", "a", "c"]
    assert ids(mmr(cands, 2, diversity=0.0)) == ["b", "d"]


def test_mmr_with_diversity_picks_one_item_per_cluster():
    _, cands = three_clusters(np.random.default_rng(3))
    assert ids(mmr(cands, 3, diversity=0.0)) == ["a00", "a01", "a02"]
    picked = ids(mmr(cands, 3, diversity=0.7))
    assert picked[0] == "a00"
    assert sorted(item[0] for item in picked) == ["a", "b", "c"]


def test_mmr_is_deterministic_for_shuffled_input():
    _, cands = three_clusters(np.random.default_rng(4))
    reference = ids(mmr(cands, 6, diversity=0.5))
    for seed in range(3):
        shuffled = cands[:]
        random.Random(seed).shuffle(shuffled)
        assert ids(mmr(shuffled, 6, diversity=0.5)) == reference


def test_mmr_at_full_diversity_still_starts_from_the_most_relevant_item():
    _, cands = three_clusters(np.random.default_rng(5))
    assert ids(mmr(cands, 1, diversity=1.0)) == ["a00"]


def test_mmr_returns_each_item_once_and_no_more_than_exists():
    cands = [candidate("x", 0.9), candidate("x", 0.3), candidate("y", 0.5)]
    assert ids(mmr(cands, 10, diversity=0.3)) == ["x", "y"]


def test_mmr_rejects_diversity_outside_unit_interval():
    with pytest.raises(ValueError, match="diversity"):
        mmr([candidate("x", 0.9)], 1, diversity=1.5)


# ---------------------------------------------------------------- proportional mixes


def tight_minor_loose_major(rng):
    """A 70% interest whose neighbours score ~0.6 and a 30% one, tighter, scoring ~0.9."""
    major_centre, minor_centre = unit(rng.standard_normal(DIM)), unit(rng.standard_normal(DIM))
    major = [candidate(f"major{i:02d}", 0.65 - 0.005 * i, near(major_centre, 0.65, rng), 0) for i in range(20)]
    minor = [candidate(f"minor{i:02d}", 0.95 - 0.005 * i, near(minor_centre, 0.95, rng), 1) for i in range(20)]
    return [major, minor]


def interest_mix(candidates) -> Counter:
    return Counter(c.interest_index for c in candidates)


def test_score_merge_lets_a_tight_minor_interest_take_everything():
    # Why PROPORTIONAL exists: raw cosines from different centroids are not comparable.
    per_interest = tight_minor_loose_major(np.random.default_rng(6))
    ranked = rank(per_interest, [0.7, 0.3], [], k=10, diversity=0.0, strategy=MergeStrategy.SCORE)
    assert Counter(r.interest_index for r in ranked) == Counter({1: 10})


@pytest.mark.parametrize("diversity", [0.0, 0.3, 0.7])
def test_proportional_merge_gives_a_70_30_user_7_and_3(diversity):
    per_interest = tight_minor_loose_major(np.random.default_rng(7))
    top = proportional_mmr(per_interest, [0.7, 0.3], 10, diversity)
    assert interest_mix(top) == Counter({0: 7, 1: 3})
    assert interest_mix(top[:3]) == Counter({0: 2, 1: 1})  # every prefix follows the mix


def test_proportional_merge_orders_each_interest_by_its_own_score():
    per_interest = tight_minor_loose_major(np.random.default_rng(8))
    top = proportional_mmr(per_interest, [0.7, 0.3], 10, diversity=0.0)
    assert ids(top) == [
        "major00", "minor00", "major01", "major02", "major03", "minor01", "major04", "major05", "minor02", "major06",
    ]


def test_an_exhausted_interest_leaves_its_slots_to_the_others():
    major = [candidate(f"m{i}", 0.6, interest=0) for i in range(10)]
    minor = [candidate("only", 0.9, interest=1)]
    top = proportional_mmr([major, minor], [0.3, 0.7], 6, diversity=0.0)
    assert len(top) == 6 and interest_mix(top) == Counter({0: 5, 1: 1})


def test_an_item_retrieved_by_two_interests_appears_once():
    shared = unit(np.arange(1.0, DIM + 1))
    first = [candidate("shared", 0.9, shared, 0), candidate("a", 0.5, interest=0)]
    second = [candidate("shared", 0.8, shared, 1), candidate("b", 0.7, interest=1)]
    merged = proportional_mmr([first, second], [0.5, 0.5], k=10, diversity=0.0)
    assert sorted(ids(merged)) == ["a", "b", "shared"]
    assert merged[0].item_id == "shared" and merged[0].interest_index == 0


def test_proportional_merge_checks_lengths():
    with pytest.raises(ValueError, match="importances"):
        proportional_mmr([[candidate("a", 0.5)]], [0.5, 0.5], 1, 0.0)


# ---------------------------------------------------------------- the whole step


@pytest.mark.parametrize("strategy", list(MergeStrategy))
@pytest.mark.parametrize("diversity", [0.0, 0.8])
def test_a_near_copy_of_a_disliked_item_stays_out_of_the_top_k(strategy, diversity):
    rng = np.random.default_rng(9)
    liked, disliked = unit(rng.standard_normal(DIM)), unit(rng.standard_normal(DIM))
    cands = [candidate(f"ok{i}", 0.8 - 0.01 * i, near(liked, 0.9, rng)) for i in range(8)]
    # Highest score, and far from everything else, so both relevance and diversity favour it.
    cands.append(candidate("copy", 0.85, near(disliked, 0.99, rng)))
    ranked = rank([cands], [1.0], [negative(disliked)], k=5, diversity=diversity, strategy=strategy)
    assert "copy" not in [r.item_id for r in ranked]
    everything = rank([cands], [1.0], [negative(disliked)], k=20, diversity=diversity, strategy=strategy)
    assert len(everything) == 9 and everything[-1].item_id == "copy"  # only as a last resort


def test_rank_returns_ranked_items_with_their_interest():
    per_interest = tight_minor_loose_major(np.random.default_rng(10))
    ranked = rank(per_interest, [0.7, 0.3], [], k=4, diversity=0.0)
    assert ranked[:2] == [
        Ranked("major00", per_interest[0][0].score, 0),
        Ranked("minor00", per_interest[1][0].score, 1),
    ]
    assert len(ranked) == 4
