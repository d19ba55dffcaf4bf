from service.api.lookalike.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchRequest(_message.Message):
    __slots__ = ("text", "image", "item_id", "vector", "target", "filter", "limit", "offset", "score_threshold")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    text: str
    image: bytes
    item_id: str
    vector: _types_pb2.Vector
    target: _types_pb2.SearchTarget
    filter: _types_pb2.Filter
    limit: int
    offset: int
    score_threshold: float
    def __init__(self, text: _Optional[str] = ..., image: _Optional[bytes] = ..., item_id: _Optional[str] = ..., vector: _Optional[_Union[_types_pb2.Vector, _Mapping]] = ..., target: _Optional[_Union[_types_pb2.SearchTarget, str]] = ..., filter: _Optional[_Union[_types_pb2.Filter, _Mapping]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., score_threshold: _Optional[float] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[_types_pb2.ScoredItem]
    def __init__(self, results: _Optional[_Iterable[_Union[_types_pb2.ScoredItem, _Mapping]]] = ...) -> None: ...

class SimilarItemsRequest(_message.Message):
    __slots__ = ("item_id", "target", "filter", "limit", "offset", "score_threshold", "user_id", "include_seen")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SEEN_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    target: _types_pb2.SearchTarget
    filter: _types_pb2.Filter
    limit: int
    offset: int
    score_threshold: float
    user_id: str
    include_seen: bool
    def __init__(self, item_id: _Optional[str] = ..., target: _Optional[_Union[_types_pb2.SearchTarget, str]] = ..., filter: _Optional[_Union[_types_pb2.Filter, _Mapping]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., score_threshold: _Optional[float] = ..., user_id: _Optional[str] = ..., include_seen: _Optional[bool] = ...) -> None: ...

class SimilarItemsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[_types_pb2.ScoredItem]
    def __init__(self, results: _Optional[_Iterable[_Union[_types_pb2.ScoredItem, _Mapping]]] = ...) -> None: ...
