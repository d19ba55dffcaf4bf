"""The trimmed text tower equals open_clip's full-length encode_text for every text-tower
structure open_clip ships (each architecture config, shrunk to a tiny width), and
falls back to full length wherever trimming would not be exact."""

from __future__ import annotations

import copy
import json

import open_clip
import pytest
import torch
from open_clip.model import CLIP, CustomTextCLIP

from service.embedding.loader import register_model_configs
from service.embedding.text_tower import TextTower

SIZE_KEYS = {"width", "heads", "layers", "mlp_ratio", "context_length", "vocab_size", "hf_tokenizer_name",
             "tokenizer_kwargs", "tokenizer_mode", "eos_id", "pad_id", "ls_init_value"}
TINY_VISION = {"image_size": 32, "patch_size": 16, "width": 32, "layers": 1, "head_width": 16}
VOCAB = 1000


def _registry() -> dict[str, dict]:
    register_model_configs()  # once per process, as the loader does: each add grows open_clip's path list
    return {name: open_clip.get_model_config(name) for name in open_clip.list_models()}


def _structure(config: dict) -> str:
    if "hf_model_name" in config["text_cfg"]:
        return "hf"  # built from the hub only; one representative is enough to record the skip
    text = {key: value for key, value in config["text_cfg"].items() if key not in SIZE_KEYS}
    return json.dumps([text, bool(config.get("custom_text")), bool(config.get("quick_gelu"))], sort_keys=True)


def _one_per_structure() -> list[str]:
    chosen: dict[str, str] = {}
    for name, config in sorted(_registry().items()):
        if name.startswith("lookalike-"):
            chosen[name] = name  # ours are always checked by name
        else:
            chosen.setdefault(_structure(config), name)
    return sorted(chosen.values())


def _expected_to_trim(text_cfg: dict) -> bool:
    return (not text_cfg.get("no_causal_mask", False) and text_cfg.get("pool_type", "argmax") in ("argmax", "eos")
            and not text_cfg.get("embed_cls", False) and "hf_model_name" not in text_cfg)


def _tiny(name: str) -> tuple[torch.nn.Module, dict]:
    config = copy.deepcopy(_registry()[name])
    text = config["text_cfg"]
    text.update(width=32, heads=2, layers=2, vocab_size=VOCAB)
    model_class = CustomTextCLIP if config.get("custom_text") or "multimodal_cfg" in config else CLIP
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = model_class(embed_dim=16, vision_cfg=dict(TINY_VISION), text_cfg=text,
                            quick_gelu=config.get("quick_gelu", False))
        for parameter in model.parameters():  # open_clip zero-inits some projections: make every path count
            parameter.data.add_(torch.randn_like(parameter) * 0.02)
    return model.eval(), text


def _tokens(text_cfg: dict, lengths: list[int]) -> torch.Tensor:
    """Rows of random content + an end token at length-1, padding after; what a tokenizer gives."""
    context = text_cfg.get("context_length", 77)
    pad = text_cfg.get("pad_id", 0)
    pool = text_cfg.get("pool_type", "argmax")
    end = text_cfg.get("eos_id", 2) if pool == "eos" else VOCAB - 1
    generator = torch.Generator().manual_seed(len(lengths))
    rows = []
    for length in lengths:
        length = min(length, context)
        content = torch.randint(3, VOCAB - 1, (length - 1,), generator=generator)
        content[content == end] = 5
        row = torch.full((context,), pad, dtype=torch.long)
        row[:length - 1] = content
        row[length - 1] = end
        rows.append(row)
    return torch.stack(rows)


NAMES = _one_per_structure()


def test_every_registered_structure_is_covered():
    names = set(_registry())
    assert {"lookalike-tiny", "lookalike-demo", "ViT-B-32"} <= names
    assert len(NAMES) >= 8  # open_clip ships causal, bidirectional, CoCa, EOS-pooled and HF text towers


@pytest.mark.parametrize("name", NAMES)
def test_trimmed_text_tower_equals_full_length_or_falls_back(name):
    config = _registry()[name]
    if "hf_model_name" in config["text_cfg"]:
        pytest.skip("HF text towers need their config from the hub; the fallback test below covers them")
    model, text_cfg = _tiny(name)
    context = text_cfg.get("context_length", 77)
    tokens = _tokens(text_cfg, [2, 5, 9, 3])
    probe = _tokens(text_cfg, [2, 7, context])
    tower = TextTower.for_model(model, probe_tokens=probe)

    assert tower.trims == _expected_to_trim(text_cfg), tower.reason
    with torch.inference_mode():
        full = model.encode_text(tokens)
        mine = tower.encode(tokens)
        truncated_full = model.encode_text(probe)
        truncated_mine = tower.encode(probe)
    torch.testing.assert_close(mine, full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(truncated_mine, truncated_full, atol=1e-5, rtol=1e-4)
    if tower.trims:
        assert tower.length(tokens) == 9 < context
        assert tower.length(probe) == context


def test_lookalike_configs_and_vit_b_32_trim():
    for name in ("lookalike-tiny", "lookalike-demo", "ViT-B-32"):
        model, _ = _tiny(name)
        assert TextTower.for_model(model).trims, name


def test_a_bidirectional_mask_falls_back_to_full_length():
    model, text_cfg = _tiny("ViT-B-32")
    model.attn_mask = torch.zeros_like(model.attn_mask)  # every position sees every other one
    tower = TextTower.for_model(model)
    assert not tower.trims and "not causal" in tower.reason
    tokens = _tokens(text_cfg, [3, 6])
    assert tower.length(tokens) == text_cfg["context_length"]
    with torch.inference_mode():
        torch.testing.assert_close(tower.encode(tokens), model.encode_text(tokens))


class _MeanPoolTower(torch.nn.Module):
    """A non-open_clip text tower (as an HF encoder would be): bidirectional, mean-pooled over all positions."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(VOCAB, 16)
        layer = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embedding(tokens)).mean(dim=1)


def test_another_kind_of_text_tower_falls_back_to_full_length():
    custom = CustomTextCLIP(embed_dim=16, vision_cfg=dict(TINY_VISION), text_cfg=dict(width=32, heads=2, layers=1,
                                                                                       vocab_size=VOCAB))
    custom.text = _MeanPoolTower()
    tower = TextTower.for_model(custom.eval())
    assert not tower.trims and "not an open_clip text transformer" in tower.reason
    tokens = _tokens({"context_length": 16}, [3, 6])
    with torch.inference_mode():
        torch.testing.assert_close(tower.encode(tokens), custom.encode_text(tokens))


def test_the_load_probe_catches_a_tower_that_looks_causal_but_mixes_positions():
    model, text_cfg = _tiny("ViT-B-32")
    # A hidden non-causal step: every position gets the mean over all positions.
    model.ln_final.register_forward_hook(lambda module, args, output: output + output.mean(dim=1, keepdim=True))
    tower = TextTower.for_model(model, probe_tokens=_tokens(text_cfg, [2, 7]))
    assert not tower.trims and "probe" in tower.reason
    tokens = _tokens(text_cfg, [3, 6])
    with torch.inference_mode():
        torch.testing.assert_close(tower.encode(tokens), model.encode_text(tokens))
