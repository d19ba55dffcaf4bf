"""Settings every Lookalike collection shares, whatever it stores (items, events)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CollectionLayout:
    """Sharding and replication of new collections on a Qdrant cluster."""

    shard_number: int | None = None
    replication_factor: int | None = None

    def create_arguments(self) -> dict:
        return {name: value for name, value in (("shard_number", self.shard_number),
                                                 ("replication_factor", self.replication_factor)) if value}
