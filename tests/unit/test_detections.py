"""``Detections``, the one form of an image's detections: one N×6 array with the class names and the image size,
read as arrays (API encoders, OIP, alarms) or as ``Detection`` records, and pickled as is through the worker pipe."""

from __future__ import annotations

import pickle

import numpy as np
import torch

from hebbian_mirror.detection import Detection, Detections, to_detections

NAMES = ("person", "knife", "dog")


def made() -> Detections:
    boxes = torch.tensor([[10.5, 20.25, 110.0, 220.0], [30.0, 40.0, 50.0, 60.125]])
    return to_detections(boxes, torch.tensor([0.875, 0.5]), torch.tensor([0, 1]), NAMES, (640, 480))


def test_arrays_and_records_say_the_same():
    dets = made()
    assert len(dets) == 2 and dets.image_size == (640, 480) and dets.class_names == NAMES
    assert dets.boxes.shape == (2, 4) and dets.scores.tolist() == [0.875, 0.5]
    assert dets.class_ids.dtype == np.int64 and dets.class_ids.tolist() == [0, 1] and dets.labels == ["person", "knife"]
    assert dets[1] == Detection((30.0, 40.0, 50.0, 60.125), 0.5, 1, "knife")
    assert list(dets) == [dets[0], dets[1]] and dets == [dets[0], dets[1]]
    assert isinstance(dets[0].class_id, int) and isinstance(dets[0].score, float)
    assert dets.boxes.base is dets.data or np.shares_memory(dets.boxes, dets.data)  # a view, not a copy


def test_select_rename_and_back_from_json():
    dets = made()
    kept = dets.select(dets.scores >= 0.6)
    assert kept.labels == ["person"] and kept.image_size == dets.image_size
    assert dets[1:].labels == ["knife"]
    shown = dets.renamed({"knife": "Knife"})
    assert shown.labels == ["person", "Knife"] and np.array_equal(shown.data, dets.data)
    again = Detections.from_dicts([d.to_dict() for d in dets], NAMES, (640, 480))
    assert again == dets and np.array_equal(again.data, dets.data)
    assert Detections.of(list(dets), NAMES, (640, 480)) == dets


def test_empty_and_pickled_as_is():
    empty = to_detections(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.long), NAMES, (5, 7))
    assert len(empty) == 0 and empty.boxes.shape == (0, 4) and list(empty) == [] and empty.labels == []
    dets = made()
    back = pickle.loads(pickle.dumps(dets))
    assert back == dets and back.class_names == NAMES and back.image_size == (640, 480)
    assert back.data.dtype == np.float64 and np.array_equal(back.data, dets.data)
