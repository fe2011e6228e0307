"""Choosing the interpolation alpha from a sweep's numbers (the sweep itself: tests/models/)."""

from __future__ import annotations

import re

import pytest

from hebbian_mirror.errors import ModelFormatError
from hebbian_mirror.train.interpolate import choose


def test_choosing_takes_the_best_alpha_that_keeps_enough():
    rows = [
        {"alpha": 1.0, "AP50": 0.85, "retention": 0.58},
        {"alpha": 0.6, "AP50": 0.77, "retention": 0.82},
        {"alpha": 0.5, "AP50": 0.71, "retention": 0.88},
        {"alpha": 0.4, "AP50": 0.60, "retention": 0.93},
    ]
    assert choose(rows, 0.8)["alpha"] == 0.6 and choose(rows, 0.9)["alpha"] == 0.4 and choose(rows, 0)["alpha"] == 1
    with pytest.raises(
        ModelFormatError, match=re.escape("no α keeps 0.95× of the base classes (at best 0.93× at α 0.4)")
    ):
        choose(rows, 0.95)
