"""The item catalog in Qdrant: one collection, named vectors `image` and `text`.

The same code runs against a Qdrant server or cluster and against
qdrant-client's embedded mode; only the client differs.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
from qdrant_client import QdrantClient, models

from recommender.collection_settings import CollectionLayout
from recommender.errors import ModelMismatch
from recommender.filters import PAYLOAD_KEY, Filter, HasId, to_qdrant
from recommender.ids import point_id
from recommender.store_errors import translated
from recommender.types import ItemInput, Scored, SearchParams, StoredItem, VectorSpace

log = logging.getLogger(__name__)

ITEM_ID_KEY = "item_id"
TEXT_KEY = "text"
HAS_IMAGE_KEY = "has_image"
MODEL_METADATA_KEY = "lookalike_model"
DIM_METADATA_KEY = "lookalike_dim"
# Reciprocal rank fusion of the image and text lists reads this many from each.
FUSION_DEPTH = 100

_PAYLOAD_SCHEMAS = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
    "bool": models.PayloadSchemaType.BOOL,
    "datetime": models.PayloadSchemaType.DATETIME,
    "text": models.PayloadSchemaType.TEXT,
    "uuid": models.PayloadSchemaType.UUID,
}


class Catalog:
    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        model_identity: str,
        dim: int,
        payload_indexes: Mapping[str, str] | None = None,
        location: str = "embedded",
        layout: CollectionLayout | None = None,
    ) -> None:
        self._client = client
        self._collection = collection
        self._model_identity = model_identity
        self._location = location
        self.dim = dim
        self._payload_indexes = dict(payload_indexes or {})
        self._layout = layout or CollectionLayout()
        self._mismatch: str | None = None

    # -- lifecycle ------------------------------------------------------

    def open(self) -> None:
        """Create the collection if missing; otherwise check who made its vectors."""
        with self._translated():
            if not self._client.collection_exists(self._collection):
                self._create()
            else:
                self._mismatch = self._check_model()
            if self._payload_indexes and self._location != "embedded":
                self._create_payload_indexes()
        if self._mismatch:
            log.error("%s", self._mismatch)

    def ping(self) -> None:
        with self._translated():
            self._client.get_collection(self._collection)

    def _create(self) -> None:
        space = models.VectorParams(size=self.dim, distance=models.Distance.COSINE)
        self._client.create_collection(
            self._collection,
            vectors_config={VectorSpace.IMAGE.value: space, VectorSpace.TEXT.value: space},
            metadata={MODEL_METADATA_KEY: self._model_identity, DIM_METADATA_KEY: self.dim},
            **self._layout.create_arguments(),
        )
        log.info("created collection %s for model %s (dim %d)", self._collection, self._model_identity, self.dim)

    def _check_model(self) -> str | None:
        metadata = self._client.get_collection(self._collection).config.metadata or {}
        stored = metadata.get(MODEL_METADATA_KEY)
        if stored == self._model_identity and metadata.get(DIM_METADATA_KEY) == self.dim:
            return None
        made_by = f"model {stored!r}" if stored else "an unknown model (no Lookalike metadata)"
        return (f"collection {self._collection!r} holds vectors made by {made_by}, but this server runs "
                f"{self._model_identity!r} (dim {self.dim}): vectors of different models cannot be compared. "
                "Serve a new collection (--collection / LOOKALIKE_COLLECTION) and re-ingest, "
                "or start the server with the model that built this one.")

    def _create_payload_indexes(self) -> None:
        for field, kind in self._payload_indexes.items():
            self._client.create_payload_index(self._collection, f"{PAYLOAD_KEY}.{field}", _PAYLOAD_SCHEMAS[kind])

    def require_same_model(self) -> None:
        """Called before any write, and before comparing model-made vectors with stored ones."""
        if self._mismatch:
            raise ModelMismatch(self._mismatch)

    # -- items ----------------------------------------------------------

    def upsert(self, items: Sequence[ItemInput]) -> None:
        self.require_same_model()
        if not items:
            return
        points = [self._point(item) for item in items]
        with self._translated():
            self._client.upsert(self._collection, points=points, wait=True)

    def _point(self, item: ItemInput) -> models.PointStruct:
        vectors = {}
        if item.image_vector is not None:
            vectors[VectorSpace.IMAGE.value] = item.image_vector.tolist()
        if item.text_vector is not None:
            vectors[VectorSpace.TEXT.value] = item.text_vector.tolist()
        payload = {
            ITEM_ID_KEY: item.item_id,
            TEXT_KEY: item.text,
            HAS_IMAGE_KEY: item.image_vector is not None,
            PAYLOAD_KEY: dict(item.payload),
        }
        return models.PointStruct(id=point_id(item.item_id), vector=vectors, payload=payload)

    def get(self, item_ids: Sequence[str], with_vectors: bool = False) -> dict[str, StoredItem]:
        if not item_ids:
            return {}
        with self._translated():
            records = self._client.retrieve(self._collection, ids=[point_id(i) for i in item_ids],
                                            with_payload=True, with_vectors=with_vectors)
        items = (self._stored(record.payload, record.vector) for record in records)
        return {item.item_id: item for item in items}

    def delete(self, item_ids: Sequence[str]) -> int:
        present = self.get(item_ids)
        if present:
            with self._translated():
                self._client.delete(self._collection, points_selector=[point_id(i) for i in present], wait=True)
        return len(present)

    def delete_where(self, filter_: Filter) -> int:
        qdrant_filter = to_qdrant(filter_)
        if qdrant_filter is None:  # validation refuses empty filters; this would delete every item
            raise ValueError("delete_where needs a non-empty filter")
        with self._translated():
            matched = self._client.count(self._collection, count_filter=qdrant_filter, exact=True).count
            self._client.delete(self._collection, points_selector=models.FilterSelector(filter=qdrant_filter),
                                wait=True)
        return matched

    def count(self) -> int:
        with self._translated():
            return self._client.count(self._collection, exact=True).count

    # -- search ---------------------------------------------------------

    def search(self, vector: np.ndarray, space: VectorSpace, filter_: Filter | None, params: SearchParams,
               exclude_ids: Sequence[str] = ()) -> list[Scored]:
        with self._translated():
            response = self._client.query_points(
                self._collection, query=vector.tolist(), using=space.value,
                query_filter=to_qdrant(_excluding(filter_, exclude_ids)), limit=params.limit, offset=params.offset,
                score_threshold=params.score_threshold, with_payload=True)
        return [self._scored(point) for point in response.points]

    def search_fused(self, vectors: Mapping[VectorSpace, np.ndarray], filter_: Filter | None, params: SearchParams,
                     exclude_ids: Sequence[str] = ()) -> list[Scored]:
        """One ranking from several vector spaces, by reciprocal rank fusion (done by Qdrant)."""
        qdrant_filter = to_qdrant(_excluding(filter_, exclude_ids))
        depth = max(FUSION_DEPTH, params.offset + params.limit)
        prefetch = [models.Prefetch(query=vector.tolist(), using=space.value, filter=qdrant_filter, limit=depth)
                    for space, vector in vectors.items()]
        with self._translated():
            response = self._client.query_points(
                self._collection, prefetch=prefetch, query=models.FusionQuery(fusion=models.Fusion.RRF),
                limit=params.limit, offset=params.offset, score_threshold=params.score_threshold, with_payload=True)
        return [self._scored(point) for point in response.points]

    def search_many(self, vectors: Sequence[np.ndarray], limits: Sequence[int], space: VectorSpace,
                    filter_: Filter | None, exclude_ids: Sequence[str] = ()) -> list[list[Scored]]:
        """Several nearest-neighbour queries in one round trip, hits carrying their vectors."""
        qdrant_filter = to_qdrant(_excluding(filter_, exclude_ids))
        requests = [models.QueryRequest(query=vector.tolist(), using=space.value, filter=qdrant_filter, limit=limit,
                                        with_payload=True, with_vector=[space.value])
                    for vector, limit in zip(vectors, limits)]
        if not requests:
            return []
        with self._translated():
            responses = self._client.query_batch_points(self._collection, requests=requests)
        return [[self._scored(point, space) for point in response.points] for response in responses]

    def recommend_native(self, positives: Sequence[np.ndarray], negatives: Sequence[np.ndarray], best_score: bool,
                         space: VectorSpace, filter_: Filter | None, params: SearchParams,
                         exclude_ids: Sequence[str] = ()) -> list[Scored]:
        """Qdrant's own recommend API (average_vector or best_score): a baseline to measure against.

        Examples are vectors, so only `exclude_ids` are left out (by ids Qdrant drops the examples too)."""
        if not positives:
            return []
        strategy = models.RecommendStrategy.BEST_SCORE if best_score else models.RecommendStrategy.AVERAGE_VECTOR
        query = models.RecommendQuery(recommend=models.RecommendInput(
            positive=[vector.tolist() for vector in positives],
            negative=[vector.tolist() for vector in negatives] or None, strategy=strategy))
        with self._translated():
            response = self._client.query_points(
                self._collection, query=query, using=space.value,
                query_filter=to_qdrant(_excluding(filter_, exclude_ids)), limit=params.limit, offset=params.offset,
                with_payload=True)
        return [self._scored(point) for point in response.points]

    def scroll(self, filter_: Filter | None, limit: int, only_ids: Sequence[str] | None = None) -> list[Scored]:
        """Items matching a filter, no ranking (score 0); `only_ids` restricts to those items."""
        if only_ids is not None:
            if not only_ids:
                return []
            filter_ = (filter_ or Filter()).and_also(HasId(tuple(only_ids)))
        with self._translated():
            records, _ = self._client.scroll(self._collection, scroll_filter=to_qdrant(filter_), limit=limit,
                                             with_payload=True, with_vectors=False)
        return [self._scored(record) for record in records]

    # -- conversions ----------------------------------------------------

    @staticmethod
    def _stored(payload: Mapping, vectors: Mapping | None) -> StoredItem:
        vectors = vectors or {}

        def as_array(space: VectorSpace) -> np.ndarray | None:
            values = vectors.get(space.value)
            return None if values is None else np.asarray(values, dtype=np.float32)

        return StoredItem(item_id=payload[ITEM_ID_KEY], payload=payload.get(PAYLOAD_KEY) or {},
                          text=payload.get(TEXT_KEY), has_image=bool(payload.get(HAS_IMAGE_KEY)),
                          image_vector=as_array(VectorSpace.IMAGE), text_vector=as_array(VectorSpace.TEXT))

    @staticmethod
    def _scored(point: models.ScoredPoint | models.Record, space: VectorSpace | None = None) -> Scored:
        payload = point.payload or {}
        vector = None
        if space is not None and isinstance(point.vector, dict) and space.value in point.vector:
            vector = np.asarray(point.vector[space.value], dtype=np.float32)
        return Scored(item_id=payload[ITEM_ID_KEY], score=float(getattr(point, "score", 0.0) or 0.0),
                      payload=payload.get(PAYLOAD_KEY) or {}, text=payload.get(TEXT_KEY), vector=vector)

    def _translated(self):
        return translated(self._location)


def _excluding(filter_: Filter | None, item_ids: Sequence[str]) -> Filter | None:
    if not item_ids:
        return filter_
    return (filter_ or Filter()).excluding(HasId(tuple(item_ids)))
