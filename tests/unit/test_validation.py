"""The one validation layer: one set of caps, each error naming the field to fix."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from recommender import filters as f
from recommender.errors import InvalidArgument
from recommender.types import Event, EventType, RecommendQuery, SearchParams, SearchTarget
from service import validation
from service.requests import EventBatch, ItemQuery, Query, RawItem, SearchSpec, TextQuery, VectorQuery

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
DIM = 8


def search(query: Query | None = None, **params) -> SearchSpec:
    return SearchSpec(query=query or TextQuery("shoes"), target=SearchTarget.IMAGE, filter=None,
                      params=SearchParams(**params))


def refused(call, *args, field: str) -> str:
    with pytest.raises(InvalidArgument) as raised:
        call(*args)
    assert raised.value.field == field
    return str(raised.value)


def test_search_and_recommend_share_one_set_of_caps():
    for limit, offset in ((validation.MAX_LIMIT, validation.MAX_OFFSET), (1, 0)):
        validation.search(search(limit=limit, offset=offset), DIM)
        validation.recommend(RecommendQuery("u", limit=limit, offset=offset), DIM)
    refused(validation.search, search(offset=validation.MAX_OFFSET + 1), DIM, field="offset")
    refused(validation.recommend, RecommendQuery("u", offset=validation.MAX_OFFSET + 1), DIM, field="offset")
    refused(validation.search, search(limit=validation.MAX_LIMIT + 1), DIM, field="limit")
    refused(validation.recommend, RecommendQuery("u", limit=validation.MAX_LIMIT + 1), DIM, field="limit")


@pytest.mark.parametrize("spec, field", [
    (search(TextQuery("  ")), "query.text"),
    (search(ItemQuery("")), "item_id"),
    (search(ItemQuery("x" * (validation.MAX_ID_LENGTH + 1))), "item_id"),
    (search(VectorQuery(np.ones(DIM - 1, dtype=np.float32))), "query.vector"),
    (search(VectorQuery(np.full(DIM, np.nan, dtype=np.float32))), "query.vector"),
    (search(VectorQuery(np.zeros(DIM, dtype=np.float32))), "query.vector"),
    (search(score_threshold=float("inf")), "score_threshold"),
])
def test_bad_searches_name_their_field(spec, field):
    refused(validation.search, spec, DIM, field=field)


@pytest.mark.parametrize("filter_, field", [
    (f.Filter(must=(f.Nested("variants", f.Filter(must=(f.HasId(("x",)),))),)),
     "filter.must[0].nested.filter.must[0].has_id"),
    (f.Filter(must=(f.Range("price"),)), "filter.must[0].field.range"),
    (f.Filter(should=(f.Range("price", lt=float("nan")),)), "filter.should[0].field.range"),
    (f.Filter(must=(f.Match(" ", "x"),)), "filter.must[0].field.key"),
    (f.Filter(must_not=(f.MatchExcept("shape", ()),)), "filter.must_not[0].field.except_keyword"),
    (f.Filter(must=(f.HasId(()),)), "filter.must[0].has_id.item_ids"),
    (f.Filter(must=(f.Filter(),)), "filter.must[0].filter"),
    (f.Filter(must=(f.Nested("variants", f.Filter()),)), "filter.must[0].nested.filter"),
    (f.Filter(must=(f.DatetimeRange("at"),)), "filter.must[0].field.datetime_range"),
])
def test_bad_filters_name_the_condition(filter_, field):
    refused(validation.filter_, filter_, field=field)


def test_an_empty_filter_never_deletes_everything():
    assert "every item" in refused(validation.delete_selector, f.Filter(), field="filter")
    refused(validation.delete_selector, [], field="ids")
    refused(validation.delete_selector, ["ok", ""], field="ids[1]")
    validation.delete_selector(f.Filter(must=(f.Match("color", "red"),)))


def test_bad_items_become_errors_and_the_good_ones_go_on():
    raws = [RawItem(0, "good", text="fine"), RawItem(1, "", text="no id"), RawItem(2, "empty"),
            RawItem(3, "short", image_vector=[0.1] * (DIM - 1)), RawItem(4, "vec", text_vector=[0.1] * DIM)]
    valid, errors = validation.raw_items(raws, DIM)
    assert [raw.item_id for raw in valid] == ["good", "vec"]
    assert [(error.index, error.message.split(":")[0]) for error in errors] == [
        (1, "items[1].id"), (2, "items[2]"), (3, "items[3].image_vector")]


def test_bad_events_become_errors_by_request_index_and_the_good_ones_go_on():
    def event(user="u", item="i", weight=1.0, at=NOW) -> Event:
        return Event(user, item, EventType.VIEW, at, weight)

    batch = EventBatch([event(), event(user=""), event(weight=float("nan")), event(at=NOW + timedelta(days=3)),
                        event(item="x" * 600)], ["a", None, None, None, None], [0, 2, 3, 4, 5], [(1, "events[1].type")])
    kept, errors = validation.events(batch, NOW)
    assert (kept.events, kept.event_ids, kept.positions) == ([event()], ["a"], [0])
    assert [(error.index, error.message.split(":")[0]) for error in errors] == [
        (2, "events[2].user_id"), (3, "events[3].weight"), (4, "events[4].timestamp"), (5, "events[5].item_id")]
    refused(validation.events, EventBatch([], [], [], []), NOW, field="events")


def test_embed_caps_and_empty_texts():
    refused(validation.embed, [], [], field="texts")
    refused(validation.embed, ["a", " "], [], field="texts[1]")
    refused(validation.embed, ["a"] * (validation.MAX_EMBED_INPUTS + 1), [], field="texts")
    validation.embed(["a"], [b"png"])


@pytest.mark.parametrize("query, field", [
    (RecommendQuery(""), "user_id"),
    (RecommendQuery("u", diversity=1.5), "diversity"),
    (RecommendQuery("u", diversity=float("nan")), "diversity"),
    (RecommendQuery("u", filter=f.Filter(must=(f.Range("p"),))), "filter.must[0].field.range"),
])
def test_bad_recommend_queries_name_their_field(query, field):
    refused(validation.recommend, query, DIM, field=field)


def test_recommend_examples_are_checked_and_stand_in_for_a_user():
    from recommender.types import Example

    validation.recommend(RecommendQuery("", examples=(Example(item_id="a"),)), DIM)  # an anonymous session
    refusal = refused(validation.recommend, RecommendQuery(""), DIM, field="user_id")
    assert "give a user_id, examples, or both" in refusal
    refused(validation.recommend, RecommendQuery("u", examples=(Example(item_id="a", weight=0.0),)), DIM,
            field="examples[0].weight")
    refused(validation.recommend, RecommendQuery("u", examples=(Example(vector=np.zeros(DIM)),)), DIM,
            field="examples[0].vector")
    refused(validation.recommend, RecommendQuery("u", examples=(Example(item_id=" "),)), DIM,
            field="examples[0].item_id")
    too_many = tuple(Example(item_id=f"i{n}") for n in range(validation.MAX_EXAMPLES + 1))
    refused(validation.recommend, RecommendQuery("u", examples=too_many), DIM, field="examples")
