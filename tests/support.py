"""Settings and dependencies for a real server on port 0 with a model the tests loaded once."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Iterator

from service.background import BackgroundServer
from service.config import Settings
from service.embedding import ClipEmbedder
from service.runtime import Dependencies

ServerThread = BackgroundServer


def settings_for(data_dir: Path, **overrides) -> Settings:
    values = dict(host="127.0.0.1", port=0, data_dir=data_dir, model="lookalike-tiny", pretrained="none",
                  grace_seconds=1.0)
    values.update(overrides)
    return Settings(**values)


def deps_with(settings: Settings, embedder: ClipEmbedder) -> Dependencies:
    """Real storage from the settings (embedded Qdrant Edge unless a URL is set), with a model the test loaded."""
    defaults = Dependencies.from_settings(settings)
    return Dependencies(lambda: embedder, defaults.open_storage, defaults.storage_location)


@contextlib.contextmanager
def inference_thread_held(server: ServerThread) -> Iterator[None]:
    """Keep a running server's one inference thread busy, as a long model batch would, until the block ends."""
    assert server.server is not None
    release = threading.Event()
    server.server.runtime._inference_pool.submit(release.wait)
    try:
        yield
    finally:
        release.set()
