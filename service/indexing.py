"""Items as received (bytes and words) to items with vectors, one failure at a time.

Decoding and the model run through the batch scheduler, so the items of one
upsert share model batches with every other concurrent call.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from recommender.errors import InvalidArgument
from recommender.types import ItemError, ItemInput
from service.aio import both
from service.embedding.batching import BatchScheduler
from service.requests import RawItem


async def embed_items(items: Sequence[RawItem],
                      batcher: BatchScheduler) -> tuple[list[tuple[int, ItemInput]], list[ItemError]]:
    """Embed what needs embedding through the batch scheduler; a bad image fails only its item.

    Images and texts go to their towers together; the text of an item whose image
    fails is dropped with it (the item is reported, not half-written).
    """
    image_items = [item for item in items if item.image and item.image_vector is None]
    text_items = [item for item in items if item.text and item.text_vector is None]
    image_results, text_vectors = await both(
        batcher.embed_images_each([(item.image, f"items[{item.index}].image") for item in image_items]),
        batcher.embed_texts([item.text for item in text_items if item.text], bulk=True))

    errors = [ItemError(item.index, item.item_id, str(result))
              for item, result in zip(image_items, image_results) if isinstance(result, InvalidArgument)]
    failed = {error.index for error in errors}
    image_vectors = {item.index: result for item, result in zip(image_items, image_results)
                     if not isinstance(result, InvalidArgument)}
    text_by_index = _by_index(text_items, text_vectors)
    prepared = []
    for item in items:
        if item.index in failed:
            continue
        prepared.append((item.index, ItemInput(
            item_id=item.item_id, payload=item.payload, text=item.text,
            image_vector=_given(item.image_vector, image_vectors.get(item.index)),
            text_vector=_given(item.text_vector, text_by_index.get(item.index)),
        )))
    return prepared, errors


def _by_index(items: Sequence[RawItem], vectors: np.ndarray) -> dict[int, np.ndarray]:
    return {item.index: vector for item, vector in zip(items, vectors)}


def _given(precomputed: Sequence[float] | None, embedded: np.ndarray | None) -> np.ndarray | None:
    """A caller's own vector wins; the engine checks its shape and values."""
    if precomputed is not None:
        return np.asarray(precomputed, dtype=np.float32)
    return embedded
