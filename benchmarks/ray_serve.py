"""Ray Serve vs our own server: the same model, image and load generator, in one run.

Two pairings, each measured in alternation, level by level, for several rounds (each cell the median round):
  (1) one model process: our server with ``--workers 1`` against ``serve --ray`` with one replica holding both
      cores (``--ray-cpus-per-replica 2``): the price of Serve's proxy, router and handle hops;
  (2) two model processes: our server's default (2 workers) against two Ray replicas of one CPU each.
Only one Ray cluster runs at a time.

    HEBBIAN_MIRROR_WEIGHTS=../shared/weights .venv/bin/python benchmarks/ray_serve.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import sys
from pathlib import Path

from serving import DEFAULT_IMAGE, Peer, start

from hebbian_mirror.loadgen import run_load


def command(model: str, port: int, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "hebbian_mirror", "serve", "--model", model, "--host", "127.0.0.1"]
    return [*cmd, "--port", str(port), "--device", "cpu", "--log-level", "warning", *extra]


def pairings(model: str) -> list[tuple[str, Peer, Peer]]:
    def ray(replicas: int, cpus: int) -> list[str]:
        cluster = ["--ray", "--ray-num-cpus", str(os.cpu_count() or 2)]
        return [*cluster, "--ray-replicas", str(replicas), "--ray-cpus-per-replica", str(cpus)]

    return [
        (
            "one",
            Peer("ours (1 worker)", command(model, 8801, ["--workers", "1"]), 8801),
            Peer("Ray (1 replica)", command(model, 8802, ray(1, 2)), 8802),
        ),
        (
            "two",
            Peer("ours (2 workers)", command(model, 8803, ["--workers", "2"]), 8803),
            Peer("Ray (2 replicas)", command(model, 8804, ray(2, 1)), 8804),
        ),
    ]


def stop(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever it left behind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="yolov4-tiny")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    print(
        f"# {args.model}, {args.image.name}, {args.duration:g} s per cell, {args.rounds} rounds, {os.cpu_count()} CPUs"
    )
    print()
    head = "| model processes | clients | ours req/s | ours p50 / p99 ms | Ray req/s | Ray p50 / p99 ms | Ray / ours"
    print(head + " | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for title, ours, ray in pairings(args.model):
        procs = [start(ours), start(ray)]
        samples: dict[tuple[str, int], list] = {}
        try:
            for _ in range(args.rounds):
                for level in levels:
                    for peer in (ours, ray):
                        result = asyncio.run(run_load(peer.url, args.image, level, args.duration, peer.route))
                        samples.setdefault((peer.name, level), []).append(result)
        finally:
            for proc in procs:
                stop(proc)
        for level in levels:
            cells = []
            for peer in (ours, ray):
                runs = samples[(peer.name, level)]
                rps = statistics.median(r.rps for r in runs)
                p50, p99 = statistics.median(r.p50_ms for r in runs), statistics.median(r.p99_ms for r in runs)
                cells.append((rps, p50, p99, sum(r.errors for r in runs)))
            (o, o50, o99, oe), (r, r50, r99, re_) = cells
            ours_cells, ray_cells = f"{o:.1f} | {o50:.0f} / {o99:.0f}", f"{r:.1f} | {r50:.0f} / {r99:.0f}"
            print(f"| {title} | {level} | {ours_cells} | {ray_cells} | {r / o:.2f}× | {oe}, {re_} |")
        print("# every round (req/s): " + "; ".join(
            f"{name} c{level}: " + ", ".join(f"{x.rps:.1f}" for x in runs) for (name, level), runs in samples.items()
        ), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
