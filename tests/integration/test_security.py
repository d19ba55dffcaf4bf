"""Security through a real server and channel: bearer tokens and scopes, TLS and
mTLS with certificates made here, the refusal to expose an unauthenticated
server, busy ports, and secrets kept off the command line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api.lookalike.v1 import (
    catalog_service_pb2 as catalog_pb,
    catalog_service_pb2_grpc as catalog_grpc,
    recommendation_service_pb2 as recommendation_pb,
    recommendation_service_pb2_grpc as recommendation_grpc,
    search_service_pb2 as search_pb,
    search_service_pb2_grpc as search_grpc,
)
from service.cli import build_parser, main, settings_from
from service.client import LookalikeClient, NewItem
from service.config import Settings
from service.security import Scope, TokenTable, load_tokens, parse_tokens
from tests.support import ServerThread, deps_with, settings_for

READ_TOKEN = "read-token-0123456789abcdef"
WRITE_TOKEN = "write-token-0123456789abcdef"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def upsert_request() -> list[catalog_pb.UpsertItemsRequest]:
    return [catalog_pb.UpsertItemsRequest(items=[catalog_pb.ItemInput(id="a", text="a red dress")])]


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code()


@pytest.fixture
def token_file(tmp_path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"# scope:token\nread:{READ_TOKEN}\n\nwrite:{WRITE_TOKEN}\n")
    return path


@pytest.fixture
def authed_server(tmp_path, tiny_embedder, token_file):
    settings = settings_for(tmp_path, auth_tokens_file=token_file)
    with ServerThread(settings, deps_with(settings, tiny_embedder)) as running:
        yield running


def test_tokens_and_scopes_decide_every_rpc_but_health(authed_server):
    with grpc.insecure_channel(authed_server.target) as channel:
        search = search_grpc.SearchServiceStub(channel)
        catalog = catalog_grpc.CatalogServiceStub(channel)
        users = recommendation_grpc.RecommendationServiceStub(channel)
        query = search_pb.SearchRequest(text="red")

        assert code_of(lambda: search.Search(query)) is grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: search.Search(query, metadata=bearer("not-a-known-token-at-all"))) \
            is grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda: search.Search(query, metadata=(("authorization", READ_TOKEN),))) \
            is grpc.StatusCode.UNAUTHENTICATED, "the Bearer scheme is required"

        assert list(search.Search(query, metadata=bearer(READ_TOKEN)).results) == []
        with pytest.raises(grpc.RpcError) as raised:
            list(catalog.UpsertItems(iter(upsert_request()), metadata=bearer(READ_TOKEN)))
        assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "write" in raised.value.details()
        assert code_of(lambda: users.ForgetUser(recommendation_pb.ForgetUserRequest(user_id="u"),
                                                metadata=bearer(READ_TOKEN))) is grpc.StatusCode.PERMISSION_DENIED
        delete_all = catalog_pb.DeleteItemsRequest(ids=catalog_pb.ItemIds(ids=["a"]))
        assert code_of(lambda: catalog.DeleteItems(delete_all)) is grpc.StatusCode.UNAUTHENTICATED

        assert next(catalog.UpsertItems(iter(upsert_request()), metadata=bearer(WRITE_TOKEN))).upserted == 1
        # write includes read
        read_back = catalog.GetItems(catalog_pb.GetItemsRequest(ids=["a"]), metadata=bearer(WRITE_TOKEN))
        assert [item.id for item in read_back.items] == ["a"]
        assert users.GetProfile(recommendation_pb.GetProfileRequest(user_id="u"),
                                metadata=bearer(READ_TOKEN)).event_count == 0

        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING


def test_tokens_from_the_environment_variable(tmp_path, tiny_embedder, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_AUTH_TOKENS", f"read:{READ_TOKEN}, write:{WRITE_TOKEN}")
    settings = settings_for(tmp_path)
    with ServerThread(settings, deps_with(settings, tiny_embedder)) as server, \
            grpc.insecure_channel(server.target) as channel:
        catalog = catalog_grpc.CatalogServiceStub(channel)
        assert code_of(lambda: list(catalog.UpsertItems(iter(upsert_request())))) is grpc.StatusCode.UNAUTHENTICATED
        assert next(catalog.UpsertItems(iter(upsert_request()), metadata=bearer(WRITE_TOKEN))).upserted == 1


def test_token_entries_are_checked():
    assert parse_tokens(f"read:{READ_TOKEN}\n# comment\n", "f") == [(Scope.READ, READ_TOKEN)]
    for bad in (f"admin:{READ_TOKEN}", READ_TOKEN, "read:short", f"write:{READ_TOKEN} x"):
        with pytest.raises(ValueError):
            parse_tokens(bad, "f")
    table = TokenTable([(Scope.READ, READ_TOKEN), (Scope.WRITE, WRITE_TOKEN)])
    assert table.scope_of(READ_TOKEN) is Scope.READ
    assert table.scope_of(WRITE_TOKEN) is Scope.WRITE
    assert table.scope_of(READ_TOKEN[:-1]) is None
    assert len(load_tokens(Settings())) == 0


# -- TLS ---------------------------------------------------------------------

def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1 signed by it, and a client certificate signed by it."""
    folder = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", *EC_KEY, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test-ca",
            cwd=folder)
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-new", *EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
                cwd=folder)
        extra = ("-extfile", "server.ext") if name == "server" else ()
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "1", *extra, cwd=folder)
    return folder


def health_over(target: str, credentials: grpc.ChannelCredentials | None) -> str:
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    with channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def test_tls_serves_only_encrypted_connections(tmp_path, tiny_embedder, certificates, token_file):
    settings = settings_for(tmp_path, tls_cert_file=certificates / "server.pem",
                            tls_key_file=certificates / "server.key", auth_tokens_file=token_file)
    trust = grpc.ssl_channel_credentials(root_certificates=(certificates / "ca.pem").read_bytes())
    with ServerThread(settings, deps_with(settings, tiny_embedder)) as server:
        assert health_over(server.target, trust) == "SERVING"
        with grpc.secure_channel(server.target, trust) as channel:
            search = search_grpc.SearchServiceStub(channel)
            assert list(search.Search(search_pb.SearchRequest(text="x"), metadata=bearer(READ_TOKEN)).results) == []
        with pytest.raises(grpc.RpcError) as raised:
            health_over(server.target, None)
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE, "plaintext is not answered"


def test_mutual_tls_requires_a_client_certificate_from_the_ca(tmp_path, tiny_embedder, certificates):
    settings = settings_for(tmp_path, tls_cert_file=certificates / "server.pem",
                            tls_key_file=certificates / "server.key", tls_client_ca_file=certificates / "ca.pem")
    ca = (certificates / "ca.pem").read_bytes()
    with ServerThread(settings, deps_with(settings, tiny_embedder)) as server:
        with pytest.raises(grpc.RpcError) as raised:
            health_over(server.target, grpc.ssl_channel_credentials(root_certificates=ca))
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
        with_certificate = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=(certificates / "client.key").read_bytes(),
            certificate_chain=(certificates / "client.pem").read_bytes())
        assert health_over(server.target, with_certificate) == "SERVING"


def test_the_client_and_the_cli_send_the_token_over_tls(tmp_path, tiny_embedder, certificates, token_file,
                                                         monkeypatch, capsys):
    settings = settings_for(tmp_path, tls_cert_file=certificates / "server.pem",
                            tls_key_file=certificates / "server.key", auth_tokens_file=token_file)
    ca = certificates / "ca.pem"
    with ServerThread(settings, deps_with(settings, tiny_embedder)) as server:
        with LookalikeClient(server.target, token=WRITE_TOKEN, tls_ca_file=ca, timeout=10) as client:
            assert client.upsert([NewItem(id="secret-sku", text="a red dress")]).upserted == 1
        with LookalikeClient(server.target, token=READ_TOKEN, tls_ca_file=ca, timeout=10, retries=0) as reader:
            assert [item.id for item in reader.get(["secret-sku"]).items] == ["secret-sku"]
            with pytest.raises(grpc.RpcError) as raised:
                reader.delete(ids=["secret-sku"])
            assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED

        cli = ["get", "secret-sku", "--server", server.target, "--tls-ca", str(ca), "--json"]
        assert main(cli) == 1
        assert "UNAUTHENTICATED" in capsys.readouterr().err
        token_path = tmp_path / "my-token"
        token_path.write_text(READ_TOKEN + "\n")
        assert main([*cli, "--token-file", str(token_path)]) == 0
        assert "secret-sku" in capsys.readouterr().out
        monkeypatch.setenv("LOOKALIKE_TOKEN", READ_TOKEN)
        assert main(cli) == 0


def test_tls_settings_come_in_pairs(tmp_path, certificates):
    with pytest.raises(ValueError, match="both"):
        Settings(data_dir=tmp_path, tls_cert_file=certificates / "server.pem")
    with pytest.raises(ValueError, match="mTLS"):
        Settings(data_dir=tmp_path, tls_client_ca_file=certificates / "ca.pem")


# -- exposure and ports --------------------------------------------------------

def test_a_network_address_without_auth_is_refused_unless_insecure(tmp_path, tiny_embedder, token_file):
    exposed = settings_for(tmp_path, host="0.0.0.0")
    with pytest.raises(ValueError, match="refusing to serve 0.0.0.0.*--insecure"):
        with ServerThread(exposed, deps_with(exposed, tiny_embedder)):
            pass

    for allowed in (settings_for(tmp_path, host="0.0.0.0", insecure=True),
                    settings_for(tmp_path, host="0.0.0.0", auth_tokens_file=token_file)):
        with ServerThread(allowed, deps_with(allowed, tiny_embedder)) as server:
            assert health_over(f"127.0.0.1:{server.port}", None) == "SERVING"


def test_a_busy_port_is_an_error_not_a_shared_port(tmp_path, tiny_embedder):
    first = settings_for(tmp_path / "a")
    with ServerThread(first, deps_with(first, tiny_embedder)) as running:
        second = settings_for(tmp_path / "b", port=running.port)
        with pytest.raises(OSError, match="in use"):
            with ServerThread(second, deps_with(second, tiny_embedder), wait_ready=False):
                pass
        assert health_over(running.target, None) == "SERVING"


# -- secrets off the command line --------------------------------------------------

def test_secrets_come_from_files_or_the_environment_never_flags(tmp_path, monkeypatch, capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--qdrant-api-key", "visible-in-ps"])
    refusal = capsys.readouterr().err
    assert "LOOKALIKE_QDRANT_API_KEY" in refusal and "visible-in-ps" not in refusal
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--auth-tokens", f"read:{READ_TOKEN}"])

    key_file = tmp_path / "qdrant-key"
    key_file.write_text("from-a-file\n")
    settings = settings_from(parser.parse_args(["serve", "--qdrant-api-key-file", str(key_file)]))
    assert settings.qdrant_api_key == "from-a-file"
    assert "from-a-file" not in repr(settings)

    monkeypatch.setenv("LOOKALIKE_QDRANT_API_KEY", "from-the-environment")
    assert settings_from(parser.parse_args(["serve"])).qdrant_api_key == "from-the-environment"
    with pytest.raises(ValueError, match="not both"):
        settings_from(parser.parse_args(["serve", "--qdrant-api-key-file", str(key_file)]))
