"""The demo catalog generator: deterministic, split-disjoint, with filterable payloads."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from PIL import Image

from service.demo.synthetic import (
    BACKGROUNDS,
    CAPTION_AXES,
    CATEGORIES,
    COLORS,
    COMPOSITIONAL_HOLDOUT,
    SHAPES,
    SIZES,
    STYLES,
    all_captions,
    color_shape,
    describe,
    described_axes,
    generate_catalog,
    parse_pairs,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _fingerprint(items):
    return [(item.item_id, item.caption, item.paraphrases, dict(item.attributes), dict(item.payload),
             item.png_bytes(64)) for item in items]


def test_same_seed_gives_identical_bytes_and_payloads():
    assert _fingerprint(generate_catalog(24, seed=7)) == _fingerprint(generate_catalog(24, seed=7))


def test_different_seed_gives_different_items():
    first, second = generate_catalog(24, seed=1), generate_catalog(24, seed=2)
    assert [item.png_bytes(64) for item in first] != [item.png_bytes(64) for item in second]
    assert [dict(item.payload) for item in first] != [dict(item.payload) for item in second]


def test_a_longer_catalog_extends_a_shorter_one():
    assert _fingerprint(generate_catalog(5, seed=3)) == _fingerprint(generate_catalog(12, seed=3)[:5])


def test_train_and_test_splits_share_no_items():
    train, test = generate_catalog(60, split="train"), generate_catalog(60, split="test")
    assert not {item.item_id for item in train} & {item.item_id for item in test}
    assert not {item.png_bytes(64) for item in train} & {item.png_bytes(64) for item in test}


def test_item_ids_are_stable_strings():
    assert [item.item_id for item in generate_catalog(2)] == ["demo-000000", "demo-000001"]
    assert generate_catalog(1, split="test")[0].item_id == "demo-test-000000"


def test_payload_fields_are_present_and_typed():
    for item in generate_catalog(80, seed=5):
        payload = item.payload
        assert payload["category"] == CATEGORIES[payload["shape"]]
        assert payload["shape"] in SHAPES and payload["color"] in COLORS
        assert payload["size"] in SIZES and payload["style"] in STYLES and payload["background"] in BACKGROUNDS
        assert isinstance(payload["price"], float) and 1.0 <= payload["price"] <= 100.0
        assert round(payload["price"], 2) == payload["price"]
        assert isinstance(payload["in_stock"], bool)
        created = payload["created_at"]
        assert isinstance(created, str) and created.endswith("Z")
        when = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert 2025 <= when.year <= 2026
        assert {key: payload[key] for key in item.attributes} == dict(item.attributes)


def test_captions_and_paraphrases_mention_the_attributes():
    for item in generate_catalog(40, seed=11):
        attributes = item.attributes
        assert item.caption == describe(attributes["shape"], attributes["color"], attributes["size"],
                                        attributes["style"])
        for word in (attributes["shape"], attributes["color"], attributes["size"], attributes["style"]):
            assert word in item.caption.split()
        assert len(item.paraphrases) >= 3 and item.caption not in item.paraphrases
        for text in item.paraphrases:
            assert attributes["shape"] in text and attributes["color"] in text


def test_described_axes_tells_full_captions_from_partial_ones():
    item = generate_catalog(1, seed=2)[0]
    assert described_axes(item.caption) == frozenset(CAPTION_AXES)
    assert described_axes("a red circle") == {"color", "shape"}
    assert described_axes("a big hollow star") == {"size", "style", "shape"}
    assert all({"color", "shape"} <= described_axes(text) for text in item.paraphrases)
    assert any(described_axes(text) == frozenset(CAPTION_AXES) for text in item.paraphrases)


def test_vocabularies_are_rich_enough_and_all_reached():
    assert len(SHAPES) >= 6 and len(COLORS) >= 7
    items = generate_catalog(400, seed=0)
    for axis, vocabulary in (("shape", SHAPES), ("color", COLORS), ("size", SIZES), ("style", STYLES)):
        assert {item.attributes[axis] for item in items} == set(vocabulary)
    assert {item.caption for item in items} <= set(all_captions())
    assert len(all_captions()) == len(SHAPES) * len(COLORS) * len(SIZES) * len(STYLES)


def test_png_bytes_decode_to_the_rendered_pixels():
    item = generate_catalog(1, seed=4)[0]
    decoded = Image.open(io.BytesIO(item.png_bytes(96)))
    assert decoded.size == (96, 96) and decoded.mode == "RGB"
    assert decoded.tobytes() == item.render(96).tobytes()


def test_excluded_pairs_are_skipped_and_every_other_item_is_unchanged():
    excluded = {("red", "circle"), ("blue", "star")}
    full = generate_catalog(400, seed=2)
    kept = generate_catalog(300, seed=2, exclude_pairs=excluded)
    assert len(kept) == 300
    assert not {color_shape(item) for item in kept} & excluded
    # Skipped, not redrawn: the kept items are the unfiltered stream's, ids and pixels included.
    assert _fingerprint(kept) == _fingerprint([item for item in full if color_shape(item) not in excluded][:300])


def test_the_compositional_holdout_leaves_every_colour_and_shape_in_training():
    colours, shapes = zip(*COMPOSITIONAL_HOLDOUT)
    assert sorted(colours) == sorted(COLORS) and sorted(shapes) == sorted(SHAPES)


def test_pairs_parse_and_unknown_words_are_refused():
    assert parse_pairs("red/circle, blue/star") == (("red", "circle"), ("blue", "star"))
    assert parse_pairs("") == ()
    for text, message in (("red-circle", "colour/shape"), ("mauve/circle", "unknown colour"),
                          ("red/blob", "unknown shape")):
        with pytest.raises(ValueError, match=message):
            parse_pairs(text)
    with pytest.raises(ValueError, match="no colour x shape pair"):
        generate_catalog(1, exclude_pairs=[(color, shape) for color in COLORS for shape in SHAPES])


def test_invalid_requests_raise_value_error():
    with pytest.raises(ValueError):
        generate_catalog(-1)
    with pytest.raises(ValueError):
        generate_catalog(3, split="validation")
    with pytest.raises(ValueError):
        generate_catalog(1)[0].render(4)


def test_generator_does_not_import_torch():
    probe = "import sys, service.demo.synthetic; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == "False"
