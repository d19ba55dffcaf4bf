"""`lookalike ...` / `python -m service ...`: the server, and a client command for every RPC.

Client commands import only the light client (grpc + stubs); `serve` and the
delegated commands import the model stack when they run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any, Sequence

EXIT_PARTIAL = 3

# Subcommands with their own argument parsers, imported only when used (they pull in torch).
DELEGATED = {
    "demo": "service.demo.showcase",
    "train-demo": "service.demo.training",
    "eval": "service.evaluate",
    "bench": "service.benchmark",
}
DELEGATED_HELP = {
    "demo": "offline demo: in-process server, demo catalog, cross-modal queries, contact sheet",
    "train-demo": "train the offline demo CLIP model (reproduces the shipped weights)",
    "eval": "offline evaluation of recommendation strategies (HitRate, Recall, NDCG, coverage)",
    "bench": "benchmarks: throughput and latency tables",
}

# `serve` flags: settings name -> help. Each also reads LOOKALIKE_<NAME>. Secrets are files or
# environment variables, never values on the command line (the process list shows those).
SERVE_FLAGS: dict[str, str] = {
    "host": "address to bind; a non-loopback address needs auth tokens or --insecure",
    "port": "port to bind (0 = any free port)",
    "data_dir": "where embedded Qdrant (Qdrant Edge) keeps its files",
    "collection": "Qdrant collection of the items (events go to <collection>_events)",
    "model": "open_clip model name, hf-hub:org/repo, local-dir:/folder, or 'demo'",
    "pretrained": "open_clip weights tag, a checkpoint file, local-dir:/folder, or 'none' (random weights)",
    "device": "where the model runs",
    "precision": "model precision",
    "runtime": "where the model stage runs: torch, ONNX Runtime on towers exported once and cached (onnx), or "
               "ONNX Runtime for small batches and torch for large ones (hybrid)",
    "max_batch": "largest model batch",
    "torch_threads": "intra-op threads for a model batch (unset = the CPUs this process may use)",
    "max_batch_wait_ms": "at most how long an idle model waits for more inputs on their way to fill a batch",
    "omp_wait_policy": "OpenMP workers sleep (passive) or spin (active) between ops; ignored when OMP_WAIT_POLICY "
                       "is set",
    "qdrant_url": "a Qdrant server or cluster (unset = embedded storage in --data-dir)",
    "qdrant_api_key_file": "file holding the Qdrant API key (or the key itself in LOOKALIKE_QDRANT_API_KEY)",
    "max_message_mb": "largest gRPC message, in MiB",
    "max_inflight": "calls in flight beyond this get RESOURCE_EXHAUSTED",
    "auth_tokens_file": "bearer tokens, one '<read|write>:<token>' a line (or LOOKALIKE_AUTH_TOKENS)",
    "insecure": "serve a non-loopback address without authentication",
    "tls_cert_file": "PEM certificate chain (TLS)",
    "tls_key_file": "PEM private key (TLS)",
    "tls_client_ca_file": "PEM CA bundle: require client certificates it signed (mTLS)",
    "metrics_port": "serve Prometheus /metrics on this port (unset = off)",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "log_format": "log lines as text or JSON",
}
# Where a flag's name is not its setting's name.
FLAG_NAMES = {"tls_cert_file": "--tls-cert", "tls_key_file": "--tls-key", "tls_client_ca_file": "--tls-client-ca"}
_SECRET_SETTINGS = ("api_key", "tokens", "password", "secret")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows every flag's default: `unset` for None, `off` for a false switch."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default:" in text or action.default is argparse.SUPPRESS:
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text
        return f"{text} (default: {_shown(action.default)})"


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if value is False:
        return "off"
    if value is True:
        return "on"
    if isinstance(value, list):
        return "none" if not value else " ".join(map(str, value))
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in DELEGATED:
            import importlib

            return importlib.import_module(DELEGATED[argv[0]]).main(argv[1:])
        parser = build_parser(with_serve_flags=bool(argv) and argv[0] == "serve")
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        return _run(args)
    except ModuleNotFoundError as error:
        if error.name and error.name.split(".")[0] in SERVER_ONLY_MODULES:
            print(f"error: `lookalike {argv[0]}` runs the server side, which this install lacks ({error.name}); "
                  "install it with: pip install 'lookalike[server]'", file=sys.stderr)
            return 1
        raise


# What the `server` extra installs; a client-only install has none of them.
SERVER_ONLY_MODULES = {"torch", "torchvision", "open_clip", "PIL", "numpy", "qdrant_client", "qdrant_edge",
                       "pydantic", "pydantic_settings", "safetensors", "grpc_reflection"}


def _run(args: argparse.Namespace) -> int:
    import grpc

    try:
        return args.run(args)
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}{_hint(error, args)}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _hint(error, args: argparse.Namespace) -> str:
    import grpc

    code = error.code()
    if code == grpc.StatusCode.UNAVAILABLE and "connect" in (error.details() or "").lower():
        return f"\n  is a server running at {args.server}? Start one with `lookalike serve` or pass --server."
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"\n  no answer from {args.server} within {args.timeout:g}s: is a server running there (--server)?"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return "\n  pass --token-file FILE or set LOOKALIKE_TOKEN."
    return ""


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as installed_version

    try:
        return installed_version("lookalike")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser(with_serve_flags: bool = True) -> argparse.ArgumentParser:
    """The whole command line. `serve`'s flags read their defaults from the settings
    (pydantic), so they are built only when `serve` runs or its help is asked for."""
    from service import commands as c

    parser = argparse.ArgumentParser(prog="lookalike", description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"lookalike {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str, run, description: str | None = None, client: bool = True, **options):
        parents = [_connection_flags()] if client else []
        p = sub.add_parser(name, help=help, description=description or help, parents=parents,
                           formatter_class=_Formatter, **options)
        p.set_defaults(run=run)
        return p

    serve = command("serve", "run the gRPC server", _serve, client=False, allow_abbrev=False, description=(
        "Run the gRPC server. Each flag also reads the environment variable named in its help; flags win over "
        "variables, variables over defaults."))
    if with_serve_flags:
        _server_flags(serve)

    p = command("search", "nearest items to a text, an image or an item", c.search)
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="free text, embedded with the text tower")
    query.add_argument("--image", type=Path, help="path of an image file, embedded with the image tower")
    query.add_argument("--item-id", help="a catalog item: its own vector is the query")
    _result_flags(p)

    p = command("similar", "neighbours of a catalog item (SimilarItems)", c.similar)
    p.add_argument("item_id", help="the catalog item")
    _result_flags(p)
    p.add_argument("--user", help="leave out the items this user has interacted with")
    p.add_argument("--include-seen", action="store_true", help="with --user: keep the user's seen items")

    p = command("recommend", "recommendations for a user, for example items, or both", c.recommend,
                description="Recommendations for a user from their history, for example items (--like, --dislike; "
                            "without a user they are an anonymous session), or both.")
    p.add_argument("user", nargs="?", default="", help="the user id (leave out for examples alone)")
    p.add_argument("--like", action="append", default=[], metavar="ID[:WEIGHT]",
                   help="an example item to recommend more like (weight 1 = a like event; repeatable)")
    p.add_argument("--dislike", action="append", default=[], metavar="ID[:WEIGHT]",
                   help="an example item to recommend less like (weight 1 = a dislike event; repeatable)")
    p.add_argument("--limit", type=int, default=10, help="how many results")
    p.add_argument("--offset", type=int, default=0, help="how many of the best results to skip")
    p.add_argument("--page-token", default="", help="next_page_token of a previous call (overrides --offset)")
    p.add_argument("--filter", action="append", default=[], metavar="EXPR", help=FILTER_HELP)
    p.add_argument("--diversity", type=float, help="0 = pure relevance, 1 = maximal diversity (server default 0.2)")
    p.add_argument("--include-seen", action="store_true", help="also recommend items the user has interacted with")
    p.add_argument("--strategy", default="multi_interest", help="multi_interest, single_centroid, qdrant_average, "
                   "qdrant_best_score or popular", choices=("multi_interest", "single_centroid", "qdrant_average",
                                                            "qdrant_best_score", "popular"))
    p.add_argument("--explain", action="store_true", help="list the history items behind each result")

    p = command("events", "record user events from a JSONL or CSV file (RecordEvents)", c.record_events,
                description="Record user events from a file, streamed in batches, with a progress bar and a "
                            "per-line error summary (exit 3 when any line failed). Fields: user_id, item_id, type "
                            "(view, click, add_to_cart, purchase, like, dislike, skip), optional weight, timestamp "
                            "(ISO 8601, no zone = UTC, or epoch seconds) and event_id (idempotency key).")
    p.add_argument("file", type=Path, help="JSONL (one object a line) or CSV (with a header row)")
    p.add_argument("--format", choices=("jsonl", "csv"), help="file format (unset = from the file's suffix)")
    p.add_argument("--batch-size", type=int, default=500, help="events per RecordEvents call")

    p = command("profile", "a user's interests (GetProfile)", c.profile)
    p.add_argument("user", help="the user id")
    p.add_argument("--centroids", action="store_true", help="also return the interest centroids (with --json)")

    p = command("forget", "delete every event of a user (ForgetUser)", c.forget)
    p.add_argument("user", help="the user id")

    p = command("embed", "embed texts and/or images (Embed)", c.embed)
    p.add_argument("--text", action="append", default=[], help="a text to embed (repeatable)")
    p.add_argument("--image", action="append", default=[], type=Path, help="an image file to embed (repeatable)")

    p = command("get", "fetch items by id (GetItems)", c.get)
    p.add_argument("ids", nargs="+", help="item ids")
    p.add_argument("--vectors", action="store_true", help="also return the stored vectors (with --json)")

    p = command("delete", "delete items by id or by filter (DeleteItems)", c.delete)
    p.add_argument("ids", nargs="*", help="item ids")
    p.add_argument("--filter", action="append", default=[], metavar="EXPR",
                   help="delete every item matching all expressions (asks first); " + FILTER_HELP)
    p.add_argument("--yes", action="store_true", help="delete by filter without asking")

    p = command("ingest", "send a folder of images and/or a JSONL file of items (UpsertItems)", c.ingest,
                description="Stream items to a server in batches. The progress bar follows the server's "
                            "acknowledgements; failures are listed by file and line; exit 3 when any item failed.")
    p.add_argument("--images", type=Path, help="folder of images (searched recursively); id = relative path")
    p.add_argument("--jsonl", type=Path, help='items, one JSON object a line: {"id", "text", "image" (a path '
                                              'relative to the file), "payload", "image_vector", "text_vector"}')
    p.add_argument("--batch-size", type=int, default=32, help="items per stream message")

    command("health", "the server's health (SERVING once the model is loaded and Qdrant answers)", c.health)

    for name, run, help in (
            ("migrate-storage", _migrate_storage, "copy a collection from the old embedded folder (qdrant-client "
                                                  "local mode, <data-dir>/qdrant) into Qdrant Edge "
                                                  "(<data-dir>/storage)"),
            ("optimize", _optimize, "build Qdrant Edge's HNSW indexes; offline: stop the server first")):
        p = command(name, help, run, client=False)
        p.add_argument("--data-dir", type=Path,
                       help="the server's data dir (unset = LOOKALIKE_DATA_DIR or the default)")
        p.add_argument("--collection", help="the collection (unset = LOOKALIKE_COLLECTION or 'items')")

    for name, help in DELEGATED_HELP.items():
        if name in DELEGATED:  # listed for --help; main() hands their arguments to their own parsers
            sub.add_parser(name, help=help, add_help=False)
    return parser


FILTER_HELP = "e.g. color=red, price<50, shape=circle|square, in_stock=true, color!=red (repeatable; all must hold)"


def _connection_flags() -> argparse.ArgumentParser:
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--server", default=os.environ.get("LOOKALIKE_SERVER", "127.0.0.1:50051"),
                       help="host:port of the server (env LOOKALIKE_SERVER)")
    flags.add_argument("--token-file", type=Path, default=os.environ.get("LOOKALIKE_TOKEN_FILE"),
                       help="file holding the bearer token (env LOOKALIKE_TOKEN_FILE; or the token itself in "
                            "LOOKALIKE_TOKEN)")
    flags.add_argument("--tls-ca", type=Path, default=os.environ.get("LOOKALIKE_TLS_CA"),
                       help="PEM file of the CA that signed the server's certificate; turns TLS on "
                            "(env LOOKALIKE_TLS_CA)")
    flags.add_argument("--timeout", type=float, default=60.0, help="deadline of each call, in seconds")
    flags.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    return flags


def _result_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", choices=("image", "text", "both"), default="image",
                        help="which item vectors to compare with (both = fused)")
    parser.add_argument("--filter", action="append", default=[], metavar="EXPR", help=FILTER_HELP)
    parser.add_argument("--limit", type=int, default=10, help="how many results")
    parser.add_argument("--offset", type=int, default=0, help="how many of the best results to skip")
    parser.add_argument("--threshold", type=float, help="drop results scoring below this")


def _server_flags(parser: argparse.ArgumentParser) -> None:
    from service.config import Settings

    fields = Settings.model_fields
    for name, help in SERVE_FLAGS.items():
        info = fields[name]
        default = info.get_default(call_default_factory=True)
        kwargs: dict[str, Any] = {}
        choices = _literal_choices(info.annotation)
        if choices:
            kwargs["choices"] = choices
        elif isinstance(default, bool):
            kwargs["action"] = "store_true"
        elif isinstance(default, (int, float)):
            kwargs["type"] = type(default)
        elif name.endswith(("_dir", "_file")):
            kwargs["type"] = Path
        elif name in ("torch_threads", "metrics_port"):
            kwargs["type"] = int
        flag = FLAG_NAMES.get(name, f"--{name.replace('_', '-')}")
        parser.add_argument(flag, dest=name, default=None,
                            help=f"{help} (env LOOKALIKE_{name.upper()}; default: {_shown(default)})", **kwargs)
    parser.add_argument("--qdrant-api-key", nargs="?", action=_SecretOnCommandLine, help=argparse.SUPPRESS)
    others = [name for name in fields if name not in SERVE_FLAGS]
    parser.epilog = "Settings read from the environment only:\n" + "\n".join(
        f"  LOOKALIKE_{name.upper()}" + (
            "" if any(word in name for word in _SECRET_SETTINGS)
            else f" (default: {_shown(fields[name].get_default(call_default_factory=True))})")
        for name in others)


class _SecretOnCommandLine(argparse.Action):
    """The retired --qdrant-api-key: refused without echoing the value."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is not accepted: a key on the command line shows in the process list. "
                     "Set LOOKALIKE_QDRANT_API_KEY or pass --qdrant-api-key-file FILE")


def _literal_choices(annotation: Any) -> tuple | None:
    from typing import Literal, get_args, get_origin

    return get_args(annotation) if get_origin(annotation) is Literal else None


def _boolean(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def settings_from(args: argparse.Namespace):
    """Flags win over LOOKALIKE_* variables, which win over defaults."""
    from service.config import Settings

    return Settings(**{name: getattr(args, name) for name in SERVE_FLAGS if getattr(args, name, None) is not None})


def _storage_place(args: argparse.Namespace) -> tuple[Path, str]:
    from service.config import Settings

    settings = Settings()
    return args.data_dir or settings.data_dir, args.collection or settings.collection


def _migrate_storage(args: argparse.Namespace) -> int:
    from recommender.storage.folder import StorageError
    from recommender.storage.migrate import migrate_old_embedded

    data_dir, collection = _storage_place(args)
    try:
        items, events = migrate_old_embedded(data_dir, collection, progress=lambda line: print(line, file=sys.stderr))
    except StorageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"copied {items} items and {events} events of {collection!r} into {data_dir / 'storage'}; "
          f"the old folder {data_dir / 'qdrant'} is untouched and can be deleted")
    return 0


def _optimize(args: argparse.Namespace) -> int:
    from recommender.storage.edge import open_existing
    from recommender.storage.folder import StorageError

    data_dir, collection = _storage_place(args)
    try:
        storage = open_existing(data_dir, collection)
    except StorageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        changed = storage.optimize()
    finally:
        storage.close()
    print(f"{collection!r}: {'indexes built' if changed else 'already optimal'}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    from service.observability import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    from service.threads import apply_wait_policy, configure_torch, limit_numpy_blas

    apply_wait_policy(settings.omp_wait_policy)  # a --omp-wait-policy flag; torch is not loaded yet
    limit_numpy_blas()  # numpy is not loaded yet either
    configure_torch(settings.torch_threads, settings.torch_interop_threads)
    from service.server import serve

    return asyncio.run(serve(settings))


if __name__ == "__main__":
    raise SystemExit(main())
