"""`lookalike eval` end to end on a small catalog: real demo-model vectors, embedded Qdrant, every strategy."""

from __future__ import annotations

import json

import pytest

from service.embedding.spec import DEMO_MODEL_DIR
from service.evaluate import ORACLE, STRATEGIES, main

pytestmark = pytest.mark.skipif(
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


def test_multi_interest_follows_tastes_better_than_popularity(run):
    _, record, _ = run
    metrics = {name: result["metrics"] for name, result in record["strategies"].items()}
    assert metrics["multi_interest"]["taste_hit@10"] > metrics["popular"]["taste_hit@10"]


def test_same_seed_gives_the_same_metrics(run, tmp_path):
    def without_timings(record):
        return {name: ({m: v for m, v in result["metrics"].items() if m != "ms_per_call"}, result["user_hits@10"])
                for name, result in record["strategies"].items()}

    _, again, _ = _run(tmp_path)
    assert without_timings(again) == without_timings(run[1])
