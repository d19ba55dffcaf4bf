"""Lookalike's domain in vector space: catalog, filters, profiles, ranking.

No gRPC and no torch here: vectors arrive as numpy arrays from the service.
"""
