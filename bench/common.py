"""What every benchmark shares: inputs, thread policy, CPU accounting, tables.

Inputs are distinct per request (no cache or deduplication can flatter a system)
and deterministic (the same JPEGs and captions in every run).
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

COLORS = ["red", "green", "blue", "yellow", "purple", "orange", "black", "white", "pink", "brown", "gray", "teal"]
OBJECTS = ["mug", "sneaker", "lamp", "backpack", "chair", "watch", "jacket", "bottle", "phone case", "scarf"]


def apply_thread_policy(threads: int | None = None) -> int:
    """The server's own thread settings, for in-process baselines (call before importing torch)."""
    from service.threads import apply_wait_policy, configure_torch

    apply_wait_policy()
    return configure_torch(threads, 1)[0]


def sample_jpegs(count: int, size: tuple[int, int] = (224, 224), seed: int = 0) -> list[bytes]:
    """Distinct photo-like JPEGs: gradients with a shape, each one different."""
    import numpy as np
    from PIL import Image, ImageDraw

    generator = np.random.default_rng(seed)
    images = []
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    for _ in range(count):
        base = generator.integers(0, 255, 3)
        slope = generator.uniform(-1, 1, (2, 3))
        pixels = (base + xs[..., None] * slope[0] + ys[..., None] * slope[1]) % 255
        pixels = (pixels + generator.normal(0, 12, pixels.shape)).clip(0, 255).astype("uint8")
        image = Image.fromarray(pixels, "RGB")
        draw = ImageDraw.Draw(image)
        x0, y0 = int(generator.integers(0, width // 2)), int(generator.integers(0, height // 2))
        fill = tuple(int(channel) for channel in generator.integers(0, 255, 3))
        draw.ellipse((x0, y0, x0 + width // 3, y0 + height // 3), fill=fill)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def sample_captions(count: int, seed: int = 0) -> list[str]:
    """Short product queries (5-14 words), each different."""
    import random

    generator = random.Random(seed)
    captions = []
    for index in range(count):
        words = [generator.choice(COLORS), generator.choice(OBJECTS)]
        extra = ["for", "summer", "with", "a", "soft", "matte", "finish", "and", "pocket", "size"]
        words += extra[:generator.randint(1, len(extra))] + ["number", str(index)]
        captions.append("a " + " ".join(words))
    return captions


def process_tree_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process and all its descendants, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        found = stats.get(current)
        if found is not None:
            total += (int(found[11]) + int(found[12])) / ticks  # utime, stime
        stack.extend(children.get(current, []))
    return total


def print_table(header: tuple[str, ...], rows: list[tuple]) -> None:
    cells = [tuple(str(cell) for cell in header)] + [tuple(str(cell) for cell in row) for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]
    print("| " + " | ".join(cell.ljust(width) for cell, width in zip(cells[0], widths)) + " |")
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for row in cells[1:]:
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |")
