"""Domain filters to Qdrant's models: caller keys live under the payload prefix."""

from __future__ import annotations

from datetime import datetime, timezone

from qdrant_client import models

from recommender import filters as f
from recommender.ids import point_id
from recommender.storage.server_filters import to_qdrant


def test_keys_are_prefixed_and_ids_become_point_ids():
    converted = to_qdrant(f.Filter(must=(f.Match("color", "red"), f.HasId(("sku-1",)))))
    assert converted.must[0] == models.FieldCondition(key="payload.color", match=models.MatchValue(value="red"))
    assert converted.must[1] == models.HasIdCondition(has_id=[point_id("sku-1")])


def test_nested_keys_are_relative_to_the_array_elements():
    converted = to_qdrant(f.Filter(must=(f.Nested("variants", f.Filter(must=(f.Range("count", lt=3),))),)))
    nested = converted.must[0].nested
    assert nested.key == "payload.variants"
    assert nested.filter.must[0].key == "count"


def test_datetime_ranges_and_except_keep_their_bounds():
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    converted = to_qdrant(f.Filter(must_not=(f.DatetimeRange("created_at", gte=moment),
                                               f.MatchExcept("shape", ("circle",)))))
    assert converted.must_not[0].range.gte == moment
    assert converted.must_not[1].match == models.MatchExcept(**{"except": ["circle"]})


def test_point_ids_are_stable_uuids():
    assert point_id("sku-1") == point_id("sku-1") != point_id("sku-2")
    assert len(point_id("sku-1")) == 36


def test_no_filter_means_none():
    assert to_qdrant(None) is None and to_qdrant(f.Filter()) is None
