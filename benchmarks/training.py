"""Where a training step's time goes on the CPU, and what the speed-ups buy: in one run, the same images and steps
for each variant (input size, channels-last, frozen backbone, decoded images cached in RAM), timed part by part:
loading (decode + augmentation + mosaic), forward + loss, backward, optimiser step.

    HEBBIAN_MIRROR_WEIGHTS=../shared/weights .venv/bin/python benchmarks/training.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from hebbian_mirror.config import load_settings
from hebbian_mirror.darknet.training import collate
from hebbian_mirror.datasets import load_splits
from hebbian_mirror.datasets.augment import AugmentConfig
from hebbian_mirror.families import family
from hebbian_mirror.models.loader import load_network

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "weapons" / "pistols"

VARIANTS = {
    "baseline 416": {},
    "channels-last": {"channels_last": True},
    "frozen backbone": {"freeze_backbone": True},
    "320 input": {"img_size": 320},
    "cached images": {"cache": True},
    "all of them": {"channels_last": True, "freeze_backbone": True, "img_size": 320, "cache": True},
}


def measure(name: str, variant: dict, ds, steps: int, batch: int) -> dict[str, float]:
    settings = load_settings(device="cpu")
    fam = family("darknet").training()
    base = load_network("yolov4-tiny", settings)
    network = fam.adapt(base, ds.classes, {}, variant.get("img_size"), "bench")
    if variant.get("freeze_backbone"):
        fam.freeze_backbone(network)
    cache, channels_last = bool(variant.get("cache")), bool(variant.get("channels_last"))
    train_set = fam.train_set(network, ds, AugmentConfig(), cache=cache)
    if channels_last:
        network.module.to(memory_format=torch.channels_last)
    criterion = fam.criterion(network, channels_last=channels_last)
    params = [p for p in network.module.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    fam.train_mode(network)
    times = {"load": 0.0, "forward": 0.0, "backward": 0.0, "step": 0.0}
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0)).tolist()
    for s in range(steps):
        t0 = time.perf_counter()
        images, targets = collate([train_set[i] for i in order[s * batch : (s + 1) * batch]])
        t1 = time.perf_counter()
        loss, _ = criterion(images, targets, torch.device("cpu"), False)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if s:  # the first step warms up
            for key, (a, b) in zip(times, ((t0, t1), (t1, t2), (t2, t3), (t3, t4)), strict=True):
                times[key] += b - a
    images_done = (steps - 1) * batch
    total = sum(times.values())
    return {"images/s": images_done / total} | {f"{k} ms/img": 1000 * v / images_done for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--images", type=int, default=160)
    args = parser.parse_args()
    ds = load_splits(DATA)["train"]
    ds.samples = ds.samples[: args.images]
    torch.manual_seed(0)
    print(
        f"# yolov4-tiny on {DATA.name}, {args.steps - 1} timed steps of {args.batch}, {torch.get_num_threads()} threads"
    )
    print("| variant | images/s | vs baseline | load | forward + loss | backward | step (ms/img) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    baseline = None
    for name, variant in VARIANTS.items():
        r = measure(name, variant, ds, args.steps, args.batch)
        baseline = baseline or r["images/s"]
        parts = " | ".join(f"{r[k]:.0f}" for k in ("load ms/img", "forward ms/img", "backward ms/img", "step ms/img"))
        print(f"| {name} | {r['images/s']:.1f} | {r['images/s'] / baseline:.2f}× | {parts} |", flush=True)


if __name__ == "__main__":
    main()
