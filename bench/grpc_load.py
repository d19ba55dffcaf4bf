"""A bounded grpc.aio load generator against an in-process server on loopback:
throughput and latency of Search by concurrency, as ratios within one run.

    python bench/grpc_load.py --items 2000 --requests 300 --concurrency 1 4 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grpc  # noqa: E402
import numpy as np  # noqa: E402

from service.api.lookalike.v1 import (
    search_service_pb2 as search_pb,  # noqa: E402
    search_service_pb2_grpc,
)
from service.background import BackgroundServer  # noqa: E402
from service.client import LookalikeClient, NewItem  # noqa: E402
from service.config import Settings  # noqa: E402


async def load(target: str, requests: list[search_pb.SearchRequest], concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = search_service_pb2_grpc.SearchServiceStub(channel)

        async def worker() -> None:
            while not queue.empty():
                request = queue.get_nowait()
                started = time.perf_counter()
                await stub.Search(request, timeout=60)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(requests) / (time.perf_counter() - started), latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lookalike-tiny")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(port=0, data_dir=Path(data_dir), model=args.model, pretrained=args.pretrained,
                            max_inflight=1024)
        with BackgroundServer(settings) as server, LookalikeClient(server.target) as client:
            dim = client.embed(texts=["probe"]).dim
            rng = np.random.default_rng(0)
            vectors = rng.normal(size=(args.items, dim)).astype(np.float32)
            client.upsert(NewItem(id=f"item-{i}", image_vector=v.tolist(), payload={"group": i % 10})
                          for i, v in enumerate(vectors))
            kinds = {
                "vector": [search_pb.SearchRequest(limit=10) for _ in range(args.requests)],
                "text": [search_pb.SearchRequest(text=f"query {i}", limit=10) for i in range(args.requests)],
            }
            for request in kinds["vector"]:
                request.vector.values.extend(rng.normal(size=dim).tolist())
            print(f"{args.items} items, dim {dim}, model {args.model}; {args.requests} Search calls per row")
            print(f"{'query':>6}  {'conc':>4}  {'req/s':>7}  {'x conc=1':>8}  {'p50 ms':>7}  {'p95 ms':>7}")
            for kind, requests in kinds.items():
                base = None
                for concurrency in args.concurrency:
                    rate, latencies = asyncio.run(load(server.target, requests, concurrency))
                    base = base or rate
                    p50 = statistics.median(latencies) * 1000
                    p95 = float(np.percentile(latencies, 95)) * 1000
                    print(f"{kind:>6}  {concurrency:>4}  {rate:7.1f}  {rate / base:7.2f}x  {p50:7.1f}  {p95:7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
