"""Isolation benchmark: what dead cameras and bad webhook receivers cost everyone else, each against a baseline in
the same run.

1. Streams: a real server (yolov4-tiny, CPU) watches one healthy MJPEG camera (10 fps, on loopback); measured
   alone, then with 12 dead cameras beside it (RTSP servers that accept the connection and never answer). Per
   phase: the healthy camera's frames in and processed per second, and ``GET /v1/events`` latency p50/p95.
2. Delivery: one healthy webhook receiver gets 40 messages (one every 0.1 s) alone, then beside a receiver that
   hangs, one that trickles its answer a byte a second, and one that sends an endless body. Per phase: the
   healthy receiver's delay (message written → received) p50/p95, and this process's memory growth.

    HEBBIAN_MIRROR_WEIGHTS=../shared/weights .venv/bin/python benchmarks/camera_isolation.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the loopback peers the tests use

from tests.hostile_peers import MjpegService, RawPeer, announce, rss_mb  # noqa: E402
from tests.hostile_peers import delays as received_after  # noqa: E402
from tests.server_process import ServerProcess, free_port  # noqa: E402
from tests.stream_peers import SECRET, WebhookReceiver  # noqa: E402

KEY = {"X-API-Key": "bench-key-0123456789"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stream_phase(url: str, seconds: float) -> dict[str, float]:
    """The healthy camera's rates over ``seconds``, and /v1/events latency sampled meanwhile."""
    first = httpx.get(url + "/v1/streams/healthy", headers=KEY).json()
    started, latencies = time.monotonic(), []
    while time.monotonic() - started < seconds:
        t = time.perf_counter()
        httpx.get(url + "/v1/events", headers=KEY, timeout=30).raise_for_status()
        latencies.append(time.perf_counter() - t)
        time.sleep(0.1)
    last = httpx.get(url + "/v1/streams/healthy", headers=KEY).json()
    span = time.monotonic() - started
    return {
        "fps_in": (last["frames_in"] - first["frames_in"]) / span,
        "fps_processed": (last["processed"] - first["processed"]) / span,
        "events_p50_ms": 1000 * statistics.median(latencies),
        "events_p95_ms": 1000 * percentile(latencies, 0.95),
    }


def streams(seconds: float, dead: int) -> dict[str, dict[str, float]]:
    camera, silent = MjpegService("127.0.0.2", fps=10), RawPeer("silent", "127.0.0.2")
    with tempfile.TemporaryDirectory() as tmp:
        srv = ServerProcess(
            "--model", "yolov4-tiny", "--api-key", KEY["X-API-Key"], "--source-host", "127.0.0.2",
            "--alarm", "knife", "--events-dir", tmp, "--max-streams", str(dead + 1), log=Path(tmp) / "server.log",
        )  # fmt: skip
        try:
            add = {"name": "healthy", "url": camera.url}
            httpx.post(srv.url + "/v1/streams", json=add, headers=KEY, timeout=30).raise_for_status()
            time.sleep(5)  # warm: the camera connected, the batcher busy
            alone = stream_phase(srv.url, seconds)
            for i in range(dead):
                body = {"name": f"dead{i}", "url": f"rtsp://127.0.0.2:{silent.port}/cam{i}"}
                httpx.post(srv.url + "/v1/streams", json=body, headers=KEY, timeout=30).raise_for_status()
            time.sleep(3)
            beside = stream_phase(srv.url, seconds)
        finally:
            srv.stop()
            camera.close()
            silent.close()
    return {"alone": alone, f"beside {dead} dead cameras": beside}


def delivery_phase(bad_modes: list[str], messages: int = 40) -> dict[str, float]:
    from hebbian_mirror.streams.delivery import WebhookSink
    from hebbian_mirror.streams.dispatch import Dispatcher
    from hebbian_mirror.streams.events import EventStore

    healthy = WebhookReceiver(free_port())
    bad = [RawPeer(mode, every=1.0) for mode in bad_modes]
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(Path(tmp))
        sinks = [WebhookSink(healthy.url, SECRET)] + [WebhookSink(p.url, SECRET) for p in bad]
        dispatcher = Dispatcher(store.db_path, sinks)
        dispatcher.start()
        memory = rss_mb(os.getpid())
        try:
            written = announce(store, dispatcher, messages, 0.1)
            deadline = time.monotonic() + 30
            while len(healthy.received) < messages and time.monotonic() < deadline:
                time.sleep(0.05)
            delays = received_after(healthy, written)
            grown = rss_mb(os.getpid()) - memory
        finally:
            dispatcher.stop(timeout=1)
            healthy.close()
            for peer in bad:
                peer.close()
    return {
        "delivered": len(delays),
        "delay_p50_ms": 1000 * statistics.median(delays) if delays else float("nan"),
        "delay_p95_ms": 1000 * percentile(delays, 0.95) if delays else float("nan"),
        "memory_growth_mb": grown,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="Seconds per stream phase.")
    parser.add_argument("--dead", type=int, default=12, help="Dead cameras beside the healthy one.")
    parser.add_argument("--json", type=Path, help="Write the results here too.")
    args = parser.parse_args()
    results = {"streams": streams(args.seconds, args.dead)}
    phases = results["streams"]
    base, loaded = phases["alone"], phases[f"beside {args.dead} dead cameras"]
    print(f"{'streams phase':<28} {'fps in':>7} {'fps done':>9} {'events p50 ms':>14} {'p95 ms':>8}")
    for name, r in phases.items():
        print(
            f"{name:<28} {r['fps_in']:>7.2f} {r['fps_processed']:>9.2f} "
            f"{r['events_p50_ms']:>14.1f} {r['events_p95_ms']:>8.1f}"
        )
    print(f"healthy camera's processed rate beside dead ones: {loaded['fps_processed'] / base['fps_processed']:.2f}×")
    results["delivery"] = {
        "alone": delivery_phase([]),
        "beside hanging, trickling, endless": delivery_phase(["silent", "trickle", "endless"]),
    }
    print(f"{'delivery phase':<36} {'delivered':>9} {'p50 ms':>8} {'p95 ms':>8} {'memory MB':>10}")
    for name, r in results["delivery"].items():
        print(
            f"{name:<36} {r['delivered']:>9} {r['delay_p50_ms']:>8.1f} {r['delay_p95_ms']:>8.1f} "
            f"{r['memory_growth_mb']:>10.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
