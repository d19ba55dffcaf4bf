"""Bring older embedded data up to the current layout.

- From the old embedded folder (qdrant-client local mode): Lookalike before Qdrant
  Edge kept embedded data in `<data_dir>/qdrant`. `migrate_old_embedded` copies one
  collection's items (vectors, payloads, the model that made them) and its events,
  point for point with the same ids, into `<data_dir>/storage`, converting the
  events to the current layout. The old folder is left as it was.
- Layout 1 to 2 of `<data_dir>/storage` (events in three payload keys instead of
  four): `upgrade_folder` rewrites every collection's events in place, same ids, on
  open. It can be interrupted: the folder records layout 2 only once every event is
  rewritten, and a rerun skips the events already rewritten.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import qdrant_edge as edge

from recommender.storage.base import (
    EVENT_INDEXES,
    TIME_KEY,
    V1_EVENT_INDEXES,
    is_v1_event,
    upgraded_event_payload,
)
from recommender.storage.folder import LAYOUT_VERSION, OLD_LAYOUT_DIR, DataFolder, StorageError

if TYPE_CHECKING:
    from recommender.storage.edge import FreeSpaceGuard

log = logging.getLogger(__name__)

PAGE = 512


def migrate_old_embedded(data_dir: Path, collection: str,
                         progress: Callable[[str], None] = log.info) -> tuple[int, int]:
    """Returns (items, events) copied."""
    from qdrant_client import QdrantClient

    from recommender.storage.edge import open_edge
    from recommender.storage.server import DIM_METADATA_KEY, MODEL_METADATA_KEY

    old_path = Path(data_dir) / OLD_LAYOUT_DIR
    if not (old_path / "collection" / collection).exists():
        raise StorageError(f"{old_path} holds no collection {collection!r} to migrate")
    old = QdrantClient(path=str(old_path))
    try:
        metadata = old.get_collection(collection).config.metadata or {}
        model, dim = metadata.get(MODEL_METADATA_KEY), metadata.get(DIM_METADATA_KEY)
        if not model or not dim:
            raise StorageError(f"collection {collection!r} in {old_path} does not say which model made its vectors; "
                               "re-ingest it instead")
        storage = open_edge(Path(data_dir), collection, model, int(dim), migrating=True)
        try:
            if storage.catalog.count():
                raise StorageError(f"collection {collection!r} in {storage.location} already holds items; "
                                   "migrate into an empty one")
            items = _copy(old, collection, storage.import_items, with_vectors=True, progress=progress)
            events_collection = f"{collection}_events"
            events = (_copy(old, events_collection, storage.import_events, with_vectors=False, progress=progress,
                            convert=_current_event_payload)
                      if old.collection_exists(events_collection) else 0)
        finally:
            storage.close()
    finally:
        old.close()
    return items, events


def _current_event_payload(payload: dict) -> dict:
    return upgraded_event_payload(payload) if is_v1_event(payload) else payload


def _copy(old, collection: str, write: Callable[[list[edge.Point]], None], with_vectors: bool,
          progress: Callable[[str], None], convert: Callable[[dict], dict] = dict) -> int:
    copied, offset = 0, None
    while True:
        records, offset = old.scroll(collection, limit=PAGE, offset=offset, with_payload=True,
                                     with_vectors=with_vectors)
        if records:
            write([edge.Point(str(record.id), record.vector or {}, convert(record.payload or {}))
                   for record in records])
            copied += len(records)
            progress(f"{collection}: {copied} copied")
        if offset is None:
            return copied


def upgrade_folder(folder: DataFolder, guard: FreeSpaceGuard | None = None,
                   progress: Callable[[str], None] = log.info) -> None:
    """Layout 1 -> 2 for every collection in an opened (locked) data folder, then record layout 2.
    `guard` (edge.FreeSpaceGuard) refuses the rewrite on a nearly full disk, before Edge could die of it."""
    if folder.layout_version >= LAYOUT_VERSION:
        return
    from recommender.storage.edge import events_shard

    for collection in folder.collections():
        path = folder.collection(collection) / "events"
        if not path.exists():
            continue
        shard = events_shard(path, guard)

        def rewritten(done: int, name: str = collection) -> None:
            progress(f"{name}: {done} events rewritten to layout {LAYOUT_VERSION}")

        try:
            count = upgrade_edge_events(shard, progress=rewritten)
        finally:
            shard.close()
        progress(f"collection {collection!r}: {count} events upgraded to layout {LAYOUT_VERSION}")
    folder.record_layout()


def upgrade_edge_events(shard, progress: Callable[[int], None] = lambda done: None) -> int:
    """Rewrite an Edge events shard's layout-1 events (same ids), index the new keys, drop the old indexes."""
    shard.ensure_indexes(EVENT_INDEXES)
    old = edge.Filter(must=[edge.IsEmptyCondition(TIME_KEY)])
    upgraded, offset = 0, None
    while True:
        records, offset = shard.shard.scroll(edge.ScrollRequest(offset=offset, limit=PAGE, filter=old,
                                                                with_payload=True, with_vector=False))
        points = [edge.Point(record.id, {}, upgraded_event_payload(record.payload))
                  for record in records if is_v1_event(record.payload or {})]
        if points:
            shard.update(edge.UpdateOperation.upsert_points(points))
            upgraded += len(points)
            progress(upgraded)
        if offset is None:
            break
    present = shard.shard.info().payload_schema
    for key in V1_EVENT_INDEXES:
        if key in present and key not in EVENT_INDEXES:
            shard.update(edge.UpdateOperation.delete_field_index(key))
    return upgraded
