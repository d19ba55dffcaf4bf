"""What a running server holds: the model, the catalog, the executors, its readiness.

Blocking work never runs on the event loop: the model runs on one inference
thread, fed by the batch scheduler (service/embedding/batching.py) whose
preprocess pool decodes the next batch meanwhile; catalog calls go to their own
executor. Both storage engines take concurrent reads: Qdrant Edge releases the
GIL while it searches, and a Qdrant server is a network call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import AsyncIterator, Callable, TypeVar

from recommender.engine import Engine, open_engine
from recommender.errors import Overloaded, Unavailable
from recommender.recommend import RecommenderConfig
from recommender.storage import Storage
from service.config import Settings
from service.embedding import ClipEmbedder, ModelSpec, load_embedder
from service.embedding.batching import BatchPolicy, BatchScheduler
from service.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
REMOTE_CATALOG_THREADS = 8
# Edge reads run in parallel outside the GIL; more threads than this only queue inside Edge.
EMBEDDED_CATALOG_THREADS = 4
CATALOG_RETRY_S = (0.5, 1, 2, 5)


# Opens the storage for a model: (model identity, vector dimension) -> Storage.
StorageOpener = Callable[[str, int], Storage]


@dataclass(frozen=True)
class Dependencies:
    """How to make the heavy parts; tests pass their own (a tiny model, a temp dir)."""

    load_embedder: Callable[[], ClipEmbedder]
    open_storage: StorageOpener
    storage_location: str  # "embedded" or where the Qdrant server is, for logs and errors

    @property
    def embedded(self) -> bool:
        return self.storage_location == "embedded"

    @classmethod
    def from_settings(cls, settings: Settings) -> Dependencies:
        def load() -> ClipEmbedder:
            return load_embedder(ModelSpec.parse(settings.model, settings.pretrained), device=settings.device,
                                 precision=settings.precision, max_batch=settings.max_batch, seed=settings.seed,
                                 max_image_pixels=settings.max_image_pixels, runtime=settings.runtime,
                                 onnx_cache_dir=settings.onnx_cache_path,
                                 onnx_spinning=settings.omp_wait_policy == "active",
                                 onnx_max_image_batch=settings.onnx_max_image_batch,
                                 onnx_max_text_batch=settings.onnx_max_text_batch)

        return cls(load, storage_opener(settings), "embedded" if not settings.qdrant_url else settings.qdrant_url)


def storage_opener(settings: Settings) -> StorageOpener:
    """The embedded Qdrant Edge folder, or a Qdrant server when a URL is set."""
    if settings.qdrant_url:
        url = settings.qdrant_url

        def open_remote(model_identity: str, dim: int) -> Storage:
            from recommender.collection_settings import CollectionLayout
            from recommender.storage.server import open_server
            from service.qdrant_connection import describe, open_client

            client = open_client(url, settings.qdrant_grpc_port, settings.qdrant_api_key, settings.qdrant_timeout_s)
            layout = CollectionLayout(settings.qdrant_shard_number, settings.qdrant_replication_factor)
            try:
                return open_server(client, settings.collection, model_identity, dim, settings.payload_indexes,
                                   location=describe(url, settings.qdrant_grpc_port), layout=layout)
            except BaseException:
                client.close()
                raise
        return open_remote

    def open_embedded(model_identity: str, dim: int) -> Storage:
        from recommender.storage.edge import open_edge

        return open_edge(settings.data_dir, settings.collection, model_identity, dim, settings.payload_indexes,
                         min_free_bytes=settings.min_free_bytes)
    return open_embedded


class Runtime:
    def __init__(self, settings: Settings, deps: Dependencies, metrics: Metrics | None = None) -> None:
        self._settings = settings
        self._deps = deps
        self.metrics = metrics or Metrics()
        # One thread: a batch already uses every core torch is given; two would split them.
        self._inference_pool = ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._preprocess_pool = ThreadPoolExecutor(settings.preprocess_workers, thread_name_prefix="preprocess")
        threads = EMBEDDED_CATALOG_THREADS if deps.embedded else REMOTE_CATALOG_THREADS
        self._catalog_pool = ThreadPoolExecutor(threads, thread_name_prefix="catalog")
        self._inflight = 0
        self._storage: Storage | None = None
        self.embedder: ClipEmbedder | None = None
        self.batcher: BatchScheduler | None = None
        self.engine: Engine | None = None
        self.startup_error: BaseException | None = None

    @property
    def ready(self) -> bool:
        return self.engine is not None

    async def start(self) -> None:
        """Load the model, then reach the catalog, retrying the catalog until it answers.

        A model that cannot load is final (startup_error); an unreachable vector
        store is not, since it may come up after us.
        """
        loop = asyncio.get_running_loop()
        try:
            self.embedder = await loop.run_in_executor(self._inference_pool, self._deps.load_embedder)
        except Exception as error:  # noqa: BLE001 - reported through startup_error and the log
            self.startup_error = error
            log.error("model failed to load: %s", error)
            return
        log.info("model %s loaded (dim %d, device %s, runtime %s; text tower: %s)", self.embedder.identity,
                 self.embedder.dim, self.embedder.device, self.embedder.runtime, self.embedder.text_tower.reason)
        self.batcher = BatchScheduler(
            self.embedder,
            BatchPolicy(max_batch=self._settings.max_batch, max_wait_s=self._settings.max_batch_wait_ms / 1000,
                        max_queue=self._settings.max_queued_inputs),
            model_executor=self._inference_pool, preprocess_executor=self._preprocess_pool)
        self.metrics.watch_batcher(self.batcher)
        self.metrics.watch_embedder(self.embedder)
        attempt = 0
        while True:
            try:
                self.engine = await loop.run_in_executor(self._catalog_pool, self._open_engine)
                break
            except Unavailable as error:
                delay = CATALOG_RETRY_S[min(attempt, len(CATALOG_RETRY_S) - 1)]
                log.warning("vector store not reachable yet (%s); retrying in %.1fs", error, delay)
                attempt += 1
                await asyncio.sleep(delay)
            except Exception as error:  # noqa: BLE001 - e.g. the embedded storage is locked by another process
                self.startup_error = error
                log.error("catalog failed to open: %s", error)
                return

    def _open_engine(self) -> Engine:
        assert self.embedder is not None, "the model loads before the engine opens"
        self._storage = self._deps.open_storage(self.embedder.identity, self.embedder.dim)
        return open_engine(self._storage, RecommenderConfig(
            profile_cache_size=self._settings.profile_cache_size,
            profile_cache_max_age=timedelta(seconds=self._settings.profile_cache_seconds)))

    def require_ready(self) -> tuple[ClipEmbedder, Engine]:
        if self.engine is None or self.embedder is None:
            if self.startup_error is not None:
                raise Unavailable(f"server failed to start: {self.startup_error}")
            raise Unavailable("server is starting (loading the model or reaching the vector store); retry shortly")
        return self.embedder, self.engine

    def require_batcher(self) -> BatchScheduler:
        """The scheduler every model call goes through (raises Unavailable until ready)."""
        self.require_ready()
        if self.batcher is None:
            raise Unavailable("server is starting (the batching scheduler is not up yet); retry shortly")
        return self.batcher

    @contextlib.asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Refuse work beyond max_inflight rather than queue it without bound."""
        if self._inflight >= self._settings.max_inflight:
            self.metrics.admission_rejections.labels("in_flight").inc()
            raise Overloaded(f"{self._inflight} requests in flight (limit {self._settings.max_inflight}); "
                             "back off and retry")
        self._inflight += 1
        try:
            yield
        finally:
            self._inflight -= 1

    async def query(self, function: Callable[..., T], *args, **kwargs) -> T:
        """Run a catalog call on the catalog executor, timed under the function's name."""
        operation = getattr(function, "__name__", "call")

        def timed() -> T:
            with self.metrics.catalog_call(operation):
                return function(*args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._catalog_pool, timed)

    async def check_catalog(self) -> bool:
        if self.engine is None:
            return False
        try:
            await self.query(self.engine.ping)
            return True
        except Unavailable:
            return False

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        self._inference_pool.shutdown(wait=True, cancel_futures=True)
        self._preprocess_pool.shutdown(wait=True, cancel_futures=True)
        self._catalog_pool.shutdown(wait=True, cancel_futures=True)
        if self._storage is not None:
            self._storage.close()
            self._storage = None
