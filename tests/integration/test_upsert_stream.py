"""UpsertItems is bidirectional: one acknowledgement per request message, so
progress follows what the server stored and a lazy source is read only as fast
as the server keeps up."""

from __future__ import annotations

import grpc
import pytest

from service.api.lookalike.v1 import catalog_service_pb2 as catalog_pb
from service.client import NewItem, UpsertAck


def test_every_message_is_acknowledged_in_order_with_its_own_errors(client):
    items = [NewItem(id=f"ok-{i}", text=f"item {i}") for i in range(7)]
    items[4] = NewItem(id="bad", image=b"not an image")
    acks: list[UpsertAck] = []

    summary = client.upsert(items, batch_size=3, on_ack=acks.append)

    assert [(ack.upserted, ack.failed) for ack in acks] == [(3, 0), (2, 1), (1, 0)]
    assert [(error.index, error.id) for error in acks[1].errors] == [(4, "bad")]
    assert (summary.upserted, summary.failed) == (6, 1)


def test_a_lazy_source_is_read_no_further_ahead_than_the_window(client):
    pulled = 0
    batch_size, window = 2, 2

    def source():
        nonlocal pulled
        for index in range(30):
            pulled += 1
            yield NewItem(id=f"lazy-{index}", text=f"lazy item {index}")

    acked = 0
    ahead = []

    def on_ack(ack: UpsertAck) -> None:
        nonlocal acked
        acked += ack.upserted + ack.failed
        ahead.append(pulled - acked)

    summary = client.upsert(source(), batch_size=batch_size, window=window, on_ack=on_ack)
    assert summary.upserted == 30
    # the reader may hold the window's batches plus the one it is filling
    assert max(ahead) <= (window + 1) * batch_size


def test_the_raw_stub_gets_one_response_per_request(client):
    requests = [catalog_pb.UpsertItemsRequest(items=[catalog_pb.ItemInput(id=f"raw-{i}", text="t")])
                for i in range(3)] + [catalog_pb.UpsertItemsRequest()]
    replies = list(client._catalog.UpsertItems(iter(requests)))
    assert [(reply.upserted, reply.failed) for reply in replies] == [(1, 0), (1, 0), (1, 0), (0, 0)]


def test_a_failing_source_ends_the_stream_and_reaches_the_caller(client):
    def source():
        yield NewItem(id="before", text="stored")
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        client.upsert(source(), batch_size=1)
    assert [item.id for item in client.get(["before"]).items] == ["before"]


def test_upsert_is_refused_without_a_server(tmp_path):
    from service.client import LookalikeClient

    with LookalikeClient("127.0.0.1:1", timeout=2, retries=0) as offline:
        with pytest.raises(grpc.RpcError):
            offline.upsert([NewItem(id="x", text="y")])
