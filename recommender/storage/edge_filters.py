"""Domain filters -> Qdrant Edge's own filter types, for the embedded implementation."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import numpy as np
import qdrant_edge as edge

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


def to_edge(filter_: Filter | None) -> edge.Filter | None:
    if filter_ is None or filter_.is_empty:
        return None
    return _filter(filter_, prefix=f"{PAYLOAD_KEY}.", nested=False)


def _filter(filter_: Filter, prefix: str, nested: bool) -> edge.Filter:
    def convert(conditions: tuple[Condition, ...]) -> list | None:
        return [_condition(condition, prefix, nested) for condition in conditions] or None

    return edge.Filter(must=convert(filter_.must), should=convert(filter_.should),
                       must_not=convert(filter_.must_not))


def _condition(condition: Condition, prefix: str, nested: bool):
    if isinstance(condition, Filter):
        return _filter(condition, prefix, nested)
    if isinstance(condition, HasId):
        if nested:  # refused by service/validation.py before it gets here
            raise ValueError("has_id cannot be used inside a nested condition")
        return edge.HasIdCondition({point_id(item_id) for item_id in condition.item_ids})
    if isinstance(condition, Nested):
        # Keys inside a nested filter are relative to each array element.
        return edge.NestedCondition(prefix + condition.key, _filter(condition.filter, prefix="", nested=True))
    if isinstance(condition, IsEmpty):
        return edge.IsEmptyCondition(prefix + condition.key)
    key = prefix + condition.key
    if isinstance(condition, Match):
        return edge.FieldCondition(key=key, match=edge.MatchValue(_scalar(condition.value)))
    if isinstance(condition, MatchAny):
        return edge.FieldCondition(key=key, match=edge.MatchAny(cast(Any, list(condition.values))))
    if isinstance(condition, MatchExcept):
        return edge.FieldCondition(key=key, match=edge.MatchExcept(cast(Any, list(condition.values))))
    if isinstance(condition, Range):
        return edge.FieldCondition(key=key, range=edge.RangeFloat(
            gt=condition.gt, gte=condition.gte, lt=condition.lt, lte=condition.lte))
    if isinstance(condition, DatetimeRange):
        return edge.FieldCondition(key=key, range=edge.RangeDateTime(
            gt=_iso(condition.gt), gte=_iso(condition.gte), lt=_iso(condition.lt), lte=_iso(condition.lte)))
    raise TypeError(f"unknown filter condition {condition!r}")


def _scalar(value):
    # qdrant-edge-py 0.9 reads a Python bool as the integer 1 or 0, which never matches a
    # boolean payload value; numpy's bool is not an int subclass and arrives as a boolean.
    return np.bool_(value) if isinstance(value, bool) else value


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
