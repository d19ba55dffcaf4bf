"""Golden semantic tests: the shipped demo model, through the real gRPC server.

Unlike the plumbing tests, these need real semantics: a text query for a
colour and shape must find pictures of that colour and shape.
"""

from __future__ import annotations

from collections import Counter

import pytest

from service.client import LookalikeClient, NewItem
from service.demo.synthetic import generate_catalog, make_item
from service.embedding.spec import DEMO_MODEL_DIR
from service.filter_expr import parse_filter
from tests.support import ServerThread, settings_for

CATALOG_SIZE = 800

pytestmark = pytest.mark.skipif(not (DEMO_MODEL_DIR / "open_clip_config.json").is_file(),
                                reason="the demo model is not shipped in this checkout")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    items = generate_catalog(CATALOG_SIZE, seed=0, split="test")
    settings = settings_for(tmp_path_factory.mktemp("demo"), model="demo", pretrained="", collection="demo")
    with ServerThread(settings) as server, LookalikeClient(server.target, timeout=120) as client:
        summary = client.upsert((NewItem(id=item.item_id, image=item.png_bytes(), text=item.caption,
                                         payload=item.payload) for item in items), batch_size=100)
        assert summary.upserted == CATALOG_SIZE
        yield client, {item.item_id: item for item in items}


def most_common_pairs(catalog, count: int) -> list[tuple[str, str]]:
    pairs = Counter((item.attributes["color"], item.attributes["shape"]) for item in catalog.values())
    return [pair for pair, n in pairs.most_common(count) if n >= 10]


def test_a_colour_and_shape_text_query_finds_that_colour_and_shape(demo):
    client, catalog = demo
    for color, shape in most_common_pairs(catalog, 3):
        hits = client.search(text=f"a {color} {shape}", limit=10)
        matching = [hit for hit in hits if (hit.payload["color"], hit.payload["shape"]) == (color, shape)]
        assert len(matching) >= 8, f"'a {color} {shape}': {[catalog[h.id].caption for h in hits]}"


def test_an_image_query_finds_items_of_the_same_shape_and_colour(demo):
    client, catalog = demo
    probes = [make_item(index, seed=99, split="train") for index in range(40)]
    common = set(most_common_pairs(catalog, 64))
    probe = next(p for p in probes if (p.attributes["color"], p.attributes["shape"]) in common)
    hits = client.search(image=probe.png_bytes(), limit=5)
    same = [hit for hit in hits
            if (hit.payload["color"], hit.payload["shape"]) == (probe.attributes["color"], probe.attributes["shape"])]
    assert len(same) >= 4, f"{probe.caption}: {[catalog[h.id].caption for h in hits]}"


def test_a_filter_restricts_semantic_results(demo):
    client, catalog = demo
    color, shape = most_common_pairs(catalog, 1)[0]
    hits = client.search(text=f"a {color} {shape}", filter=parse_filter(["size=small", "price<40"]), limit=10)
    assert hits
    assert all(hit.payload["size"] == "small" and hit.payload["price"] < 40 for hit in hits)
    expected = {item_id for item_id, item in catalog.items()
                if item.payload["size"] == "small" and item.payload["price"] < 40
                and (item.attributes["color"], item.attributes["shape"]) == (color, shape)}
    top = {hit.id for hit in hits[:len(expected)]}
    assert len(top & expected) >= 0.8 * min(len(expected), 10)


def test_image_to_text_finds_captions_of_the_pictured_thing(demo):
    client, catalog = demo
    color, shape = most_common_pairs(catalog, 1)[0]
    probe = next(item for item in catalog.values()
                 if (item.attributes["color"], item.attributes["shape"]) == (color, shape))
    hits = client.search(image=probe.png_bytes(), target="text", limit=5)
    assert sum(color in (hit.text or "") and shape in (hit.text or "") for hit in hits) >= 4


def test_a_two_taste_user_gets_both_tastes_from_real_pictures(demo):
    from service.client import UserEvent

    client, catalog = demo
    (color_a, shape_a), (color_b, shape_b) = most_common_pairs(catalog, 2)[:2]

    def of(color, shape):
        return [item_id for item_id, item in sorted(catalog.items())
                if (item.attributes["color"], item.attributes["shape"]) == (color, shape)]

    # 9 distinct items: enough history for two interests (k <= items // 4).
    liked_a, liked_b = of(color_a, shape_a)[:6], of(color_b, shape_b)[:3]
    client.record_events([UserEvent("taster", item_id, "purchase") for item_id in liked_a + liked_b])
    result = client.recommend("taster", limit=10, diversity=0.0)
    kinds = Counter((catalog[i].attributes["color"], catalog[i].attributes["shape"]) for i in result.ids)
    assert kinds[(color_a, shape_a)] >= 4 and kinds[(color_b, shape_b)] >= 2, kinds
    assert kinds[(color_a, shape_a)] > kinds[(color_b, shape_b)]
    assert not set(liked_a + liked_b) & set(result.ids)
