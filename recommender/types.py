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
    vector: np.ndarray | None = None  # only when the query asked for vectors


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


class Strategy(str, enum.Enum):
    """How recommendations are made; all but the default exist for A/B tests and evaluation."""

    MULTI_INTEREST = "multi_interest"
    SINGLE_CENTROID = "single_centroid"
    QDRANT_AVERAGE = "qdrant_average"
    QDRANT_BEST_SCORE = "qdrant_best_score"
    POPULAR = "popular"


@dataclass(frozen=True)
class Example:
    """An example for a recommendation: a catalog item or a raw vector (exactly one).

    It counts like an event of the user that happened now: weight 1 as much as
    a like, -1 as much as a dislike.
    """

    item_id: str | None = None
    vector: np.ndarray | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class RecommendQuery:
    user_id: str  # empty: an anonymous session, from the examples alone
    limit: int = 10
    offset: int = 0
    filter: Any = None  # recommender.filters.Filter | None (typed there to keep this module import-free)
    diversity: float = 0.2  # 0 = pure relevance, 1 = maximal diversity (MMR)
    exclude_seen: bool = True
    strategy: Strategy = Strategy.MULTI_INTEREST
    explain: bool = False
    examples: tuple[Example, ...] = ()


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    payload: Mapping[str, Any]
    text: str | None = None
    interest_index: int | None = None  # which of the user's interests retrieved it
    because: tuple[str, ...] = ()  # history items behind that interest (when explain is on)
    because_examples: tuple[int, ...] = ()  # positions of the query's examples behind it (explain)


@dataclass(frozen=True)
class Recommendations:
    items: Sequence[Recommendation]
    strategy: Strategy  # the strategy actually used (POPULAR on cold start)
    cold_start: bool
    has_more: bool
    unknown_example_ids: tuple[str, ...] = ()  # example ids not in the catalog, ignored


@dataclass(frozen=True)
class ItemError:
    """Why one item of an upsert stream was not stored; `index` is its stream position."""

    index: int
    item_id: str
    message: str


@dataclass
class UpsertOutcome:
    upserted: int = 0
    errors: list[ItemError] = field(default_factory=list)


@dataclass(frozen=True)
class EventError:
    index: int
    message: str


@dataclass
class RecordOutcome:
    recorded: int = 0
    unknown_item_ids: list[str] = field(default_factory=list)
    errors: list[EventError] = field(default_factory=list)
