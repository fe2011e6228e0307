"""Streams benchmark: N shop cameras at 10 fps on this machine, with and without motion gating, in one run.

Each camera plays a clip of a shop-like clip set (``hebbian-mirror data shop-clips``: 1280×720, a still scene,
noise, light changes, people walking through, some carrying a weapon or a look-alike) in real time and in a loop,
as a camera would; every camera's frames go through the model's shared batcher. Per camera count and gating: frames
in, frames detected, frames skipped as still (the motion gate), frames dropped (a live source keeps only its newest
frame), the age of a frame when the model has checked it (decoded → detections) p50 / p95 / max, and alarm latency
(the frame that completes the rule → the event stored). The raw detector's best batch throughput on these frames,
measured first in the same run, is the baseline the rates are divided by.

    .venv/bin/hebbian-mirror data shop-clips runs/shop-clips \\
        --people ../shared/data/coco-val2017/instances_val2017_subset.json \\
        --background ../shared/data/coco-val2017 --weapon ../shared/data/weapons/pistols=pistol \\
        --weapon ../shared/data/weapons/knives=knife --lookalike ../shared/data/weapons/handheld=phone
    HEBBIAN_MIRROR_WEIGHTS=../shared/weights .venv/bin/python benchmarks/streams.py --clips runs/shop-clips
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from hebbian_mirror.config import load_settings
from hebbian_mirror.models.loader import load_detector
from hebbian_mirror.serving.engine import Engine
from hebbian_mirror.streams.alarm_eval import load_clipset
from hebbian_mirror.streams.manager import StreamManager
from hebbian_mirror.streams.rules import make_rules, model_classes
from hebbian_mirror.streams.sources import open_source
from hebbian_mirror.streams.watcher import StreamConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def clip_frames(path: Path, count: int = 16) -> list[np.ndarray]:
    source = open_source(str(path))
    source.start()
    frames = []
    try:
        while len(frames) < count:
            frame = source.read(timeout=5)
            if frame is None:
                break
            frames.append(frame.image)
    finally:
        source.stop()
    return frames


def raw_limit(model: str, frames: list[np.ndarray], seconds: float = 4.0) -> dict[int, float]:
    """Frames/s of detect alone in this process, per batch size (frames already decoded)."""
    detector = load_detector(model, load_settings(device="cpu"))
    rates = {}
    for batch in (1, 2, 4, 8):
        detector.detect(frames[:batch])
        start, done = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            detector.detect([frames[(done + i) % len(frames)] for i in range(batch)])
            done += batch
        rates[batch] = done / (time.perf_counter() - start)
    return rates


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def level(model: str, clips: list[Path], cameras: int, seconds: float, gate: bool, workers: int | None) -> dict:
    settings = load_settings(model=model, device="cpu", workers=workers, events_dir=Path(tempfile.mkdtemp()))
    engine = Engine.hosting(settings)
    await engine.load_models({})
    manager = StreamManager.from_settings(settings, engine.frame_detector())
    names = list(engine.host(None).detector.class_names)
    rules = make_rules(model_classes(["pistol", "knife"], names)[0])
    await manager.start()
    try:
        for i in range(cameras):
            config = StreamConfig(
                f"cam{i}",
                str(clips[i % len(clips)]),
                rules,
                fps=10,
                realtime=True,
                loop=True,
                clip_seconds=0,
                operator=True,
            )
            config.motion_gate = gate
            await manager.add(config)
        await asyncio.sleep(5)  # warm up: every camera playing
        watchers = list(manager.watchers.values())

        def counts() -> dict[str, int]:
            return {
                "in": sum(w.source.stats.frames_in for w in watchers),
                "detected": sum(w.stats.processed for w in watchers),
                "still": sum(w.stats.still for w in watchers),
                "dropped": sum(w.source.stats.dropped for w in watchers),
            }

        before = counts()
        for w in watchers:
            w.stats.latency = type(w.stats.latency)(maxlen=100_000)
            w.stats.alarm_latency.clear()
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - start
        after = counts()
        latency = [x for w in watchers for x in w.stats.latency]
        alarm_latency = [x for w in watchers for x in w.stats.alarm_latency]
    finally:
        await manager.close()
        await engine.close()
    d = {k: after[k] - before[k] for k in after}
    return {
        "cameras": cameras,
        "gate": gate,
        "fps_in": d["in"] / elapsed,
        "fps_detected": d["detected"] / elapsed,
        "still_share": d["still"] / d["in"] if d["in"] else 0.0,
        "dropped_share": d["dropped"] / d["in"] if d["in"] else 0.0,
        "age_p50_ms": 1000 * (pct(latency, 0.5) or 0),
        "age_p95_ms": 1000 * (pct(latency, 0.95) or 0),
        "age_max_ms": 1000 * max(latency, default=0),
        "alarm_latency_p50_ms": 1000 * pct(alarm_latency, 0.5) if alarm_latency else None,
        "alarm_latency_p95_ms": 1000 * pct(alarm_latency, 0.95) if alarm_latency else None,
        "alarms": len(alarm_latency),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path, default=REPO / "runs" / "shop-clips", help="A shop clip set.")
    parser.add_argument("--model", default=str(SHARED / "weights" / "weapons4-yolov4-tiny.pt"))
    parser.add_argument("--cameras", default="1,4,8,16")
    parser.add_argument("--gate", default="off,on", help="Motion gating: off, on, or both (off,on).")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=None, help="Worker processes (default: the server's).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not (args.clips / "clips.json").is_file():
        raise SystemExit(f"{args.clips}: no clip set; make one with the command in this script's docstring")
    clips = [c.path for c in load_clipset(args.clips)]
    frames = clip_frames(clips[0])
    raw = raw_limit(args.model, frames)
    best = max(raw, key=raw.get)
    limit = raw[best]
    print(
        f"raw detector on {frames[0].shape[1]}×{frames[0].shape[0]} frames: "
        + ", ".join(f"batch {b}: {r:.1f}/s" for b, r in raw.items())
        + f"; limit {limit:.1f} frames/s at batch {best}\n"
    )
    rows = []
    for n in (int(s) for s in args.cameras.split(",")):
        for gate in (g.strip() == "on" for g in args.gate.split(",")):
            row = asyncio.run(level(args.model, clips, n, args.seconds, gate, args.workers))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        "\n| cameras | gate | frames in/s | detected/s | / limit | still | dropped "
        "| age when checked p50 / p95 / max ms | alarms | alarm p50 / p95 ms |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        alarm = (
            "-"
            if r["alarm_latency_p50_ms"] is None
            else f"{r['alarm_latency_p50_ms']:.0f} / {r['alarm_latency_p95_ms']:.0f}"
        )
        print(
            f"| {r['cameras']} | {'on' if r['gate'] else 'off'} | {r['fps_in']:.1f} | {r['fps_detected']:.1f} "
            f"| {r['fps_detected'] / limit:.2f}× | {100 * r['still_share']:.0f}% | {100 * r['dropped_share']:.0f}% "
            f"| {r['age_p50_ms']:.0f} / {r['age_p95_ms']:.0f} / {r['age_max_ms']:.0f} | {r['alarms']} | {alarm} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"raw": raw, "limit": limit, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
