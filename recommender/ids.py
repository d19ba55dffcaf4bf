"""Item ids are the caller's strings; Qdrant wants unsigned ints or UUIDs."""

from __future__ import annotations

import functools
import uuid

# Fixed forever: changing it would orphan every stored point.
ITEM_NAMESPACE = uuid.UUID("6f1c3a52-8f0e-5b5e-9a55-1d0c0ffee001")


# Seen-item exclusions convert thousands of ids per call, mostly the same ones again.
@functools.lru_cache(maxsize=1 << 16)
def point_id(item_id: str) -> str:
    return str(uuid.uuid5(ITEM_NAMESPACE, item_id))


# Events carrying a caller's event id: a retry with the same id lands on the same point.
EVENT_NAMESPACE = uuid.UUID("0b7e0a4e-4f2b-5c1e-8d8a-5e7e17ab1e00")


def event_point_id(user_id: str, event_id: str | None) -> str:
    if event_id:
        return str(uuid.uuid5(EVENT_NAMESPACE, f"{user_id}\x00{event_id}"))
    return str(uuid.uuid4())
