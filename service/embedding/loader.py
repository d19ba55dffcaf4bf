"""Loading an open_clip model from any of its sources, failing fast offline."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import open_clip
import torch

from service.embedding.embedder import ClipEmbedder, HybridTowers, Towers
from service.embedding.spec import MODEL_CONFIG_DIR, ModelSpec, WeightsKind

log = logging.getLogger(__name__)

HUB_PROBE_TIMEOUT_S = 3.0
_DEFAULT_HUB = "https://huggingface.co"
# open_clip's config registry is process-wide; loads are serialised so two
# servers in one process (tests) never interleave registration and creation.
_LOAD_LOCK = threading.Lock()
# Where stage 2 runs: torch, ONNX Runtime on graphs exported from the same model, or
# hybrid: both loaded, ONNX Runtime for batches of at most onnx_max_*_batch inputs.
RUNTIMES = ("torch", "onnx", "hybrid")


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says what to do instead."""


def load_embedder(
    spec: ModelSpec,
    *,
    device: str = "auto",
    precision: str = "fp32",
    max_batch: int = 32,
    seed: int = 0,
    max_image_pixels: int = 40_000_000,
    runtime: str = "torch",
    onnx_cache_dir: Path | None = None,
    onnx_spinning: bool = False,
    onnx_max_image_batch: int = 2,
    onnx_max_text_batch: int = 8,
) -> ClipEmbedder:
    """`runtime` onnx runs stage 2 on ONNX Runtime, exporting the towers into `onnx_cache_dir` once;
    hybrid keeps torch too and runs batches larger than `onnx_max_*_batch` inputs on it."""
    if runtime not in RUNTIMES:
        raise ModelLoadError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    torch_device = _resolve_device(device)
    with _LOAD_LOCK:
        register_model_configs()
        model, preprocess, tokenizer = _create(spec, torch_device, precision, seed)
    model.eval()
    if spec.weights is WeightsKind.RANDOM:
        log.warning("model %s runs with RANDOM weights: vectors carry no meaning (plumbing and benchmarks only)",
                    spec.model)
    if torch_device.type == "cpu" and precision != "fp32":
        log.warning("precision %s on CPU is usually slower than fp32 here", precision)
    embedder = ClipEmbedder(model, preprocess, tokenizer, identity=spec.identity(seed), device=torch_device,
                            max_batch=max_batch, max_image_pixels=max_image_pixels)
    if runtime == "onnx":
        embedder.towers = _load_onnx(embedder, onnx_cache_dir, onnx_spinning)
    elif runtime == "hybrid":
        embedder.towers = HybridTowers(_load_onnx(embedder, onnx_cache_dir, onnx_spinning), embedder.towers,
                                       max_small_images=onnx_max_image_batch, max_small_texts=onnx_max_text_batch)
    return embedder


def _load_onnx(embedder: ClipEmbedder, cache_dir: Path | None, spinning: bool) -> Towers:
    from service.embedding.onnx_towers import OnnxRuntimeError, load_onnx_towers

    pixels, tokens = embedder.sample_inputs()
    try:
        return load_onnx_towers(embedder.model, embedder.text_tower, identity=embedder.identity,
                                sample_pixels=pixels, sample_tokens=tokens, cache_dir=cache_dir,
                                threads=torch.get_num_threads(), spinning=spinning)
    except OnnxRuntimeError as error:
        raise ModelLoadError(str(error)) from error


def register_model_configs(folder: Path = MODEL_CONFIG_DIR) -> None:
    """Make the configs in `folder` model names open_clip knows, once per process.

    open_clip keeps one global list of config paths and rescans all of it on each
    registration; adding the folder on every load would grow that list forever.
    """
    if not {path.stem for path in folder.glob("*.json")} <= set(open_clip.list_models()):
        open_clip.add_model_config(folder)


def _create(spec: ModelSpec, device: torch.device, precision: str, seed: int):
    offline = spec.weights.needs_hub and not _hub_reachable()
    try:
        with _hub_offline(offline), torch.random.fork_rng(devices=[]):
            # Random init is seeded so every replica (and every restart) makes the same vectors.
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.open_clip_name, pretrained=spec.open_clip_pretrained, device=device, precision=precision,
                pretrained_text=False, pretrained_image=False)
            tokenizer = open_clip.get_tokenizer(spec.open_clip_name)
    except Exception as error:  # open_clip raises bare RuntimeError/OSError/ValueError variants
        raise ModelLoadError(_explain_failure(spec, offline, error)) from error
    return model, preprocess, tokenizer


def _explain_failure(spec: ModelSpec, offline: bool, error: Exception) -> str:
    message = f"cannot load model {spec.model!r} (weights: {spec.weights.value}): {str(error).rstrip('.')}"
    if spec.weights.needs_hub:
        reason = "The model hub is unreachable" if offline else "Downloading the weights failed"
        message += (
            f". {reason} and the weights are not in the local cache. Copy the checkpoint to this machine and pass "
            "--pretrained /path/to/open_clip_model.safetensors (or --model local-dir:/folder), use --model demo "
            "for the offline demo model, or --pretrained none for random weights (plumbing only). "
            "Set HF_HUB_OFFLINE=1 where the network is known to be absent.")
    return message


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device cuda requested but no CUDA device is available: use --device cpu or auto")
    return torch.device(device)


def _hub_reachable() -> bool:
    """A quick TCP probe, so a machine without network fails in seconds rather
    than after huggingface_hub's ~47 s of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", _DEFAULT_HUB))
    host = endpoint.hostname or ""
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Serve from the local cache only, for this load, then restore the setting."""
    if not offline:
        yield
        return
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved
