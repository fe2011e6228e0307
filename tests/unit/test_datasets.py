"""Broken and empty datasets are clear errors (reading and writing real ones: tests/models/test_datasets.py)."""

from __future__ import annotations

import pytest
from PIL import Image

from hebbian_mirror.datasets import load_dataset
from hebbian_mirror.errors import DatasetError


def test_broken_and_empty_datasets(tmp_path):
    root = tmp_path / "broken"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("thing\n")
    Image.new("RGB", (100, 80)).save(root / "images" / "a.jpg")
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\nnot a label\n")
    (root / "images" / "b.jpg").write_bytes(b"not really a jpeg")
    ds = load_dataset(root)
    assert len(ds.samples) == 1 and len(ds.samples[0].boxes) == 1
    assert any("out of range" in p for p in ds.problems) and any("b.jpg" in p for p in ds.problems)
    with pytest.raises(DatasetError, match="no images"):
        (root / "images" / "a.jpg").unlink()
        load_dataset(root)
    with pytest.raises(DatasetError, match=r"no data\.yaml, classes\.txt"):
        (tmp_path / "nothing").mkdir()
        load_dataset(tmp_path / "nothing")
