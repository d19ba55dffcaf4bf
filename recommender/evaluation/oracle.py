"""The taste oracle: a reference row that knows what no recommender can see."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from recommender.evaluation.metrics import Recommend
from recommender.evaluation.split import TemporalSplit


def taste_oracle(split: TemporalSplit, attributes: Mapping[str, Mapping[str, Any]], seed: int) -> Recommend:
    """A reference, not a strategy: it knows each user's true tastes and weights,
    gives them slots in proportion (Sainte-Lague) and fills each with unseen
    items of that taste in random order. No item-level signal exists within a
    taste (which item a user picks depends on appeal, which vectors do not
    show), so this is about the best any content-based recommender can do here."""
    by_user = {user.user_id: (index, user) for index, user in enumerate(split.users)}
    item_ids = sorted(attributes)

    def recommend(user_id: str, strategy: Any, k: int) -> list[str]:
        index, user = by_user[user_id]
        rng = np.random.default_rng([seed, 2, index])
        seen = {event.item_id for event in user.train_events}
        pools = [[i for i in item_ids if taste.matches(attributes[i]) and i not in seen] for taste in user.user.tastes]
        pools = [list(rng.permutation(pool)) for pool in pools]
        picked: list[str] = []
        turns = [0] * len(pools)
        while len(picked) < k and any(pools):
            turn = max((i for i, pool in enumerate(pools) if pool),
                       key=lambda i: (user.user.taste_weights[i] / (2 * turns[i] + 1), -i))
            picked.append(str(pools[turn].pop()))
            turns[turn] += 1
        return picked

    return recommend
