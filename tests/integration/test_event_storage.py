"""RecordEvents in bulk and the engine clock, through the real server and embedded Qdrant Edge."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from service.app import EVENTS_PER_JOB
from service.client import NewItem, UserEvent


def test_a_bulk_call_is_stored_whole_across_jobs_with_unknown_items_reported_once(client):
    client.upsert([NewItem(id=f"known-{n}", text=f"item {n}") for n in range(3)])
    now = datetime.now(timezone.utc)
    count = 2 * EVENTS_PER_JOB + 1  # three executor jobs
    events = [UserEvent("bulk", f"known-{n % 3}" if n % 4 else f"ghost-{n // 4 % 2}", "view",
                        timestamp=now - timedelta(seconds=count - n))
              for n in range(count)]
    events.append(UserEvent("", "known-0", "view"))  # a bad one at the end keeps its index
    reply = client.record_events(events)
    assert reply.recorded == count
    assert sorted(reply.unknown_item_ids) == ["ghost-0", "ghost-1"]
    assert [error.index for error in reply.errors] == [count]
    assert client.profile("bulk").event_count == count


def test_an_event_stamped_ahead_of_the_clock_counts_only_once_its_time_comes(client):
    client.upsert([NewItem(id="soon", text="soon"), NewItem(id="now", text="now")])
    now = datetime.now(timezone.utc)
    reply = client.record_events([UserEvent("early", "now", "like", timestamp=now - timedelta(minutes=1)),
                                  UserEvent("early", "soon", "like", timestamp=now + timedelta(hours=1))])
    assert reply.recorded == 2, "within the allowed clock skew: stored"
    assert client.profile("early").event_count == 1, "but invisible until the engine's clock reaches it"


def test_a_nearly_full_disk_answers_writes_resource_exhausted_and_still_serves_reads(tmp_path, tiny_embedder):
    import os

    import grpc
    import pytest

    from service.client import LookalikeClient
    from tests.support import ServerThread, deps_with, settings_for

    stats = os.statvfs(tmp_path)
    # More than the filesystem has free (no small filesystem can be mounted here without root).
    settings = settings_for(tmp_path, min_free_bytes=stats.f_bavail * stats.f_frsize + 2**30)
    with ServerThread(settings, deps_with(settings, tiny_embedder)) as server, \
            LookalikeClient(server.target, timeout=30) as client:
        for write in (lambda: client.record_events([UserEvent("ann", "x", "view")]),
                      lambda: client.upsert([NewItem(id="x", text="x")])):
            with pytest.raises(grpc.RpcError) as raised:
                write()
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "nearly full" in raised.value.details() and "reads still work" in raised.value.details()
        assert client.get(["x"]).missing_ids == ["x"], "reads still work"
        assert client.profile("ann").event_count == 0
        assert client.health() == "SERVING", "a full disk refuses writes; the server still serves"
