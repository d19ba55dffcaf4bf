"""The offline demo: a synthetic shape catalog and the small CLIP trained on it.

No pretrained CLIP weights are reachable here, so the demo ships its own world
(`synthetic`), the recipe that learns it (`training`) and the result (`model/`,
an open_clip `local-dir:` folder). See docs/model-card.md.
"""
