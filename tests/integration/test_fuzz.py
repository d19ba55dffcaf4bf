"""Property-based fuzzing of every RPC of a live server.

Requests are generated from the message descriptors (every field, oneof and enum,
with hostile values mixed in: unknown enum numbers, NaN, out-of-range timestamps,
malformed filter keys, corrupt images, vectors of the wrong length), then sent as
they are, with their bytes mutated, or as random bytes. Whatever arrives, the
server answers with a status a caller can act on, never INTERNAL or UNKNOWN
(a bug) and never a hang, and it stays SERVING.

CI runs a bounded, derandomised number of examples per RPC. A longer, random run:

    LOOKALIKE_FUZZ_EXAMPLES=2000 python -m pytest -q tests/integration/test_fuzz.py
"""

from __future__ import annotations

import io
import os
import struct

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from service.api.lookalike.v1 import (
    catalog_service_pb2,
    embedding_service_pb2,
    recommendation_service_pb2,
    search_service_pb2,
)
from tests.support import ServerThread, deps_with, settings_for

EXAMPLES = int(os.environ.get("LOOKALIKE_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(max_examples=EXAMPLES or 25, derandomize=EXAMPLES is None, deadline=None, database=None,
                suppress_health_check=list(HealthCheck), print_blob=True)
BUGS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAVAILABLE}
CALL_TIMEOUT_S = 60
MAX_DEPTH = 4
DIM = 32  # the tiny test model's

METHODS = [
    (f"/{service.full_name}/{method.name}", method)
    for module in (embedding_service_pb2, catalog_service_pb2, search_service_pb2, recommendation_service_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]


def _png(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, "PNG")
    return buffer.getvalue()


def _corrupt_png() -> bytes:
    data = _png("red")
    at = data.index(b"IDAT")
    return data[:at - 4] + struct.pack(">I", 0) + data[at:]


STRINGS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "item-1", "item-2", "user-1", "color", "brand.name", "tags[]", "a[", "a..b", "a]",
                     '"q"', "x" * 600, "\x00", "é" * 3]),
)
BYTES = st.one_of(st.binary(max_size=48), st.sampled_from([_png("red"), _png("blue"), _corrupt_png(), b"GIF89a",
                                                           b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]))
FLOATS32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
FLOATS64 = st.floats(allow_nan=True, allow_infinity=True)
INT_BOUNDS = {
    FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-2**31, 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1), FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
JSON = st.recursive(st.none() | st.booleans() | FLOATS64 | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=10)


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    # Mostly small values (limits, offsets, indices), sometimes the extremes.
    return st.one_of(st.integers(max(low, -3), min(high, 1200)), st.integers(low, high), st.sampled_from([low, high]))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return STRINGS
    if kind == FieldDescriptor.TYPE_BYTES:
        return BYTES
    if kind == FieldDescriptor.TYPE_FLOAT:
        return FLOATS32
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return FLOATS64
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:  # proto3 enums are open: unknown numbers arrive too
        return st.one_of(st.sampled_from([value.number for value in field.enum_type.values]),
                         st.integers(-3, 40))
    return _integers(*INT_BOUNDS[kind])


def messages(descriptor, depth: int = 0) -> st.SearchStrategy:
    """Messages of `descriptor`'s type with any subset of fields set (one per oneof)."""
    cls = message_factory.GetMessageClass(descriptor)
    if descriptor.full_name == "google.protobuf.Struct":
        return st.dictionaries(st.text(max_size=6), JSON, max_size=4).map(_struct(cls))
    if descriptor.full_name == "google.protobuf.Timestamp":
        return st.builds(cls, seconds=st.one_of(_integers(-2**63, 2**63 - 1),
                                                st.integers(-62_135_596_801, 253_402_300_800)),
                         nanos=st.one_of(st.integers(0, 999_999_999), _integers(-2**31, 2**31 - 1)))
    if descriptor.full_name == "lookalike.v1.Vector":
        right = st.lists(st.floats(-1, 1, width=32), min_size=DIM, max_size=DIM)
        return st.builds(cls, values=st.one_of(right, st.lists(FLOATS32, max_size=DIM + 2)))

    @st.composite
    def build(draw):
        message = cls()
        chosen = {draw(st.sampled_from([None, *oneof.fields])) for oneof in descriptor.oneofs}
        for field in descriptor.fields:
            if field.containing_oneof is not None and field not in chosen:
                continue
            if field.containing_oneof is None and not draw(st.booleans()):
                continue
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                if depth >= MAX_DEPTH:
                    continue
                values = messages(field.message_type, depth + 1)
                if field.is_repeated:
                    for value in draw(st.lists(values, max_size=3)):
                        getattr(message, field.name).add().CopyFrom(value)
                else:
                    getattr(message, field.name).CopyFrom(draw(values))
            elif field.is_repeated:
                getattr(message, field.name).extend(draw(st.lists(_scalar(field), max_size=4)))
            else:
                setattr(message, field.name, draw(_scalar(field)))
        return message

    return build()


def _struct(cls):
    def make(values: dict):
        message = cls()
        message.update(values)
        return message
    return make


@st.composite
def payloads(draw, descriptor) -> bytes:
    """One request message's bytes: as generated, mutated, or random."""
    how = draw(st.sampled_from(["message", "message", "mutated", "random"]))
    if how == "random":
        return draw(st.binary(max_size=64))
    data = bytearray(draw(messages(descriptor)).SerializeToString())
    if how == "mutated":
        for _ in range(draw(st.integers(1, 4))):
            action = draw(st.sampled_from(["flip", "cut", "insert"]))
            at = draw(st.integers(0, len(data)))
            if action == "flip" and data:
                data[min(at, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
            elif action == "cut":
                del data[at:]
            else:
                data[at:at] = draw(st.binary(min_size=1, max_size=6))
    return bytes(data)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, tiny_embedder):
    settings_ = settings_for(tmp_path_factory.mktemp("fuzz"))
    with ServerThread(settings_, deps_with(settings_, tiny_embedder)) as server, \
            grpc.insecure_channel(server.target) as channel:
        # A few real items and events, so ids in requests sometimes exist.
        upsert = catalog_service_pb2.UpsertItemsRequest(items=[
            catalog_service_pb2.ItemInput(id="item-1", text="a red square", image=_png("red")),
            catalog_service_pb2.ItemInput(id="item-2", text="a blue word")])
        list(channel.stream_stream("/lookalike.v1.CatalogService/UpsertItems")(iter([upsert.SerializeToString()])))
        events = recommendation_service_pb2.RecordEventsRequest(events=[
            recommendation_service_pb2.Event(user_id="user-1", item_id="item-1",
                                             type=recommendation_service_pb2.EVENT_TYPE_LIKE),
            recommendation_service_pb2.Event(user_id="user-1", item_id="item-2",
                                             type=recommendation_service_pb2.EVENT_TYPE_CLICK)])
        channel.unary_unary("/lookalike.v1.RecommendationService/RecordEvents")(events.SerializeToString())
        yield channel


def call(channel: grpc.Channel, path: str, method, requests: list[bytes]) -> None:
    if method.client_streaming:
        if method.server_streaming:
            list(channel.stream_stream(path)(iter(requests), timeout=CALL_TIMEOUT_S))
        else:
            channel.stream_unary(path)(iter(requests), timeout=CALL_TIMEOUT_S)
    elif method.server_streaming:
        list(channel.unary_stream(path)(requests[0], timeout=CALL_TIMEOUT_S))
    else:
        channel.unary_unary(path)(requests[0], timeout=CALL_TIMEOUT_S)


@pytest.mark.parametrize("path,method", METHODS, ids=[path.rsplit("/", 1)[1] for path, _ in METHODS])
def test_no_request_makes_the_server_fail(fuzzed, path, method):
    @FUZZ
    @given(st.data())
    def check(data):
        count = data.draw(st.integers(1, 3)) if method.client_streaming else 1
        requests = [data.draw(payloads(method.input_type)) for _ in range(count)]
        try:
            call(fuzzed, path, method, requests)
        except grpc.RpcError as error:
            assert error.code() not in BUGS, f"{path}: {error.code().name}: {error.details()}"

    check()
    health = health_pb2_grpc.HealthStub(fuzzed).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
