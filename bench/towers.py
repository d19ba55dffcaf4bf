"""P2: how close each tower runs to torch's own matmul speed at the model's shapes.

Counts the FLOPs of one forward from its GEMMs (every nn.Linear, the projections
and attention products inside nn.MultiheadAttention, the patch-embedding
convolution as its equivalent GEMM), times the forward, then times each of those
GEMMs alone with torch.mm / torch.bmm at exactly the same shapes and threads.

    tower GFLOP/s  = GEMM FLOPs / forward time
    matmul GFLOP/s = GEMM FLOPs / sum of the isolated GEMM times
    ratio          = the share of the forward spent at matmul speed (goal >= 0.8)

Each tower runs on torch and on ONNX Runtime (the graphs `--runtime onnx` serves,
exported once into the server's cache), with ORT's workers sleeping between ops
(the served default) and spinning; every forward and the GEMM set are timed in
turn within each round, so the columns compare the same moments.

Element-wise ops, norms, softmax and Python overhead are what separates the two.
Projections done with `x @ parameter` are left out of the count, so the tower
figure is, if anything, low.

    python bench/towers.py --model ViT-B-32 --pretrained none --image-batch 16 --text-batch 64 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import apply_thread_policy, print_table, sample_captions, sample_jpegs  # noqa: E402


@dataclass
class Gemms:
    """(batch, M, K, N) of every matrix product of one forward; batch 0 means a plain mm."""

    shapes: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def flops(self) -> float:
        return sum(2.0 * max(batch, 1) * m * k * n for batch, m, k, n in self.shapes)


def record_gemms(model, run) -> Gemms:
    import torch

    gemms = Gemms()

    def linear(module, inputs, output):
        x = inputs[0]
        gemms.shapes.append((0, x.numel() // x.shape[-1], module.in_features, module.out_features))

    def attention(module, inputs, output):
        x = inputs[0]
        batch, length, width = x.shape if module.batch_first else (x.shape[1], x.shape[0], x.shape[2])
        rows = batch * length
        heads, head_width = module.num_heads, width // module.num_heads
        gemms.shapes += [(0, rows, width, 3 * width), (0, rows, width, width),
                         (batch * heads, length, head_width, length), (batch * heads, length, length, head_width)]

    def conv(module, inputs, output):
        x = inputs[0]
        patches = output.shape[0] * output.shape[2] * output.shape[3]
        gemms.shapes.append((0, patches, x.shape[1] * module.kernel_size[0] * module.kernel_size[1],
                             module.out_channels))

    hooks = []
    for module in model.modules():
        if isinstance(module, torch.nn.MultiheadAttention):
            hooks.append(module.register_forward_hook(attention))
        elif isinstance(module, torch.nn.Linear) and not _inside_attention(model, module):
            hooks.append(module.register_forward_hook(linear))
        elif isinstance(module, torch.nn.Conv2d):
            hooks.append(module.register_forward_hook(conv))
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return gemms


def _inside_attention(model, linear) -> bool:
    import torch

    return any(linear is child for module in model.modules() if isinstance(module, torch.nn.MultiheadAttention)
               for child in module.modules())


def best_time(function, repeats: int, warm: bool = True) -> float:
    if warm:
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_time(gemms: Gemms, repeats: int) -> float:
    import torch

    total = 0.0
    cache: dict[tuple, float] = {}
    for shape in gemms.shapes:
        if shape not in cache:
            batch, m, k, n = shape
            if batch:
                left, right = torch.randn(batch, m, k), torch.randn(batch, k, n)
                cache[shape] = best_time(lambda a=left, b=right: torch.bmm(a, b), repeats)
            else:
                left, right = torch.randn(m, k), torch.randn(k, n)
                cache[shape] = best_time(lambda a=left, b=right: torch.mm(a, b), repeats)
        total += cache[shape]
    return total


@dataclass
class Row:
    name: str
    gemms: Gemms
    runs: dict[str, Callable[[], object]]  # runtime -> one forward; every runtime does the same GEMMs
    forward: dict[str, list[float]] = field(default_factory=dict)
    matmul: list[float] = field(default_factory=list)


def onnx_runs(embedder, pixels, tokens, cache_dir: Path, threads: int) -> dict[str, tuple]:
    """(image forward, text forward) on ORT, without and with spinning workers (the same exported graphs)."""
    from service.embedding.onnx_towers import OnnxImageTower, OnnxTextTower, load_onnx_towers, open_session

    sample_pixels, sample_tokens = embedder.sample_inputs()
    towers = load_onnx_towers(embedder.model, embedder.text_tower, identity=embedder.identity,
                              sample_pixels=sample_pixels, sample_tokens=sample_tokens, cache_dir=cache_dir,
                              threads=threads)
    spinning_image = OnnxImageTower(open_session(towers.folder / "image.onnx", threads, spinning=True))
    spinning_text = OnnxTextTower(open_session(towers.folder / "text.onnx", threads, spinning=True),
                                  embedder.text_tower)
    return {"onnx": (lambda: towers.image.encode(pixels), lambda: towers.text.encode(tokens)),
            "onnx, spinning": (lambda: spinning_image.encode(pixels), lambda: spinning_text.encode(tokens))}


def measure(embedder, image_batch: int, text_batch: int, repeats: int, onnx_cache: Path | None = None,
            threads: int = 1) -> list[tuple]:
    """Rows of (forward, runtime, GFLOP, tower GFLOP/s, matmul GFLOP/s, ratio, vs torch), every runtime and
    the GEMMs alone timed in turn within each repeat, so the ratios come from the same moments."""
    import torch

    model = embedder.model  # the bench looks inside on purpose: it times the towers alone
    pixels = torch.stack([embedder.prepare_image(data, "bench") for data in sample_jpegs(image_batch)])
    tokens = torch.stack(embedder.prepare_texts(sample_captions(text_batch)))
    onnx = onnx_runs(embedder, pixels, tokens, onnx_cache, threads) if onnx_cache is not None else {}
    rows = [
        Row(f"image tower, batch {image_batch}", Gemms(),
            {"torch": lambda: model.encode_image(pixels), **{name: runs[0] for name, runs in onnx.items()}}),
        Row(f"text tower, batch {text_batch}, trimmed to {embedder.text_tower.length(tokens)} tokens", Gemms(),
            {"torch": lambda: embedder.text_tower.encode(tokens), **{name: runs[1] for name, runs in onnx.items()}}),
        Row(f"text tower, batch {text_batch}, full {tokens.shape[1]} tokens (open_clip)", Gemms(),
            {"torch": lambda: model.encode_text(tokens)}),
    ]
    with torch.inference_mode():
        for row, module in zip(rows, (model.visual, model, model)):
            row.gemms = record_gemms(module, row.runs["torch"])
            for run in row.runs.values():
                run()  # warm up: first calls allocate and pick kernels
        for _ in range(repeats):
            for row in rows:
                for runtime, run in row.runs.items():
                    row.forward.setdefault(runtime, []).append(best_time(run, 1, warm=False))
                row.matmul.append(matmul_time(row.gemms, 1))
    table = []
    for row in rows:
        reference = statistics.median(row.matmul)
        torch_forward = statistics.median(row.forward["torch"])
        for runtime, times in row.forward.items():
            forward = statistics.median(times)
            flops = row.gemms.flops
            table.append((row.name, runtime, flops / 1e9, flops / forward / 1e9, flops / reference / 1e9,
                          reference / forward, torch_forward / forward))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--image-batch", type=int, default=16)
    parser.add_argument("--text-batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: usable CPUs)")
    parser.add_argument("--onnx-cache", type=Path, help="where the exported ONNX towers are kept "
                        "(default: the server's, <data dir>/onnx)")
    parser.add_argument("--no-onnx", action="store_true", help="torch rows only")
    args = parser.parse_args(argv)
    threads = apply_thread_policy(args.threads)

    from service.embedding import ModelSpec, load_embedder

    embedder = load_embedder(ModelSpec.parse(args.model, args.pretrained), device="cpu",
                             max_batch=max(args.image_batch, args.text_batch))
    onnx_cache = None
    if not args.no_onnx:
        from service.config import default_data_dir

        onnx_cache = args.onnx_cache or default_data_dir() / "onnx"
    print(f"P2 towers vs matmul: {embedder.identity}, {threads} threads, median of {args.repeats} interleaved rounds")
    rows = measure(embedder, args.image_batch, args.text_batch, args.repeats, onnx_cache, threads)
    print_table(("forward", "runtime", "GEMM GFLOP", "tower GFLOP/s", "matmul GFLOP/s", "ratio (goal >= 0.8)",
                 "speed vs torch"),
                [(name, runtime, f"{flops:.1f}", f"{tower:.1f}", f"{reference:.1f}", f"{ratio:.2f}x", f"{speed:.2f}x")
                 for name, runtime, flops, tower, reference, ratio, speed in rows])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
