"""Item ids are the caller's strings; Qdrant wants unsigned ints or UUIDs."""

from __future__ import annotations

import uuid

# Fixed forever: changing it would orphan every stored point.
ITEM_NAMESPACE = uuid.UUID("6f1c3a52-8f0e-5b5e-9a55-1d0c0ffee001")


def point_id(item_id: str) -> str:
    return str(uuid.uuid5(ITEM_NAMESPACE, item_id))
