from __future__ import annotations

import io

import pytest
from PIL import Image

from service.client import LookalikeClient
from service.embedding import ClipEmbedder, ModelSpec, load_embedder
from tests.support import ServerThread, deps_with, settings_for


@pytest.fixture(scope="session", autouse=True)
def offline_hub():
    """No hub is reachable here: make any accidental download fail at once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


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
