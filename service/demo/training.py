"""Train the demo CLIP on the synthetic catalog, evaluate it, ship it as an open_clip `local-dir:` folder.

Only open_clip's own parts are used -- the registered JSON config, its factory,
tokenizer and ClipLoss -- so the result loads anywhere open_clip does:

    open_clip.create_model_and_transforms("local-dir:service/demo/model")

Run as `lookalike train-demo --output service/demo/model` or
`python -m service.demo.training --output service/demo/model`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Sequence

import open_clip
import torch
from PIL import Image
from safetensors.torch import save_file
from tqdm import tqdm

from service.demo.synthetic import (
    CAPTION_AXES,
    COMPOSITIONAL_HOLDOUT,
    DemoItem,
    all_captions,
    color_shape,
    described_axes,
    generate_catalog,
    parse_pairs,
    validate_pairs,
)

log = logging.getLogger(__name__)

DEMO_MODEL_NAME = "lookalike-demo"
MODEL_CONFIG_PATH = Path(__file__).resolve().parent.parent / "embedding" / "model_configs" / f"{DEMO_MODEL_NAME}.json"
SHIPPED_MODEL_DIR = Path(__file__).resolve().parent / "model"
CONFIG_FILENAME = "open_clip_config.json"
WEIGHTS_FILENAME = "open_clip_model.safetensors"
# Images are rendered at the size a client would plausibly send and then go
# through the model's own preprocessing, exactly as they will in the service.
RENDER_SIZE = 128
# open_clip's training clamps the learned temperature at 100 for stability.
MAX_LOGIT_SCALE = math.log(100.0)


@dataclass
class TrainConfig:
    """The recipe. The defaults are the one that produced the shipped model (its safetensors
    header records it; tests/model/test_demo_training.py checks the two agree)."""

    items: int = 20000
    epochs: int = 8
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 40
    weight_decay: float = 0.1
    seed: int = 0
    image_size: int = 64
    eval_items: int = 2000
    output_dir: Path | None = None
    # One thread: exact losses on any machine, and a steady ~1.4 s a step on shared cores.
    threads: int | None = 1
    # (colour, shape) pairs kept out of training, for the compositional hold-out; empty
    # for the shipped model. Evaluated apart from the pairs the model saw.
    holdout_pairs: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 for a contrastive loss, got {self.batch_size}")
        if self.items < self.batch_size:
            raise ValueError(f"items ({self.items}) must be at least batch_size ({self.batch_size})")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.eval_items < 1:
            raise ValueError(f"eval_items must be >= 1, got {self.eval_items}")
        if self.image_size < 32 or self.image_size % 32:
            # The ResNet image tower downsamples 32x before its attention pool.
            raise ValueError(f"image_size must be a positive multiple of 32, got {self.image_size}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.output_dir is not None:
            self.output_dir = Path(self.output_dir)
        self.holdout_pairs = tuple(sorted(validate_pairs(tuple(pair) for pair in self.holdout_pairs)))  # type: ignore[arg-type]


@dataclass
class TrainReport:
    steps: int
    seconds: float
    first_loss: float
    last_loss: float
    metrics: dict[str, float]
    losses: list[float] = field(default_factory=list, repr=False)
    # With holdout_pairs: the same gallery, queries restricted to the held-out pairs / to the seen pairs.
    holdout_metrics: dict[str, float] | None = None
    seen_metrics: dict[str, float] | None = None
    train_items: int = 0
    eval_items: int = 0
    output_dir: Path | None = None

    def to_json(self) -> dict[str, Any]:
        summary = asdict(self)
        summary.pop("losses")
        summary["output_dir"] = str(self.output_dir) if self.output_dir else None
        return summary


def register_demo_config() -> None:
    """Make `lookalike-demo` a model name open_clip knows (idempotent)."""
    if DEMO_MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIG_PATH)


def demo_model_config(image_size: int = 64) -> dict[str, Any]:
    register_demo_config()
    model_cfg = open_clip.get_model_config(DEMO_MODEL_NAME)
    model_cfg["vision_cfg"]["image_size"] = image_size
    return model_cfg


def train_demo(config: TrainConfig, progress: bool = True) -> TrainReport:
    """Train from scratch, evaluate on the held-out split and, if asked, write the `local-dir:` folder.

    Reported metrics are measured on the fp16-rounded weights, i.e. on exactly
    what gets shipped.
    """
    started = time.perf_counter()
    # Seeding and thread count are process-wide; both are put back afterwards.
    with torch_threads(config.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        register_demo_config()
        model, _, preprocess = open_clip.create_model_and_transforms(
            DEMO_MODEL_NAME, pretrained=None, force_image_size=config.image_size)
        tokenizer = open_clip.get_tokenizer(DEMO_MODEL_NAME)
        train_items = generate_catalog(config.items, seed=config.seed, split="train",
                                       exclude_pairs=config.holdout_pairs)
        losses = _fit(model, preprocess, tokenizer, train_items, config, progress)
        _round_to_fp16(model)
        # The test gallery keeps every pair, held-out ones included: a held-out image has to beat the
        # captions and images of the pairs the model did see.
        eval_items = generate_catalog(config.eval_items, seed=config.seed, split="test")
        by_queries = evaluate_retrieval_by_pairs(model, preprocess, tokenizer, eval_items, config.holdout_pairs,
                                                 progress=progress)
        if config.output_dir is not None:
            save_local_dir(model, demo_model_config(config.image_size), config.output_dir, config)
    return TrainReport(
        steps=len(losses), seconds=round(time.perf_counter() - started, 1),
        first_loss=losses[0], last_loss=losses[-1], metrics=by_queries["all"], losses=losses,
        holdout_metrics=by_queries.get("holdout"), seen_metrics=by_queries.get("seen"),
        train_items=len(train_items), eval_items=len(eval_items), output_dir=config.output_dir)


def _fit(model, preprocess, tokenizer, items: list[DemoItem], config: TrainConfig, progress: bool) -> list[float]:
    images = render_tensor_cache(items, preprocess, progress=progress)
    tokens, text_choices, text_axes = _tokenize_texts(items, tokenizer)
    caption_ids = _caption_ids(items)
    attribute_codes = _attribute_codes(items)
    steps_per_epoch = len(items) // config.batch_size
    total_steps = steps_per_epoch * config.epochs
    optimizer = _adamw(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(config.warmup_steps, total_steps))
    loss_fn = open_clip.ClipLoss()
    sampler = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    model.train()
    with tqdm(total=total_steps, desc="train", unit="step", disable=not progress) as bar:
        for _ in range(config.epochs):
            order = _spread_caption_order(caption_ids, sampler)
            for step in range(steps_per_epoch):
                batch = order[step * config.batch_size:(step + 1) * config.batch_size]
                # One of the caption and its paraphrases, drawn afresh every time an item is seen.
                pick = torch.randint(0, text_choices.shape[1], (len(batch),), generator=sampler)
                rows = text_choices[batch, pick]
                # ClipLoss has one positive per text: a partial description that also fits another
                # image in the batch would teach the model to push true matches apart.
                ambiguous = _fits_another_image(attribute_codes[batch], text_axes[rows])
                text = tokens[torch.where(ambiguous, text_choices[batch, 0], rows)]
                losses.append(_train_step(model, loss_fn, optimizer, images[batch].float(), text))
                schedule.step()
                bar.update()
                bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    model.eval()
    return losses


def _train_step(model, loss_fn, optimizer, images: torch.Tensor, text: torch.Tensor) -> float:
    image_features, text_features, logit_scale = model(images, text)
    loss = loss_fn(image_features, text_features, logit_scale)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
    return loss.item()


def render_tensor_cache(items: Sequence[DemoItem], preprocess: Callable[[Image.Image], torch.Tensor],
                        progress: bool = False) -> torch.Tensor:
    """Render and preprocess every image once; epochs then only index a tensor.

    Stored as fp16 to halve the memory of 20k images; values are upcast per batch.
    """
    first = preprocess(items[0].render(RENDER_SIZE))
    cache = torch.empty((len(items), *first.shape), dtype=torch.float16)
    cache[0] = first
    for index in tqdm(range(1, len(items)), desc="render", unit="img", disable=not progress):
        cache[index] = preprocess(items[index].render(RENDER_SIZE))
    return cache


def _tokenize_texts(items: Sequence[DemoItem], tokenizer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokens of every distinct text, per item the rows of its caption and paraphrases (caption
    first), and per text which caption axes it describes (a bool row in CAPTION_AXES order).

    The phrasing vocabulary is small, so tokenising distinct strings once is far
    cheaper than tokenising items * texts.
    """
    row_of: dict[str, int] = {}
    for item in items:
        for text in item.texts:
            row_of.setdefault(text, len(row_of))
    text_counts = {len(item.texts) for item in items}
    if len(text_counts) != 1:
        raise ValueError(f"items must all carry the same number of texts, got {sorted(text_counts)}")
    tokens = tokenizer(list(row_of))
    choices = torch.tensor([[row_of[text] for text in item.texts] for item in items], dtype=torch.long)
    axes = torch.tensor([[axis in described_axes(text) for axis in CAPTION_AXES] for text in row_of])
    return tokens, choices, axes


def _attribute_codes(items: Sequence[DemoItem]) -> torch.Tensor:
    """Each item's caption attributes as integers, one column per CAPTION_AXES entry."""
    codes: dict[tuple[str, Any], int] = {}
    return torch.tensor([[codes.setdefault((axis, item.attributes[axis]), len(codes)) for axis in CAPTION_AXES]
                         for item in items], dtype=torch.long)


def _fits_another_image(attribute_codes: torch.Tensor, described: torch.Tensor) -> torch.Tensor:
    """Per batch row: does its text (describing the `described` axes) also fit another row's image?"""
    same = attribute_codes[:, None, :] == attribute_codes[None, :, :]
    fits = (same | ~described[:, None, :]).all(dim=-1)
    fits.fill_diagonal_(False)
    return fits.any(dim=1)


def _caption_ids(items: Sequence[DemoItem]) -> torch.Tensor:
    id_of: dict[str, int] = {}
    return torch.tensor([id_of.setdefault(item.caption, len(id_of)) for item in items], dtype=torch.long)


def _spread_caption_order(caption_ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random epoch order in which equal captions sit as far apart as possible.

    Many images share a caption; two of them in one batch are false negatives
    for the contrastive loss. Ordering items by their rank within their caption
    group (then randomly) makes batches caption-unique, except the last few of
    an epoch, which hold the leftovers of the largest groups (152 of 156 batches
    are clean in the shipped run; the epoch-final step's loss is high for this
    reason).
    """
    count = len(caption_ids)
    shuffled = torch.randperm(count, generator=generator)
    groups = caption_ids[shuffled]
    by_group = torch.argsort(groups, stable=True)
    sorted_groups = groups[by_group]
    positions = torch.arange(count)
    run_starts = torch.ones(count, dtype=torch.bool)
    run_starts[1:] = sorted_groups[1:] != sorted_groups[:-1]
    first_of_run = torch.cummax(torch.where(run_starts, positions, torch.zeros_like(positions)), dim=0).values
    rank = torch.empty(count, dtype=torch.long)
    rank[by_group] = positions - first_of_run
    return shuffled[torch.argsort(rank * count + positions, stable=True)]


def _adamw(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    # As in open_clip's trainer: no decay on gains, biases, embeddings of positions and the temperature.
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.ndim < 2 or "logit_scale" in name or "positional_embedding" in name or "class_embedding" in name:
            no_decay.append(parameter)
        else:
            decay.append(parameter)
    return torch.optim.AdamW(
        [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": config.weight_decay}],
        lr=config.lr, betas=(0.9, 0.98), eps=1e-6)


def _warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def _round_to_fp16(model: torch.nn.Module) -> None:
    """Round weights through fp16 in place, so evaluation sees what the fp16 file will hold."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half())


def save_local_dir(model: torch.nn.Module, model_cfg: dict[str, Any], output_dir: Path,
                   config: TrainConfig | None = None) -> Path:
    """Write the two files open_clip's `local-dir:` loader reads: config JSON and fp16 safetensors."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    local_config = {"model_cfg": model_cfg, "preprocess_cfg": open_clip.get_model_preprocess_cfg(model)}
    (output_dir / CONFIG_FILENAME).write_text(json.dumps(local_config, indent=2) + "\n")
    weights = {name: (tensor.half() if tensor.is_floating_point() else tensor).contiguous()
               for name, tensor in model.state_dict().items()}
    # Provenance rides in the safetensors header, which open_clip ignores.
    metadata = {"format": "pt", "producer": "service.demo.training"}
    if config is not None:
        metadata["train_config"] = json.dumps({k: str(v) if isinstance(v, Path) else v
                                               for k, v in asdict(config).items() if k != "output_dir"})
    weights_path = output_dir / WEIGHTS_FILENAME
    save_file(weights, str(weights_path), metadata=metadata)
    # safetensors creates the file owner-only; a service running as another user must still read it.
    weights_path.chmod(0o644)
    log.info("wrote open_clip local-dir model to %s", output_dir)
    return output_dir


@torch.no_grad()
def evaluate_retrieval(model, preprocess, tokenizer, items: Sequence[DemoItem], ks: Sequence[int] = (1, 5),
                       batch_size: int = 256, progress: bool = False) -> dict[str, float]:
    """Caption-match recall on a gallery of items, both directions, with chance levels.

    t2i: each distinct canonical caption in `items` queries the images; a hit is
    any retrieved image with that caption (many images share one). i2t: each
    image ranks every caption the world can produce; a hit is its own caption.
    t2i_short: "a <color> <shape>" queries; a hit is any image of that colour and shape;
    t2i_short_P@10 is the share of such images among the first ten.
    """
    return evaluate_retrieval_by_pairs(model, preprocess, tokenizer, items, (), ks, batch_size, progress)["all"]


@torch.no_grad()
def evaluate_retrieval_by_pairs(model, preprocess, tokenizer, items: Sequence[DemoItem],
                                holdout_pairs: Sequence[tuple[str, str]], ks: Sequence[int] = (1, 5),
                                batch_size: int = 256, progress: bool = False) -> dict[str, dict[str, float]]:
    """`evaluate_retrieval` on the whole gallery, once with every query ("all") and, when
    `holdout_pairs` is given, once with only the queries of held-out (colour, shape) pairs
    ("holdout") and once with only the others ("seen").

    The gallery and the caption list never shrink: a query about a held-out pair competes
    with every image, and a held-out image ranks all 384 captions.
    """
    if not items:
        raise ValueError("evaluate_retrieval needs at least one item")
    model.eval()
    image_features = _encode_images(model, preprocess, items, batch_size, progress)
    world = all_captions()
    world_features = _encode_texts(model, tokenizer, world, batch_size)
    present = sorted({color_shape(item) for item in items})
    short_features = _encode_texts(model, tokenizer, [f"a {color} {shape}" for color, shape in present], batch_size)
    features = (image_features, world_features, short_features)
    held = frozenset(holdout_pairs)
    results = {"all": _retrieval_metrics(items, features, present, set(present), ks)}
    if held:
        for name, pairs in (("holdout", held), ("seen", set(present) - held)):
            if pairs & set(present):
                results[name] = _retrieval_metrics(items, features, present, pairs, ks)
    return results


def _retrieval_metrics(items: Sequence[DemoItem], features: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                       present: Sequence[tuple[str, str]], query_pairs: Collection[tuple[str, str]],
                       ks: Sequence[int]) -> dict[str, float]:
    image_features, world_features, short_features = features
    world = all_captions()
    row_of_caption = {caption: row for row, caption in enumerate(world)}
    image_caption_rows = torch.tensor([row_of_caption[item.caption] for item in items])
    queried = torch.tensor([color_shape(item) in query_pairs for item in items])

    query_rows = torch.unique(image_caption_rows[queried])
    t2i_relevant = query_rows[:, None] == image_caption_rows[None, :]
    i2t_relevant = image_caption_rows[queried][:, None] == torch.arange(len(world))[None, :]
    short_rows = [row for row, pair in enumerate(present) if pair in query_pairs]
    short_relevant = torch.tensor([[color_shape(item) == present[row] for item in items] for row in short_rows])

    directions = {
        "t2i": (world_features[query_rows] @ image_features.T, t2i_relevant),
        "i2t": (image_features[queried] @ world_features.T, i2t_relevant),
        "t2i_short": (short_features[short_rows] @ image_features.T, short_relevant),
    }
    metrics: dict[str, float] = {}
    for direction, (similarity, relevant) in directions.items():
        for k in ks:
            metrics[f"{direction}_R@{k}"] = _recall_at_k(similarity, relevant, k)
            metrics[f"{direction}_chance_R@{k}"] = _chance_recall_at_k(relevant, k)
    # What a catalog search shows: how many of the first 10 results are the colour and shape asked for.
    metrics["t2i_short_P@10"] = _precision_at_k(*directions["t2i_short"], k=10)
    metrics["t2i_short_chance_P@10"] = short_relevant.float().mean().item()
    return {name: round(value, 4) for name, value in metrics.items()}


def _encode_images(model, preprocess, items: Sequence[DemoItem], batch_size: int, progress: bool) -> torch.Tensor:
    features = []
    for start in tqdm(range(0, len(items), batch_size), desc="eval", unit="batch", disable=not progress):
        pixels = torch.stack([preprocess(item.render(RENDER_SIZE)) for item in items[start:start + batch_size]])
        features.append(model.encode_image(pixels, normalize=True))
    return torch.cat(features)


def _encode_texts(model, tokenizer, texts: Sequence[str], batch_size: int) -> torch.Tensor:
    features = [model.encode_text(tokenizer(list(texts[start:start + batch_size])), normalize=True)
                for start in range(0, len(texts), batch_size)]
    return torch.cat(features)


def _recall_at_k(similarity: torch.Tensor, relevant: torch.Tensor, k: int) -> float:
    top = similarity.topk(min(k, similarity.shape[1]), dim=1).indices
    return relevant.gather(1, top).any(dim=1).float().mean().item()


def _precision_at_k(similarity: torch.Tensor, relevant: torch.Tensor, k: int) -> float:
    top = similarity.topk(min(k, similarity.shape[1]), dim=1).indices
    return relevant.gather(1, top).float().mean().item()


def _chance_recall_at_k(relevant: torch.Tensor, k: int) -> float:
    """Expected recall@k of a uniformly random ranking: 1 - C(N-n, k) / C(N, k) per query."""
    total = relevant.shape[1]
    k = min(k, total)
    misses = torch.ones(relevant.shape[0], dtype=torch.float64)
    relevant_counts = relevant.sum(dim=1).double()
    for drawn in range(k):
        misses *= (total - relevant_counts - drawn).clamp(min=0) / (total - drawn)
    return (1.0 - misses).mean().item()


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run a block with `threads` torch CPU threads (None: unchanged), restoring the count afterwards."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="lookalike train-demo",
        description="Train the demo CLIP on the synthetic shape catalog and write an open_clip local-dir folder.")
    parser.add_argument("--output", type=Path, default=None,
                        help="folder to write open_clip_config.json + open_clip_model.safetensors into "
                             "(omit to train and evaluate only)")
    parser.add_argument("--items", type=int, default=defaults.items, help="training images")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate")
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--eval-items", type=int, default=defaults.eval_items, help="held-out (test split) images")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch CPU threads")
    parser.add_argument("--holdout-pairs", type=str, default="",
                        help="colour/shape pairs to keep out of training and score apart, e.g. "
                             "'red/circle,blue/star'; 'diagonal' holds out one pair per colour and shape")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        items=args.items, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        warmup_steps=args.warmup_steps, weight_decay=args.weight_decay, seed=args.seed,
        image_size=args.image_size, eval_items=args.eval_items, output_dir=args.output, threads=args.threads,
        holdout_pairs=_holdout_arg(args.holdout_pairs))


def _holdout_arg(text: str) -> tuple[tuple[str, str], ...]:
    return COMPOSITIONAL_HOLDOUT if text.strip() == "diagonal" else parse_pairs(text)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = train_demo(config, progress=not args.quiet)
    json.dump(report.to_json(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
