"""Serving benchmark: our server against the raw detector and a naive one-request-one-inference server.

In one run, on one machine, with the same model and the same image:
  (a) the raw in-process detector (decode + detect) at its best batch size: the limit;
  (b) our server (`hebbian-mirror serve`, default settings) under `hebbian_mirror.loadgen`;
  (c) a naive FastAPI app calling the model once per request inside its handler (benchmarks/naive_server.py),
      the design of the original weapons-detection demo.
Servers are measured in alternation, level by level, for several rounds; each cell is the median round.

    HEBBIAN_MIRROR_WEIGHTS=../shared/weights .venv/bin/python benchmarks/serving.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hebbian_mirror.config import load_settings
from hebbian_mirror.images import decode_image
from hebbian_mirror.loadgen import run_load
from hebbian_mirror.models.loader import load_detector

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "photos" / "darknet-samples" / "dog.jpg"


def raw_limit(model: str, image: Path, seconds: float = 4.0) -> dict[int, float]:
    """Images/s of decode + detect in this process, per batch size."""
    detector = load_detector(model, load_settings(device="cpu"))
    data = image.read_bytes()
    rates = {}
    for batch in (1, 2, 4, 8):
        detector.detect([decode_image(data)] * batch)
        start, done = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            detector.detect([decode_image(data) for _ in range(batch)])
            done += batch
        rates[batch] = done / (time.perf_counter() - start)
    return rates


def start(cmd: list[str], url: str) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{cmd} did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="yolov4-tiny")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    env_note = f"{os.cpu_count()} CPUs, torch threads default"
    print(
        f"# {args.model}, {args.image.name}, {args.duration:g} s per cell, median of {args.rounds} rounds, {env_note}"
    )
    raw = raw_limit(args.model, args.image)
    best_batch = max(raw, key=raw.get)
    limit = raw[best_batch]
    service_ms = 8 / raw[8] * 1000  # one full batch of 8
    print("# raw detector (decode + detect), images/s by batch: " + ", ".join(f"b{b}: {r:.1f}" for b, r in raw.items()))

    servers = {
        "ours": (
            [
                sys.executable,
                "-m",
                "hebbian_mirror",
                "serve",
                "--model",
                args.model,
                "--host",
                "127.0.0.1",
                "--port",
                "8781",
                "--device",
                "cpu",
                "--log-level",
                "warning",
            ],
            "http://127.0.0.1:8781",
        ),
        "naive": (
            [sys.executable, str(REPO / "benchmarks" / "naive_server.py"), "--model", args.model, "--port", "8782"],
            "http://127.0.0.1:8782",
        ),
    }
    procs = {name: start(cmd, url) for name, (cmd, url) in servers.items()}
    samples: dict[tuple[str, int], list] = {}
    try:
        for _ in range(args.rounds):
            for level in levels:
                for name, (_, url) in servers.items():
                    result = asyncio.run(run_load(url, args.image, level, args.duration))
                    samples.setdefault((name, level), []).append(result)
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(30)

    def median(name: str, level: int, key: str) -> float:
        return statistics.median(getattr(r, key) for r in samples[(name, level)])

    print()
    print(f"Limit (a): {limit:.1f} images/s at batch {best_batch}; one batch of 8 takes {service_ms:.0f} ms.")
    print()
    print(
        "| clients | ours req/s | ours / limit | ours p50 / p99 ms | naive req/s | naive p50 / p99 ms "
        "| ours / naive | errors (ours, naive) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for level in levels:
        o_rps, n_rps = median("ours", level, "rps"), median("naive", level, "rps")
        row = {
            "clients": level,
            "ours_rps": o_rps,
            "ours_vs_limit": o_rps / limit,
            "ours_p50_ms": median("ours", level, "p50_ms"),
            "ours_p99_ms": median("ours", level, "p99_ms"),
            "naive_rps": n_rps,
            "naive_p50_ms": median("naive", level, "p50_ms"),
            "naive_p99_ms": median("naive", level, "p99_ms"),
            "ours_vs_naive": o_rps / n_rps,
            "ours_errors": sum(r.errors for r in samples[("ours", level)]),
            "naive_errors": sum(r.errors for r in samples[("naive", level)]),
        }
        rows.append(row)
        print(
            f"| {level} | {o_rps:.1f} | {row['ours_vs_limit']:.2f}× | {row['ours_p50_ms']:.0f} / "
            f"{row['ours_p99_ms']:.0f} | {n_rps:.1f} | {row['naive_p50_ms']:.0f} / {row['naive_p99_ms']:.0f} | "
            f"{row['ours_vs_naive']:.2f}× | {row['ours_errors']}, {row['naive_errors']} |"
        )
    print()
    print(
        "Every round (req/s): "
        + "; ".join(
            f"{name} c{level}: " + ", ".join(f"{r.rps:.1f}" for r in runs) for (name, level), runs in samples.items()
        )
    )
    if args.json:
        args.json.write_text(
            json.dumps({"raw": raw, "limit": limit, "service_ms": service_ms, "rows": rows}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
