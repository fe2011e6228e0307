"""A labelled alarm clip set from real images, for ``evaluate-alarms`` and the tests.

Positive clips show harmless scenes (by default COCO photos and people holding a phone, wallet or AirPods), then
a weapon from a validation split (Granada's pistols, the knife set's knives: each class in turn) for a few seconds
(slowly drifting, as a camera sees a still scene), then scenes again, sometimes twice; negative clips show only
the harmless scenes. ``clips.json`` says which class is visible where, in frame numbers. The same seed gives the
same set.
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


def weapon_images(dataset: Path, label: str, split: str = "val") -> list[Path]:
    """The images of ``dataset``'s ``split`` that show a labelled ``label`` (matched by canonical name)."""
    from ..classes import canonical_name
    from ..datasets import load_dataset

    ds = load_dataset(dataset, split=split)
    wanted = canonical_name(label)
    return [s.image for s in ds.samples if any(canonical_name(ds.classes[b.class_id]) == wanted for b in s.boxes)]


def harmless_images(dataset: Path, avoid: Iterable[str], splits: Iterable[str] = ("val", "test")) -> list[Path]:
    """The images of ``dataset``'s held-out ``splits`` (all of a dataset of one split) with no labelled object of a
    class in ``avoid`` (COCO's table knives are labelled knives: not harmless footage)."""
    from ..classes import canonical_name
    from ..datasets import load_splits

    avoid = {canonical_name(c) for c in avoid}
    found = load_splits(dataset)
    out = []
    for split in splits if len(found) > 1 else found:  # a dataset of one split (a folder of photos): all of it
        if (ds := found.get(split)) is None:
            continue
        out += [
            s.image for s in ds.samples if not any(canonical_name(ds.classes[b.class_id]) in avoid for b in s.boxes)
        ]
    return out


def sources(
    shared: Path | None, weapons: list[tuple[Path, str]] = (), harmless: list[Path] = ()
) -> tuple[dict[str, list[Path]], list[list[Path]]]:
    """The images of each weapon class (``(dataset, class)`` pairs; default the shared folder's pistols) and the
    pools of harmless scenes (a pool per dataset; default the shared COCO photos and hand-held look-alikes)."""
    if (not weapons or not harmless) and shared is None:
        raise ClipSetError("give the shared data folder, or both weapon datasets and harmless ones")
    data = Path(shared or ".") / "data"
    images: dict[str, list[Path]] = {}
    for path, label in weapons or [(data / "weapons" / "pistols", "pistol")]:
        if not (found := weapon_images(path, label)):
            raise ClipSetError(f"no validation image of {path} shows a labelled {label!r}")
        images.setdefault(label, []).extend(found)
    pools = [
        harmless_images(path, images) for path in harmless or [data / "coco-val2017", data / "weapons" / "handheld"]
    ]
    return images, pools


def make_alarm_clips(
    out: Path,
    weapons: dict[str, list[Path]],
    harmless: list[list[Path]],
    *,
    positives: int = 6,
    negatives: int = 4,
    negative_seconds: float = 15.0,
    fps: float = 10.0,
    seed: int = 0,
) -> Path:
    """Write ``out/pos-NN.mp4``, ``out/neg-NN.mp4`` and ``out/clips.json``; returns ``out``. ``weapons``: each
    dangerous class's images (positive clips take the classes in turn); ``harmless``: pools of scenes for around
    them and for the negative clips (``negative_seconds`` each), each pool drawn as often (the look-alikes as
    often as the COCO photos, however many of each there are)."""
    weapons = {label: images for label, images in weapons.items() if images}
    harmless = [pool for pool in harmless if pool]
    if not weapons or not harmless:
        raise ClipSetError("a clip set needs images of at least one dangerous class and harmless images")
    rng = random.Random(seed)
    second = round(fps)
    clips = []

    def scenes(seconds: float) -> list[np.ndarray]:
        frames: list[np.ndarray] = []
        while len(frames) < seconds * fps:
            frames += drifting(rng.choice(rng.choice(harmless)), 2 * second, rng)
        return frames

    labels = sorted(weapons)
    for i in range(1, positives + 1):
        label = labels[(i - 1) % len(labels)]
        frames, visible = scenes(3), []
        for _ in range(1 + (i % 3 == 0)):  # every third clip: the weapon comes back
            first = len(frames)
            frames += drifting(rng.choice(weapons[label]), 3 * second, rng)
            visible.append([first, len(frames) - 1])
            frames += scenes(3)
        clips.append({"file": f"pos-{i:02d}.mp4", "label": label, "visible": visible, "frames": len(frames)})
        encode_clip(frames, Path(out) / clips[-1]["file"], fps)
    for i in range(1, negatives + 1):
        frames = scenes(negative_seconds)
        clips.append({"file": f"neg-{i:02d}.mp4", "label": None, "visible": [], "frames": len(frames)})
        encode_clip(frames, Path(out) / clips[-1]["file"], fps)
    for c in clips:
        c["seconds"] = c["frames"] / fps
    (Path(out) / "clips.json").write_text(json.dumps({"fps": fps, "clips": clips}, indent=1) + "\n")
    return Path(out)
