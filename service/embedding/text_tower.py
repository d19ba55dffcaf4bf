"""A text tower that stops at the last token of the longest text in a batch.

open_clip pads every text to the context length (77 for CLIP). When the text
transformer is causal and pools at the end-of-text token, a position after a
batch's last end-of-text token can neither be attended to by an earlier one nor
be pooled, so cutting the batch there gives the same vectors for a fraction of
the FLOPs (most queries are under 16 tokens).

Whether an architecture qualifies is detected from the loaded modules, never
assumed from its name: a causal mask (the exact upper-triangular -inf mask), an
EOT-pooling rule ('argmax': the end token has the highest id; 'eos': a known end
id), no class token appended at the end (CoCa), no padding mask. Anything else
(HF text encoders, bidirectional SigLIP-style towers, 'last'/'first' pooling)
runs at full length. A probe at load compares the two paths once more on real
tokens and falls back if they disagree, so an open_clip change cannot silently
alter vectors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from open_clip.transformer import text_global_pool

log = logging.getLogger(__name__)

TRIMMABLE_POOLS = ("argmax", "eos")
PROBE_COSINE = 0.99999


@dataclass(frozen=True)
class _Parts:
    """The modules of a causal open_clip text transformer, wherever the model keeps them."""

    token_embedding: torch.nn.Module
    positional_embedding: torch.Tensor
    transformer: Any  # open_clip's Transformer: get_cast_dtype is not on torch.nn.Module
    ln_final: torch.nn.Module
    text_projection: torch.nn.Module | torch.Tensor | None
    attn_mask: torch.Tensor
    pool_type: str
    eos_id: int | None


class TextTower:
    """Encodes token batches [B, context] with the model; trims them when that is provably exact."""

    def __init__(self, model: torch.nn.Module, parts: _Parts | None, reason: str) -> None:
        self._model: Any = model  # an open_clip CLIP: encode_text is not on torch.nn.Module
        self._parts = parts
        self.reason = reason

    @classmethod
    def for_model(cls, model: torch.nn.Module, probe_tokens: torch.Tensor | None = None) -> TextTower:
        parts, reason = _detect(model)
        tower = cls(model, parts, reason)
        if parts is not None and probe_tokens is not None:
            tower._verify(probe_tokens)
        return tower

    @property
    def trims(self) -> bool:
        return self._parts is not None

    def length(self, tokens: torch.Tensor) -> int:
        """How many positions a batch needs: through its last pooled (end-of-text) token."""
        if self._parts is None:
            return int(tokens.shape[1])
        return int(self._pool_positions(tokens).max().item()) + 1

    def lengths(self, tokens: torch.Tensor) -> list[int]:
        """Positions each text of a batch needs on its own (the full context when the tower does not trim)."""
        if self._parts is None:
            return [int(tokens.shape[1])] * int(tokens.shape[0])
        return (self._pool_positions(tokens) + 1).tolist()

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encode_cut(tokens[:, :self.length(tokens)])

    def encode_cut(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens already cut to `length(tokens)` positions: the graph an exporter traces
        (service/embedding/onnx_towers.py), with the cut left to its caller."""
        if self._parts is None:
            return self._model.encode_text(tokens)
        return self._encode_trimmed(tokens)

    def _pool_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        assert self._parts is not None, "only trimmed towers have parts"
        if self._parts.pool_type == "eos" and self._parts.eos_id is not None:
            return torch.eq(tokens, self._parts.eos_id).int().argmax(dim=-1)
        return tokens.argmax(dim=-1)

    def _encode_trimmed(self, tokens: torch.Tensor) -> torch.Tensor:
        # Mirrors open_clip's CLIP.encode_text / TextTransformer.forward with the
        # position embedding and causal mask cut to the batch's length.
        parts = self._parts
        assert parts is not None, "only trimmed towers have parts"
        length = tokens.shape[1]
        cast_dtype = parts.transformer.get_cast_dtype()
        x = parts.token_embedding(tokens).to(cast_dtype)
        x = x + parts.positional_embedding[:length].to(cast_dtype)
        x = parts.transformer(x, attn_mask=parts.attn_mask[:length, :length])
        x = parts.ln_final(x)
        x = text_global_pool(x, tokens, parts.pool_type, eos_token_id=parts.eos_id)
        projection = parts.text_projection
        if projection is None:
            return x
        if isinstance(projection, torch.nn.Linear):
            return projection(x)
        return x @ projection

    def _verify(self, tokens: torch.Tensor) -> None:
        with torch.inference_mode():
            full = self._model.encode_text(tokens).float()
            trimmed = self.encode(tokens).float()
        cosine = torch.nn.functional.cosine_similarity(full, trimmed, dim=-1).min().item()
        if cosine < PROBE_COSINE:
            log.warning("text tower: trimmed output differs from full length (cosine %.6f); running full length",
                        cosine)
            self._parts = None
            self.reason = f"probe disagreed (cosine {cosine:.6f})"


def _detect(model: torch.nn.Module) -> tuple[_Parts | None, str]:
    """The causal text modules of a CLIP or CustomTextCLIP model, or None and why not."""
    text = getattr(model, "text", None)
    if text is not None:  # CustomTextCLIP: the tower is its own module
        source, pool_attr, eos_attr = text, "pool_type", "eos_id"
        if getattr(text, "cls_emb", None) is not None:
            return None, "the text tower appends a class token and pools it"
        if getattr(text, "use_pad_mask", False):
            return None, "the text tower masks padding (bidirectional)"
    else:
        source, pool_attr, eos_attr = model, "text_pool_type", "text_eos_id"
    names = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask")
    missing = [name for name in names if not hasattr(source, name)]
    if missing:
        return None, f"not an open_clip text transformer (no {', '.join(missing)})"
    mask = source.attn_mask
    if mask is None or not _is_causal(mask):
        return None, "the text transformer is not causal"
    pool_type = getattr(source, pool_attr, None)
    eos_id = getattr(source, eos_attr, None)
    if pool_type not in TRIMMABLE_POOLS or (pool_type == "eos" and eos_id is None):
        return None, f"the text tower pools with {pool_type!r}, not at the end-of-text token"
    if not hasattr(source.transformer, "get_cast_dtype"):
        return None, "not an open_clip text transformer"
    return _Parts(source.token_embedding, source.positional_embedding, source.transformer, source.ln_final,
                  getattr(source, "text_projection", None), mask, pool_type, eos_id), "causal, pools at end-of-text"


def _is_causal(mask: torch.Tensor) -> bool:
    if mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        return False
    expected = torch.full_like(mask, float("-inf")).triu_(1)
    return bool(torch.equal(mask, expected))
