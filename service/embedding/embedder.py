"""A loaded CLIP model: texts and images in, unit float32 vectors out.

Preprocessing and tokenisation are the model's own (from open_clip), so the
vectors are exactly what open_clip gives for the same inputs.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from service.embedding.images import decode_image


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
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        self._device = device
        self._max_batch = max_batch
        self._max_image_pixels = max_image_pixels
        self._input_dtype = next(model.parameters()).dtype
        self.identity = identity
        self.dim = int(self.embed_texts([""]).shape[1])

    @property
    def is_random_init(self) -> bool:
        return "random-init" in self.identity

    @property
    def device(self) -> torch.device:
        return self._device

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts longer than the model's context are truncated by its tokenizer."""
        return self._in_batches(list(texts), self._encode_texts)

    def embed_images(self, images: Sequence[bytes], field: str = "images") -> np.ndarray:
        """Decode every image first, so one bad image fails fast, before any inference."""
        decoded = [self.decode_image(data, f"{field}[{index}]") for index, data in enumerate(images)]
        return self.embed_pil(decoded)

    def decode_image(self, data: bytes, field: str) -> Image.Image:
        return decode_image(data, field, self._max_image_pixels)

    def embed_pil(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._in_batches(list(images), self._encode_images)

    def _in_batches(self, inputs: list, encode: Callable[[list], torch.Tensor]) -> np.ndarray:
        if not inputs:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(inputs), self._max_batch):
                features = encode(inputs[start:start + self._max_batch])
                chunks.append(F.normalize(features.float(), dim=-1).cpu().numpy())
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self._tokenizer(texts).to(self._device)
        return self._model.encode_text(tokens)

    def _encode_images(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = torch.stack([self._preprocess(image) for image in images])
        return self._model.encode_image(pixels.to(self._device, dtype=self._input_dtype))
