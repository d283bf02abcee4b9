"""Budget parsing: [0, 1] pixel units, fraction strings, clear errors."""

from __future__ import annotations

import math

import pytest

from serobust.eps import parse_eps, parse_eps_list


@pytest.mark.parametrize("value,expected", [("8/255", 8 / 255), (" 0.25 ", 0.25), (0, 0.0), (1, 1.0), ("1/2", 0.5)])
def test_accepted_budgets(value, expected):
    assert parse_eps(value) == pytest.approx(expected)


@pytest.mark.parametrize("value,match", [(-0.1, ">= 0"), (1.5, r"<= 1 .*did you mean 1.5/255"), (8, "8/255"),
                                         (math.nan, "NaN"), ("abc", "not a number"), ("1/0", "not a number"),
                                         (True, "number"), (None, "number")])
def test_rejected_budgets_say_what_is_allowed(value, match):
    with pytest.raises(ValueError, match=match):
        parse_eps(value)


def test_l2_radius_may_exceed_one_but_not_infinity():
    assert parse_eps("300/255", upper=None) == pytest.approx(300 / 255)
    with pytest.raises(ValueError, match="finite"):
        parse_eps(math.inf, upper=None)


def test_lists_keep_order_and_name_the_bad_index():
    assert parse_eps_list([0, "4/255", 0.1]) == [0.0, 4 / 255, 0.1]
    assert parse_eps_list("8/255") == [8 / 255]
    with pytest.raises(ValueError, match=r"eps\[1\]"):
        parse_eps_list([0.1, 2.0])
    with pytest.raises(ValueError, match="empty"):
        parse_eps_list([])
