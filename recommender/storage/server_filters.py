"""Domain filters -> qdrant-client models, for the Qdrant server implementation."""

from __future__ import annotations

from qdrant_client import models

from recommender.filters import (
    Condition,
    DatetimeRange,
    Filter,
    HasId,
    IsEmpty,
    Match,
    MatchAny,
    MatchExcept,
    Nested,
    Range,
)
from recommender.ids import point_id
from recommender.storage.base import PAYLOAD_KEY


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
        if nested:  # refused by service/validation.py before it gets here
            raise ValueError("has_id cannot be used inside a nested condition")
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
