"""The benchmark suite behind `lookalike bench`: every figure a ratio measured in one run.

  P1  Lookalike over gRPC (16 single-image clients, 32 single-text clients) vs
      open_clip in-process at batch 16 and 64, interleaved round by round.
  P2  tower GFLOP/s vs torch matmul GFLOP/s at the model's shapes (bench/towers.py).
  P5  ingest: JPEG items through UpsertItems vs the in-process embedder's images/s.
  P6  Lookalike vs infinity-emb vs clip-server, the same loads side by side,
      interleaved, each on quiet cores and with a competing process keeping both
      cores busy; images/s, texts/s, server CPU-seconds per item, single-request p50.
  P3, P4 are the storage benchmarks (bench/storage.py), run when present.

Every server runs in its own process on 127.0.0.1 with the same thread count;
the load generators run in their own processes too (bench/loadgen.py).
Absolute numbers move with whatever else shares the machine: compare within a
table only.

    python bench/suite.py --part P1,P2,P5,P6 [--rounds 2] [--seconds 12]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import apply_thread_policy, print_table, sample_captions, sample_jpegs  # noqa: E402
from bench.inprocess import Baselines  # noqa: E402
from service.config import default_data_dir  # noqa: E402

PEERS_HOME = Path(os.environ.get("PEERS_HOME", "/tmp/lookalike-peers"))
ALL_PARTS = ("P1", "P2", "P3", "P4", "P5", "P6")
# shared/peers/start_clip_server.sh's Flow, with every listener on loopback.
CLIP_FLOW = """jtype: Flow
version: '1'
with:
  port: {port}
  protocol: grpc
  host: 127.0.0.1
executors:
  - name: clip_t
    host: 127.0.0.1
    uses:
      jtype: CLIPEncoder
      with:
        name: ViT-B-32::laion2b-s34b-b79k
      metas:
        py_modules:
          - {encoder}
    timeout_ready: 3000000
    replicas: 1
"""
COMPETITOR = """
import os, numpy as np
a = np.random.rand(768, 768)
while True:
    a = (a @ a.T) / 768.0
"""


@dataclass
class Server:
    name: str
    system: str  # which client talks to it: lookalike | infinity | clip
    target: str
    pid: int
    python: str  # the interpreter whose environment has the client library
    process: subprocess.Popen | None = None

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(self.pid), signal.SIGTERM)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(self.pid), signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- servers -----------------------------------------------------------------------

def start_lookalike(name: str, data_dir: Path, env: dict[str, str], log: Path, root: Path = ROOT) -> Server:
    """`lookalike serve` from the checkout at `root` (this one, or a baseline to compare against)."""
    port = free_port()
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", **env, "PYTHONPATH": str(root)}
    if env.get("LOOKALIKE_OMP_WAIT_POLICY") == "default":
        environ.pop("OMP_WAIT_POLICY", None)
    command = [sys.executable, "-m", "service", "serve", "--model", "ViT-B-32", "--pretrained", "none",
               "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir), "--device", "cpu"]
    process = subprocess.Popen(command, cwd=root, env=environ, stdout=log.open("w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    return Server(name, "lookalike", f"127.0.0.1:{port}", process.pid, sys.executable, process)


def start_peer(system: str, log_dir: Path) -> Server:
    """Start a peer as shared/peers/ does, bound to 127.0.0.1 (clip-server's Flow binds 0.0.0.0 unless told)."""
    port = free_port()
    environ = {**os.environ, "PEERS_HOME": str(PEERS_HOME), "JINA_HIDE_SURVEY": "1"}
    environ.pop("OMP_WAIT_POLICY", None)  # the peers run as their users would start them
    log = (log_dir / f"{system}.log").open("w")
    if system == "infinity":
        python = PEERS_HOME / "infinity" / "bin" / "python"
        command = [str(PEERS_HOME / "infinity" / "bin" / "infinity_emb"), "v2", "--model-id",
                   str(PEERS_HOME / "models" / "hf-clip-vit-b-32-random"), "--served-model-name",
                   "clip-vit-b-32-random", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
                   "--engine", "torch"]
        name = "infinity-emb 0.0.78"
    else:
        python = PEERS_HOME / "clip-server" / "bin" / "python"
        flow = log_dir / "clip-flow.yml"
        flow.write_text(CLIP_FLOW.format(port=port, encoder=PEERS_HOME / "models" / "clip_local_encoder.py"))
        environ["CLIP_LOCAL_CKPT"] = str(PEERS_HOME / "models" / "ViT-B-32-random.pt")
        command = [str(python), "-m", "clip_server", str(flow)]
        name = "clip-server 0.8.3"
    process = subprocess.Popen(command, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Server(name, system, f"127.0.0.1:{port}", process.pid, str(python), process)


def wait_until_serving(server: Server, inputs: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(tuple_target(server.target), timeout=1):
            result = load(server, inputs, "text", concurrency=1, seconds=1, warmup=0)
            if result and result["items"] > 0:
                return
        if server.process is not None and server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}")
        time.sleep(2)
    raise TimeoutError(f"{server.name} did not answer within {timeout:.0f}s")


def tuple_target(target: str) -> tuple[str, int]:
    host, port = target.rsplit(":", 1)
    return host, int(port)


def load(server: Server, inputs: Path, kind: str, concurrency: int, seconds: float, warmup: float) -> dict | None:
    command = [server.python, str(ROOT / "bench" / "loadgen.py"), "--system", server.system, "--target",
               server.target, "--kind", kind, "--concurrency", str(concurrency), "--seconds", str(seconds),
               "--warmup", str(warmup), "--inputs", str(inputs), "--server-pid", str(server.pid)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + warmup + 240,
                          env={**os.environ, "JINA_HIDE_SURVEY": "1", "JINA_LOG_LEVEL": "ERROR"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        print(f"  ! {server.name} {kind}: no result ({done.stderr.strip()[-300:]})", file=sys.stderr)
        return None
    return json.loads(lines[-1])


@contextlib.contextmanager
def competing_load(active: bool) -> Iterator[None]:
    """A process keeping both cores busy at the same priority as the servers (a matmul loop)."""
    if not active:
        yield
        return
    environ = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    process = subprocess.Popen([sys.executable, "-c", COMPETITOR], env=environ, start_new_session=True)
    time.sleep(1.5)
    try:
        yield
    finally:
        process.terminate()
        process.wait(10)


def write_inputs(folder: Path, images: int, texts: int) -> Path:
    path = folder / "inputs.json"
    path.write_text(json.dumps({"images": [base64.b64encode(data).decode() for data in sample_jpegs(images, seed=7)],
                                "texts": sample_captions(texts, seed=7)}))
    return path


# -- parts -------------------------------------------------------------------------

def part_p1(work: Path, inputs: Path, baselines, args) -> None:
    print("\n## P1: Lookalike over gRPC vs open_clip in-process (ViT-B-32 random weights)\n")
    server = start_lookalike("Lookalike", work / "p1-data", {}, work / "p1-lookalike.log")
    try:
        wait_until_serving(server, inputs)
        rows: dict[str, list[float]] = {}
        for round_number in range(args.rounds):
            print(f"  round {round_number + 1}/{args.rounds}", file=sys.stderr)
            for kind, concurrency, batches in (("image", 16, (16, 64)), ("text", 32, (16, 64))):
                result = load(server, inputs, kind, concurrency, args.seconds * (1.5 if kind == "image" else 1),
                              args.warmup)
                rows.setdefault(f"{kind} server", []).append(result["per_s"] if result else float("nan"))
                for batch in batches:
                    rows.setdefault(f"{kind} open_clip {batch}", []).append(
                        baselines.open_clip(kind, batch, args.seconds))
        table = []
        for kind, unit, concurrency in (("image", "images/s", 16), ("text", "texts/s", 32)):
            served = rows[f"{kind} server"]
            for batch in (16, 64):
                baseline = rows[f"{kind} open_clip {batch}"]
                ratios = [s / b for s, b in zip(served, baseline)]
                table.append((f"{concurrency} single-{kind} clients vs open_clip batch {batch}", unit,
                              _spread(served), _spread(baseline), _spread(ratios, "x")))
        print_table(("load", "unit", "Lookalike gRPC", "open_clip in-process", "ratio (goal >= 0.9x)"), table)
    finally:
        server.stop()


def part_p2(args) -> None:
    print("\n## P2: towers vs torch matmul at the model's shapes\n")
    subprocess.run([sys.executable, str(ROOT / "bench" / "towers.py"), "--repeats", "5"], check=False,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})


def part_p5(work: Path, baselines, args) -> None:
    print("\n## P5: ingest through UpsertItems vs the in-process embedder\n")
    from service.client import LookalikeClient, NewItem

    jpegs = sample_jpegs(args.ingest_items, seed=11)
    server = start_lookalike("Lookalike", work / "p5-data", {}, work / "p5-lookalike.log")
    try:
        wait_until_serving(server, write_inputs(work, 4, 4))
        served, embedded = [], []
        with LookalikeClient(server.target, timeout=600) as client:
            for round_number in range(args.rounds):
                items = [NewItem(id=f"r{round_number}-{n}", image=data, payload={"n": n})
                         for n, data in enumerate(jpegs)]
                started = time.perf_counter()
                summary = client.upsert(items, batch_size=32)
                served.append(summary.upserted / (time.perf_counter() - started))
                embedded.append(baselines.embedder("image", 32, args.seconds))
        ratios = [s / e for s, e in zip(served, embedded)]
        print_table(("load", "UpsertItems images/s", "in-process embedder images/s (batch 32)",
                     "ratio (goal >= 0.85x)"),
                    [(f"{args.ingest_items} JPEG items, one stream, 32 a message", _spread(served),
                      _spread(embedded), _spread(ratios, "x"))])
    finally:
        server.stop()


def part_p6(work: Path, inputs: Path, args) -> None:
    print("\n## P6: Lookalike vs peers, quiet cores and a competing process, interleaved rounds\n")
    servers: list[Server] = []
    try:
        servers.append(start_lookalike("Lookalike", work / "p6-data", {}, work / "p6-lookalike.log"))
        if "spin" in args.systems:
            servers.append(start_lookalike("Lookalike, OpenMP spinning (libgomp default)", work / "p6-spin",
                                           {"LOOKALIKE_OMP_WAIT_POLICY": "default"}, work / "p6-spin.log"))
        if "onnx" in args.systems:
            servers.append(start_lookalike("Lookalike, ONNX Runtime", work / "p6-onnx", {"LOOKALIKE_RUNTIME": "onnx"},
                                           work / "p6-onnx.log"))
        if "hybrid" in args.systems:
            # The user's export cache, as `lookalike serve` uses it: only a machine's first run exports.
            cache = default_data_dir() / "onnx"
            servers.append(start_lookalike("Lookalike, hybrid runtime", work / "p6-hybrid",
                                           {"LOOKALIKE_RUNTIME": "hybrid", "LOOKALIKE_ONNX_CACHE_DIR": str(cache)},
                                           work / "p6-hybrid.log"))
        if args.baseline:
            root = Path(args.baseline).resolve()
            servers.append(start_lookalike(f"Lookalike at {_revision(root)}", work / "p6-base", {},
                                           work / "p6-base.log", root=root))
        for peer in ("infinity", "clip"):
            if peer in args.systems:
                servers.append(start_peer(peer, work))
        for server in servers:
            wait_until_serving(server, inputs)
            print(f"  {server.name} serving at {server.target}", file=sys.stderr)
        results: dict[tuple, list[dict]] = {}
        for round_number in range(args.rounds):
            for contended in (False, True):
                order = servers[round_number % len(servers):] + servers[:round_number % len(servers)]
                with competing_load(contended):
                    for server in order:
                        print(f"  round {round_number + 1} {'contended' if contended else 'quiet'}: "
                              f"{server.name}", file=sys.stderr)
                        # A wave of 16 images takes seconds here: the image window is the longest.
                        for kind, concurrency, seconds in (("image", 16, args.seconds * 1.5),
                                                           ("text", 32, args.seconds),
                                                           ("image", 1, args.seconds / 2),
                                                           ("text", 1, args.seconds / 2)):
                            result = load(server, inputs, kind, concurrency, seconds, args.warmup)
                            if result:
                                results.setdefault((server.name, contended, kind, concurrency), []).append(result)
        _p6_tables(servers, results)
        print(f"\nload average at the end: {' '.join(f'{value:.1f}' for value in os.getloadavg())} (1, 5, 15 min)")
        if args.results:
            Path(args.results).write_text(json.dumps({" / ".join(map(str, key)): value
                                                      for key, value in results.items()}, indent=1))
    finally:
        for server in servers:
            server.stop()


def _p6_tables(servers: list[Server], results: dict[tuple, list[dict]]) -> None:
    def median(name, contended, kind, concurrency, field):
        values = [r[field] for r in results.get((name, contended, kind, concurrency), []) if r.get(field) is not None]
        return statistics.median(values) if values else float("nan")

    for contended in (False, True):
        print(f"\n### {'with a competing process on both cores' if contended else 'quiet cores'} "
              "(medians over rounds)\n")
        rows = []
        for server in servers:
            name = server.name
            rows.append((name,
                         f"{median(name, contended, 'image', 16, 'per_s'):.1f}",
                         f"{median(name, contended, 'image', 16, 'cpu_per_item'):.3f}",
                         f"{median(name, contended, 'text', 32, 'per_s'):.1f}",
                         f"{median(name, contended, 'text', 32, 'cpu_per_item'):.3f}",
                         f"{median(name, contended, 'image', 1, 'p50_ms'):.0f}",
                         f"{median(name, contended, 'text', 1, 'p50_ms'):.0f}"))
        print_table(("system", "images/s (16 clients)", "CPU-s/image", "texts/s (32 clients)", "CPU-s/text",
                     "one image p50 ms", "one text p50 ms"), rows)
    lookalike = servers[0].name
    print("\n### ratios: Lookalike / peer within each round (median), and contended / quiet\n")
    ratio_rows: list[tuple[str, ...]] = []
    for server in servers[1:]:
        for kind, concurrency in (("image", 16), ("text", 32)):
            cells = [f"{server.name}, {kind}s/s"]
            for contended in (False, True):
                mine = results.get((lookalike, contended, kind, concurrency), [])
                theirs = results.get((server.name, contended, kind, concurrency), [])
                ratios = [a["per_s"] / b["per_s"] for a, b in zip(mine, theirs) if b["per_s"]]
                cells.append(_spread(ratios, "x"))
            ratio_rows.append(tuple(cells))
        for kind in ("image", "text"):
            cells = [f"{server.name}, one {kind} p50 (peer / Lookalike: above 1, Lookalike answers sooner)"]
            for contended in (False, True):
                mine = results.get((lookalike, contended, kind, 1), [])
                theirs = results.get((server.name, contended, kind, 1), [])
                ratios = [b["p50_ms"] / a["p50_ms"] for a, b in zip(mine, theirs)
                          if a.get("p50_ms") and b.get("p50_ms")]
                cells.append(_spread(ratios, "x"))
            ratio_rows.append(tuple(cells))
    print_table(("Lookalike vs", "quiet", "contended"), ratio_rows)
    quiet = median(lookalike, False, "image", 16, "cpu_per_item")
    loud = median(lookalike, True, "image", 16, "cpu_per_item")
    print(f"\nLookalike CPU-s/image contended / quiet: {loud / quiet:.2f}x (goal <= 1.3x)")


def _revision(root: Path) -> str:
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or root.name


def _spread(values: list[float], suffix: str = "") -> str:
    values = [value for value in values if value == value]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}{suffix}"
    return f"{statistics.median(values):.2f}{suffix} ({min(values):.2f}-{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lookalike bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="P1,P2,P5,P6", help="comma-separated parts: " + ",".join(ALL_PARTS))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=16.0,
                        help="measured seconds per load (P6 images 1.5x, single-request loads 0.5x)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--ingest-items", type=int, default=256)
    parser.add_argument("--results", help="write P6's raw per-load results (JSON) here")
    parser.add_argument("--systems", default="lookalike,infinity,clip",
                        help="P6 systems: lookalike, spin (Lookalike with libgomp's default wait), "
                             "onnx (Lookalike with --runtime onnx), hybrid (--runtime hybrid), infinity, clip")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="P6: also run the Lookalike of another checkout (e.g. `git worktree add /tmp/base REV`), "
                             "to show a change against its parent in the same run")
    args = parser.parse_args(argv)
    parts = [part.strip().upper() for part in args.part.split(",") if part.strip()]
    unknown = set(parts) - set(ALL_PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL_PARTS)}")
    print(f"# lookalike bench {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}")
    # In-process baselines run here, with the server's thread settings (before torch loads).
    threads = apply_thread_policy()
    print(f"torch intra-op threads {threads} (servers and baselines alike); OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset')} for Lookalike and the baselines, unset for the peers")
    baselines = Baselines()
    with tempfile.TemporaryDirectory(prefix="lookalike-bench-") as folder:
        work = Path(folder)
        inputs = write_inputs(work, 256, 512)
        for part in parts:
            if part == "P1":
                part_p1(work, inputs, baselines, args)
            elif part == "P2":
                part_p2(args)
            elif part == "P5":
                part_p5(work, baselines, args)
            elif part == "P6":
                part_p6(work, inputs, args)
        if {"P3", "P4"} & set(parts):
            storage = ROOT / "bench" / "storage.py"
            if storage.is_file():
                subprocess.run([sys.executable, str(storage)], check=False)
            else:
                print("\n## P3, P4: bench/storage.py is not in this checkout")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
