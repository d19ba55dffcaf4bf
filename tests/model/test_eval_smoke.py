"""`lookalike eval` end to end on a small catalog: real demo-model vectors, embedded Qdrant, every strategy."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from recommender.engine import open_engine
from recommender.evaluation.simulate import SimulationConfig, simulate_users
from recommender.evaluation.split import temporal_split
from recommender.recommend import RecommenderConfig
from recommender.storage.edge import open_edge
from recommender.types import RecommendQuery, Strategy
from service.demo.synthetic import generate_catalog
from service.embedding.spec import DEMO_MODEL_DIR
from service.evaluate import HISTORY_START, ORACLE, STRATEGIES, TEST_FRACTION, main, record_history, upsert_catalog

needs_demo_model = pytest.mark.skipif(
    not (DEMO_MODEL_DIR / "open_clip_config.json").is_file(),
    reason=f"the demo model is not in {DEMO_MODEL_DIR}: train it with `lookalike train-demo --output {DEMO_MODEL_DIR}`",
)


SMALL_RUN = ["--items", "600", "--users", "25", "--seed", "0", "--no-progress"]


def _run(folder):
    output, markdown = folder / "results.json", folder / "results.md"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        code = main([*SMALL_RUN, "--output", str(output), "--markdown", str(markdown)])
    return code, json.loads(output.read_text()), markdown.read_text()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("eval"))


@needs_demo_model
def test_the_whole_pipeline_runs_and_writes_its_results(run):
    code, record, markdown = run
    assert code == 0
    assert set(record["strategies"]) == {strategy.value for strategy in STRATEGIES} | {ORACLE}
    assert record["population"]["evaluated_users"] > 0
    for result in record["strategies"].values():
        assert result["users"] == record["population"]["evaluated_users"]
        assert result["empty_lists"] == 0
        assert all(0.0 <= value <= 2.0 for name, value in result["metrics"].items() if name != "ms_per_call")
    assert "| `multi_interest` |" in markdown
    assert record["targets"]


@needs_demo_model
def test_multi_interest_follows_tastes_better_than_popularity(run):
    _, record, _ = run
    metrics = {name: result["metrics"] for name, result in record["strategies"].items()}
    assert metrics["multi_interest"]["taste_hit@10"] > metrics["popular"]["taste_hit@10"]


@needs_demo_model
def test_catalog_comes_from_the_split_the_demo_model_never_saw(run):
    _, record, _ = run
    assert record["settings"]["catalog_split"] == "test"
    # Users who are not scored still shopped before the split, and their events are recorded too.
    population = record["population"]
    assert population["history_events_recorded"] > population["mean_train_events"] * population["evaluated_users"]


@needs_demo_model
def test_same_seed_gives_the_same_metrics(run, tmp_path):
    def without_timings(record):
        return {name: ({m: v for m, v in result["metrics"].items() if m != "ms_per_call"}, result["user_hits@10"])
                for name, result in record["strategies"].items()}

    _, again, _ = _run(tmp_path)
    assert without_timings(again) == without_timings(run[1])


def test_popularity_learns_from_every_users_history_before_the_split(tmp_path):
    """No model needed: random item vectors are enough to check what the popular strategy counts."""
    catalog = generate_catalog(160, seed=0, split="test")
    attributes = {item.item_id: dict(item.attributes) for item in catalog}
    users = simulate_users(attributes, 40, seed=0, start=HISTORY_START, config=SimulationConfig(taste_axes=("shape",)))
    split = temporal_split(users, TEST_FRACTION)
    rng = np.random.default_rng(0)
    vectors = {item.item_id: rng.normal(size=8).astype(np.float32) for item in catalog}
    config = RecommenderConfig()
    weights, since = config.profile.event_weights, split.split_time - config.popularity_window

    def counts(events):
        totals: Counter = Counter()
        for event in events:
            if since <= event.timestamp < split.split_time and not event.event_type.is_negative:
                totals[event.item_id] += weights[event.event_type] * event.weight
        return totals

    everyone, scored_only = counts(split.history_events), counts(split.train_events)
    assert everyone != scored_only, "the fixture should have unscored users with recent positive events"

    storage = open_edge(tmp_path, "eval_items", "random@test", 8)
    try:
        engine = open_engine(storage, config=config, clock=lambda: split.split_time)
        upsert_catalog(engine, catalog, vectors)
        record_history(engine, split)
        listed = engine.recommend(RecommendQuery("a-new-user", limit=len(catalog), strategy=Strategy.POPULAR)).items
    finally:
        storage.close()

    top = max(everyone.values())
    assert {item.item_id: item.score for item in listed if item.score > 0} == pytest.approx(
        {item_id: count / top for item_id, count in everyone.items()}, rel=1e-5)
