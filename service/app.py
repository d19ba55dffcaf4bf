"""The service's use cases: check the request, embed when pixels or words arrive, then ask the engine.

Everything here is async and proto-free; blocking work goes through the
runtime's executors. Each request is checked once, here, by service/validation.py,
before any inference or storage work.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Sequence

import numpy as np

from recommender.engine import now_utc
from recommender.errors import InvalidArgument
from recommender.filters import Filter
from recommender.types import (
    ItemError,
    Recommendations,
    RecommendQuery,
    RecordOutcome,
    Scored,
    StoredItem,
    UpsertOutcome,
    UserProfile,
)
from service import validation
from service.aio import both, in_order
from service.indexing import embed_items
from service.requests import EventBatch, ImageQuery, ItemQuery, RawItem, SearchSpec, TextQuery, VectorQuery
from service.runtime import Runtime

# Upsert messages embedding ahead of the one being written: enough to keep the model fed.
UPSERT_MESSAGES_AHEAD = 2
# RecordEvents stores this many events per catalog-executor job.
EVENTS_PER_JOB = 500


class Lookalike:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @property
    def model(self) -> str:
        embedder, _ = self._runtime.require_ready()
        return embedder.identity

    @property
    def dim(self) -> int:
        embedder, _ = self._runtime.require_ready()
        return embedder.dim

    async def embed(self, texts: Sequence[str], images: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        embedder, _ = self._runtime.require_ready()
        validation.embed(texts, images)
        batcher = self._runtime.require_batcher()
        return await both(batcher.embed_texts(list(texts)), batcher.embed_images(list(images)))

    async def embed_one(self, query: TextQuery | ImageQuery, field: str, *, bulk: bool = False) -> np.ndarray:
        validation.embed_input(query, field)
        return await self._embed_one(query, field, bulk=bulk)

    async def _embed_one(self, query: TextQuery | ImageQuery, field: str, *, bulk: bool = False) -> np.ndarray:
        batcher = self._runtime.require_batcher()
        if isinstance(query, TextQuery):
            return (await batcher.embed_texts([query.text], bulk=bulk))[0]
        # A single image's error names the field itself, not field[0].
        results = await batcher.embed_images_each([(query.image, field)], bulk=bulk)
        if isinstance(results[0], InvalidArgument):
            raise results[0]
        return results[0]

    async def embed_stream(self, inputs: AsyncIterator[tuple[str, TextQuery | ImageQuery]]
                           ) -> AsyncIterator[tuple[str, np.ndarray]]:
        """Vectors in input order, with up to a model batch of inputs in flight so a stream batches too."""
        window = self._runtime.require_batcher().policy.max_batch
        async def checked() -> AsyncIterator[tuple[str, TextQuery | ImageQuery]]:
            async for key, query in inputs:
                validation.stream_key(key)
                yield key, query

        async for (key, _), vector in in_order(
                checked(), lambda keyed: self.embed_one(keyed[1], f"input[{keyed[0]}]", bulk=True), window):
            yield key, vector

    async def upsert_stream(self, batches: AsyncIterator[tuple[list[RawItem], list[ItemError]]]
                            ) -> AsyncIterator[UpsertOutcome]:
        """Upsert a stream of messages: the next messages embed while the current one is written.

        Yields one outcome per message, in stream order, once its items are written (the
        caller's acknowledgement). Writes happen in stream order, so an id sent twice ends
        with its later version.
        """
        _, engine = self._runtime.require_ready()
        batcher = self._runtime.require_batcher()

        async def embed(message: tuple[list[RawItem], list[ItemError]]):
            raws, errors = message
            valid, invalid = validation.raw_items(raws, engine.dim)
            prepared, embed_errors = await embed_items(valid, batcher)
            return prepared, errors + invalid + embed_errors

        async def capped() -> AsyncIterator[tuple[list[RawItem], list[ItemError]]]:
            number = 0
            async for raws, errors in batches:
                validation.items_per_message(len(raws) + len(errors), number)
                number += 1
                yield raws, errors

        async for _, (prepared, errors) in in_order(capped(), embed, UPSERT_MESSAGES_AHEAD):
            outcome = await self._runtime.query(engine.upsert_items, prepared)
            self._runtime.metrics.items_upserted.inc(outcome.upserted)
            outcome.errors = sorted(errors + outcome.errors, key=lambda error: error.index)
            yield outcome

    async def get(self, item_ids: Sequence[str], with_vectors: bool) -> tuple[list[StoredItem], list[str]]:
        _, engine = self._runtime.require_ready()
        validation.item_ids(item_ids)
        return await self._runtime.query(engine.get_items, list(item_ids), with_vectors)

    async def delete(self, selector: list[str] | Filter) -> int:
        _, engine = self._runtime.require_ready()
        validation.delete_selector(selector)
        if isinstance(selector, Filter):
            return await self._runtime.query(engine.delete_where, selector)
        return await self._runtime.query(engine.delete_items, selector)

    async def search(self, spec: SearchSpec) -> list[Scored]:
        _, engine = self._runtime.require_ready()
        validation.search(spec, engine.dim)  # before spending inference on a request that will be refused
        query = spec.query
        if isinstance(query, ItemQuery):
            return await self._runtime.query(engine.similar_items, query.item_id, spec.target, spec.filter,
                                             spec.params, spec.user_id, spec.exclude_seen)
        if isinstance(query, VectorQuery):
            return await self._runtime.query(engine.search_by_vector, query.values, spec.target, spec.filter,
                                             spec.params, made_by_model=False)
        field = "query.text" if isinstance(query, TextQuery) else "query.image"
        vector = await self._embed_one(query, field)
        return await self._runtime.query(engine.search_by_vector, vector, spec.target, spec.filter, spec.params,
                                         made_by_model=True)

    # -- users ----------------------------------------------------------

    @staticmethod
    def now():
        return now_utc()

    async def record_events(self, batch: EventBatch) -> RecordOutcome:
        _, engine = self._runtime.require_ready()
        valid, errors = await asyncio.to_thread(validation.events, batch, self.now())  # off the event loop
        # One executor job per chunk: a bulk call interleaves with other catalog calls instead of holding
        # a catalog thread (and the store's write lock) for all of its events at once.
        outcome = RecordOutcome()
        unknown: dict[str, None] = {}
        for start in range(0, len(valid.events), EVENTS_PER_JOB):
            part = await self._runtime.query(engine.record_events, valid.events[start:start + EVENTS_PER_JOB],
                                             valid.event_ids[start:start + EVENTS_PER_JOB])
            outcome.recorded += part.recorded
            unknown.update(dict.fromkeys(part.unknown_item_ids))
        outcome.unknown_item_ids = list(unknown)
        self._runtime.metrics.events_recorded.inc(outcome.recorded)
        outcome.errors = sorted(errors + outcome.errors, key=lambda error: error.index)
        return outcome

    async def recommend(self, query: RecommendQuery) -> Recommendations:
        _, engine = self._runtime.require_ready()
        validation.recommend(query, engine.dim)
        return await self._runtime.query(engine.recommend, query)

    async def profile(self, user_id: str) -> UserProfile:
        _, engine = self._runtime.require_ready()
        validation.user_id(user_id)
        return await self._runtime.query(engine.profile, user_id)

    async def forget_user(self, user_id: str) -> int:
        _, engine = self._runtime.require_ready()
        validation.user_id(user_id)
        return await self._runtime.query(engine.forget_user, user_id)
