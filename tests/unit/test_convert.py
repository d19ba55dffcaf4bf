"""Wire conversion details; the message-by-message contract is tests/unit/test_contract.py."""

from __future__ import annotations

import inspect

import pytest
from google.protobuf import struct_pb2

from recommender import filters as f
from recommender.errors import InvalidArgument
from service import convert, servicers, validation
from service.api.lookalike.v1 import search_service_pb2, types_pb2


def test_servicers_never_touch_message_fields_beyond_envelopes():
    source = inspect.getsource(servicers)
    assert "payload" not in source and "Struct" not in source


def test_whole_numbers_in_payloads_become_ints_and_others_stay():
    struct = struct_pb2.Struct()
    struct.update({"n": 3.0, "price": 2.5, "nested": {"k": 7.0}, "list": [1.0, "a", True], "flag": False})
    assert convert.payload_from_struct(struct, "payload") == {
        "n": 3, "price": 2.5, "nested": {"k": 7}, "list": [1, "a", True], "flag": False}


def test_non_finite_payload_numbers_name_the_field():
    struct = struct_pb2.Struct()
    struct.update({"deep": {"x": float("nan")}})
    with pytest.raises(InvalidArgument, match=r"payload\.deep\.x"):
        convert.payload_from_struct(struct, "payload")


def test_filters_convert_to_domain_types():
    t = types_pb2
    message = t.Filter(
        must=[t.Condition(field=t.FieldCondition(key="color", keyword="red"))],
        should=[t.Condition(field=t.FieldCondition(key="n", any_integer=t.IntegerList(values=[1, 2])))],
        must_not=[t.Condition(is_empty=t.IsEmptyCondition(key="gone"))],
    )
    assert convert.filter_from_proto(message) == f.Filter(
        must=(f.Match("color", "red"),), should=(f.MatchAny("n", (1, 2)),), must_not=(f.IsEmpty("gone"),))


def test_an_empty_filter_is_no_filter():
    assert convert.filter_from_proto(types_pb2.Filter()) is None
    assert convert.filter_from_proto(None) is None


def test_filters_deeper_than_the_limit_are_refused():
    t = types_pb2
    message = t.Filter(must=[t.Condition(field=t.FieldCondition(key="a", keyword="b"))])
    for _ in range(validation.MAX_FILTER_DEPTH + 2):
        message = t.Filter(must=[t.Condition(filter=message)])
    with pytest.raises(InvalidArgument, match="nest deeper"):
        validation.filter_(convert.filter_from_proto(message))


def test_zero_limit_means_the_default():
    params = convert.params_from_proto(search_service_pb2.SearchRequest(text="x"))
    assert (params.limit, params.offset, params.score_threshold) == (convert.DEFAULT_LIMIT, 0, None)
