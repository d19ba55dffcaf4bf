"""Filter expressions for the command line, e.g. `color=red`, `price<50`,
`color=red|blue`, `shape!=circle`, `in_stock=true`. All expressions must hold."""

from __future__ import annotations

import re
from typing import Sequence

from service.api.lookalike.v1 import types_pb2 as types_pb

_EXPRESSION = re.compile(r"^\s*(?P<key>[^<>=!\s]+)\s*(?P<op><=|>=|!=|=|<|>)\s*(?P<value>.+?)\s*$")
_RANGE_OPS = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}


def parse_filter(expressions: Sequence[str]) -> types_pb.Filter | None:
    if not expressions:
        return None
    return types_pb.Filter(must=[_condition(expression) for expression in expressions])


def _condition(expression: str) -> types_pb.Condition:
    match = _EXPRESSION.match(expression)
    if not match:
        raise ValueError(f"cannot read filter {expression!r}: write key=value, key!=value, key<number, "
                         "key>=number or key=a|b")
    key, op, value = match["key"], match["op"], match["value"]
    if op in _RANGE_OPS:
        try:
            bound = float(value)
        except ValueError:
            raise ValueError(f"filter {expression!r}: {value!r} is not a number") from None
        bounds = types_pb.Range(**{_RANGE_OPS[op]: bound})
        return types_pb.Condition(field=types_pb.FieldCondition(key=key, range=bounds))
    values = value.split("|")
    if op == "!=":
        return types_pb.Condition(field=types_pb.FieldCondition(
            key=key, except_keyword=types_pb.KeywordList(values=values)))
    if len(values) > 1:
        if all(_is_int(v) for v in values):
            return types_pb.Condition(field=types_pb.FieldCondition(
                key=key, any_integer=types_pb.IntegerList(values=[int(v) for v in values])))
        return types_pb.Condition(field=types_pb.FieldCondition(
            key=key, any_keyword=types_pb.KeywordList(values=values)))
    if value.lower() in ("true", "false"):
        return types_pb.Condition(field=types_pb.FieldCondition(key=key, boolean=value.lower() == "true"))
    if _is_int(value):
        return types_pb.Condition(field=types_pb.FieldCondition(key=key, integer=int(value)))
    return types_pb.Condition(field=types_pb.FieldCondition(key=key, keyword=value))


def _is_int(value: str) -> bool:
    return re.fullmatch(r"-?\d+", value) is not None
