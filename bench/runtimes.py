"""Served A/B of the model runtimes: two `lookalike serve` processes, --runtime torch and
--runtime onnx, the same model, loaded by turns in each round.

Per round and server: 32 closed-loop clients with one text per Embed call, then 16 with
one image, then one client alone (text, then image) for the single-request latency.
ONNX exports go to the server's cache (--onnx-cache), so only the first run exports.

    python bench/runtimes.py --model ViT-B-32 --pretrained none --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import print_table, sample_captions, sample_jpegs  # noqa: E402
from service.client import LookalikeClient  # noqa: E402

RUNTIMES = ("torch", "onnx")


def closed_loop(call, clients: int, seconds: float) -> float:
    """Calls per second of `clients` threads each calling `call(i)` back to back for `seconds`."""
    stop = time.perf_counter() + seconds
    done = [0]
    lock = threading.Lock()

    def worker(index: int) -> None:
        while time.perf_counter() < stop:
            call(index)
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done[0] / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--single-calls", type=int, default=20)
    parser.add_argument("--port", type=int, default=50871)
    parser.add_argument("--onnx-cache", type=Path, help="default: the server's, <data dir>/onnx")
    args = parser.parse_args(argv)
    from service.config import default_data_dir

    cache = args.onnx_cache or default_data_dir() / "onnx"
    texts, jpegs = sample_captions(64), sample_jpegs(32)
    servers, clients = [], {}
    try:
        for offset, runtime in enumerate(RUNTIMES):
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "LOOKALIKE_ONNX_CACHE_DIR": str(cache)}
            servers.append(subprocess.Popen(
                [sys.executable, "-m", "service", "serve", "--model", args.model, "--pretrained", args.pretrained,
                 "--runtime", runtime, "--port", str(args.port + offset), "--data-dir", tempfile.mkdtemp()],
                env=env, stdout=subprocess.DEVNULL))
            clients[runtime] = LookalikeClient(f"127.0.0.1:{args.port + offset}", timeout=300)
        for client in clients.values():
            client.wait_until_serving(600)
            client.embed(texts=texts[:2], images=jpegs[:2])
        results: dict[tuple[str, str], list[float]] = {}
        for round_index in range(args.rounds):
            order = RUNTIMES if round_index % 2 == 0 else RUNTIMES[::-1]
            for runtime in order:
                client = clients[runtime]

                def one_text(index: int, client: LookalikeClient = client) -> None:
                    client.embed(texts=[texts[index % len(texts)]])

                def one_image(index: int, client: LookalikeClient = client) -> None:
                    client.embed(images=[jpegs[index % len(jpegs)]])

                results.setdefault((runtime, "texts/s"), []).append(closed_loop(one_text, 32, args.seconds))
                results.setdefault((runtime, "images/s"), []).append(closed_loop(one_image, 16, args.seconds))
                for kind, call in (("one text ms", one_text), ("one image ms", one_image)):
                    times = []
                    for index in range(args.single_calls):
                        started = time.perf_counter()
                        call(index)
                        times.append((time.perf_counter() - started) * 1000)
                    results.setdefault((runtime, kind), []).append(statistics.median(times))
        rows = []
        for kind in ("texts/s", "images/s", "one text ms", "one image ms"):
            torch_values, onnx_values = results[("torch", kind)], results[("onnx", kind)]
            better = [(o / t if kind.endswith("/s") else t / o) for t, o in zip(torch_values, onnx_values)]
            rows.append((kind, " / ".join(f"{value:.1f}" for value in torch_values),
                         " / ".join(f"{value:.1f}" for value in onnx_values),
                         " / ".join(f"{value:.2f}x" for value in better)))
        print(f"Served runtimes, {args.model}, {args.rounds} rounds (values per round)")
        print_table(("load", "torch", "onnx", "onnx better by (per round)"), rows)
    finally:
        for client in clients.values():
            client.close()
        for server in servers:
            server.terminate()
            server.wait(60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
