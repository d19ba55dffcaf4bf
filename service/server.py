"""Assembling and running the gRPC server: services, health, reflection, drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.api.lookalike.v1 import (
    catalog_service_pb2,
    catalog_service_pb2_grpc,
    embedding_service_pb2,
    embedding_service_pb2_grpc,
    recommendation_service_pb2,
    recommendation_service_pb2_grpc,
    search_service_pb2,
    search_service_pb2_grpc,
)
from service.app import Lookalike
from service.config import Settings
from service.handlers import UndecodableRequests
from service.health import HealthServicer
from service.metrics import Metrics, MetricsEndpoint
from service.observability import RequestObserver
from service.runtime import Dependencies, Runtime
from service.security import AuthInterceptor, check_exposure, load_tokens, server_credentials
from service.servicers import CatalogServicer, EmbeddingServicer, RecommendationServicer, SearchServicer

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    embedding_service_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name,
    catalog_service_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
    search_service_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name,
    recommendation_service_pb2.DESCRIPTOR.services_by_name["RecommendationService"].full_name,
)
HEALTH_PROBE_INTERVAL_S = 5.0


class LookalikeServer:
    """A grpc.aio server plus the startup that makes it ready and the drain that stops it."""

    def __init__(self, grpc_server: grpc.aio.Server, runtime: Runtime, health_servicer: HealthServicer,
                 settings: Settings) -> None:
        self.grpc_server = grpc_server
        self.runtime = runtime
        self._health = health_servicer
        self._settings = settings
        self._tasks: list[asyncio.Task] = []
        self._serving: bool | None = None
        self.metrics_endpoint: MetricsEndpoint | None = None

    @property
    def metrics(self) -> Metrics:
        return self.runtime.metrics

    async def start(self) -> None:
        await self._set_health(False)
        if self._settings.metrics_port is not None:
            self.metrics_endpoint = MetricsEndpoint.start(self.metrics, self._settings.host,
                                                          self._settings.metrics_port)
            log.info("metrics on http://%s:%d/metrics", self._settings.host, self.metrics_endpoint.port)
        await self.grpc_server.start()
        self._tasks.append(asyncio.create_task(self._become_ready(), name="lookalike-startup"))

    async def _become_ready(self) -> None:
        await self.runtime.start()
        if not self.runtime.ready:
            return
        await self._set_health(True)
        while True:  # the vector store can go away later; health follows it
            await asyncio.sleep(HEALTH_PROBE_INTERVAL_S)
            await self._set_health(await self.runtime.check_catalog())

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Return once SERVING; raise the startup error if the server cannot become ready."""
        async def poll() -> None:
            while not self.runtime.ready:
                if self.runtime.startup_error is not None:
                    raise self.runtime.startup_error
                await asyncio.sleep(0.05)
        await asyncio.wait_for(poll(), timeout)

    async def _set_health(self, serving: bool) -> None:
        if serving == self._serving:
            return
        if self._serving is not None:
            log.log(logging.INFO if serving else logging.WARNING, "health -> %s",
                    "SERVING" if serving else "NOT_SERVING")
        self._serving = serving
        self.metrics.health_serving.set(1 if serving else 0)
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, status)

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking new calls, let in-flight ones finish within `grace`, then release resources.

        Health Watch streams end here (after telling watchers NOT_SERVING), so
        they do not hold the drain for the whole grace period.
        """
        await self._health.shutdown()
        self.metrics.health_serving.set(0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.grpc_server.stop(self._settings.grace_seconds if grace is None else grace)
        await self.runtime.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
            self.metrics_endpoint = None

    async def wait_for_termination(self) -> None:
        await self.grpc_server.wait_for_termination()


def build_server(settings: Settings, deps: Dependencies | None = None) -> tuple[LookalikeServer, int]:
    """Build (not start) the server; port 0 in settings binds a free port, returned here."""
    tokens = load_tokens(settings)
    check_exposure(settings, tokens)
    credentials = server_credentials(settings)
    deps = deps or Dependencies.from_settings(settings)
    max_bytes = settings.max_message_mb * 1024 * 1024
    metrics = Metrics()
    # Outermost first: every call is observed, refused ones included; a refused
    # call's message is never parsed.
    interceptors: list[grpc.aio.ServerInterceptor] = [RequestObserver(metrics)]
    if tokens:
        interceptors.append(AuthInterceptor(tokens))
    interceptors.append(UndecodableRequests())
    grpc_server = grpc.aio.server(interceptors=interceptors, options=[
        ("grpc.max_receive_message_length", max_bytes),
        ("grpc.max_send_message_length", max_bytes),
        # gRPC sets SO_REUSEPORT by default: a second server on a busy port would
        # start "fine" and silently take a share of the connections.
        ("grpc.so_reuseport", 0),
    ])
    runtime = Runtime(settings, deps, metrics)
    app = Lookalike(runtime)
    embedding_service_pb2_grpc.add_EmbeddingServiceServicer_to_server(EmbeddingServicer(runtime, app), grpc_server)
    catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server(CatalogServicer(runtime, app), grpc_server)
    search_service_pb2_grpc.add_SearchServiceServicer_to_server(SearchServicer(runtime, app), grpc_server)
    recommendation_service_pb2_grpc.add_RecommendationServiceServicer_to_server(
        RecommendationServicer(runtime, app), grpc_server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        grpc_server)
    address = f"{settings.host}:{settings.port}"
    try:
        port = (grpc_server.add_secure_port(address, credentials) if credentials is not None
                else grpc_server.add_insecure_port(address))
    except RuntimeError as error:  # grpc's "Failed to bind"
        raise OSError(f"cannot listen on {address}: the port is in use or the address is not this host's "
                      f"({error})") from None
    if port == 0:
        raise OSError(f"cannot listen on {address}: the port is in use or the address is not this host's")
    transport = "mTLS" if settings.tls_client_ca_file else "TLS" if credentials else "plaintext"
    log.info("transport: %s; auth: %s", transport,
             f"{len(tokens)} bearer token(s)" if tokens else
             "OFF (--insecure)" if settings.insecure else "OFF (loopback only)")
    return LookalikeServer(grpc_server, runtime, health_servicer, settings), port


async def serve(settings: Settings, deps: Dependencies | None = None) -> int:
    """Run until SIGTERM/SIGINT, then drain. Returns a process exit code."""
    server, port = build_server(settings, deps)
    await server.start()
    log.info("listening on %s:%d (max message %d MiB)", settings.host, port, settings.max_message_mb)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ready = asyncio.create_task(server.wait_ready())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if ready.done() and ready.exception() is not None:
        log.error("cannot serve: startup failed (logged above); exiting")
        await server.stop(0)
        return 2
    await stopping
    ready.cancel()
    log.info("draining (grace %.1fs)", settings.grace_seconds)
    started = loop.time()
    await server.stop()
    log.info("stopped: drained in %.2fs", loop.time() - started)
    return 0
