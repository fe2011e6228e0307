"""Time from the frame that fires an alarm rule to a delivered message whose picture link works, with 1 and with N
cameras running on one server (each a clip played live, in a loop: a scene, then a pistol for 3 s, again and
again), in the same run.

A real server process (`hebbian-mirror serve`, the weapons checkpoint, 2 worker processes by default) delivers to
this script's webhook receiver; for each `alarm.new` the script notes when it arrived and then fetches the
snapshot link the message carries, without an API key. Latency = arrival (or picture fetched) minus the firing
frame's time (the event's `start`: when that frame was decoded). One machine, one clock.

    HEBBIAN_MIRROR_WEIGHTS=../shared/weights .venv/bin/python benchmarks/alarm_delivery.py --cameras 4
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from hebbian_mirror.streams.clipset import drifting, encode_clip

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PISTOL = SHARED / "data/weapons/pistols/valid/images/armas--1007-_jpg.rf.36376d4887e8fbb596d2274af028689c.jpg"
SCENES = sorted((SHARED / "data/coco-val2017/images").glob("*.jpg"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_clip(path: Path, seed: int, fps: int = 10) -> Path:
    """A scene for 4 s, the pistol for 3 s, another scene for 3 s: an alarm every loop (10 s)."""
    rng = random.Random(seed)
    frames = drifting(rng.choice(SCENES), 4 * fps, rng) + drifting(PISTOL, 3 * fps, rng)
    frames += drifting(rng.choice(SCENES), 3 * fps, rng)
    return encode_clip(frames, path, fps)


class Receiver:
    """Takes the webhooks; for each alarm.new, when it came, and when its snapshot link answered with a JPEG."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.time()
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                self.send_response(204)
                self.end_headers()
                if body["type"] == "alarm.new":
                    threading.Thread(target=receiver.fetch, args=(body, arrived), daemon=True).start()

            def log_message(self, *args) -> None:
                pass

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def fetch(self, body: dict, arrived: float) -> None:
        link = (body.get("links") or {}).get("snapshot")
        answer = httpx.get(link, timeout=10) if link else None
        ok = answer is not None and answer.status_code == 200 and answer.content[:3] == b"\xff\xd8\xff"
        fired = body["data"]["start"]
        self.rows.append({"stream": body["data"]["stream"], "message": arrived - fired, "picture": time.time() - fired,
                          "picture_ok": ok})  # fmt: skip

    def close(self) -> None:
        self._server.shutdown()


def run(cameras: int, seconds: float, model: str, workers: str, folder: Path) -> dict:
    receiver, port = Receiver(), free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "hebbian_mirror", "serve", "--port", str(port), "--model", model, "--workers", workers]
    cmd += ["--device", "cpu", "--alarm", "pistol", "--events-dir", str(folder / f"events-{cameras}")]
    cmd += ["--allow-source", str(folder), "--webhook", receiver.url, "--public-url", url, "--log-level", "warning"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        for i in range(cameras):
            clip = make_clip(folder / f"cam{i}.mp4", seed=i)
            body = {"name": f"cam{i}", "url": str(clip), "loop": True, "realtime": True}
            httpx.post(url + "/v1/streams", json=body, timeout=30).raise_for_status()
        time.sleep(seconds)
        streams = httpx.get(url + "/v1/streams", timeout=10).json()["streams"]
    finally:
        server.terminate()
        server.wait(60)
        receiver.close()
    rows = list(receiver.rows)
    message, picture = sorted(r["message"] for r in rows), sorted(r["picture"] for r in rows)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    return {
        "cameras": cameras,
        "alarms": len(rows),
        "pictures_ok": sum(r["picture_ok"] for r in rows),
        "message_p50": statistics.median(message) if message else float("nan"),
        "message_p95": pct(message, 0.95),
        "picture_p50": statistics.median(picture) if picture else float("nan"),
        "picture_p95": pct(picture, 0.95),
        "fps_checked": [round(s["fps_processed"], 1) for s in streams],
        "dropped": sum(s["dropped"] for s in streams),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long each configuration runs")
    parser.add_argument("--model", default=f"weapons={SHARED / 'weights/weapons4-yolov4-tiny.pt'}")
    parser.add_argument("--workers", default="2")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(n, args.seconds, args.model, args.workers, Path(tmp)) for n in sorted({1, args.cameras})]
    print("| cameras | alarms | pictures usable | message p50 / p95 | picture p50 / p95 | frames/s checked | dropped |")
    print("|---:|---:|---:|---:|---:|---|---:|")
    for r in results:
        message = f"{r['message_p50']:.2f} / {r['message_p95']:.2f} s"
        picture = f"{r['picture_p50']:.2f} / {r['picture_p95']:.2f} s"
        print(f"| {r['cameras']} | {r['alarms']} | {r['pictures_ok']} | {message} | {picture} | {r['fps_checked']} "
              f"| {r['dropped']} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
