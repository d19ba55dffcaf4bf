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
    # qdrant-client's gRPC transport raises grpc.RpcError; imported lazily so the
    # domain layer does not depend on grpc for its own sake.
    import grpc

    if isinstance(error, grpc.RpcError):
        code = error.code() if callable(getattr(error, "code", None)) else None
        return code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, None)
    return isinstance(error, (ConnectionError, TimeoutError))
