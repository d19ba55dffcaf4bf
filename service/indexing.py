"""Items as received (bytes and words) to items with vectors, one failure at a time.

Runs on the inference executor: it decodes images and calls the model.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from recommender.errors import InvalidArgument
from recommender.types import ItemError, ItemInput
from service.embedding.embedder import ClipEmbedder
from service.requests import RawItem


def embed_items(items: Sequence[RawItem], embedder: ClipEmbedder) -> tuple[list[tuple[int, ItemInput]], list[ItemError]]:
    """Embed what needs embedding, in one batch per modality; a bad image fails only its item."""
    errors: list[ItemError] = []
    images_to_embed: list[tuple[RawItem, Any]] = []
    for item in items:
        if item.image and item.image_vector is None:
            try:
                images_to_embed.append((item, embedder.decode_image(item.image, f"items[{item.index}].image")))
            except InvalidArgument as error:
                errors.append(ItemError(item.index, item.item_id, str(error)))
    failed = {error.index for error in errors}
    texts_to_embed = [item for item in items
                      if item.index not in failed and item.text and item.text_vector is None]

    image_vectors = _by_index([item for item, _ in images_to_embed],
                              embedder.embed_pil([image for _, image in images_to_embed]))
    text_vectors = _by_index(texts_to_embed, embedder.embed_texts([item.text for item in texts_to_embed]))

    prepared = []
    for item in items:
        if item.index in failed:
            continue
        prepared.append((item.index, ItemInput(
            item_id=item.item_id, payload=item.payload, text=item.text,
            image_vector=_given(item.image_vector, image_vectors.get(item.index)),
            text_vector=_given(item.text_vector, text_vectors.get(item.index)),
        )))
    return prepared, errors


def _by_index(items: Sequence[RawItem], vectors: np.ndarray) -> dict[int, np.ndarray]:
    return {item.index: vector for item, vector in zip(items, vectors)}


def _given(precomputed: Sequence[float] | None, embedded: np.ndarray | None) -> np.ndarray | None:
    """A caller's own vector wins; the engine checks its shape and values."""
    if precomputed is not None:
        return np.asarray(precomputed, dtype=np.float32)
    return embedded
