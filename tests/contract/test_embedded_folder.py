"""The embedded data folder: one process at a time, versioned, and the old layout recognised."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from qdrant_client import QdrantClient, models

from recommender.storage.edge import open_edge
from recommender.storage.folder import LAYOUT_FILE, LAYOUT_VERSION, StorageError
from recommender.types import ItemInput

DIM = 4


def open_here(data_dir: Path, collection: str = "items"):
    return open_edge(data_dir, collection, "model-a", DIM)


def test_a_second_opener_is_refused_while_the_first_holds_the_folder(tmp_path):
    first = open_here(tmp_path)
    try:
        with pytest.raises(StorageError, match="in use by another process"):
            open_here(tmp_path)
        # Another process too, which is the case that matters: its refusal must come
        # from the lock, before it touches the shards the first one is writing.
        script = ("import sys; from pathlib import Path; from recommender.storage.edge import open_edge\n"
                  "try:\n    open_edge(Path(sys.argv[1]), 'items', 'model-a', 4)\n"
                  "except Exception as error:\n    print(type(error).__name__, error); sys.exit(3)\n")
        other = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                               timeout=120, cwd=Path(__file__).resolve().parents[2])
        assert other.returncode == 3, other.stderr
        assert "StorageError" in other.stdout and "in use by another process" in other.stdout
        first.catalog.upsert([ItemInput("still-fine", image_vector=__import__("numpy").ones(DIM, "float32"))])
    finally:
        first.close()
    reopened = open_here(tmp_path)  # closing released the lock; the write survived
    try:
        assert reopened.catalog.count() == 1
    finally:
        reopened.close()


def test_the_folder_records_its_layout_version_and_refuses_a_newer_one(tmp_path):
    open_here(tmp_path).close()
    layout = tmp_path / "storage" / LAYOUT_FILE
    assert json.loads(layout.read_text())["layout_version"] == LAYOUT_VERSION
    layout.write_text(json.dumps({"layout_version": LAYOUT_VERSION + 1, "engine": "qdrant-edge"}))
    with pytest.raises(StorageError, match="newer Lookalike"):
        open_here(tmp_path)


def test_a_folder_of_unknown_files_is_not_taken_over(tmp_path):
    (tmp_path / "storage").mkdir()
    (tmp_path / "storage" / "notes.txt").write_text("someone else's")
    with pytest.raises(StorageError, match="not written by Lookalike"):
        open_here(tmp_path)


def test_the_old_embedded_layout_gets_a_message_that_says_how_to_migrate(tmp_path):
    old = QdrantClient(path=str(tmp_path / "qdrant"))  # what Lookalike wrote before Qdrant Edge
    old.create_collection("items", vectors_config={"image": models.VectorParams(size=DIM,
                                                                               distance=models.Distance.COSINE)})
    old.close()
    with pytest.raises(StorageError) as raised:
        open_here(tmp_path)
    message = str(raised.value)
    assert "old embedded format" in message and "lookalike migrate-storage" in message
    assert "re-ingest" in message
    open_here(tmp_path, collection="fresh").close()  # other collections are unaffected


def test_migrate_storage_copies_items_vectors_model_and_events_from_the_old_folder(tmp_path, capsys):
    import numpy as np

    from recommender.storage.server import open_server
    from recommender.types import Event, EventType
    from service.cli import main

    old = open_server(QdrantClient(path=str(tmp_path / "qdrant")), "items", "model-old", DIM)
    vectors = {f"i{n}": np.eye(DIM, dtype=np.float32)[n % DIM] for n in range(700)}  # more than one page
    old.catalog.upsert([ItemInput(item_id, payload={"n": n}, text=f"t{n}", image_vector=vector)
                        for n, (item_id, vector) in enumerate(vectors.items())])
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    old.events.append([Event("ann", "i1", EventType.LIKE, moment), Event("ann", "i2", EventType.VIEW, moment)],
                      ["e1", None])
    old.close()

    assert main(["migrate-storage", "--data-dir", str(tmp_path), "--collection", "items"]) == 0
    assert "copied 700 items and 2 events" in capsys.readouterr().out
    moved = open_edge(tmp_path, "items", "model-old", DIM)
    try:
        assert moved.catalog.mismatch is None, "the model that made the vectors travels with them"
        assert moved.catalog.count() == 700
        item = moved.catalog.get(["i9"], with_vectors=True)["i9"]
        assert item.payload == {"n": 9} and item.text == "t9"
        np.testing.assert_array_equal(item.image_vector, vectors["i9"])
        assert [e.item_id for e in moved.events.for_user("ann", 10)] in (["i1", "i2"], ["i2", "i1"])
    finally:
        moved.close()
    assert main(["migrate-storage", "--data-dir", str(tmp_path), "--collection", "items"]) == 1, "only once"
    assert main(["optimize", "--data-dir", str(tmp_path), "--collection", "items"]) == 0


def above_free_space(path: Path) -> int:
    """A reserve larger than what the filesystem has free: no small filesystem can be mounted here without
    root, so a nearly full disk is made by asking for more free space than there is."""
    import os

    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize + 2**30


def test_a_nearly_full_disk_refuses_writes_before_edge_could_die_of_it_and_keeps_reads(tmp_path):
    import numpy as np

    from recommender.errors import StorageFull
    from recommender.types import Event, EventType

    vector = np.ones(DIM, "float32")
    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    storage = open_edge(tmp_path, "items", "model-a", DIM, min_free_bytes=0)
    storage.catalog.upsert([ItemInput("kept", image_vector=vector)])
    storage.events.append([Event("ann", "kept", EventType.LIKE, moment)])
    storage.close()

    full = open_edge(tmp_path, "items", "model-a", DIM, min_free_bytes=above_free_space(tmp_path))
    try:
        writes = [lambda: full.catalog.upsert([ItemInput("more", image_vector=vector)]),
                  lambda: full.catalog.delete(["kept"]),
                  lambda: full.events.append([Event("ann", "more", EventType.VIEW, moment)]),
                  lambda: full.events.delete_user("ann")]
        for write in writes:
            with pytest.raises(StorageFull, match="nearly full.*reads still work"):
                write()
        assert full.catalog.count() == 1 and list(full.catalog.get(["kept"])) == ["kept"]
        assert [e.item_id for e in full.events.for_user("ann", 10)] == ["kept"]
    finally:
        full.close()
    roomy = open_edge(tmp_path, "items", "model-a", DIM, min_free_bytes=0)
    try:
        assert roomy.events.delete_user("ann") == 1, "nothing was half-written while refused"
    finally:
        roomy.close()
