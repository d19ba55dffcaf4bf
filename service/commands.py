"""The CLI's client commands: each one a thin call of LookalikeClient, printed
as a table or (with --json) as one JSON document. Imports nothing heavy."""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator

from service.client import LookalikeClient
from service.client_messages import Example, UpsertAck
from service.sources import Failure, Record
from service.tables import clip, compact, table, to_json

EXIT_PARTIAL = 3
MAX_LISTED_FAILURES = 50
NO_RESULTS_HINT = ("(no results) — an empty catalog or collection? A server started on the demo's --data-dir "
                   "also needs --model demo; `lookalike get <id>` checks one item.")


def connect(args: argparse.Namespace) -> LookalikeClient:
    token = os.environ.get("LOOKALIKE_TOKEN") or None
    if args.token_file:
        token = Path(args.token_file).read_text().strip()
    return LookalikeClient(args.server, token=token, tls_ca_file=args.tls_ca, timeout=args.timeout)


def _print(args: argparse.Namespace, value, text: str) -> None:
    print(to_json(value) if args.json else text)


# -- reading ----------------------------------------------------------------------

def health(args: argparse.Namespace) -> int:
    with connect(args) as client:
        status = client.health()
    _print(args, {"status": status}, status)
    return 0 if status == "SERVING" else 1


def search(args: argparse.Namespace) -> int:
    with connect(args) as client:
        hits = client.search(text=args.text, image=args.image.read_bytes() if args.image else None,
                             item_id=args.item_id, target=args.target, filter=args.filter, limit=args.limit,
                             offset=args.offset, score_threshold=args.threshold)
    _print(args, {"results": hits}, format_hits(hits))
    return 0


def similar(args: argparse.Namespace) -> int:
    with connect(args) as client:
        hits = client.similar(args.item_id, target=args.target, filter=args.filter, limit=args.limit,
                              offset=args.offset, score_threshold=args.threshold, user_id=args.user or "",
                              include_seen=args.include_seen)
    _print(args, {"results": hits}, format_hits(hits))
    return 0


def format_hits(hits) -> str:
    rows = [(rank, hit.score, hit.id, clip(hit.text or "", 32), compact(hit.payload))
            for rank, hit in enumerate(hits, start=1)]
    return table(("#", "score", "id", "text", "payload"), rows, empty=NO_RESULTS_HINT)


def recommend(args: argparse.Namespace) -> int:
    examples = [_example(text, sign) for sign, texts in ((1, args.like), (-1, args.dislike)) for text in texts]
    with connect(args) as client:
        result = client.recommend(args.user or None, examples=examples, limit=args.limit, offset=args.offset,
                                  page_token=args.page_token, filter=args.filter, diversity=args.diversity,
                                  include_seen=args.include_seen, strategy=args.strategy, explain=args.explain)
    rows = [(rank, item.score, item.id, "" if item.interest_index is None else item.interest_index,
             ", ".join(item.because), clip(item.text or "", 28), compact(item.payload, 50))
            for rank, item in enumerate(result.items, start=args.offset + 1)]
    lines = [f"strategy {result.strategy}" + (" (cold start: no usable history)" if result.cold_start else ""),
             table(("#", "score", "id", "interest", "because", "text", "payload"), rows)]
    if result.unknown_example_ids:
        lines.append(f"not in the catalog (ignored): {', '.join(result.unknown_example_ids)}")
    if result.next_page_token:
        lines.append(f"next page: --page-token {result.next_page_token}")
    _print(args, result, "\n".join(lines))
    return 0


def _example(text: str, sign: int) -> Example:
    item_id, _, weight = text.rpartition(":") if ":" in text else (text, "", "")
    try:
        return Example(item_id=item_id, weight=sign * (float(weight) if weight else 1.0))
    except ValueError:
        raise ValueError(f"{text!r}: write ID or ID:WEIGHT (a positive number)") from None


def profile(args: argparse.Namespace) -> int:
    with connect(args) as client:
        found = client.profile(args.user, with_centroids=args.centroids)
    rows = [(side, interest.index, interest.importance, interest.weight, len(interest.item_ids),
             clip(", ".join(interest.item_ids), 60))
            for side, group in (("+", found.interests), ("-", found.negatives)) for interest in group]
    text = (f"user {found.user_id}: {found.event_count} events, {found.seen_count} items seen\n"
            + table(("side", "interest", "importance", "weight", "items", "strongest items"), rows,
                    empty="(no interests: no usable history)"))
    _print(args, found, text)
    return 0


def get(args: argparse.Namespace) -> int:
    with connect(args) as client:
        found = client.get(args.ids, with_vectors=args.vectors)
    rows = [(item.id, "yes" if item.has_image else "no", clip(item.text or "", 32), compact(item.payload))
            for item in found.items]
    text = table(("id", "image", "text", "payload"), rows, empty="(none found)")
    if found.missing_ids:
        text += f"\nnot in the catalog: {', '.join(found.missing_ids)}"
    _print(args, found, text)
    return 0


def embed(args: argparse.Namespace) -> int:
    inputs = [("text", text) for text in args.text] + [("image", str(path)) for path in args.image]
    if not inputs:
        print("give --text and/or --image", file=sys.stderr)
        return 2
    with connect(args) as client:
        result = client.embed(texts=args.text, images=[Path(path).read_bytes() for path in args.image])
    vectors = result.text_vectors + result.image_vectors
    if args.json:
        print(to_json({"model": result.model, "dim": result.dim,
                       "vectors": [{"kind": kind, "input": value, "vector": vector}
                                   for (kind, value), vector in zip(inputs, vectors)]}))
        return 0
    rows = [(kind, clip(value, 40), " ".join(f"{x:+.3f}" for x in vector[:4]) + " …") for (kind, value), vector
            in zip(inputs, vectors)]
    print(f"model {result.model}, dim {result.dim} (--json prints whole vectors)")
    print(table(("kind", "input", "first values"), rows))
    return 0


# -- writing ----------------------------------------------------------------------

def delete(args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.filter):
        print("give item ids or --filter (not both)", file=sys.stderr)
        return 2
    if args.filter and not args.yes:
        described = " and ".join(args.filter)
        if not sys.stdin.isatty():
            print(f"refusing to delete every item where {described} without --yes (no terminal to ask)",
                  file=sys.stderr)
            return 2
        answer = input(f"Delete every item where {described}? This cannot be undone. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    with connect(args) as client:
        deleted = client.delete(ids=args.ids, filter=args.filter or None)
    _print(args, {"deleted": deleted}, f"deleted {deleted} item(s)")
    return 0


def forget(args: argparse.Namespace) -> int:
    with connect(args) as client:
        deleted = client.forget_user(args.user)
    _print(args, {"deleted_events": deleted}, f"deleted {deleted} event(s) of {args.user}")
    return 0


def ingest(args: argparse.Namespace) -> int:
    from service import sources

    if not args.images and not args.jsonl:
        print("give --images DIR and/or --jsonl FILE", file=sys.stderr)
        return 2
    streams, total = [], 0
    if args.images:
        streams.append(sources.folder_items(args.images))
        total += sources.count_images(args.images)
    if args.jsonl:
        streams.append(sources.jsonl_items(args.jsonl))
        total += sources.count_lines(args.jsonl)
    failures: list[Failure] = []
    origins: deque[str] = deque()  # where each sent, not yet acknowledged item came from, in stream order
    with connect(args) as client, _progress(total, "ingest", args.json) as bar:
        def sent_items() -> Iterator:
            for entry in itertools.chain(*streams):
                if isinstance(entry, Failure):
                    failures.append(entry)
                    bar.update(1)
                    continue
                origins.append(entry.where)
                yield entry.value

        acked = 0  # stream index of the oldest unacknowledged item

        def acknowledged(ack: UpsertAck) -> None:
            nonlocal acked
            done = [origins.popleft() for _ in range(ack.upserted + ack.failed)]
            for error in ack.errors:  # errors carry stream indices; acks come in stream order
                failures.append(Failure(done[error.index - acked], error.id, error.message))
            acked += len(done)
            bar.update(len(done))

        summary = client.upsert(sent_items(), batch_size=args.batch_size, on_ack=acknowledged)
    return _report(args, "upserted", summary.upserted, failures)


def record_events(args: argparse.Namespace) -> int:
    from service import sources

    failures: list[Failure] = []
    recorded = 0
    unknown: set[str] = set()
    records = sources.events(args.file, args.format)
    is_csv = (args.format or args.file.suffix.lower().lstrip(".")) == "csv"
    total = sources.count_lines(args.file) - (1 if is_csv else 0)  # a CSV's header is no event
    with connect(args) as client, _progress(total, "events", args.json) as bar:
        for batch in _batches(records, args.batch_size, failures, bar):
            summary = client.record_events([record.value for record in batch])
            recorded += summary.recorded
            unknown.update(summary.unknown_item_ids)
            for error in summary.errors:
                record = batch[error.index]
                failures.append(Failure(record.where, record.value.user_id, error.message))
            bar.update(len(batch))
    extra = {"unknown_item_ids": sorted(unknown)}
    if unknown and not args.json:
        print(f"{len(unknown)} item id(s) not in the catalog (events recorded anyway): "
              f"{clip(', '.join(sorted(unknown)), 200)}")
    return _report(args, "recorded", recorded, failures, extra)


def _batches(records: Iterable[Record | Failure], size: int, failures: list[Failure], bar) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for entry in records:
        if isinstance(entry, Failure):
            failures.append(entry)
            bar.update(1)
            continue
        batch.append(entry)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _report(args: argparse.Namespace, verb: str, done: int, failures: list[Failure], extra: dict | None = None) -> int:
    if args.json:
        print(to_json({verb: done, "failed": len(failures), **(extra or {}),
                       "failures": [{"where": f.where, "id": f.key, "message": f.message} for f in failures]}))
    else:
        print(f"{verb} {done}, failed {len(failures)}")
        for failure in failures[:MAX_LISTED_FAILURES]:
            print(f"  {failure.where}: {failure.key or '(no id)'}: {failure.message}")
        if len(failures) > MAX_LISTED_FAILURES:
            print(f"  ... and {len(failures) - MAX_LISTED_FAILURES} more (--json lists all)")
    return EXIT_PARTIAL if failures else 0


def _progress(total: int, label: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="item" if label == "ingest" else "event", desc=label, disable=quiet,
                file=sys.stderr)
