"""What only the server implementation does: replicas racing to create collections,
and a URL's ports honoured. No Qdrant server runs here: the race is replayed on
qdrant-client's local mode, the ports are checked with real sockets."""

from __future__ import annotations

import socket
import threading

import pytest
from qdrant_client import QdrantClient

from recommender.errors import Unavailable
from recommender.storage.server import open_server
from service.config import Settings
from service.qdrant_connection import client_arguments
from service.runtime import storage_opener

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")


class LateReplica(QdrantClient):
    """A client that sees no collection at first, as a replica does when another one
    creates the collection between its check and its create."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hidden = True

    def collection_exists(self, collection_name: str, **kwargs) -> bool:
        if self.hidden:
            self.hidden = False
            return False
        return super().collection_exists(collection_name, **kwargs)


def test_a_replica_that_loses_the_creation_race_uses_the_winners_collection(tmp_path):
    client = LateReplica(path=str(tmp_path))
    try:
        winner = open_server(client, "items", "model-a", 4, close_client=False)
        assert winner.catalog.mismatch is None
        client.hidden = True
        loser = open_server(client, "items", "model-b", 4, close_client=False)
        assert loser.catalog.mismatch and "model-a" in loser.catalog.mismatch, "metadata is read back, not assumed"
    finally:
        client.close()


def listening_socket() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server, server.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("url_of, grpc_port_of", [
    (lambda port: f"http://127.0.0.1:{port}", lambda port: None),  # REST on the URL's port
    (lambda port: f"grpc://127.0.0.1:{port}", lambda port: None),  # gRPC on the URL's port
    (lambda port: f"http://127.0.0.1:{closed_port()}", lambda port: port),  # gRPC on LOOKALIKE_QDRANT_GRPC_PORT
])
def test_the_client_dials_the_port_it_was_given(tmp_path, url_of, grpc_port_of):
    server, port = listening_socket()
    dialled = threading.Event()

    def accept() -> None:
        server.settimeout(10)
        try:
            connection, _ = server.accept()
            dialled.set()
            connection.close()
        except OSError:
            pass

    acceptor = threading.Thread(target=accept)
    acceptor.start()
    try:
        settings = Settings(data_dir=tmp_path, qdrant_url=url_of(port), qdrant_grpc_port=grpc_port_of(port),
                            qdrant_timeout_s=2)
        with pytest.raises(Exception):  # noqa: B017 - not a Qdrant at the other end; only the dial matters
            storage_opener(settings)("model-a", 4)
        assert dialled.wait(10), f"nothing connected to port {port}"
    finally:
        server.close()
        acceptor.join()


@pytest.mark.parametrize("scheme, grpc_port", [("http", None), ("grpc", None), ("http", "closed")])
def test_an_unreachable_store_is_unavailable_and_names_the_port_dialled(tmp_path, scheme, grpc_port):
    port = closed_port()
    grpc = closed_port() if grpc_port else None
    settings = Settings(data_dir=tmp_path, qdrant_url=f"{scheme}://127.0.0.1:{port}", qdrant_grpc_port=grpc,
                        qdrant_timeout_s=2)
    with pytest.raises(Unavailable) as raised:
        storage_opener(settings)("model-a", 4)
    assert str(grpc or port) in str(raised.value)


def test_urls_map_to_ports_and_defaults():
    assert client_arguments("http://q:7000") == dict(host="q", port=7000, https=False, prefix=None,
                                                     prefer_grpc=False)
    assert client_arguments("https://q") ["port"] == 6333
    grpc = client_arguments("grpc://q")
    assert (grpc["grpc_port"], grpc["prefer_grpc"]) == (6334, True)
    both = client_arguments("http://q:7000", grpc_port=7001)
    assert (both["port"], both["grpc_port"], both["prefer_grpc"]) == (7000, 7001, True)
    with pytest.raises(ValueError, match="must look like"):
        client_arguments("q:6333")
