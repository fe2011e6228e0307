"""``data``: inspect, convert, merge, split and preview labelled datasets; clip sets; reviewed events as data."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich import box
from rich.table import Table

from ..errors import CommandError
from .app import app
from .common import Commands, cli_settings, config_option, console
from .options import fraction, setting

data_app = typer.Typer(
    help="Inspect, convert, merge, split and preview labelled datasets.", no_args_is_help=True, cls=Commands
)
app.add_typer(data_app, name="data")

DATA_HELP = "COCO json, YOLO data.yaml or folder, Pascal VOC folder."
TO_HELP = "Output format: yolo, coco or voc."


def _write(splits, out: Path, fmt: str) -> None:
    from ..datasets import write_splits

    path = write_splits(splits, out, fmt)
    counts = ", ".join(f"{k}: {len(v.samples)}" for k, v in splits.items())
    console.print(f"wrote {fmt} dataset ({counts} images) → {path}")


def _splits(data: Path):
    from ..datasets import load_splits

    return load_splits(data)


@data_app.command("stats")
def data_stats(
    data: Path = typer.Argument(..., help=DATA_HELP),
    as_json: bool = typer.Option(False, "--json", help="The whole report as JSON, for scripts."),
) -> None:
    """Images, boxes per class, box sizes, empty images and broken files, per split."""
    from ..datasets.tools import stats

    report = stats(_splits(data))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    console.print(f"{data}: {sum(r['images'] for r in report.values())} images", highlight=False)
    console.print(_split_table(report))
    console.print()
    console.print(_class_table(report))
    for split, r in report.items():
        for problem in r["problems"][:20]:
            console.print(f"[yellow]problem[/] ({split}): {problem}", highlight=False)
        if len(r["problems"]) > 20:
            console.print(f"... and {len(r['problems']) - 20} more problems in {split}")


def _table(*columns: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 or col == "display name" else "right")
    return table


def _split_table(report: dict) -> Table:
    """One row per split: counts, the median box and the COCO size classes."""
    table = _table("split", "images", "empty", "boxes", "median w×h", "small", "medium", "large", "problems")
    for split, r in report.items():
        w, h = r["box_width_px"], r["box_height_px"]
        median = f"{w['median']:.0f}×{h['median']:.0f}" if w else "—"
        sizes = r["box_sizes_coco"]
        counts = (r["images"], r["empty_images"], r["boxes"])
        table.add_row(
            split,
            *map(str, counts),
            median,
            *(str(sizes[k]) for k in ("small", "medium", "large")),
            str(len(r["problems"])),
        )
    return table


def _class_table(report: dict) -> Table:
    """Boxes per class and split (display names shown where a class has one)."""
    first = next(iter(report.values()))
    shown = any(first["display_names"].get(c, c) != c for c in first["boxes_per_class"])
    table = _table("class", *(["display name"] if shown else []), *report)
    for name in first["boxes_per_class"]:
        counts = [str(r["boxes_per_class"].get(name, 0)) for r in report.values()]
        table.add_row(name, *([first["display_names"].get(name, name)] if shown else []), *counts)
    return table


@data_app.command("convert")
def data_convert(
    data: Path = typer.Argument(..., help=DATA_HELP),
    out: Path = typer.Argument(..., help="New output folder."),
    to: str = typer.Option(..., "--to", help=TO_HELP),
) -> None:
    """Write a dataset in another format (every split; class and display names kept)."""
    _write(_splits(data), out, to)


@data_app.command("merge")
def data_merge(
    datasets: list[Path] = typer.Argument(..., help="Datasets to merge, then the output folder last."),
    to: str = typer.Option("yolo", "--to", help=TO_HELP),
) -> None:
    """Merge datasets into one: class lists united by name, splits by name."""
    from ..datasets.tools import merge

    if len(datasets) < 3:
        raise CommandError("give at least two datasets and an output folder")
    *sources, out = datasets
    merged = merge([_splits(d) for d in sources])
    console.print(f"classes: {', '.join(next(iter(merged.values())).classes)}")
    _write(merged, out, to)


@data_app.command("split")
def data_split(
    data: Path = typer.Argument(..., help=DATA_HELP),
    out: Path = typer.Argument(..., help="New output folder."),
    val: float = typer.Option(0.2, "--val", help="Fraction of the images for validation."),
    test: float = typer.Option(0.0, "--test", help="Fraction of the images for testing."),
    subset: float | None = typer.Option(
        None,
        "--subset",
        help="Keep only part of the images, for a quick experiment: a fraction (0.1) or a number of images (200).",
        show_default="all",
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed of the shuffle and of the subset."),
    to: str = typer.Option("yolo", "--to", help=TO_HELP),
) -> None:
    """Pool all images (or a random subset) and re-split them at random into train / val (/ test)."""
    from ..datasets.tools import split

    fraction("--val", val)
    fraction("--test", test)
    if val + test >= 1.0:
        raise CommandError(f"--val {val:g} and --test {test:g} leave no images for training: their sum must be below 1")
    if subset is not None and not (0.0 < subset < 1.0 or (subset >= 1 and subset.is_integer())):
        raise CommandError(f"--subset must be a fraction between 0 and 1 or a whole number of images, got {subset:g}")
    fractions = {"train": 1.0 - val - test, "val": val, **({"test": test} if test > 0 else {})}
    count = int(subset) if subset is not None and subset >= 1 else None
    share = subset if subset is not None and subset < 1 else None
    _write(split(_splits(data), fractions, seed, count=count, share=share), out, to)


@data_app.command("preview")
def data_preview(
    data: Path = typer.Argument(..., help=DATA_HELP),
    out: Path = typer.Option(..., "--out", help="Folder for the drawn images."),
    split: str = typer.Option("train", "--split", help="Split to draw."),
    limit: int | None = typer.Option(None, "--limit", help="At most this many images."),
) -> None:
    """Draw the ground-truth boxes (with display names) on the images."""
    from ..datasets import load_dataset
    from ..datasets.tools import preview

    written = preview(load_dataset(data, split=split), out, limit)
    console.print(f"{len(written)} images → {out}")


@data_app.command("alarm-clips")
def data_alarm_clips(
    shared: Path | None = typer.Argument(
        None,
        help="The shared data folder (../shared): its pistols, COCO photos and hand-held look-alikes.",
        exists=True,
        file_okay=False,
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the clips and their clips.json."),
    weapon: list[str] = typer.Option(
        [],
        "--weapon",
        help="DATASET=CLASS: its validation images showing CLASS appear in the positive clips "
        "(repeatable; the classes take turns).",
        show_default="SHARED's pistols",
    ),
    harmless: list[Path] = typer.Option(
        [],
        "--harmless",
        help="A dataset whose held-out images (val, test; all of a dataset of one split) are the harmless "
        "scenes (repeatable).",
        show_default="SHARED's COCO photos and hand-held look-alikes",
    ),
    positives: int = typer.Option(6, "--positives", min=0, help="Clips in which a weapon appears."),
    negatives: int = typer.Option(4, "--negatives", min=0, help="Clips without any."),
    negative_seconds: float = typer.Option(15.0, "--negative-seconds", min=1.0, help="Length of each negative clip."),
    fps: float = typer.Option(10.0, "--fps", min=1.0, help="Frames per second of the clips."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the same seed, the same clips)."),
) -> None:
    """Make a labelled clip set from real images, for evaluate-alarms: weapons appearing among look-alikes."""
    from ..streams.clipset import make_alarm_clips, sources

    images, scenes = sources(shared, _pairs("--weapon", weapon), harmless)
    index = make_alarm_clips(
        out,
        images,
        scenes,
        positives=positives,
        negatives=negatives,
        negative_seconds=negative_seconds,
        fps=fps,
        seed=seed,
    )
    console.print(f"clip set in {index}")


def _pairs(option: str, entries: list[str]) -> list[tuple[Path, str]]:
    pairs = []
    for entry in entries:
        path, sep, label = entry.rpartition("=")
        if not sep or not path or not label.strip():
            raise CommandError(f"{option} takes DATASET=CLASS, got {entry!r}")
        pairs.append((Path(path), label.strip()))
    return pairs


@data_app.command("shop-clips")
def data_shop_clips(
    out: Path = typer.Argument(..., help="Folder for the clips and their clips.json."),
    people: Path = typer.Option(
        ..., "--people", help="A dataset with people (a COCO json: cut along their outlines; else ellipses)."
    ),
    weapon: list[str] = typer.Option(
        ..., "--weapon", help="DATASET=CLASS: its validation boxes of CLASS are carried (repeatable)."
    ),
    lookalike: list[str] = typer.Option(
        [], "--lookalike", help="DATASET=CLASS: harmless things people carry (repeatable; its validation boxes)."
    ),
    background: list[Path] = typer.Option(
        [],
        "--background",
        help="A dataset whose held-out photos without people, weapons or look-alikes are the scenes (repeatable).",
        show_default="the --people dataset",
    ),
    weapons: int = typer.Option(10, "--weapons", min=0, help="Clips in which a person carries a weapon."),
    lookalikes: int = typer.Option(5, "--lookalikes", min=0, help="Clips of people carrying look-alikes."),
    racks: int = typer.Option(5, "--racks", min=0, help="Clips with weapons lying still (a knife rack)."),
    seconds: float = typer.Option(60.0, "--seconds", min=5.0, help="Length of each look-alike and rack clip."),
    weapon_seconds: float = typer.Option(20.0, "--weapon-seconds", min=5.0, help="Length of each weapon clip."),
    fps: float = typer.Option(10.0, "--fps", min=1.0, max=60.0, help="Frames per second of the clips."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the same seed, the same clips)."),
) -> None:
    """Make clips that look like a shop camera (1280x720, a still scene, noise, light changes, people walking
    through carrying weapons or look-alikes at CCTV scale, knives lying on a counter), for evaluate-alarms and the
    streams benchmark."""
    from rich.progress import Progress

    from ..classes import COCO_CLASSES
    from ..streams.clipset import harmless_images
    from ..streams.shopclips import Pools, make_shop_clips, object_crops, person_cutouts

    armed, harmless = _pairs("--weapon", weapon), _pairs("--lookalike", lookalike)
    named = {"person", *(c.lower() for _, c in armed + harmless)}
    avoid = named | {c for c in COCO_CLASSES if named & set(c.split())}  # a phone: COCO's cell phone too
    pools = Pools(
        people=person_cutouts(people),
        weapons={label: object_crops(path, label) for path, label in armed},
        lookalikes={label: object_crops(path, label) for path, label in harmless},
        backgrounds=[p for d in background or [people] for p in harmless_images(d, avoid)],
    )
    with Progress(console=console) as bar:
        task = bar.add_task("shop clips", total=weapons + lookalikes + racks)
        make_shop_clips(
            out,
            pools,
            weapons=weapons,
            lookalikes=lookalikes,
            racks=racks,
            seconds=seconds,
            weapon_seconds=weapon_seconds,
            fps=fps,
            seed=seed,
            progress=lambda done, total: bar.update(task, completed=done),
        )
    console.print(f"clip set in {out} ({len(pools.people)} people, {len(pools.backgrounds)} scenes)")


@data_app.command("from-events")
def data_from_events(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="New output folder (a YOLO dataset with one train split)."),
    events_dir: Path | None = setting("events_dir"),
    since: float | None = typer.Option(None, "--since", help="Only events started at or after (Unix seconds)."),
    stream: list[str] = typer.Option([], "--stream", help="Only this stream's events (repeatable)."),
    config: Path | None = config_option(),
) -> None:
    """Reviewed events as training data: each false alarm's frame a hard negative, each confirmed alarm's frame
    with its (detector's) box; events.json beside them says which event and review each image came from."""
    from ..streams.feedback import from_events

    settings = cli_settings(ctx)
    done = from_events(settings.events_dir, out, since=since, streams=stream or None)
    console.print(
        f"wrote {done.confirmed + done.false_alarms} images ({done.confirmed} confirmed, {done.false_alarms} "
        f"false alarms) → {done.data}",
        highlight=False,
    )
    if done.skipped:
        console.print(f"{done.skipped} reviewed event(s) without a stored frame left out", style="yellow")
    console.print("check the confirmed boxes (they are the detector's), then add the folder to a recipe's datasets")
