"""Who may call what: bearer tokens with scopes, TLS credentials, and the refusal
to serve a network address with neither.

Tokens are `<scope>:<token>` entries (scope `read` or `write`) from
LOOKALIKE_AUTH_TOKENS_FILE (one a line) or LOOKALIKE_AUTH_TOKENS (comma- or
newline-separated), never from a flag, so they stay out of the process list.
Callers send `authorization: Bearer <token>` metadata. Health checks need no
token (load balancers and probes carry none); reflection needs none either:
it describes the published lookalike.v1 contract, not data.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Iterable, Sequence

import grpc

from service.config import Settings, read_secret
from service.handlers import replace_behaviour

MIN_TOKEN_LENGTH = 16
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")
READ_METHODS = frozenset({
    "/lookalike.v1.EmbeddingService/Embed",
    "/lookalike.v1.EmbeddingService/EmbedStream",
    "/lookalike.v1.SearchService/Search",
    "/lookalike.v1.SearchService/SimilarItems",
    "/lookalike.v1.CatalogService/GetItems",
    "/lookalike.v1.RecommendationService/Recommend",
    "/lookalike.v1.RecommendationService/GetProfile",
})


class Scope(enum.Enum):
    READ = "read"
    WRITE = "write"  # everything, reads included

    def allows(self, method: str) -> bool:
        # Methods not listed as reads (new ones included) need write: fail closed.
        return self is Scope.WRITE or method in READ_METHODS


@dataclass(frozen=True)
class _Token:
    digest: bytes
    scope: Scope


class TokenTable:
    """Known tokens by their SHA-256, checked in constant time."""

    def __init__(self, entries: Iterable[tuple[Scope, str]]) -> None:
        self._tokens = tuple(_Token(_digest(token), scope) for scope, token in entries)

    def __len__(self) -> int:
        return len(self._tokens)

    def scope_of(self, token: str) -> Scope | None:
        # Comparing fixed-length digests, and every one of them, leaks neither a
        # token's length nor which entry matched through timing.
        digest = _digest(token)
        found = None
        for entry in self._tokens:
            if hmac.compare_digest(entry.digest, digest):
                found = entry.scope
        return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def parse_tokens(text: str, source: str, separators: str = "\n") -> list[tuple[Scope, str]]:
    """`<scope>:<token>` entries; blank lines and `#` comments are skipped."""
    for separator in separators[1:]:
        text = text.replace(separator, separators[0])
    entries = []
    for number, raw in enumerate(text.split(separators[0]), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        scope_name, colon, token = line.partition(":")
        where = f"{source} entry {number}"
        if not colon or scope_name.strip() not in {scope.value for scope in Scope}:
            raise ValueError(f"{where}: write '<scope>:<token>' with scope read or write")
        token = token.strip()
        if len(token) < MIN_TOKEN_LENGTH or any(character.isspace() for character in token):
            raise ValueError(f"{where}: a token needs at least {MIN_TOKEN_LENGTH} characters and no spaces "
                             "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        entries.append((Scope(scope_name.strip()), token))
    return entries


def load_tokens(settings: Settings) -> TokenTable:
    """Tokens from the file and the variable together; empty = auth off."""
    entries = []
    if settings.auth_tokens_file is not None:
        text = read_secret(settings.auth_tokens_file, "auth_tokens_file")
        entries += parse_tokens(text, str(settings.auth_tokens_file))
        if not entries:
            raise ValueError(f"auth_tokens_file {settings.auth_tokens_file} holds no tokens")
    if settings.auth_tokens:
        entries += parse_tokens(settings.auth_tokens, "LOOKALIKE_AUTH_TOKENS", separators="\n,")
    return TokenTable(entries)


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_exposure(settings: Settings, tokens: TokenTable) -> None:
    """Refuse to serve a network address to anyone who reaches it, unless told to."""
    if tokens or settings.insecure or is_loopback(settings.host):
        return
    raise ValueError(
        f"refusing to serve {settings.host}:{settings.port} without authentication: anyone who reaches that "
        "address could delete the catalog. Set LOOKALIKE_AUTH_TOKENS_FILE (lines of '<read|write>:<token>') "
        "or LOOKALIKE_AUTH_TOKENS, or pass --insecure (LOOKALIKE_INSECURE=true) if a trusted network or "
        "proxy in front does the authentication.")


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS from PEM files; with a client CA, clients must present a certificate it signed."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None

    def pem(path: Path, setting: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as error:
            raise ValueError(f"{setting}: cannot read {path}: {error.strerror or error}") from None

    pair = (pem(settings.tls_key_file, "tls_key_file"), pem(settings.tls_cert_file, "tls_cert_file"))
    client_ca = None
    if settings.tls_client_ca_file is not None:
        client_ca = pem(settings.tls_client_ca_file, "tls_client_ca_file")
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Checks the bearer token of every call except health and reflection.

    A refused call never has its message parsed: its handler is replaced by one
    that takes raw bytes and aborts.
    """

    def __init__(self, tokens: TokenTable) -> None:
        self._tokens = tokens

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        refusal = self._refusal(method, details.invocation_metadata or ())
        if refusal is None:
            return handler
        code, message = refusal

        async def refuse(request_or_iterator, context: grpc.aio.ServicerContext) -> None:
            await context.abort(code, message)

        return replace_behaviour(handler, refuse)

    def _refusal(self, method: str, metadata: Sequence[tuple[str, str | bytes]]) -> tuple[grpc.StatusCode, str] | None:
        values = [value for key, value in metadata if key == "authorization"]
        if not values:
            return grpc.StatusCode.UNAUTHENTICATED, "missing credentials: send metadata 'authorization: Bearer <token>'"
        value = values[0] if isinstance(values[0], str) else values[0].decode("latin-1")
        kind, _, token = value.strip().partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            return grpc.StatusCode.UNAUTHENTICATED, "malformed authorization metadata: use 'Bearer <token>'"
        scope = self._tokens.scope_of(token.strip())
        if scope is None:
            return grpc.StatusCode.UNAUTHENTICATED, "invalid token"
        if not scope.allows(method):
            return grpc.StatusCode.PERMISSION_DENIED, f"a {scope.value} token may not call {method}: it needs write"
        return None
