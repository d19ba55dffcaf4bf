"""In-process baselines, printed as one JSON line: what a program that imports the
model itself gets, with the server's thread settings and no server in the way.

  open_clip  open_clip called directly: its transform on each decoded JPEG, its
             tokenizer (77 positions), encode_image / encode_text at a fixed batch
  embedder   Lookalike's ClipEmbedder in-process (same preprocessing; texts trimmed)

    python bench/inprocess.py --what open_clip --kind image --batch 16 --seconds 15
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import apply_thread_policy, sample_captions, sample_jpegs  # noqa: E402


def throughput(step, batch: int, seconds: float, warmup: int = 1) -> float:
    for _ in range(warmup):
        step()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        done += batch
    return done / (time.perf_counter() - started)


class Baselines:
    """Models loaded once per process; each call measures one baseline for `seconds`."""

    def __init__(self, model: str = "ViT-B-32") -> None:
        self._model_name = model
        self._open_clip: tuple[Any, Any, Any] | None = None  # model, preprocess, tokenizer
        self._embedders: dict[int, Any] = {}
        self._jpegs = sample_jpegs(256, seed=1)
        self._captions = sample_captions(256, seed=1)
        self._cursor = 0

    def _next(self, values: list, batch: int) -> list:
        start = self._cursor % (len(values) - batch + 1)
        self._cursor += batch
        return values[start:start + batch]

    def open_clip(self, kind: str, batch: int, seconds: float) -> float:
        import io

        import open_clip
        import torch
        from PIL import Image

        if self._open_clip is None:
            model, _, preprocess = open_clip.create_model_and_transforms(self._model_name, pretrained=None)
            self._open_clip = (model.eval(), preprocess, open_clip.get_tokenizer(self._model_name))
        model, preprocess, tokenizer = self._open_clip

        def images():
            with torch.inference_mode():
                pixels = torch.stack([preprocess(Image.open(io.BytesIO(data)).convert("RGB"))
                                      for data in self._next(self._jpegs, batch)])
                model.encode_image(pixels)

        def texts():
            with torch.inference_mode():
                model.encode_text(tokenizer(self._next(self._captions, batch)))
        return throughput(images if kind == "image" else texts, batch, seconds)

    def embedder(self, kind: str, batch: int, seconds: float) -> float:
        from service.embedding import ModelSpec, load_embedder

        if batch not in self._embedders:
            self._embedders[batch] = load_embedder(ModelSpec.parse(self._model_name, "none"), device="cpu",
                                                   max_batch=batch)
        embedder = self._embedders[batch]
        step = ((lambda: embedder.embed_images(self._next(self._jpegs, batch))) if kind == "image"
                else (lambda: embedder.embed_texts(self._next(self._captions, batch))))
        return throughput(step, batch, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", choices=("open_clip", "embedder"), default="open_clip")
    parser.add_argument("--kind", choices=("image", "text"), default="image")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    apply_thread_policy(args.threads)
    baselines = Baselines(args.model)
    per_s = getattr(baselines, args.what)(args.kind, args.batch, args.seconds)
    print(json.dumps({"what": args.what, "kind": args.kind, "batch": args.batch, "per_s": per_s}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
