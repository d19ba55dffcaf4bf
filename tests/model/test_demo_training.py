"""The demo CLIP: the training recipe learns, and the shipped folder loads and means something."""

from __future__ import annotations

import json
import math

import open_clip
import pytest
import torch

from service.demo.synthetic import generate_catalog
from service.demo.training import (
    CONFIG_FILENAME,
    MODEL_CONFIG_PATH,
    SHIPPED_MODEL_DIR,
    WEIGHTS_FILENAME,
    TrainConfig,
    _fits_another_image,
    torch_threads,
    evaluate_retrieval,
    train_demo,
)

MAX_SHIPPED_BYTES = 40 * 1000 * 1000


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch):
    # A missing hub file must fail at once instead of retrying for ~47 s.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def shipped_model():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        name = f"local-dir:{SHIPPED_MODEL_DIR}"
        model, _, preprocess = open_clip.create_model_and_transforms(name)
        tokenizer = open_clip.get_tokenizer(name)
    model.eval()
    return model, preprocess, tokenizer


def _mean(values):
    return sum(values) / len(values)


def test_tiny_run_lowers_the_loss_and_ships_what_it_evaluated(tmp_path):
    threads_before = torch.get_num_threads()
    rng_before = torch.random.get_rng_state()
    # One thread: exact losses on any machine, and no oversubscription when tests share the CPU.
    config = TrainConfig(items=160, epochs=3, batch_size=16, lr=3e-4, warmup_steps=2, eval_items=32, threads=1,
                         output_dir=tmp_path / "model")

    report = train_demo(config, progress=False)

    assert report.steps == 3 * (160 // 16) == len(report.losses)
    # ln(batch) is what a contrastive loss scores when it has learned nothing.
    assert _mean(report.losses[-6:]) < min(_mean(report.losses[:6]), math.log(config.batch_size)) - 0.2
    assert torch.get_num_threads() == threads_before
    assert torch.equal(torch.random.get_rng_state(), rng_before)

    name = f"local-dir:{config.output_dir}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    items = generate_catalog(config.eval_items, seed=config.seed, split="test")
    with torch_threads(config.threads):
        reloaded_metrics = evaluate_retrieval(model, preprocess, open_clip.get_tokenizer(name), items)
    assert reloaded_metrics == report.metrics


def test_a_partial_text_is_ambiguous_only_when_another_image_in_the_batch_fits_it():
    # Columns: shape, color, size, style. Rows 0 and 1 differ only in style.
    codes = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 4], [5, 6, 2, 3]])
    described = torch.tensor([[True, True, False, False],   # "a red circle": row 1 fits too
                              [True, True, True, True],     # full caption: unique
                              [False, True, True, True]])   # shape unsaid, but no other row has its colour
    assert _fits_another_image(codes, described).tolist() == [True, False, False]


def test_invalid_config_raises_value_error():
    with pytest.raises(ValueError):
        TrainConfig(items=10, batch_size=32)
    with pytest.raises(ValueError):
        TrainConfig(batch_size=1)


def test_shipped_folder_is_an_open_clip_local_dir_within_budget():
    local_config = json.loads((SHIPPED_MODEL_DIR / CONFIG_FILENAME).read_text())
    registered = json.loads(MODEL_CONFIG_PATH.read_text())
    assert set(local_config) == {"model_cfg", "preprocess_cfg"}
    assert local_config["model_cfg"] == registered
    assert (SHIPPED_MODEL_DIR / WEIGHTS_FILENAME).is_file()
    total = sum(path.stat().st_size for path in SHIPPED_MODEL_DIR.iterdir() if path.is_file())
    assert total <= MAX_SHIPPED_BYTES


@torch.no_grad()
def test_shipped_model_puts_a_red_circle_query_nearest_the_red_circle(shipped_model):
    model, preprocess, tokenizer = shipped_model
    catalog = generate_catalog(400, split="test")
    red_circle = next(item for item in catalog if (item.attributes["color"], item.attributes["shape"]) == ("red", "circle"))
    blue_square = next(item for item in catalog if (item.attributes["color"], item.attributes["shape"]) == ("blue", "square"))

    images = torch.stack([preprocess(red_circle.render()), preprocess(blue_square.render())])
    image_features = model.encode_image(images, normalize=True)
    text_features = model.encode_text(tokenizer(["a red circle", "a blue square"]), normalize=True)
    similarity = text_features @ image_features.T

    assert similarity[0, 0] > similarity[0, 1]
    assert similarity[1, 1] > similarity[1, 0]
