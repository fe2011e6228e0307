"""The motion detector and gate on a real photo as a still scene: sensor noise and drifting or dimmed light are no
motion, a walking object is, a picture changed at once is one frame of it; the gate checks moving frames, the
running alarm's frames and a still scene every ``refresh`` seconds."""

from __future__ import annotations

import numpy as np
from PIL import Image

from hebbian_mirror.streams.motion import MotionDetector, MotionGate
from tests.conftest import PHOTOS


def scene() -> np.ndarray:
    with Image.open(PHOTOS / "darknet-samples" / "horses.jpg") as im:
        return np.asarray(im.convert("RGB").resize((640, 360)), np.float32)


def frame(base: np.ndarray, rng: np.random.Generator, light: float = 1.0, thing: int | None = None) -> np.ndarray:
    image = base * light + rng.normal(0, 3.0, (*base.shape[:2], 1))
    if thing is not None:  # a dark 30 x 80 "person" at x = thing
        image[200:280, thing : thing + 30] = 20
    return np.clip(image, 0, 255).astype(np.uint8)


def test_noise_and_slowly_drifting_light_are_no_motion_a_walker_is():
    base, rng = scene(), np.random.default_rng(0)
    motion = MotionDetector()
    assert motion(frame(base, rng))  # the first look is all motion
    still = [bool(motion(frame(base, rng, light=1 + 0.06 * np.sin(i / 40)))) for i in range(100)]
    assert not any(still)
    walking = [motion(frame(base, rng, thing=50 + 6 * i)) for i in range(20)]
    assert all(walking)
    x1, y1, x2, y2 = walking[-1].boxes[0]
    assert x1 <= 50 + 6 * 19 + 30 and x2 >= 50 + 6 * 19 and y1 <= 280 and y2 >= 200  # where it walks


def scene_of(name: str) -> np.ndarray:
    with Image.open(PHOTOS / "darknet-samples" / name) as im:
        return np.asarray(im.convert("RGB").resize((640, 360)), np.float32)


def test_dimmed_light_is_no_motion_and_a_picture_changed_at_once_is_one_frame_of_it():
    base, rng = scene(), np.random.default_rng(1)
    motion = MotionDetector()
    for _ in range(10):
        motion(frame(base, rng))
    assert not any(motion(frame(base, rng, light=0.4)) for _ in range(10))  # contrast stretched: the same picture
    other = scene_of("dog.jpg")  # something right in front of the lens, or the camera turned
    changed = [motion(frame(other, rng)) for _ in range(10)]
    assert changed[0] and changed[0].share >= 0.6 and changed[0].boxes == [(0.0, 0.0, 640.0, 360.0)]
    assert not any(changed[1:])  # compared with the new picture from then on


def test_the_gate_checks_motion_running_alarms_and_a_still_scene_every_refresh_seconds():
    gate = MotionGate(refresh=2.0)
    checked = [t for t in range(50) if gate.due(False, t / 10)]  # 5 s of a still scene at 10 fps
    assert checked == [0, 20, 40]
    assert gate.due(True, 5.1) and gate.due(False, 5.2, alarm_running=True) and not gate.due(False, 5.3)
    assert gate.due(False, 1.0)  # the clock went back (a looped file): checked, and counted from there
