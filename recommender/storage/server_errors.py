"""Turning qdrant-client transport failures into the domain's Unavailable."""

from __future__ import annotations

import contextlib
from typing import Iterator

from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from recommender.errors import Unavailable


@contextlib.contextmanager
def translated(location: str) -> Iterator[None]:
    """Connection failures of any qdrant-client transport become Unavailable."""
    try:
        yield
    except ResponseHandlingException as error:
        raise Unavailable(f"vector store at {location} is unreachable: {error}") from error
    except UnexpectedResponse as error:
        if error.status_code is not None and error.status_code >= 500:
            raise Unavailable(f"vector store at {location} failed: {error}") from error
        raise
    except Exception as error:
        if _is_transport_error(error):
            raise Unavailable(f"vector store at {location} is unreachable: {error}") from error
        raise


def _is_transport_error(error: Exception) -> bool:
    # qdrant-client's gRPC transport raises grpc.RpcError; recognised by its
    # module and status name so the domain layer never imports grpc itself.
    code_of = getattr(error, "code", None)
    if type(error).__module__.split(".")[0] == "grpc" and callable(code_of):
        code = code_of()
        return code is None or getattr(code, "name", None) in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    return isinstance(error, (ConnectionError, TimeoutError))
