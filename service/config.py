"""The one settings object. Built by the CLI (flags over LOOKALIKE_* env vars
over defaults) and passed down explicitly; nothing reads the environment later."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
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

    # Security (service/security.py). Tokens are "<scope>:<token>" with scope read|write:
    # one per line in the file, comma- or newline-separated in the variable. Never flags,
    # so they stay out of the process list.
    auth_tokens: str | None = Field(None, repr=False)
    auth_tokens_file: Path | None = None
    # Serve a non-loopback address without auth; refused otherwise.
    insecure: bool = False
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None  # set = clients must present a certificate it signed (mTLS)

    # Observability (service/observability.py): Prometheus /metrics on this port; unset = off.
    metrics_port: int | None = Field(None, ge=0, le=65535)
    log_format: Literal["text", "json"] = "text"

    # Model
    model: str = "ViT-B-32"
    pretrained: str = "laion2b_s34b_b79k"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    max_batch: int = Field(32, ge=1, le=1024)
    seed: int = 0  # only used for random-init weights (--pretrained none)
    # Decoded images larger than this many pixels are rejected (decompression bombs).
    max_image_pixels: int = Field(40_000_000, ge=1)
    # Where the model stage runs (service/embedding/onnx_towers.py): torch, or ONNX Runtime on
    # graphs exported from the loaded model once (CPU, fp32) and cached in onnx_cache_dir
    # (unset: <data_dir>/onnx). ONNX Runtime gets the same intra-op threads as torch and
    # spins only when omp_wait_policy is active. hybrid loads both and runs a batch on ONNX
    # Runtime when it has at most onnx_max_*_batch inputs (where ORT's lower per-op cost wins),
    # on torch otherwise (full batches, where torch's GEMMs and fused attention win).
    runtime: Literal["torch", "onnx", "hybrid"] = "torch"
    onnx_cache_dir: Path | None = None
    onnx_max_image_batch: int = Field(2, ge=0)
    onnx_max_text_batch: int = Field(8, ge=0)

    # Catalog
    data_dir: Path = Field(default_factory=default_data_dir)
    # Unset: embedded Qdrant Edge under data_dir. http(s)://host:PORT = REST on PORT;
    # grpc://host:PORT = gRPC on PORT (service/qdrant_connection.py).
    qdrant_url: str | None = None
    # Embedded store only: writes are refused (RESOURCE_EXHAUSTED) while the data dir's filesystem has
    # less free than this, because Qdrant Edge writes through mmap and a full disk kills the process
    # (SIGBUS). Reads keep working. 0 = no guard.
    min_free_bytes: int = Field(256 * 1024 * 1024, ge=0)
    qdrant_api_key: str | None = Field(None, repr=False)  # from the environment or qdrant_api_key_file only
    qdrant_api_key_file: Path | None = None
    # With an http(s) URL: also dial gRPC on this port and prefer it for data calls.
    qdrant_grpc_port: int | None = Field(None, ge=1, le=65535)
    qdrant_timeout_s: int = Field(10, ge=1)
    collection: str = "items"
    # Cluster layout for new collections (server mode); unset = Qdrant's defaults.
    qdrant_shard_number: int | None = Field(None, ge=1)
    qdrant_replication_factor: int | None = Field(None, ge=1)
    # Payload fields to index in server mode, e.g. {"color": "keyword", "price": "float"}.
    payload_indexes: dict[str, PayloadIndexType] = Field(default_factory=dict)

    # Admission control: requests beyond this many in flight get RESOURCE_EXHAUSTED.
    max_inflight: int = Field(64, ge=1)

    # Recommend/GetProfile (recommender/profile_cache.py): built profiles kept per user, the
    # least recently used dropped beyond this many (0 = none). A new event of the user, an
    # item change through this server or ForgetUser rebuilds an entry at once; items changed
    # by another process on a shared Qdrant are seen after at most profile_cache_seconds.
    profile_cache_size: int = Field(2000, ge=0)
    profile_cache_seconds: float = Field(300.0, gt=0)

    # Cross-request batching (service/embedding/batching.py): inputs of concurrent calls
    # are merged into model batches of up to max_batch; an idle model waits at most
    # max_batch_wait_ms after the oldest input for a batch to fill, and only while more
    # inputs are on their way (a lone request goes at once). Calls that would
    # queue more than max_queued_inputs inputs get RESOURCE_EXHAUSTED (bulk streams wait).
    max_batch_wait_ms: float = Field(10.0, ge=0, le=10_000)
    max_queued_inputs: int = Field(1024, ge=1)
    # Threads that decode, resize and tokenise while the model runs the previous batch.
    preprocess_workers: int = Field(2, ge=1, le=64)

    # CPU threads (service/threads.py; docs/operations.md "Threads and shared cores"). The model runs one
    # batch at a time on one inference thread; torch_threads is that batch's intra-op
    # parallelism (unset: the CPUs this process may run on), torch_interop_threads the
    # pool torch keeps for parallel graph branches, which CLIP's forward never uses.
    # omp_wait_policy: how OpenMP workers wait between ops. "passive" sleeps at once;
    # libgomp's default spins, which burns the cores other processes (and our own
    # decode threads) need and made throughput collapse 3-10x on shared cores.
    # It is applied only when OMP_WAIT_POLICY is not already set in the environment,
    # and only before torch is imported (the CLI entry does it first thing).
    torch_threads: int | None = Field(None, ge=1)
    torch_interop_threads: int = Field(1, ge=1)
    omp_wait_policy: Literal["passive", "active", "default"] = "passive"

    log_level: str = "INFO"

    @field_validator("qdrant_url", "qdrant_api_key", "auth_tokens")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("auth_tokens_file", "tls_cert_file", "tls_key_file", "tls_client_ca_file",
                     "qdrant_api_key_file", "onnx_cache_dir", mode="before")
    @classmethod
    def _blank_path_is_none(cls, value):
        return value or None

    @model_validator(mode="after")
    def _read_secret_files(self) -> Settings:
        if self.qdrant_api_key_file is not None:
            if self.qdrant_api_key:
                raise ValueError("set LOOKALIKE_QDRANT_API_KEY or LOOKALIKE_QDRANT_API_KEY_FILE, not both")
            self.qdrant_api_key = read_secret(self.qdrant_api_key_file, "qdrant_api_key_file") or None
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both tls_cert_file and tls_key_file")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mTLS) needs tls_cert_file and tls_key_file too")
        return self

    @property
    def onnx_cache_path(self) -> Path:
        return self.onnx_cache_dir or self.data_dir / "onnx"

    @property
    def storage_path(self) -> Path:
        """The embedded engine's locked folder (recommender/storage/folder.py)."""
        return self.data_dir / "storage"


def read_secret(path: Path, setting: str) -> str:
    """A secret file's content without surrounding whitespace; a clear error if unreadable."""
    try:
        return Path(path).read_text().strip()
    except OSError as error:
        raise ValueError(f"{setting}: cannot read {path}: {error.strerror or error}") from None
