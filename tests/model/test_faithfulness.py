"""The service's vectors equal open_clip's own, called directly with its own
transform and tokenizer, through the real server."""

from __future__ import annotations

import io

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from service.client import LookalikeClient
from service.embedding import ModelSpec, load_embedder
from service.embedding.loader import register_model_configs
from tests.conftest import png
from tests.support import ServerThread, deps_with, settings_for

TEXTS = ["a red circle on a white background", "two blue squares", "x" * 400]


def open_clip_reference(model_name: str, seed: int, image_bytes: list[bytes], texts: list[str]):
    register_model_configs()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
    tokenizer = open_clip.get_tokenizer(model_name)
    model.eval()
    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.open(io.BytesIO(data))) for data in image_bytes])
        images = model.encode_image(pixels)
        words = model.encode_text(tokenizer(texts))
    normalise = lambda features: (features / features.norm(dim=-1, keepdim=True)).numpy()  # noqa: E731
    return normalise(images), normalise(words)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def assert_faithful(client: LookalikeClient, model_name: str, seed: int, images: list[bytes]) -> None:
    reply = client.embed(texts=TEXTS, images=images)
    expected_images, expected_texts = open_clip_reference(model_name, seed, images, TEXTS)
    assert cosines(reply.image_vectors, expected_images).min() >= 0.99999
    assert cosines(reply.text_vectors, expected_texts).min() >= 0.99999


def test_tiny_model_vectors_equal_open_clip_called_directly(client):
    images = [png("red", size=(64, 48), shape="circle"), png((10, 200, 30), size=(30, 90))]
    assert_faithful(client, "lookalike-tiny", 0, images)


@pytest.mark.slow
def test_vit_b_32_vectors_equal_open_clip_called_directly(tmp_path):
    embedder = load_embedder(ModelSpec.parse("ViT-B-32", "none"), device="cpu", seed=0, max_batch=8)
    settings = settings_for(tmp_path, model="ViT-B-32")
    with ServerThread(settings, deps_with(settings, embedder)) as server, \
            LookalikeClient(server.target, timeout=120) as client:
        assert_faithful(client, "ViT-B-32", 0, [png("red", size=(300, 200), shape="circle"), png("blue")])
