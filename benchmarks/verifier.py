"""What the verifier stage costs on the CPU: per frame, a verified model against its detector alone (the same
model loaded with ``--no-verify``), and per candidate, the verifier's forward pass on its crops.

End to end from decoded RGB arrays to detections, at the served threshold; the two run in alternation for several
rounds and the median round counts, so both see the same machine load. The frames are a folder of photos (people,
rooms, streets: COCO's by default) — a camera's typical frame, where few boxes are candidates.

    .venv/bin/python benchmarks/verifier.py --model runs/weapons/verified.pt
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch
from darknet_vs_opencv import round_options, run_rounds

from hebbian_mirror.config import load_settings
from hebbian_mirror.detection import DetectOptions
from hebbian_mirror.images import decode_image, list_images
from hebbian_mirror.models.loader import load_detector
from hebbian_mirror.verify.verifier import VerifiedDetector


def per_candidate_ms(
    verified: VerifiedDetector, images: list[np.ndarray], conf: float, rounds: int
) -> tuple[float, float]:
    """Candidates per frame at the served ``conf`` (mean) and the verifier's milliseconds per candidate (crop +
    forward, median round)."""
    v = verified.verifier
    options = DetectOptions(conf=min(conf, v.floor(conf)))
    batches = []
    for image, found in zip(images, verified.inner.detect(images, options), strict=True):
        pick, _ = v.candidates(found, conf)
        batches.append((image, found.boxes[pick]))
    count = sum(len(boxes) for _, boxes in batches)
    if not count:
        return 0.0, float("nan")
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for image, boxes in batches:
            if len(boxes):
                v.probabilities(v.crops_of(image, boxes))
        samples.append((time.perf_counter() - start) * 1000 / count)
    return count / len(images), statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model with a verifier stage (verified.pt, weapons)")
    parser.add_argument("--conf", type=float, default=0.25, help="the served threshold")
    round_options(parser)
    args = parser.parse_args()

    settings = load_settings(device="cpu", offline=True)
    images = [decode_image(p) for p in list_images([args.images])[: args.count]]
    verified = load_detector(args.model, settings)
    if not isinstance(verified, VerifiedDetector):
        raise SystemExit(f"{args.model} has no verifier stage")
    detectors = {"detector alone": verified.inner, "verified": verified}
    print(f"# {len(images)} images from {args.images}, {args.rounds} rounds, median round; conf {args.conf}")
    print(
        f"# torch {torch.__version__} ({torch.get_num_threads()} threads), {platform.processor() or platform.machine()}"
    )
    v = verified.verifier
    floor = v.floor(args.conf)
    print(f"# verifier: {', '.join(v.classes)}; {v.size}² crops; candidates ≥ {floor:.4f}, at most {v.max_candidates}")
    per_frame, per_candidate = per_candidate_ms(verified, images, args.conf, args.rounds)
    print(f"# candidates per frame {per_frame:.2f}; verifier {per_candidate:.2f} ms per candidate")
    print()
    print("| model | batch | img/s | ms per image | × detector alone |")
    print("|---|---:|---:|---:|---:|")
    results = {"candidates_per_frame": per_frame, "verifier_ms_per_candidate": per_candidate, "rows": []}
    options = [DetectOptions(conf=args.conf)] * max(int(b) for b in args.batches.split(","))
    for batch in (int(b) for b in args.batches.split(",")):
        engines = {name: (lambda imgs, d=d: d.detect(imgs, options[: len(imgs)])) for name, d in detectors.items()}
        rates = run_rounds(engines, images, batch, args.rounds)
        for name, rate in rates.items():
            ratio = rates["detector alone"] / rate
            results["rows"].append({"model": name, "batch": batch, "images_per_s": rate, "time_vs_detector": ratio})
            print(f"| {name} | {batch} | {rate:.1f} | {1000 / rate:.1f} | {ratio:.2f}× |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
