"""Checks on vectors that come from callers rather than from the model."""

from __future__ import annotations

import numpy as np

from recommender.errors import InvalidArgument


def checked_vector(values, dim: int, field: str) -> np.ndarray:
    """A float32 copy of `values`, or InvalidArgument naming `field`."""
    vector = np.asarray(values, dtype=np.float32)
    if vector.ndim != 1 or vector.shape[0] != dim:
        raise InvalidArgument(field, f"has {vector.size} values; the model's dimension is {dim}")
    if not np.all(np.isfinite(vector)):
        raise InvalidArgument(field, "contains NaN or infinity")
    if not np.any(vector):
        raise InvalidArgument(field, "is all zeros; cosine similarity is undefined for it")
    return vector

