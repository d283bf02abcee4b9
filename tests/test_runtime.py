"""The shared argument checks in serobust.runtime: one rule for every integer option and module name."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from serobust.runtime import batch_where, check_batch_size, check_int, check_module_names


@pytest.mark.parametrize("value", [0, -3, True, 2.0, "4", None])
def test_check_int_refuses_what_is_not_an_int_at_least_one(value):
    with pytest.raises(ValueError, match=r"steps must be an int >= 1, got"):
        check_int(value, name="steps")


def test_check_int_returns_python_ints_and_honours_the_minimum():
    assert check_int(np.int64(7), name="n") == 7 and type(check_int(np.int64(7), name="n")) is int
    assert check_int(0, name="steps", minimum=0) == 0
    with pytest.raises(ValueError, match=r"n_resamples must be an int >= 1 \(e\.g\. 10_000\), got 0"):
        check_int(0, name="n_resamples", hint=" (e.g. 10_000)")
    with pytest.raises(ValueError, match="batch_size"):
        check_batch_size(False)


def test_check_module_names_lists_every_unknown_name():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    assert check_module_names(model, ["0", "1"], what="layers", hint="h") == ["0", "1"]
    with pytest.raises(ValueError, match=r"layers \['2', 'x'\] are not modules of Sequential; see here"):
        check_module_names(model, ["0", "2", "x"], what="layers", hint="see here")


def test_batch_where_names_the_examples_of_a_batch():
    assert batch_where(2, 100) == " (batch 2, examples 200..299)"
    assert batch_where(2, None) == " (batch 2)"
