"""The temporal split: one global point in time.

Everything before it is history, the new items users engaged with afterwards
are the test set (Ji et al., "A Critical Study on Data Leakage in Recommender
System Offline Evaluation", 2023). A per-user split would let one user's future
leak into another's recommendations through shared signals such as popularity,
and the engine's clock -- which its recency decay is measured from -- could not
be one value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Sequence

from recommender.evaluation.simulate import SimulatedUser
from recommender.types import Event


@dataclass(frozen=True)
class UserSplit:
    user: SimulatedUser
    train_events: tuple[Event, ...]  # every event before the split time, negatives included
    test_item_ids: frozenset[str]  # positive after the split, never touched before it

    @property
    def user_id(self) -> str:
        return self.user.user_id


@dataclass(frozen=True)
class TemporalSplit:
    split_time: datetime
    users: tuple[UserSplit, ...]  # users with both training history and test items
    # Every simulated user's events before the split, the users left out of scoring included:
    # they shopped too, so shared signals such as popularity must learn from them.
    history_events: tuple[Event, ...] = ()

    @property
    def train_events(self) -> list[Event]:
        """The scored users' history (a subset of `history_events`)."""
        return [event for user in self.users for event in user.train_events]


def split_time_at(users: Iterable[SimulatedUser], test_fraction: float) -> datetime:
    """The time before which (1 - test_fraction) of all positive events happened."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    times = sorted(event.timestamp for user in users for event in user.events if not event.event_type.is_negative)
    if not times:
        raise ValueError("no positive events to split")
    return times[min(len(times) - 1, int(len(times) * (1.0 - test_fraction)))]


def split_user(user: SimulatedUser, split_time: datetime) -> UserSplit:
    """Events strictly before `split_time` train; items first engaged with at or
    after it are the test set. An item touched before the split in any way (a
    view, a skip) is left out of the test: the engine excludes seen items, so
    counting it would measure nothing but that exclusion."""
    train = tuple(event for event in user.events if event.timestamp < split_time)
    seen = {event.item_id for event in train}
    test = frozenset(event.item_id for event in user.events
                     if event.timestamp >= split_time and not event.event_type.is_negative
                     and event.item_id not in seen)
    return UserSplit(user, train, test)


def temporal_split(users: Sequence[SimulatedUser], test_fraction: float = 0.2) -> TemporalSplit:
    """One global split time; users with no positive history or no test item are not scored,
    but their history before the split still counts (`history_events`)."""
    split_time = split_time_at(users, test_fraction)
    kept: list[UserSplit] = []
    history: list[Event] = []
    for user in users:
        split = split_user(user, split_time)
        history += split.train_events
        if split.test_item_ids and any(not event.event_type.is_negative for event in split.train_events):
            kept.append(split)
    return TemporalSplit(split_time, tuple(kept), tuple(history))

