"""Plumbing the server's interceptors share: rebuilding a method handler around a
new behaviour (whatever its streaming shape), and the guard that turns
undecodable request bytes into INVALID_ARGUMENT.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

import grpc

from service.calls import current_call
from service.errors import bad_request

_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}

Behaviour = Callable[..., Any]


def behaviour_of(handler: grpc.RpcMethodHandler) -> Behaviour:
    return (handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream)


def rebuild(handler: grpc.RpcMethodHandler, behaviour: Behaviour, request_deserializer: Any) -> grpc.RpcMethodHandler:
    factory = _FACTORIES[(handler.request_streaming, handler.response_streaming)]
    return factory(behaviour, request_deserializer=request_deserializer,
                   response_serializer=handler.response_serializer)


def replace_behaviour(handler: grpc.RpcMethodHandler,
                      behaviour: Callable[[Any, grpc.aio.ServicerContext], Awaitable[None]]) -> grpc.RpcMethodHandler:
    """Same shape, a coroutine behaviour that gets the raw bytes: nothing is parsed."""
    return rebuild(handler, behaviour, request_deserializer=None)


def wrap_behaviour(handler: grpc.RpcMethodHandler,
                   around: Callable[[grpc.aio.ServicerContext], Any]) -> grpc.RpcMethodHandler:
    """Run the handler inside `around(context)`, an async context manager, keeping its shape.

    A streaming reply may come from an async generator or from a coroutine that
    calls context.write (grpc's health Watch); the wrapper is of the same kind.
    """
    inner = behaviour_of(handler)
    if inspect.isasyncgenfunction(inner):
        async def streaming(request, context):
            async with around(context):
                async for reply in inner(request, context):
                    yield reply
        behaviour: Behaviour = streaming
    else:
        async def single(request, context):
            async with around(context):
                return await inner(request, context)
        behaviour = single
    return rebuild(handler, behaviour, handler.request_deserializer)


# -- undecodable requests -----------------------------------------------------

@dataclass(frozen=True)
class _Undecodable:
    reason: str


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as error:  # noqa: BLE001 - protobuf raises DecodeError, and others on odd input
            return _Undecodable(f"{type(error).__name__}: {error}"[:200])

    return parse


class UndecodableRequests(grpc.aio.ServerInterceptor):
    """Bytes that do not parse as the method's request message get INVALID_ARGUMENT.

    Left to grpc, a parse failure is UNKNOWN (unary) or INTERNAL (streams) with
    a traceback at ERROR per request: a log flood anyone can cause.
    """

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        inner = behaviour_of(handler)
        streaming_reply = inspect.isasyncgenfunction(inner)

        async def refuse(context: grpc.aio.ServicerContext, problem: _Undecodable) -> None:
            record = current_call.get()
            if record is not None:
                record.undecodable = True
            await context.abort_with_status(
                bad_request(f"request: not a valid {details.method} message ({problem.reason})", "request"))

        def checked(request_or_iterator, context):
            if not handler.request_streaming:
                return request_or_iterator, (request_or_iterator if isinstance(request_or_iterator, _Undecodable)
                                             else None)

            async def messages() -> AsyncIterator[Any]:
                async for message in request_or_iterator:
                    if isinstance(message, _Undecodable):
                        await refuse(context, message)
                    yield message
            return messages(), None

        if streaming_reply:
            async def guarded_stream(request_or_iterator, context):
                request, problem = checked(request_or_iterator, context)
                if problem is not None:
                    await refuse(context, problem)
                async for reply in inner(request, context):
                    yield reply
            behaviour: Behaviour = guarded_stream
        else:
            async def guarded(request_or_iterator, context):
                request, problem = checked(request_or_iterator, context)
                if problem is not None:
                    await refuse(context, problem)
                return await inner(request, context)
            behaviour = guarded
        return rebuild(handler, behaviour, _tolerant(handler.request_deserializer))
