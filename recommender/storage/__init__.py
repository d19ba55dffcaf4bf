"""One storage interface for items and events (base.py), two implementations:
Qdrant Edge in-process (edge.py, the embedded default) and qdrant-client for a
Qdrant server or cluster (server.py). tests/contract runs one suite against both."""

from recommender.storage.base import Catalog, EventStore, Storage

__all__ = ["Catalog", "EventStore", "Storage"]
