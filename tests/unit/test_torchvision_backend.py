"""A checkpoint that does not fit its torchvision builder is refused."""

from __future__ import annotations

import pytest
import torch
import torchvision.models.detection as tvd

from hebbian_mirror.config import load_settings
from hebbian_mirror.errors import ModelFormatError
from hebbian_mirror.models.loader import load_detector
from hebbian_mirror.models.registry import get_spec


def test_wrong_checkpoint_is_rejected(tmp_path):
    spec = get_spec("ssdlite320-mobilenet-v3-large")
    (tmp_path / spec.files[0].name).write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFormatError, match="cannot read torchvision weights"):
        load_detector(spec.name, load_settings(weights_dir=tmp_path, device="cpu", offline=True))
    other = tvd.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=91)
    torch.save(other.state_dict(), tmp_path / spec.files[0].name)
    with pytest.raises(ModelFormatError, match="does not fit"):
        load_detector(spec.name, load_settings(weights_dir=tmp_path, device="cpu", offline=True))
