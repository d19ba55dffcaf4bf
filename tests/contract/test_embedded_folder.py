"""The embedded data folder: one process at a time, versioned, and the old layout recognised."""

from __future__ import annotations

import json
import subprocess
import sys
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
