"""The model stage on ONNX Runtime: each tower exported once, cached on disk, run by ORT.

Only stage 2 changes (service/embedding/embedder.py): pixels and tokens come
from open_clip's own transform and tokenizer as before, and the vectors match
torch's within float tolerance (tests/model/test_onnx_towers.py).

What is exported:
- the image tower (`encode_image`) with a dynamic batch axis;
- the text tower's trimmed causal path (TextTower.encode_cut: token embedding,
  positions [:L], transformer under the causal mask [:L, :L], final norm,
  end-of-text pooling, projection) with dynamic batch and length axes, so
  cutting a batch at its last token still saves the FLOPs under ORT; where
  TextTower found the architecture not trimmable, `encode_text` at full length.

Exports take seconds (tiny models) to about a minute (ViT-B-32), so they are
cached under a folder named by everything that changes the graph: the model's
identity, a digest of its weights, whether the text tower trims, and the
exporter's, ONNX's and ORT's versions. A folder is written under a temporary
name and renamed into place, so a crash or a second process never leaves a
half-written model where a later load would read it.

The exporter is torch's dynamo-based one (torch.export + onnxscript): the
TorchScript exporter in torch 2.14 bakes the batch size into
nn.MultiheadAttention's reshapes (a graph traced at batch 2 fails at any
other batch), and fails outright on its inference fast path.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from service.embedding.text_tower import TextTower

log = logging.getLogger(__name__)

# Bump when the exported graphs change for the same inputs (the wrappers below, the opset...).
EXPORT_FORMAT = 1
OPSET = 20
IMAGE_FILE = "image.onnx"
TEXT_FILE = "text.onnx"
META_FILE = "export.json"
MAX_BATCH_DIM = 65_536


class OnnxRuntimeError(RuntimeError):
    """The ONNX path cannot run this model here; the message says why and what to use instead."""


def require_onnx() -> Any:
    """onnxruntime, or a clear error naming the packages the ONNX path needs."""
    try:
        import onnx  # noqa: F401 - the exporter needs it
        import onnxruntime
        import onnxscript  # noqa: F401 - the dynamo exporter needs it
    except ImportError as error:
        raise OnnxRuntimeError(
            f"runtime onnx needs onnxruntime, onnx and onnxscript ({error.name} is missing): "
            "pip install 'lookalike[server]', or use --runtime torch") from error
    return onnxruntime


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxscript

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": onnxscript.__version__,
            "onnxruntime": onnxruntime.__version__}


def weights_digest(model: torch.nn.Module) -> str:
    """A digest of every parameter and buffer (names, shapes, dtypes, bytes): the cache's guard
    against a checkpoint replaced under the same name."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")
    return digest.hexdigest()


def cache_folder(cache_dir: Path, identity: str, model: torch.nn.Module, text_tower: TextTower) -> tuple[Path, dict]:
    key = {"format": EXPORT_FORMAT, "opset": OPSET, "identity": identity, "weights": weights_digest(model),
           "text": "trimmed" if text_tower.trims else "full", **versions()}
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", identity)[:48].strip("_") or "model"
    digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=8).hexdigest()
    return cache_dir / f"{name}-{digest}", key


class _ImageGraph(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model: Any = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)


class _TextGraph(torch.nn.Module):
    """Tokens [B, L] to features; L is the batch's own length when the tower trims, the context otherwise."""

    def __init__(self, model: torch.nn.Module, tower: TextTower) -> None:
        super().__init__()
        self.model = model  # registered, so the exporter lifts its weights as parameters
        self.tower = tower

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tower.encode_cut(tokens)


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """The exporter's passes log each step at INFO: raise them to WARNING while it runs, then restore."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _export(module: torch.nn.Module, name: str, sample: torch.Tensor, axes: dict[int, Any], path: Path) -> None:
    # The exporter prints progress lines and warns about ops it decomposes: neither is for the operator.
    output = io.StringIO()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(output), \
            _quiet("onnx_ir", "onnxscript", "torch.onnx", "torch.export"):
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (sample,), str(path), dynamo=True, opset_version=OPSET,
                          input_names=[name], output_names=["features"], dynamic_shapes={name: axes},
                          external_data=True, verbose=False)
    log.debug("exporter output for %s: %s", path.name, output.getvalue())


def export_image_tower(model: torch.nn.Module, sample_pixels: torch.Tensor, path: Path) -> None:
    from torch.export import Dim

    _export(_ImageGraph(model), "pixels", sample_pixels, {0: Dim("batch", min=1, max=MAX_BATCH_DIM)}, path)


def export_text_tower(model: torch.nn.Module, tower: TextTower, sample_tokens: torch.Tensor, path: Path) -> None:
    """`sample_tokens` are full context rows (as the tokenizer gives); a trimming tower's graph takes any length."""
    from torch.export import Dim

    axes: dict[int, Any] = {0: Dim("batch", min=1, max=MAX_BATCH_DIM)}
    if tower.trims:
        context = int(sample_tokens.shape[1])
        sample_tokens = sample_tokens[:, :tower.length(sample_tokens)]
        axes[1] = Dim("length", min=1, max=context)
    _export(_TextGraph(model, tower), "tokens", sample_tokens, axes, path)


def open_session(path: Path, threads: int, spinning: bool) -> Any:
    """An ORT session on the CPU with `threads` intra-op threads, inter-op off, all graph optimisations.

    Without spinning, ORT's pool sleeps between ops like torch's OpenMP workers do under
    OMP_WAIT_POLICY=PASSIVE: on shared cores a spinning pool burns the CPU the decode
    threads and other processes are waiting for."""
    ort = require_onnx()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3  # errors only: its optimiser's notes are not for the operator
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxImageTower:
    def __init__(self, session: Any) -> None:
        self._session = session

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(pixels.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self._session.run(None, {"pixels": array})[0])


class OnnxTextTower:
    """Cuts each batch exactly as TextTower does, then runs the graph on the cut tokens."""

    def __init__(self, session: Any, tower: TextTower) -> None:
        self._session = session
        self._tower = tower

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        cut = tokens[:, :self._tower.length(tokens)]
        array = np.ascontiguousarray(cut.detach().cpu().numpy(), dtype=np.int64)
        return torch.from_numpy(self._session.run(None, {"tokens": array})[0])


@dataclass
class OnnxTowers:
    """Both towers on ORT; `exported` says whether this load exported them or found them cached."""

    image: OnnxImageTower
    text: OnnxTextTower
    folder: Path
    exported: bool
    name: str = "onnx"

    def images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image.encode(pixels)

    def texts(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text.encode(tokens)

    def route(self, kind: str, size: int) -> OnnxTowers:
        return self


def load_onnx_towers(model: torch.nn.Module, text_tower: TextTower, *, identity: str, sample_pixels: torch.Tensor,
                     sample_tokens: torch.Tensor, cache_dir: Path | None, threads: int,
                     spinning: bool = False) -> OnnxTowers:
    """Sessions for both towers, exporting them first unless `cache_dir` already holds them.

    `cache_dir` None exports into a temporary folder that lives as long as the
    process (one-off tools); a server always passes its cache.
    """
    require_onnx()
    if next(model.parameters()).dtype != torch.float32 or next(model.parameters()).device.type != "cpu":
        raise OnnxRuntimeError("runtime onnx runs fp32 models on the CPU: use --precision fp32 --device cpu, "
                               "or --runtime torch")
    if cache_dir is None:
        cache_dir = Path(tempfile.mkdtemp(prefix="lookalike-onnx-"))
    folder, key = cache_folder(Path(cache_dir), identity, model, text_tower)
    exported = False
    if not (folder / META_FILE).is_file():
        _export_folder(folder, key, model, text_tower, sample_pixels, sample_tokens)
        exported = True
    else:
        log.info("ONNX towers of %s from the cache %s", identity, folder)
    started = time.perf_counter()
    image = open_session(folder / IMAGE_FILE, threads, spinning)
    text = open_session(folder / TEXT_FILE, threads, spinning)
    log.info("ONNX Runtime sessions ready in %.1fs (%d intra-op threads, spinning %s)",
             time.perf_counter() - started, threads, "on" if spinning else "off")
    return OnnxTowers(OnnxImageTower(image), OnnxTextTower(text, text_tower), folder, exported)


def _export_folder(folder: Path, key: dict, model: torch.nn.Module, text_tower: TextTower,
                   sample_pixels: torch.Tensor, sample_tokens: torch.Tensor) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        started = time.perf_counter()
        log.info("exporting the towers of %s to ONNX (once per model and version; cached in %s)",
                 key["identity"], folder)
        export_image_tower(model, sample_pixels, staging / IMAGE_FILE)
        export_text_tower(model, text_tower, sample_tokens, staging / TEXT_FILE)
        seconds = time.perf_counter() - started
        (staging / META_FILE).write_text(json.dumps({**key, "export_seconds": round(seconds, 1)}, indent=2))
        try:
            os.rename(staging, folder)
        except OSError:
            if not (folder / META_FILE).is_file():  # not another process finishing first: a real failure
                raise
            log.info("another process exported %s first; using its copy", folder.name)
        else:
            log.info("exported the towers to ONNX in %.1fs", seconds)
    except OnnxRuntimeError:
        raise
    except Exception as error:
        raise OnnxRuntimeError(f"cannot export the towers of {key['identity']} to ONNX "
                               f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                               "use --runtime torch") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
