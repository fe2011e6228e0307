"""The weapons model that ships in the package: listed and loaded by name offline (its file checked, its base
model's weights from the cache), finding pistols and knives in validation photos of ../shared and keeping COCO's
classes (the dog photo); its verifier raising a weapon's crop and lowering a phone's, and ``--no-verify`` giving
the detector's own scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hebbian_mirror.boxes import iou
from hebbian_mirror.config import load_settings
from hebbian_mirror.datasets import load_splits
from hebbian_mirror.detection import DetectOptions
from hebbian_mirror.images import decode_image
from hebbian_mirror.models.cache import sha256_of
from hebbian_mirror.models.loader import load_detector
from hebbian_mirror.models.shipped import SHIPPED, shipped_path
from hebbian_mirror.verify.verifier import VerifiedDetector

from ..conftest import DOG, KNIFE, REPO, SHARED

DATA = SHARED / "data" / "weapons"


@pytest.fixture(scope="module")
def weapons():
    return load_detector("weapons", load_settings(device="cpu", offline=True))


def found(detector, split: str, label: str, images: int = 12) -> tuple[int, int]:
    """How many of ``images`` validation images (spread over the split) have their first ``label`` box found:
    a detection of that class at the served threshold (0.25) with IoU ≥ 0.5."""
    val = load_splits(DATA / split / "data.yaml")["val"]
    wanted = val.classes.index(label)
    samples = [s for s in val.samples if any(b.class_id == wanted for b in s.boxes)]
    samples = samples[:: max(1, len(samples) // images)][:images]
    hits = 0
    for sample in samples:
        truth = next(b.xyxy for b in sample.boxes if b.class_id == wanted)
        (detections,) = detector.detect([decode_image(sample.image)], DetectOptions(conf=0.25))
        hits += any(d.label == label and iou(d.box, truth) >= 0.5 for d in detections)
    return hits, len(samples)


def test_listed_by_name_with_its_digest_and_measured_ap(cli):
    model = SHIPPED["weapons"]
    assert shipped_path("weapons") == model.path and sha256_of(model.path) == model.sha256
    assert model.path.stat().st_size < 60e6 and "pistol" in model.new_classes
    code, stdout, _ = cli("models", "--json")
    assert code == 0, stdout
    row = next(r for r in map(json.loads, stdout.splitlines()) if r["name"] == "weapons")
    assert row["sha256"] == model.sha256 and row["AP50"]["pistol"] == model.measured["pistol"]
    assert (REPO / model.card).is_file() and row["card"] == model.card


def test_finds_pistols_and_knives_in_validation_photos(weapons):
    pistols, of = found(weapons, "pistols", "pistol")
    assert pistols >= 0.75 * of, f"{pistols} of {of} pistols"
    knives, of = found(weapons, "knives", "knife")  # knife AP50 0.52: seen 5 of 12 at 0.25
    assert knives >= of / 3, f"{knives} of {of} knives"


def test_its_detector_finds_the_knife_of_the_original_demo(weapons):
    """``before1.jpg``: a man holding a folding knife (the original weapons demo's photo; seen: knife 0.27). The
    verifier then scores that knife below 0.05 (a known failure, in the model card): the detector's own view."""
    (found_,) = weapons.inner.detect([decode_image(KNIFE)], DetectOptions(conf=0.25))
    (man,) = [d.box for d in found_ if d.label == "person" and d.score >= 0.5]
    knives = [d for d in found_ if d.label == "knife"]
    assert knives and all(iou(k.box, man) > 0 for k in knives), found_


def test_keeps_cocos_classes(weapons):
    (found_,) = weapons.detect([decode_image(DOG)], DetectOptions(conf=0.5))
    assert {"dog", "bicycle"} <= {d.label for d in found_} and len(weapons.class_names) == 83


def test_the_verifier_raises_a_weapon_and_lowers_a_phone(weapons):
    """Crops of labelled boxes (not the detector's): a pistol's and a knife's are called weapons, a held phone's
    background."""
    assert isinstance(weapons, VerifiedDetector)
    verifier = weapons.verifier
    crops = []
    for split, label in (("pistols", "pistol"), ("knives", "knife"), ("handheld", "phone")):
        val = load_splits(DATA / split / "data.yaml")["val"]
        wanted = val.classes.index(label)
        sample = next(s for s in val.samples if any(b.class_id == wanted for b in s.boxes))
        box = next(b.xyxy for b in sample.boxes if b.class_id == wanted)
        crops.append(verifier.crops_of(decode_image(sample.image), np.array([box], dtype=np.float32)))
    probabilities = verifier.probabilities(torch.cat(crops))
    index = {name: i for i, name in enumerate(verifier.labels)}
    assert probabilities[0, index["pistol"]] > 0.5 and probabilities[1, index["knife"]] > 0.5, probabilities
    assert probabilities[2, 0] > 0.5, probabilities  # the phone: background


def test_no_verify_gives_the_detectors_own_scores(weapons):
    image = decode_image(next((DATA / "pistols" / "valid" / "images").iterdir()))
    plain = load_detector("weapons", load_settings(device="cpu", offline=True, verify=False))
    assert not isinstance(plain, VerifiedDetector)
    (own,) = weapons.inner.detect([image], DetectOptions(conf=0.05))
    (unverified,) = plain.detect([image], DetectOptions(conf=0.05))
    assert np.array_equal(unverified.data, own.data)
