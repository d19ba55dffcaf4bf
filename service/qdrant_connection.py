"""How `--qdrant-url` becomes a qdrant-client connection, every port taken from the settings.

- `http://host:PORT` / `https://host:PORT`: REST on PORT (6333 when the URL names none);
  with `LOOKALIKE_QDRANT_GRPC_PORT=G` set, gRPC on G is preferred for data calls.
- `grpc://host:PORT` / `grpcs://host:PORT`: gRPC on PORT (6334 when the URL names none).

qdrant-client on its own dials gRPC on 6334 whatever the URL's port says; here
nothing is dialled that the operator did not name or that is not Qdrant's default.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from qdrant_client import QdrantClient

REST_DEFAULT_PORT = 6333
GRPC_DEFAULT_PORT = 6334
_SCHEMES = {"http": (False, False), "https": (False, True), "grpc": (True, False), "grpcs": (True, True)}


def client_arguments(url: str, grpc_port: int | None = None) -> dict:
    """Keyword arguments for QdrantClient that dial exactly the ports `url` and `grpc_port` name."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise ValueError(f"qdrant url {url!r} must look like http://host:6333, https://host:6333 or grpc://host:6334")
    grpc_scheme, https = _SCHEMES[parts.scheme]
    prefix = parts.path.strip("/") or None
    if grpc_scheme:
        return dict(host=parts.hostname, grpc_port=parts.port or GRPC_DEFAULT_PORT, prefer_grpc=True, https=https,
                    prefix=prefix, check_compatibility=False)
    arguments = dict(host=parts.hostname, port=parts.port or REST_DEFAULT_PORT, https=https, prefix=prefix,
                     prefer_grpc=grpc_port is not None)
    if grpc_port is not None:
        arguments["grpc_port"] = grpc_port
    return arguments


def describe(url: str, grpc_port: int | None = None) -> str:
    """Where the client goes, for logs and errors: both ports when both are used."""
    arguments = client_arguments(url, grpc_port)
    if arguments.get("prefer_grpc"):
        return f"Qdrant at {arguments['host']} (gRPC port {arguments['grpc_port']})"
    return f"Qdrant at {arguments['host']} (REST port {arguments['port']})"


def open_client(url: str, grpc_port: int | None, api_key: str | None, timeout_s: int) -> QdrantClient:
    return QdrantClient(api_key=api_key, timeout=timeout_s, **client_arguments(url, grpc_port))
