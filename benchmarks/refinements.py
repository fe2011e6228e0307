"""What YOLO selection's refinements cost: images/s of a Darknet model with plain NMS, with ``merge`` (box voting),
with ``augment`` (test-time augmentation: the image also flipped and at 0.8x size) and with both, on the CPU.

End to end from decoded RGB arrays to detections, conf 0.25. The settings run in alternation for several rounds
and the median round counts, so all see the same machine load. What they buy (AP) is measured with
``hebbian-mirror evaluate --merge --augment``, not here.

    HEBBIAN_MIRROR_WEIGHTS=../shared/weights .venv/bin/python benchmarks/refinements.py --model yolov4-tiny
"""

from __future__ import annotations

import argparse
import json
import platform

import torch
from darknet_vs_opencv import round_options, run_rounds

from hebbian_mirror.config import load_settings
from hebbian_mirror.detection import DetectOptions
from hebbian_mirror.images import decode_image, list_images
from hebbian_mirror.models.loader import load_detector

SETTINGS = {
    "plain NMS": DetectOptions(),
    "merge": DetectOptions(merge=True),
    "augment": DetectOptions(augment=True),
    "merge + augment": DetectOptions(merge=True, augment=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="yolov4-tiny")
    round_options(parser)
    args = parser.parse_args()

    detector = load_detector(args.model, load_settings(device="cpu", offline=True))
    images = [decode_image(p) for p in list_images([args.images])[: args.count]]
    print(f"# {detector.name}, {len(images)} images from {args.images}, {args.rounds} rounds, median round")
    print(
        f"# torch {torch.__version__} ({torch.get_num_threads()} threads), {platform.processor() or platform.machine()}"
    )
    print()
    print("| selection | batch | img/s | × plain NMS |")
    print("|---|---:|---:|---:|")
    results = []
    for batch in (int(b) for b in args.batches.split(",")):
        engines = {name: (lambda imgs, o=o: detector.detect(imgs, o)) for name, o in SETTINGS.items()}
        rates = run_rounds(engines, images, batch, args.rounds)
        for name, rate in rates.items():
            ratio = rate / rates["plain NMS"]
            results.append({"selection": name, "batch": batch, "images_per_s": rate, "vs_plain": ratio})
            print(f"| {name} | {batch} | {rate:.1f} | {ratio:.2f}× |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
