"""The typed Python client for a Lookalike server.

Imports grpc, protobuf and the generated stubs only: no torch, numpy, Pillow
or qdrant-client, so a product backend can `pip install lookalike` (no extras)
and call the API. One client holds one channel; create it once and share it
(it is thread-safe), and set a deadline per client (`timeout`).

    from service.client import LookalikeClient, NewItem
    with LookalikeClient("localhost:50051", token="s3cret") as client:
        client.upsert([NewItem(id="sku-1", text="red dress", payload={"color": "red"})])
        hits = client.search(text="a red dress", filter=["color=red"], limit=5)
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service import client_messages as m
from service.api.lookalike.v1 import (
    catalog_service_pb2_grpc as catalog_grpc,
    embedding_service_pb2_grpc as embedding_grpc,
    recommendation_service_pb2_grpc as recommendation_grpc,
    search_service_pb2_grpc as search_grpc,
    types_pb2 as types_pb,
)
from service.client_messages import (  # noqa: F401 - the client's public types live here too
    EVENT_TYPES,
    STRATEGIES,
    TARGETS,
    Embeddings,
    Example,
    FilterLike,
    Hit,
    InterestInfo,
    Item,
    ItemFailure,
    ItemsFound,
    NewItem,
    Profile,
    Recommended,
    RecommendResult,
    RecordSummary,
    StreamedVector,
    UpsertAck,
    UpsertSummary,
    UserEvent,
)

DEFAULT_TARGET = "127.0.0.1:50051"
# Codes that mean "the request was not processed; try again later". gRPC retries
# them itself (with backoff) for unary calls, per the service config below.
RETRYABLE_CODES = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")


class LookalikeClient:
    """A connection to one Lookalike server (or a load balancer in front of several).

    Args:
        target: ``host:port``.
        token: sent as ``authorization: Bearer <token>`` on every call.
        tls_ca_file: PEM file of the CA that signed the server's certificate; turns TLS on.
        tls: TLS with the system's root certificates (implied by ``tls_ca_file``).
        tls_cert_file, tls_key_file: a client certificate, for servers that require mutual TLS.
        timeout: deadline in seconds for each unary call (None = no deadline).
        max_message_mb: largest message sent or received; batches of photos exceed gRPC's 4 MiB default.
        retries: extra attempts of unary calls that fail with UNAVAILABLE or RESOURCE_EXHAUSTED
            (exponential backoff from 0.2 s); 0 turns retrying off.

    Example:
        >>> client = LookalikeClient("localhost:50051", token=open("token").read().strip(),
        ...                          tls_ca_file="ca.pem", timeout=5)
        >>> client.health()
        'SERVING'
    """

    def __init__(self, target: str = DEFAULT_TARGET, *, token: str | None = None, tls_ca_file: str | Path | None = None,
                 tls: bool = False, tls_cert_file: str | Path | None = None, tls_key_file: str | Path | None = None,
                 timeout: float | None = 60.0, max_message_mb: int = 64, retries: int = 3) -> None:
        size = max_message_mb * 1024 * 1024
        options: list[tuple[str, int | str]] = [
            ("grpc.max_receive_message_length", size), ("grpc.max_send_message_length", size),
            ("grpc.enable_retries", 1 if retries else 0)]
        if retries:
            options.append(("grpc.service_config", _retry_config(retries)))
        if tls or tls_ca_file or tls_cert_file:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(tls_ca_file), private_key=_read(tls_key_file),
                certificate_chain=_read(tls_cert_file))
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self.target = target
        self._timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._embedding = embedding_grpc.EmbeddingServiceStub(self._channel)
        self._catalog = catalog_grpc.CatalogServiceStub(self._channel)
        self._search = search_grpc.SearchServiceStub(self._channel)
        self._recommendation = recommendation_grpc.RecommendationServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def __enter__(self) -> LookalikeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled.

        Example:
            >>> client = LookalikeClient("localhost:50051"); client.close()
        """
        self._channel.close()

    def _unary(self, method, request):
        return method(request, timeout=self._timeout, metadata=self._metadata)

    # -- health ---------------------------------------------------------

    def health(self, service: str = "") -> str:
        """The server's health: ``'SERVING'`` once the model is loaded and Qdrant answers, else ``'NOT_SERVING'``.

        Example:
            >>> client.health()
            'SERVING'
        """
        reply = self._unary(self._health.Check, health_pb2.HealthCheckRequest(service=service))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    def wait_until_serving(self, timeout: float = 120.0) -> None:
        """Block until health says SERVING (the model loads after the port opens).

        Raises ``grpc.FutureTimeoutError`` or an ``RpcError`` (DEADLINE_EXCEEDED) after `timeout` seconds.

        Example:
            >>> client.wait_until_serving(timeout=60)
        """
        grpc.channel_ready_future(self._channel).result(timeout=timeout)
        request = health_pb2.HealthCheckRequest(service="")
        for reply in self._health.Watch(request, timeout=timeout, metadata=self._metadata):
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return

    # -- embedding ------------------------------------------------------

    def embed(self, texts: Sequence[str] = (), images: Sequence[bytes] = ()) -> Embeddings:
        """Embed texts and/or encoded images (JPEG, PNG, WebP, ...) into unit vectors of one space.

        Example:
            >>> e = client.embed(texts=["a red dress"], images=[open("dress.jpg", "rb").read()])
            >>> e.dim, len(e.text_vectors[0]), e.model
            (512, 512, 'ViT-B-32/laion2b_s34b_b79k')
        """
        return m.parse_embed(self._unary(self._embedding.Embed, m.embed_request(texts, images)))

    def embed_stream(self, inputs: Iterable[tuple[str, str | bytes]]) -> Iterator[StreamedVector]:
        """Bulk embedding: (key, text or image bytes) in, (key, vector, model) out, in order, as they are computed.

        Example:
            >>> inputs = [("a", "a red dress"), ("b", open("b.png", "rb").read())]
            >>> for key, vector, model in client.embed_stream(inputs):
            ...     print(key, len(vector))
        """
        requests = (m.embed_stream_request(key, value) for key, value in inputs)
        for reply in self._embedding.EmbedStream(requests, metadata=self._metadata):
            yield m.parse_embed_stream(reply)

    # -- catalog --------------------------------------------------------

    def upsert(self, items: Iterable[NewItem], batch_size: int = 32, window: int = 4,
               on_ack: Callable[[UpsertAck], None] | None = None) -> UpsertSummary:
        """Add or replace items (idempotent by id), streamed in batches of `batch_size`.

        The server acknowledges each batch once its items are stored or
        rejected; at most `window` batches are unacknowledged at a time, so a
        lazy `items` iterator is read only as fast as the server stores it
        (bounded memory) and ``on_ack`` reports what the server has really
        done. A bad item is reported in ``errors`` (with its position in the
        stream) and never sinks the others.

        Example:
            >>> summary = client.upsert([NewItem(id="sku-1", text="red dress", payload={"color": "red"}),
            ...                          NewItem(id="sku-2", image=open("b.jpg", "rb").read())],
            ...                         on_ack=lambda ack: print(f"{ack.upserted + ack.failed} done"))
            2 done
            >>> summary.upserted, summary.failed
            (2, 0)
        """
        if batch_size < 1 or window < 1:
            raise ValueError("batch_size and window must be at least 1")
        in_flight = threading.Semaphore(window)
        reader_failure: list[BaseException] = []

        def requests() -> Iterator:
            batch: list[NewItem] = []
            try:
                for item in items:
                    batch.append(item)
                    if len(batch) >= batch_size:
                        in_flight.acquire()
                        yield m.upsert_request(batch)
                        batch = []
                if batch:
                    in_flight.acquire()
                    yield m.upsert_request(batch)
            except Exception as error:  # noqa: BLE001 - re-raised in the caller's thread below
                reader_failure.append(error)

        upserted, errors = 0, []
        call = self._catalog.UpsertItems(requests(), metadata=self._metadata)
        try:
            for reply in call:
                in_flight.release()
                ack = m.parse_upsert(reply)
                upserted += ack.upserted
                errors.extend(ack.errors)
                if on_ack:
                    on_ack(ack)
        finally:
            call.cancel()  # no-op once finished; stops the stream when the caller's callback raised
            for _ in range(window):  # a reader still waiting for room must not wait forever
                in_flight.release()
        if reader_failure:
            raise reader_failure[0]
        return UpsertSummary(upserted, len(errors), errors)

    def get(self, ids: Sequence[str], with_vectors: bool = False) -> ItemsFound:
        """Fetch items by id, in request order; unknown ids come back in ``missing_ids``.

        Example:
            >>> found = client.get(["sku-1", "nope"])
            >>> [item.id for item in found.items], found.missing_ids
            (['sku-1'], ['nope'])
        """
        return m.parse_get(self._unary(self._catalog.GetItems, m.get_request(ids, with_vectors)))

    def delete(self, ids: Sequence[str] = (), filter: FilterLike = None) -> int:
        """Delete items by id or by filter (not both); returns how many were deleted.

        Example:
            >>> client.delete(ids=["sku-1", "sku-2"])
            2
            >>> client.delete(filter=["discontinued=true"])
            17
        """
        return m.parse_delete(self._unary(self._catalog.DeleteItems, m.delete_request(ids, filter)))

    # -- search ---------------------------------------------------------

    def search(self, *, text: str | None = None, image: bytes | None = None, item_id: str | None = None,
               vector: Sequence[float] | None = None, target: str = "image", filter: FilterLike = None,
               limit: int = 10, offset: int = 0, score_threshold: float | None = None) -> list[Hit]:
        """Nearest items to one query: a text, an image, a stored item or a raw vector.

        `target` picks the item vectors compared with: ``image``, ``text`` or ``both``
        (fused). `filter` is a typed ``Filter`` or expressions such as ``["color=red", "price<50"]``.

        Example:
            >>> hits = client.search(text="a red dress", filter=["price<50"], limit=5)
            >>> [(hit.id, round(hit.score, 3)) for hit in hits]
            [('sku-1', 0.311), ...]
        """
        request = m.search_request(text=text, image=image, item_id=item_id, vector=vector, target=target,
                                   filter=filter, limit=limit, offset=offset, score_threshold=score_threshold)
        return m.parse_search(self._unary(self._search.Search, request))

    def similar(self, item_id: str, *, target: str = "image", filter: FilterLike = None, limit: int = 10,
                offset: int = 0, score_threshold: float | None = None, user_id: str = "",
                include_seen: bool = False) -> list[Hit]:
        """Neighbours of a stored item, the item itself left out; with `user_id`, that user's seen items too.

        Example:
            >>> [hit.id for hit in client.similar("sku-1", limit=3, user_id="u42")]
            ['sku-7', 'sku-3', 'sku-9']
        """
        request = m.similar_request(item_id, target=target, filter=filter, limit=limit, offset=offset,
                                    score_threshold=score_threshold, user_id=user_id, include_seen=include_seen)
        return m.parse_search(self._unary(self._search.SimilarItems, request))

    # -- users ----------------------------------------------------------

    def record_events(self, events: Iterable[UserEvent]) -> RecordSummary:
        """Append interaction events (one call, any number of users).

        Events without an ``event_id`` get a random one, so the client's own
        retries never store an event twice. Events on unknown items are stored
        and listed in ``unknown_item_ids``; invalid ones are listed in ``errors``.

        Example:
            >>> client.record_events([UserEvent("u42", "sku-1", "purchase"), UserEvent("u42", "sku-9", "dislike")])
            RecordSummary(recorded=2, unknown_item_ids=[], errors=[])
        """
        keyed = [event if event.event_id else _with_event_id(event) for event in events]
        return m.parse_record(self._unary(self._recommendation.RecordEvents, m.record_events_request(keyed)))

    def recommend(self, user_id: str | None = None, *, examples: Sequence[Example | str] = (), limit: int = 10,
                  offset: int = 0, page_token: str = "", filter: FilterLike = None, diversity: float | None = None,
                  include_seen: bool = False, strategy: str = "multi_interest",
                  explain: bool = False) -> RecommendResult:
        """Recommendations for a user from their interests, for example items, or both; best first.

        `examples` are catalog ids (weight 1) or ``Example``s (an item id or a raw
        vector, weight 1 = a like, -1 = a dislike); without `user_id` they are an
        anonymous session. They are clustered with the user's history into
        interests; example items are left out of the results (unless
        `include_seen`) and ids not in the catalog come back in
        ``unknown_example_ids``. Page with ``page_token=result.next_page_token``
        (empty when there is no next page). `diversity` 0..1 trades relevance for
        variety (MMR; default 0.2). `strategy` is one of STRATEGIES. No usable
        history or examples gives popular items and ``cold_start=True``.

        Example:
            >>> result = client.recommend("u42", limit=10, filter=["in_stock=true"], explain=True)
            >>> [(item.id, item.because) for item in result.items][:1]
            [('sku-7', ['sku-1'])]
            >>> more = client.recommend("u42", page_token=result.next_page_token)
            >>> session = client.recommend(examples=["sku-1", "sku-2", Example("sku-9", weight=-1)], limit=5)
        """
        request = m.recommend_request(user_id, limit=limit, offset=offset, page_token=page_token, filter=filter,
                                      diversity=diversity, include_seen=include_seen, strategy=strategy,
                                      explain=explain, examples=examples)
        return m.parse_recommend(self._unary(self._recommendation.Recommend, request))

    def profile(self, user_id: str, with_centroids: bool = False) -> Profile:
        """The user's derived interests (importance, history items) and negatives.

        Example:
            >>> profile = client.profile("u42")
            >>> [(i.importance, i.item_ids[:2]) for i in profile.interests]
            [(0.7, ['sku-1', 'sku-4']), (0.3, ['sku-9'])]
        """
        return m.parse_profile(self._unary(self._recommendation.GetProfile, m.profile_request(user_id, with_centroids)))

    def forget_user(self, user_id: str) -> int:
        """Delete every event of a user; returns how many were deleted.

        Example:
            >>> client.forget_user("u42")
            37
        """
        return m.parse_forget(self._unary(self._recommendation.ForgetUser, m.forget_request(user_id)))


def _with_event_id(event: UserEvent) -> UserEvent:
    from dataclasses import replace

    return replace(event, event_id=uuid.uuid4().hex)


def _read(path: str | Path | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def _retry_config(retries: int) -> str:
    services = ["lookalike.v1.EmbeddingService", "lookalike.v1.CatalogService", "lookalike.v1.SearchService",
                "lookalike.v1.RecommendationService", "grpc.health.v1.Health"]
    return json.dumps({"methodConfig": [{
        "name": [{"service": service} for service in services],
        "retryPolicy": {"maxAttempts": min(retries + 1, 5), "initialBackoff": "0.2s", "maxBackoff": "5s",
                        "backoffMultiplier": 2, "retryableStatusCodes": list(RETRYABLE_CODES)},
    }]})


__all__ = ["LookalikeClient", "NewItem", "UserEvent", "Hit", "Item", "ItemsFound", "UpsertSummary", "UpsertAck",
           "ItemFailure",
           "Embeddings", "StreamedVector", "RecordSummary", "RecommendResult", "Recommended", "Profile", "InterestInfo",
           "EVENT_TYPES", "STRATEGIES", "TARGETS", "types_pb"]
