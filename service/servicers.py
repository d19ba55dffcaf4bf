"""gRPC servicers: decode -> call -> encode, nothing else.

Every method goes through `rpc`, which admits the request (or refuses it when
overloaded) and turns domain errors into a status via service/errors.py.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, AsyncIterator, Awaitable, Callable

import grpc

from service import convert
from service.api.lookalike.v1 import (
    catalog_service_pb2 as catalog_pb,
    catalog_service_pb2_grpc as catalog_grpc,
    embedding_service_pb2 as embedding_pb,
    embedding_service_pb2_grpc as embedding_grpc,
    recommendation_service_pb2 as recommendation_pb,
    recommendation_service_pb2_grpc as recommendation_grpc,
    search_service_pb2 as search_pb,
    search_service_pb2_grpc as search_grpc,
)
from service.app import Lookalike
from service.errors import rich_status
from service.runtime import Runtime


def rpc(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def guarded(self, request, context: grpc.aio.ServicerContext):
        try:
            async with self._runtime.admitted():
                return await method(self, request, context)
        except Exception as error:  # noqa: BLE001 - any failure must become a status, not a dead stream
            await _abort(context, error)

    return guarded


def streaming_rpc(method: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(method)
    async def guarded(self, request_iterator, context: grpc.aio.ServicerContext):
        try:
            async with self._runtime.admitted():
                async for reply in method(self, request_iterator, context):
                    yield reply
        except Exception as error:  # noqa: BLE001
            await _abort(context, error)

    return guarded


async def _abort(context: grpc.aio.ServicerContext, error: Exception) -> None:
    if isinstance(error, grpc.aio.AbortError):  # the method aborted on its own
        raise error
    await context.abort_with_status(rich_status(error))


class _Servicer:
    def __init__(self, runtime: Runtime, app: Lookalike) -> None:
        self._runtime = runtime
        self._app = app


class EmbeddingServicer(_Servicer, embedding_grpc.EmbeddingServiceServicer):
    @rpc
    async def Embed(self, request: embedding_pb.EmbedRequest, context) -> embedding_pb.EmbedResponse:
        text_vectors, image_vectors = await self._app.embed(*convert.embed_inputs(request))
        return convert.embed_response(text_vectors, image_vectors, self._app.model, self._app.dim)

    @streaming_rpc
    async def EmbedStream(self, request_iterator, context) -> AsyncIterator[embedding_pb.EmbedStreamResponse]:
        async def inputs():
            async for request in request_iterator:
                yield request.key, convert.embed_stream_input(request)

        async for key, vector in self._app.embed_stream(inputs()):
            yield convert.embed_stream_response(key, vector, self._app.model)


class CatalogServicer(_Servicer, catalog_grpc.CatalogServiceServicer):
    @streaming_rpc
    async def UpsertItems(self, request_iterator, context) -> AsyncIterator[catalog_pb.UpsertItemsResponse]:
        async def messages():
            next_index = 0
            async for request in request_iterator:
                yield convert.items_from_proto(request.items, next_index)
                next_index += len(request.items)

        async for outcome in self._app.upsert_stream(messages()):
            yield convert.upsert_response(outcome)

    @rpc
    async def GetItems(self, request: catalog_pb.GetItemsRequest, context) -> catalog_pb.GetItemsResponse:
        ids, with_vectors = convert.get_items_from_proto(request)
        items, missing = await self._app.get(ids, with_vectors)
        return convert.get_items_response(items, missing, with_vectors)

    @rpc
    async def DeleteItems(self, request: catalog_pb.DeleteItemsRequest, context) -> catalog_pb.DeleteItemsResponse:
        return convert.delete_response(await self._app.delete(convert.delete_selector(request)))


class SearchServicer(_Servicer, search_grpc.SearchServiceServicer):
    @rpc
    async def Search(self, request: search_pb.SearchRequest, context) -> search_pb.SearchResponse:
        return convert.search_response(await self._app.search(convert.search_from_proto(request)))

    @rpc
    async def SimilarItems(self, request: search_pb.SimilarItemsRequest, context) -> search_pb.SimilarItemsResponse:
        return convert.similar_response(await self._app.search(convert.similar_from_proto(request)))


class RecommendationServicer(_Servicer, recommendation_grpc.RecommendationServiceServicer):
    @rpc
    async def RecordEvents(self, request: recommendation_pb.RecordEventsRequest,
                           context) -> recommendation_pb.RecordEventsResponse:
        # Off the event loop: converting 10,000 events takes ~100 ms of Python.
        batch = await asyncio.to_thread(convert.events_from_proto, request, self._app.now())
        return convert.record_response(await self._app.record_events(batch), batch)

    @rpc
    async def Recommend(self, request: recommendation_pb.RecommendRequest,
                        context) -> recommendation_pb.RecommendResponse:
        query = convert.recommend_from_proto(request)
        return convert.recommend_response(await self._app.recommend(query), query)

    @rpc
    async def GetProfile(self, request: recommendation_pb.GetProfileRequest,
                         context) -> recommendation_pb.GetProfileResponse:
        user_id, with_centroids = convert.profile_from_proto(request)
        return convert.profile_response(await self._app.profile(user_id), with_centroids)

    @rpc
    async def ForgetUser(self, request: recommendation_pb.ForgetUserRequest,
                         context) -> recommendation_pb.ForgetUserResponse:
        return convert.forget_response(await self._app.forget_user(convert.forget_from_proto(request)))
