"""The demo CLIP: the training recipe learns, and the shipped folder loads and means something."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import open_clip
import pytest
import torch
from safetensors import safe_open

from service.demo.synthetic import color_shape, generate_catalog
from service.demo.training import (
    CONFIG_FILENAME,
    MODEL_CONFIG_PATH,
    SHIPPED_MODEL_DIR,
    WEIGHTS_FILENAME,
    TrainConfig,
    _fits_another_image,
    build_parser,
    config_from_args,
    evaluate_retrieval,
    evaluate_retrieval_by_pairs,
    torch_threads,
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
    held_out = color_shape(generate_catalog(1, split="test")[0])  # a pair the 32 test images surely include
    config = TrainConfig(items=160, epochs=3, batch_size=16, lr=3e-4, warmup_steps=2, eval_items=32, threads=1,
                         output_dir=tmp_path / "model", holdout_pairs=(held_out,))

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
    # The held-out pair never reached training, and is scored apart from the pairs that did.
    assert report.holdout_metrics is not None and report.seen_metrics is not None
    recorded = json.loads(_header(config.output_dir / WEIGHTS_FILENAME)["train_config"])
    assert recorded["holdout_pairs"] == [list(held_out)]


def _header(weights_path):
    with safe_open(str(weights_path), "pt") as weights:
        return weights.metadata()


def test_the_default_recipe_is_the_one_that_made_the_shipped_weights():
    """`lookalike train-demo --output service/demo/model` must reproduce the shipped file: its header records
    the recipe it was trained with, and the CLI's defaults must equal it."""
    recorded = json.loads(_header(SHIPPED_MODEL_DIR / WEIGHTS_FILENAME)["train_config"])
    defaults = {name: value for name, value in asdict(TrainConfig()).items() if name != "output_dir"}
    # Options added after the shipped run are absent from its header; they must default to "off".
    added_since = {"holdout_pairs": ()}
    assert set(defaults) == set(recorded) | set(added_since)
    assert {name: defaults[name] for name in added_since} == added_since
    assert {name: defaults[name] for name in recorded} == recorded
    from_cli = config_from_args(build_parser().parse_args(["--output", str(SHIPPED_MODEL_DIR)]))
    assert from_cli == TrainConfig(output_dir=SHIPPED_MODEL_DIR)


def test_holdout_queries_compete_with_the_whole_gallery(shipped_model):
    model, preprocess, tokenizer = shipped_model
    items = generate_catalog(120, split="test")
    held_out = color_shape(items[0])
    with torch_threads(1):
        results = evaluate_retrieval_by_pairs(model, preprocess, tokenizer, items, [held_out])
        assert results["all"] == evaluate_retrieval(model, preprocess, tokenizer, items)
    assert set(results) == {"all", "holdout", "seen"}
    # A held-out image ranks every caption of the world, and a short query every image of the gallery.
    assert results["holdout"]["i2t_chance_R@1"] == pytest.approx(1 / 384, abs=1e-4)
    share = sum(color_shape(item) == held_out for item in items) / len(items)
    assert results["holdout"]["t2i_short_chance_R@1"] == pytest.approx(share, abs=1e-4)
    with pytest.raises(ValueError, match="unknown colour"):
        TrainConfig(holdout_pairs=(("mauve", "circle"),))


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
    def kind(item) -> tuple[str, str]:
        return item.attributes["color"], item.attributes["shape"]

    red_circle = next(item for item in catalog if kind(item) == ("red", "circle"))
    blue_square = next(item for item in catalog if kind(item) == ("blue", "square"))

    images = torch.stack([preprocess(red_circle.render()), preprocess(blue_square.render())])
    image_features = model.encode_image(images, normalize=True)
    text_features = model.encode_text(tokenizer(["a red circle", "a blue square"]), normalize=True)
    similarity = text_features @ image_features.T

    assert similarity[0, 0] > similarity[0, 1]
    assert similarity[1, 1] > similarity[1, 0]
