"""Lookalike's runtime: the gRPC server, the CLIP embedder and the CLI."""
