"""A real grpc.aio server on its own event loop in a background thread, for
callers that are not async themselves: the demo command and the tests."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from service.config import Settings
from service.runtime import Dependencies
from service.server import LookalikeServer, build_server


class BackgroundServer:
    def __init__(self, settings: Settings, deps: Dependencies | None = None, wait_ready: bool = True,
                 ready_timeout: float = 120.0) -> None:
        self._settings = settings
        self._deps = deps
        self._wait_ready = wait_ready
        self._ready_timeout = ready_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lookalike-server", daemon=True)
        self.server: LookalikeServer | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"{self._settings.host}:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def run(self, coroutine, timeout: float | None = 60.0):
        """Run a coroutine on the server's loop and wait for its result."""
        future: Future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    def __enter__(self) -> BackgroundServer:
        self._thread.start()

        async def start() -> None:
            self.server, self.port = build_server(self._settings, self._deps)
            await self.server.start()
            if self._wait_ready:
                await self.server.wait_ready(timeout=self._ready_timeout)

        try:
            self.run(start(), timeout=None)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.run(self.server.stop(0.5))
            self.server = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
