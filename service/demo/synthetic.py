"""A synthetic product catalog of drawn shapes, deterministic by seed.

Each item is a picture of exactly one coloured shape on a plain background.
The latent axes are shape, colour, size and fill style; the background,
position, rotation and exact shade are nuisance variables the captions never
mention, so a model has to learn to ignore them. Everything an
item is -- pixels, captions, payload -- comes from a random stream keyed by
(split, seed, index), so the same request always yields the same bytes and
catalogs of different lengths share their prefix.

Pillow only: this module must stay importable without torch.
"""

from __future__ import annotations

import io
import math
import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Collection, Mapping

from PIL import Image, ImageChops, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "pentagon", "hexagon", "star", "cross")
COLORS: Mapping[str, tuple[int, int, int]] = {
    "red": (214, 38, 38),
    "orange": (245, 140, 30),
    "yellow": (240, 214, 36),
    "green": (46, 160, 67),
    "blue": (38, 92, 224),
    "purple": (132, 58, 186),
    "pink": (242, 118, 182),
    "brown": (128, 78, 40),
}
SIZES: tuple[str, ...] = ("small", "large")
STYLES: tuple[str, ...] = ("solid", "outlined", "striped")
BACKGROUNDS: Mapping[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "light gray": (212, 212, 212),
    "cream": (245, 236, 212),
    "charcoal": (46, 46, 52),
    "navy": (22, 28, 60),
}
# A product-like grouping so `category` filters cut across shapes.
CATEGORIES: Mapping[str, str] = {
    "circle": "round",
    "square": "four-sided",
    "diamond": "four-sided",
    "triangle": "polygon",
    "pentagon": "polygon",
    "hexagon": "polygon",
    "star": "symbol",
    "cross": "symbol",
}
SPLITS: tuple[str, ...] = ("train", "test")
# The axes a canonical caption spells out; the background is deliberately never described.
CAPTION_AXES: tuple[str, ...] = ("shape", "color", "size", "style")

_SIZE_SYNONYMS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
_STYLE_ADJECTIVES = {"solid": ("solid", "filled"), "outlined": ("outlined", "hollow"), "striped": ("striped", "stripy")}
_STYLE_PHRASES = {"solid": "a solid fill", "outlined": "just an outline", "striped": "stripes"}
_AXIS_WORDS: Mapping[str, frozenset[str]] = {
    "shape": frozenset(SHAPES),
    "color": frozenset(COLORS),
    "size": frozenset(word for words in _SIZE_SYNONYMS.values() for word in words),
    "style": frozenset(word for words in _STYLE_ADJECTIVES.values() for word in words) | {"fill", "outline", "stripes"},
}
# Radius as a fraction of the image side; the gap keeps large and small apart.
_RADIUS_RANGE = {"small": (0.15, 0.19), "large": (0.30, 0.36)}
_COLOR_JITTER = 14
_BACKGROUND_JITTER = 6
_MAX_ROTATION_DEG = 12.0
# Drawing at twice the size and downsampling is Pillow's cheapest anti-aliasing.
_SUPERSAMPLE = 2
_CREATED_FROM = datetime(2025, 1, 1, tzinfo=timezone.utc)
_CREATED_UNTIL = datetime(2027, 1, 1, tzinfo=timezone.utc)
_IN_STOCK_PROBABILITY = 0.8
_BASE_PRICE = {"small": 10.0, "large": 30.0}
_STYLE_PRICE_FACTOR = {"solid": 1.0, "outlined": 0.8, "striped": 1.3}


@dataclass(frozen=True)
class Scene:
    """The concrete drawing of an item, in units of the image side (size-independent)."""

    shape: str
    style: str
    rgb: tuple[int, int, int]
    background_rgb: tuple[int, int, int]
    center: tuple[float, float]
    radius: float
    rotation_deg: float
    stripe_angle_deg: float


@dataclass(frozen=True)
class DemoItem:
    item_id: str
    caption: str
    paraphrases: tuple[str, ...]
    # Mappings are excluded from the hash (dicts are unhashable) but still compared.
    attributes: Mapping[str, str | int] = field(hash=False)
    payload: Mapping[str, Any] = field(hash=False)
    scene: Scene = field(repr=False)

    @property
    def texts(self) -> tuple[str, ...]:
        """The canonical caption first, then every paraphrase."""
        return (self.caption, *self.paraphrases)

    def render(self, size: int = 128) -> Image.Image:
        return render_scene(self.scene, size)

    def png_bytes(self, size: int = 128) -> bytes:
        buffer = io.BytesIO()
        # Fixed encoder settings: PNG output is a pure function of the pixels then.
        self.render(size).save(buffer, format="PNG", optimize=False, compress_level=6)
        return buffer.getvalue()


def describe(shape: str, color: str, size: str, style: str) -> str:
    """The canonical caption; two items match for evaluation iff their captions are equal."""
    return f"a {size} {style} {color} {shape}"


def all_captions() -> list[str]:
    """Every canonical caption this world can produce, in a stable order."""
    return [describe(shape, color, size, style)
            for shape in SHAPES for color in COLORS for size in SIZES for style in STYLES]


def described_axes(text: str) -> frozenset[str]:
    """Which caption axes a text pins down, e.g. {"color", "shape"} for "a red circle".

    The vocabulary is closed, so word lookup is exact; training uses this to
    know when a partial description also fits another image in the batch.
    """
    words = set(re.findall(r"[a-z]+", text.lower()))
    return frozenset(axis for axis, vocabulary in _AXIS_WORDS.items() if words & vocabulary)


def generate_catalog(count: int, seed: int = 0, split: str = "train",
                     exclude_pairs: Collection[tuple[str, str]] = ()) -> list[DemoItem]:
    """`count` items of `split`; `exclude_pairs` lists (colour, shape) pairs to leave out.

    Excluded items are skipped, not redrawn, so every item keeps the id and
    pixels it has in the unfiltered stream and the catalog still extends by prefix.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    excluded = validate_pairs(exclude_pairs)
    if len(excluded) == len(COLORS) * len(SHAPES) and count:
        raise ValueError("exclude_pairs leaves no colour x shape pair to draw")
    items: list[DemoItem] = []
    index = 0
    while len(items) < count:
        item = make_item(index, seed=seed, split=split)
        if color_shape(item) not in excluded:
            items.append(item)
        index += 1
    return items


def color_shape(item: DemoItem) -> tuple[str, str]:
    return str(item.attributes["color"]), str(item.attributes["shape"])


def validate_pairs(pairs: Collection[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    """Check (colour, shape) pairs against this world's vocabulary."""
    checked = set()
    for pair in pairs:
        color, shape = pair
        if color not in COLORS:
            raise ValueError(f"unknown colour {color!r} in pair {tuple(pair)}; known: {', '.join(COLORS)}")
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r} in pair {tuple(pair)}; known: {', '.join(SHAPES)}")
        checked.add((color, shape))
    return frozenset(checked)


def parse_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """`"red/circle,blue/star"` -> (("red", "circle"), ("blue", "star")), checked against the vocabulary."""
    pairs = []
    for part in filter(None, (chunk.strip() for chunk in text.split(","))):
        color, sep, shape = part.partition("/")
        if not sep:
            raise ValueError(f"expected colour/shape, got {part!r}")
        pairs.append((color.strip(), shape.strip()))
    validate_pairs(pairs)
    return tuple(pairs)


# A Latin diagonal: each colour and each shape is held out in exactly one pair, so the
# model still sees every colour and every shape, just never in these combinations.
COMPOSITIONAL_HOLDOUT: tuple[tuple[str, str], ...] = tuple(zip(COLORS, SHAPES))


def make_item(index: int, seed: int = 0, split: str = "train") -> DemoItem:
    # A string seed goes through SHA-512 in `random`, so it is stable across
    # processes and Python versions, and "train" and "test" streams never meet.
    rng = random.Random(f"lookalike-demo/{split}/{seed}/{index}")
    attributes = {
        "shape": rng.choice(SHAPES),
        "color": rng.choice(tuple(COLORS)),
        "size": rng.choice(SIZES),
        "style": rng.choice(STYLES),
        "background": rng.choice(tuple(BACKGROUNDS)),
    }
    scene = _draw_scene(rng, attributes)
    caption = describe(attributes["shape"], attributes["color"], attributes["size"], attributes["style"])
    return DemoItem(
        item_id=_item_id(index, split),
        caption=caption,
        paraphrases=_paraphrases(rng, attributes),
        attributes=attributes,
        payload=_payload(rng, attributes),
        scene=scene,
    )


def render_scene(scene: Scene, size: int = 128) -> Image.Image:
    if size < 8:
        raise ValueError(f"image size must be >= 8 pixels, got {size}")
    canvas_side = size * _SUPERSAMPLE
    image = Image.new("RGB", (canvas_side, canvas_side), scene.background_rgb)
    mask = _shape_mask(scene, canvas_side)
    if scene.style == "solid":
        image.paste(scene.rgb, mask=mask)
    elif scene.style == "outlined":
        image.paste(scene.rgb, mask=_ring(scene, canvas_side, mask))
    else:
        image.paste(scene.rgb, mask=_stripes_within(scene, canvas_side, mask))
        # A rim keeps the silhouette readable where stripes leave gaps at the edge.
        image.paste(scene.rgb, mask=_ring(scene, canvas_side, mask, thickness=0.35))
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _item_id(index: int, split: str) -> str:
    prefix = "demo" if split == "train" else f"demo-{split}"
    return f"{prefix}-{index:06d}"


def _jitter_rgb(rng: random.Random, rgb: tuple[int, int, int], spread: int) -> tuple[int, int, int]:
    return tuple(min(255, max(0, channel + rng.randint(-spread, spread))) for channel in rgb)  # type: ignore[return-value]


def _draw_scene(rng: random.Random, attributes: Mapping[str, str]) -> Scene:
    radius = rng.uniform(*_RADIUS_RANGE[attributes["size"]])
    margin = radius + 0.03
    return Scene(
        shape=attributes["shape"],
        style=attributes["style"],
        rgb=_jitter_rgb(rng, COLORS[attributes["color"]], _COLOR_JITTER),
        background_rgb=_jitter_rgb(rng, BACKGROUNDS[attributes["background"]], _BACKGROUND_JITTER),
        center=(rng.uniform(margin, 1 - margin), rng.uniform(margin, 1 - margin)),
        radius=radius,
        rotation_deg=rng.uniform(-_MAX_ROTATION_DEG, _MAX_ROTATION_DEG),
        stripe_angle_deg=rng.choice((0.0, 45.0, 90.0, 135.0)) + rng.uniform(-8.0, 8.0),
    )


def _paraphrases(rng: random.Random, attributes: Mapping[str, str]) -> tuple[str, ...]:
    shape, color, size, style = (attributes[axis] for axis in ("shape", "color", "size", "style"))
    size_word = rng.choice(_SIZE_SYNONYMS[size])
    style_word = rng.choice(_STYLE_ADJECTIVES[style])
    return (
        f"{size_word} {color} {shape}, {style_word}",
        f"{color} {style_word} {shape}, {size}",
        f"a picture of a {size_word} {style_word} {color} {shape}",
        f"a {size_word} {color} {shape} with {_STYLE_PHRASES[style]}",
        f"{shape}, {color}, {size}, {style}",
        # Partial descriptions: still true of the item, and they teach the model
        # the short queries people type ("a red circle").
        f"a {style_word} {shape} in {color}",
        f"a {size} {color} {shape}",
        f"a {color} {shape}",
    )


def _payload(rng: random.Random, attributes: Mapping[str, str]) -> dict[str, Any]:
    price = _BASE_PRICE[attributes["size"]] * _STYLE_PRICE_FACTOR[attributes["style"]] * rng.uniform(0.6, 2.2)
    span_s = (_CREATED_UNTIL - _CREATED_FROM).total_seconds()
    created = datetime.fromtimestamp(_CREATED_FROM.timestamp() + rng.uniform(0, span_s), tz=timezone.utc)
    return {
        "category": CATEGORIES[attributes["shape"]],
        "shape": attributes["shape"],
        "color": attributes["color"],
        "size": attributes["size"],
        "style": attributes["style"],
        "background": attributes["background"],
        "price": round(min(100.0, max(1.0, price)), 2),
        "in_stock": rng.random() < _IN_STOCK_PROBABILITY,
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _polygon(scene: Scene, side: int, radius_scale: float = 1.0) -> list[tuple[float, float]]:
    """Vertices in pixels; radius_scale shrinks the shape about its centre (for outlines)."""
    unit = _UNIT_POLYGONS[scene.shape]
    turn = math.radians(scene.rotation_deg)
    cos_t, sin_t = math.cos(turn), math.sin(turn)
    cx, cy = scene.center[0] * side, scene.center[1] * side
    r = scene.radius * side * radius_scale
    return [(cx + r * (x * cos_t - y * sin_t), cy + r * (x * sin_t + y * cos_t)) for x, y in unit]


def _shape_mask(scene: Scene, side: int, radius_scale: float = 1.0) -> Image.Image:
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    if scene.shape == "circle":
        cx, cy = scene.center[0] * side, scene.center[1] * side
        r = scene.radius * side * radius_scale
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    else:
        draw.polygon(_polygon(scene, side, radius_scale), fill=255)
    return mask


def _ring(scene: Scene, side: int, mask: Image.Image, thickness: float = 1.0) -> Image.Image:
    """The shape minus a shrunken copy: an outline whose width scales with the shape."""
    width_fraction = 0.22 * thickness
    inner = _shape_mask(scene, side, radius_scale=1.0 - width_fraction)
    return ImageChops.subtract(mask, inner)


def _stripes_within(scene: Scene, side: int, mask: Image.Image) -> Image.Image:
    # Stripe period follows the shape radius so small shapes still show several bands.
    period = max(4.0, scene.radius * side * 0.55)
    angle = math.radians(scene.stripe_angle_deg)
    direction = (math.cos(angle), math.sin(angle))
    normal = (-direction[1], direction[0])
    stripes = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(stripes)
    reach = side * 1.5
    cx, cy = scene.center[0] * side, scene.center[1] * side
    offset = -reach
    while offset < reach:
        ox, oy = cx + normal[0] * offset, cy + normal[1] * offset
        draw.line(
            (ox - direction[0] * reach, oy - direction[1] * reach,
             ox + direction[0] * reach, oy + direction[1] * reach),
            fill=255, width=max(1, round(period / 2)))
        offset += period
    return ImageChops.multiply(stripes, mask)


def _regular(vertices: int, start_deg: float = -90.0) -> tuple[tuple[float, float], ...]:
    return tuple((math.cos(math.radians(start_deg + 360.0 * k / vertices)),
                  math.sin(math.radians(start_deg + 360.0 * k / vertices))) for k in range(vertices))


def _star(points: int = 5, inner: float = 0.45) -> tuple[tuple[float, float], ...]:
    outer = _regular(2 * points)
    return tuple((x * (1.0 if k % 2 == 0 else inner), y * (1.0 if k % 2 == 0 else inner))
                 for k, (x, y) in enumerate(outer))


def _cross(arm: float = 0.34) -> tuple[tuple[float, float], ...]:
    a = arm
    return ((-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a))


# Unit-radius outlines centred on the origin; the circle is drawn as an ellipse instead.
_UNIT_POLYGONS: Mapping[str, tuple[tuple[float, float], ...]] = {
    "square": _regular(4, start_deg=45.0),
    # Narrower than tall so a rotated square never passes for a diamond.
    "diamond": ((0.0, -1.0), (0.62, 0.0), (0.0, 1.0), (-0.62, 0.0)),
    "triangle": tuple((x, y + 0.15) for x, y in _regular(3)),
    "pentagon": _regular(5),
    "hexagon": _regular(6, start_deg=0.0),
    "star": _star(),
    "cross": _cross(),
}
