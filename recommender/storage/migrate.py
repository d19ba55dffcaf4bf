"""Copy a collection from the old embedded folder (qdrant-client local mode) into Qdrant Edge.

Lookalike before Qdrant Edge kept embedded data in `<data_dir>/qdrant` through
qdrant-client's local mode. This copies one collection's items (vectors,
payloads, the model that made them) and its events, point for point with the
same ids, into `<data_dir>/storage`. The old folder is left as it was.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import qdrant_edge as edge

from recommender.storage.folder import OLD_LAYOUT_DIR, StorageError

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
            events = (_copy(old, events_collection, storage.import_events, with_vectors=False, progress=progress)
                      if old.collection_exists(events_collection) else 0)
        finally:
            storage.close()
    finally:
        old.close()
    return items, events


def _copy(old, collection: str, write: Callable[[list[edge.Point]], None], with_vectors: bool,
          progress: Callable[[str], None]) -> int:
    copied, offset = 0, None
    while True:
        records, offset = old.scroll(collection, limit=PAGE, offset=offset, with_payload=True,
                                     with_vectors=with_vectors)
        if records:
            write([edge.Point(str(record.id), record.vector or {}, record.payload or {}) for record in records])
            copied += len(records)
            progress(f"{collection}: {copied} copied")
        if offset is None:
            return copied
