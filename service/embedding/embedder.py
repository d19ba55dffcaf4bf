"""A loaded CLIP model: texts and images in, unit float32 vectors out.

Preprocessing and tokenisation are the model's own (from open_clip), so the
vectors are exactly what open_clip gives for the same inputs. The work is split
in two stages so a server can overlap them: `prepare_*` (decode, resize,
tokenise; any thread) and `encode_*` (the model, on prepared inputs; the one
inference thread). Stage 2 runs on torch or, when the loader attaches it, on
ONNX Runtime (service/embedding/onnx_towers.py), or on both, chosen per batch
by its size (HybridTowers).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from service.embedding.images import decode_image
from service.embedding.text_tower import TextTower

# Short texts of different lengths (so the probe batch is trimmed) to check trimming at load.
_PROBE_TEXTS = ("a", "a photo of a red circle on a white background")


class Towers(Protocol):
    """Stage 2: a batch of pixels [B, 3, H, W] or full-context tokens [B, context] to features."""

    name: str

    def images(self, pixels: torch.Tensor) -> torch.Tensor: ...

    def texts(self, tokens: torch.Tensor) -> torch.Tensor: ...

    def route(self, kind: str, size: int) -> Towers:
        """The towers that run a batch of `size` inputs of `kind` (image or text)."""
        ...


class TorchTowers:
    name = "torch"

    def __init__(self, model: Any, text_tower: TextTower) -> None:
        self._model = model
        self._text_tower = text_tower

    def images(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self._model.encode_image(pixels)

    def texts(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self._text_tower.encode(tokens)

    def route(self, kind: str, size: int) -> Towers:
        return self


class HybridTowers:
    """ONNX Runtime for small batches, torch for large ones, both loaded.

    ORT's per-op overhead is lower (one image 1.47x, one text 2.1x, 8 texts 1.32x
    torch's speed) but its GEMMs are no faster and its exported attention is not
    fused, so full batches run 2-8% slower on it (BENCHMARKS.md, "P2 with ONNX
    Runtime"). The features agree within float tolerance, so which one ran a
    batch never shows in the vectors.
    """

    name = "hybrid"

    def __init__(self, small: Towers, large: Towers, *, max_small_images: int, max_small_texts: int) -> None:
        self.small = small
        self.large = large
        self._limits = {"image": max_small_images, "text": max_small_texts}

    def route(self, kind: str, size: int) -> Towers:
        return self.small if size <= self._limits[kind] else self.large

    def images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.route("image", int(pixels.shape[0])).images(pixels)

    def texts(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.route("text", int(tokens.shape[0])).texts(tokens)


class ClipEmbedder:
    def __init__(
        self,
        model: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[Sequence[str]], torch.Tensor],
        identity: str,
        device: torch.device,
        max_batch: int,
        max_image_pixels: int,
    ) -> None:
        self._model: Any = model  # an open_clip CLIP: encode_image is not on torch.nn.Module
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        self._device = device
        self._max_batch = max_batch
        self._max_image_pixels = max_image_pixels
        self._input_dtype = next(model.parameters()).dtype
        self.identity = identity
        self.text_tower = TextTower.for_model(model, probe_tokens=self._tokenizer(list(_PROBE_TEXTS)).to(device))
        self.towers: Towers = TorchTowers(model, self.text_tower)
        # Model batches by (kind, runtime that ran them), for metrics and tests. Written by the one
        # thread that runs stage 2 (a server's inference thread); readers take a snapshot.
        self.batches: Counter[tuple[str, str]] = Counter()
        self.dim = int(self.embed_texts([""]).shape[1])
        self.batches.clear()  # the probe above is not served work

    @property
    def is_random_init(self) -> bool:
        return "random-init" in self.identity

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @property
    def model(self) -> torch.nn.Module:
        return self._model

    @property
    def runtime(self) -> str:
        return self.towers.name

    def sample_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A small batch of pixels and of full-context tokens, as stage 1 makes them (for exporters)."""
        blank = Image.new("RGB", (64, 48), "white")
        pixels = torch.stack([self._preprocess(blank)] * 3).to(self._input_dtype)
        tokens = self._tokenizer([_PROBE_TEXTS[1], _PROBE_TEXTS[0], _PROBE_TEXTS[1][:12]])
        return pixels, tokens

    # -- whole lists, in the calling thread (in-process use, tests, benchmarks) --

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts longer than the model's context are truncated by its tokenizer."""
        return self._in_batches(self.prepare_texts(texts), self.encode_texts)

    def embed_images(self, images: Sequence[bytes], field: str = "images") -> np.ndarray:
        """Decode every image first, so one bad image fails fast, before any inference."""
        decoded = [self.decode_image(data, f"{field}[{index}]") for index, data in enumerate(images)]
        return self.embed_pil(decoded)

    def embed_pil(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._in_batches([self.preprocess(image) for image in images], self.encode_images)

    # -- stage 1: inputs to model inputs (thread-safe, no model call) -----------

    def decode_image(self, data: bytes, field: str) -> Image.Image:
        return decode_image(data, field, self._max_image_pixels)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)

    def prepare_image(self, data: bytes, field: str) -> torch.Tensor:
        """Encoded bytes to the model's pixel tensor [3, H, W]; InvalidArgument names `field`."""
        return self._preprocess(self.decode_image(data, field))

    def prepare_texts(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """One token row [context] per text (padded; the encoder trims batches)."""
        if not texts:
            return []
        return list(self._tokenizer(list(texts)))

    # -- stage 2: model inputs to unit vectors (the inference thread) ----------

    def encode_images(self, pixels: Sequence[torch.Tensor]) -> np.ndarray:
        batch = torch.stack(list(pixels)).to(self._device, dtype=self._input_dtype)
        towers = self.towers.route("image", int(batch.shape[0]))
        self.batches["image", towers.name] += 1
        return _unit(towers.images(batch))

    def encode_texts(self, tokens: Sequence[torch.Tensor]) -> np.ndarray:
        batch = torch.stack(list(tokens)).to(self._device)
        towers = self.towers.route("text", int(batch.shape[0]))
        self.batches["text", towers.name] += 1
        return _unit(towers.texts(batch))

    def _in_batches(self, inputs: list, encode: Callable[[list], np.ndarray]) -> np.ndarray:
        if not inputs:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        return np.concatenate([encode(inputs[start:start + self._max_batch])
                               for start in range(0, len(inputs), self._max_batch)])


def _unit(features: torch.Tensor) -> np.ndarray:
    return F.normalize(features.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)
