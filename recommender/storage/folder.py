"""The embedded data folder: one owner at a time, a layout version, and the old layout detected.

    <data_dir>/storage/
        LAYOUT               {"layout_version": 2, "engine": "qdrant-edge"}
        .lock                held with flock by the one process that has the folder open
        <collection>/collection.json   which model made the vectors, their dimension
        <collection>/items/            Qdrant Edge shard: the catalog
        <collection>/events/           Qdrant Edge shard: the events

The lock comes first: a second process that merely tries to open an Edge shard
the first one holds can corrupt the first one's flush.

Layout versions: 1 stored each event's user, item, type and time (float seconds)
in four payload keys; 2 stores three (storage/base.py). A layout-1 folder is
upgraded in place when opened (migrate.upgrade_folder), then records 2.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO

from recommender.errors import LookalikeError

LAYOUT_FILE = "LAYOUT"
LOCK_FILE = ".lock"
LAYOUT_VERSION = 2
ENGINE = "qdrant-edge"
_LAYOUT_TEXT = json.dumps({"layout_version": LAYOUT_VERSION, "engine": ENGINE}) + "\n"
# qdrant-client's embedded mode (Lookalike before Qdrant Edge) wrote here, beside the new folder.
OLD_LAYOUT_DIR = "qdrant"


class StorageError(LookalikeError):
    """The embedded data folder cannot be used as it is; the message says what to do."""


class DataFolder:
    """An opened, locked embedded data folder. Close it to let another process in."""

    def __init__(self, path: Path, lock: IO[str], layout_version: int = LAYOUT_VERSION) -> None:
        self.path = path
        self._lock: IO[str] | None = lock
        self.layout_version = layout_version

    @classmethod
    def open(cls, data_dir: Path) -> DataFolder:
        path = Path(data_dir) / "storage"
        path.mkdir(parents=True, exist_ok=True)
        lock = _lock(path / LOCK_FILE)
        try:
            version = _check_layout(path)
        except BaseException:
            _unlock(lock)
            raise
        return cls(path, lock, version)

    def collections(self) -> list[str]:
        return sorted(child.name for child in self.path.iterdir() if (child / "collection.json").exists())

    def record_layout(self) -> None:
        """After an upgrade has rewritten everything the older layout stored differently."""
        _write_atomically(self.path / LAYOUT_FILE, _LAYOUT_TEXT)
        self.layout_version = LAYOUT_VERSION

    def collection(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise StorageError(f"collection name {name!r} is not a plain folder name")
        return self.path / name

    def read_metadata(self, name: str) -> dict | None:
        path = self.collection(name) / "collection.json"
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def write_metadata(self, name: str, metadata: dict) -> None:
        folder = self.collection(name)
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(folder / "collection.json", json.dumps(metadata, indent=2) + "\n")

    def close(self) -> None:
        if self._lock is not None:
            _unlock(self._lock)
            self._lock = None


def old_layout_message(data_dir: Path, collection: str) -> str | None:
    """A message when `data_dir` holds `collection` in qdrant-client's old embedded layout."""
    old = Path(data_dir) / OLD_LAYOUT_DIR
    if not (old / "meta.json").exists() and not (old / "collection").is_dir():
        return None
    if not (old / "collection" / collection).exists():
        return None
    return (f"{old} holds collection {collection!r} in the old embedded format (qdrant-client local mode), "
            "which Lookalike no longer serves: the embedded engine is now Qdrant Edge in "
            f"{Path(data_dir) / 'storage'}. "
            f"Copy it over once with `lookalike migrate-storage --data-dir {data_dir} --collection {collection}` "
            "(items with their vectors, and events), or re-ingest the catalog; then delete the old folder.")


def _lock(path: Path) -> IO[str]:
    handle = open(path, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise StorageError(f"the data folder {path.parent} is in use by another process (pid {owner}); "
                           "stop it, or give this one another --data-dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _unlock(handle: IO[str]) -> None:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def _check_layout(path: Path) -> int:
    """The folder's layout version (a new folder gets the current one)."""
    layout = path / LAYOUT_FILE
    if not layout.exists():
        if any(child.name not in (LOCK_FILE,) for child in path.iterdir()):
            raise StorageError(f"{path} holds files but no {LAYOUT_FILE} file: it was not written by Lookalike; "
                               "point --data-dir elsewhere")
        _write_atomically(layout, _LAYOUT_TEXT)
        return LAYOUT_VERSION
    try:
        found = json.loads(layout.read_text())
        version = int(found["layout_version"])
    except (ValueError, KeyError, TypeError) as error:
        raise StorageError(f"{layout} is unreadable ({error}); it should name the layout version") from error
    if version > LAYOUT_VERSION:
        raise StorageError(f"{path} has layout version {version}, written by a newer Lookalike; this one reads "
                           f"version {LAYOUT_VERSION}. Upgrade Lookalike, or point --data-dir elsewhere")
    if found.get("engine", ENGINE) != ENGINE:
        raise StorageError(f"{path} was written for engine {found.get('engine')!r}, not {ENGINE!r}")
    return version


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
