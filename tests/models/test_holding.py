"""``held_by``: each dangerous detection matched to the person holding it, on constructed boxes, a real photo and
a stream's alarm."""

from __future__ import annotations

from hebbian_mirror.boxes import held_by
from hebbian_mirror.detection import DetectOptions
from hebbian_mirror.images import decode_image

from ..conftest import KNIFE, detector


def test_the_knife_in_the_demo_photo_is_held_by_its_person():
    found = detector("yolov4-tiny").detect([decode_image(KNIFE.read_bytes())], DetectOptions(conf=0.03))[0]
    knife = next(i for i, d in enumerate(found) if d.label == "knife")  # COCO's yolov4-tiny scores it 0.05
    holder = held_by(found)[knife]
    assert holder is not None and found[holder].label == "person"
    assert found[holder].score == max(d.score for d in found if d.label == "person")  # the man, not the dog's box
