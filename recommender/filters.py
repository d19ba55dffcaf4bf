"""Payload filters: the domain's own types, free of any storage engine.

Keys are the caller's payload keys ("color", "brand.name", "tags[]"). Each
storage implementation translates these types into its engine's own filters
(recommender/storage/*_filters.py) and adds the reserved payload prefix there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

Scalar = str | int | bool


@dataclass(frozen=True)
class Match:
    key: str
    value: Scalar


@dataclass(frozen=True)
class MatchAny:
    key: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class MatchExcept:
    key: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Range:
    key: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class DatetimeRange:
    key: str
    gt: datetime | None = None
    gte: datetime | None = None
    lt: datetime | None = None
    lte: datetime | None = None


@dataclass(frozen=True)
class IsEmpty:
    key: str


@dataclass(frozen=True)
class HasId:
    item_ids: tuple[str, ...]


@dataclass(frozen=True)
class Nested:
    key: str
    filter: Filter


@dataclass(frozen=True)
class Filter:
    must: tuple[Condition, ...] = ()
    should: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.must or self.should or self.must_not)

    def and_also(self, *conditions: Condition) -> Filter:
        return Filter(must=self.must + tuple(conditions), should=self.should, must_not=self.must_not)

    def excluding(self, *conditions: Condition) -> Filter:
        return Filter(must=self.must, should=self.should, must_not=self.must_not + tuple(conditions))


Condition = Match | MatchAny | MatchExcept | Range | DatetimeRange | IsEmpty | HasId | Nested | Filter
