"""Wire conventions both ends share, with nothing heavier than protobuf.

The client imports this module, so it must stay free of numpy, torch, Pillow
and qdrant-client: a backend that only calls the API installs none of them.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from google.protobuf import struct_pb2

# A Struct carries only doubles; beyond 2**53 a double no longer holds every integer.
_EXACT_INTEGERS = 2**53


class NonFiniteNumber(ValueError):
    """A payload number is NaN or infinite; `field` names where."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field}: numbers must be finite")
        self.field = field


def payload_from_struct(struct: struct_pb2.Struct, field: str = "payload") -> dict[str, Any]:
    """Struct -> plain dict. Whole numbers become ints so integer matches and ids survive the trip."""
    return {key: _from_value(value, f"{field}.{key}") for key, value in struct.fields.items()}


def _from_value(value: struct_pb2.Value, field: str) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return payload_from_struct(value.struct_value, field)
    if kind == "list_value":
        return [_from_value(inner, f"{field}[{index}]") for index, inner in enumerate(value.list_value.values)]
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            raise NonFiniteNumber(field)
        return int(number) if number.is_integer() and abs(number) < _EXACT_INTEGERS else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def payload_to_struct(payload: Mapping[str, Any] | None) -> struct_pb2.Struct:
    """Plain dict -> Struct (numbers become doubles on the wire)."""
    struct = struct_pb2.Struct()
    if payload:
        struct.update(dict(payload))
    return struct
