"""`lookalike eval`: a seeded offline benchmark of the recommendation strategies.

The demo catalog is embedded with the demo CLIP, stored in a throwaway
embedded Qdrant, and simulated users' training events go through the same
Engine the service runs; only the transport is skipped. See
docs/evaluation.md for what is simulated and measured.

    lookalike eval --items 3000 --users 200 --seed 0 --output eval-results.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from recommender.evaluation.metrics import RECALL_K, EvaluationResult, evaluate
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
from recommender.evaluation.simulate import (
    SimulatedUser,
    SimulationConfig,
    describe_users,
    simulate_users,
    taste_agreement,
)
from recommender.evaluation.split import TemporalSplit, temporal_split
from recommender.types import ItemInput, RecommendQuery, Strategy

STRATEGIES: tuple[Strategy, ...] = (
    Strategy.MULTI_INTEREST, Strategy.SINGLE_CENTROID, Strategy.QDRANT_AVERAGE, Strategy.QDRANT_BEST_SCORE,
    Strategy.POPULAR,
)
# Below this share of nearest neighbours in the same taste, the vectors cannot
# tell the tastes apart (the first, shape-blind demo CLIP scored 22% on (color, shape)).
MIN_TASTE_AGREEMENT = 0.5
ORACLE = "taste_oracle"  # reference row, not an engine strategy
# Histories start here; a fixed date keeps runs identical whatever day they run on.
HISTORY_START = datetime(2026, 1, 5, tzinfo=timezone.utc)
TEST_FRACTION = 0.2
RENDER_SIZE = 128  # what a client would plausibly upload; the model's preprocessing resizes it
DIVERSITY = 0.2
UPSERT_BATCH = 256
EVENT_BATCH = 500
# The demo model was trained on the "train" split; scoring on its training images would flatter it.
CATALOG_SPLIT = "test"


@dataclass(frozen=True)
class EvalSettings:
    items: int = 3000
    users: int = 200
    seed: int = 0
    model: str = "demo"
    pretrained: str | None = None
    batch_size: int = 64
    taste_axes: tuple[str, ...] = SimulationConfig.taste_axes
    progress: bool = True

    def __post_init__(self) -> None:
        if self.items < 10:
            raise ValueError(f"--items must be at least 10, got {self.items}")
        if self.users < 1:
            raise ValueError(f"--users must be at least 1, got {self.users}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")


@dataclass
class EvalRun:
    result: EvaluationResult
    population: dict[str, Any]
    model_identity: str
    seconds: dict[str, float]
    taste_agreement: tuple[float, float]  # (nearest neighbours sharing the taste, chance)


def run_evaluation(settings: EvalSettings) -> EvalRun:
    """Catalog -> vectors -> engine -> simulated users -> metrics per strategy."""
    from service.demo.synthetic import generate_catalog

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    catalog = generate_catalog(settings.items, seed=settings.seed, split=CATALOG_SPLIT)
    attributes = {item.item_id: dict(item.attributes) for item in catalog}
    embedder = load_model(settings)
    vectors = embed_catalog(embedder, catalog, settings)
    seconds["embed"] = time.perf_counter() - started
    agreement = taste_agreement(vectors, attributes, settings.taste_axes)

    users = simulate_users(attributes, settings.users, settings.seed, HISTORY_START,
                           SimulationConfig(taste_axes=settings.taste_axes))
    split = temporal_split(users, TEST_FRACTION)
    result = _run_engine(embedder, catalog, vectors, split, attributes, settings, seconds)
    return EvalRun(result, _population(users, split), embedder.identity, seconds, agreement)


def _run_engine(embedder, catalog: Sequence, vectors: dict[str, np.ndarray], split: TemporalSplit,
                attributes, settings: EvalSettings, seconds: dict[str, float]) -> EvaluationResult:
    """A fresh engine on a throwaway embedded Qdrant Edge: load the items and the training events, then measure."""
    from recommender.engine import open_engine
    from recommender.storage.edge import open_edge

    with tempfile.TemporaryDirectory(prefix="lookalike-eval-") as folder:
        storage = open_edge(Path(folder), "eval_items", embedder.identity, embedder.dim)
        try:
            # Recency decay is measured from the clock: fixed at the split, the
            # engine sees the history exactly as it stood at that moment.
            engine = open_engine(storage, clock=lambda: split.split_time)
            started = time.perf_counter()
            upsert_catalog(engine, catalog, vectors)
            record_history(engine, split)
            seconds["load"] = time.perf_counter() - started
            started = time.perf_counter()
            result = _measure(engine, split, attributes, vectors, settings)
            seconds["recommend"] = time.perf_counter() - started
        finally:
            storage.close()
    return result


def load_model(settings: EvalSettings):
    from service.embedding import ModelSpec, load_embedder

    try:
        spec = ModelSpec.parse(settings.model, settings.pretrained)
    except ValueError as error:
        hint = (" Train it first: lookalike train-demo --output service/demo/model"
                if settings.model == "demo" else "")
        raise ValueError(f"cannot use model {settings.model!r}: {error}.{hint}") from error
    return load_embedder(spec, device="cpu", max_batch=settings.batch_size)


def embed_catalog(embedder, catalog: Sequence, settings: EvalSettings) -> dict[str, np.ndarray]:
    """Image vectors through the embedder's own decode and preprocessing, as the
    service would compute them from uploaded PNG bytes."""
    from tqdm import tqdm

    vectors: dict[str, np.ndarray] = {}
    with tqdm(total=len(catalog), desc="embed", unit="img", disable=not settings.progress) as bar:
        for start in range(0, len(catalog), settings.batch_size):
            batch = catalog[start:start + settings.batch_size]
            embedded = embedder.embed_images([item.png_bytes(RENDER_SIZE) for item in batch])
            vectors.update(zip((item.item_id for item in batch), embedded))
            bar.update(len(batch))
    return vectors


def upsert_catalog(engine, catalog: Sequence, vectors: dict[str, np.ndarray]) -> None:
    for start in range(0, len(catalog), UPSERT_BATCH):
        batch = catalog[start:start + UPSERT_BATCH]
        outcome = engine.upsert_items([
            (start + offset, ItemInput(item.item_id, payload=dict(item.payload), image_vector=vectors[item.item_id]))
            for offset, item in enumerate(batch)])
        if outcome.errors:
            raise RuntimeError(f"the engine rejected demo items: {outcome.errors[:3]}")


def record_history(engine, split: TemporalSplit) -> None:
    # Every user's history before the split, scored or not: popularity learns from all shoppers.
    # Nothing after the split is recorded, so the engine cannot see the test period whatever its reads.
    events = split.history_events
    # Fixed event ids make the stored points, and so the order the store returns
    # them in, the same every run: ties in popularity then break the same way.
    event_ids = [f"sim-{index}" for index in range(len(events))]
    for start in range(0, len(events), EVENT_BATCH):
        outcome = engine.record_events(events[start:start + EVENT_BATCH], event_ids[start:start + EVENT_BATCH])
        if outcome.errors or outcome.unknown_item_ids:
            raise RuntimeError(f"the engine rejected simulated events: {outcome.errors[:3]} "
                               f"unknown items {outcome.unknown_item_ids[:3]}")


def _measure(engine, split: TemporalSplit, attributes, vectors, settings: EvalSettings) -> EvaluationResult:
    """Every engine strategy, then the taste oracle as a reference row (it knows the tastes; see its docstring)."""
    from tqdm import tqdm

    with tqdm(total=len(split.users) * len(STRATEGIES), desc="recommend", unit="list",
              disable=not settings.progress) as bar:
        result = evaluate(split, _recommender(engine), STRATEGIES, attributes, vectors,
                          catalog_size=settings.items, on_user=lambda: bar.update(1))
    reference = evaluate(split, taste_oracle(split, attributes, settings.seed), [ORACLE], attributes, vectors,
                         catalog_size=settings.items)
    result.strategies += reference.strategies
    return result


def _recommender(engine) -> Callable[[str, Strategy, int], list[str]]:
    def recommend(user_id: str, strategy: Strategy, k: int) -> list[str]:
        query = RecommendQuery(user_id, limit=k, strategy=strategy, exclude_seen=True, diversity=DIVERSITY)
        return [item.item_id for item in engine.recommend(query).items]

    return recommend


def _population(users: Sequence[SimulatedUser], split: TemporalSplit) -> dict[str, Any]:
    summary = describe_users(users)
    summary["evaluated_users"] = len(split.users)
    summary["history_events_recorded"] = len(split.history_events)
    summary["mean_test_items"] = float(np.mean([len(u.test_item_ids) for u in split.users])) if split.users else 0.0
    summary["mean_train_events"] = float(np.mean([len(u.train_events) for u in split.users])) if split.users else 0.0
    return summary


# -- command line ---------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lookalike eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=EvalSettings.items, help="demo catalog size")
    parser.add_argument("--users", type=int, default=EvalSettings.users, help="simulated users")
    parser.add_argument("--seed", type=int, default=EvalSettings.seed, help="seeds the catalog and the users")
    parser.add_argument("--output", type=Path, default=Path("eval-results.json"), help="JSON results file")
    parser.add_argument("--markdown", type=Path, help="also write the results table as markdown here")
    parser.add_argument("--model", default=EvalSettings.model,
                        help="model to embed the catalog with (default: the shipped demo CLIP)")
    parser.add_argument("--pretrained", help="weights for --model, as for `lookalike serve`")
    parser.add_argument("--batch-size", type=int, default=EvalSettings.batch_size, help="images per model call")
    parser.add_argument("--taste-axes", default=",".join(EvalSettings.taste_axes),
                        help="item attributes whose combinations are the simulated tastes (comma-separated)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--pool", type=Path, nargs="+", metavar="RESULTS_JSON",
                        help="run nothing: pool the per-user hits of earlier runs' JSON files (e.g. one per seed) "
                             "and print the hit-rate targets over all their users")
    return parser


def _axes(text: str) -> tuple[str, ...]:
    axes = tuple(axis.strip() for axis in text.split(",") if axis.strip())
    if not axes:
        raise ValueError("--taste-axes needs at least one attribute name")
    return axes


def pool(paths: Sequence[Path]) -> str:
    """Hit rates and targets over the users of several runs, as printed by `--pool`."""
    hits = pool_user_hits([json.loads(Path(path).read_text()) for path in paths])
    lines = [f"{len(next(iter(hits.values()), []))} users pooled from {len(paths)} runs"]
    lines += [f"{name}: hit_rate@10 {np.mean(values):.3f}" for name, values in hits.items()]
    return "\n".join([*lines, format_targets(hit_rate_checks(hits))])


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.pool:
        try:
            print(pool(args.pool))
        except (OSError, ValueError, KeyError) as error:
            print(f"error: cannot pool {[str(p) for p in args.pool]}: {error!r}", file=sys.stderr)
            return 1
        return 0
    try:
        settings = EvalSettings(items=args.items, users=args.users, seed=args.seed, model=args.model,
                                pretrained=args.pretrained, batch_size=args.batch_size,
                                taste_axes=_axes(args.taste_axes), progress=not args.no_progress)
        run = run_evaluation(settings)
    except (ValueError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    checks = check_targets(run.result)
    agreement, chance = run.taste_agreement
    print(f"\n{run.population['evaluated_users']} of {settings.users} users evaluated "
          f"(split at {run.result.split_time:%Y-%m-%d %H:%M} UTC), {settings.items} items, model {run.model_identity}")
    print(f"tastes over ({', '.join(settings.taste_axes)}): {agreement:.0%} of items' 10 nearest neighbours share "
          f"their taste (chance {chance:.0%})")
    if agreement < MIN_TASTE_AGREEMENT:
        print("warning: the item vectors barely separate these tastes; every content-based strategy will look "
              "bad. Choose --taste-axes the model can see.", file=sys.stderr)
    print(format_table(run.result))
    print(f"({ORACLE} is a reference that knows each user's tastes, not an engine strategy)")
    print()
    print(format_targets(checks))
    record = to_json(run.result, {**vars(settings), "strategies": [s.value for s in STRATEGIES],
                                  "catalog_split": CATALOG_SPLIT, "test_fraction": TEST_FRACTION, "limit": RECALL_K,
                                  "diversity": DIVERSITY,
                                  "history_start": HISTORY_START.isoformat(), "model_identity": run.model_identity})
    record["population"] = run.population
    record["taste_agreement"] = {"nearest_10_share": round(agreement, 4), "chance": round(chance, 4)}
    record["seconds"] = {name: round(value, 1) for name, value in run.seconds.items()}
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nresults written to {args.output}")
    if args.markdown:
        targets = "\n".join(f"- {line}" for line in format_targets(checks).splitlines())
        args.markdown.write_text(f"{format_markdown(run.result)}\n\n{targets}\n")
        print(f"markdown table written to {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
