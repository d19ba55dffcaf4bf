"""RecordEvents, Recommend, GetProfile, ForgetUser and SimilarItems-for-a-user,
through the real server and embedded Qdrant.

Items carry precomputed vectors in tight clusters ("kinds"), so what a user
should get is known exactly; the semantic version with real images runs in
tests/model/ against the shipped demo model.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta, timezone

import grpc
import numpy as np
import pytest

from service.api.lookalike.v1 import types_pb2 as t
from service.client import Example, NewItem, UserEvent

KINDS = ["red-circle", "blue-square", "green-star", "yellow-hexagon"]
PER_KIND = 25
NOW = datetime.now(timezone.utc)


@pytest.fixture
def kinds_catalog(client, tiny_embedder):
    rng = np.random.default_rng(42)
    directions = {kind: unit(rng.normal(size=tiny_embedder.dim)) for kind in KINDS}
    items = []
    for kind in KINDS:
        for index in range(PER_KIND):
            vector = unit(directions[kind] + 0.12 * rng.normal(size=tiny_embedder.dim))
            items.append(NewItem(id=f"{kind}-{index:02d}", image_vector=vector.tolist(),
                                 payload={"kind": kind, "price": 10 + index, "in_stock": index % 2 == 0}))
    assert client.upsert(items).upserted == len(items)
    return directions


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def kind_of(item_id: str) -> str:
    return item_id.rsplit("-", 1)[0]


def events(user: str, kind: str, indices, event_type: str, start_hours_ago: float = 48) -> list[UserEvent]:
    return [UserEvent(user, f"{kind}-{index:02d}", event_type, timestamp=NOW - timedelta(hours=start_hours_ago - n))
            for n, index in enumerate(indices)]


def test_a_two_taste_user_gets_both_kinds_in_proportion_to_their_weight(client, kinds_catalog):
    history = events("ann", "red-circle", range(0, 7), "purchase") + events("ann", "blue-square", range(0, 3),
                                                                              "purchase")
    assert client.record_events(history).recorded == 10

    result = client.recommend("ann", limit=10, explain=True)
    counts = Counter(kind_of(item_id) for item_id in result.ids)
    assert not result.cold_start and result.strategy == "multi_interest"
    assert set(counts) == {"red-circle", "blue-square"}
    assert 6 <= counts["red-circle"] <= 8 and 2 <= counts["blue-square"] <= 4

    profile = client.profile("ann")
    assert len(profile.interests) == 2
    assert profile.interests[0].importance == pytest.approx(0.7, abs=0.02)
    for item in result.items:
        interest = profile.interests[item.interest_index]
        assert item.because and set(item.because) <= set(interest.item_ids)
        assert {kind_of(i) for i in item.because} == {kind_of(item.id)}, "explanations point at the same kind"


def test_a_dislike_removes_a_kind(client, kinds_catalog):
    client.record_events(events("bob", "green-star", range(0, 6), "like")
                         + events("bob", "yellow-hexagon", range(0, 6), "like"))
    before = Counter(kind_of(i) for i in client.recommend("bob", limit=10).ids)
    assert before["yellow-hexagon"] >= 3

    client.record_events(events("bob", "yellow-hexagon", range(6, 10), "dislike", start_hours_ago=12)
                         + events("bob", "yellow-hexagon", range(0, 6), "dislike", start_hours_ago=8))
    after = client.recommend("bob", limit=10)
    assert Counter(kind_of(i) for i in after.ids) == Counter({"green-star": 10})
    assert len(client.profile("bob").negatives) == 1


def test_seen_items_are_never_returned_unless_asked_for(client, kinds_catalog):
    seen = events("cy", "red-circle", range(0, 20), "view")
    client.record_events(seen)
    seen_ids = {event.item_id for event in seen}

    for page in range(3):
        result = client.recommend("cy", limit=10, offset=page * 10, diversity=0.0)
        assert not seen_ids & set(result.ids)
    with_seen = client.recommend("cy", limit=25, include_seen=True, diversity=0.0)
    assert seen_ids & set(with_seen.ids)


def test_filters_are_respected(client, kinds_catalog):
    client.record_events(events("dee", "red-circle", range(0, 5), "purchase")
                         + events("dee", "blue-square", range(0, 5), "purchase"))
    in_stock = t.Filter(must=[t.Condition(field=t.FieldCondition(key="in_stock", boolean=True))])
    result = client.recommend("dee", limit=10, filter=in_stock)
    stock = {item.id: item.payload["in_stock"] for item in result.items}
    assert stock and all(stock.values())


def test_page_tokens_walk_the_same_ranking_without_repeats(client, kinds_catalog):
    client.record_events(events("eve", "red-circle", range(0, 4), "like")
                         + events("eve", "green-star", range(4), "like"))
    full = client.recommend("eve", limit=30).ids
    first = client.recommend("eve", limit=10)
    second = client.recommend("eve", limit=10, page_token=first.next_page_token)
    assert first.next_page_token and first.ids + second.ids == full[:20]


@pytest.mark.parametrize("strategy", ["multi_interest", "qdrant_average", "popular"])
def test_a_page_token_is_issued_only_when_another_page_exists(client, kinds_catalog, strategy):
    client.record_events(events("pat", "red-circle", range(0, 5), "like"))
    blue = t.Filter(must=[t.Condition(field=t.FieldCondition(key="kind", keyword="blue-square"))])

    whole = client.recommend("pat", limit=PER_KIND, filter=blue, strategy=strategy)
    assert len(whole.ids) == PER_KIND and whole.next_page_token == "", "a full page of everything: no next page"

    pages, token = [], ""
    while True:
        page = client.recommend("pat", limit=10, filter=blue, strategy=strategy, page_token=token)
        pages.append(page.ids)
        token = page.next_page_token
        if not token:
            break
        assert len(pages) < 5, "tokens never stop"
    assert [len(ids) for ids in pages] == [10, 10, 5]
    assert sorted(sum(pages, [])) == sorted(whole.ids)


def test_cold_start_falls_back_to_popularity_within_the_filter(client, kinds_catalog):
    for user in ("p1", "p2", "p3"):
        client.record_events(events(user, "blue-square", [1, 2], "purchase") + events(user, "green-star", [3], "view"))
    blue = t.Filter(must=[t.Condition(field=t.FieldCondition(key="kind", keyword="blue-square"))])

    result = client.recommend("someone-new", limit=5)
    assert result.cold_start and result.strategy == "popular"
    assert result.ids[:2] == ["blue-square-01", "blue-square-02"] or result.ids[:2] == ["blue-square-02",
                                                                                       "blue-square-01"]
    filtered = client.recommend("someone-new", limit=5, filter=blue)
    assert len(filtered.ids) == 5 and all(kind_of(i) == "blue-square" for i in filtered.ids)


def test_cold_start_on_an_empty_history_store_still_answers(client, kinds_catalog):
    result = client.recommend("first-user-ever", limit=7)
    assert result.cold_start and len(result.ids) == 7


@pytest.mark.parametrize("strategy", ["single_centroid", "qdrant_average", "qdrant_best_score", "popular"])
def test_every_strategy_answers_and_excludes_seen(client, kinds_catalog, strategy):
    history = events("fay", "red-circle", range(0, 5), "like") + events("fay", "green-star", range(0, 3), "dislike")
    client.record_events(history)
    result = client.recommend("fay", limit=10, strategy=strategy)
    assert result.strategy == strategy and len(result.ids) == 10
    assert not {event.item_id for event in history} & set(result.ids)


def test_forget_user_leaves_nothing_behind(client, kinds_catalog):
    client.record_events(events("gus", "red-circle", range(0, 8), "click"))
    assert client.profile("gus").event_count == 8

    assert client.forget_user("gus") == 8
    profile = client.profile("gus")
    assert (profile.event_count, profile.seen_count, len(profile.interests)) == (0, 0, 0)
    assert client.recommend("gus").cold_start
    assert client.forget_user("gus") == 0


def test_concurrent_writers_for_one_user_lose_no_event(client, kinds_catalog):
    def writer(worker: int) -> None:
        for batch in range(10):
            client.record_events([UserEvent("hal", f"red-circle-{(worker + n) % PER_KIND:02d}", "view",
                                            timestamp=NOW - timedelta(seconds=worker * 100 + batch * 10 + n))
                                  for n in range(5)])

    threads = [threading.Thread(target=writer, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.profile("hal").event_count == 8 * 10 * 5


def test_a_resent_event_id_is_stored_once(client, kinds_catalog):
    event = UserEvent("ivy", "red-circle-01", "like", timestamp=NOW, event_id="evt-1")
    client.record_events([event])
    client.record_events([event])
    assert client.profile("ivy").event_count == 1


def test_unknown_items_are_recorded_and_reported_and_bad_events_named(client, kinds_catalog):
    reply = client.record_events([
        UserEvent("jo", "red-circle-01", "click"),
        UserEvent("jo", "not-in-catalog", "click"),
        UserEvent("", "red-circle-02", "click"),
        UserEvent("jo", "red-circle-03", "click", timestamp=NOW + timedelta(days=3)),
        UserEvent("jo", "red-circle-04", "click", weight=-1.0),
    ])
    assert reply.recorded == 2
    assert list(reply.unknown_item_ids) == ["not-in-catalog"]
    errors = {error.index: error.message for error in reply.errors}
    assert sorted(errors) == [2, 3, 4]
    assert errors[2].startswith("events[2].user_id") and "future" in errors[3] and "events[4].weight" in errors[4]


def test_an_event_without_a_type_is_rejected_by_index(client, kinds_catalog):
    from service.api.lookalike.v1 import recommendation_service_pb2 as r

    stub_reply = client._recommendation.RecordEvents(r.RecordEventsRequest(events=[
        r.Event(user_id="k", item_id="red-circle-01", type=r.EVENT_TYPE_LIKE),
        r.Event(user_id="k", item_id="red-circle-02")]))
    assert stub_reply.recorded == 1
    assert [(e.index, e.message.split(":")[0]) for e in stub_reply.errors] == [(1, "events[1].type")]


def test_similar_items_for_a_user_leave_out_what_they_have_seen(client, kinds_catalog):
    client.record_events(events("lu", "blue-square", range(1, 10), "view"))
    plain = client.similar("blue-square-00", limit=24)
    for_lu = client.similar("blue-square-00", limit=24, user_id="lu")
    assert {f"blue-square-{i:02d}" for i in range(1, 10)} <= {hit.id for hit in plain}
    assert not {f"blue-square-{i:02d}" for i in range(1, 10)} & {hit.id for hit in for_lu}


def test_a_long_history_is_one_call(client, kinds_catalog):
    # 200 events over items 0-14 of three kinds, views of one kind being the lightest taste.
    history = [UserEvent("max", f"{KINDS[n % 3]}-{n % 15:02d}", ("view", "click", "like")[n % 3],
                         timestamp=NOW - timedelta(minutes=200 - n)) for n in range(200)]
    client.record_events(history)
    result = client.recommend("max", limit=20)
    assert len(result.ids) == 20 and {kind_of(i) for i in result.ids} == set(KINDS[:3])
    assert not {event.item_id for event in history} & set(result.ids)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(user_id=""), "user_id"),
    (dict(user_id="x", limit=5000), "limit"),
    (dict(user_id="x", diversity=1.5), "diversity"),
    (dict(user_id="x", page_token="garbage!"), "page_token"),
])
def test_bad_recommend_requests_are_invalid_argument(client, kinds_catalog, kwargs, needle):
    with pytest.raises(grpc.RpcError) as raised:
        client.recommend(**kwargs)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert needle in raised.value.details()


def test_a_profile_follows_the_weight_of_strong_single_items(client, kinds_catalog):
    """30 views of one kind (weight 9) and 4 purchases of another (weight 20)."""
    history = [UserEvent("nia", f"red-circle-{n % PER_KIND:02d}", "view", timestamp=NOW - timedelta(hours=60 - n))
               for n in range(30)] + events("nia", "blue-square", range(4), "purchase", start_hours_ago=20)
    client.record_events(history)

    profile = client.profile("nia")
    assert [{kind_of(i) for i in interest.item_ids} for interest in profile.interests] == [
        {"blue-square"}, {"red-circle"}]
    assert profile.interests[0].importance == pytest.approx(20 / 29, abs=0.03)  # views are older: more decay
    # Every red circle was seen, so the viewed taste's 3 slots go to its nearest unseen items.
    result = client.recommend("nia", limit=10)
    assert Counter(item.interest_index for item in result.items) == Counter({0: 7, 1: 3})
    assert Counter(kind_of(item.id) for item in result.items if item.interest_index == 0) == Counter(
        {"blue-square": 7})


@pytest.fixture
def profile_builds(monkeypatch):
    """Each profile the recommender builds, by its max_interests (the real function runs)."""
    from recommender import recommend

    calls: list[int] = []
    real = recommend.build_profile

    def counted(user_id, events, vectors, now, config, **extra):
        calls.append(config.max_interests)
        return real(user_id, events, vectors, now, config, **extra)

    monkeypatch.setattr(recommend, "build_profile", counted)
    return calls


@pytest.mark.parametrize("strategy, builds", [
    ("popular", []), ("single_centroid", [1]), ("multi_interest", [5]), ("qdrant_average", [5]),
])
def test_each_strategy_builds_only_the_profile_it_uses(client, kinds_catalog, profile_builds, strategy, builds):
    client.record_events(events("oz", "red-circle", range(0, 6), "like") + events("oz", "green-star", range(6), "like"))
    result = client.recommend("oz", limit=5, strategy=strategy)
    assert result.strategy == strategy and not result.cold_start
    assert profile_builds == builds


@pytest.mark.parametrize("strategy", ["multi_interest", "single_centroid", "qdrant_average", "qdrant_best_score",
                                      "popular"])
def test_include_seen_is_honoured_by_every_strategy(client, kinds_catalog, strategy):
    history = events("pia", "red-circle", range(0, 5), "purchase")
    client.record_events(history + events("pop", "red-circle", range(0, 5), "purchase"))  # popular items too
    seen = {event.item_id for event in history}

    without = client.recommend("pia", limit=10, strategy=strategy, diversity=0.0)
    assert not seen & set(without.ids)
    with_seen = client.recommend("pia", limit=10, strategy=strategy, diversity=0.0, include_seen=True)
    assert with_seen.strategy == strategy and seen & set(with_seen.ids)


# -- recommendations from example items ----------------------------------------------

def test_examples_of_two_tastes_make_two_interests_for_an_anonymous_session(client, kinds_catalog):
    examples = [f"red-circle-{n:02d}" for n in range(4)] + [f"blue-square-{n:02d}" for n in range(4)]

    result = client.recommend(examples=examples, limit=10, explain=True)

    assert not result.cold_start and result.unknown_example_ids == []
    assert {kind_of(item_id) for item_id in result.ids} == {"red-circle", "blue-square"}
    assert not set(result.ids) & set(examples), "example items are not recommended back"
    by_interest = {item.interest_index: kind_of(item.id) for item in result.items}
    assert len(by_interest) == 2 and set(by_interest.values()) == {"red-circle", "blue-square"}
    for item in result.items:  # each result cites the examples of its own taste
        cited = {kind_of(examples[index]) for index in item.because_examples}
        assert cited == {kind_of(item.id)} and {kind_of(i) for i in item.because} == cited


def test_a_negative_example_pushes_its_taste_down(client, kinds_catalog):
    liked = [f"red-circle-{n:02d}" for n in range(3)] + [f"green-star-{n:02d}" for n in range(3)]
    before = Counter(kind_of(i) for i in client.recommend(examples=liked, limit=12).ids)

    against = Example(vector=kinds_catalog["green-star"].tolist(), weight=-3)
    after = Counter(kind_of(i) for i in client.recommend(examples=[*liked, against], limit=12).ids)

    assert before["green-star"] >= 4
    assert after["green-star"] < before["green-star"] and after["red-circle"] > before["red-circle"]


def test_unknown_example_ids_are_reported_not_fatal(client, kinds_catalog):
    result = client.recommend(examples=["ghost", "red-circle-00", "ghost"], limit=5)
    assert result.unknown_example_ids == ["ghost"]
    assert {kind_of(item_id) for item_id in result.ids} == {"red-circle"}

    nothing_known = client.recommend(examples=["ghost"], limit=5)
    assert nothing_known.cold_start and nothing_known.unknown_example_ids == ["ghost"]


def test_examples_join_a_users_history_as_another_taste(client, kinds_catalog):
    client.record_events(events("ora", "red-circle", range(0, 5), "purchase"))
    blue = [f"blue-square-{n:02d}" for n in range(4)]

    result = client.recommend("ora", examples=blue, limit=15, explain=True)

    assert {kind_of(item_id) for item_id in result.ids} == {"red-circle", "blue-square"}
    assert not ({f"red-circle-{n:02d}" for n in range(5)} | set(blue)) & set(result.ids), "seen and examples left out"
    for item in result.items:
        assert bool(item.because_examples) == (kind_of(item.id) == "blue-square")
    assert client.profile("ora").event_count == 5, "examples are not stored as events"


def test_a_raw_vector_is_an_example_too_and_is_cited_by_position(client, kinds_catalog):
    yellow = Example(vector=kinds_catalog["yellow-hexagon"].tolist())
    result = client.recommend(examples=[yellow], limit=5, explain=True)
    assert {kind_of(item_id) for item_id in result.ids} == {"yellow-hexagon"}
    assert all(item.because_examples == [0] and item.because == [] for item in result.items)


def test_recommend_needs_a_user_or_examples_and_sound_examples(client, kinds_catalog):
    for kwargs, field in ((dict(), "user_id"), (dict(examples=[Example("red-circle-00", weight=0)]),
                                                  "examples[0].weight"),
                          (dict(examples=[Example(vector=[0.5, 0.5])]), "examples[0].vector")):
        with pytest.raises(grpc.RpcError) as raised:
            client.recommend(**kwargs)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert raised.value.details().startswith(field)


def test_the_cli_recommends_from_likes_and_dislikes(client, kinds_catalog, server, capsys):
    import json

    from service.cli import main

    code = main(["recommend", "--like", "red-circle-00", "--like", "red-circle-01:2", "--dislike", "ghost",
                 "--limit", "4", "--explain", "--json", "--server", server.target])
    reply = json.loads(capsys.readouterr().out)
    assert code == 0 and reply["unknown_example_ids"] == ["ghost"]
    assert {kind_of(item["id"]) for item in reply["items"]} == {"red-circle"}
