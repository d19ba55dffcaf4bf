"""Event layout 1 (four payload keys, four indexes, str(uuid4()) ids, one update per call)
against the current EdgeEventStore.append and the raw qdrant-edge-py ceiling (bare points),
interleaved chunk by chunk in one process so the load on shared cores falls on all three alike.

Layout 1 is replayed with the same Edge calls its code made (recommender/storage/edge.py
before layout 2); its folder format is no longer served, so it lives only here.

    nice -n 10 python -m bench.event_layouts --users 1000      # 200,000 events each
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import qdrant_edge as edge

from bench.storage import EVENT_CHUNK, make_events
from recommender.storage.edge import open_edge
from recommender.types import Event

_NO_VECTORS = {"unused": edge.EdgeSparseVectorParams()}


def _shard(indexes: dict) -> edge.EdgeShard:
    shard = edge.EdgeShard.create(str(Path(tempfile.mkdtemp(prefix="bench-layout-")) / "events"),
                                  edge.EdgeConfig(sparse_vectors=_NO_VECTORS))
    for key, kind in indexes.items():
        shard.update(edge.UpdateOperation.create_field_index(key, kind))
    return shard


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--events-per-user", type=int, default=200)
    args = parser.parse_args(argv)
    events = make_events(args.users, args.events_per_user, 100_000, np.random.default_rng(0))

    keyword = edge.PayloadSchemaType.Keyword
    layout_1 = _shard({"user_id": keyword, "item_id": keyword, "event_type": keyword,
                       "timestamp": edge.PayloadSchemaType.Float})
    raw = _shard({})
    current = open_edge(Path(tempfile.mkdtemp(prefix="bench-layout-")), "bench", "none", 4, min_free_bytes=0)

    def append_layout_1(chunk: list[Event]) -> None:
        layout_1.update(edge.UpdateOperation.upsert_points([edge.Point(str(uuid.uuid4()), {}, {
            "user_id": e.user_id, "item_id": e.item_id, "event_type": e.event_type.value,
            "timestamp": e.timestamp.timestamp()}) for e in chunk]))

    def append_raw(chunk: list[Event]) -> None:
        digits = os.urandom(16 * len(chunk)).hex()
        raw.update(edge.UpdateOperation.upsert_points([edge.Point(digits[i:i + 32], {})
                                                       for i in range(0, len(digits), 32)]))

    writers: dict[str, Callable[[list[Event]], None]] = {
        "layout 1": append_layout_1, "layout 2 (EdgeEventStore.append)": current.events.append,
        "raw ceiling (bare points)": append_raw}
    spent = dict.fromkeys(writers, 0.0)
    try:
        for start in range(0, len(events), EVENT_CHUNK):
            chunk = events[start:start + EVENT_CHUNK]
            for name, write in writers.items():
                started = time.perf_counter()
                write(chunk)
                spent[name] += time.perf_counter() - started
    finally:
        current.close()
        layout_1.close()
        raw.close()
    ceiling = spent["raw ceiling (bare points)"]
    print(f"{len(events):,} events each, {EVENT_CHUNK} per call, load average {os.getloadavg()[0]:.1f}\n")
    print("| store | events/s | vs raw ceiling | vs layout 1 |")
    print("|---|---:|---:|---:|")
    for name, seconds in spent.items():
        print(f"| {name} | {len(events) / seconds:,.0f} | {ceiling / seconds:.2f}x | "
              f"{spent['layout 1'] / seconds:.2f}x |")


if __name__ == "__main__":
    main()
