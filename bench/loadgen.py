"""One closed-loop load against one embedding server, printed as a JSON line.

Run with the Python of the system's own environment (its client library):
Lookalike (grpc.aio, this repository's stubs), infinity-emb (REST, aiohttp) or
clip-server (jina gRPC, clip_client). Every client sends one input per request,
waits for the answer, sends the next; inputs are distinct across requests.
The server's CPU time (its whole process tree, from /proc) is read at the
start and end of the measured window, after a warm-up.

    python bench/loadgen.py --system lookalike --target 127.0.0.1:50051 --kind image \\
        --concurrency 16 --seconds 20 --inputs inputs.json --server-pid 1234
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from pathlib import Path

# Run as a script with the system's own Python, so bench/ itself is on sys.path: common.py is stdlib-only.
from common import process_tree_cpu_seconds as tree_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]


# -- one request per system ------------------------------------------------------

async def lookalike_client(target: str, kind: str):
    sys.path.insert(0, str(ROOT))
    import grpc

    from service.api.lookalike.v1 import embedding_service_pb2 as pb, embedding_service_pb2_grpc as rpc

    channel = grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)])
    stub = rpc.EmbeddingServiceStub(channel)

    async def send(value):
        request = pb.EmbedRequest(images=[value]) if kind == "image" else pb.EmbedRequest(texts=[value])
        await stub.Embed(request, timeout=300)
    return send, channel.close


async def infinity_client(target: str, kind: str):
    import aiohttp

    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300),
                                    connector=aiohttp.TCPConnector(limit=0))

    async def send(value):
        if kind == "image":
            body = {"model": "clip-vit-b-32-random", "modality": "image",
                    "input": ["data:image/jpeg;base64," + base64.b64encode(value).decode()]}
        else:
            body = {"model": "clip-vit-b-32-random", "modality": "text", "input": [value]}
        async with session.post(f"http://{target}/embeddings", json=body) as response:
            if response.status != 200:
                raise RuntimeError(f"infinity answered {response.status}: {(await response.text())[:200]}")
            await response.read()
    return send, session.close


async def clip_client(target: str, kind: str):
    from clip_client import Client
    from docarray import Document

    idle: list = []  # one jina client per concurrent caller: a Client keeps per-call state

    async def send(value):
        client = idle.pop() if idle else Client(f"grpc://{target}")
        try:
            await client.aencode([Document(blob=value)] if kind == "image" else [value], batch_size=1)
        finally:
            idle.append(client)
    return send, None


CLIENTS = {"lookalike": lookalike_client, "infinity": infinity_client, "clip": clip_client}


# -- the load ----------------------------------------------------------------------

async def run(args) -> dict:
    inputs = json.loads(Path(args.inputs).read_text())
    values = ([base64.b64decode(item) for item in inputs["images"]] if args.kind == "image" else inputs["texts"])
    send, close = await CLIENTS[args.system](args.target, args.kind)
    counter = iter(range(1 << 62))
    latencies: list[float] = []
    errors: list[str] = []
    measuring = asyncio.Event()
    stop_at = [float("inf")]

    async def client() -> None:
        while time.perf_counter() < stop_at[0]:
            value = values[next(counter) % len(values)]
            started = time.perf_counter()
            try:
                await send(value)
            except Exception as error:  # noqa: BLE001 - counted and reported, the load goes on
                errors.append(f"{type(error).__name__}: {error}"[:200])
                await asyncio.sleep(0.05)
                continue
            if measuring.is_set() and time.perf_counter() <= stop_at[0]:
                latencies.append(time.perf_counter() - started)

    tasks = [asyncio.create_task(client()) for _ in range(args.concurrency)]
    await asyncio.sleep(args.warmup)
    latencies.clear()
    cpu_start = tree_cpu_seconds(args.server_pid) if args.server_pid else 0.0
    started = time.perf_counter()
    stop_at[0] = started + args.seconds
    measuring.set()
    await asyncio.sleep(args.seconds)
    elapsed = time.perf_counter() - started
    cpu = (tree_cpu_seconds(args.server_pid) - cpu_start) if args.server_pid else 0.0
    await asyncio.wait(tasks, timeout=120)
    for task in tasks:
        task.cancel()
    if close is not None:
        await close()
    latencies.sort()
    done = len(latencies)
    return {"system": args.system, "kind": args.kind, "concurrency": args.concurrency, "items": done,
            "seconds": elapsed, "per_s": done / elapsed, "cpu_s": cpu, "cpu_per_item": cpu / done if done else None,
            "p50_ms": 1000 * latencies[done // 2] if done else None,
            "p95_ms": 1000 * latencies[min(done - 1, int(done * 0.95))] if done else None,
            "errors": len(errors), "first_error": errors[0] if errors else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", choices=sorted(CLIENTS), required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--kind", choices=("image", "text"), required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--inputs", required=True, help="JSON: {images: [base64 JPEG], texts: [str]}")
    parser.add_argument("--server-pid", type=int)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
