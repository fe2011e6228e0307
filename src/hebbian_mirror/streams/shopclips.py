"""Clips that look like a shop camera, made from datasets: a still scene (a photo without people or dangerous
objects, scaled to 1280×720), sensor noise and light that drifts and sometimes switches, people (cut out of a
dataset along their outlines where it has them) walking in, sometimes stopping, and out again, some holding a
weapon or a look-alike at CCTV scale (the object a few dozen pixels, cut from its dataset's validation boxes).

Three kinds of clip, each listed in ``clips.json`` with its ``kind`` (``evaluate-alarms`` reads the same file as for
:mod:`.clipset`): ``weapon`` (one person carries a weapon; ``visible`` says in which frames it is wholly in view),
``lookalike`` (people carry phones, wallets...: never an alarm) and ``rack`` (weapons lie still in the scene, a
knife rack: never an alarm). The same seed gives the same clips.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..classes import canonical_name
from ..errors import ClipSetError
from .clipset import encode_clip

SIZE = (1280, 720)
PERSON = "person"


@dataclass
class Pools:
    """What the clips are made of."""

    people: list[Image.Image]  # RGBA cutouts
    weapons: dict[str, list[Image.Image]]  # class → RGB crops
    lookalikes: dict[str, list[Image.Image]]
    backgrounds: list[Path]


def _crop(path: Path, box: Sequence[float], margin: float = 0.04) -> Image.Image:
    with Image.open(path) as im:
        image = im.convert("RGB")
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    return image.crop((max(0, x1 - mx), max(0, y1 - my), min(image.width, x2 + mx), min(image.height, y2 + my)))


def object_crops(dataset: Path, label: str, limit: int = 200, split: str = "val") -> list[Image.Image]:
    """Crops of ``dataset``'s ``split`` boxes of class ``label`` (at least 24 px a side), at most ``limit``."""
    from ..datasets import load_dataset

    ds = load_dataset(dataset, split=split)
    wanted = canonical_name(label)
    found = [
        (s.image, b.xyxy)
        for s in ds.samples
        for b in s.boxes
        if canonical_name(ds.classes[b.class_id]) == wanted and min(b.width, b.height) >= 24
    ]
    if not found:
        raise ClipSetError(f"{dataset} ({split}): no box of class {label!r} of at least 24 pixels a side")
    random.Random(0).shuffle(found)
    return [_crop(path, box) for path, box in found[:limit]]


def person_cutouts(dataset: Path, limit: int = 150, min_height: int = 160) -> list[Image.Image]:
    """People of ``dataset`` (every split; uncrowded, at least ``min_height`` pixels tall, not touching the image's
    edge) as RGBA: cut along their outlines where the dataset has them, else a feathered ellipse."""
    from ..datasets import load_splits

    out: list[Image.Image] = []
    for ds in load_splits(dataset).values():
        for s in ds.samples:
            for b in s.boxes:
                x1, y1, x2, y2 = b.xyxy
                if canonical_name(ds.classes[b.class_id]) != PERSON or b.iscrowd or b.height < min_height:
                    continue
                if x1 < 2 or y1 < 2 or x2 > s.width - 2 or y2 > s.height - 2 or b.height < 1.3 * b.width:
                    continue  # cut off by the photo's edge, or not standing
                with Image.open(s.image) as im:
                    image = im.convert("RGB")
                mask = Image.new("L", image.size, 0)
                draw = ImageDraw.Draw(mask)
                for poly in b.outline:
                    draw.polygon(list(zip(poly[::2], poly[1::2], strict=True)), fill=255)
                if not b.outline:
                    draw.ellipse((x1, y1, x2, y2), fill=255)
                mask = mask.filter(ImageFilter.GaussianBlur(1.5))
                image.putalpha(mask)
                out.append(image.crop((int(x1), int(y1), math.ceil(x2), math.ceil(y2))))
                if len(out) >= limit:
                    return out
    if not out:
        raise ClipSetError(f"{dataset}: no whole, standing person at least {min_height} pixels tall")
    return out


def cover(path: Path, size: tuple[int, int] = SIZE) -> np.ndarray:
    """The photo scaled and cropped to fill ``size`` (float32 RGB)."""
    with Image.open(path) as im:
        image = im.convert("RGB")
    scale = max(size[0] / image.width, size[1] / image.height)
    image = image.resize((math.ceil(image.width * scale), math.ceil(image.height * scale)), Image.BILINEAR)
    left, top = (image.width - size[0]) // 2, (image.height - size[1]) // 2
    return np.asarray(image.crop((left, top, left + size[0], top + size[1])), np.float32)


@dataclass
class Walker:
    """A person crossing the scene: in at ``start`` (frame), ``speed`` px per frame, a ``pause`` (frames) in the
    middle, holding ``item`` (RGB, already scaled) at ``hand`` (fractions of the person's box)."""

    person: Image.Image
    start: int
    speed: float
    y: int  # feet
    pause: int = 0
    item: Image.Image | None = None
    hand: tuple[float, float] = (0.7, 0.5)
    x_stop: float = 0.0
    positions: dict[int, tuple[int, int]] = field(default_factory=dict)

    def place(self, i: int, width: int) -> tuple[int, int] | None:
        """The person's top-left corner in frame ``i`` (None: not in view)."""
        t = i - self.start
        if t < 0:
            return None
        w = self.person.width
        travel = abs(self.speed) * t
        stop_at = abs(self.x_stop - (-w if self.speed > 0 else width))
        if travel > stop_at:
            travel = stop_at + max(0.0, abs(self.speed) * (t - self.pause) - stop_at)
        x = -w + travel if self.speed > 0 else width - travel
        if x < -w - 1 or x > width + 1:
            return None
        bob = round(3 * math.sin(t / 2.0))
        return round(x), self.y - self.person.height + bob

    def item_box(self, corner: tuple[int, int], i: int) -> tuple[int, int, int, int] | None:
        if self.item is None:
            return None
        cx = corner[0] + self.hand[0] * self.person.width + 2 * math.sin(i / 3.0)
        cy = corner[1] + self.hand[1] * self.person.height + 2 * math.cos(i / 4.0)
        x1, y1 = round(cx - self.item.width / 2), round(cy - self.item.height / 2)
        return x1, y1, x1 + self.item.width, y1 + self.item.height


def _scaled(item: Image.Image, longest: int) -> Image.Image:
    scale = longest / max(item.size)
    return item.resize((max(4, round(item.width * scale)), max(4, round(item.height * scale))), Image.LANCZOS)


class ShopClip:
    """One clip's scene and who crosses it; ``frames()`` renders it, ``visible`` is its ground truth."""

    def __init__(self, pools: Pools, rng: random.Random, frames: int, size: tuple[int, int] = SIZE) -> None:
        self.rng, self.n, self.size = rng, frames, size
        self.pools = pools
        self.background = cover(rng.choice(pools.backgrounds), size)
        self.walkers: list[Walker] = []
        self.still: list[tuple[Image.Image, tuple[int, int]]] = []  # objects lying in the scene
        self.switch = (rng.randrange(frames), rng.randrange(20, 60)) if rng.random() < 0.5 else None

    def walker(self, start: int, item: Image.Image | None) -> Walker:
        rng, (width, height) = self.rng, self.size
        person = rng.choice(self.pools.people)
        tall = rng.randint(round(0.45 * height), round(0.75 * height))
        person = person.resize((max(8, round(person.width * tall / person.height)), tall), Image.LANCZOS)
        if item is not None:  # CCTV scale: the object a few dozen pixels (its longest side 11-18% of the person)
            item = _scaled(item, round(tall * rng.uniform(0.11, 0.18)))
        speed = rng.uniform(5.0, 14.0) * rng.choice((-1, 1))
        w = Walker(person, start, speed, rng.randint(round(0.8 * height), height - 4), item=item)
        w.x_stop = rng.uniform(0.2, 0.8) * width - person.width / 2
        w.pause = rng.choice((0, 0, rng.randint(20, 60)))
        w.hand = (rng.choice((0.2, 0.8)) + rng.uniform(-0.05, 0.05), rng.uniform(0.42, 0.58))
        self.walkers.append(w)
        return w

    def lay(self, item: Image.Image) -> None:
        """An object lying still in the scene, on the lower half (a counter), for the whole clip."""
        item = _scaled(item, self.rng.randint(70, 140))  # near the camera: a knife on the counter below it
        x = self.rng.randint(20, self.size[0] - item.width - 20)
        y = self.rng.randint(self.size[1] // 2, self.size[1] - item.height - 10)
        self.still.append((item, (x, y)))

    def visible(self, walker: Walker) -> list[list[int]]:
        """The frame ranges in which ``walker``'s item is wholly in view."""
        inside = []
        for i in range(self.n):
            corner = walker.place(i, self.size[0])
            box = walker.item_box(corner, i) if corner else None
            width, height = self.size
            inside.append(bool(box) and box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height)
        ranges, start = [], None
        for i, v in enumerate([*inside, False]):
            if v and start is None:
                start = i
            elif not v and start is not None:
                ranges.append([start, i - 1])
                start = None
        return ranges

    def frames(self):
        scene = Image.fromarray(self.background.astype(np.uint8))
        for item, place in self.still:
            scene.paste(item, place)
        base = np.asarray(scene, np.float32)
        noise = np.random.default_rng(self.rng.randrange(1 << 30))
        for i in range(self.n):
            frame = Image.fromarray(base.astype(np.uint8))
            for w in self.walkers:
                corner = w.place(i, self.size[0])
                if corner is None:
                    continue
                frame.paste(w.person, corner, w.person)
                if (box := w.item_box(corner, i)) is not None:
                    frame.paste(w.item, box[:2])
            light = 1.0 + 0.06 * math.sin(2 * math.pi * i / 240)
            if self.switch and self.switch[0] <= i < self.switch[0] + self.switch[1]:
                light *= 0.75  # a light switched off for a few seconds
            pixels = np.asarray(frame, np.float32) * light + noise.normal(0.0, 3.0, (self.size[1], self.size[0], 1))
            yield np.clip(pixels, 0, 255).astype(np.uint8)


def make_shop_clips(
    out: Path,
    pools: Pools,
    *,
    weapons: int = 10,
    lookalikes: int = 5,
    racks: int = 5,
    seconds: float = 60.0,
    weapon_seconds: float = 20.0,
    fps: float = 10.0,
    size: tuple[int, int] = SIZE,
    seed: int = 0,
    progress=None,
) -> Path:
    """Write ``out/weapon-NN.mp4`` (``weapon_seconds`` each; the weapon classes take turns), ``out/lookalike-NN.mp4``
    and ``out/rack-NN.mp4`` (``seconds`` each) and ``out/clips.json``; returns ``out``."""
    if not pools.people or not pools.backgrounds or ((weapons or racks) and not pools.weapons):
        raise ClipSetError("shop clips need people, backgrounds and (for weapon and rack clips) weapon crops")
    rng = random.Random(seed)
    classes = sorted(pools.weapons)
    harmless = [c for crops in pools.lookalikes.values() for c in crops]
    clips, total = [], weapons + lookalikes + racks

    def passers_by(clip: ShopClip, frames: int, every: tuple[float, float] = (4.0, 10.0)) -> None:
        t = rng.uniform(0, every[0])
        while t * fps < frames - 2 * fps:
            carry = rng.choice(harmless) if harmless and rng.random() < 0.6 else None
            clip.walker(round(t * fps), carry)
            t += rng.uniform(*every)

    def write(kind: str, i: int, clip: ShopClip, label: str | None, visible: list[list[int]]) -> None:
        name = f"{kind}-{i:02d}.mp4"
        encode_clip(clip.frames(), Path(out) / name, fps)
        clips.append({"file": name, "kind": kind, "label": label, "visible": visible, "frames": clip.n})
        clips[-1]["seconds"] = clip.n / fps
        if progress is not None:
            progress(len(clips), total)

    for i in range(1, weapons + 1):
        label = classes[(i - 1) % len(classes)]
        n = round(weapon_seconds * fps)
        visible: list[list[int]] = []
        while not visible:  # a walker whose weapon is wholly in view for at least a second
            clip = ShopClip(pools, rng, n, size)
            armed = clip.walker(rng.randrange(0, n // 3), rng.choice(pools.weapons[label]))
            visible = [r for r in clip.visible(armed) if r[1] - r[0] + 1 >= fps]
        passers_by(clip, n, (6.0, 14.0))
        write("weapon", i, clip, label, visible)
    for kind, count in (("lookalike", lookalikes), ("rack", racks)):
        for i in range(1, count + 1):
            clip = ShopClip(pools, rng, round(seconds * fps), size)
            if kind == "rack":
                rack = pools.weapons.get("knife") or pools.weapons[classes[0]]
                for _ in range(rng.randint(1, 3)):
                    clip.lay(rng.choice(rack))
            passers_by(clip, clip.n)
            write(kind, i, clip, None, [])
    (Path(out) / "clips.json").write_text(json.dumps({"fps": fps, "size": list(size), "clips": clips}, indent=1) + "\n")
    return Path(out)
