"""Serving benchmark: our server against the raw detector, a naive server and LitServe, in one run.

On one machine, with the same model and the same image:
  (a) the raw in-process detector (decode + detect) at its best batch size: the limit;
  (b) our server (`hebbian-mirror serve`, default settings) under `hebbian_mirror.loadgen`;
  (c) a naive FastAPI app calling the model once per request inside its handler (benchmarks/naive_server.py),
      the design of the original weapons-detection demo;
  (d) LitServe with the same detector inside a LitAPI (benchmarks/litserve_server.py; the `bench` extra).
The servers are measured in alternation, level by level, for several rounds; each cell is the median round, and
every round is printed. Then, with `--profile`, py-spy samples our server (front end and worker processes)
under 32 clients and says where the time goes.

    pip install -e .[bench]
    HEBBIAN_MIRROR_WEIGHTS=../shared/weights .venv/bin/python benchmarks/serving.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

from hebbian_mirror.config import load_settings
from hebbian_mirror.images import decode_image
from hebbian_mirror.loadgen import run_load
from hebbian_mirror.models.loader import load_detector

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "photos" / "darknet-samples" / "dog.jpg"


@dataclass
class Peer:
    name: str
    cmd: list[str]
    port: int
    route: str = "/v1/detect"
    health: str = "/ready"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


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


def start(peer: Peer) -> subprocess.Popen:
    # a session of its own, so that stopping it stops its children too (LitServe leaves its worker behind)
    proc = subprocess.Popen(
        peer.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{peer.name} exited with {proc.returncode}: {' '.join(peer.cmd)}")
        try:
            if httpx.get(peer.url + peer.health, timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{peer.name} did not become ready")


def peers(model: str, variants: list[str]) -> list[Peer]:
    """Our server, its ``variants`` (``NAME=ARGS``: the same with other options), the naive server and
    LitServe."""
    py = sys.executable

    def ours(port: int, extra: list[str]) -> list[str]:
        cmd = [py, "-m", "hebbian_mirror", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port)]
        return [*cmd, "--device", "cpu", "--log-level", "warning", *extra]

    found = [Peer("ours", ours(8781, []), 8781)]
    for i, variant in enumerate(variants):
        name, _, extra = variant.partition("=")
        found.append(Peer(name, ours(8790 + i, extra.split()), 8790 + i))
    found += [
        Peer("naive", [py, str(REPO / "benchmarks" / "naive_server.py"), "--model", model, "--port", "8782"], 8782),
    ]
    try:
        import litserve  # noqa: F401
    except ImportError:
        print("# LitServe is not installed (pip install -e .[bench]): measuring without it")
    else:
        lit = [py, str(REPO / "benchmarks" / "litserve_server.py"), "--model", model, "--port", "8783"]
        found.append(Peer("litserve", lit, 8783, route="/predict", health="/health"))
    return found


# --------------------------------------------------------------------------------------------- profile

# the first rule that matches a frame, searching from the innermost frame outwards, names the sample
_CATEGORIES = [
    # uvloop runs the event loop in C: a Python stack that ends here is the loop waiting or doing I/O in C
    ("loop: idle or I/O", re.compile(r"^Runner\.run \(asyncio/runners")),
    (
        "waiting",
        re.compile(
            r"^(select|poll|wait|_wait_for_tstate_lock|acquire|accept|sleep|_recv|_recv_bytes|recv"
            r"|_poll|get|run_once|_worker) \((selectors|threading|queue|multiprocessing|asyncio"
            r"|concurrent)[/.]"
        ),
    ),
    (
        "inference",
        re.compile(r"\((torch/|torchvision/|hebbian_mirror/(darknet/|torchvision/|onnx/|detection))"),
    ),
    ("decode", re.compile(r"\((PIL/|hebbian_mirror/images)")),
    (
        "worker IPC",
        re.compile(
            r"(_pack|_packed|_shared|_handle|_on_message|worker_main) \(hebbian_mirror/serving/|"
            r"\(multiprocessing/"
        ),
    ),
    ("JSON", re.compile(r"\((json/|pydantic|fastapi/encoders|starlette/responses)|to_dict \(")),
    ("HTTP", re.compile(r"\((uvicorn/|h11/|httptools|starlette/|fastapi/|multipart/|python_multipart/)")),
    ("event loop", re.compile(r"\(asyncio/")),
]


def categorise(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, pattern in _CATEGORIES:
            if pattern.search(frame):
                return name
    return "other"


def profile_summary(path: Path, server_pid: int) -> dict[str, Counter]:
    """py-spy's collapsed stacks → samples per category, per process (front end, workers)."""
    out: dict[str, Counter] = {}
    for line in path.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        frames = stack_text.split(";")  # "process PID:cmd" first, then a child's "process PID:cmd" if any
        if "resource_tracker" in stack_text:
            continue
        child = len(frames) > 1 and frames[1].startswith("process ")
        role = f"worker process {frames[1].split(':')[0].split()[-1]}" if child else "server process"
        out.setdefault(role, Counter())[categorise(frames[2 if child else 1 :])] += int(count)
    return dict(sorted(out.items(), reverse=True))


def server_pids(pid: int) -> list[int]:
    """``pid`` and its child processes (the workers; multiprocessing's resource tracker left out)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()  # a child belongs to the thread that started it
    children = [int(c) for task in tasks for c in (task / "children").read_text().split()]
    return [pid, *(c for c in children if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes())]


def cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) used so far by ``pid`` and by each of its child processes."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for p in server_pids(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        out[p] = (int(fields[11]) + int(fields[12])) / tick
    return out


def profile(peer: Peer, proc: subprocess.Popen, image: Path, clients: int, seconds: float) -> dict[str, Counter]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "stacks.txt"
        cmd = [
            spy,
            "record",
            "--pid",
            str(proc.pid),
            "--subprocesses",
            "--idle",
            "--rate",
            "50",
            "--duration",
            str(int(seconds)),
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
        ]
        before = cpu_seconds(proc.pid)
        spy_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        load = asyncio.run(run_load(peer.url, image, clients, seconds, peer.route, warmup=0.0))
        after = cpu_seconds(proc.pid)
        _, err = spy_proc.communicate(timeout=60)
        if spy_proc.returncode != 0 or not raw.exists():
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
        print()
        print(
            f"CPU time per request under {clients} clients ({load.rps:.1f} req/s, sampled by py-spy, which costs some):"
        )
        for pid, used in after.items():
            role = "server process" if pid == proc.pid else f"worker process {pid}"
            print(f"- {role}: {1000 * (used - before.get(pid, 0.0)) / max(load.requests, 1):.1f} ms")
        return profile_summary(raw, proc.pid)


def print_profile(summary: dict[str, Counter], clients: int) -> None:
    print()
    print(f"Where our server's Python threads spend their busy samples under {clients} clients (py-spy; idle")
    print("samples, i.e. threads waiting on a lock, a queue, a pipe or the event loop's poll, counted apart):")
    print()
    idle = {"waiting", "loop: idle or I/O"}
    cats = [name for name, _ in _CATEGORIES if name not in idle] + ["other"]
    print("| process | busy samples | " + " | ".join(cats) + " | idle samples |")
    print("|---|---:|" + "---:|" * len(cats) + "---:|")
    for role, counts in summary.items():
        busy = sum(n for c, n in counts.items() if c not in idle)
        shares = " | ".join(f"{100 * counts[c] / max(busy, 1):.0f}%" for c in cats)
        print(f"| {role} | {busy} | {shares} | {sum(counts[c] for c in idle)} |")


# --------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="yolov4-tiny")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="py-spy our server under 32 clients afterwards")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=ARGS: also our server with these options, e.g. 'thread=--workers 0'",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    print(
        f"# {args.model}, {args.image.name}, {args.duration:g} s per cell, {args.rounds} rounds, {os.cpu_count()} CPUs"
    )
    raw = raw_limit(args.model, args.image)
    best_batch = max(raw, key=raw.get)
    limit = raw[best_batch]
    print("# raw detector (decode + detect), images/s by batch: " + ", ".join(f"b{b}: {r:.1f}" for b, r in raw.items()))

    servers = peers(args.model, args.variant)
    procs = {p.name: start(p) for p in servers}
    samples: dict[tuple[str, int], list] = {}
    profiled: dict[str, Counter] | None = None
    try:
        for _ in range(args.rounds):
            for level in levels:
                for peer in servers:
                    result = asyncio.run(run_load(peer.url, args.image, level, args.duration, peer.route))
                    samples.setdefault((peer.name, level), []).append(result)
        if args.profile:
            ours = servers[0]
            profiled = profile(ours, procs[ours.name], args.image, 32, 20)
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it left behind

    def median(name: str, level: int, key: str) -> float:
        return statistics.median(getattr(r, key) for r in samples[(name, level)])

    names = [p.name for p in servers]
    print()
    print(f"Limit (a): {limit:.1f} images/s at batch {best_batch} (batch 1: {raw[1]:.1f}).")
    print()
    head = "| clients | " + " | ".join(f"{n} req/s | {n} p50 / p99 ms" for n in names)
    head += " | ours / limit" + "".join(f" | ours / {n}" for n in names[1:]) + " | errors |"
    print(head)
    print("|" + "---:|" * (1 + 2 * len(names) + len(names)) + "---:|")
    rows = []
    for level in levels:
        row = {"clients": level}
        cells = []
        for n in names:
            row[f"{n}_rps"] = median(n, level, "rps")
            row[f"{n}_p50_ms"] = median(n, level, "p50_ms")
            row[f"{n}_p99_ms"] = median(n, level, "p99_ms")
            row[f"{n}_errors"] = sum(r.errors for r in samples[(n, level)])
            cells.append(f"{row[f'{n}_rps']:.1f} | {row[f'{n}_p50_ms']:.0f} / {row[f'{n}_p99_ms']:.0f}")
        ratios = [row["ours_rps"] / limit] + [row["ours_rps"] / row[f"{n}_rps"] for n in names[1:]]
        errors = ", ".join(str(row[f"{n}_errors"]) for n in names)
        print(f"| {level} | " + " | ".join(cells) + " | " + " | ".join(f"{r:.2f}×" for r in ratios) + f" | {errors} |")
        rows.append(row)
    print()
    print("Every round (req/s; p99 ms):")
    for (name, level), runs in samples.items():
        print(
            f"- {name} c{level}: "
            + ", ".join(f"{r.rps:.1f}" for r in runs)
            + "; p99 "
            + ", ".join(f"{r.p99_ms:.0f}" for r in runs)
        )
    if profiled:
        print_profile(profiled, 32)
    if args.json:
        args.json.write_text(json.dumps({"raw": raw, "limit": limit, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
