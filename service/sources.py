"""Items and events read from files for the CLI, lazily, each tagged with where it came from.

A record that cannot be read becomes a `Failure` naming its file and line and
the reading goes on: one bad line never stops an ingest. Nothing here holds more
than one record (or one directory listing) in memory.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from service.client_messages import EVENT_TYPES, NewItem, UserEvent

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
ITEM_FIELDS = {"id", "text", "image", "payload", "image_vector", "text_vector"}
EVENT_FIELDS = {"user_id", "item_id", "type", "weight", "timestamp", "event_id"}


@dataclass(frozen=True)
class Failure:
    """A record that was not sent: `where` is "file:line" (or a path), `key` its id if known."""

    where: str
    key: str
    message: str


@dataclass(frozen=True)
class Record:
    where: str
    value: Any  # NewItem | UserEvent


def folder_items(folder: Path) -> Iterator[Record | Failure]:
    """Every image under `folder` (recursively, in name order); id and payload "path" = the relative path."""
    for path in _walk_images(folder):
        relative = path.relative_to(folder).as_posix()
        try:
            image = path.read_bytes()
        except OSError as error:
            yield Failure(str(path), relative, f"cannot read: {error.strerror or error}")
            continue
        yield Record(str(path), NewItem(id=relative, image=image, payload={"path": relative}))


def count_images(folder: Path) -> int:
    return sum(1 for _ in _walk_images(folder))


def _walk_images(folder: Path) -> Iterator[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(root) / name


def jsonl_items(path: Path) -> Iterator[Record | Failure]:
    """One item a line: {"id", "text", "image" (a path relative to the file), "payload", "image_vector",
    "text_vector"}."""
    for where, record in _json_lines(path):
        if isinstance(record, Failure):
            yield record
            continue
        item_id = str(record.get("id") or "")
        unknown = set(record) - ITEM_FIELDS
        if unknown:
            yield Failure(where, item_id, f"unknown field(s) {', '.join(sorted(unknown))}; "
                                          f"known: {', '.join(sorted(ITEM_FIELDS))}")
            continue
        image = b""
        if record.get("image"):
            image_path = path.parent / str(record["image"])
            try:
                image = image_path.read_bytes()
            except OSError as error:
                yield Failure(where, item_id, f"image {image_path}: {error.strerror or error}")
                continue
        payload = record.get("payload") or {}
        if not isinstance(payload, dict):
            yield Failure(where, item_id, "payload must be a JSON object")
            continue
        yield Record(where, NewItem(id=item_id, image=image, text=record.get("text"), payload=payload,
                                    image_vector=record.get("image_vector"), text_vector=record.get("text_vector")))


def events(path: Path, format: str | None = None) -> Iterator[Record | Failure]:
    """Events from JSONL (one object a line) or CSV (a header row), by `format` or the file's suffix.

    Fields: user_id, item_id, type (view, click, add_to_cart, purchase, like,
    dislike, skip), optional weight, timestamp (ISO 8601, no zone = UTC, or
    epoch seconds) and event_id (an idempotency key).
    """
    kind = format or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    rows = _csv_rows(path) if kind == "csv" else _json_lines(path)
    for where, row in rows:
        if isinstance(row, Failure):
            yield row
            continue
        try:
            yield Record(where, _event(row))
        except ValueError as error:
            yield Failure(where, str(row.get("user_id") or ""), str(error))


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _json_lines(path: Path) -> Iterator[tuple[str, dict | Failure]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield where, Failure(where, "", f"not JSON: {error.msg} (column {error.colno})")
                continue
            if not isinstance(record, dict):
                yield where, Failure(where, "", "expected a JSON object")
                continue
            yield where, record


def _csv_rows(path: Path) -> Iterator[tuple[str, dict | Failure]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"user_id", "item_id", "type"} - set(reader.fieldnames or ())
        if missing:
            yield f"{path}:1", Failure(f"{path}:1", "", f"header lacks column(s) {', '.join(sorted(missing))}")
            return
        for row in reader:
            # the reader's line number is the row's last line: right for rows without embedded newlines
            yield f"{path}:{reader.line_num}", {key: value for key, value in row.items() if value not in (None, "")}


def _event(row: dict) -> UserEvent:
    unknown = set(row) - EVENT_FIELDS
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(EVENT_FIELDS))}")
    for name in ("user_id", "item_id", "type"):
        if not str(row.get(name) or "").strip():
            raise ValueError(f"{name} is missing")
    if row["type"] not in EVENT_TYPES:
        raise ValueError(f"type {row['type']!r} is not one of {', '.join(EVENT_TYPES)}")
    weight = row.get("weight")
    try:
        weight = None if weight is None else float(weight)
    except (TypeError, ValueError):
        raise ValueError(f"weight {weight!r} is not a number") from None
    return UserEvent(user_id=str(row["user_id"]), item_id=str(row["item_id"]), type=row["type"], weight=weight,
                     timestamp=_timestamp(row.get("timestamp")), event_id=str(row.get("event_id") or ""))


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        if isinstance(value, (int, float)) or str(value).replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"timestamp {value!r} is neither ISO 8601 nor epoch seconds") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
