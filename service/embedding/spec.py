"""Where a model's architecture and weights come from, parsed once.

open_clip accepts four sources: a built-in name with a pretrained tag, a
built-in name with a checkpoint file, `hf-hub:org/repo` and
`local-dir:/folder`. Lookalike adds `none` (random weights, for plumbing and
benchmarks) and the alias `demo` for the model shipped in the package.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from pathlib import Path

HF_HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"
RANDOM_WEIGHTS = frozenset({"", "none", "random"})
DEMO_MODEL = "demo"
# Model configs shipped with the package (tiny test/bench architectures, the demo).
MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
DEMO_MODEL_DIR = Path(__file__).resolve().parent.parent / "demo" / "model"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class WeightsKind(str, enum.Enum):
    RANDOM = "random"
    TAG = "tag"
    HF_HUB = "hf-hub"
    LOCAL_DIR = "local-dir"
    FILE = "file"

    @property
    def needs_hub(self) -> bool:
        return self in (WeightsKind.TAG, WeightsKind.HF_HUB)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed (model, pretrained) pair, ready for open_clip's factory."""

    model: str
    weights: WeightsKind
    # What open_clip's create_model_and_transforms / get_tokenizer take.
    open_clip_name: str
    open_clip_pretrained: str | None
    location: Path | None = None  # the folder or file for local sources

    @classmethod
    def parse(cls, model: str, pretrained: str | None) -> ModelSpec:
        model = model.strip()
        pretrained = (pretrained or "").strip()
        if model == DEMO_MODEL:
            return cls._local_dir(model, DEMO_MODEL_DIR)
        for source in (model, pretrained):
            if source.startswith(LOCAL_DIR_PREFIX):
                return cls._local_dir(model, Path(source[len(LOCAL_DIR_PREFIX):]).expanduser())
            if source.startswith(HF_HUB_PREFIX):
                return cls(model=source, weights=WeightsKind.HF_HUB, open_clip_name=source, open_clip_pretrained=None)
        if pretrained.lower() in RANDOM_WEIGHTS:
            return cls(model=model, weights=WeightsKind.RANDOM, open_clip_name=model, open_clip_pretrained=None)
        if _looks_like_path(pretrained):
            path = Path(pretrained).expanduser()
            if not path.is_file():
                raise ValueError(f"checkpoint file {path} does not exist")
            return cls(model=model, weights=WeightsKind.FILE, open_clip_name=model,
                       open_clip_pretrained=str(path), location=path)
        return cls(model=model, weights=WeightsKind.TAG, open_clip_name=model, open_clip_pretrained=pretrained)

    @classmethod
    def _local_dir(cls, model: str, folder: Path) -> ModelSpec:
        if not (folder / "open_clip_config.json").is_file():
            raise ValueError(f"{folder} is not an open_clip local-dir model: open_clip_config.json is missing")
        return cls(model=model, weights=WeightsKind.LOCAL_DIR, open_clip_name=f"{LOCAL_DIR_PREFIX}{folder}",
                   open_clip_pretrained=None, location=folder)

    def identity(self, seed: int) -> str:
        """A name that changes whenever the vectors would: stored with the collection.

        Local weights carry a content digest, so two checkpoints saved under one
        path are told apart.
        """
        if self.weights is WeightsKind.RANDOM:
            return f"{self.model}/random-init(seed={seed})"
        if self.weights is WeightsKind.TAG:
            return f"{self.model}/{self.open_clip_pretrained}"
        if self.weights is WeightsKind.HF_HUB:
            return self.model
        assert self.location is not None, "file and folder weights always have a location"
        if self.weights is WeightsKind.FILE:
            return f"{self.model}/{self.location.name}@{file_digest(self.location)}"
        weights = next((self.location / name for name in WEIGHT_FILES if (self.location / name).is_file()), None)
        digest = file_digest(weights) if weights else "no-weights"
        name = DEMO_MODEL if self.model == DEMO_MODEL else self.location.name
        return f"{name}@{digest}"


def _looks_like_path(value: str) -> bool:
    return "/" in value or value.endswith((".safetensors", ".bin", ".pt", ".pth", ".ckpt"))


def file_digest(path: Path, length: int = 12) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]
