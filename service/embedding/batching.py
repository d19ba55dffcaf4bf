"""Cross-request dynamic batching: single inputs of concurrent calls become model batches.

Every path that runs the model (Embed, EmbedStream, Search by text or image,
UpsertItems) submits here. An input goes through two stages:

1. prepare: decode + resize + normalise an image on a small preprocess pool,
   tokenise a text (inline when it is short: the hop to the pool costs more than
   tokenising a query). A bad input fails here, alone, before it reaches a batch,
   and the model never waits for pixels: the next batch is prepared while the
   current one runs.
2. encode, on the one inference thread: a dispatcher takes up to `max_batch`
   prepared inputs of one tower (image and text are batched separately) and
   routes each row back to its caller.

While the model runs, inputs queue and form the next batch by themselves. When
the model is idle, a batch waits for company (at most `max_wait_s` after its
oldest input) only while company is on its way: inputs of the same tower
admitted and still being prepared, or fewer queued than were in flight when
recent batches finished (closed-loop callers whose answers just went out send
their next input within a round trip). A lone caller, the common interactive
case, is dispatched at once instead of paying `max_wait_s` on every request.

When more texts are queued than one batch holds, the oldest of them (up to
BUCKET_BATCHES batches' worth) are sorted by token length and split into batches
run one after another: the text tower stops at a batch's longest text, so texts
of similar length pad less. Every queued text is in the round it entered with
or the next one, so none waits more than a few batches longer than in arrival order.

The queue is bounded in inputs: a call that would overflow it is refused with
Overloaded (RESOURCE_EXHAUSTED) unless it is a bulk stream, which waits for room
instead (gRPC flow control then pushes back on the sender). A call is never
refused while the queue is empty, so one request larger than the bound still runs.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import math
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from recommender.errors import InvalidArgument, Overloaded
from service.calls import AlreadyLogged, current_call
from service.embedding.embedder import ClipEmbedder

log = logging.getLogger(__name__)

# Demand seen when this many recent batches finished decides whether an idle model waits for company.
RECENT_BATCHES = 4
# A length-sorted round of texts covers at most this many batches of the oldest queued texts.
BUCKET_BATCHES = 4
# Texts up to this many characters in all are tokenised on the event loop: about a tenth of a
# millisecond, less than the round trip through the preprocess pool (measured in BENCHMARKS.md, P6).
INLINE_TOKENISE_CHARS = 512


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


class ModelBatchFailed(AlreadyLogged):
    """The model failed on a batch this input was in; the scheduler logged the traceback once for the batch."""


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
    order: int  # arrival order across calls; within a call, the input's position
    request_id: str | None  # the call it belongs to, for the log line of a failed batch


class BatchScheduler:
    def __init__(self, embedder: ClipEmbedder, policy: BatchPolicy, model_executor: Executor,
                 preprocess_executor: Executor) -> None:
        self._embedder = embedder
        self._policy = policy
        self._model_executor = model_executor
        self._preprocess_executor = preprocess_executor
        self._queues: dict[Tower, deque[_Queued]] = {tower: deque() for tower in Tower}
        # Texts already sorted into a length-bucketed round, batch by batch (they stay reserved).
        self._round: deque[list[_Queued]] = deque()
        self._reserved = 0  # inputs admitted and not yet handed to the model (preparing or queued)
        self._preparing = {tower: 0 for tower in Tower}  # admitted, not yet queued
        self._outstanding = {tower: 0 for tower in Tower}  # admitted, not yet answered
        # Inputs outstanding when each recent batch finished: the company an idle model can expect.
        self._demand: dict[Tower, deque[int]] = {tower: deque(maxlen=RECENT_BATCHES) for tower in Tower}
        self._order = itertools.count()
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
        tower = Tower(tower)
        in_round = sum(map(len, self._round)) if tower is Tower.TEXT else 0
        return len(self._queues[tower]) + in_round

    def outstanding(self, tower: Tower | str) -> int:
        """Inputs of a tower admitted and not yet answered: preparing, queued or in the running batch."""
        return self._outstanding[Tower(tower)]

    # -- public calls --------------------------------------------------------

    async def embed_texts(self, texts: Sequence[str], *, bulk: bool = False) -> np.ndarray:
        if not texts:
            return self._empty()
        texts = list(texts)
        async with self._admit(Tower.TEXT, len(texts), bulk) as admission:
            if sum(map(len, texts)) <= INLINE_TOKENISE_CHARS:
                tokens = self._embedder.prepare_texts(texts)
            else:
                tokens = await self._prepare(self._embedder.prepare_texts, texts)
            return np.stack(await admission.run(tokens))

    async def embed_images(self, images: Sequence[bytes], field: str = "images", *, bulk: bool = False) -> np.ndarray:
        """All or nothing: the first undecodable image (by index) fails the call, naming `field[i]`."""
        if not images:
            return self._empty()
        async with self._admit(Tower.IMAGE, len(images), bulk) as admission:
            prepared = await self._prepare_images([(data, f"{field}[{index}]") for index, data in enumerate(images)])
            pixels = []
            for result in prepared:
                if isinstance(result, BaseException):
                    raise result
                pixels.append(result)
            return np.stack(await admission.run(pixels))

    async def embed_images_each(self, images: Sequence[tuple[bytes, str]], *,
                                bulk: bool = True) -> list[np.ndarray | InvalidArgument]:
        """One result per (bytes, field): a vector, or the InvalidArgument that image alone failed with."""
        if not images:
            return []
        async with self._admit(Tower.IMAGE, len(images), bulk) as admission:
            prepared = await self._prepare_images(list(images))
            good = [index for index, result in enumerate(prepared) if not isinstance(result, BaseException)]
            admission.release(len(images) - len(good))
            vectors = await admission.run([pixels for pixels in prepared if not isinstance(pixels, BaseException)])
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
        waiting = [item for queue in self._queues.values() for item in queue]
        waiting += [item for batch in self._round for item in batch]
        for queue in self._queues.values():
            queue.clear()
        self._round.clear()
        for queued in waiting:
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

    def _admit(self, tower: Tower, count: int, bulk: bool) -> _Admission:
        self._ensure_started()
        return _Admission(self, tower, count, bulk)

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

    def _prepared(self, tower: Tower, count: int) -> None:
        """`count` inputs left preparation (queued or dropped): a batch waiting for them looks again."""
        self._preparing[tower] -= count
        if self._arrived is not None:
            self._arrived.set()

    # -- stage 2 -------------------------------------------------------------

    def _enqueue(self, tower: Tower, values: Sequence[torch.Tensor]) -> list[asyncio.Future]:
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        call = current_call.get()
        request_id = call.request_id if call is not None else None
        futures = []
        for value in values:
            future = loop.create_future()
            self._queues[tower].append(_Queued(value, future, now, next(self._order), request_id))
            futures.append(future)
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
            if not (tower is Tower.TEXT and self._round):
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
                self._fail(tower, batch, error)
                continue
            finally:
                self._demand[tower].append(self._outstanding[tower])
            ran = time.monotonic() - started
            for item, vector in zip(batch, vectors):
                if not item.future.done():
                    item.future.set_result(vector)
            self._record(tower, len(batch), started - min(item.enqueued for item in batch), ran)

    def _fail(self, tower: Tower, batch: list[_Queued], error: Exception) -> None:
        """Log the failure once, for the whole batch, naming its calls; each caller reports an INTERNAL."""
        request_ids = sorted({item.request_id for item in batch if item.request_id})
        calls = f" (request ids: {', '.join(request_ids)})" if request_ids else ""
        log.error("model batch of %d %s inputs failed%s", len(batch), tower.value, calls, exc_info=error)
        for item in batch:
            if not item.future.done():
                failure = ModelBatchFailed(f"model batch of {len(batch)} {tower.value} inputs failed")
                failure.__cause__ = error
                item.future.set_exception(failure)

    def _oldest_tower(self) -> Tower | None:
        while self._round and all(item.future.done() for item in self._round[0]):
            self._release(len(self._round.popleft()))  # every caller of that batch went away
        heads = []
        if self._round:
            heads.append((min(item.enqueued for item in self._round[0]), Tower.TEXT))
        for tower, queue in self._queues.items():
            while queue and queue[0].future.done():  # the caller went away (cancelled, deadline)
                queue.popleft()
                self._release(1)
            if queue:
                heads.append((queue[0].enqueued, tower))
        return min(heads)[1] if heads else None

    async def _fill(self, tower: Tower) -> None:
        """With the model idle, wait for company while it is on its way, until max_wait after the oldest input."""
        assert self._arrived is not None
        queue = self._queues[tower]
        deadline = queue[0].enqueued + self._policy.max_wait_s
        while len(queue) < self._policy.max_batch and self._company_coming(tower):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # The company did not come: forget the demand that promised it, so lone callers go at once.
                self._demand[tower].clear()
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass

    def _company_coming(self, tower: Tower) -> bool:
        if self._preparing[tower] > 0:
            return True
        expected = min(max(self._demand[tower], default=0), self._policy.max_batch)
        return len(self._queues[tower]) < expected

    def _take(self, tower: Tower) -> list[_Queued]:
        if tower is Tower.TEXT and not self._round and len(self._queues[tower]) > self._policy.max_batch:
            self._round = self._bucketed_round()
        source = self._round.popleft() if tower is Tower.TEXT and self._round else None
        if source is not None:
            live = [item for item in source if not item.future.done()]
            self._release(len(source) - len(live))
            return live
        queue = self._queues[tower]
        batch: list[_Queued] = []
        while queue and len(batch) < self._policy.max_batch:
            item = queue.popleft()
            if item.future.done():
                self._release(1)
                continue
            batch.append(item)
        return batch

    def _bucketed_round(self) -> deque[list[_Queued]]:
        """The oldest queued texts, sorted by length into batches; the batch holding the oldest text runs first."""
        queue = self._queues[Tower.TEXT]
        batches = min(math.ceil(len(queue) / self._policy.max_batch), BUCKET_BATCHES)
        window = [queue.popleft() for _ in range(min(len(queue), batches * self._policy.max_batch))]
        # Positions each text needs alone: measured here, once a round is due, not on every call's path.
        lengths = self._embedder.text_tower.lengths(torch.stack([item.value for item in window]))
        ranked = [item for _, _, item in sorted(zip(lengths, (item.order for item in window), window),
                                                key=lambda entry: entry[:2])]
        size = math.ceil(len(ranked) / batches)  # even sizes: no small remainder batch
        chunks = [ranked[start:start + size] for start in range(0, len(ranked), size)]
        chunks.sort(key=lambda chunk: min(item.order for item in chunk))
        return deque(chunks)

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
    """Inputs of one call, reserved in the queue; whatever is still reserved on exit is released."""

    def __init__(self, scheduler: BatchScheduler, tower: Tower, count: int, bulk: bool) -> None:
        self._scheduler = scheduler
        self._tower = tower
        self._count = count
        self._bulk = bulk
        self._held = 0  # reserved and still being prepared

    async def __aenter__(self) -> _Admission:
        await self._scheduler._reserve(self._count, self._bulk)
        self._held = self._count
        self._scheduler._preparing[self._tower] += self._count
        self._scheduler._outstanding[self._tower] += self._count
        return self

    async def __aexit__(self, *exc) -> None:
        self.release(self._held)
        self._scheduler._outstanding[self._tower] -= self._count

    def release(self, count: int) -> None:
        """Give back `count` inputs that will never be queued (they failed to prepare)."""
        count = min(count, self._held)
        if count <= 0:
            return
        self._held -= count
        self._scheduler._prepared(self._tower, count)
        self._scheduler._release(count)

    async def run(self, values: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Queue prepared inputs and wait for their rows; the dispatcher releases them as batches start."""
        if not values:
            return []
        futures = self._scheduler._enqueue(self._tower, values)
        self._held -= len(values)  # from here the dispatcher owns their reservation
        self._scheduler._prepared(self._tower, len(values))
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
