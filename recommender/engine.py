"""The facade the service calls: validated domain operations over the catalog."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from recommender.catalog import Catalog
from recommender.errors import InvalidArgument, LookalikeError, NotFound
from recommender.filters import Filter
from recommender.types import ItemInput, Scored, SearchParams, SearchTarget, StoredItem, VectorSpace
from recommender.vectors import checked_vector

MAX_LIMIT = 1000
MAX_OFFSET = 100_000
MAX_ITEM_ID_LENGTH = 512


@dataclass(frozen=True)
class ItemError:
    index: int
    item_id: str
    message: str


@dataclass
class UpsertOutcome:
    upserted: int = 0
    errors: list[ItemError] = field(default_factory=list)


class Engine:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    @property
    def dim(self) -> int:
        return self._catalog.dim

    # -- items ----------------------------------------------------------

    def upsert_items(self, items: Sequence[tuple[int, ItemInput]]) -> UpsertOutcome:
        """Store the valid items; report the others by their position in the stream.

        `items` pairs each item with its index in the caller's whole stream.
        """
        self._catalog.require_same_model()
        outcome = UpsertOutcome()
        valid = []
        for index, item in items:
            try:
                valid.append(self._validated(item, f"items[{index}]"))
            except InvalidArgument as error:
                outcome.errors.append(ItemError(index, item.item_id, str(error)))
        # The last copy of an id within one batch wins, as it would across batches.
        deduplicated = list({item.item_id: item for item in valid}.values())
        self._catalog.upsert(deduplicated)
        outcome.upserted = len(valid)
        return outcome

    def _validated(self, item: ItemInput, field_name: str) -> ItemInput:
        check_item_id(item.item_id, f"{field_name}.id")
        if item.image_vector is None and item.text_vector is None:
            raise InvalidArgument(field_name, "has neither an image, a text nor a vector: give at least one")
        vectors = {
            name: None if vector is None else checked_vector(vector, self.dim, f"{field_name}.{name}")
            for name, vector in (("image_vector", item.image_vector), ("text_vector", item.text_vector))
        }
        return replace(item, **vectors)

    def get_items(self, item_ids: Sequence[str], with_vectors: bool = False) -> tuple[list[StoredItem], list[str]]:
        for index, item_id in enumerate(item_ids):
            check_item_id(item_id, f"ids[{index}]")
        found = self._catalog.get(item_ids, with_vectors=with_vectors)
        ordered = [found[item_id] for item_id in dict.fromkeys(item_ids) if item_id in found]
        missing = [item_id for item_id in dict.fromkeys(item_ids) if item_id not in found]
        return ordered, missing

    def delete_items(self, item_ids: Sequence[str]) -> int:
        for index, item_id in enumerate(item_ids):
            check_item_id(item_id, f"ids[{index}]")
        return self._catalog.delete(list(dict.fromkeys(item_ids)))

    def delete_where(self, filter_: Filter) -> int:
        return self._catalog.delete_where(filter_)

    def count_items(self) -> int:
        return self._catalog.count()

    # -- search ---------------------------------------------------------

    def search_by_vector(self, vector: np.ndarray, target: SearchTarget, filter_: Filter | None,
                         params: SearchParams, *, made_by_model: bool) -> list[Scored]:
        """`made_by_model`: the vector came from this server's model, not from the caller."""
        check_params(params)
        if made_by_model:
            self._catalog.require_same_model()
        else:
            vector = checked_vector(vector, self.dim, "query.vector")
        spaces = _spaces(target)
        if len(spaces) == 1:
            return self._catalog.search(vector, spaces[0], filter_, params)
        return self._catalog.search_fused({space: vector for space in spaces}, filter_, params)

    def similar_items(self, item_id: str, target: SearchTarget, filter_: Filter | None,
                      params: SearchParams) -> list[Scored]:
        """Neighbours of a stored item, from its own vectors; the item itself is left out."""
        check_item_id(item_id, "item_id")
        check_params(params)
        item = self._catalog.get([item_id], with_vectors=True).get(item_id)
        if item is None:
            raise NotFound(f"item {item_id!r} is not in the catalog")
        queries = {space: _own_vector(item, space) for space in _spaces(target)}
        if len(queries) == 1:
            (space, vector), = queries.items()
            return self._catalog.search(vector, space, filter_, params, exclude_ids=[item_id])
        return self._catalog.search_fused(queries, filter_, params, exclude_ids=[item_id])


def _spaces(target: SearchTarget) -> list[VectorSpace]:
    if target is SearchTarget.BOTH:
        return [VectorSpace.IMAGE, VectorSpace.TEXT]
    return [VectorSpace(target.value)]


def _own_vector(item: StoredItem, space: VectorSpace) -> np.ndarray:
    """The item's vector in `space`, or its other one: CLIP puts both in one space."""
    other = VectorSpace.TEXT if space is VectorSpace.IMAGE else VectorSpace.IMAGE
    vector = item.vector(space)
    if vector is None:
        vector = item.vector(other)
    if vector is None:
        raise LookalikeError(f"item {item.item_id!r} has no stored vector")
    return vector


def check_item_id(item_id: str, field_name: str) -> None:
    if not item_id or not item_id.strip():
        raise InvalidArgument(field_name, "item id is empty")
    if len(item_id) > MAX_ITEM_ID_LENGTH:
        raise InvalidArgument(field_name, f"item id is longer than {MAX_ITEM_ID_LENGTH} characters")


def check_params(params: SearchParams) -> None:
    if not 1 <= params.limit <= MAX_LIMIT:
        raise InvalidArgument("limit", f"must be between 1 and {MAX_LIMIT}, got {params.limit}")
    if not 0 <= params.offset <= MAX_OFFSET:
        raise InvalidArgument("offset", f"must be between 0 and {MAX_OFFSET}, got {params.offset}")
    if params.score_threshold is not None and not np.isfinite(params.score_threshold):
        raise InvalidArgument("score_threshold", "must be a finite number")
