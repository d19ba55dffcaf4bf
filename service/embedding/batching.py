"""Cross-request dynamic batching: single inputs of concurrent calls become model batches.

Every path that runs the model (Embed, EmbedStream, Search by text or image,
UpsertItems) submits here. An input goes through two stages:

1. prepare, on a small preprocess pool: decode + resize + normalise an image,
   tokenise a text. A bad input fails here, alone, before it reaches a batch,
   and the model never waits for pixels: the next batch is prepared while the
   current one runs.
2. encode, on the one inference thread: a dispatcher takes up to `max_batch`
   prepared inputs of one tower (image and text are batched separately), waiting
   at most `max_wait_s` after the oldest one for the batch to fill when the model
   is idle, and routes each row back to its caller.

The queue is bounded in inputs: a call that would overflow it is refused with
Overloaded (RESOURCE_EXHAUSTED) unless it is a bulk stream, which waits for room
instead (gRPC flow control then pushes back on the sender). A call is never
refused while the queue is empty, so one request larger than the bound still runs.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from recommender.errors import InvalidArgument, Overloaded
from service.embedding.embedder import ClipEmbedder

log = logging.getLogger(__name__)


class Tower(str, enum.Enum):
    IMAGE = "image"
    TEXT = "text"


@dataclass(frozen=True)
class BatchPolicy:
    max_batch: int = 32
    max_wait_s: float = 0.01
    max_queue: int = 1024


BatchObserver = Callable[[str, int, float, float], None]
"""Called after each model batch with (tower, size, oldest input's queue wait s, model run s)."""


@dataclass
class BatchStats:
    """Running totals, for metrics and benchmarks; read them, never reset them."""

    batches: dict[str, int] = field(default_factory=lambda: {tower.value: 0 for tower in Tower})
    inputs: dict[str, int] = field(default_factory=lambda: {tower.value: 0 for tower in Tower})
    queue_wait_s: dict[str, float] = field(default_factory=lambda: {tower.value: 0.0 for tower in Tower})
    model_s: dict[str, float] = field(default_factory=lambda: {tower.value: 0.0 for tower in Tower})
    rejected: int = 0

    def mean_batch(self, tower: str) -> float:
        return self.inputs[tower] / self.batches[tower] if self.batches[tower] else 0.0


@dataclass
class _Queued:
    value: torch.Tensor
    future: asyncio.Future
    enqueued: float


class BatchScheduler:
    def __init__(self, embedder: ClipEmbedder, policy: BatchPolicy, model_executor: Executor,
                 preprocess_executor: Executor) -> None:
        self._embedder = embedder
        self._policy = policy
        self._model_executor = model_executor
        self._preprocess_executor = preprocess_executor
        self._queues: dict[Tower, deque[_Queued]] = {tower: deque() for tower in Tower}
        self._reserved = 0  # inputs admitted and not yet handed to the model (preparing or queued)
        self._arrived: asyncio.Event | None = None
        self._room: asyncio.Condition | None = None
        self._dispatcher: asyncio.Task | None = None
        self.stats = BatchStats()
        self.observers: list[BatchObserver] = []

    @property
    def policy(self) -> BatchPolicy:
        return self._policy

    def queued(self, tower: Tower | str | None = None) -> int:
        """Inputs admitted and not yet in a running batch (all towers when None)."""
        if tower is None:
            return self._reserved
        return len(self._queues[Tower(tower)])

    # -- public calls --------------------------------------------------------

    async def embed_texts(self, texts: Sequence[str], *, bulk: bool = False) -> np.ndarray:
        if not texts:
            return self._empty()
        async with self._admit(len(texts), bulk) as admission:
            tokens = await self._prepare(self._embedder.prepare_texts, list(texts))
            return np.stack(await admission.run(Tower.TEXT, tokens))

    async def embed_images(self, images: Sequence[bytes], field: str = "images", *, bulk: bool = False) -> np.ndarray:
        """All or nothing: the first undecodable image (by index) fails the call, naming `field[i]`."""
        if not images:
            return self._empty()
        async with self._admit(len(images), bulk) as admission:
            prepared = await self._prepare_images([(data, f"{field}[{index}]") for index, data in enumerate(images)])
            pixels = []
            for result in prepared:
                if isinstance(result, BaseException):
                    raise result
                pixels.append(result)
            return np.stack(await admission.run(Tower.IMAGE, pixels))

    async def embed_images_each(self, images: Sequence[tuple[bytes, str]], *,
                                bulk: bool = True) -> list[np.ndarray | InvalidArgument]:
        """One result per (bytes, field): a vector, or the InvalidArgument that image alone failed with."""
        if not images:
            return []
        async with self._admit(len(images), bulk) as admission:
            prepared = await self._prepare_images(list(images))
            good = [index for index, result in enumerate(prepared) if not isinstance(result, BaseException)]
            admission.release(len(images) - len(good))
            vectors = await admission.run(Tower.IMAGE, [pixels for pixels in prepared
                                                        if not isinstance(pixels, BaseException)])
            results: list[np.ndarray | InvalidArgument] = list(prepared)  # type: ignore[arg-type]
            for index, vector in zip(good, vectors):
                results[index] = vector
            return results

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            try:
                await self._dispatcher
            except asyncio.CancelledError:
                pass
            self._dispatcher = None
        for queue in self._queues.values():
            while queue:
                queued = queue.popleft()
                if not queued.future.done():
                    queued.future.set_exception(Overloaded("the server is shutting down"))

    # -- stage 1 -------------------------------------------------------------

    async def _prepare(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._preprocess_executor, function, *args)

    async def _prepare_images(self, images: list[tuple[bytes, str]]) -> list[torch.Tensor | BaseException]:
        """Decode in parallel on the preprocess pool; an image's own InvalidArgument is its result."""
        results = await asyncio.gather(
            *(self._prepare(self._embedder.prepare_image, data, name) for data, name in images),
            return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, InvalidArgument):
                raise result
        return list(results)

    # -- admission -----------------------------------------------------------

    def _admit(self, count: int, bulk: bool) -> _Admission:
        self._ensure_started()
        return _Admission(self, count, bulk)

    async def _reserve(self, count: int, bulk: bool) -> None:
        assert self._room is not None
        if self._reserved and self._reserved + count > self._policy.max_queue:
            if not bulk:
                self.stats.rejected += 1
                raise Overloaded(f"{self._reserved} inputs are waiting for the model (limit "
                                 f"{self._policy.max_queue}); back off and retry")
            async with self._room:
                await self._room.wait_for(
                    lambda: not self._reserved or self._reserved + count <= self._policy.max_queue)
        self._reserved += count

    def _release(self, count: int) -> None:
        if count <= 0:
            return
        self._reserved -= count
        if self._room is not None:
            asyncio.get_running_loop().create_task(self._notify_room())

    async def _notify_room(self) -> None:
        assert self._room is not None
        async with self._room:
            self._room.notify_all()

    # -- stage 2 -------------------------------------------------------------

    def _enqueue(self, tower: Tower, values: Sequence[torch.Tensor]) -> list[asyncio.Future]:
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futures = []
        for value in values:
            future = loop.create_future()
            self._queues[tower].append(_Queued(value, future, now))
            futures.append(future)
        self._arrived.set()
        return futures

    def _ensure_started(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._arrived = asyncio.Event()
            self._room = asyncio.Condition()
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(), name="embedding-batcher")

    async def _dispatch(self) -> None:
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while True:
            tower = self._oldest_tower()
            if tower is None:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._fill(tower)
            batch = self._take(tower)
            if not batch:
                continue
            self._release(len(batch))
            encode = self._embedder.encode_images if tower is Tower.IMAGE else self._embedder.encode_texts
            started = time.monotonic()
            try:
                vectors = await loop.run_in_executor(self._model_executor, encode, [item.value for item in batch])
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a model failure belongs to the callers of this batch
                log.exception("model batch of %d %s inputs failed", len(batch), tower.value)
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            ran = time.monotonic() - started
            for item, vector in zip(batch, vectors):
                if not item.future.done():
                    item.future.set_result(vector)
            self._record(tower, len(batch), started - batch[0].enqueued, ran)

    def _oldest_tower(self) -> Tower | None:
        heads = []
        for tower, queue in self._queues.items():
            while queue and queue[0].future.done():  # the caller went away (cancelled, deadline)
                queue.popleft()
                self._release(1)
            if queue:
                heads.append((queue[0].enqueued, tower))
        return min(heads)[1] if heads else None

    async def _fill(self, tower: Tower) -> None:
        """With the model idle, give a partial batch until max_wait after its oldest input to fill."""
        assert self._arrived is not None
        queue = self._queues[tower]
        deadline = queue[0].enqueued + self._policy.max_wait_s
        while len(queue) < self._policy.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take(self, tower: Tower) -> list[_Queued]:
        queue = self._queues[tower]
        batch: list[_Queued] = []
        while queue and len(batch) < self._policy.max_batch:
            item = queue.popleft()
            if item.future.done():
                self._release(1)
                continue
            batch.append(item)
        return batch

    def _record(self, tower: Tower, size: int, waited: float, ran: float) -> None:
        name = tower.value
        self.stats.batches[name] += 1
        self.stats.inputs[name] += size
        self.stats.queue_wait_s[name] += waited
        self.stats.model_s[name] += ran
        for observer in self.observers:
            try:
                observer(name, size, waited, ran)
            except Exception:  # noqa: BLE001 - metrics must never fail a batch
                log.exception("batch observer failed")

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self._embedder.dim), dtype=np.float32)


class _Admission:
    """Inputs reserved in the queue for one call; whatever is still reserved on exit is released."""

    def __init__(self, scheduler: BatchScheduler, count: int, bulk: bool) -> None:
        self._scheduler = scheduler
        self._count = count
        self._bulk = bulk
        self._held = 0

    async def __aenter__(self) -> _Admission:
        await self._scheduler._reserve(self._count, self._bulk)
        self._held = self._count
        return self

    async def __aexit__(self, *exc) -> None:
        self.release(self._held)

    def release(self, count: int) -> None:
        count = min(count, self._held)
        self._held -= count
        self._scheduler._release(count)

    async def run(self, tower: Tower, values: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Queue prepared inputs and wait for their rows; the dispatcher releases them as batches start."""
        if not values:
            return []
        futures = self._scheduler._enqueue(tower, values)
        self._held -= len(values)  # from here the dispatcher owns their reservation
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
