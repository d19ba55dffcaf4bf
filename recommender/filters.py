"""Payload filters: the domain's own types, and their one translation to Qdrant.

Keys are the caller's payload keys ("color", "brand.name", "tags[]"). The
catalog keeps caller payloads under one reserved key so they can never clash
with Lookalike's own fields; that prefix is added here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from qdrant_client import models

from recommender.ids import point_id

PAYLOAD_KEY = "payload"

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


def to_qdrant(filter_: Filter | None) -> models.Filter | None:
    if filter_ is None or filter_.is_empty:
        return None
    return _filter(filter_, prefix=f"{PAYLOAD_KEY}.", nested=False)


def _filter(filter_: Filter, prefix: str, nested: bool) -> models.Filter:
    def convert(conditions: tuple[Condition, ...]) -> list | None:
        return [_condition(condition, prefix, nested) for condition in conditions] or None

    return models.Filter(must=convert(filter_.must), should=convert(filter_.should),
                         must_not=convert(filter_.must_not))


def _condition(condition: Condition, prefix: str, nested: bool):
    if isinstance(condition, Filter):
        return _filter(condition, prefix, nested)
    if isinstance(condition, HasId):
        return models.HasIdCondition(has_id=[point_id(item_id) for item_id in condition.item_ids])
    if isinstance(condition, Nested):
        # Keys inside a nested filter are relative to each array element.
        return models.NestedCondition(nested=models.Nested(
            key=prefix + condition.key, filter=_filter(condition.filter, prefix="", nested=True)))
    if isinstance(condition, IsEmpty):
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=prefix + condition.key))
    key = prefix + condition.key
    if isinstance(condition, Match):
        return models.FieldCondition(key=key, match=models.MatchValue(value=condition.value))
    if isinstance(condition, MatchAny):
        return models.FieldCondition(key=key, match=models.MatchAny(any=list(condition.values)))
    if isinstance(condition, MatchExcept):
        return models.FieldCondition(key=key, match=models.MatchExcept(**{"except": list(condition.values)}))
    if isinstance(condition, Range):
        return models.FieldCondition(key=key, range=models.Range(
            gt=condition.gt, gte=condition.gte, lt=condition.lt, lte=condition.lte))
    if isinstance(condition, DatetimeRange):
        return models.FieldCondition(key=key, range=models.DatetimeRange(
            gt=condition.gt, gte=condition.gte, lt=condition.lt, lte=condition.lte))
    raise TypeError(f"unknown filter condition {condition!r}")
