"""What the service's use cases (service/app.py) are asked to do, free of protobuf.

service/convert.py decodes wire messages into these; service/validation.py
checks them; the use cases act on them. Nothing here imports grpc, protobuf
or torch, so every layer can share them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from recommender.filters import Filter
from recommender.types import Event, SearchParams, SearchTarget


@dataclass(frozen=True)
class TextQuery:
    text: str


@dataclass(frozen=True)
class ImageQuery:
    image: bytes


@dataclass(frozen=True)
class ItemQuery:
    item_id: str


@dataclass(frozen=True)
class VectorQuery:
    values: np.ndarray


Query = TextQuery | ImageQuery | ItemQuery | VectorQuery


@dataclass(frozen=True)
class SearchSpec:
    query: Query
    target: SearchTarget
    filter: Filter | None
    params: SearchParams
    user_id: str | None = None  # whose seen items to leave out (SimilarItems)
    exclude_seen: bool = True


@dataclass(frozen=True)
class RawItem:
    """An item off the wire: `index` is its position in the whole upsert stream."""

    index: int
    item_id: str
    image: bytes = b""
    text: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    image_vector: Sequence[float] | None = None
    text_vector: Sequence[float] | None = None


@dataclass(frozen=True)
class EventBatch:
    """Events that converted, their idempotency keys, and the ones that did not (by request index)."""

    events: list[Event]
    event_ids: list[str | None]
    positions: list[int]
    errors: list[tuple[int, str]]
