"""The model-family registry: each family declares what it can do, and adding one is one package plus one
registration line (here a toy family, registered for the test, is found by the loader with no other change)."""

from __future__ import annotations

import pytest
import torch

from hebbian_mirror.errors import ModelFormatError
from hebbian_mirror.families import Capabilities, Family, families, family, for_file
from hebbian_mirror.meta import ModelMeta
from hebbian_mirror.models import checkpoint
from hebbian_mirror.models.loader import load_detector
from hebbian_mirror.network import Network

from ..fakes import FakeDetector


def test_the_registered_families_and_what_they_declare():
    assert set(families()) == {"darknet", "torchvision", "onnx"}
    caps = {name: f.capabilities for name, f in families().items()}
    assert caps["darknet"].train and caps["darknet"].export and caps["darknet"].augment and caps["darknet"].combine
    assert caps["torchvision"].train and not caps["torchvision"].export and not caps["torchvision"].merge
    assert caps["onnx"].merge and not (caps["onnx"].augment or caps["onnx"].train or caps["onnx"].checkpoint)
    for name, fam in families().items():
        assert fam.name == name and family(name) is fam
        if fam.capabilities.train:
            adapter = fam.training()
            assert adapter.name == name and callable(adapter.collate) and isinstance(adapter.loss_summed, bool)
        else:
            with pytest.raises(ModelFormatError, match="training does not support"):
                fam.training()


def test_files_that_run_as_they_are_find_their_family():
    assert for_file("exported/model.ONNX") is family("onnx")
    assert for_file("runs/x/best.pt") is None and for_file("yolov4-tiny") is None
    with pytest.raises(ModelFormatError, match="unknown model family 'nope'"):
        family("nope")


class ToyFamily(Family):
    """A family that runs ``.toy`` files (the fake detector), can merge, and nothing else."""

    name = "toy"
    capabilities = Capabilities(merge=True)
    suffixes = (".toy",)

    def open(self, path, device="auto"):
        return FakeDetector(name=path.stem)


def test_a_new_family_is_one_class_and_one_registration(monkeypatch, tmp_path):
    monkeypatch.setitem(families(), "toy", ToyFamily())  # what its one line in families() does
    (tmp_path / "shop.toy").write_bytes(b"toy model")
    detector = load_detector(tmp_path / "shop.toy")
    assert isinstance(detector, FakeDetector) and detector.name == "shop"
    with pytest.raises(Exception, match="TOY model not found"):
        load_detector(tmp_path / "missing.toy")
    # what it does not declare is refused in words, by the family itself
    toy = Network("toy", torch.nn.Linear(1, 1), ModelMeta("t", ("a",), (32, 32)))
    with pytest.raises(ModelFormatError, match="toy model: it cannot be saved as a checkpoint"):
        checkpoint.to_record(toy)
    with pytest.raises(ModelFormatError, match="toy models cannot run a Network"):
        family("toy").detector(toy)
