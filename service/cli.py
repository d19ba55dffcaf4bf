"""`lookalike ...` / `python -m service ...`: serve, ingest, search, train-demo, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Iterator, Sequence

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
EXIT_PARTIAL = 3


# Subcommands with their own argument parsers, imported only when used (they pull in torch).
DELEGATED = {
    "demo": "service.demo.showcase",
    "train-demo": "service.demo.training",
    "eval": "service.evaluate",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        import importlib

        from service.threads import apply_wait_policy

        # Before the command imports torch: OpenMP reads its wait policy once, at load (service/threads.py).
        apply_wait_policy()

        return importlib.import_module(DELEGATED[argv[0]]).main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    import grpc

    try:
        return args.run(args)
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lookalike", description=__doc__)
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the gRPC server", allow_abbrev=False,
                                description="Run the gRPC server. Every flag can also be set with LOOKALIKE_<NAME>.")
    _server_flags(serve)
    serve.set_defaults(run=_serve)

    ingest = commands.add_parser("ingest", help="send a folder of images and/or a JSONL file of items to a server")
    ingest.add_argument("--server", default="127.0.0.1:50051", help="host:port of a running server")
    ingest.add_argument("--images", type=Path, help="folder of images (searched recursively); id = relative path")
    ingest.add_argument("--jsonl", type=Path,
                        help='items, one JSON object a line: {"id", "text", "image" (path), "payload"}')
    ingest.add_argument("--batch-size", type=int, default=32)
    ingest.set_defaults(run=_ingest)

    search = commands.add_parser("search", help="query a running server and print a results table")
    search.add_argument("--server", default="127.0.0.1:50051")
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--text")
    query.add_argument("--image", type=Path, help="path of an image file")
    query.add_argument("--item-id")
    search.add_argument("--target", choices=("image", "text", "both"), default="image")
    search.add_argument("--filter", action="append", default=[], metavar="EXPR",
                        help="e.g. color=red, price<50, shape=circle|square, in_stock=true (repeatable)")
    search.add_argument("--limit", type=int, default=10)
    search.add_argument("--offset", type=int, default=0)
    search.add_argument("--threshold", type=float)
    search.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    search.set_defaults(run=_search)

    # Listed for --help; main() hands their arguments to their own parsers.
    commands.add_parser("demo", help="offline demo: in-process server, demo catalog, cross-modal queries")
    commands.add_parser("train-demo", help="train the offline demo CLIP model (the shipped weights)")
    commands.add_parser("eval", help="offline evaluation of recommendation strategies")
    return parser


def _server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--data-dir", type=Path, help="where embedded Qdrant keeps its files")
    parser.add_argument("--model", help="open_clip model name, hf-hub:org/repo, local-dir:/folder or 'demo'")
    parser.add_argument("--pretrained", help="open_clip tag, checkpoint file, local-dir:/folder, or 'none'")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--max-batch", type=int)
    parser.add_argument("--qdrant-url", help="Qdrant server or cluster; unset = embedded storage in --data-dir")
    # Secrets are files or LOOKALIKE_* variables, never values on the command line (the process list shows those).
    parser.add_argument("--qdrant-api-key-file", type=Path, help="file holding the Qdrant API key")
    parser.add_argument("--qdrant-api-key", nargs="?", action=_SecretOnCommandLine, help=argparse.SUPPRESS)
    parser.add_argument("--collection")
    parser.add_argument("--max-message-mb", type=int)
    parser.add_argument("--torch-threads", type=int, help="intra-op threads for a model batch (default: usable CPUs)")
    parser.add_argument("--max-batch-wait-ms", type=float,
                        help="how long an idle model waits for a batch to fill (default 10)")
    parser.add_argument("--omp-wait-policy", choices=("passive", "active", "default"),
                        help="OpenMP workers sleep (passive, the default) or spin between ops; "
                             "ignored when OMP_WAIT_POLICY is set")
    parser.add_argument("--log-level")
    parser.add_argument("--log-format", choices=("text", "json"))
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port (unset = off)")
    parser.add_argument("--auth-tokens-file", type=Path,
                        help="bearer tokens, one '<read|write>:<token>' a line (or LOOKALIKE_AUTH_TOKENS)")
    parser.add_argument("--insecure", action="store_true", default=None,
                        help="serve a non-loopback address without authentication")
    parser.add_argument("--tls-cert", dest="tls_cert_file", type=Path, help="PEM certificate chain (TLS)")
    parser.add_argument("--tls-key", dest="tls_key_file", type=Path, help="PEM private key (TLS)")
    parser.add_argument("--tls-client-ca", dest="tls_client_ca_file", type=Path,
                        help="PEM CA bundle: require client certificates it signed (mTLS)")


class _SecretOnCommandLine(argparse.Action):
    """The retired --qdrant-api-key: refused without echoing the value."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is not accepted: a key on the command line shows in the process list. "
                     "Set LOOKALIKE_QDRANT_API_KEY or pass --qdrant-api-key-file FILE")


def settings_from(args: argparse.Namespace):
    """Flags win over LOOKALIKE_* variables, which win over defaults."""
    from service.config import Settings

    names = ("host", "port", "data_dir", "model", "pretrained", "device", "precision", "max_batch", "qdrant_url",
             "qdrant_api_key_file", "collection", "max_message_mb", "torch_threads", "max_batch_wait_ms",
             "omp_wait_policy", "log_level", "log_format", "metrics_port", "auth_tokens_file", "insecure",
             "tls_cert_file", "tls_key_file", "tls_client_ca_file")
    return Settings(**{name: getattr(args, name) for name in names if getattr(args, name, None) is not None})


def _serve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    from service.observability import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    from service.threads import apply_wait_policy, configure_torch

    apply_wait_policy(settings.omp_wait_policy)  # a --omp-wait-policy flag; torch is not loaded yet
    configure_torch(settings.torch_threads, settings.torch_interop_threads)
    from service.server import serve

    return asyncio.run(serve(settings))


# -- ingest -------------------------------------------------------------------

def _ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from service.client import LookalikeClient

    if not args.images and not args.jsonl:
        print("give --images DIR and/or --jsonl FILE", file=sys.stderr)
        return 2
    sources = []
    if args.images:
        sources.append(list(_folder_items(args.images)))
    if args.jsonl:
        sources.append(list(_jsonl_items(args.jsonl)))
    items = [item for source in sources for item in source]
    with LookalikeClient(args.server) as client, tqdm(total=len(items), unit="item", desc="ingest") as bar:
        summary = client.upsert(items, batch_size=args.batch_size, on_batch=bar.update)
    print(f"upserted {summary.upserted}, failed {summary.failed}")
    for index, item_id, message in summary.errors[:50]:
        print(f"  #{index} {item_id or '(no id)'}: {message}")
    if len(summary.errors) > 50:
        print(f"  ... and {len(summary.errors) - 50} more")
    return EXIT_PARTIAL if summary.failed else 0


def _folder_items(folder: Path) -> Iterator:
    from service.client import NewItem

    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            relative = path.relative_to(folder).as_posix()
            yield NewItem(id=relative, image=path.read_bytes(), payload={"path": relative})


def _jsonl_items(path: Path) -> Iterator:
    from service.client import NewItem

    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        image = b""
        if record.get("image"):
            image_path = (path.parent / record["image"])
            image = image_path.read_bytes() if image_path.is_file() else b""
            if not image:
                print(f"line {number}: image {image_path} not found; sending the item without it", file=sys.stderr)
        yield NewItem(id=str(record.get("id", "")), image=image, text=record.get("text"),
                      payload=record.get("payload") or {})


# -- search -------------------------------------------------------------------

def _search(args: argparse.Namespace) -> int:
    from service.client import LookalikeClient
    from service.filter_expr import parse_filter

    with LookalikeClient(args.server) as client:
        hits = client.search(text=args.text, image=args.image.read_bytes() if args.image else None,
                             item_id=args.item_id, target=args.target, filter=parse_filter(args.filter),
                             limit=args.limit, offset=args.offset, score_threshold=args.threshold)
    if args.json:
        for hit in hits:
            print(json.dumps({"id": hit.id, "score": hit.score, "text": hit.text, "payload": hit.payload}))
    else:
        print(format_hits(hits))
    return 0


def format_hits(hits) -> str:
    rows = [("#", "score", "id", "text", "payload")]
    for rank, hit in enumerate(hits, start=1):
        payload = json.dumps(hit.payload, sort_keys=True, separators=(",", ":"))
        rows.append((str(rank), f"{hit.score:.4f}", hit.id, _clip(hit.text or "", 32), _clip(payload, 70)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines) if hits else "(no results)"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"




if __name__ == "__main__":
    raise SystemExit(main())
