"""The one settings object. Built by the CLI (flags over LOOKALIKE_* env vars
over defaults) and passed down explicitly; nothing reads the environment later."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PayloadIndexType = Literal["keyword", "integer", "float", "bool", "datetime", "text", "uuid"]


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "lookalike"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", extra="forbid")

    # Transport
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535)
    # gRPC's default 4 MiB receive limit is too small for batches of photos.
    max_message_mb: int = Field(64, ge=1, le=1024)
    grace_seconds: float = Field(10.0, ge=0)

    # Model
    model: str = "ViT-B-32"
    pretrained: str = "laion2b_s34b_b79k"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    max_batch: int = Field(32, ge=1, le=1024)
    seed: int = 0  # only used for random-init weights (--pretrained none)
    torch_threads: int | None = Field(None, ge=1)
    # Decoded images larger than this many pixels are rejected (decompression bombs).
    max_image_pixels: int = Field(40_000_000, ge=1)

    # Catalog
    data_dir: Path = Field(default_factory=default_data_dir)
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    qdrant_prefer_grpc: bool = True
    qdrant_timeout_s: int = Field(10, ge=1)
    collection: str = "items"
    # Cluster layout for new collections (server mode); unset = Qdrant's defaults.
    qdrant_shard_number: int | None = Field(None, ge=1)
    qdrant_replication_factor: int | None = Field(None, ge=1)
    # Payload fields to index in server mode, e.g. {"color": "keyword", "price": "float"}.
    payload_indexes: dict[str, PayloadIndexType] = Field(default_factory=dict)

    # Admission control: requests beyond this many in flight get RESOURCE_EXHAUSTED.
    max_inflight: int = Field(64, ge=1)
    inference_workers: int = Field(1, ge=1)

    log_level: str = "INFO"

    @field_validator("qdrant_url", "qdrant_api_key")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"
