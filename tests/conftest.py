from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from service.client import LookalikeClient
from service.embedding import ClipEmbedder, ModelSpec, load_embedder
from tests.support import ServerThread, deps_with, settings_for

# Modules whose tests compare rankings or floats computed through the model:
# CI runs them a second time with another torch thread count (marker `ranking`).
RANKING_SENSITIVE = {
    "tests/integration/test_search.py",
    "tests/integration/test_recommend.py",
    "tests/integration/test_embed.py",
    "tests/integration/test_catalog.py",
    "tests/model/test_faithfulness.py",
    "tests/model/test_loader.py",
    "tests/model/test_demo_semantics.py",
}


def pytest_collection_modifyitems(config, items):
    root = config.rootpath
    missing = sorted(path for path in RANKING_SENSITIVE if not (root / path).is_file())
    if missing:
        raise pytest.UsageError(f"RANKING_SENSITIVE names files that do not exist: {missing}")
    for item in items:
        if item.path.relative_to(root).as_posix() in RANKING_SENSITIVE:
            item.add_marker(pytest.mark.ranking)


@pytest.fixture(scope="session", autouse=True)
def offline_hub():
    """No hub is reachable here: make any accidental download fail at once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="session", autouse=True)
def torch_threads():
    """LOOKALIKE_TEST_TORCH_THREADS=n runs the session with n torch threads, so CI can
    rerun the ranking-sensitive tests with other float rounding and any test that
    leans on an order among equal scores shows on one machine. Restored afterwards."""
    wanted = os.environ.get("LOOKALIKE_TEST_TORCH_THREADS", "").strip()
    if not wanted:
        yield None
        return
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(int(wanted))
    try:
        yield int(wanted)
    finally:
        torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def tiny_embedder(offline_hub) -> ClipEmbedder:
    """A real open_clip model from a tiny JSON config, random init with a fixed seed."""
    return load_embedder(ModelSpec.parse("lookalike-tiny", "none"), device="cpu", seed=0)


@pytest.fixture
def server(tmp_path, tiny_embedder):
    settings = settings_for(tmp_path)
    with ServerThread(settings, deps_with(settings, tiny_embedder)) as running:
        yield running


@pytest.fixture
def client(server):
    with LookalikeClient(server.target, timeout=30) as connected:
        yield connected


def png(color: str | tuple, size: tuple[int, int] = (40, 40), shape: str = "square") -> bytes:
    from PIL import ImageDraw

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    box = (5, 5, size[0] - 5, size[1] - 5)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=color)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
