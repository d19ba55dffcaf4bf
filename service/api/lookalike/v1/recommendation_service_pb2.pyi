import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from service.api.lookalike.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_VIEW: _ClassVar[EventType]
    EVENT_TYPE_CLICK: _ClassVar[EventType]
    EVENT_TYPE_ADD_TO_CART: _ClassVar[EventType]
    EVENT_TYPE_PURCHASE: _ClassVar[EventType]
    EVENT_TYPE_LIKE: _ClassVar[EventType]
    EVENT_TYPE_DISLIKE: _ClassVar[EventType]
    EVENT_TYPE_SKIP: _ClassVar[EventType]

class RecommendStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECOMMEND_STRATEGY_UNSPECIFIED: _ClassVar[RecommendStrategy]
    RECOMMEND_STRATEGY_MULTI_INTEREST: _ClassVar[RecommendStrategy]
    RECOMMEND_STRATEGY_SINGLE_CENTROID: _ClassVar[RecommendStrategy]
    RECOMMEND_STRATEGY_QDRANT_AVERAGE: _ClassVar[RecommendStrategy]
    RECOMMEND_STRATEGY_QDRANT_BEST_SCORE: _ClassVar[RecommendStrategy]
    RECOMMEND_STRATEGY_POPULAR: _ClassVar[RecommendStrategy]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_VIEW: EventType
EVENT_TYPE_CLICK: EventType
EVENT_TYPE_ADD_TO_CART: EventType
EVENT_TYPE_PURCHASE: EventType
EVENT_TYPE_LIKE: EventType
EVENT_TYPE_DISLIKE: EventType
EVENT_TYPE_SKIP: EventType
RECOMMEND_STRATEGY_UNSPECIFIED: RecommendStrategy
RECOMMEND_STRATEGY_MULTI_INTEREST: RecommendStrategy
RECOMMEND_STRATEGY_SINGLE_CENTROID: RecommendStrategy
RECOMMEND_STRATEGY_QDRANT_AVERAGE: RecommendStrategy
RECOMMEND_STRATEGY_QDRANT_BEST_SCORE: RecommendStrategy
RECOMMEND_STRATEGY_POPULAR: RecommendStrategy

class Event(_message.Message):
    __slots__ = ("user_id", "item_id", "type", "weight", "timestamp", "event_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    item_id: str
    type: EventType
    weight: float
    timestamp: _timestamp_pb2.Timestamp
    event_id: str
    def __init__(self, user_id: _Optional[str] = ..., item_id: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., weight: _Optional[float] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_id: _Optional[str] = ...) -> None: ...

class RecordEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class EventError(_message.Message):
    __slots__ = ("index", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    message: str
    def __init__(self, index: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class RecordEventsResponse(_message.Message):
    __slots__ = ("recorded", "unknown_item_ids", "errors")
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    unknown_item_ids: _containers.RepeatedScalarFieldContainer[str]
    errors: _containers.RepeatedCompositeFieldContainer[EventError]
    def __init__(self, recorded: _Optional[int] = ..., unknown_item_ids: _Optional[_Iterable[str]] = ..., errors: _Optional[_Iterable[_Union[EventError, _Mapping]]] = ...) -> None: ...

class Example(_message.Message):
    __slots__ = ("item_id", "vector", "weight")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    vector: _types_pb2.Vector
    weight: float
    def __init__(self, item_id: _Optional[str] = ..., vector: _Optional[_Union[_types_pb2.Vector, _Mapping]] = ..., weight: _Optional[float] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("user_id", "filter", "limit", "offset", "page_token", "diversity", "include_seen", "strategy", "explain", "examples")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DIVERSITY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SEEN_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    filter: _types_pb2.Filter
    limit: int
    offset: int
    page_token: str
    diversity: float
    include_seen: bool
    strategy: RecommendStrategy
    explain: bool
    examples: _containers.RepeatedCompositeFieldContainer[Example]
    def __init__(self, user_id: _Optional[str] = ..., filter: _Optional[_Union[_types_pb2.Filter, _Mapping]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., page_token: _Optional[str] = ..., diversity: _Optional[float] = ..., include_seen: _Optional[bool] = ..., strategy: _Optional[_Union[RecommendStrategy, str]] = ..., explain: _Optional[bool] = ..., examples: _Optional[_Iterable[_Union[Example, _Mapping]]] = ...) -> None: ...

class Recommendation(_message.Message):
    __slots__ = ("id", "score", "payload", "text", "interest_index", "because_item_ids", "because_examples")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    INTEREST_INDEX_FIELD_NUMBER: _ClassVar[int]
    BECAUSE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    BECAUSE_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    payload: _struct_pb2.Struct
    text: str
    interest_index: int
    because_item_ids: _containers.RepeatedScalarFieldContainer[str]
    because_examples: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., text: _Optional[str] = ..., interest_index: _Optional[int] = ..., because_item_ids: _Optional[_Iterable[str]] = ..., because_examples: _Optional[_Iterable[int]] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("results", "strategy", "cold_start", "next_page_token", "unknown_example_ids")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_EXAMPLE_IDS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Recommendation]
    strategy: RecommendStrategy
    cold_start: bool
    next_page_token: str
    unknown_example_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, results: _Optional[_Iterable[_Union[Recommendation, _Mapping]]] = ..., strategy: _Optional[_Union[RecommendStrategy, str]] = ..., cold_start: _Optional[bool] = ..., next_page_token: _Optional[str] = ..., unknown_example_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetProfileRequest(_message.Message):
    __slots__ = ("user_id", "with_centroids")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    WITH_CENTROIDS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    with_centroids: bool
    def __init__(self, user_id: _Optional[str] = ..., with_centroids: _Optional[bool] = ...) -> None: ...

class Interest(_message.Message):
    __slots__ = ("index", "importance", "weight", "item_ids", "centroid")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    CENTROID_FIELD_NUMBER: _ClassVar[int]
    index: int
    importance: float
    weight: float
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    centroid: _types_pb2.Vector
    def __init__(self, index: _Optional[int] = ..., importance: _Optional[float] = ..., weight: _Optional[float] = ..., item_ids: _Optional[_Iterable[str]] = ..., centroid: _Optional[_Union[_types_pb2.Vector, _Mapping]] = ...) -> None: ...

class GetProfileResponse(_message.Message):
    __slots__ = ("user_id", "interests", "negatives", "event_count", "seen_count")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    INTERESTS_FIELD_NUMBER: _ClassVar[int]
    NEGATIVES_FIELD_NUMBER: _ClassVar[int]
    EVENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    interests: _containers.RepeatedCompositeFieldContainer[Interest]
    negatives: _containers.RepeatedCompositeFieldContainer[Interest]
    event_count: int
    seen_count: int
    def __init__(self, user_id: _Optional[str] = ..., interests: _Optional[_Iterable[_Union[Interest, _Mapping]]] = ..., negatives: _Optional[_Iterable[_Union[Interest, _Mapping]]] = ..., event_count: _Optional[int] = ..., seen_count: _Optional[int] = ...) -> None: ...

class ForgetUserRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class ForgetUserResponse(_message.Message):
    __slots__ = ("deleted_events",)
    DELETED_EVENTS_FIELD_NUMBER: _ClassVar[int]
    deleted_events: int
    def __init__(self, deleted_events: _Optional[int] = ...) -> None: ...
