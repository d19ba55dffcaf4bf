"""cluster_unit_vectors against its definition, written the slow, obvious way.

The library computes every pair's merge test at once from the clusters' weighted
sums (one matrix product per merge round) and recentres all clusters with one
product. This oracle is the algorithm as the docstrings state it: one cluster at
a time, one pair at a time, through the public building blocks (`fit_ratio`,
`typical_radius`, `should_merge`). Both must decide the same clustering.
"""

from __future__ import annotations

import numpy as np
import pytest

from recommender.profiles import (
    MIN_INTEREST_SHARE,
    OVERSEED,
    cluster_unit_vectors,
    farthest_point_seeds,
    fit_ratio,
    leave_one_out_radius,
    should_merge,
    typical_radius,
)

MERGE_COSINE, MERGE_FIT_RATIO = 0.9, 2.0


def direction(vectors: np.ndarray, weights: np.ndarray, members: np.ndarray) -> np.ndarray:
    total = weights[members] @ vectors[members]
    norm = np.linalg.norm(total)
    return vectors[members][int(np.argmax(weights[members]))] if norm < 1e-12 else total / norm


def oracle_kmeans(vectors, weights, centroids, max_iterations=50):
    labels = np.full(len(vectors), -1)
    for _ in range(max_iterations):
        new = np.argmax(vectors @ centroids.T, axis=1)
        if np.array_equal(new, labels):
            break
        occupied = np.unique(new)
        labels = np.searchsorted(occupied, new)
        centroids = np.stack([direction(vectors, weights, labels == c) for c in range(len(occupied))])
    return labels, centroids


def oracle_pair(vectors, weights, labels, centroids, k):
    members = [labels == c for c in range(len(centroids))]
    typical = typical_radius(vectors, weights, members)
    best, best_key = None, np.inf
    for a in range(len(centroids)):
        for b in range(a + 1, len(centroids)):
            similarity = float(centroids[a] @ centroids[b])
            ratio = fit_ratio(vectors[members[a]], weights[members[a]], centroids[a],
                              vectors[members[b]], weights[members[b]], centroids[b], fallback_radius=typical)
            key = -1.0 - similarity if similarity >= MERGE_COSINE else ratio
            if should_merge(similarity, ratio, MERGE_COSINE, MERGE_FIT_RATIO) and key < best_key:
                best, best_key = (a, b), key
    if best is not None:
        return best
    mass = np.array([weights[m].sum() for m in members])
    pairs = [(a, b) for a in range(len(centroids)) for b in range(a + 1, len(centroids))]
    if len(centroids) <= k:
        pairs = [(a, b) for a, b in pairs if min(mass[a], mass[b]) / mass.sum() < MIN_INTEREST_SHARE]
    if not pairs:
        return None
    return min(pairs, key=lambda p: mass[p[0]] * mass[p[1]] / (mass[p[0]] + mass[p[1]])
               * float(np.sum((centroids[p[0]] - centroids[p[1]]) ** 2)))


def oracle_clustering(vectors, weights, k):
    seeds = farthest_point_seeds(vectors, weights, min(len(vectors), OVERSEED * k))
    labels, centroids = oracle_kmeans(vectors, weights, vectors[seeds])
    while len(centroids) > 1:
        pair = oracle_pair(vectors, weights, labels, centroids, k)
        if pair is None:
            break
        merged = direction(vectors, weights, (labels == pair[0]) | (labels == pair[1]))
        kept = [centroids[c] for c in range(len(centroids)) if c not in pair]
        labels, centroids = oracle_kmeans(vectors, weights, np.stack(kept + [merged]))
    return labels, centroids


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def history(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Random and clustered histories, of all sizes the profile window allows, with
    duplicates, equal weights and spread-out weights (decayed views next to purchases)."""
    rng = np.random.default_rng(seed)
    dim = int(rng.choice([3, 16, 64, 512]))
    n = int(rng.integers(1, 120))
    if seed % 3 == 0:
        vectors = unit_rows(rng.standard_normal((n, dim)))
    else:
        tastes = unit_rows(rng.standard_normal((int(rng.integers(1, 7)), dim)))
        spread = float(rng.choice([0.05, 0.3, 1.0]))
        vectors = unit_rows(tastes[rng.integers(0, len(tastes), n)] + spread * rng.standard_normal((n, dim)))
    if seed % 5 == 0 and n > 3:
        vectors[: n // 3] = vectors[0]
    weights = np.ones(n) if seed % 7 == 0 else np.exp(rng.normal(0, 1.0, n)) * rng.choice([0.3, 1.0, 3.0, 5.0], n)
    if seed % 4 == 1:  # a year of decay: a fresh purchase beside views a million times lighter
        weights *= 0.5 ** rng.uniform(0, 26, n)
    return vectors, weights, int(rng.integers(1, 6))


@pytest.mark.parametrize("seed", range(80))
def test_clustering_decides_what_its_definition_decides(seed):
    vectors, weights, k = history(seed)
    labels, centroids = cluster_unit_vectors(vectors, weights, k, MERGE_COSINE, MERGE_FIT_RATIO)
    expected_labels, expected_centroids = oracle_clustering(vectors, weights, k)
    assert labels.tolist() == expected_labels.tolist()
    np.testing.assert_allclose(centroids, expected_centroids, atol=1e-9)


def test_oracle_radius_is_the_documented_one():
    # The oracle leans on leave_one_out_radius through typical_radius and fit_ratio; pin it to its formula.
    rng = np.random.default_rng(3)
    vectors, weights = unit_rows(rng.standard_normal((6, 8))), rng.uniform(0.5, 2.0, 6)
    expected = 0.0
    for i in range(6):
        others = np.delete(np.arange(6), i)
        centre = weights[others] @ vectors[others]
        expected += weights[i] * (1 - vectors[i] @ centre / np.linalg.norm(centre))
    assert leave_one_out_radius(vectors, weights) == pytest.approx(expected / weights.sum())
