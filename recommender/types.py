"""Plain domain types shared by the catalog, the profiles and the ranking.

Nothing here knows about gRPC, protobuf or torch: vectors are numpy float32
arrays and times are timezone-aware datetimes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Sequence

import numpy as np


class VectorSpace(str, enum.Enum):
    """Which named vector of an item a query runs against."""

    IMAGE = "image"
    TEXT = "text"


class SearchTarget(str, enum.Enum):
    """Which item vectors a search compares the query with."""

    IMAGE = "image"
    TEXT = "text"
    BOTH = "both"  # one ranked list fused from the image and the text results


@dataclass(frozen=True)
class ItemInput:
    """An item as a caller hands it in; vectors already computed by the embedder."""

    item_id: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    text: str | None = None
    image_vector: np.ndarray | None = None
    text_vector: np.ndarray | None = None


@dataclass(frozen=True)
class StoredItem:
    """An item as the catalog holds it."""

    item_id: str
    payload: Mapping[str, Any]
    text: str | None
    has_image: bool
    image_vector: np.ndarray | None = None
    text_vector: np.ndarray | None = None

    def vector(self, space: VectorSpace) -> np.ndarray | None:
        return self.image_vector if space is VectorSpace.IMAGE else self.text_vector


@dataclass(frozen=True)
class Scored:
    """One search hit."""

    item_id: str
    score: float
    payload: Mapping[str, Any]
    text: str | None = None


@dataclass(frozen=True)
class SearchParams:
    limit: int = 10
    offset: int = 0
    score_threshold: float | None = None


class EventType(str, enum.Enum):
    """What a user did with an item. Negative types push recommendations away."""

    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    LIKE = "like"
    DISLIKE = "dislike"
    SKIP = "skip"

    @property
    def is_negative(self) -> bool:
        return self in (EventType.DISLIKE, EventType.SKIP)


@dataclass(frozen=True)
class Event:
    """One interaction. `weight` scales the per-type weight (1.0 = as configured)."""

    user_id: str
    item_id: str
    event_type: EventType
    timestamp: datetime
    weight: float = 1.0


@dataclass(frozen=True)
class Interest:
    """One cluster of a user's history: a unit centroid and the items behind it.

    `importance` is this interest's share of the user's positive (or negative)
    weight, so the importances of one profile side sum to 1.
    `item_ids` are ordered by how much each item contributed, largest first.
    """

    centroid: np.ndarray
    importance: float
    weight: float
    item_ids: Sequence[str]


@dataclass(frozen=True)
class UserProfile:
    user_id: str
    interests: Sequence[Interest]
    negatives: Sequence[Interest]
    seen_item_ids: frozenset[str]
    event_count: int

    @property
    def is_cold(self) -> bool:
        return not self.interests
