"""Model sources: tags (offline), local-dir folders, checkpoint files, random init."""

from __future__ import annotations

import json
import time

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import save_file

from service.embedding import ModelSpec, load_embedder
from service.embedding.loader import ModelLoadError, register_model_configs
from service.embedding.spec import MODEL_CONFIG_DIR, WeightsKind


@pytest.mark.parametrize("model, pretrained, kind", [
    ("ViT-B-32", "laion2b_s34b_b79k", WeightsKind.TAG),
    ("ViT-B-32", "none", WeightsKind.RANDOM),
    ("ViT-B-32", "", WeightsKind.RANDOM),
    ("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "", WeightsKind.HF_HUB),
    ("ViT-B-32", "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", WeightsKind.HF_HUB),
])
def test_sources_parse_to_their_kind(model, pretrained, kind):
    assert ModelSpec.parse(model, pretrained).weights is kind


def test_a_missing_checkpoint_or_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ModelSpec.parse("ViT-B-32", str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="open_clip_config.json is missing"):
        ModelSpec.parse(f"local-dir:{tmp_path}", "")


def test_real_weights_fail_fast_offline_with_a_message_that_says_what_to_do():
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as raised:
        load_embedder(ModelSpec.parse("ViT-B-32", "laion2b_s34b_b79k"), device="cpu")
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert "--pretrained /path/to/open_clip_model.safetensors" in message
    assert "--model demo" in message


def _save_tiny_local_dir(embedder_model: torch.nn.Module, folder) -> None:
    folder.mkdir()
    config = {"model_cfg": open_clip.get_model_config("lookalike-tiny"),
              "preprocess_cfg": {"size": 32, "mean": list(open_clip.OPENAI_DATASET_MEAN),
                                 "std": list(open_clip.OPENAI_DATASET_STD), "interpolation": "bicubic",
                                 "resize_mode": "shortest"}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file(embedder_model.state_dict(), folder / "open_clip_model.safetensors")


def assert_same_weights(a, b) -> None:
    """Bit-identical parameters: the claim itself, and one that holds on any CPU
    (outputs of equal weights may still round differently with other thread counts)."""
    ours, theirs = a._model.state_dict(), b._model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)


def test_local_dir_and_checkpoint_file_load_the_same_weights_bit_identically(tmp_path, tiny_embedder):
    source = load_embedder(ModelSpec.parse("lookalike-tiny", "none"), device="cpu", seed=3)
    folder = tmp_path / "tiny-model"
    _save_tiny_local_dir(source._model, folder)

    from_folder = load_embedder(ModelSpec.parse(f"local-dir:{folder}", ""), device="cpu")
    from_file = load_embedder(ModelSpec.parse("lookalike-tiny", str(folder / "open_clip_model.safetensors")),
                              device="cpu")
    texts = ["a small green star", "two red circles"]
    for loaded in (from_folder, from_file):
        assert_same_weights(loaded, source)
        np.testing.assert_allclose(loaded.embed_texts(texts), source.embed_texts(texts), atol=1e-6)
    assert from_folder.identity.startswith("tiny-model@")
    assert from_file.identity.startswith("lookalike-tiny/open_clip_model.safetensors@")
    assert not np.allclose(tiny_embedder.embed_texts(texts), source.embed_texts(texts)), "seed must matter"


def test_random_init_is_reproducible_by_seed_and_says_so_in_its_identity():
    first = load_embedder(ModelSpec.parse("lookalike-tiny", "none"), device="cpu", seed=5)
    second = load_embedder(ModelSpec.parse("lookalike-tiny", "none"), device="cpu", seed=5)
    assert_same_weights(first, second)
    np.testing.assert_allclose(first.embed_texts(["same"]), second.embed_texts(["same"]), atol=1e-6)
    assert first.identity == "lookalike-tiny/random-init(seed=5)" and first.is_random_init


def test_model_configs_are_registered_once_per_process(tiny_embedder):
    """open_clip rescans every registered path on each registration; loads must not grow that list."""
    from open_clip import factory

    register_model_configs()
    before = list(factory._MODEL_CONFIG_PATHS)
    for _ in range(3):
        register_model_configs()
        load_embedder(ModelSpec.parse("lookalike-tiny", "none"), device="cpu")
    assert factory._MODEL_CONFIG_PATHS == before
    assert before.count(MODEL_CONFIG_DIR) <= 1
    assert "lookalike-tiny" in open_clip.list_models()
