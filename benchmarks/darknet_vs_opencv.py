"""Images/s of our PyTorch Darknet against OpenCV DNN's Darknet importer, on the CPU.

Same weights, same decoded images, same thresholds; end to end from an RGB array to a list of
detections (resize, network, decoding, confidence filter, class-aware NMS). Engines run in alternation
for several rounds and the median round counts, so both see the same machine load.

    HEBBIAN_MIRROR_WEIGHTS=../shared/weights .venv/bin/python benchmarks/darknet_vs_opencv.py
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from hebbian_mirror.config import load_settings
from hebbian_mirror.detection import DetectOptions
from hebbian_mirror.images import decode_image, list_images
from hebbian_mirror.models.loader import load_detector

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "coco-val2017" / "images"


class OpenCVDarknet:
    """The baseline: cv2.dnn with the usual post-processing of its YOLO outputs."""

    def __init__(self, cfg: Path, weights: Path, size: tuple[int, int]) -> None:
        self.net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        self.names = self.net.getUnconnectedOutLayersNames()
        self.size = size

    def detect(self, images: list[np.ndarray], conf: float, iou: float) -> list[list[tuple]]:
        blob = cv2.dnn.blobFromImages(images, 1 / 255.0, self.size, swapRB=False, crop=False)
        self.net.setInput(blob)
        outs = self.net.forward(self.names)  # per head: (B, rows, 5+C) for B > 1, (rows, 5+C) for 1
        outs = [o.reshape(len(images), -1, o.shape[-1]) for o in outs]
        rows_all = np.concatenate(outs, axis=1)
        results = []
        for img, rows in zip(images, rows_all, strict=True):
            h, w = img.shape[:2]
            rows = rows[rows[:, 4] > conf]
            idx, cls = np.nonzero(rows[:, 5:] > conf)
            scores = rows[idx, 5 + cls]
            boxes = np.stack(
                [
                    (rows[idx, 0] - rows[idx, 2] / 2) * w,
                    (rows[idx, 1] - rows[idx, 3] / 2) * h,
                    rows[idx, 2] * w,
                    rows[idx, 3] * h,
                ],
                1,
            )
            keep = cv2.dnn.NMSBoxesBatched(boxes.tolist(), scores.tolist(), cls.tolist(), conf, iou) if len(idx) else []
            results.append([(boxes[k], scores[k], cls[k]) for k in np.asarray(keep).reshape(-1)])
        return results


def run_rounds(engines: dict, images: list[np.ndarray], batch: int, rounds: int) -> dict[str, float]:
    """Median images/s of each engine over ``rounds`` alternating passes over ``images``."""
    samples: dict[str, list[float]] = {name: [] for name in engines}
    for fn in engines.values():  # warm-up
        fn(images[:batch])
    for _ in range(rounds):
        for name, fn in engines.items():
            start = time.perf_counter()
            for i in range(0, len(images) - batch + 1, batch):
                fn(images[i : i + batch])
            done = (len(images) // batch) * batch
            samples[name].append(done / (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in samples.items()}


def round_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options every in-process throughput benchmark here shares: batch sizes, images, rounds, JSON out."""
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of test images")
    parser.add_argument("--count", type=int, default=32, help="images per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="yolov4-tiny,yolov3-tiny")
    round_options(parser)
    args = parser.parse_args()

    settings = load_settings(device="cpu", offline=True)
    paths = list_images([args.images])[: args.count]
    images = [decode_image(p) for p in paths]
    options = DetectOptions(conf=0.25, iou=0.45)
    print(f"# {len(images)} images from {args.images}, {args.rounds} rounds, median round")
    print(
        f"# torch {torch.__version__} ({torch.get_num_threads()} threads), OpenCV {cv2.__version__} "
        f"({cv2.getNumThreads()} threads), {platform.processor() or platform.machine()}"
    )
    print()
    print("| model | batch | ours (img/s) | OpenCV DNN (img/s) | ours / OpenCV |")
    print("|---|---:|---:|---:|---:|")
    results = []
    for name in args.models.split(","):
        ours = load_detector(name, settings)
        cfg, weights = (settings.weights_dir / f"{name}.{ext}" for ext in ("cfg", "weights"))
        baseline = OpenCVDarknet(cfg, weights, ours.input_size)
        for batch in (int(b) for b in args.batches.split(",")):
            engines = {
                "ours": lambda imgs, d=ours: d.detect(imgs, options),
                "opencv": lambda imgs, b=baseline: b.detect(imgs, options.conf, options.iou),
            }
            rates = run_rounds(engines, images, batch, args.rounds)
            ratio = rates["ours"] / rates["opencv"]
            results.append({"model": name, "batch": batch, **rates, "ratio": ratio})
            print(f"| {name} | {batch} | {rates['ours']:.1f} | {rates['opencv']:.1f} | {ratio:.2f}× |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
