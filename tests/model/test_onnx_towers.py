"""The ONNX Runtime model stage gives torch's vectors: the shipped demo model, the tiny test
model, and a tiny model of every text-tower kind TextTower trims or runs at full length;
exported once per cache, served through a real server."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import torch
from prometheus_client import generate_latest

from service.client import LookalikeClient, NewItem
from service.embedding import ModelSpec, load_embedder
from service.embedding.onnx_towers import (
    META_FILE,
    OnnxTextTower,
    cache_folder,
    export_text_tower,
    load_onnx_towers,
    open_session,
)
from service.embedding.spec import DEMO_MODEL_DIR
from service.embedding.text_tower import TextTower
from service.runtime import Dependencies
from tests.conftest import png
from tests.model.test_text_tower import _tiny, _tokens
from tests.support import ServerThread, settings_for

MAX_ABS = 1e-4
MIN_COSINE = 0.99999
TEXTS = ["a", "a red circle", "two blue squares on a white background, side by side", "x" * 400, "",
         "a photo of a green triangle"]


def _images(count: int) -> list[bytes]:
    colours = ["red", "blue", (10, 200, 30), "black", "orange"]
    return [png(colours[index % len(colours)], size=(30 + 7 * index, 40 + 3 * (index % 4)),
                shape="circle" if index % 2 else "square") for index in range(count)]


def assert_same_vectors(mine: np.ndarray, reference: np.ndarray) -> None:
    assert mine.shape == reference.shape and mine.dtype == np.float32
    assert np.abs(mine - reference).max() <= MAX_ABS
    assert np.sum(mine * reference, axis=1).min() >= MIN_COSINE


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def tiny_onnx_embedder(onnx_cache):
    """lookalike-tiny on ONNX Runtime, seed 0 like tiny_embedder: the same weights, so the same vectors."""
    return load_embedder(ModelSpec.parse("lookalike-tiny", "none"), device="cpu", seed=0, max_batch=4,
                         runtime="onnx", onnx_cache_dir=onnx_cache)


def test_tiny_model_vectors_equal_torch_for_every_batch_shape(tiny_embedder, tiny_onnx_embedder):
    assert tiny_onnx_embedder.runtime == "onnx" and tiny_embedder.runtime == "torch"
    assert tiny_onnx_embedder.text_tower.trims
    # max_batch 4: 1, an odd batch, and more than one model batch (4 + 3).
    for count in (1, 3, 7):
        images = _images(count)
        assert_same_vectors(tiny_onnx_embedder.embed_images(images), tiny_embedder.embed_images(images))
    for texts in (TEXTS[:1], TEXTS[:5], TEXTS + TEXTS[::-1][:3]):  # short only, mixed lengths, 9 texts
        assert_same_vectors(tiny_onnx_embedder.embed_texts(texts), tiny_embedder.embed_texts(texts))


def test_a_trimmed_text_batch_runs_at_its_own_length(tiny_onnx_embedder):
    """The graph takes any length: a short batch is cut before ORT sees it, as under torch."""
    tower = tiny_onnx_embedder.text_tower
    short = torch.stack(tiny_onnx_embedder.prepare_texts(["a", "a red circle"]))
    assert tower.length(short) < short.shape[1]
    with torch.inference_mode():
        torch.testing.assert_close(tiny_onnx_embedder.towers.texts(short), tower.encode(short), atol=1e-5, rtol=1e-4)


def test_a_second_load_reuses_the_cached_export(onnx_cache, tiny_onnx_embedder):
    folder = tiny_onnx_embedder.towers.folder
    assert folder.parent == onnx_cache and (folder / META_FILE).is_file()
    stamps = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    again = load_embedder(ModelSpec.parse("lookalike-tiny", "none"), device="cpu", seed=0, runtime="onnx",
                          onnx_cache_dir=onnx_cache)
    assert not again.towers.exported and again.towers.folder == folder
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == stamps
    assert not [path.name for path in onnx_cache.iterdir() if path.name.startswith(".")]  # no staging left
    # Other weights under the same identity (a checkpoint replaced in place) are another cache entry.
    with torch.no_grad():
        next(again.model.parameters()).add_(1e-3)
    changed, _ = cache_folder(onnx_cache, again.identity, again.model, again.text_tower)
    assert changed != folder and again.identity == tiny_onnx_embedder.identity


@pytest.mark.skipif(not (DEMO_MODEL_DIR / "open_clip_config.json").is_file(), reason="demo model not shipped here")
def test_the_demo_model_gives_torch_vectors_on_onnx_runtime(onnx_cache):
    spec = ModelSpec.parse("demo", None)
    reference = load_embedder(spec, device="cpu", max_batch=8)
    embedder = load_embedder(spec, device="cpu", max_batch=8, runtime="onnx", onnx_cache_dir=onnx_cache)
    assert embedder.identity == reference.identity  # the runtime does not change what the vectors are
    images = _images(9)
    assert_same_vectors(embedder.embed_images(images), reference.embed_images(images))
    assert_same_vectors(embedder.embed_texts(TEXTS), reference.embed_texts(TEXTS))


# One tiny model per text-tower kind: causal pooled at the end token by id ('eos'), and the
# two full-length fallbacks (bidirectional pooled 'last'; a class token appended, CoCa).
TEXT_KINDS = [("ViT-H-14-worldwide", True), ("ViT-B-16-SigLIP", False), ("coca_ViT-B-32", False)]


@pytest.mark.parametrize("name,trims", TEXT_KINDS)
def test_every_text_tower_kind_exports_and_matches_torch(tmp_path, name, trims):
    model, text_cfg = _tiny(name)
    context = text_cfg.get("context_length", 77)
    tower = TextTower.for_model(model, probe_tokens=_tokens(text_cfg, [2, 7, context]))
    assert tower.trims == trims, tower.reason
    path = tmp_path / "text.onnx"
    export_text_tower(model, tower, _tokens(text_cfg, [4, 9, 6]), path)
    onnx_tower = OnnxTextTower(open_session(path, threads=torch.get_num_threads(), spinning=False), tower)
    for lengths in ([3], [2, 5, 9], [context, 2, 4, 8, 3]):  # batch 1, odd, longer than the sample batch
        tokens = _tokens(text_cfg, lengths)
        with torch.inference_mode():
            expected = model.encode_text(tokens)
        if isinstance(expected, tuple):  # CoCa's tower also returns its token features: the graph keeps the pooled
            expected = expected[0]
        torch.testing.assert_close(onnx_tower.encode(tokens), expected, atol=1e-5, rtol=1e-4)


def test_onnx_refuses_a_model_it_cannot_run(tiny_embedder, tmp_path):
    pixels, tokens = tiny_embedder.sample_inputs()
    half = _tiny("ViT-B-32")[0].half()
    with pytest.raises(RuntimeError, match="fp32 models on the CPU"):
        load_onnx_towers(half, TextTower.for_model(half), identity="half", sample_pixels=pixels,
                         sample_tokens=tokens, cache_dir=tmp_path, threads=1)


def test_a_served_onnx_model_answers_like_the_torch_server(tmp_path, onnx_cache, tiny_onnx_embedder, client):
    """Through settings, as `lookalike serve --runtime onnx` runs it, reusing the session's export."""
    settings = settings_for(tmp_path / "onnx", runtime="onnx", onnx_cache_dir=onnx_cache)
    images, texts = _images(5), TEXTS[:4]
    items = [NewItem(id=f"item-{index}", image=image, text=f"item {index} {texts[index % 4]}")
             for index, image in enumerate(images)]
    with ServerThread(settings, Dependencies.from_settings(settings)) as server, \
            LookalikeClient(server.target, timeout=60) as onnx_client:
        mine = onnx_client.embed(texts=texts, images=images)
        reference = client.embed(texts=texts, images=images)
        assert mine.model == reference.model
        assert_same_vectors(np.asarray(mine.text_vectors, dtype=np.float32),
                            np.asarray(reference.text_vectors, dtype=np.float32))
        assert_same_vectors(np.asarray(mine.image_vectors, dtype=np.float32),
                            np.asarray(reference.image_vectors, dtype=np.float32))
        for target in (onnx_client, client):
            assert target.upsert(items).upserted == len(items)
        for query in ("a red circle", "two blue squares"):
            found = {hit.id: hit.score for hit in onnx_client.search(text=query, limit=len(items))}
            expected = {hit.id: hit.score for hit in client.search(text=query, limit=len(items))}
            assert found.keys() == expected.keys()
            assert max(abs(found[key] - expected[key]) for key in found) <= MAX_ABS


@pytest.fixture(scope="session")
def tiny_hybrid_embedder(onnx_cache, tiny_onnx_embedder):
    """lookalike-tiny with both runtimes, from the export tiny_onnx_embedder left in the cache:
    ORT for at most 2 images or 3 texts a batch, torch above."""
    return load_embedder(ModelSpec.parse("lookalike-tiny", "none"), device="cpu", seed=0, max_batch=4,
                         runtime="hybrid", onnx_cache_dir=onnx_cache, onnx_max_image_batch=2, onnx_max_text_batch=3)


def test_hybrid_runs_small_batches_on_onnx_and_large_ones_on_torch_with_torch_vectors(tiny_embedder,
                                                                                      tiny_hybrid_embedder):
    embedder = tiny_hybrid_embedder
    assert embedder.runtime == "hybrid" and not embedder.towers.small.exported  # the cache, not a second export
    assert embedder.identity == tiny_embedder.identity
    # max_batch 4: images in batches of 1, 2 (ORT), 3, 4 and 4 + 1 (torch, then ORT for the one left over).
    for count, runs in ((1, ["onnx"]), (2, ["onnx"]), (3, ["torch"]), (4, ["torch"]), (5, ["torch", "onnx"])):
        before = embedder.batches.copy()
        images = _images(count)
        assert_same_vectors(embedder.embed_images(images), tiny_embedder.embed_images(images))
        assert embedder.batches - before == Counter(("image", runtime) for runtime in runs), count
    # Texts: 3 (ORT), 4 (torch), 6 = 4 (torch) + 2 (ORT).
    for texts, runs in ((TEXTS[:3], ["onnx"]), (TEXTS[:4], ["torch"]), (TEXTS, ["torch", "onnx"])):
        before = embedder.batches.copy()
        assert_same_vectors(embedder.embed_texts(texts), tiny_embedder.embed_texts(texts))
        assert embedder.batches - before == Counter(("text", runtime) for runtime in runs), len(texts)


def _served_batches(server) -> dict[tuple[str, str], float]:
    exposition = generate_latest(server.server.metrics.registry).decode()
    return {(kind, runtime): float(value) for kind, runtime, value in re.findall(
        r'^lookalike_model_batches_total\{kind="(\w+)",runtime="(\w+)"\} (\S+)$', exposition, re.MULTILINE)}


def test_a_served_hybrid_model_counts_batches_by_runtime(tmp_path, onnx_cache, tiny_hybrid_embedder, client):
    """Through settings, as `lookalike serve --runtime hybrid` runs it; one call is one model batch here."""
    settings = settings_for(tmp_path / "hybrid", runtime="hybrid", onnx_cache_dir=onnx_cache,
                            onnx_max_image_batch=1, onnx_max_text_batch=2)
    with ServerThread(settings, Dependencies.from_settings(settings)) as server, \
            LookalikeClient(server.target, timeout=60) as hybrid_client:
        assert _served_batches(server) == {}
        served = [text for text in TEXTS if text]  # Embed refuses an empty text
        for texts, images in ((served[:1], []), (served[:2], []), (served[:5], []), ([], _images(1)), ([], _images(3))):
            mine = hybrid_client.embed(texts=texts, images=images)
            reference = client.embed(texts=texts, images=images)
            for got, expected in ((mine.text_vectors, reference.text_vectors),
                                  (mine.image_vectors, reference.image_vectors)):
                assert len(got) == len(expected)
                if got:
                    assert_same_vectors(np.asarray(got, dtype=np.float32), np.asarray(expected, dtype=np.float32))
        assert _served_batches(server) == {("text", "onnx"): 2, ("text", "torch"): 1, ("image", "onnx"): 1,
                                           ("image", "torch"): 1}
