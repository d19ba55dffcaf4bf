"""Every check on what callers send, and the one set of caps, in one place.

The use cases (service/app.py) call these once per request, on the way in and
before any inference or storage work; nothing below them checks again, so the
engine trusts its input. service/convert.py only decodes: what it refuses is
what cannot be read at all (a oneof left unset, an unknown enum value, a page
token this server did not issue). Each error is an InvalidArgument naming the
field to fix. Like service/requests.py, this module imports no protobuf.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Sequence

import numpy as np

from recommender import filters as f
from recommender.errors import InvalidArgument
from recommender.types import EventError, ItemError, RecommendQuery, SearchParams
from service.requests import (
    EventBatch,
    ImageQuery,
    ItemQuery,
    RawItem,
    SearchSpec,
    TextQuery,
    VectorQuery,
)

# -- the caps -------------------------------------------------------------------

MAX_LIMIT = 1000  # results per page, Search and Recommend alike
MAX_OFFSET = 10_000  # deeper pages cost the store more than they are worth; narrow the filter instead
MAX_ID_LENGTH = 512  # item ids and user ids
MAX_EMBED_INPUTS = 1024  # texts + images per Embed call; EmbedStream is for bulk
MAX_FILTER_DEPTH = 16  # nested and sub-filters
MAX_KEY_LENGTH = 256  # payload keys in filters
MAX_STREAM_KEY_LENGTH = 512  # EmbedStream keys
MAX_PAYLOAD_DEPTH = 32  # objects and lists inside an item's payload
MAX_ITEMS_PER_MESSAGE = 1000  # per UpsertItems stream message; stream more messages for more
MAX_EVENTS_PER_CALL = 10_000  # per RecordEvents call
SHOWN = 64  # characters of a caller's value quoted back in an error
# A payload key as Qdrant reads it: dot-separated names (letters, digits, _ and -, or
# "quoted"), each optionally followed by [] (every element) or [N].
_KEY = re.compile(r'(?:[\w-]+|"[^"]+")(?:\[[0-9]*\])*(?:\.(?:[\w-]+|"[^"]+")(?:\[[0-9]*\])*)*')
# Clocks drift; an event stamped further ahead than this is a caller bug.
MAX_FUTURE_SKEW = timedelta(days=1)


def shown(value: str) -> str:
    """A caller's value as quoted in a message: its start, never all 10 KB of it."""
    return value if len(value) <= SHOWN else f"{value[:SHOWN]}...({len(value)} characters)"


# -- ids ------------------------------------------------------------------------

def item_id(value: str, field: str) -> None:
    _id(value, field, "item id")


def user_id(value: str, field: str = "user_id") -> None:
    _id(value, field, "user id")


def _id(value: str, field: str, what: str) -> None:
    if not value or not value.strip():
        raise InvalidArgument(field, f"{what} is empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(field, f"{what} is longer than {MAX_ID_LENGTH} characters")


def item_ids(values: Sequence[str], field: str = "ids") -> None:
    if not values:
        raise InvalidArgument(field, "no ids given")
    for index, value in enumerate(values):
        item_id(value, f"{field}[{index}]")


# -- vectors --------------------------------------------------------------------

def vector(values, dim: int, field: str) -> None:
    """A vector from a caller (not from the model): the model's length, finite, not all zeros."""
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 1 or array.shape[0] != dim:
        raise InvalidArgument(field, f"has {array.size} values; the model's dimension is {dim}")
    if not np.all(np.isfinite(array)):
        raise InvalidArgument(field, "contains NaN or infinity")
    if not np.any(array):
        raise InvalidArgument(field, "is all zeros; cosine similarity is undefined for it")


# -- embedding ------------------------------------------------------------------

def embed(texts: Sequence[str], images: Sequence[bytes]) -> None:
    if not texts and not images:
        raise InvalidArgument("texts", "nothing to embed: give at least one text or image")
    if len(texts) + len(images) > MAX_EMBED_INPUTS:
        raise InvalidArgument("texts", f"at most {MAX_EMBED_INPUTS} inputs per call; use EmbedStream for bulk")
    for index, text in enumerate(texts):
        _text(text, f"texts[{index}]")


def stream_key(key: str) -> None:
    if len(key) > MAX_STREAM_KEY_LENGTH:
        raise InvalidArgument(f"input[{shown(key)}].key",
                              f"stream keys are at most {MAX_STREAM_KEY_LENGTH} characters, got {len(key)}")


def embed_input(query: TextQuery | ImageQuery, field: str) -> None:
    if isinstance(query, TextQuery):
        _text(query.text, field)


def _text(text: str, field: str) -> None:
    if not text.strip():
        raise InvalidArgument(field, "text is empty")


# -- search ---------------------------------------------------------------------

def search(spec: SearchSpec, dim: int) -> None:
    params(spec.params)
    query = spec.query
    if isinstance(query, TextQuery):
        _text(query.text, "query.text")
    elif isinstance(query, ItemQuery):
        item_id(query.item_id, "item_id")
    elif isinstance(query, VectorQuery):
        vector(query.values, dim, "query.vector")
    if spec.user_id is not None:
        user_id(spec.user_id)
    filter_(spec.filter)


def params(value: SearchParams) -> None:
    page(value.limit, value.offset)
    if value.score_threshold is not None and not math.isfinite(value.score_threshold):
        raise InvalidArgument("score_threshold", "must be a finite number")


def page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidArgument("offset", f"must be between 0 and {MAX_OFFSET}, got {offset}")


# -- filters --------------------------------------------------------------------

def filter_(value: f.Filter | None, field: str = "filter") -> None:
    """Field names follow the wire messages: filter.must[0].field.range, ...nested.filter, ..."""
    if value is not None:
        _filter(value, field, depth=0, nested=False)


def delete_selector(selector: list[str] | f.Filter) -> None:
    if isinstance(selector, f.Filter):
        if selector.is_empty:
            raise InvalidArgument("filter", "an empty filter would delete every item; give at least one condition")
        filter_(selector)
    else:
        item_ids(selector)


def _filter(value: f.Filter, field: str, depth: int, nested: bool) -> None:
    if depth > MAX_FILTER_DEPTH:
        raise InvalidArgument(field, f"filters nest deeper than {MAX_FILTER_DEPTH} levels")
    for clause in ("must", "should", "must_not"):
        for index, condition in enumerate(getattr(value, clause)):
            _condition(condition, f"{field}.{clause}[{index}]", depth, nested)


def _condition(condition: f.Condition, field: str, depth: int, nested: bool) -> None:
    if isinstance(condition, f.Filter):
        if condition.is_empty:
            raise InvalidArgument(f"{field}.filter", "sub-filter is empty")
        _filter(condition, f"{field}.filter", depth + 1, nested)
    elif isinstance(condition, f.Nested):
        _key(condition.key, f"{field}.nested.key")
        if condition.filter.is_empty:
            raise InvalidArgument(f"{field}.nested.filter", "nested filter is empty")
        _filter(condition.filter, f"{field}.nested.filter", depth + 1, nested=True)
    elif isinstance(condition, f.HasId):
        if nested:
            raise InvalidArgument(f"{field}.has_id", "has_id cannot be used inside a nested condition")
        if not condition.item_ids:
            raise InvalidArgument(f"{field}.has_id.item_ids", "give at least one item id")
    elif isinstance(condition, f.IsEmpty):
        _key(condition.key, f"{field}.is_empty.key")
    else:
        _field_condition(condition, f"{field}.field")


def _field_condition(condition: f.Match | f.MatchAny | f.MatchExcept | f.Range | f.DatetimeRange, field: str) -> None:
    _key(condition.key, f"{field}.key")
    if isinstance(condition, (f.MatchAny, f.MatchExcept)) and not condition.values:
        kind = "except_keyword" if isinstance(condition, f.MatchExcept) else "any_keyword / any_integer"
        raise InvalidArgument(f"{field}.{kind}", "give at least one value")
    if isinstance(condition, (f.Range, f.DatetimeRange)):
        name = "range" if isinstance(condition, f.Range) else "datetime_range"
        bounds = [bound for bound in (condition.gt, condition.gte, condition.lt, condition.lte) if bound is not None]
        if not bounds:
            raise InvalidArgument(f"{field}.{name}", "set at least one of gt, gte, lt, lte")
        if not all(isinstance(bound, datetime) or math.isfinite(bound) for bound in bounds):
            raise InvalidArgument(f"{field}.{name}", "bounds must be finite numbers")


def _key(key: str, field: str) -> None:
    if not key.strip():
        raise InvalidArgument(field, "payload key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidArgument(field, f"payload keys are at most {MAX_KEY_LENGTH} characters, got {len(key)}")
    if not _KEY.fullmatch(key):
        raise InvalidArgument(field, f"{shown(key)!r} is not a payload key: use names of letters, digits, _ and - "
                                     '(or "quoted"), joined by dots, each optionally followed by [] or [N]; '
                                     "e.g. brand.name, tags[], sizes[0]")


# -- items ----------------------------------------------------------------------

def items_per_message(count: int, message_index: int) -> None:
    if count > MAX_ITEMS_PER_MESSAGE:
        raise InvalidArgument("items", f"stream message {message_index} carries {count} items; at most "
                                       f"{MAX_ITEMS_PER_MESSAGE} per message: send more, smaller messages")


def raw_items(raws: Sequence[RawItem], dim: int) -> tuple[list[RawItem], list[ItemError]]:
    """The items worth embedding, and an error for each of the others: one bad item never sinks the rest."""
    valid, errors = [], []
    for raw in raws:
        try:
            raw_item(raw, dim)
        except InvalidArgument as error:
            errors.append(ItemError(raw.index, raw.item_id, str(error)))
        else:
            valid.append(raw)
    return valid, errors


def raw_item(raw: RawItem, dim: int) -> None:
    field = f"items[{raw.index}]"
    item_id(raw.item_id, f"{field}.id")
    if not (raw.image or raw.text or raw.image_vector is not None or raw.text_vector is not None):
        raise InvalidArgument(field, "has neither an image, a text nor a vector: give at least one")
    for name, values in (("image_vector", raw.image_vector), ("text_vector", raw.text_vector)):
        if values is not None:
            vector(values, dim, f"{field}.{name}")
    _payload_depth(raw.payload, f"{field}.payload", 1)


def _payload_depth(value, field: str, depth: int) -> None:
    if depth > MAX_PAYLOAD_DEPTH:
        raise InvalidArgument(field, f"payloads nest at most {MAX_PAYLOAD_DEPTH} levels deep")
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        if isinstance(child, (dict, list)):
            _payload_depth(child, field, depth + 1)


# -- events and users -----------------------------------------------------------

def events(batch: EventBatch, now: datetime) -> tuple[EventBatch, list[EventError]]:
    """The events that pass, and an error (by request index) for each that does not."""
    if not batch.events and not batch.errors:
        raise InvalidArgument("events", "no events given")
    count = len(batch.events) + len(batch.errors)
    if count > MAX_EVENTS_PER_CALL:
        raise InvalidArgument("events", f"{count} events in one call; at most {MAX_EVENTS_PER_CALL}: split them")
    kept = EventBatch([], [], [], batch.errors)
    errors = []
    for event, event_id, index in zip(batch.events, batch.event_ids, batch.positions):
        try:
            _event(event, f"events[{index}]", now)
        except InvalidArgument as error:
            errors.append(EventError(index, str(error)))
            continue
        kept.events.append(event)
        kept.event_ids.append(event_id)
        kept.positions.append(index)
    return kept, errors


def _event(event, field: str, now: datetime) -> None:
    user_id(event.user_id, f"{field}.user_id")
    item_id(event.item_id, f"{field}.item_id")
    if not math.isfinite(event.weight) or event.weight < 0:
        raise InvalidArgument(f"{field}.weight", f"must be a finite number >= 0, got {event.weight}")
    if event.timestamp.tzinfo is None:
        raise InvalidArgument(f"{field}.timestamp", "needs a time zone")
    if event.timestamp - now > MAX_FUTURE_SKEW:
        raise InvalidArgument(f"{field}.timestamp", f"{event.timestamp.isoformat()} is in the future")


MAX_EXAMPLES = 256  # example items per Recommend call


def recommend(query: RecommendQuery, dim: int) -> None:
    if not query.user_id and not query.examples:
        raise InvalidArgument("user_id", "user id is empty: give a user_id, examples, or both")
    if query.user_id:  # no user but examples: an anonymous session
        user_id(query.user_id)
    if len(query.examples) > MAX_EXAMPLES:
        raise InvalidArgument("examples", f"at most {MAX_EXAMPLES} examples, got {len(query.examples)}")
    for index, example in enumerate(query.examples):
        field = f"examples[{index}]"
        if not (math.isfinite(example.weight) and example.weight != 0):
            raise InvalidArgument(f"{field}.weight", f"must be a finite number other than 0, got {example.weight}")
        if example.item_id is not None:
            item_id(example.item_id, f"{field}.item_id")
        else:
            vector(example.vector, dim, f"{field}.vector")
    page(query.limit, query.offset)
    if not (math.isfinite(query.diversity) and 0.0 <= query.diversity <= 1.0):
        raise InvalidArgument("diversity", f"must be between 0 and 1, got {query.diversity}")
    filter_(query.filter)

