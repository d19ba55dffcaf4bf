"""Small asyncio combinators the use cases share."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import AsyncIterator, Awaitable, Callable, TypeVar, cast

A = TypeVar("A")
B = TypeVar("B")
T = TypeVar("T")
R = TypeVar("R")


async def both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Await two calls concurrently; if one fails, cancel the other and raise."""
    tasks = [asyncio.ensure_future(first), asyncio.ensure_future(second)]
    try:
        results = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return cast(A, results[0]), cast(B, results[1])


async def in_order(source: AsyncIterator[T], work: Callable[[T], Awaitable[R]],
                   window: int) -> AsyncIterator[tuple[T, R]]:
    """Run `work` on up to `window` items of `source` at once; yield (item, result) in source order.

    Reading the source never holds back a finished result: a client that sends its
    next input only after it has read the previous reply (a bidi stream used as
    request/response) must still get that reply. The first failure in source order,
    the source's own included, is raised after the results before it; work still
    running is then cancelled.
    """
    loop = asyncio.get_running_loop()
    pending: deque[tuple[T | None, asyncio.Future]] = deque()
    iterator = source.__aiter__()
    reader: asyncio.Future | None = None
    exhausted = False
    try:
        while True:
            if reader is None and not exhausted and len(pending) < window:
                reader = asyncio.ensure_future(iterator.__anext__())
            head = pending[0][1] if pending else None
            waiting = [future for future in (reader, head) if future is not None]
            if not waiting:
                return
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if reader is not None and reader.done():
                try:
                    item = reader.result()
                except StopAsyncIteration:
                    exhausted = True
                except Exception as error:  # noqa: BLE001 - raised in its turn, after earlier results
                    exhausted = True
                    failed = loop.create_future()
                    failed.set_exception(error)
                    pending.append((None, failed))
                else:
                    pending.append((item, asyncio.ensure_future(work(item))))
                reader = None
            while pending and pending[0][1].done():
                item, future = pending.popleft()
                yield item, future.result()  # type: ignore[misc]
    finally:
        leftovers = [future for _, future in pending] + ([reader] if reader is not None else [])
        for future in leftovers:
            future.cancel()
        if leftovers:
            await asyncio.gather(*leftovers, return_exceptions=True)
