"""CLIP embedding through open_clip: model loading, preprocessing, batching."""

from service.embedding.embedder import ClipEmbedder
from service.embedding.loader import load_embedder
from service.embedding.spec import ModelSpec

__all__ = ["ClipEmbedder", "ModelSpec", "load_embedder"]
