"""Overload benchmark: goodput of `hebbian-mirror serve` under 10× more clients than it can serve.

In one run, against one server with a small queue:
  1. the best level: closed-loop clients at 1× and 2× the batch size (at most the queue: capacity is measured
     without refusals);
  2. rounds (default 3), each: capacity at that level for 10 s, the baseline of the round; then 10× as many
     clients for 20 s, (a) clients that wait the Retry-After they are told (well-behaved camera software and
     SDKs), then (b) clients that ask again at once; after each overload, the recovery time: how long until a
     lone request is answered as fast as before.
Reported per phase and round: goodput (200/s) as a ratio of the round's capacity, p99 latency of the 200s,
answers by status, the RSS of the server and its workers at start and at its peak; then the median ratio of
each overload over the rounds (the machine is shared and noisy: one phase against the next varies by ±10%).
Goal: goodput ≥ 0.8× capacity.

    HEBBIAN_MIRROR_WEIGHTS=../shared/weights .venv/bin/python benchmarks/overload.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from serving import Peer, server_pids, start  # benchmarks/ is on the path when run as a script

from hebbian_mirror.loadgen import LoadResult, run_load

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "photos" / "darknet-samples" / "dog.jpg"


def rss_mb(pid: int) -> float:
    """Resident memory of the server and its worker processes together."""
    total = 0.0
    for p in server_pids(pid):
        with contextlib.suppress(FileNotFoundError):  # a worker restarting
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total


class PeakRSS:
    """Samples a process's resident memory every 0.2 s while running."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, rss_mb(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "hebbian_mirror", "serve", "--port", str(port), "--model", args.model]
    cmd += ["--device", "cpu", "--max-queue", str(args.queue), "--max-batch-size", str(args.batch)]
    cmd += ["--log-level", "warning"]
    return start(Peer("ours", cmd, port))


def recovery_seconds(url: str, image: bytes, normal_ms: float, limit: float = 60.0) -> float:
    """Seconds from now until one request is answered 200 within twice the unloaded latency."""
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=60) as client:
        while time.perf_counter() - started < limit:
            t = time.perf_counter()
            r = client.post("/v1/detect", content=image, headers={"Content-Type": "image/jpeg"})
            if r.status_code == 200 and (time.perf_counter() - t) * 1000 <= 2 * normal_ms:
                return time.perf_counter() - started
            time.sleep(0.05)
    return float("inf")


def row(name: str, rnd: int, r: LoadResult, capacity: float, rss: tuple[float, float], recovery: float | None) -> dict:
    return {
        "round": rnd,
        "phase": name,
        "clients": r.concurrency,
        "goodput_rps": round(r.rps, 2),
        "vs_capacity": round(r.rps / capacity, 3) if capacity else None,
        "p99_ms_of_200s": round(r.p99_ms, 1),
        "statuses": {str(k): v for k, v in r.status_counts.items()},
        "rss_mb_start": round(rss[0]),
        "rss_mb_peak": round(rss[1]),
        "recovery_s": None if recovery is None else round(recovery, 2),
    }


def measured(server: subprocess.Popen, url: str, image: Path, clients: int, seconds: float, honor: bool = False):
    """One load phase and the server's RSS at its start and peak."""
    with PeakRSS(server.pid) as mem:
        start_rss = mem.peak
        result = asyncio.run(run_load(url, image, clients, seconds, honor_retry_after=honor))
    return result, (start_rss, mem.peak)


OVERLOADS = (("overload, Retry-After honoured", True), ("overload, retry at once", False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolov4-tiny")
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    ap.add_argument("--batch", type=int, default=8, help="--max-batch-size of the server")
    ap.add_argument("--queue", type=int, default=16, help="--max-queue of the server (small on purpose)")
    ap.add_argument("--rounds", type=int, default=3, help="capacity → overloads rounds (the machine is noisy)")
    ap.add_argument("--capacity-seconds", type=float, default=10.0)
    ap.add_argument("--overload-seconds", type=float, default=20.0)
    ap.add_argument("--factor", type=int, default=10, help="overload clients = factor × best capacity level")
    ap.add_argument("--clients", type=int, help="overload clients (default: factor × best capacity level)")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    image = args.image.read_bytes()
    server = start_server(args, args.port)
    rows = []
    try:
        print(f"capacity of {url} ({args.model}, batch {args.batch}, queue {args.queue})...", flush=True)
        levels = {}
        for clients in sorted({min(args.batch, args.queue), min(2 * args.batch, args.queue)}):
            levels[clients] = asyncio.run(run_load(url, args.image, clients, args.capacity_seconds))
            print(f"  {clients:4d} clients: {levels[clients].rps:6.2f} 200/s", flush=True)
        best = max(levels, key=lambda c: levels[c].rps)
        normal_ms = asyncio.run(run_load(url, args.image, 1, 3.0)).p50_ms
        overload = args.clients or args.factor * best
        for rnd in range(1, args.rounds + 1):
            result, rss = measured(server, url, args.image, best, args.capacity_seconds)
            capacity = result.rps
            rows.append(row("capacity", rnd, result, capacity, rss, None))
            print(f"round {rnd}: capacity {capacity:.2f}/s with {best} clients", flush=True)
            for name, honor in OVERLOADS:
                result, rss = measured(server, url, args.image, overload, args.overload_seconds, honor)
                rows.append(row(name, rnd, result, capacity, rss, recovery_seconds(url, image, normal_ms)))
                print(f"  {name}, {overload} clients: {rows[-1]['vs_capacity']:.2f}× capacity", flush=True)
    finally:
        server.terminate()
        server.wait(60)
    print()
    print(
        "| round | phase | clients | 200/s | × capacity | p99 of 200s (ms) | answers | RSS start → peak (MB) "
        "| recovery (s) |"
    )
    print("|---:|---|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
        recovery = "" if r["recovery_s"] is None else r["recovery_s"]
        print(
            f"| {r['round']} | {r['phase']} | {r['clients']} | {r['goodput_rps']} | {r['vs_capacity']} | "
            f"{r['p99_ms_of_200s']} | {answers} | {r['rss_mb_start']} → {r['rss_mb_peak']} | {recovery} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print()
    for name, _ in OVERLOADS:
        ratios = [r["vs_capacity"] for r in rows if r["phase"] == name]
        print(
            f"{name}: median {statistics.median(ratios):.2f}× the round's capacity "
            f"(rounds: {', '.join(f'{v:.2f}' for v in ratios)}; goal ≥ 0.8×)"
        )


if __name__ == "__main__":
    main()
