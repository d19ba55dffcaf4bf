"""The bars multi-interest must clear, and the table and JSON forms of a run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from recommender.evaluation.bootstrap import paired_ratio_interval, ratio
from recommender.evaluation.metrics import METRIC_NAMES, EvaluationResult


@dataclass(frozen=True)
class TargetCheck:
    """One bar. For ratio targets `value` is ours / baseline and `interval` its
    95% paired-bootstrap interval over users; for the disliked share, the share."""

    description: str
    value: float
    threshold: float
    met: bool
    interval: tuple[float, float] | None = None


# (baseline, minimum ratio of multi-interest's hit_rate@10 to the baseline's)
HIT_RATE_TARGETS: tuple[tuple[str, float], ...] = (("single_centroid", 1.15), ("qdrant_best_score", 1.0),
                                                   ("popular", 3.0))
MAX_DISLIKED_SHARE = 0.05


def check_targets(result: EvaluationResult) -> list[TargetCheck]:
    """The bars multi-interest must clear (docs/evaluation.md); missing strategies are skipped."""
    by_name = result.by_strategy()
    ours = by_name.get("multi_interest")
    if ours is None:
        return []
    checks = hit_rate_checks({name: r.user_hits for name, r in by_name.items()})
    disliked = ours.metrics["disliked_share@10"]
    checks.append(TargetCheck(f"multi_interest disliked_share@10 < {MAX_DISLIKED_SHARE:.0%}", disliked,
                              MAX_DISLIKED_SHARE, disliked < MAX_DISLIKED_SHARE))
    return checks


def hit_rate_checks(user_hits: Mapping[str, Sequence[float]]) -> list[TargetCheck]:
    """The hit-rate ratio bars from per-user hits (one list per strategy, users in one order)."""
    ours = user_hits.get("multi_interest")
    if ours is None:
        return []
    checks = []
    for baseline_name, factor in HIT_RATE_TARGETS:
        baseline = user_hits.get(baseline_name)
        if baseline is None:
            continue
        value = ratio(float(np.mean(ours)) if len(ours) else 0.0, float(np.mean(baseline)) if len(baseline) else 0.0)
        checks.append(TargetCheck(f"multi_interest hit_rate@10 >= {factor:g} x {baseline_name}", value, factor,
                                  value >= factor, paired_ratio_interval(ours, baseline)))
    return checks


def pool_user_hits(records: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    """Concatenate the per-user hits of several runs' JSON records (e.g. one per seed), per strategy.

    Only strategies present in every record are kept, so the lists stay paired user by user.
    """
    if not records:
        raise ValueError("no records to pool")
    names = [name for name in records[0]["strategies"] if all(name in r["strategies"] for r in records)]
    return {name: [hit for record in records for hit in record["strategies"][name]["user_hits@10"]]
            for name in names}


def format_table(result: EvaluationResult) -> str:
    """A fixed-width table, one row per strategy."""
    header = ["strategy", *METRIC_NAMES]
    rows = [[r.strategy, *(_cell(name, r.metrics[name]) for name in METRIC_NAMES)] for r in result.strategies]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(row, widths))) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_markdown(result: EvaluationResult) -> str:
    header = ["strategy", *METRIC_NAMES]
    rows = [[f"`{r.strategy}`", *(_cell(name, r.metrics[name]) for name in METRIC_NAMES)] for r in result.strategies]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(METRIC_NAMES)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_targets(checks: Sequence[TargetCheck]) -> str:
    return "\n".join(_target_line(check) for check in checks)


def _target_line(check: TargetCheck) -> str:
    status = "met" if check.met else "MISSED"
    if check.interval is None:
        return f"[{status}] {check.description}: {check.value:.3f}"
    low, high = check.interval
    return f"[{status}] {check.description}: ratio {check.value:.2f} (95% CI {low:.2f}-{high:.2f})"


def _cell(name: str, value: float) -> str:
    return f"{value:.1f}" if name == "ms_per_call" else f"{value:.3f}"


def to_json(result: EvaluationResult, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-able record of one run: what was run, per-strategy metrics, the targets."""
    return {
        "settings": dict(settings or {}),
        "split_time": result.split_time.isoformat(),
        "catalog_size": result.catalog_size,
        "strategies": {
            r.strategy: {"metrics": {name: round(value, 6) for name, value in r.metrics.items()},
                         "users": r.users, "users_with_dislikes": r.users_with_dislikes,
                         "empty_lists": r.empty_lists,
                         # Per user, in one order across strategies: lets runs be pooled and compared pairwise.
                         "user_hits@10": [int(hit) for hit in r.user_hits]}
            for r in result.strategies
        },
        "targets": [{"description": c.description, "value": _finite(c.value), "threshold": c.threshold,
                     "met": c.met, "interval": None if c.interval is None else [_finite(v) for v in c.interval]}
                    for c in check_targets(result)],
    }


def _finite(value: float) -> float | None:
    """JSON has no infinity: a ratio over a zero baseline is written as null."""
    return round(value, 6) if math.isfinite(value) else None

