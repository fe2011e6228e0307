"""A labelled alarm clip set from real images, for ``evaluate-alarms`` and the tests.

Positive clips show harmless scenes (COCO photos, people holding a phone, wallet or AirPods), then a pistol from
the Granada validation split for a few seconds (slowly drifting, as a camera sees a still scene), then scenes
again, sometimes twice; negative clips show only the harmless scenes. ``clips.json`` says where each pistol is
visible, in frame numbers. The same seed gives the same set.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ClipSetError
from .recording import ClipRecorder

SIZE = (640, 480)


def letterbox(image: Image.Image, size: tuple[int, int] = SIZE, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """``image`` scaled to fit ``size`` (a margin left for drifting), centred on grey, moved by ``shift``."""
    img = image.convert("RGB")
    img.thumbnail((size[0] - 24, size[1] - 24))
    canvas = Image.new("RGB", size, (48, 48, 48))
    canvas.paste(img, ((size[0] - img.width) // 2 + shift[0], (size[1] - img.height) // 2 + shift[1]))
    return np.asarray(canvas)


def drifting(path: Path, frames: int, rng: random.Random, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    """``frames`` views of one photo drifting a few pixels per frame."""
    image = Image.open(path)
    dx, dy = rng.choice((-1, 1)), rng.choice((-1, 1))
    return [letterbox(image, size, ((i * dx) % 21 - 10, (i * dy) % 13 - 6)) for i in range(frames)]


def encode_clip(frames: Iterable[np.ndarray], path: Path, fps: float) -> Path:
    """Write RGB frames as an H.264 mp4."""
    recorder = ClipRecorder(fps, max_frames=1 << 30)
    recorder.extend(frames)
    data = recorder.finish()
    if data is None:
        raise ClipSetError(f"{path}: no frames to encode")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def make_alarm_clips(
    shared: Path, out: Path, *, positives: int = 6, negatives: int = 4, fps: float = 10.0, seed: int = 0
) -> Path:
    """Write ``out/pos-NN.mp4``, ``out/neg-NN.mp4`` and ``out/clips.json``; returns ``out``."""
    rng = random.Random(seed)
    data = Path(shared) / "data"
    pistols = _images(data / "weapons" / "pistols" / "valid" / "images")
    scenes = _images(data / "coco-val2017" / "images")
    handheld = _images(data / "weapons" / "handheld" / "valid" / "images") + _images(
        data / "weapons" / "handheld" / "test" / "images"
    )
    if not pistols or not scenes or not handheld:
        raise FileNotFoundError(f"{shared}: pistol, COCO or hand-held images missing (see its README)")
    second = round(fps)
    clips = []

    def harmless(seconds: float) -> list[np.ndarray]:
        frames: list[np.ndarray] = []
        while len(frames) < seconds * fps:
            pool = handheld if rng.random() < 0.5 else scenes
            frames += drifting(rng.choice(pool), 2 * second, rng)
        return frames

    for i in range(1, positives + 1):
        frames, visible = harmless(3), []
        for _ in range(1 + (i % 3 == 0)):  # every third clip: the pistol comes back
            first = len(frames)
            frames += drifting(rng.choice(pistols), 3 * second, rng)
            visible.append([first, len(frames) - 1])
            frames += harmless(3)
        clips.append({"file": f"pos-{i:02d}.mp4", "label": "pistol", "visible": visible, "frames": len(frames)})
        encode_clip(frames, Path(out) / clips[-1]["file"], fps)
    for i in range(1, negatives + 1):
        frames = harmless(15)
        clips.append({"file": f"neg-{i:02d}.mp4", "label": None, "visible": [], "frames": len(frames)})
        encode_clip(frames, Path(out) / clips[-1]["file"], fps)
    for c in clips:
        c["seconds"] = c["frames"] / fps
    (Path(out) / "clips.json").write_text(json.dumps({"fps": fps, "clips": clips}, indent=1) + "\n")
    return Path(out)
