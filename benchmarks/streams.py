"""Streams benchmark: frames/s processed for 1, 4 and 8 live sources against the raw detector, in one run.

Each source plays a 640×480, 10 fps clip (made from real images in ../shared: negatives, then a pistol) in real
time and in a loop, as a camera would; every source's frames go through the model's shared batcher (the
server's default worker processes). Per level: the sum of frames processed per second, the ratio to the raw
detector's best batch throughput on frames (measured first, in this run), frames dropped (live sources keep only
the newest frame), detection latency (frame decoded → detections) p50/p95, and alarm latency (the frame that
completes the rule → the event stored) p50/p95, against the batch time.

    HEBBIAN_MIRROR_WEIGHTS=../shared/weights .venv/bin/python benchmarks/streams.py
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
from hebbian_mirror.streams.clipset import make_alarm_clips, sources
from hebbian_mirror.streams.manager import StreamManager
from hebbian_mirror.streams.rules import make_rules
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


async def level(model: str, clip: Path, sources: int, seconds: float, workers: int | None) -> dict:
    settings = load_settings(model=model, device="cpu", workers=workers, events_dir=Path(tempfile.mkdtemp()))
    engine = Engine.hosting(settings)
    await engine.load_models({})
    manager = StreamManager.from_settings(settings, settings, engine.frame_detector())
    rules = make_rules(["pistol"], min_score=0.3)
    await manager.start()
    try:
        for i in range(sources):
            await manager.add(StreamConfig(f"cam{i}", str(clip), rules, realtime=True, loop=True, clip_seconds=0))
        await asyncio.sleep(3)  # warm up: every source playing
        before = {
            w.name: (w.stats.processed, w.source.stats.dropped, w.source.stats.frames_in)
            for w in manager.watchers.values()
        }
        for w in manager.watchers.values():
            w.stats.latency.clear()
            w.stats.alarm_latency.clear()
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - start
        processed = dropped = arrived = 0
        latency, alarm_latency = [], []
        for w in manager.watchers.values():
            p0, d0, f0 = before[w.name]
            processed += w.stats.processed - p0
            dropped += w.source.stats.dropped - d0
            arrived += w.source.stats.frames_in - f0
            latency += list(w.stats.latency)
            alarm_latency += list(w.stats.alarm_latency)
    finally:
        await manager.close()
        await engine.close()
    return {
        "sources": sources,
        "fps_in": arrived / elapsed,
        "fps_processed": processed / elapsed,
        "dropped_share": dropped / arrived if arrived else 0.0,
        "latency_p50_ms": 1000 * (pct(latency, 0.5) or 0),
        "latency_p95_ms": 1000 * (pct(latency, 0.95) or 0),
        "alarm_latency_p50_ms": 1000 * pct(alarm_latency, 0.5) if alarm_latency else None,
        "alarm_latency_p95_ms": 1000 * pct(alarm_latency, 0.95) if alarm_latency else None,
        "alarms": len(alarm_latency),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(SHARED / "weights" / "weapons4-yolov4-tiny.pt"))
    parser.add_argument("--sources", default="1,4,8")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=None, help="Worker processes (default: the server's).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    clips = make_alarm_clips(Path(tempfile.mkdtemp()) / "clips", *sources(SHARED), positives=1, negatives=0)
    clip = next(clips.glob("pos-*.mp4"))
    frames = clip_frames(clip)
    raw = raw_limit(args.model, frames)
    best = max(raw, key=raw.get)
    limit = raw[best]
    batch_ms = 1000 * best / limit
    print(
        f"raw detector on {frames[0].shape[1]}×{frames[0].shape[0]} frames: "
        + ", ".join(f"batch {b}: {r:.1f}/s" for b, r in raw.items())
    )
    print(f"limit {limit:.1f} frames/s at batch {best} (one batch: {batch_ms:.0f} ms)\n")
    rows = []
    for n in (int(s) for s in args.sources.split(",")):
        row = asyncio.run(level(args.model, clip, n, args.seconds, args.workers))
        rows.append(row)
        print(json.dumps(row))
    print(
        "\n| sources | frames in/s | processed/s | / limit | dropped | detect p50 / p95 ms "
        "| alarm p50 / p95 ms | alarm p95 / batch time |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        alarm = (
            "-"
            if r["alarm_latency_p50_ms"] is None
            else f"{r['alarm_latency_p50_ms']:.0f} / {r['alarm_latency_p95_ms']:.0f}"
        )
        ratio = "-" if r["alarm_latency_p95_ms"] is None else f"{r['alarm_latency_p95_ms'] / batch_ms:.2f}"
        print(
            f"| {r['sources']} | {r['fps_in']:.1f} | {r['fps_processed']:.1f} | {r['fps_processed'] / limit:.2f}× "
            f"| {100 * r['dropped_share']:.0f}% | {r['latency_p50_ms']:.0f} / {r['latency_p95_ms']:.0f} "
            f"| {alarm} | {ratio} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"raw": raw, "limit": limit, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
