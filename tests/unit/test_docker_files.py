"""No Docker engine runs here, so the images and the compose file are checked
statically: structure, the 3-node cluster wiring, and that every LOOKALIKE_*
variable they set is a real setting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from service.config import Settings

DOCKER = Path(__file__).resolve().parents[2] / "docker"
ROOT = DOCKER.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def settings_variables(environment: dict) -> set[str]:
    return {name for name in environment if name.startswith("LOOKALIKE_")}


def test_the_cluster_has_three_qdrant_nodes_bootstrapped_from_the_first(compose):
    nodes = {name: spec for name, spec in compose["services"].items() if name.startswith("qdrant-")}
    assert sorted(nodes) == ["qdrant-0", "qdrant-1", "qdrant-2"]
    for name, spec in nodes.items():
        assert spec["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
        command = spec["command"]
        assert command[command.index("--uri") + 1] == f"http://{name}:6335"
        if name != "qdrant-0":
            assert command[command.index("--bootstrap") + 1] == "http://qdrant-0:6335"
        assert any(volume.startswith(f"{name}:") for volume in spec["volumes"])


def test_replicas_point_at_the_cluster_and_wait_for_it(compose):
    replicas = {name: spec for name, spec in compose["services"].items() if name.startswith("lookalike-")}
    assert len(replicas) >= 2
    ports = set()
    for spec in replicas.values():
        environment = spec["environment"]
        assert re.fullmatch(r"http://qdrant-\d:6334", environment["LOOKALIKE_QDRANT_URL"])
        assert set(spec["depends_on"]) == {"qdrant-0", "qdrant-1", "qdrant-2"}
        assert int(environment["LOOKALIKE_QDRANT_REPLICATION_FACTOR"]) >= 2
        ports.add(spec["ports"][0].split(":")[0])
    assert len(ports) == len(replicas), "each replica needs its own host port"


def test_every_lookalike_variable_is_a_setting(compose):
    fields = {f"LOOKALIKE_{name.upper()}" for name in Settings.model_fields}
    used = set()
    for spec in compose["services"].values():
        used |= settings_variables(spec.get("environment", {}))
    for dockerfile in DOCKER.glob("Dockerfile*"):
        used |= set(re.findall(r"\b(LOOKALIKE_[A-Z_]+)=", dockerfile.read_text()))
    assert used and used <= fields, f"unknown settings: {sorted(used - fields)}"


def test_compose_environment_builds_valid_settings(compose, monkeypatch):
    environment = compose["services"]["lookalike-a"]["environment"]
    for name, value in environment.items():
        if name.startswith("LOOKALIKE_"):
            monkeypatch.setenv(name, re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)))
    settings = Settings()
    assert settings.qdrant_url == "http://qdrant-0:6334" and settings.payload_indexes["price"] == "float"


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_copy_what_exists_and_run_the_cli(dockerfile):
    text = (DOCKER / dockerfile).read_text()
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / source).exists(), f"{dockerfile} copies missing {source}"
    assert 'ENTRYPOINT ["lookalike"]' in text and "STOPSIGNAL SIGTERM" in text
    assert "USER lookalike" in text, "the service must not run as root"
