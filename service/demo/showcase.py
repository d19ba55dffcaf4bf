"""`lookalike demo`: the whole product, offline, on the shipped demo model.

Starts the gRPC server in-process on embedded Qdrant, ingests a few thousand
held-out demo items over gRPC, runs cross-modal queries with and without
filters, prints their results and writes a contact sheet a person can check.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from service.background import BackgroundServer
from service.client import Hit, LookalikeClient, NewItem
from service.config import Settings
from service.demo.synthetic import DemoItem, generate_catalog, make_item
from service.filter_expr import parse_filter

THUMB = 96
LABEL_HEIGHT = 30
QUERY_WIDTH = 220
MATCH_COLOR = (46, 160, 67)
MISS_COLOR = (214, 38, 38)


@dataclass(frozen=True)
class DemoQuery:
    title: str
    expect: Mapping[str, str]  # payload fields every good result shares with the query
    text: str | None = None
    image_of: DemoItem | None = None
    target: str = "image"
    filters: Sequence[str] = field(default_factory=tuple)


def demo_queries(seed: int) -> list[DemoQuery]:
    # Query pictures come from the training stream: never in the demo catalog, never seen as-is by the model.
    probe_a, probe_b = make_item(7, seed=seed + 1000, split="train"), make_item(21, seed=seed + 1000, split="train")
    return [
        DemoQuery("text → image", {"color": "red", "shape": "circle"}, text="a red circle"),
        DemoQuery("text → image", {"size": "large", "color": "blue", "shape": "triangle"},
                  text="a large blue triangle"),
        DemoQuery("text → image", {"color": "green", "shape": "star", "style": "outlined"},
                  text="a green star, just an outline"),
        DemoQuery("text → image, filtered", {"color": "yellow", "shape": "square"}, text="a yellow square",
                  filters=("price<30", "in_stock=true")),
        DemoQuery("text → image, filtered", {"color": "purple"}, text="something purple",
                  filters=("category=symbol",)),
        DemoQuery("image → image", _attributes(probe_a, ("color", "shape")), image_of=probe_a),
        DemoQuery("image → image, filtered", _attributes(probe_b, ("color", "shape")), image_of=probe_b,
                  filters=("size=small",)),
        DemoQuery("image → text", _attributes(probe_a, ("color", "shape")), image_of=probe_a, target="text"),
    ]


def _attributes(item: DemoItem, keys: Sequence[str]) -> dict[str, str]:
    return {key: str(item.attributes[key]) for key in keys}


def run(items: int, seed: int, output: Path, data_dir: Path | None, top_k: int) -> int:
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lookalike-demo-") as scratch:
        # The default collection, so `lookalike serve --model demo --data-dir <the same folder>` finds these items.
        settings = Settings(host="127.0.0.1", port=0, data_dir=data_dir or Path(scratch), model="demo",
                            pretrained="")
        print(f"starting the server in-process: model 'demo', embedded Qdrant in {settings.data_dir}")
        started = time.monotonic()
        with BackgroundServer(settings) as server, LookalikeClient(server.target, timeout=120) as client:
            print(f"serving on {server.target} after {time.monotonic() - started:.1f}s; health {client.health()}")
            catalog = _ingest(client, generate_catalog(items, seed=seed, split="test"))
            sections = [_run_query(client, query, catalog, top_k) for query in demo_queries(seed)]
        sheet = output / "contact-sheet.png"
        contact_sheet(sections, catalog).save(sheet)
    precision = sum(s.matches for s in sections) / max(1, sum(len(s.hits) for s in sections))
    print(f"\noverall: {precision:.0%} of the top-{top_k} results match their query "
          f"({time.monotonic() - started:.0f}s). Contact sheet: {sheet}")
    if data_dir is not None:
        print(f"serve these items: lookalike serve --model demo --data-dir {data_dir}")
    else:
        print("the catalog lived in a temporary folder; keep it with --data-dir DIR, then "
              "`lookalike serve --model demo --data-dir DIR`")
    return 0


def _ingest(client: LookalikeClient, items: list[DemoItem]) -> dict[str, DemoItem]:
    new_items = (NewItem(id=item.item_id, image=item.png_bytes(), text=item.caption, payload=item.payload)
                 for item in items)
    with tqdm(total=len(items), unit="item", desc="ingest over gRPC") as bar:
        summary = client.upsert(new_items, batch_size=64, on_ack=lambda ack: bar.update(ack.upserted + ack.failed))
    print(f"ingested {summary.upserted} items ({summary.failed} failed)")
    return {item.item_id: item for item in items}


@dataclass
class Section:
    query: DemoQuery
    hits: list[Hit]
    matches: int


def _run_query(client: LookalikeClient, query: DemoQuery, catalog: Mapping[str, DemoItem], top_k: int) -> Section:
    image = query.image_of.png_bytes() if query.image_of else None
    hits = client.search(text=query.text, image=image, target=query.target, filter=parse_filter(query.filters),
                         limit=top_k)
    flags = [_matches(hit, query) for hit in hits]
    described = f'"{query.text}"' if query.text or query.image_of is None else f"picture of {query.image_of.caption}"
    filters = f"  where {' and '.join(query.filters)}" if query.filters else ""
    print(f"\n{query.title}: {described}{filters}  (target: {query.target} vectors)")
    print(f"{'#':>2}  {'score':>6}  {'ok':2}  {'id':16}  {'caption':32}  {'price':>6}  stock")
    for rank, (hit, ok) in enumerate(zip(hits, flags), start=1):
        print(f"{rank:>2}  {hit.score:6.3f}  {'✓' if ok else '✗':2}  {hit.id:16}  {catalog[hit.id].caption:32}  "
              f"{hit.payload['price']:6.2f}  {'yes' if hit.payload['in_stock'] else 'no'}")
    print(f"    {sum(flags)}/{len(hits)} match {dict(query.expect)}")
    return Section(query, hits, sum(flags))


def _matches(hit: Hit, query: DemoQuery) -> bool:
    return all(str(hit.payload.get(key)) == value for key, value in query.expect.items())


def contact_sheet(sections: Sequence[Section], catalog: Mapping[str, DemoItem]) -> Image.Image:
    """One row per query: the query (words or picture), then its results framed green (match) or red."""
    columns = max(len(section.hits) for section in sections)
    row_height = THUMB + LABEL_HEIGHT + 12
    sheet = Image.new("RGB", (QUERY_WIDTH + columns * (THUMB + 8) + 8, len(sections) * row_height + 8), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for row, section in enumerate(sections):
        top = 8 + row * row_height
        _draw_query(sheet, draw, font, section.query, top)
        for column, hit in enumerate(section.hits):
            left = QUERY_WIDTH + column * (THUMB + 8)
            ok = _matches(hit, section.query)
            draw.rectangle((left - 3, top - 3, left + THUMB + 2, top + THUMB + 2),
                           fill=MATCH_COLOR if ok else MISS_COLOR)
            sheet.paste(catalog[hit.id].render(THUMB), (left, top))
            draw.text((left, top + THUMB + 4), f"{hit.score:.3f}", fill="black", font=font)
    return sheet


def _draw_query(sheet: Image.Image, draw: ImageDraw.ImageDraw, font, query: DemoQuery, top: int) -> None:
    draw.text((8, top), query.title.replace("→", "->"), fill="black", font=font)
    if query.image_of is not None:
        sheet.paste(query.image_of.render(THUMB - 16), (8, top + 16))
        caption = f"({query.target} vectors)"
    else:
        caption = f'"{query.text}"'
    lines = [caption] + [f"where {expression}" for expression in query.filters]
    left = 8 + (THUMB if query.image_of is not None else 0)
    for index, line in enumerate(lines):
        draw.text((left, top + 18 + index * 14), line, fill=(40, 40, 120), font=font)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lookalike demo", description=__doc__)
    parser.add_argument("--items", type=int, default=3000, help="demo catalog size (held-out split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("demo-output"), help="where the contact sheet goes")
    parser.add_argument("--data-dir", type=Path, help="keep the embedded Qdrant data here (default: a temp dir)")
    parser.add_argument("--top-k", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(args.items, args.seed, args.output, args.data_dir, args.top_k)


if __name__ == "__main__":
    raise SystemExit(main())
