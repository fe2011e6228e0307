"""``data alarm-clips``: a labelled clip set from datasets and classes (pistols and knives from validation splits,
harmless scenes from held-out images without them), as evaluate-alarms reads it."""

from __future__ import annotations

import json

from hebbian_mirror.classes import canonical_name
from hebbian_mirror.datasets import load_splits
from hebbian_mirror.streams.alarm_eval import load_clipset
from hebbian_mirror.streams.clipset import harmless_images, weapon_images

from ..conftest import COCO_VAL, SHARED

WEAPONS = SHARED / "data" / "weapons"


def test_weapon_and_harmless_images_come_from_held_out_splits():
    knives = weapon_images(WEAPONS / "knives", "Knife")  # names match as everywhere (canonical)
    assert knives and all("/valid/" in str(p) or "/val/" in str(p) for p in knives)
    coco = load_splits(COCO_VAL)["train"]  # a folder of one split: all of it is held out from training
    with_knife = {
        s.image for s in coco.samples if any(canonical_name(coco.classes[b.class_id]) == "knife" for b in s.boxes)
    }
    scenes = harmless_images(COCO_VAL, ["knife", "pistol"])
    assert with_knife and not with_knife & set(scenes) and len(scenes) == len(coco.samples) - len(with_knife)
    handheld = harmless_images(WEAPONS / "handheld", ["pistol"])
    assert len(handheld) == 32 + 23  # its validation and test splits, never its training images


def test_the_command_makes_clips_of_each_class_in_turn(cli, tmp_path):
    code, out, err = cli(
        "data", "alarm-clips", "--out", tmp_path / "clips", "--weapon", f"{WEAPONS / 'pistols'}=pistol",
        "--weapon", f"{WEAPONS / 'knives'}=knife", "--harmless", COCO_VAL, "--harmless", WEAPONS / "handheld",
        "--positives", "3", "--negatives", "1", "--negative-seconds", "2", "--fps", "4",
    )  # fmt: skip
    assert code == 0, out + err
    index = json.loads((tmp_path / "clips" / "clips.json").read_text())
    assert [c["label"] for c in index["clips"]] == ["knife", "pistol", "knife", None]
    assert [len(c["visible"]) for c in index["clips"]] == [1, 1, 2, 0]  # every third clip: the weapon comes back
    assert all(0 < a <= b < c["frames"] for c in index["clips"] for a, b in c["visible"])
    clips = load_clipset(tmp_path / "clips")  # as evaluate-alarms reads it
    assert [c.label for c in clips] == ["knife", "pistol", "knife", None] and all(c.fps == 4 for c in clips)
    code, out, err = cli("data", "alarm-clips", "--out", tmp_path / "x", "--weapon", "no-class-here")
    assert code != 0 and "DATASET=CLASS" in out + err
    code, out, err = cli(
        "data", "alarm-clips", SHARED, "--out", tmp_path / "y", "--weapon", f"{WEAPONS / 'knives'}=rifle"
    )
    assert code != 0 and "shows a labelled 'rifle'" in " ".join((out + err).split()), out + err
