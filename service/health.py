"""grpc.health.v1 whose Watch streams end when the server shuts down.

grpc's own servicer keeps every Watch open until the client leaves, so one
watching load balancer held each SIGTERM for the whole grace period. Here
shutdown() flips every service to NOT_SERVING, lets each watcher send that,
then ends the streams, and the drain waits only for real work.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

Status = int  # a health_pb2.HealthCheckResponse.ServingStatus value
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
MAX_SERVICE_NAME = 200


class HealthServicer(health_pb2_grpc.HealthServicer):
    def __init__(self) -> None:
        self._status: dict[str, Status] = {}
        self._changed = asyncio.Condition()
        self._closing = False

    async def set(self, service: str, status: Status) -> None:
        """Ignored once shutting down: NOT_SERVING is final then."""
        async with self._changed:
            if self._closing:
                return
            self._status[service] = status
            self._changed.notify_all()

    async def shutdown(self) -> None:
        async with self._changed:
            self._closing = True
            for service in self._status:
                self._status[service] = NOT_SERVING
            self._changed.notify_all()

    async def Check(self, request: health_pb2.HealthCheckRequest, context) -> health_pb2.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"unknown service {request.service[:MAX_SERVICE_NAME]!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context) -> None:
        last: Status | None = None
        while True:
            async with self._changed:
                # The lock is not held while writing: a slow watcher must not stall set().
                def changed(sent: Status | None = last) -> bool:
                    return self._closing or self._status.get(request.service, SERVICE_UNKNOWN) != sent

                await self._changed.wait_for(changed)
                status = self._status.get(request.service, SERVICE_UNKNOWN)
                closing = self._closing
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if closing:
                return
