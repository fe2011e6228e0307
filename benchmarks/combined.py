"""What a combined model costs: images/s of a base model, of a combined model (base + an extension of it, as
``hebbian-mirror combine`` writes), and of a combined model whose extension kept the base's backbone (trained with
``--backbone-lr 0``: those layers run once), on the CPU.

End to end from decoded RGB arrays to detections. The models run in alternation for several rounds and the median
round counts, so all see the same machine load.

    HEBBIAN_MIRROR_WEIGHTS=../shared/weights .venv/bin/python benchmarks/combined.py --combined runs/weapons/combined.pt
"""

from __future__ import annotations

import argparse
import json
import platform

import torch
from darknet_vs_opencv import round_options, run_rounds

from hebbian_mirror.config import load_settings
from hebbian_mirror.darknet.combined import combine
from hebbian_mirror.darknet.heads import backbone_layers, resize_heads
from hebbian_mirror.detection import DetectOptions
from hebbian_mirror.families import family
from hebbian_mirror.images import decode_image, list_images
from hebbian_mirror.models.loader import load_detector, load_network
from hebbian_mirror.network import Network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="yolov4-tiny")
    parser.add_argument("--combined", help="a combined checkpoint (else only the shared-layers pair is measured)")
    round_options(parser)
    args = parser.parse_args()

    settings = load_settings(device="cpu", offline=True)
    images = [decode_image(p) for p in list_images([args.images])[: args.count]]
    options = [DetectOptions(conf=0.25, iou=0.45)] * max(int(b) for b in args.batches.split(","))
    base = load_network(args.base, settings)
    # an extension trained with --backbone-lr 0 (the backbone frozen, all else moved), 5 new classes
    extension = resize_heads(base.module, len(base.meta.classes) + 5, keep=len(base.meta.classes))
    with torch.no_grad():
        for i in range(backbone_layers(extension), len(extension.layers)):
            for p in extension.layers[i].parameters():
                p.add_(torch.randn_like(p) * 0.01)
    names = (*base.meta.classes, *(f"new{i}" for i in range(5)))
    shared = Network("darknet", extension, base.meta.with_(classes=names))
    detectors = {
        "base": load_detector(args.base, settings),
        "combined, shared layers": family("darknet").detector(combine(shared, load_network(args.base, settings))),
    }
    if args.combined:
        detectors["combined"] = load_detector(args.combined, settings)
    print(f"# {len(images)} images from {args.images}, {args.rounds} rounds, median round")
    print(
        f"# torch {torch.__version__} ({torch.get_num_threads()} threads), {platform.processor() or platform.machine()}"
    )
    print(f"# shared layers: {detectors['combined, shared layers'].net.shared} of {len(extension.layers)}")
    print()
    print("| model | batch | img/s | × base |")
    print("|---|---:|---:|---:|")
    results = []
    for batch in (int(b) for b in args.batches.split(",")):
        engines = {name: (lambda imgs, d=d: d.detect(imgs, options[: len(imgs)])) for name, d in detectors.items()}
        rates = run_rounds(engines, images, batch, args.rounds)
        for name, rate in rates.items():
            results.append({"model": name, "batch": batch, "images_per_s": rate, "vs_base": rate / rates["base"]})
            print(f"| {name} | {batch} | {rate:.1f} | {rate / rates['base']:.2f}× |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
