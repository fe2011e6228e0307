"""An async HTTP load generator: N clients post the same image for a fixed time."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    status_counts: dict[int | str, int]

    def to_dict(self) -> dict:
        return asdict(self)


def request_kwargs(route: str, image: bytes, filename: str) -> dict:
    """Body of one request for ``route``: multipart for DeepStack / the demo, raw bytes otherwise."""
    if route.startswith("/v1/vision/"):
        return {"files": {"image": (filename, image, "image/jpeg")}}
    if route == "/predict":
        return {"files": {"file": (filename, image, "image/jpeg")}}
    return {"content": image, "headers": {"Content-Type": "image/jpeg"}}


async def run_load(
    url: str,
    image: Path,
    concurrency: int,
    duration: float,
    route: str = "/v1/detect",
    headers: dict[str, str] | None = None,
    warmup: float = 1.0,
    honor_retry_after: bool = False,
) -> LoadResult:
    """``concurrency`` clients in a closed loop for ``warmup + duration`` s; only the last ``duration`` counts.
    With ``honor_retry_after`` a client told 503 waits the ``Retry-After`` seconds before its next request, as
    a well-behaved client does; without, it asks again at once."""
    body = image.read_bytes()
    kwargs = request_kwargs(route, body, image.name)
    latencies: list[float] = []
    statuses: dict[int | str, int] = {}
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as client:

        async def worker() -> None:
            while (now := time.perf_counter()) < stop_at:
                pause = 0.0
                try:
                    r = await client.post(route, **kwargs)
                    key: int | str = r.status_code
                    if key == 503 and honor_retry_after:
                        pause = float(r.headers.get("retry-after", "1"))
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                    pause = 0.1  # a refused or reset connection: do not spin
                done = time.perf_counter()
                if now >= measure_from:
                    statuses[key] = statuses.get(key, 0) + 1
                    if key == 200:
                        latencies.append(done - now)
                if pause:
                    await asyncio.sleep(min(pause, max(stop_at - time.perf_counter(), 0.0)))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - measure_from
    total = sum(statuses.values())
    ok = len(latencies)
    pct = np.percentile(latencies, [50, 95, 99]) * 1000 if latencies else [float("nan")] * 3
    return LoadResult(concurrency, total, total - ok, elapsed, ok / elapsed, *map(float, pct), statuses)
