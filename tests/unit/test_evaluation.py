"""The offline evaluation: simulated users, the temporal split, and every metric on hand-made cases."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from recommender.evaluation.bootstrap import paired_ratio_interval
from recommender.evaluation.metrics import (
    EvaluationResult,
    StrategyResult,
    catalog_coverage,
    evaluate,
    hit_rate_at_k,
    intra_list_diversity,
    ndcg_at_k,
    recall_at_k,
    taste_share,
    tastes_covered,
)
from recommender.evaluation.oracle import taste_oracle
from recommender.evaluation.report import (
    check_targets,
    format_markdown,
    format_table,
    format_targets,
    hit_rate_checks,
    pool_user_hits,
    to_json,
)
from recommender.evaluation.simulate import SimulatedUser, SimulationConfig, Taste, simulate_users, taste_agreement
from recommender.evaluation.split import split_user, temporal_split
from recommender.types import Event, EventType

REPO_ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 5, tzinfo=timezone.utc)
# A small world whose tastes are (colour, shape) pairs.
CONFIG = SimulationConfig(taste_axes=("color", "shape"))
COLORS = ("red", "blue", "green", "yellow")
SHAPES = ("circle", "square", "star")


def _catalog(per_taste: int = 12) -> dict[str, dict[str, str]]:
    items = {}
    for color in COLORS:
        for shape in SHAPES:
            for n in range(per_taste):
                items[f"{color}-{shape}-{n:02d}"] = {"color": color, "shape": shape, "size": "small"}
    return items


@pytest.fixture(scope="module")
def catalog():
    return _catalog()


@pytest.fixture(scope="module")
def users(catalog):
    return simulate_users(catalog, 60, seed=3, start=START, config=CONFIG)


# -- simulation ---------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_users(catalog, users):
    assert simulate_users(catalog, 60, seed=3, start=START, config=CONFIG) == users


def test_different_seed_gives_different_users(catalog, users):
    assert simulate_users(catalog, 60, seed=4, start=START, config=CONFIG) != users


def test_more_users_keeps_the_first_ones(catalog, users):
    assert simulate_users(catalog, 10, seed=3, start=START, config=CONFIG) == users[:10]


def test_catalog_order_does_not_matter(catalog, users):
    reversed_catalog = dict(reversed(list(catalog.items())))
    assert simulate_users(reversed_catalog, 60, seed=3, start=START, config=CONFIG) == users


def test_users_have_one_to_four_unequal_tastes_and_up_to_two_dislikes(users):
    for user in users:
        assert 1 <= len(user.tastes) <= 4
        assert len(set(user.tastes)) == len(user.tastes)
        assert math.isclose(sum(user.taste_weights), 1.0)
        assert list(user.taste_weights) == sorted(user.taste_weights, reverse=True)
        assert 0 <= len(user.disliked) <= 2
        assert not set(user.disliked) & set(user.tastes)
    assert {len(user.tastes) for user in users} == {1, 2, 3, 4}
    assert any(len(set(user.taste_weights)) > 1 for user in users)


def test_histories_are_time_ordered_and_within_the_span(users):
    for user in users:
        times = [event.timestamp for event in user.events]
        assert times == sorted(times)
        assert all(START <= t <= START + timedelta(days=57) for t in times)
        assert all(event.user_id == user.user_id for event in user.events)


def test_event_mix_looks_like_a_shop(users):
    counts = Counter(event.event_type for user in users for event in user.events)
    assert counts[EventType.VIEW] > counts[EventType.CLICK] > counts[EventType.ADD_TO_CART] > counts[EventType.PURCHASE]
    assert counts[EventType.LIKE] > 0 and counts[EventType.DISLIKE] > 0 and counts[EventType.SKIP] > 0


def test_positive_events_mostly_follow_tastes_and_dislikes_only_hit_disliked_tastes(catalog, users):
    positives = [(user, e) for user in users for e in user.events if not e.event_type.is_negative]
    on_taste = sum(1 for user, e in positives if any(t.matches(catalog[e.item_id]) for t in user.tastes))
    assert 0.8 < on_taste / len(positives) < 0.98  # tastes, plus some noise
    for user in users:
        for event in user.events:
            if event.event_type is EventType.DISLIKE:
                assert any(t.matches(catalog[event.item_id]) for t in user.disliked)


def test_a_catalog_without_tastes_is_refused():
    with pytest.raises(ValueError, match="tastes"):
        simulate_users({"a": {"color": "red", "shape": "circle"}}, 3, seed=0, start=START, config=CONFIG)


def test_naive_start_is_refused(catalog):
    with pytest.raises(ValueError, match="timezone"):
        simulate_users(catalog, 1, seed=0, start=datetime(2026, 1, 1), config=CONFIG)


# -- split --------------------------------------------------------------------------------------------------------


def test_split_is_by_time_with_no_leakage(users):
    split = temporal_split(users, test_fraction=0.2)
    assert split.users
    for user in split.users:
        assert all(event.timestamp < split.split_time for event in user.train_events)
        trained_on = {event.item_id for event in user.train_events}
        assert not user.test_item_ids & trained_on
        later_positive = {e.item_id for e in user.user.events
                          if e.timestamp >= split.split_time and not e.event_type.is_negative}
        assert user.test_item_ids == later_positive - trained_on
        assert any(not e.event_type.is_negative for e in user.train_events)


def test_split_time_holds_out_about_the_requested_share(users):
    split = temporal_split(users, test_fraction=0.2)
    positives = [e for user in users for e in user.events if not e.event_type.is_negative]
    held_out = sum(1 for e in positives if e.timestamp >= split.split_time)
    assert held_out / len(positives) == pytest.approx(0.2, abs=0.01)


def _event(item_id: str, kind: EventType, day: int) -> Event:
    return Event("u", item_id, kind, START + timedelta(days=day))


def test_items_touched_before_the_split_are_not_test_items():
    user = SimulatedUser("u", (Taste.of(color="red"),), (1.0,), (), (
        _event("a", EventType.VIEW, 1),
        _event("b", EventType.SKIP, 2),
        _event("a", EventType.PURCHASE, 10),
        _event("b", EventType.CLICK, 11),
        _event("c", EventType.VIEW, 12),
        _event("d", EventType.DISLIKE, 13),
    ))
    split = split_user(user, START + timedelta(days=10))
    assert split.test_item_ids == {"c"}
    assert [e.item_id for e in split.train_events] == ["a", "b"]


def test_history_keeps_every_users_events_before_the_split_scored_or_not(users):
    split = temporal_split(users, test_fraction=0.2)
    before = sorted((e for user in users for e in user.events if e.timestamp < split.split_time), key=_order)
    assert sorted(split.history_events, key=_order) == before
    scored = {user.user_id for user in split.users}
    unscored = {e.user_id for e in split.history_events} - scored
    # Users without test items (or without positive history) are not scored, yet they shopped:
    # popularity and any other shared signal must learn from their events.
    assert unscored, "the fixture should include users who are not scored"
    assert set(split.train_events) < set(split.history_events)


def test_a_user_with_no_test_items_still_contributes_history():
    shopper = SimulatedUser("only-before", (Taste.of(color="red"),), (1.0,), (), (
        Event("only-before", "a", EventType.PURCHASE, START + timedelta(days=1)),
        Event("only-before", "b", EventType.VIEW, START + timedelta(days=2)),
    ))
    scored = SimulatedUser("scored", (Taste.of(color="red"),), (1.0,), (), (
        Event("scored", "a", EventType.VIEW, START + timedelta(days=1)),
        Event("scored", "c", EventType.CLICK, START + timedelta(days=3)),
        Event("scored", "d", EventType.PURCHASE, START + timedelta(days=9)),
    ))
    split = temporal_split([shopper, scored], test_fraction=0.2)  # 5 positives: the split is at the 5th
    assert split.split_time == START + timedelta(days=9)
    assert [user.user_id for user in split.users] == ["scored"]
    assert {(e.user_id, e.item_id) for e in split.history_events} == {
        ("only-before", "a"), ("only-before", "b"), ("scored", "a"), ("scored", "c")}


def _order(event: Event) -> tuple:
    return (event.user_id, event.timestamp, event.item_id, event.event_type.value)


def test_bad_test_fraction_is_refused(users):
    with pytest.raises(ValueError):
        temporal_split(users, test_fraction=1.0)


# -- metrics ------------------------------------------------------------------------------------------------------


def test_hit_rate():
    assert hit_rate_at_k(["a", "b", "c"], {"c"}, k=3) == 1.0
    assert hit_rate_at_k(["a", "b", "c"], {"c"}, k=2) == 0.0
    assert hit_rate_at_k([], {"c"}, k=10) == 0.0


def test_recall():
    assert recall_at_k(["a", "b", "c", "d"], {"b", "d", "x", "y"}, k=4) == 0.5
    assert recall_at_k(["a", "b", "c", "d"], {"b", "d", "x", "y"}, k=2) == 0.25
    with pytest.raises(ValueError):
        recall_at_k(["a"], set(), k=1)


def test_ndcg_exact_values():
    # Hits at ranks 1 and 3 of 2 relevant: (1 + 1/log2(4)) / (1 + 1/log2(3)).
    expected = (1.0 + 0.5) / (1.0 + 1.0 / math.log2(3))
    assert ndcg_at_k(["a", "x", "b"], {"a", "b"}, k=3) == pytest.approx(expected)
    assert ndcg_at_k(["a", "b", "x"], {"a", "b"}, k=3) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y", "a"], {"a"}, k=2) == 0.0
    # The ideal list is capped at k: one hit at rank 1 of 5 relevant, k = 1.
    assert ndcg_at_k(["a"], {"a", "b", "c", "d", "e"}, k=1) == pytest.approx(1.0)
    # A repeated hit does not count twice.
    assert ndcg_at_k(["a", "a"], {"a", "b"}, k=2) == pytest.approx(1.0 / (1.0 + 1.0 / math.log2(3)))


def test_catalog_coverage_counts_distinct_items_in_the_top_k():
    lists = [["a", "b", "z"], ["b", "c", "y"]]
    assert catalog_coverage(lists, catalog_size=10, k=2) == pytest.approx(0.3)
    assert catalog_coverage([], catalog_size=10, k=2) == 0.0


def test_intra_list_diversity():
    x, y = np.array([1.0, 0.0]), np.array([0.0, 2.0])
    assert intra_list_diversity([x, x * 3]) == pytest.approx(0.0)
    assert intra_list_diversity([x, y]) == pytest.approx(1.0)
    assert intra_list_diversity([x, -x]) == pytest.approx(2.0)
    # Pairs (x,x)=1, (x,y)=0, (x,y)=0: mean 1/3.
    assert intra_list_diversity([x, x, y]) == pytest.approx(1.0 - 1.0 / 3.0)
    assert intra_list_diversity([x]) is None


def test_disliked_share_and_taste_matching():
    attributes = {"r1": {"color": "red", "shape": "star"}, "r2": {"color": "red", "shape": "circle"},
                  "b1": {"color": "blue", "shape": "star"}, "g1": {"color": "green", "shape": "star"}}
    disliked = [Taste.of(color="red", shape="star"), Taste.of(color="blue", shape="star")]
    assert taste_share(["r1", "r2", "b1", "g1"], attributes, disliked) == 0.5
    assert taste_share(["r2"], attributes, disliked) == 0.0
    assert taste_share([], attributes, disliked) is None
    assert tastes_covered(["r1", "g1"], attributes, disliked) == 0.5


def test_taste_agreement_tells_visible_tastes_from_invisible_ones(catalog):
    ids = sorted(catalog)
    rng = np.random.default_rng(0)
    colours = {colour: rng.normal(size=8) for colour in COLORS}
    # Vectors that encode colour only: colour tastes are visible, shape tastes are not.
    vectors = {i: colours[catalog[i]["color"]] + 0.1 * rng.normal(size=8) for i in ids}
    visible, chance = taste_agreement(vectors, catalog, ["color"], k=5)
    assert visible == pytest.approx(1.0)
    assert chance == pytest.approx((36 * 35 * 4) / (144 * 143))
    invisible, chance = taste_agreement(vectors, catalog, ["color", "shape"], k=5)
    assert invisible < 0.6 and chance < invisible


def test_taste_label_and_matching():
    taste = Taste.of(shape="star", color="red")
    assert taste.label == "red star"
    assert taste.matches({"color": "red", "shape": "star", "size": "large"})
    assert not taste.matches({"color": "red"})


# -- evaluate -----------------------------------------------------------------------------------------------------


def test_evaluate_scores_an_oracle_above_a_constant_list(catalog, users):
    split = temporal_split(users, test_fraction=0.2)
    tests = {user.user_id: sorted(user.test_item_ids) for user in split.users}
    vectors = {item_id: np.eye(3)[index % 3] for index, item_id in enumerate(sorted(catalog))}
    fixed = sorted(catalog)[:20]

    def recommend(user_id: str, strategy: str, k: int) -> list[str]:
        return (tests[user_id] if strategy == "oracle" else fixed)[:k]

    result = evaluate(split, recommend, ["oracle", "constant"], catalog, vectors, catalog_size=len(catalog))
    oracle, constant = result.strategies
    assert oracle.metrics["hit_rate@10"] == 1.0
    assert oracle.metrics["ndcg@10"] == pytest.approx(1.0)
    assert oracle.metrics["recall@20"] > 0.95
    assert constant.metrics["coverage@10"] == pytest.approx(10 / len(catalog))
    assert oracle.users == len(split.users)
    assert "oracle" in format_table(result) and "| `constant` |" in format_markdown(result)


def test_taste_oracle_recommends_unseen_items_of_the_true_tastes(catalog, users):
    split = temporal_split(users, test_fraction=0.2)
    oracle = taste_oracle(split, catalog, seed=0)
    for user in split.users[:10]:
        recommended = oracle(user.user_id, "oracle", 20)
        assert recommended == oracle(user.user_id, "oracle", 20)
        seen = {event.item_id for event in user.train_events}
        assert not seen & set(recommended)
        assert all(any(t.matches(catalog[i]) for t in user.user.tastes) for i in recommended)
        assert tastes_covered(recommended, catalog, user.user.tastes) == 1.0


def _result(hits: dict[str, float], disliked: float, users: int = 20) -> EvaluationResult:
    def strategy(name: str, hit: float) -> StrategyResult:
        user_hits = [1.0] * round(hit * users) + [0.0] * (users - round(hit * users))
        metrics = {"hit_rate@10": hit, "disliked_share@10": disliked}
        return StrategyResult(name, metrics, users=users, users_with_dislikes=5, empty_lists=0, user_hits=user_hits)

    return EvaluationResult(START, 100, [strategy(name, hit) for name, hit in hits.items()])


def test_targets():
    passing = _result({"multi_interest": 0.6, "single_centroid": 0.5, "qdrant_best_score": 0.6, "popular": 0.15},
                      disliked=0.01)
    checks = check_targets(passing)
    assert [check.met for check in checks] == [True, True, True, True]
    assert [check.value for check in checks[:3]] == pytest.approx([1.2, 1.0, 4.0])
    assert checks[0].interval is not None
    low, high = checks[0].interval
    assert low < 1.2 < high
    failing = _result({"multi_interest": 0.55, "single_centroid": 0.5, "qdrant_best_score": 0.6, "popular": 0.2},
                      disliked=0.08)
    assert [check.met for check in check_targets(failing)] == [False, False, False, False]
    assert "MISSED" in format_targets(check_targets(failing))


def test_paired_interval_is_narrow_when_strategies_agree_on_users():
    ours = [1.0] * 30 + [0.0] * 70
    assert paired_ratio_interval(ours, ours) == (1.0, 1.0)
    wide = paired_ratio_interval([1.0] * 30 + [0.0] * 70, [0.0] * 70 + [1.0] * 30)
    assert wide[0] < 1.0 < wide[1]
    assert paired_ratio_interval([1.0], [1.0]) is None


def test_json_record_is_serialisable():
    import json

    record = to_json(_result({"multi_interest": 0.6, "popular": 0.1}, disliked=0.0), {"seed": 0})
    assert json.loads(json.dumps(record))["strategies"]["popular"]["metrics"]["hit_rate@10"] == 0.1


def test_pooled_runs_keep_users_paired_and_give_the_ratio_of_all_users():
    first = to_json(_result({"multi_interest": 0.6, "single_centroid": 0.5, "popular": 0.1}, disliked=0.0))
    second = to_json(_result({"multi_interest": 0.4, "single_centroid": 0.1, "qdrant_average": 0.2}, disliked=0.0))
    hits = pool_user_hits([first, second])
    # qdrant_average is missing from the first run, popular from the second: pooling them would unpair users.
    assert set(hits) == {"multi_interest", "single_centroid"}
    assert len(hits["multi_interest"]) == len(hits["single_centroid"]) == 40
    (check,) = hit_rate_checks(hits)
    assert check.value == pytest.approx((12 + 8) / (10 + 2))
    assert check.interval[0] < check.value < check.interval[1]
    with pytest.raises(ValueError):
        pool_user_hits([])


def test_the_package_stays_pure():
    probe = ("import sys, recommender.evaluation.metrics, recommender.evaluation.oracle, "
             "recommender.evaluation.report, recommender.evaluation.simulate, recommender.evaluation.split; "
             "print(sorted(m for m in ('torch', 'grpc', 'qdrant_client', 'open_clip', 'service') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_eval_command_imports_the_lab():
    """The evaluation is lab tooling: the runtime (recommender/, service/) must not depend on it."""
    lab = REPO_ROOT / "recommender" / "evaluation"
    importers = set()
    for root in ("recommender", "service"):
        for path in (REPO_ROOT / root).rglob("*.py"):
            if lab in path.parents:
                continue
            if any(name == "recommender.evaluation" or name.startswith("recommender.evaluation.")
                   for name in _imported_modules(path)):
                importers.add(path.relative_to(REPO_ROOT).as_posix())
    assert importers == {"service/evaluate.py"}
