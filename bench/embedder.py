"""Embedder throughput by batch size, as ratios within one run (timings drift
up to 1.7x between runs on shared CPUs; compare only rows of one table).

    python bench/embedder.py --model ViT-B-32 --pretrained none --batches 1 8 32 --seconds 10
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PIL import Image  # noqa: E402

from service.embedding import ModelSpec, load_embedder  # noqa: E402


def sample_images(count: int) -> list[bytes]:
    images = []
    for index in range(count):
        buffer = io.BytesIO()
        Image.new("RGB", (320, 240), ((index * 37) % 255, (index * 91) % 255, 128)).save(buffer, "JPEG")
        images.append(buffer.getvalue())
    return images


def throughput(function, inputs: list, seconds: float) -> float:
    function(inputs[:1])  # warm-up: first calls allocate
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        function(inputs)
        done += len(inputs)
    return done / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()

    embedder = load_embedder(ModelSpec.parse(args.model, args.pretrained), device=args.device,
                             max_batch=max(args.batches))
    print(f"model {embedder.identity}, dim {embedder.dim}, device {embedder.device}")
    rows = []
    for batch in args.batches:
        images = sample_images(batch)
        texts = [f"a photo of product number {i}, red and shiny" for i in range(batch)]
        rows.append((batch, throughput(embedder.embed_images, images, args.seconds),
                     throughput(embedder.embed_texts, texts, args.seconds)))
    base_images, base_texts = rows[0][1], rows[0][2]
    print(f"{'batch':>5}  {'images/s':>9}  {'vs batch ' + str(rows[0][0]):>10}  {'texts/s':>9}  "
          f"{'vs batch ' + str(rows[0][0]):>10}")
    for batch, images_per_s, texts_per_s in rows:
        print(f"{batch:>5}  {images_per_s:9.1f}  {images_per_s / base_images:9.2f}x  {texts_per_s:9.1f}  "
              f"{texts_per_s / base_texts:9.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
