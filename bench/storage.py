"""P3/P4: the storage engines under the engine facade, as ratio tables measured in one run.

P3  Search p50/p99 at 10k and 100k items (512-d random unit vectors), unfiltered and
    filtered (a keyword match on an indexed payload key, 10% of the items), on the
    embedded default (Qdrant Edge); qdrant-client's local mode (the old embedded
    default) beside it at 10k.
P4  Recommend p99 against Search p99 at 100k items with 1,000 users of 200 events
    each, and RecordEvents throughput (events/s) into the embedded default, beside
    the raw qdrant-edge-py ceiling (bare points, same batch) measured in the same run.

Everything goes through recommender.engine.Engine (the object the gRPC servicers
call), so conversion, model guard and ranking are included; gRPC framing is not.
`--part events` measures RecordEvents alone, interleaved round by round: the raw
Edge ceiling, the engine, and a real server process over gRPC (tiny model,
embedded Edge, 500 events per call as `lookalike events` sends them), with the
latency of other catalog calls made while a bulk ingest runs.

    nice -n 10 python -m bench.storage                 # the whole table (a few minutes)
    nice -n 10 python -m bench.storage --sizes 10000 --users 200 --no-local
    nice -n 10 python -m bench.storage --part events --sizes 10000 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from service.threads import limit_numpy_blas

limit_numpy_blas()  # as `lookalike serve` does before numpy loads; an OPENBLAS_NUM_THREADS of yours wins

import numpy as np  # noqa: E402

from recommender.engine import Engine, open_engine  # noqa: E402
from recommender.filters import Filter, Match  # noqa: E402
from recommender.types import (  # noqa: E402
    Event,
    EventType,
    ItemInput,
    RecommendQuery,
    SearchParams,
    SearchTarget,
)

DIM = 512
CATEGORIES = 10
MODEL = "bench-random(dim=512)"
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
UPSERT_CHUNK = 1000
EVENT_CHUNK = 500  # what service/app.py hands the engine per executor job
PROBE_INTERVAL = 0.02  # s between the GetItems calls timed during a bulk ingest
EVENT_TYPES = [EventType.VIEW] * 6 + [EventType.CLICK] * 2 + [EventType.ADD_TO_CART, EventType.PURCHASE,
                                                                EventType.LIKE, EventType.DISLIKE]


def unit_rows(rng: np.random.Generator, count: int) -> np.ndarray:
    rows = rng.standard_normal((count, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def open_embedded(folder: Path):
    from recommender.storage.edge import open_edge

    storage = open_edge(folder, "bench", MODEL, DIM, {"category": "keyword"})
    return open_engine(storage, clock=lambda: NOW), storage


def open_local_mode(folder: Path) -> tuple[Engine, Callable[[], None]]:
    import warnings

    from qdrant_client import QdrantClient

    from recommender.storage.server import open_server

    warnings.filterwarnings("ignore", message="Payload indexes have no effect")
    storage = open_server(QdrantClient(path=str(folder / "local")), "bench", MODEL, DIM, {"category": "keyword"},
                          location="qdrant-client local mode")
    return open_engine(storage, clock=lambda: NOW), storage.close


def load_items(engine: Engine, vectors: np.ndarray) -> float:
    """Upsert all items; returns items/s."""
    started = time.perf_counter()
    for start in range(0, len(vectors), UPSERT_CHUNK):
        batch = [(index, ItemInput(item_id=f"item-{index}", payload={"category": f"c{index % CATEGORIES}",
                                                                      "price": float(index % 100)},
                                   image_vector=vectors[index]))
                 for index in range(start, min(start + UPSERT_CHUNK, len(vectors)))]
        engine.upsert_items(batch)
    return len(vectors) / (time.perf_counter() - started)


def latencies(call: Callable[[int], object], count: int) -> list[float]:
    call(0)  # warm
    samples = []
    for n in range(count):
        started = time.perf_counter()
        call(n)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def p(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


def search_rows(engine: Engine, queries: np.ndarray, count: int) -> dict[str, list[float]]:
    filtered = Filter(must=(Match("category", "c3"),))
    rows = {}
    for name, filter_ in (("unfiltered", None), ("filtered (10%)", filtered)):
        def search(n: int, f: Filter | None = filter_) -> object:
            return engine.search_by_vector(queries[n % len(queries)], SearchTarget.IMAGE, f, SearchParams(limit=10),
                                           made_by_model=False)

        rows[name] = latencies(search, count)
    return rows


def make_events(users: int, per_user: int, items: int, rng: np.random.Generator) -> list[Event]:
    """Each user's events on random items, five minutes apart, 20 days ago, arrivals interleaving users."""
    events = []
    for user in range(users):
        favourites = rng.integers(0, items, size=per_user)
        for n, item in enumerate(favourites):
            kind = EVENT_TYPES[int(rng.integers(len(EVENT_TYPES)))]
            events.append(Event(f"user-{user}", f"item-{int(item)}", kind,
                                NOW - timedelta(days=20) + timedelta(minutes=int(n) * 5)))
    order = rng.permutation(len(events))  # arrivals interleave users, as in production
    return [events[i] for i in order]


def record_events(engine: Engine, users: int, per_user: int, items: int, rng: np.random.Generator) -> float:
    """make_events through Engine.record_events, EVENT_CHUNK per call; returns events/s."""
    events = make_events(users, per_user, items, rng)
    started = time.perf_counter()
    for start in range(0, len(events), EVENT_CHUNK):
        engine.record_events(events[start:start + EVENT_CHUNK])
    return len(events) / (time.perf_counter() - started)


def raw_edge_ceiling(count: int) -> float:
    """qdrant-edge-py alone: bare points (random ids, no payload, no payload index), EVENT_CHUNK per update,
    into a fresh shard, building the points included; returns points/s. No event store can beat it."""
    import qdrant_edge as edge

    folder = Path(tempfile.mkdtemp(prefix="bench-raw-"))
    shard = edge.EdgeShard.create(str(folder / "events"),
                                  edge.EdgeConfig(sparse_vectors={"unused": edge.EdgeSparseVectorParams()}))
    started = time.perf_counter()
    for start in range(0, count, EVENT_CHUNK):
        digits = os.urandom(16 * min(EVENT_CHUNK, count - start)).hex()
        shard.update(edge.UpdateOperation.upsert_points([edge.Point(digits[i:i + 32], {})
                                                         for i in range(0, len(digits), 32)]))
    rate = count / (time.perf_counter() - started)
    shard.close()
    return rate


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def grpc_record_events(events: list[Event], items: int) -> dict[str, float]:
    """RecordEvents into a real server process (tiny model, embedded Edge) from one client here, 500
    events per call, while a second client times a GetItems (10 ids) every PROBE_INTERVAL; the same
    probe alone first. Returns events/s and the probe's p50/p99/max ms, idle and during the ingest."""
    import grpc

    from service.api.lookalike.v1 import (
        catalog_service_pb2 as catalog_pb,
        catalog_service_pb2_grpc as catalog_grpc,
        recommendation_service_pb2 as recommendation_pb,
        recommendation_service_pb2_grpc as recommendation_grpc,
    )
    from service.client import LookalikeClient, NewItem

    port = _free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-grpc-"))
    log = (data_dir / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "service", "serve", "--model", "lookalike-tiny", "--pretrained",
                               "none", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir / "data"),
                               "--device", "cpu"], cwd=Path(__file__).resolve().parents[1],
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=log, stderr=subprocess.STDOUT)
    target = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        with LookalikeClient(target) as client:
            while True:
                try:
                    dim = client.embed(texts=["probe"]).dim
                    break
                except Exception:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"the bench server did not start; see {log.name}") from None
                    time.sleep(1)
            rng = np.random.default_rng(1)
            client.upsert((NewItem(id=f"item-{n}", image_vector=row.tolist())
                           for n, row in enumerate(rng.standard_normal((items, dim)).astype(np.float32))),
                          batch_size=256)
        kinds = {kind: getattr(recommendation_pb, f"EVENT_TYPE_{kind.name}") for kind in EventType}
        requests = []
        for start in range(0, len(events), EVENT_CHUNK):
            request = recommendation_pb.RecordEventsRequest()
            for event in events[start:start + EVENT_CHUNK]:
                message = request.events.add(user_id=event.user_id, item_id=event.item_id, type=kinds[event.event_type])
                message.timestamp.FromDatetime(event.timestamp)
            requests.append(request)
        probe_request = catalog_pb.GetItemsRequest(ids=[f"item-{n}" for n in range(10)])

        with grpc.insecure_channel(target) as ingest_channel, grpc.insecure_channel(target) as probe_channel:
            record = recommendation_grpc.RecommendationServiceStub(ingest_channel).RecordEvents
            get_items = catalog_grpc.CatalogServiceStub(probe_channel).GetItems

            def probe(until: threading.Event, samples: list[float]) -> None:
                while not until.is_set():  # paced, so the probe itself costs the server little
                    started = time.perf_counter()
                    get_items(probe_request, timeout=120)
                    samples.append((time.perf_counter() - started) * 1000)
                    until.wait(PROBE_INTERVAL)

            idle: list[float] = []
            stop = threading.Event()
            timer = threading.Timer(3.0, stop.set)
            timer.start()
            probe(stop, idle)
            busy: list[float] = []
            stop = threading.Event()
            prober = threading.Thread(target=probe, args=(stop, busy))
            prober.start()
            started = time.perf_counter()
            for request in requests:
                reply = record(request, timeout=600)
                assert reply.recorded == len(request.events), reply.errors[:3]
            rate = len(events) / (time.perf_counter() - started)
            stop.set()
            prober.join()
        return {"rate": rate, "idle_p50": p(idle, 50), "idle_p99": p(idle, 99), "idle_max": max(idle),
                "busy_p50": p(busy, 50), "busy_p99": p(busy, 99), "busy_max": max(busy)}
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def events_part(args: argparse.Namespace) -> None:
    """RecordEvents alone: raw Edge ceiling, engine, gRPC, interleaved in each round on fresh stores."""
    size = min(args.sizes)
    count = args.users * args.events_per_user
    print(f"# RecordEvents bench  {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC  {platform.machine()} "
          f"{platform.python_version()}  {count:,} events per row, {EVENT_CHUNK} per call, {size:,} items; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| round | raw Edge ceiling (bare points) | Engine.record_events | vs ceiling | gRPC RecordEvents "
          "| vs ceiling | GetItems p50 / p99 / max ms, idle | same, during the ingest | load avg |")
    print("|---|---:|---:|---:|---:|---:|---|---|---:|")
    vectors = unit_rows(np.random.default_rng(size), size)
    for round_ in range(1, args.rounds + 1):
        events = make_events(args.users, args.events_per_user, size, np.random.default_rng(round_))
        raw = raw_edge_ceiling(count)
        engine, storage = open_embedded(Path(tempfile.mkdtemp(prefix="bench-events-")))
        try:
            load_items(engine, vectors)
            started = time.perf_counter()
            for start in range(0, count, EVENT_CHUNK):
                engine.record_events(events[start:start + EVENT_CHUNK])
            through_engine = count / (time.perf_counter() - started)
        finally:
            storage.close()
        served = grpc_record_events(events, size) if not args.no_grpc else None
        grpc_cells = ("| n/a | n/a | n/a | n/a " if served is None else
                      f"| {served['rate']:,.0f}/s | {served['rate'] / raw:.2f}x "
                      f"| {served['idle_p50']:.1f} / {served['idle_p99']:.1f} / {served['idle_max']:.1f} "
                      f"| {served['busy_p50']:.1f} / {served['busy_p99']:.1f} / {served['busy_max']:.1f} ")
        print(f"| {round_} | {raw:,.0f}/s | {through_engine:,.0f}/s | {through_engine / raw:.2f}x "
              f"{grpc_cells}| {os.getloadavg()[0]:.1f} |", flush=True)


def p4_rows(engine: Engine, users: int, calls: int, queries: np.ndarray, p3_search_p99: tuple[float, float],
            popularity: bool = True) -> str:
    """Recommend cold (a user's first call: events, vectors, clustering) and warm (the same user
    again: the profile cache skips vectors and clustering), interleaved round by round with a
    plain Search so that every ratio compares calls made under the same load."""
    category = Filter(must=(Match("category", "c3"),))
    cache = engine.profile_cache
    cold_users = iter(range(users))  # each cold call takes a user never asked for before

    def first_call(make: Callable[[str], object]) -> Callable[[int], object]:
        return lambda n: make(f"user-{next(cold_users)}")

    recommend = {}  # one user per round for the cold/warm pair, so warm is the same user's next call

    def recommend_cold(n: int) -> object:
        recommend[n] = f"user-{next(cold_users)}"
        return engine.recommend(RecommendQuery(recommend[n], limit=10))

    rows: dict[str, Callable[[int], object]] = {
        "Search (unfiltered, interleaved)": lambda n: engine.search_by_vector(
            queries[n % len(queries)], SearchTarget.IMAGE, None, SearchParams(limit=10), made_by_model=False),
        "Recommend cold (multi-interest, exclude seen)": recommend_cold,
        "Recommend warm (same user again)": lambda n: engine.recommend(RecommendQuery(recommend[n], limit=10)),
        "Recommend cold, filtered (10%)": first_call(
            lambda user: engine.recommend(RecommendQuery(user, limit=10, filter=category))),
        "GetProfile cold": first_call(engine.profile),
    }
    if popularity:
        rows["Recommend, cold start (popularity)"] = lambda n: engine.recommend(
            RecommendQuery(f"new-user-{n}", limit=10))
    if 3 * (calls + 1) > users:
        raise SystemExit(f"--users must be at least {3 * (calls + 1)} for {calls} cold calls per row")
    for call in rows.values():
        call(calls)  # warm the code paths (and the popularity cache) once, outside the timed rounds
    hits, misses = cache.hits, cache.misses
    samples = interleaved(rows, calls)
    warm_hits, cold_misses = cache.hits - hits, cache.misses - misses

    # One user with 5,000 events on 5,000 items: the profile window (500) is full, so the seen
    # items come from a second read, and all 5,000 are excluded from the search.
    heavy = f"user-{users}"
    engine.record_events([Event(heavy, f"item-{i}", EventType.VIEW, NOW - timedelta(days=10, minutes=-i))
                          for i in range(5000)])

    def heavy_cold(n: int) -> object:
        cache.forget(heavy)
        return engine.recommend(RecommendQuery(heavy, limit=10))

    heavy_rows: dict[str, Callable[[int], object]] = {
        "Search (unfiltered, interleaved)": rows["Search (unfiltered, interleaved)"],
        "Recommend cold, one user with 5,000 seen items": heavy_cold,
        "Recommend warm, the same user": lambda n: engine.recommend(RecommendQuery(heavy, limit=10)),
    }
    for name, values in interleaved(heavy_rows, max(10, calls // 3)).items():
        samples.setdefault(name, []).extend(values)
    search = p(samples["Search (unfiltered, interleaved)"], 99)
    print("| call | p50 ms | p99 ms | p99 vs Search p99 (interleaved) |")
    print("|---|---:|---:|---:|")
    for name, values in samples.items():
        print(f"| {name} | {p(values, 50):.1f} | {p(values, 99):.1f} | {p(values, 99) / search:.2f}x |")
    print(f"\nProfile cache over the first {calls} rounds: {warm_hits} hits ({calls} warm calls), {cold_misses} "
          f"misses. P3's Search p99 earlier in this run: {p3_search_p99[0]:.1f} ms unfiltered, "
          f"{p3_search_p99[1]:.1f} ms filtered.\n")
    return heavy


def interleaved(rows: dict[str, Callable[[int], object]], rounds: int) -> dict[str, list[float]]:
    """Each round calls every row once, so slow and fast calls share the load of the moment."""
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for n in range(rounds):
        for name, call in rows.items():
            started = time.perf_counter()
            call(n)
            samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200, help="timed calls per row")
    parser.add_argument("--recommend-calls", type=int, default=60,
                        help="timed calls per P4 row (each builds a profile: slower than a search)")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--events-per-user", type=int, default=200)
    parser.add_argument("--local-size", type=int, default=10_000, help="items for qdrant-client local mode")
    parser.add_argument("--no-local", action="store_true", help="skip qdrant-client local mode")
    parser.add_argument("--no-popularity", action="store_true",
                        help="skip what needs the popularity counts (the cold-start row, the facet read)")
    parser.add_argument("--part", choices=["all", "events"], default="all",
                        help="events: RecordEvents alone (raw Edge ceiling, engine, gRPC), --rounds times")
    parser.add_argument("--rounds", type=int, default=2, help="with --part events")
    parser.add_argument("--no-grpc", action="store_true", help="with --part events: skip the server process")
    args = parser.parse_args(argv)
    if args.part == "events":
        events_part(args)
        return

    rng = np.random.default_rng(0)
    queries = unit_rows(rng, 64)
    print(f"# storage bench  {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC  {platform.machine()} "
          f"{platform.python_version()}  dim {DIM}, limit 10, {args.queries} calls per row, "
          f"load average {os.getloadavg()[0]:.1f}, numpy BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS')}")
    print("\n## P3: Search latency (ms) through Engine.search_by_vector\n")
    print("| engine | items | query | p50 | p99 | p50 vs Edge unfiltered at same size |")
    print("|---|---:|---|---:|---:|---:|")
    p4_search_p99 = None
    largest = max(args.sizes)
    kept: tuple | None = None
    for size in sorted(args.sizes):
        vectors = unit_rows(np.random.default_rng(size), size)
        folder = Path(tempfile.mkdtemp(prefix=f"bench-edge-{size}-"))
        engine, storage = open_embedded(folder)
        upsert_rate = load_items(engine, vectors)
        rows = search_rows(engine, queries, args.queries)
        base = p(rows["unfiltered"], 50)
        for name, samples in rows.items():
            print(f"| Qdrant Edge (embedded default) | {size:,} | {name} | {p(samples, 50):.1f} | "
                  f"{p(samples, 99):.1f} | {p(samples, 50) / base:.2f}x |")
        print(f"|  upsert | {size:,} | | {upsert_rate:,.0f} items/s | | |")
        if size == largest:
            p4_search_p99 = (p(rows["unfiltered"], 99), p(rows["filtered (10%)"], 99))
            kept = (engine, storage, size)
        else:
            storage.close()
        if size == args.local_size and not args.no_local:
            local_engine, local_close = open_local_mode(Path(tempfile.mkdtemp(prefix="bench-local-")))
            local_rate = load_items(local_engine, vectors)
            local_rows = search_rows(local_engine, queries, max(20, args.queries // 5))
            for name, samples in local_rows.items():
                print(f"| qdrant-client local mode (old default) | {size:,} | {name} | {p(samples, 50):.1f} | "
                      f"{p(samples, 99):.1f} | {p(samples, 50) / base:.2f}x |")
            print(f"|  upsert | {size:,} | | {local_rate:,.0f} items/s | | |")
            local_close()

    assert kept is not None and p4_search_p99 is not None
    engine, storage, size = kept
    try:
        print(f"\n## P4: Recommend vs Search at {size:,} items, {args.users:,} users x {args.events_per_user} events\n")
        rate = record_events(engine, args.users, args.events_per_user, size, rng)
        ceiling = raw_edge_ceiling(args.users * args.events_per_user)
        print(f"RecordEvents into Qdrant Edge: {rate:,.0f} events/s "
              f"({args.users * args.events_per_user:,} events in chunks of {EVENT_CHUNK}; goal >= 5,000/s); "
              f"raw qdrant-edge-py ceiling right after (bare points, same batch): {ceiling:,.0f}/s, "
              f"ratio {rate / ceiling:.2f}x; load average {os.getloadavg()[0]:.1f}\n")
        heavy = p4_rows(engine, args.users, args.recommend_calls, queries, p4_search_p99, not args.no_popularity)
        print("\nWhere a Recommend's storage time goes (the store's reads alone, same run):\n")
        print("| read | p50 ms | p99 ms |")
        print("|---|---:|---:|")
        events = storage.events
        reads = {
            "a user's latest 200 events (indexed user id, ordered by time, bounded by now)":
                lambda n: events.for_user(f"user-{n % args.users}", 500, until=NOW),
            "their items' vectors (catalog.get, ~200 ids)":
                lambda n: storage.catalog.get([e.item_id for e in events.for_user(f"user-{n % args.users}", 500)],
                                              with_vectors=True),
            "seen item ids of the 5,000-event user (item id only)":
                lambda n: events.recent_item_ids(heavy, 10_000, until=NOW),
        }
        if not args.no_popularity:
            reads[f"popularity over {args.users * args.events_per_user:,} events (facets, uncached)"] = \
                lambda n: events.popularity(NOW - timedelta(days=30), NOW, {t: 1.0 for t in EventType}, 1000)
        for name, call in reads.items():
            samples = latencies(call, max(20, args.queries // 5))
            print(f"| {name} | {p(samples, 50):.1f} | {p(samples, 99):.1f} |")
    finally:
        storage.close()


if __name__ == "__main__":
    main()
