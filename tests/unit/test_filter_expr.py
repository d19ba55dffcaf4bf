from __future__ import annotations

import pytest

from recommender import filters as f
from service import convert
from service.filter_expr import parse_filter


@pytest.mark.parametrize("expression, expected", [
    ("color=red", f.Match("color", "red")),
    ("stock=3", f.Match("stock", 3)),
    ("in_stock=true", f.Match("in_stock", True)),
    ("color=red|blue", f.MatchAny("color", ("red", "blue"))),
    ("stock=1|2", f.MatchAny("stock", (1, 2))),
    ("shape!=circle", f.MatchExcept("shape", ("circle",))),
    ("price<50", f.Range("price", lt=50.0)),
    ("price >= 2.5", f.Range("price", gte=2.5)),
    ("brand.name=acme", f.Match("brand.name", "acme")),
])
def test_expressions_become_the_matching_condition(expression, expected):
    assert convert.filter_from_proto(parse_filter([expression])) == f.Filter(must=(expected,))


def test_no_expressions_no_filter():
    assert parse_filter([]) is None


@pytest.mark.parametrize("bad", ["color", "price<cheap", "=red"])
def test_unreadable_expressions_say_how_to_write_them(bad):
    with pytest.raises(ValueError, match="filter"):
        parse_filter([bad])
