"""Running a real grpc.aio Lookalike server on port 0 in a background thread,
so tests can drive it through the real, blocking client."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from pathlib import Path

from service.config import Settings
from service.embedding import ClipEmbedder
from service.runtime import Dependencies
from service.server import LookalikeServer, build_server


def settings_for(data_dir: Path, **overrides) -> Settings:
    values = dict(host="127.0.0.1", port=0, data_dir=data_dir, model="lookalike-tiny", pretrained="none",
                  grace_seconds=1.0)
    values.update(overrides)
    return Settings(**values)


def deps_with(settings: Settings, embedder: ClipEmbedder) -> Dependencies:
    """Real embedded Qdrant from the settings, with a model the test already loaded."""
    defaults = Dependencies.from_settings(settings)
    return Dependencies(lambda: embedder, defaults.open_qdrant, defaults.qdrant_location)


class ServerThread:
    def __init__(self, settings: Settings, deps: Dependencies, wait_ready: bool = True) -> None:
        self._settings = settings
        self._deps = deps
        self._wait_ready = wait_ready
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc-server", daemon=True)
        self.server: LookalikeServer | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(self, coroutine, timeout: float = 60.0):
        future: Future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    def __enter__(self) -> "ServerThread":
        self._thread.start()

        async def start() -> None:
            self.server, self.port = build_server(self._settings, self._deps)
            await self.server.start()
            if self._wait_ready:
                await self.server.wait_ready(timeout=60)

        self.run(start())
        return self

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.run(self.server.stop(0.5))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
