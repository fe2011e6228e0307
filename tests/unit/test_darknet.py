"""A malformed Darknet cfg is a clear error (parity with OpenCV on real weights: tests/models/test_darknet.py)."""

from __future__ import annotations

import pytest

from hebbian_mirror.darknet import DarknetNet, parse_cfg
from hebbian_mirror.errors import ModelFormatError


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "must start with a \\[net\\]"),
        ("[convolutional]\nfilters=3\n", "must start with a \\[net\\]"),
        ("[net]\nwidth=32\n", "no layers"),
        ("[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=8\nsize=3\nactivation=leaky\n", "no \\[yolo\\]"),
        ("[net]\n[convolutional]\nfilters=8\nactivation=weird\n[yolo]\n", "unsupported activation"),
        ("[net]\n[frobnicate]\n", "unsupported layer type"),
        ("[net]\n[route]\nlayers=-3\n", "does not exist"),
        ("[net]\nwidth 32\n", "expected 'key=value'"),
    ],
)
def test_bad_cfg_gives_clear_errors(text, words):
    with pytest.raises(ModelFormatError, match=words):
        DarknetNet(parse_cfg(text))
