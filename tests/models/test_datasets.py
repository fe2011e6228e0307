"""Datasets: every format round-trips, Sohas layout, merge, split, stats, preview, bad data."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from hebbian_mirror.datasets import load_dataset, load_splits, write_splits
from hebbian_mirror.datasets.tools import merge, preview, stats
from hebbian_mirror.datasets.tools import split as split_dataset
from hebbian_mirror.errors import DatasetError

from ..conftest import SHARED

HANDHELD = SHARED / "data" / "weapons" / "handheld"
PISTOLS = SHARED / "data" / "weapons" / "pistols"


def small_handheld(tmp_path, per_split: int = 4):
    """A few real images per split of the hand-held set, as a YOLO dataset (and one negative image)."""
    splits = load_splits(HANDHELD / "data.yaml")
    for ds in splits.values():
        ds.samples = ds.samples[:per_split]
    splits["train"].samples[0].boxes = []  # a negative example
    out = tmp_path / "small"
    write_splits(splits, out, "yolo")
    return load_splits(out / "data.yaml")


def signature(splits):
    return {
        split: sorted(
            (
                s.image.name,
                s.width,
                s.height,
                tuple(sorted((ds.classes[b.class_id], *(round(v, 1) for v in b.xyxy)) for b in s.boxes)),
            )
            for s in ds.samples
        )
        for split, ds in splits.items()
    }


def test_every_format_round_trips(tmp_path):
    original = small_handheld(tmp_path)
    original["train"].display_names = {"phone": "Mobile phone"}
    path = tmp_path / "chain"
    current = original
    for fmt in ("coco", "voc", "yolo", "coco"):
        target = path / fmt
        path = target
        written = write_splits(current, target, fmt)
        current = load_splits(written)
        assert set(current) == {"train", "val", "test"}
        for split in current:
            assert sorted(current[split].classes) == sorted(original[split].classes)
        got = signature(current)
        want = signature(original)
        for split in want:  # boxes within 0.1 px through every format
            assert [(n, w, h) for n, w, h, _ in got[split]] == [(n, w, h) for n, w, h, _ in want[split]]
            for (_, _, _, bg), (_, _, _, bw) in zip(got[split], want[split], strict=True):
                assert len(bg) == len(bw)
                for a, b in zip(bg, bw, strict=True):
                    assert a[0] == b[0] and all(abs(x - y) <= 0.2 for x, y in zip(a[1:], b[1:], strict=True)), (
                        fmt,
                        a,
                        b,
                    )
        assert current["train"].display_names.get("phone") == "Mobile phone"
        assert any(not s.boxes for s in current["train"].samples)  # the negative survives


def test_sohas_layout_with_display_names(tmp_path):
    root = tmp_path / "sohas"
    src = load_dataset(HANDHELD / "data.yaml", split="test")
    names = {"phone": "smartphone", "wallet": "monedero", "airpods": "billete"}
    for split_dir, xml_dir, samples in (
        ("images", "annotations/xmls", src.samples[:3]),
        ("images_test", "annotations_test/xmls", src.samples[3:5]),
    ):
        (root / split_dir).mkdir(parents=True)
        (root / xml_dir).mkdir(parents=True)
        for s in samples:
            shutil.copy(s.image, root / split_dir / s.image.name)
            objects = "".join(
                f"<object><name>{names[src.classes[b.class_id]]}</name><bndbox><xmin>{b.xyxy[0]:.0f}</xmin>"
                f"<ymin>{b.xyxy[1]:.0f}</ymin><xmax>{b.xyxy[2]:.0f}</xmax><ymax>{b.xyxy[3]:.0f}</ymax></bndbox></object>"
                for b in s.boxes
            )
            (root / xml_dir / f"{s.image.stem}.xml").write_text(
                f"<annotation><filename>{s.image.name}</filename>{objects}</annotation>"
            )
    Image.new("RGB", (64, 48)).save(root / "images" / "empty-room.jpg")  # no xml: a negative
    splits = load_splits(root)
    assert set(splits) == {"train", "test"}
    train = splits["train"]
    assert len(train.samples) == 4 and sum(1 for s in train.samples if not s.boxes) == 1
    for i, c in enumerate(train.classes):
        assert train.display_name(i) == {"smartphone": "Smartphone", "monedero": "Wallet", "billete": "Banknote"}[c]
    assert load_dataset(root, split="test").samples


def test_merge_unites_classes_by_name(tmp_path):
    pistols = load_splits(PISTOLS / "data.yaml")
    for ds in pistols.values():
        ds.samples = ds.samples[:3]
    hand = small_handheld(tmp_path)
    merged = merge([pistols, hand])
    assert merged["train"].classes == ["pistol", "airpods", "phone", "wallet"]
    assert len(merged["train"].samples) == 3 + 4 and len(merged["val"].samples) == 3 + 4
    assert len(merged["test"].samples) == 4
    labels = {merged["train"].classes[b.class_id] for s in merged["train"].samples for b in s.boxes}
    assert "pistol" in labels and labels & {"airpods", "phone", "wallet"}
    out = write_splits(merged, tmp_path / "merged", "yolo")
    again = load_splits(out)
    assert again["train"].classes == merged["train"].classes and len(again["val"].samples) == 7


def test_split_stats_preview(tmp_path):
    hand = small_handheld(tmp_path, per_split=10)
    parts = split_dataset(hand, {"train": 0.7, "val": 0.3}, seed=1)
    total = sum(len(ds.samples) for ds in hand.values())
    assert len(parts["train"].samples) + len(parts["val"].samples) == total
    assert {s.image for s in parts["train"].samples}.isdisjoint({s.image for s in parts["val"].samples})
    assert (
        split_dataset(hand, {"train": 0.7, "val": 0.3}, seed=1)["val"].samples[0].image == parts["val"].samples[0].image
    )
    report = stats(hand)
    assert report["train"]["images"] == 10 and report["train"]["empty_images"] == 1
    assert sum(report["val"]["boxes_per_class"].values()) == report["val"]["boxes"] > 0
    assert report["val"]["box_width_px"]["min"] > 0
    drawn = preview(hand["val"], tmp_path / "preview", limit=3)
    assert len(drawn) == 3 and Image.open(drawn[0]).size == (
        hand["val"].samples[0].width,
        hand["val"].samples[0].height,
    )


def test_data_cli(cli, tmp_path):
    hand = small_handheld(tmp_path)
    code, stdout, stderr = cli("data", "stats", tmp_path / "small", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["train"]["empty_images"] == 1
    code, stdout, stderr = cli("data", "convert", tmp_path / "small", tmp_path / "as-coco", "--to", "coco")
    assert code == 0 and (tmp_path / "as-coco" / "val" / "_annotations.coco.json").is_file(), stderr
    code, _, stderr = cli("data", "merge", tmp_path / "small", PISTOLS / "data.yaml", tmp_path / "m", "--to", "voc")
    assert code == 0, stderr
    assert (tmp_path / "m" / "classes.txt").read_text().split() == ["airpods", "phone", "wallet", "pistol"]
    code, _, stderr = cli("data", "split", tmp_path / "small", tmp_path / "s", "--val", "0.5")
    assert code == 0 and set(load_splits(tmp_path / "s")) == {"train", "val"}, stderr
    code, stdout, _ = cli("data", "preview", tmp_path / "small", "--out", tmp_path / "p", "--split", "val")
    assert code == 0 and len(list((tmp_path / "p").glob("*.jpg"))) == len(hand["val"].samples)
    code, _, stderr = cli("data", "convert", tmp_path / "small", tmp_path / "as-coco", "--to", "coco")
    assert code == 1 and "not empty" in stderr  # never overwrites


def test_split_subset_is_random_and_reproducible(tmp_path):
    hand = small_handheld(tmp_path, per_split=10)  # 30 images
    pool = {s.image for ds in hand.values() for s in ds.samples}
    images = lambda parts: [s.image for ds in parts.values() for s in ds.samples]  # noqa: E731
    fractions = {"train": 0.8, "val": 0.2}
    twelve = split_dataset(hand, fractions, seed=3, count=12)
    assert [len(ds.samples) for ds in twelve.values()] == [10, 2] and set(images(twelve)) <= pool
    assert images(split_dataset(hand, fractions, seed=3, count=12)) == images(twelve)  # same seed, same subset
    assert set(images(split_dataset(hand, fractions, seed=4, count=12))) != set(images(twelve))
    assert len(images(split_dataset(hand, fractions, seed=0, share=0.5))) == 15
    tiny = split_dataset(hand, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=0, count=3)
    assert [len(ds.samples) for ds in tiny.values()] == [1, 1, 1]  # every split keeps an image
    with pytest.raises(DatasetError, match="cannot take 31 images: the dataset has 30"):
        split_dataset(hand, fractions, count=31)


def test_data_split_subset_and_clear_fraction_errors(cli, tmp_path):
    small_handheld(tmp_path, per_split=10)
    code, stdout, stderr = cli("data", "split", tmp_path / "small", tmp_path / "quick", "--subset", "12", "--seed", "5")
    assert code == 0, stderr
    quick = load_splits(tmp_path / "quick")
    assert sum(len(ds.samples) for ds in quick.values()) == 12 and "train: 10, val: 2" in stdout
    code, _, stderr = cli("data", "split", tmp_path / "small", tmp_path / "tenth", "--subset", "0.1", "--test", "0.3")
    assert code == 0, stderr
    assert [len(ds.samples) for ds in load_splits(tmp_path / "tenth").values()] == [1, 1, 1]
    for args, message in (
        (("--val", "1.5"), "--val must be between 0 and 1, got 1.5"),
        (("--test", "-0.1"), "--test must be between 0 and 1, got -0.1"),
        (("--val", "0.6", "--test", "0.5"), "--val 0.6 and --test 0.5 leave no images for training"),
        (("--subset", "0"), "--subset must be a fraction between 0 and 1 or a whole number of images, got 0"),
        (("--subset", "2.5"), "--subset must be a fraction between 0 and 1 or a whole number of images, got 2.5"),
        (("--subset", "500"), "cannot take 500 images: the dataset has 30"),
    ):
        code, _, stderr = cli("data", "split", tmp_path / "small", tmp_path / "never", *args)
        assert code == 1 and message in " ".join(stderr.split()) and "{" not in stderr, (args, stderr)
    assert not (tmp_path / "never").exists()


def test_data_stats_is_a_readable_table(cli, tmp_path):
    small_handheld(tmp_path, per_split=10)
    code, stdout, stderr = cli("data", "stats", tmp_path / "small")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert "{" not in stdout and "'" not in stdout and all(len(line) <= 80 for line in lines[1:])
    assert lines[0] == f"{tmp_path / 'small'}: 30 images"
    rows = {line.split()[0]: line.split() for line in lines if line.split()}
    assert rows["split"] == [
        "split",
        "images",
        "empty",
        "boxes",
        "median",
        "w×h",
        "small",
        "medium",
        "large",
        "problems",
    ]
    report = stats(load_splits(tmp_path / "small" / "data.yaml"))
    for split, r in report.items():
        assert rows[split][1:4] == [str(r["images"]), str(r["empty_images"]), str(r["boxes"])]
    assert rows["class"] == ["class", "train", "val", "test"]
    for name in report["train"]["boxes_per_class"]:
        assert rows[name][1:] == [str(report[s]["boxes_per_class"][name]) for s in ("train", "val", "test")]
