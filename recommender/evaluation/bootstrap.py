"""Paired bootstrap intervals for the ratio of two strategies' means over the same users."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


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
    ratios = [ratio(a, b) for a, b in zip(ours_array[samples].mean(axis=1), baseline_array[samples].mean(axis=1))]
    tail = 100.0 * (1.0 - level) / 2.0
    # No interpolation: resamples where the baseline never hits give an infinite ratio.
    low, high = np.percentile(ratios, [tail, 100.0 - tail], method="inverted_cdf")
    return float(low), float(high)


def ratio(ours: float, baseline: float) -> float:
    if baseline > 0:
        return float(ours / baseline)
    return math.inf if ours > 0 else 0.0
