from service.api.lookalike.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedRequest(_message.Message):
    __slots__ = ("texts", "images")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("text_vectors", "image_vectors", "model", "dim")
    TEXT_VECTORS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_VECTORS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    text_vectors: _containers.RepeatedCompositeFieldContainer[_types_pb2.Vector]
    image_vectors: _containers.RepeatedCompositeFieldContainer[_types_pb2.Vector]
    model: str
    dim: int
    def __init__(self, text_vectors: _Optional[_Iterable[_Union[_types_pb2.Vector, _Mapping]]] = ..., image_vectors: _Optional[_Iterable[_Union[_types_pb2.Vector, _Mapping]]] = ..., model: _Optional[str] = ..., dim: _Optional[int] = ...) -> None: ...

class EmbedStreamRequest(_message.Message):
    __slots__ = ("key", "text", "image")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    key: str
    text: str
    image: bytes
    def __init__(self, key: _Optional[str] = ..., text: _Optional[str] = ..., image: _Optional[bytes] = ...) -> None: ...

class EmbedStreamResponse(_message.Message):
    __slots__ = ("key", "vector", "model")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    key: str
    vector: _types_pb2.Vector
    model: str
    def __init__(self, key: _Optional[str] = ..., vector: _Optional[_Union[_types_pb2.Vector, _Mapping]] = ..., model: _Optional[str] = ...) -> None: ...
