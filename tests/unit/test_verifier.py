"""The verifier's parts without ../shared: crops, the candidate labelling rule, the combination's fit, the
verified scores carried by :class:`Detections`, the record round trip and the wrapped detector's thresholds."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from hebbian_mirror.detection import Detections, DetectOptions
from hebbian_mirror.errors import ModelFormatError
from hebbian_mirror.verify import combination
from hebbian_mirror.verify.mining import label_candidate, matched
from hebbian_mirror.verify.net import EfficientNetLite0
from hebbian_mirror.verify.verifier import VerifiedDetector, Verifier, crops, square_regions

from ..fakes import FakeDetector


def test_square_regions_keep_the_centre_and_add_the_margin():
    regions = square_regions(np.array([[10, 20, 30, 60]]), margin=0.25)
    assert regions.tolist() == [[-10.0, 10.0, 50.0, 70.0]]  # the longer side 40, 1.5x: a 60 px square


def test_crops_sample_the_region_and_leave_the_outside_black():
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 140:160] = (255, 0, 0)  # a red square
    out = crops(image, np.array([[130, 30, 170, 70], [-40, -40, 0, 0]]), 16)
    assert out.shape == (2, 3, 16, 16)
    assert out[0, :, 8, 8].tolist() == pytest.approx([1.0, 0.0, 0.0])  # the red square's middle
    assert out[0, 0, 0, 0].item() == pytest.approx(0.0)  # its corner lies outside the square
    assert out[1].abs().max().item() == 0.0  # wholly outside the image: black
    assert crops(image, np.zeros((0, 4)), 16).shape == (0, 3, 16, 16)


def test_candidate_labels_by_overlap():
    pistol = ((100, 100, 200, 200), 1)
    assert label_candidate((105, 100, 200, 205), [pistol]) == 1  # the weapon, whatever the detector called it
    assert label_candidate((300, 300, 400, 400), [pistol]) == 0  # far from any: a mined false positive
    assert label_candidate((150, 150, 260, 260), [pistol]) is None  # in between: not used
    assert label_candidate((0, 0, 400, 400), [pistol]) is None  # a weapon wholly inside it: not a negative
    assert label_candidate((300, 300, 400, 400), []) == 0


def test_matching_counts_duplicates_as_false_positives():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]], float)
    assert matched(boxes, np.array([0.5, 0.9, 0.8]), [(0, 0, 10, 10)]).tolist() == [False, True, False]


def test_the_combination_recovers_known_weights():
    rng = np.random.default_rng(0)
    det, ver = rng.uniform(0.01, 0.99, 4000), rng.uniform(0.01, 0.99, 4000)
    z = -1.0 + 0.5 * np.log(det / (1 - det)) + 2.0 * np.log(ver / (1 - ver))
    positive = rng.uniform(size=4000) < 1 / (1 + np.exp(-z))
    bias, a, b = combination.fit(det, ver, positive)
    assert (bias, a, b) == pytest.approx((-1.0, 0.5, 2.0), abs=0.2)
    assert combination.fit(det[:3], ver[:3], [True, True, True]) == (0.0, 0.5, 0.5)  # nothing to learn from


def test_detections_carry_both_scores():
    found = Detections(
        [[0, 0, 5, 5, 0.8, 0], [1, 1, 6, 6, 0.4, 1]], ["pistol", "person"], (10, 10), [[0.3, 0.9], [0.4, np.nan]]
    )
    first, second = found
    assert (first.detector_score, first.verifier_score) == (0.3, 0.9)
    assert first.to_dict()["verifier_score"] == 0.9
    assert second.verifier_score is None and "verifier_score" not in second.to_dict()
    assert found.select([1, 0])[1] == first
    assert found.renamed({"pistol": "Pistol"})[0].verifier_score == 0.9
    assert pickle.loads(pickle.dumps(found))[0] == first
    back = Detections.from_dicts([d.to_dict() for d in found], found.class_names, (10, 10))
    assert list(back) == list(found)
    plain = Detections([[0, 0, 5, 5, 0.8, 0]], ["pistol"], (10, 10))
    assert plain[0].to_dict() == {"box": [0, 0, 5, 5], "score": 0.8, "class_id": 0, "label": "pistol"}


def _verifier(**kw) -> Verifier:
    torch.manual_seed(0)
    return Verifier(EfficientNetLite0(classes=2), ("background", "knife"), size=32, **kw)


def test_the_record_round_trips():
    v = _verifier(low=0.1, weights={"knife": (0.5, 1.0, 2.0)})
    back = Verifier.from_record(v.to_record())
    assert (back.labels, back.size, back.low, back.weights) == (v.labels, 32, 0.1, {"knife": (0.5, 1.0, 2.0)})
    batch = torch.rand(3, 3, 32, 32)
    assert np.allclose(back.probabilities(batch), v.probabilities(batch), atol=0.01)  # weights stored in fp16
    with pytest.raises(ModelFormatError):
        Verifier.from_record({"arch": "resnet"})
    with pytest.raises(ModelFormatError):
        Verifier(EfficientNetLite0(classes=2), ("knife", "background"))


def test_the_verified_detector_looks_below_the_callers_threshold_and_applies_it_after():
    inner = FakeDetector()
    seen = []
    plain = inner._detect_batch
    inner._detect_batch = lambda images, options: seen.append(options[0].conf) or plain(images, options)
    # the knife (0.6) is the only candidate; weights that make the combined score the verifier's probability
    v = _verifier(low=0.05, weights={"knife": (0.0, 0.0, 1.0)})
    detector = VerifiedDetector(inner, v)
    image = np.full((64, 64, 3), 128, np.uint8)
    (found,) = detector.detect([image], DetectOptions(conf=0.25))
    assert seen == [0.05]
    knife = next(d for d in found if d.label == "knife")
    p = v.probabilities(crops(image, square_regions(np.array([knife.box]), v.margin), v.size))[0, 1]
    assert knife.detector_score == 0.6 and knife.verifier_score == pytest.approx(p, abs=1e-6)
    assert knife.score == pytest.approx(p, abs=1e-4)
    assert [d.label for d in found if d.verifier_score is None] == ["person", "dog"]  # not looked at, unchanged
    assert all(d.score >= 0.25 for d in found)
    (high,) = detector.detect([image], DetectOptions(conf=0.999))
    assert [d.label for d in high] == []
    assert detector.info()["verifier"]["classes"] == ["knife"]


def test_the_floor_is_the_lowest_detector_score_the_verifier_could_lift_to_the_threshold():
    v = _verifier(low=0.001, weights={"knife": (-0.4, 1.1, 0.5)})
    for conf in (0.25, 0.5, 0.9):
        floor = v.floor(conf)
        assert v.combine("knife", np.array([floor]), np.array([1.0]))[0] == pytest.approx(conf, abs=1e-6)
        assert v.combine("knife", np.array([floor * 0.9]), np.array([1.0]))[0] < conf
    assert v.floor(0.0) == 0.001  # never below low
    found = Detections([[0, 0, 5, 5, 0.004, 0], [0, 0, 5, 5, 0.5, 0]], ["knife"], (10, 10))
    assert v.candidates(found, 0.5)[0].tolist() == [1] and v.candidates(found, 0.0)[0].tolist() == [1, 0]


def test_a_negative_verifier_weight_still_lowers_the_floor():
    v = _verifier(low=0.0, weights={"knife": (0.0, 1.0, -0.5)})
    floor = v.floor(0.5)
    assert v.combine("knife", np.array([floor]), np.array([0.0]))[0] == pytest.approx(0.5, abs=1e-6)


def test_verified_class_detections_the_verifier_did_not_see_are_scored_without_its_evidence():
    v = _verifier(low=0.05, max_candidates=1, weights={"knife": (0.5, 1.0, 2.0)})
    rows = [[0, 0, 9, 9, 0.9, 0], [20, 20, 29, 29, 0.8, 0], [0, 0, 9, 9, 0.7, 1]]
    found = Detections(rows, ["knife", "dog"], (32, 32))
    (out,) = v.rescore([np.zeros((32, 32, 3), np.uint8)], [found], [DetectOptions(conf=0.1)])
    second = next(d for d in out if d.box == (20, 20, 29, 29))  # past max_candidates: not looked at
    assert second.verifier_score is None and second.score == pytest.approx(1 / (1 + np.exp(-(0.5 + np.log(4)))))
    assert next(d for d in out if d.label == "dog").score == 0.7  # a class it does not verify: unchanged


def test_detections_refuse_score_pairs_that_do_not_fit():
    with pytest.raises(ValueError, match="2 verified score pairs for 1 detections"):
        Detections([[0, 0, 5, 5, 0.8, 0]], ["knife"], (10, 10), [[0.1, 0.2], [0.3, 0.4]])


def test_verifier_settings_are_checked():
    from hebbian_mirror.errors import TrainingConfigError
    from hebbian_mirror.train.verifier import VerifierConfig

    with pytest.raises(TrainingConfigError, match="classes is a list of class names"):
        VerifierConfig.from_dict({"classes": "pistol"})
    with pytest.raises(TrainingConfigError, match="batch >= 2, max_candidates >= 1"):
        VerifierConfig.from_dict({"batch": 1, "max_candidates": 0})
    with pytest.raises(TrainingConfigError, match="unknown setting"):
        VerifierConfig.from_dict({"epoch": 3})
    assert VerifierConfig.from_dict({"classes": ["knife"]}).classes == ("knife",)
