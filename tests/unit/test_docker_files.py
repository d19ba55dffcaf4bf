"""No Docker engine runs here, so the images, the compose file and the Envoy
and Prometheus configs are checked statically: the compose specification's
JSON schema, Envoy's own protobuf schema (xds-protos), and the deployment's
promises read from the parsed files (pinned images, a fully formed 3-node
cluster reached through more than one node, replicas behind a health-checked
gRPC load balancer, every replica scraped, no default secrets, a non-root
image with one CUDA version). The shell health checks and the cluster-wait
script run for real against local stand-ins."""

from __future__ import annotations

import fnmatch
import http.server
import importlib
import json
import pkgutil
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from concurrent import futures
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlparse

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from service.config import Settings

DOCKER = Path(__file__).resolve().parents[2] / "docker"
ROOT = DOCKER.parent
QDRANT_NODES = ["qdrant-0", "qdrant-1", "qdrant-2"]
SECRET_NAME = re.compile(r"API_KEY|TOKEN|SECRET|PASSWORD|PRIVATE", re.IGNORECASE)
# An exact release (v1.2.3, 3.11.15-slim-bookworm, distroless-v1.39.1) or a digest.
PINNED_TAG = re.compile(r"^[\w./-]+:(?:[a-z-]*-)?v?\d+\.\d+\.\d+(?:-[\w.]+)?(?:@sha256:[0-9a-f]{64})?$")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def lookalike_services(services: dict) -> dict:
    """The services running `lookalike serve` (not the one-shot init that shares the image)."""
    return {name: spec for name, spec in services.items()
            if spec.get("image", "").startswith("lookalike:") and "entrypoint" not in spec}


def config_file(compose: dict, service: dict, target: str) -> Path:
    """The host file mounted at `target` through compose `configs:`."""
    for entry in service.get("configs", []):
        if entry["target"] == target:
            return DOCKER / compose["configs"][entry["source"]]["file"]
    raise AssertionError(f"nothing mounted at {target}")


def envoy_config(compose: dict, service_name: str) -> dict:
    return yaml.safe_load(config_file(compose, compose["services"][service_name], "/etc/envoy/envoy.yaml").read_text())


def prometheus_config(compose: dict) -> dict:
    path = config_file(compose, compose["services"]["prometheus"], "/etc/prometheus/prometheus.yml")
    return yaml.safe_load(path.read_text())


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with VAR unset; $$ is a literal $."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)).replace("$$", "$")


def healthcheck_script(spec: dict) -> str:
    test = spec["healthcheck"]["test"]
    assert test[:3] == ["CMD", "bash", "-c"], "exec form with bash: /bin/sh is dash, which has no /dev/tcp"
    return interpolate(test[3])


# -- schema ---------------------------------------------------------------------

def test_compose_matches_the_compose_specification_schema():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(DOCKER / "compose.yaml")], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_compose_file(tmp_path):
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  a:\n    image: x:1.0.0\n    depends_on: {b: {condition: sometimes}}\n")
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(broken)],
        check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0


def _import_envoy_types(node) -> None:
    """Import the generated modules of every `@type` in an Envoy config, so
    protobuf can parse (and check) the typed configs inside Any fields."""
    if isinstance(node, dict):
        url = node.get("@type")
        if url:
            package = url.rsplit("/", 1)[1].rsplit(".", 1)[0]
            module = importlib.import_module(package)
            for info in pkgutil.iter_modules(module.__path__):
                if info.name.endswith("_pb2"):
                    importlib.import_module(f"{package}.{info.name}")
        for value in node.values():
            _import_envoy_types(value)
    elif isinstance(node, list):
        for value in node:
            _import_envoy_types(value)


@pytest.mark.parametrize("service_name", ["lb", "qdrant-lb"])
def test_envoy_configs_parse_as_envoy_bootstrap_messages(compose, service_name):
    """Envoy's own schema: an unknown field, a wrong type or an unknown @type fails here."""
    from envoy.config.bootstrap.v3 import bootstrap_pb2
    from google.protobuf import json_format

    config = envoy_config(compose, service_name)
    _import_envoy_types(config)
    bootstrap = json_format.ParseDict(config, bootstrap_pb2.Bootstrap())
    clusters = {cluster.name for cluster in bootstrap.static_resources.clusters}
    assert clusters
    routed = set(re.findall(r'"cluster": "([^"]+)"', json.dumps(config)))
    assert routed and routed <= clusters, f"routes to unknown clusters: {routed - clusters}"
    assert bootstrap.admin.address.socket_address.address == "127.0.0.1", "Envoy's admin API must stay off the network"

    config["static_resources"]["clusters"][0]["lb_polcy"] = "ROUND_ROBIN"
    with pytest.raises(json_format.ParseError):
        json_format.ParseDict(config, bootstrap_pb2.Bootstrap())


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_prometheus_config_passes_promtool(compose, tmp_path):
    text = config_file(compose, compose["services"]["prometheus"], "/etc/prometheus/prometheus.yml").read_text()
    (tmp_path / "key").write_text("not-a-real-key\n")
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("/run/secrets/qdrant_api_key", str(tmp_path / "key")))
    result = subprocess.run(["promtool", "check", "config", str(config)], check=False, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# -- images ---------------------------------------------------------------------

def test_every_image_is_pinned_to_an_exact_release(services):
    version = PYPROJECT["project"]["version"]
    for name, spec in services.items():
        image = spec["image"]
        if "build" in spec:
            assert re.fullmatch(rf"lookalike:{re.escape(version)}-(cpu|cuda)", image), f"{name}: {image}"
        else:
            assert PINNED_TAG.match(image), f"{name}: {image} is not pinned to an exact release"
        assert ":latest" not in image


def _from_lines(dockerfile: str) -> list[str]:
    return re.findall(r"^FROM\s+(\S+)", (DOCKER / dockerfile).read_text(), re.MULTILINE)


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_bases_are_pinned_python_311(dockerfile):
    floor = re.search(r">=(\d+\.\d+)", PYPROJECT["project"]["requires-python"])
    assert floor
    wanted = floor.group(1)
    bases = _from_lines(dockerfile)
    assert bases
    for base in bases:
        assert re.fullmatch(rf"python:{re.escape(wanted)}\.\d+-slim-\w+(@sha256:[0-9a-f]{{64}})?", base), base


def _pin(name: str) -> str:
    requirements = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["server"]
    for requirement in requirements:
        match = re.fullmatch(rf"{name}==(\S+)", requirement)
        if match:
            return match.group(1)
    raise AssertionError(f"{name} is not pinned in pyproject.toml")


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_install_the_server_not_just_the_client(dockerfile):
    """The base install is the light client; `lookalike serve` needs the extra that brings the model."""
    installs = re.findall(r"pip install ['\"]?\.(\[[\w,]+\])?['\"]?(?:\s|$)", (DOCKER / dockerfile).read_text())
    assert len(installs) == 1, "one install of the project"
    extras = installs[0].strip("[]").split(",") if installs[0] else []
    optional = PYPROJECT["project"].get("optional-dependencies", {})
    brought = [requirement for extra in extras for requirement in optional.get(extra, [])]
    assert any(requirement.startswith("torch==") for requirement in brought), \
        f"{dockerfile} installs the project without the extra that has the server's dependencies"


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_install_the_torch_pair_pyproject_pins(dockerfile):
    text = (DOCKER / dockerfile).read_text()
    assert set(re.findall(r"\btorch==(\S+)", text)) == {_pin("torch")}
    assert set(re.findall(r"\btorchvision==(\S+)", text)) == {_pin("torchvision")}


def test_the_cuda_image_has_one_cuda_version_the_one_torch_bundles():
    text = (DOCKER / "Dockerfile.cuda").read_text()
    assert not any(base.startswith("nvidia/") for base in _from_lines("Dockerfile.cuda")), \
        "a CUDA base image would bring a second CUDA beside the one in torch's wheels"
    assert "download.pytorch.org" not in text, "the PyPI wheels are the ones that bundle CUDA"
    versions = set(re.findall(r"(?i)cuda[^0-9\n]{0,4}(\d+\.\d+)", text))
    assert len(versions) == 1, f"several CUDA versions named: {versions}"
    torch_metadata = Path(pytest.importorskip("torch").__file__).parent / "version.py"
    bundled = re.search(r"^cuda\s*(?::\s*\S+)?\s*=\s*'([\d.]+)'", torch_metadata.read_text(), re.MULTILINE)
    if bundled is None:
        pytest.skip("the installed torch is a CPU build; cannot compare its CUDA version")
    assert versions == {bundled.group(1)}, f"torch {_pin('torch')} from PyPI bundles CUDA {bundled.group(1)}"


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_copy_what_exists_and_run_the_cli_as_uid_10001(dockerfile):
    text = (DOCKER / dockerfile).read_text()
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for source in sources.split():
            assert (ROOT / source).exists(), f"{dockerfile} copies missing {source}"
            assert not _dockerignored(source), f"{dockerfile} copies {source}, which .dockerignore excludes"
    assert 'ENTRYPOINT ["lookalike"]' in text and "STOPSIGNAL SIGTERM" in text
    assert re.search(r"useradd .*--uid 10001", text)
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] in {"10001", "lookalike"}, "the service must not run as root"
    # The models and data folders exist in the image and belong to that user,
    # so a named volume mounted there starts writable.
    assert re.search(r"mkdir -p /data /models\S*", text) and "chown -R 10001:10001 /data /models" in text
    assert "HF_HOME=/models/" in text
    assert "HEALTHCHECK" in text and "healthcheck.py" in text


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _dockerignored(path: str) -> bool:
    excluded = False
    for pattern in _dockerignore():
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = Path(path).parts
        hit = any(fnmatch.fnmatch("/".join(parts[:i + 1]), pattern) or
                  fnmatch.fnmatch("/".join(parts[:i + 1]), pattern.removeprefix("**/")) for i in range(len(parts)))
        if hit:
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_venv_git_and_data_out_of_the_build_context():
    for path in [".venv", ".git", "lookalike-data", "demo-output", "models", "secrets", "eval-results.json",
                 "service/__pycache__/x.pyc", ".pytest_cache", "lookalike.egg-info"]:
        assert _dockerignored(path), f"{path} would be sent to the Docker daemon"
    for path in ["pyproject.toml", "README.md", "service/cli.py", "recommender/engine.py",
                 "docker/healthcheck.py", "service/demo/model"]:
        assert not _dockerignored(path), f"{path} is needed by the build"


# -- the Qdrant cluster ---------------------------------------------------------

def test_three_qdrant_nodes_in_cluster_mode_bootstrapped_from_the_first(services):
    nodes = {name: spec for name, spec in services.items() if spec["image"].startswith("qdrant/qdrant:")}
    assert sorted(nodes) == QDRANT_NODES
    for name, spec in nodes.items():
        assert spec["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
        command = spec["command"]
        assert command[command.index("--uri") + 1] == f"http://{name}:6335"
        if name != "qdrant-0":
            assert command[command.index("--bootstrap") + 1] == "http://qdrant-0:6335"
            assert spec["depends_on"]["qdrant-0"]["condition"] == "service_healthy"
        assert any(volume.startswith(f"{name}:") for volume in spec["volumes"])
        assert "/readyz" in healthcheck_script(spec)


class _Stub(http.server.BaseHTTPRequestHandler):
    """A stand-in HTTP server: path -> (status, body), and the headers it saw."""

    routes: ClassVar[dict[str, tuple[int, bytes]]] = {}
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self):
        type(self).seen.append((self.path, self.headers.get("api-key")))
        status, body = type(self).routes.get(self.path, (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_server():
    servers = []

    def start(routes: dict[str, tuple[int, bytes]]) -> tuple[int, type[_Stub]]:
        handler = type("Stub", (_Stub,), {"routes": routes, "seen": []})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1], handler

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _run_healthcheck(script: str, default_port: int, port: int) -> int:
    script = script.replace(f"/dev/tcp/127.0.0.1/{default_port}", f"/dev/tcp/127.0.0.1/{port}")
    return subprocess.run(["bash", "-c", script], check=False, capture_output=True, timeout=30).returncode


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(("service_name", "path", "default_port"),
                         [("qdrant-0", "/readyz", 6333), ("qdrant-lb", "/ready", 9901), ("lb", "/ready", 9901)])
def test_shell_health_checks_pass_on_200_and_fail_otherwise(services, stub_server, service_name, path, default_port):
    script = healthcheck_script(services[service_name])
    assert f"GET {path} " in script
    ready, _ = stub_server({path: (200, b"all shards are ready")})
    assert _run_healthcheck(script, default_port, ready) == 0
    starting, _ = stub_server({path: (503, b"some shards are not ready")})
    assert _run_healthcheck(script, default_port, starting) != 0
    with socket_closed_port() as closed:
        assert _run_healthcheck(script, default_port, closed) != 0


class socket_closed_port:
    """A loopback port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        return self._socket.getsockname()[1]

    def __exit__(self, *exc):
        self._socket.close()


def _cluster_reply(peers: int, leader: int | None = 1, pending: int = 0) -> bytes:
    return json.dumps({"status": "ok", "result": {
        "status": "enabled", "peer_id": 1,
        "peers": {str(i): {"uri": f"http://qdrant-{i}:6335/"} for i in range(1, peers + 1)},
        "raft_info": {"term": 2, "commit": 9, "pending_operations": pending, "leader": leader,
                      "role": "Follower", "is_voter": True},
        "consensus_thread_status": {"consensus_thread_status": "working", "last_update": "2026-01-01T00:00:00Z"},
        "message_send_failures": {}}}).encode()


def _init_script(services) -> tuple[list[str], list[str]]:
    """The init service's script (host path) and its arguments."""
    init = services["qdrant-init"]
    script = Path(init["entrypoint"][1])
    assert script.parent == Path("/opt/lookalike/share/lookalike")
    return [sys.executable, str(DOCKER / script.name)], init["command"]


def test_the_init_step_waits_for_every_node_of_the_cluster(services):
    init = services["qdrant-init"]
    _, args = _init_script(services)
    nodes = args[args.index("--nodes") + 1].split(",")
    assert sorted(urlparse(node).hostname or "" for node in nodes) == QDRANT_NODES
    assert {name: init["depends_on"][name]["condition"] for name in QDRANT_NODES} == dict.fromkeys(
        QDRANT_NODES, "service_healthy")
    assert args[args.index("--api-key-file") + 1] == "/run/secrets/qdrant_api_key"
    for spec in lookalike_services(services).values():
        assert spec["depends_on"]["qdrant-init"]["condition"] == "service_completed_successfully"


def test_the_init_script_succeeds_only_on_a_fully_formed_cluster(services, stub_server, tmp_path):
    command, _ = _init_script(services)
    key = tmp_path / "key"
    key.write_text("k3y\n")

    def run(replies: list[bytes], timeout: str = "0.5") -> tuple[subprocess.CompletedProcess, list[type[_Stub]]]:
        nodes = []
        handlers = []
        for reply in replies:
            port, handler = stub_server({"/readyz": (200, b"ok"), "/cluster": (200, reply)})
            nodes.append(f"http://127.0.0.1:{port}")
            handlers.append(handler)
        result = subprocess.run([*command, "--nodes", ",".join(nodes), "--api-key-file", str(key),
                                 "--timeout", timeout, "--interval", "0.1"],
                                check=False, capture_output=True, text=True, timeout=60)
        return result, handlers

    formed, handlers = run([_cluster_reply(3)] * 3)
    assert formed.returncode == 0, formed.stderr
    for handler in handlers:
        assert ("/cluster", "k3y") in handler.seen, "the cluster API needs the key"
        assert ("/readyz", None) in handler.seen, "readiness is asked without the key"

    partial, _ = run([_cluster_reply(3), _cluster_reply(2), _cluster_reply(3)])
    assert partial.returncode == 1 and "knows 2 of 3 peers" in partial.stderr
    leaderless, _ = run([_cluster_reply(3, leader=None)] * 3)
    assert leaderless.returncode == 1 and "no Raft leader" in leaderless.stderr
    busy, _ = run([_cluster_reply(3, pending=2)] * 3)
    assert busy.returncode == 1 and "2 consensus operations pending" in busy.stderr


def test_replicas_reach_qdrant_through_a_health_checked_balancer_over_every_node(compose, services):
    envoy = envoy_config(compose, "qdrant-lb")
    listeners = {listener["address"]["socket_address"]["port_value"]
                 for listener in envoy["static_resources"]["listeners"]}
    assert {6333, 6334} <= listeners, "REST and gRPC both go through the balancer"
    for cluster in envoy["static_resources"]["clusters"]:
        hosts = [endpoint["endpoint"]["address"]["socket_address"]["address"]
                 for group in cluster["load_assignment"]["endpoints"] for endpoint in group["lb_endpoints"]]
        assert sorted(hosts) == QDRANT_NODES, f"{cluster['name']} must list every node"
        assert [check["http_health_check"]["path"] for check in cluster["health_checks"]] == ["/readyz"]
        endpoints = [entry["endpoint"] for group in cluster["load_assignment"]["endpoints"]
                     for entry in group["lb_endpoints"]]
        ports = {endpoint.get("health_check_config", {}).get("port_value",
                                                             endpoint["address"]["socket_address"]["port_value"])
                 for endpoint in endpoints}
        assert ports == {6333}, "/readyz lives on the REST port"
    for name, spec in lookalike_services(services).items():
        url = urlparse(spec["environment"]["LOOKALIKE_QDRANT_URL"])
        assert url.hostname == "qdrant-lb" and url.port in listeners, f"{name} must not depend on one node"
        assert spec["depends_on"]["qdrant-lb"]["condition"] == "service_healthy"
        assert int(spec["environment"]["LOOKALIKE_QDRANT_REPLICATION_FACTOR"]) >= 2
        assert int(spec["environment"]["LOOKALIKE_QDRANT_SHARD_NUMBER"]) >= 1
    assert set(services["qdrant-lb"]["depends_on"]) == set(QDRANT_NODES)


def test_qdrant_is_on_an_internal_network_only(compose, services):
    assert compose["networks"]["storage"]["internal"] is True
    for name in [*QDRANT_NODES, "qdrant-lb"]:
        assert services[name]["networks"] == ["storage"]
        assert "ports" not in services[name], f"{name} must not be published"


# -- the Lookalike replicas and their load balancer -----------------------------

def test_two_or_more_replicas_sit_behind_a_grpc_health_checked_balancer(compose, services):
    replicas = lookalike_services(services)
    assert list(replicas) == ["lookalike"], "one scalable service, found by DNS"
    spec = replicas["lookalike"]
    assert spec["deploy"]["replicas"] >= 2
    assert "ports" not in spec, "clients reach replicas only through the balancer"
    port = int(spec["environment"]["LOOKALIKE_PORT"])

    envoy = envoy_config(compose, "lb")
    (cluster,) = envoy["static_resources"]["clusters"]
    assert cluster["type"] == "STRICT_DNS", "every replica address, not the first"
    (address,) = [endpoint["endpoint"]["address"]["socket_address"]
                  for group in cluster["load_assignment"]["endpoints"] for endpoint in group["lb_endpoints"]]
    assert address == {"address": "lookalike", "port_value": port}
    assert cluster["health_checks"][0]["grpc_health_check"] == {}
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"], "gRPC needs HTTP/2 to the replicas"
    assert cluster["common_lb_config"]["healthy_panic_threshold"]["value"] == 0

    (listener,) = envoy["static_resources"]["listeners"]
    published = {int(str(entry).rsplit(":", 1)[1]) for entry in services["lb"]["ports"]}
    assert published == {listener["address"]["socket_address"]["port_value"]}
    (chain,) = listener["filter_chains"]
    assert chain["transport_socket"]["name"] == "envoy.transport_sockets.tls"
    assert chain["transport_socket"]["typed_config"]["common_tls_context"]["alpn_protocols"] == ["h2"]


def test_writes_are_retried_only_when_they_never_reached_a_replica(compose):
    envoy = envoy_config(compose, "lb")
    manager = envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (host,) = manager["route_config"]["virtual_hosts"]
    reads = {"/lookalike.v1.EmbeddingService/Embed", "/lookalike.v1.SearchService/Search",
             "/lookalike.v1.SearchService/SimilarItems", "/lookalike.v1.CatalogService/GetItems",
             "/lookalike.v1.RecommendationService/Recommend", "/lookalike.v1.RecommendationService/GetProfile"}
    for route in host["routes"]:
        retry_on = set(route["route"]["retry_policy"]["retry_on"].split(","))
        if route["match"].get("path") in reads:
            assert "unavailable" in retry_on
        else:
            assert route["match"] == {"prefix": "/"}
            assert retry_on <= {"connect-failure", "refused-stream"}, "a write may not run twice"
        assert route["route"]["timeout"] == "0s", "streams may outlive any fixed route timeout"
    assert {route["match"].get("path") for route in host["routes"]} >= reads
    protos = "".join(path.read_text() for path in (ROOT / "protos" / "lookalike" / "v1").glob("*.proto"))
    for path in reads:
        service, method = path.rsplit("/", 1)
        assert f"service {service.rsplit('.', 1)[1]} " in protos and f"rpc {method}(" in protos, path


def test_prometheus_scrapes_every_replica_and_every_qdrant_node(compose, services):
    spec = lookalike_services(services)["lookalike"]
    metrics_port = int(spec["environment"]["LOOKALIKE_METRICS_PORT"])
    jobs = {job["job_name"]: job for job in prometheus_config(compose)["scrape_configs"]}
    (discovery,) = jobs["lookalike"]["dns_sd_configs"]
    assert discovery["names"] == ["lookalike"] and discovery["type"] == "A", "one target per replica address"
    assert discovery["port"] == metrics_port
    assert jobs["lookalike"].get("metrics_path", "/metrics") == "/metrics"
    targets = {target for group in jobs["qdrant"]["static_configs"] for target in group["targets"]}
    assert targets == {f"{node}:6333" for node in QDRANT_NODES}
    assert set(services["prometheus"]["networks"]) >= set(spec["networks"]) & {"edge", "storage"}
    for port in services["prometheus"]["ports"]:
        assert str(port).startswith("127.0.0.1:"), "Prometheus has no auth: loopback only"


def test_replicas_drain_before_they_are_killed(services):
    spec = lookalike_services(services)["lookalike"]
    grace = float(spec["environment"]["LOOKALIKE_GRACE_SECONDS"])
    stop = int(spec["stop_grace_period"].removesuffix("s"))
    assert stop > grace


def test_models_live_on_a_named_volume_the_image_user_owns(compose, services):
    spec = lookalike_services(services)["lookalike"]
    mounts = {entry.split(":")[1]: entry.split(":")[0] for entry in spec["volumes"]}
    assert mounts["/models"] in compose["volumes"], "a named volume starts as a copy of the image's /models (uid 10001)"


# -- secrets --------------------------------------------------------------------

def test_no_secret_has_a_default_value_anywhere(compose, services):
    text = "\n".join(path.read_text() for path in DOCKER.rglob("*") if path.is_file() and path.suffix != ".py")
    assert "change-me" not in text
    for name, default in re.findall(r"\$\{([A-Z_]+):?-([^}]*)\}", text):
        assert not SECRET_NAME.search(name), f"${{{name}}} has a default ({default!r})"
    for service_name, spec in services.items():
        for variable, value in (spec.get("environment") or {}).items():
            if SECRET_NAME.search(variable):
                assert variable.endswith("_FILE") and str(value).startswith("/run/secrets/"), \
                    f"{service_name}: {variable} must name a secret file, not hold a value"
    for name, secret in compose["secrets"].items():
        assert set(secret) == {"file"} and secret["file"].startswith("${LOOKALIKE_SECRETS_DIR:?"), name


def test_every_secret_file_a_service_reads_is_mounted_in_it(compose, services):
    for service_name, spec in services.items():
        mounted = set(spec.get("secrets", []))
        assert mounted <= set(compose["secrets"]), service_name
        used = set(re.findall(r"/run/secrets/(\w+)", json.dumps(spec)))
        for entry in spec.get("configs", []):
            used |= set(re.findall(r"/run/secrets/(\w+)", config_file(compose, spec, entry["target"]).read_text()))
        assert used <= mounted, f"{service_name} reads {sorted(used - mounted)} without mounting them"
        flags = [str(arg) for arg in spec.get("command", []) if str(arg).startswith("--")]
        for flag in flags:
            assert not SECRET_NAME.search(flag.replace("-", "_")) or flag.endswith("-file"), \
                f"{service_name}: {flag} puts a secret in argv"


def test_qdrant_reads_its_api_key_from_the_secret_file(services):
    for name in QDRANT_NODES:
        entrypoint = services[name]["entrypoint"]
        assert entrypoint[:2] == ["bash", "-c"]
        assert 'QDRANT__SERVICE__API_KEY="$$(< /run/secrets/qdrant_api_key)"' in entrypoint[2]
        assert 'exec ./qdrant "$$@"' in entrypoint[2]
        assert "QDRANT__SERVICE__API_KEY" not in services[name]["environment"]


def test_the_qdrant_entrypoint_exports_the_key_and_passes_the_arguments(services, tmp_path):
    """Run the entrypoint's shell line with a fake ./qdrant that prints what it got."""
    secrets = tmp_path / "run" / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "qdrant_api_key").write_text("s3cret\n")
    (tmp_path / "qdrant").write_text('#!/bin/sh\necho "key=$QDRANT__SERVICE__API_KEY args=$*"\n')
    (tmp_path / "qdrant").chmod(0o755)
    spec = services["qdrant-1"]
    line = interpolate(spec["entrypoint"][2]).replace("/run/secrets/", f"{secrets}/")
    result = subprocess.run(["bash", "-c", line, *spec["entrypoint"][3:], *spec["command"]],
                            cwd=tmp_path, check=False, capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "key=s3cret args=" + " ".join(spec["command"])


# -- settings -------------------------------------------------------------------

def settings_variables(environment: dict) -> set[str]:
    return {name for name in environment if name.startswith("LOOKALIKE_")}


def test_every_lookalike_variable_is_a_setting(services):
    fields = {f"LOOKALIKE_{name.upper()}" for name in Settings.model_fields}
    used = set()
    for spec in services.values():
        used |= settings_variables(spec.get("environment", {}))
    for dockerfile in DOCKER.glob("Dockerfile*"):
        used |= set(re.findall(r"\b(LOOKALIKE_[A-Z_]+)=", dockerfile.read_text()))
    assert used and used <= fields, f"unknown settings: {sorted(used - fields)}"


def test_compose_environment_builds_valid_settings(services, monkeypatch, tmp_path):
    environment = lookalike_services(services)["lookalike"]["environment"]
    for name, value in environment.items():
        if name.startswith("LOOKALIKE_"):
            value = interpolate(value)
            if name.endswith("_FILE"):  # the secret files exist only inside the container
                stand_in = tmp_path / Path(value).name
                stand_in.write_text("read:t0ken\n" if "TOKENS" in name else "k3y\n")
                value = str(stand_in)
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert urlparse(settings.qdrant_url).hostname == "qdrant-lb" and settings.payload_indexes["price"] == "float"
    assert settings.host == "0.0.0.0" and settings.metrics_port == 9464


# -- the image's health check -----------------------------------------------------

@pytest.fixture
def health_server():
    servers = []

    def start(status, credentials=None) -> tuple[int, health.HealthServicer]:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        servicer = health.HealthServicer()
        servicer.set("", status)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        address = "127.0.0.1:0"
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        server.start()
        servers.append(server)
        return port, servicer

    yield start
    for server in servers:
        server.stop(None)


def _healthcheck():
    sys.path.insert(0, str(DOCKER))
    try:
        return importlib.import_module("healthcheck")
    finally:
        sys.path.remove(str(DOCKER))


def test_the_image_health_check_passes_only_on_serving(health_server):
    check = _healthcheck()
    port, servicer = health_server(health_pb2.HealthCheckResponse.SERVING)
    assert check.main({"LOOKALIKE_PORT": str(port)}) == 0
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert check.main({"LOOKALIKE_PORT": str(port)}) == 1
    with socket_closed_port() as closed:
        assert check.main({"LOOKALIKE_PORT": str(closed)}) == 1


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_the_image_health_check_speaks_tls_when_the_server_does(health_server, tmp_path):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port, _ = health_server(health_pb2.HealthCheckResponse.SERVING, credentials)
    check = _healthcheck()
    environment = {"LOOKALIKE_PORT": str(port),
                   "LOOKALIKE_TLS_CERT_FILE": str(cert), "LOOKALIKE_TLS_KEY_FILE": str(key)}
    assert check.main(environment) == 0
    assert check.main({"LOOKALIKE_PORT": str(port)}) == 1, "plaintext against a TLS port must fail"
